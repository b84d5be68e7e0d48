package protect

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/deepwall/deepwall/ctl/agent/packetpath"
	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/xdp"
)

// KernelSet is the kernel side of the rules for every pair the agent runs
// (the static --inner/--outer pair and the protected containers): the
// rule manager's kernel side. Each pair has its own XDP program, ACL and
// flow map; a port in monitor or discover mode gets an ACL that denies
// nothing (the ACL is checked in user space and reported instead).
type KernelSet struct {
	static packetpath.Path // the --inner/--outer pair; nil: none
	prot   *Protector
	mu     sync.Mutex
	acl    xdp.ACL
	have   bool
}

// monitorACL is the ACL of a port that blocks nothing.
var monitorACL = xdp.ACL{Default: xdp.ACLAllow}

type progMode struct {
	prog packetpath.Kernel
	mode string
	port *protectedPort // nil for the static pair
}

func (k *KernelSet) programs() []progMode {
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
func (k *KernelSet) SetACL(acl xdp.ACL) error {
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
func (k *KernelSet) apply(pp *protectedPort) error {
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
func (k *KernelSet) Flows(fn func(xdp.FlowKey, xdp.FlowValue) bool) error {
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
func (k *KernelSet) SetFlow(key xdp.FlowKey, v xdp.Verdict, ruleID uint32) error {
	var errs []error
	for _, pm := range k.programs() {
		if _, ok, err := pm.prog.LookupFlow(key); err != nil || !ok {
			continue
		}
		errs = append(errs, pm.prog.SetFlow(key, v, ruleID))
	}
	return errors.Join(errs...)
}

// ForgetVerdicts makes every pair forget the final verdicts it remembers
// for frames in flight (after a revocation).
func (k *KernelSet) ForgetVerdicts() {
	if p := k.static; p != nil {
		p.ForgetVerdicts()
	}
	for _, pp := range k.prot.portsOf() {
		if pp.pair != nil {
			pp.pair.ForgetVerdicts()
		}
	}
}

// Addrs resolves container selectors to the protected containers'
// current addresses (unknown names resolve to nothing): the rule
// manager's rules.ContainerAddrs.
func (p *Protector) Addrs(name string) []netip.Addr {
	for _, pp := range p.portsOf() {
		if pp.name() == name {
			if as := pp.addrs.Load(); as != nil {
				return *as
			}
		}
	}
	return nil
}
