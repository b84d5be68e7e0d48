package protect

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/ctl/resolve"
	"github.com/deepwall/deepwall/rules"
)

// Protection by selector: `deepwall protect --selector label:tier=web`
// (TARGET selector:EXPR) is a policy, stored, that protects every running
// container the selector matches (resolve.Selector), and every one that
// starts later, under its runtime name. Each pass (a container start
// event, the periodic pass) lists the runtimes' running containers and
// protects the matches not protected yet; a member whose container goes
// is released (the policy protects it again when it runs again).
// Unprotecting the policy unprotects its members; a member cannot be
// unprotected alone (the policy would take it back).

const (
	// selectorPrefix marks a TARGET or a name that is a selector.
	selectorPrefix = "selector:"
	// maxPolicies bounds the selector policies.
	maxPolicies = 64
	// maxPolicyRecord bounds one stored policy.
	maxPolicyRecord = 4 << 10
	// statePolicy is a policy's state in ports.
	statePolicy = "policy"
)

var bucketPolicies = []byte("policies")

// policy is a protection by selector.
type policy struct {
	Selector   string    `json:"selector"`
	Iface      string    `json:"iface"`
	Mode       string    `json:"mode"`
	FailClosed bool      `json:"fail_closed"`
	Since      time.Time `json:"since"`

	sel resolve.Selector
	// reason is what went wrong in the last pass ("": nothing).
	reason string
}

func decodePolicy(key, v []byte) (*policy, error) {
	var pol policy
	if err := unmarshalBounded(v, maxPolicyRecord, &pol); err != nil {
		return nil, err
	}
	if string(key) != pol.Selector {
		return nil, fmt.Errorf("selector %.64q under key %.64q", pol.Selector, key)
	}
	if err := pol.check(); err != nil {
		return nil, err
	}
	return &pol, nil
}

// check validates pol and parses its selector.
func (pol *policy) check() error {
	sel, err := resolve.ParseSelector(pol.Selector)
	if err != nil {
		return err
	}
	pol.sel = sel
	switch {
	case !slices.Contains(api.ProtectionModes, pol.Mode):
		return fmt.Errorf("mode %.32q", pol.Mode)
	case len(pol.Iface) >= unix.IFNAMSIZ || !rules.ValidContainerName(pol.Iface):
		return fmt.Errorf("interface %.32q", pol.Iface)
	}
	return nil
}

// loadPolicies takes back the stored policies; mu held.
func (p *Protector) loadPolicies() error {
	return loadRecords(p, bucketPolicies, "selector policy", maxPolicies, decodePolicy,
		func(pol *policy) { p.policies[pol.Selector] = pol })
}

