package agent

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/rules"
	"github.com/deepwall/deepwall/xdp"
)

// kernelSet is the kernel side of the rules for every pair the agent runs
// (the static --inner/--outer pair and the protected containers): the
// rule manager's flowTable. Each pair has its own XDP program, ACL and
// flow map; a port in monitor or discover mode gets an ACL that denies
// nothing (the ACL is checked in user space and reported instead).
type kernelSet struct {
	static packetPath // the --inner/--outer pair; nil: none
	prot   *protector
	mu     sync.Mutex
	acl    xdp.ACL
	have   bool
}

// monitorACL is the ACL of a port that blocks nothing.
var monitorACL = xdp.ACL{Default: xdp.ACLAllow}

type progMode struct {
	prog kernelTable
	mode string
	port *protectedPort // nil for the static pair
}

func (k *kernelSet) programs() []progMode {
	var out []progMode
	if p := k.static; p != nil && p.Kernel() != nil {
		out = append(out, progMode{prog: p.Kernel(), mode: api.ModeProtect})
	}
	for _, pp := range k.prot.portsOf() {
		if pair := pp.pair; pair != nil && pair.Kernel() != nil {
			out = append(out, progMode{prog: pair.Kernel(), mode: pp.protectionMode(), port: pp})
		}
	}
	return out
}

func aclFor(mode string, acl xdp.ACL) xdp.ACL {
	if mode == api.ModeProtect {
		return acl
	}
	return monitorACL
}

// SetACL installs acl on every pair (as its mode wants).
func (k *kernelSet) SetACL(acl xdp.ACL) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.acl, k.have = acl, true
	var errs []error
	for _, pm := range k.programs() {
		if err := pm.prog.SetACL(aclFor(pm.mode, acl)); err != nil {
			errs = append(errs, err)
		}
		if pm.port != nil && pm.port.insp != nil {
			pm.port.insp.forgetSeen()
		}
	}
	return errors.Join(errs...)
}

// apply installs the current ACL on one protected pair, for its mode.
func (k *kernelSet) apply(pp *protectedPort) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.have || pp.pair == nil || pp.pair.Kernel() == nil {
		return nil
	}
	if err := pp.pair.Kernel().SetACL(aclFor(pp.protectionMode(), k.acl)); err != nil {
		return fmt.Errorf("kernel acl of %s: %w", pp.name(), err)
	}
	if pp.insp != nil {
		pp.insp.forgetSeen()
	}
	return nil
}

// Flows iterates every pair's flow map.
func (k *kernelSet) Flows(fn func(xdp.FlowKey, xdp.FlowValue) bool) error {
	var errs []error
	for _, pm := range k.programs() {
		stop := false
		if err := pm.prog.Flows(func(key xdp.FlowKey, v xdp.FlowValue) bool {
			if !fn(key, v) {
				stop = true
				return false
			}
			return true
		}); err != nil {
			errs = append(errs, err)
		}
		if stop {
			break
		}
	}
	return errors.Join(errs...)
}

// SetFlow sets the verdict of k in every pair that carries the flow.
func (k *kernelSet) SetFlow(key xdp.FlowKey, v xdp.Verdict, ruleID uint32) error {
	var errs []error
	for _, pm := range k.programs() {
		if _, ok, err := pm.prog.LookupFlow(key); err != nil || !ok {
			continue
		}
		errs = append(errs, pm.prog.SetFlow(key, v, ruleID))
	}
	return errors.Join(errs...)
}

// forgetVerdicts makes every pair forget the final verdicts it remembers
// for frames in flight (after a revocation).
func (k *kernelSet) forgetVerdicts() {
	if p := k.static; p != nil {
		p.ForgetVerdicts()
	}
	for _, pp := range k.prot.portsOf() {
		if pp.pair != nil {
			pp.pair.ForgetVerdicts()
		}
	}
}

// addrsOf resolves container selectors to the protected containers'
// current addresses (unknown names resolve to nothing).
func (p *protector) addrsOf(name string) []netip.Addr {
	for _, pp := range p.portsOf() {
		if pp.name() == name {
			if as := pp.addrs.Load(); as != nil {
				return *as
			}
		}
	}
	return nil
}

// resolveSet is what the rule manager compiles: the set with its
// container selectors resolved.
func (m *ruleManager) resolveSet(set *rules.Set) *rules.Set {
	if m.containers == nil || len(set.Containers()) == 0 {
		return set
	}
	return set.ResolveContainers(m.containers)
}

// loadOrCompile compiles set (resolved) with the cache, copying the
// databases of groups the change left alone from the running set (callers
// hold m.mu, so the engine cannot have replaced and freed it).
func (m *ruleManager) loadOrCompile(set *rules.Set) (*rules.Compiled, bool, error) {
	var prev *rules.Compiled
	if cur := m.cur.Load(); cur != nil {
		prev = cur.compiled
	}
	return rules.LoadOrCompileFrom(m.resolveSet(set), m.cacheFile, prev)
}

// recompileContainers compiles the running set again with the containers'
// current addresses and swaps it in (kernel ACL, then engine), when it
// selects by container. The stored version does not change.
func (m *ruleManager) recompileContainers() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.cur.Load()
	if cur == nil || len(cur.set.Containers()) == 0 || m.engine == nil {
		return nil
	}
	c, _, err := m.loadOrCompile(cur.set)
	if errors.Is(err, rules.ErrCacheWrite) {
		err = nil
	}
	if err != nil {
		return err
	}
	acl, err := kernelACL(c)
	if err != nil {
		c.Close()
		return err
	}
	// The rollback ACL; the running set built it before, so an error
	// here is a bug, and nothing is swapped rather than risk an empty ACL.
	oldACL, err := kernelACL(cur.compiled)
	if err != nil {
		c.Close()
		return fmt.Errorf("the running rules' acl: %w", err)
	}
	if _, err := m.swapIn(c, acl, oldACL); err != nil {
		return err
	}
	next := *cur
	next.compiled, next.l7, next.applied = c, l7Hash(c), time.Now().UTC()
	m.cur.Store(&next)
	n := m.revoke(next.l7 != cur.l7, c)
	m.log.Info("rules recompiled for container addresses", "version", cur.version.Number, "revoked", n)
	return nil
}