// addPolicy stores a protection by selector (req.Target is
// selector:EXPR) and runs a pass, so that the containers running now are
// protected when it returns.
func (p *Protector) addPolicy(ctx context.Context, req api.ProtectRequest, who Caller) (st api.PortStatus, err error) {
	pol := &policy{Selector: strings.TrimPrefix(req.Target, selectorPrefix), Iface: req.Iface, Mode: req.Mode,
		FailClosed: req.FailClosed, Since: time.Now().UTC()}
	defer func() { p.audit("protect", req.Target, req.Target+" mode "+req.Mode, who, err) }()
	if req.Name != "" {
		return st, fmt.Errorf("%w: a selector's containers are named by their runtimes: no --name", api.ErrInvalid)
	}
	if err := pol.check(); err != nil {
		return st, fmt.Errorf("%w: %w", api.ErrInvalid, err)
	}
	p.mu.Lock()
	if old, ok := p.policies[pol.Selector]; ok {
		st = p.policyStatus(old)
		p.mu.Unlock()
		if old.Mode != pol.Mode || old.Iface != pol.Iface || old.FailClosed != pol.FailClosed {
			return st, fmt.Errorf("%w: %s exists with mode %s, iface %s: unprotect it first", ErrProtected, req.Target, old.Mode, old.Iface)
		}
		return st, nil
	}
	if len(p.policies) >= maxPolicies {
		p.mu.Unlock()
		return st, fmt.Errorf("%w: %d selector policies, at most %d", api.ErrInvalid, len(p.policies), maxPolicies)
	}
	if err := p.putRecord(bucketPolicies, pol.Selector, pol); err != nil {
		p.mu.Unlock()
		return st, fmt.Errorf("store selector policy: %w", err)
	}
	p.policies[pol.Selector] = pol
	p.mu.Unlock()
	p.log.Info("selector policy added", "selector", pol.Selector, "mode", pol.Mode)
	p.applyPolicies(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	st = p.policyStatus(pol)
	st.Changed = "protected"
	return st, nil
}

// removePolicy removes the policy name (selector:EXPR) and unprotects
// its members; mu held.
func (p *Protector) removePolicy(name string) (api.PortStatus, error) {
	text := strings.TrimPrefix(name, selectorPrefix)
	pol, ok := p.policies[text]
	if !ok {
		return api.PortStatus{}, fmt.Errorf("%s: %w", name, ErrNotProtected)
	}
	st := p.policyStatus(pol)
	for _, pp := range p.portsOf() {
		if pp.rec.Target.Policy == text {
			if _, err := p.unprotect(pp); err != nil {
				return st, fmt.Errorf("unprotect %s: %w", pp.name(), err)
			}
		}
	}
	delete(p.policies, text)
	if err := p.deleteRecord(bucketPolicies, text); err != nil {
		p.log.Warn("forget selector policy", "selector", text, "error", err)
	}
	st.State, st.Changed = "unprotected", "unprotected"
	p.log.Info("selector policy removed", "selector", text)
	return st, nil
}

// applyPolicies is a pass of the policies: the runtimes' running
// containers are listed (without the lock) and each match not protected
// yet is protected.
func (p *Protector) applyPolicies(ctx context.Context) {
	p.mu.Lock()
	pols := slices.Collect(maps.Values(p.policies))
	p.mu.Unlock()
	if len(pols) == 0 {
		return
	}
	listed, lerr := p.resolver.List(ctx)
	for _, pol := range pols {
		reason := ""
		if lerr != nil {
			reason = "listing containers: " + lerr.Error()
		}
		for _, c := range listed {
			if !pol.sel.Matches(c) || p.covers(c) {
				continue
			}
			t, err := p.resolver.Resolve(ctx, c.Runtime+":"+c.Name)
			p.mu.Lock()
			if p.policies[pol.Selector] == pol && !p.coversLocked(c) {
				if err == nil {
					t.Spec, t.Policy = c.Runtime+":"+c.Name, pol.Selector
					err = p.protectResolved(t, pol.Iface, pol.Mode, pol.FailClosed)
				}
				if err != nil {
					reason = fmt.Sprintf("%s:%s: %v", c.Runtime, c.Name, err)
				} else {
					p.log.Info("container protected by selector", "selector", pol.Selector, "name", t.Name, "runtime", t.Runtime)
					p.audit("protect", t.Name, fmt.Sprintf("%s (%s) iface %s mode %s: matches %s%s", t.Spec, t.Name, pol.Iface,
						pol.Mode, selectorPrefix, pol.Selector), selfCaller(), nil)
				}
			}
			p.mu.Unlock()
		}
		p.mu.Lock()
		if reason != pol.reason && reason != "" {
			p.log.Warn("selector policy", "selector", pol.Selector, "error", reason)
		}
		pol.reason = reason
		p.mu.Unlock()
	}
}

// covers reports whether the container c is protected (or waited for)
// already.
func (p *Protector) covers(c resolve.Listed) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.coversLocked(c)
}

func (p *Protector) coversLocked(c resolve.Listed) bool {
	for _, pp := range p.ports {
		if t := pp.rec.Target; t.Runtime == c.Runtime && t.Container == c.Name {
			return true
		}
	}
	for _, pend := range p.pending {
		if t := pend.Target; t.Runtime == c.Runtime && t.Container == c.Name {
			return true
		}
	}
	return false
}

// policyStatus is a policy as ports lists it: its members by name; mu
// held.
func (p *Protector) policyStatus(pol *policy) api.PortStatus {
	st := api.PortStatus{Name: selectorPrefix + pol.Selector, Target: selectorPrefix + pol.Selector, Kind: "selector",
		Iface: pol.Iface, Mode: pol.Mode, FailClosed: pol.FailClosed, Since: pol.Since, State: statePolicy,
		Members: []string{}, Addrs: []string{}}
	for _, pp := range p.portsOf() {
		if pp.rec.Target.Policy == pol.Selector {
			st.Members = append(st.Members, pp.name())
		}
	}
	st.Reason = fmt.Sprintf("protects %d %s", len(st.Members), plural(len(st.Members), "container"))
	if len(st.Members) > 0 {
		st.Reason += ": " + strings.Join(st.Members, ", ")
	}
	if pol.reason != "" {
		st.Reason += "; " + pol.reason
	}
	return st
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
