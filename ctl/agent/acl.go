package agent

import (
	"fmt"

	"github.com/deepwall/deepwall/rules"
	"github.com/deepwall/deepwall/xdp"
)

// kernelACL converts the L3/L4 part of a compiled rule set into the ACL the
// XDP program enforces. It is the only place where the two vocabularies
// meet (rules must not import xdp): an ACL allow lets the packet on to the
// flow map and inspection, a block becomes an XDP drop.
func kernelACL(c *rules.Compiled) (xdp.ACL, error) {
	acl := xdp.ACL{Default: xdp.ACLAllow, Rules: make([]xdp.ACLRule, 0, len(c.ACL))}
	if c.ACLDefault == rules.ActionBlock {
		acl.Default = xdp.ACLDeny
	}
	if len(c.ACL) > xdp.MaxACLRules {
		return xdp.ACL{}, fmt.Errorf("%d ACL rules, the kernel takes at most %d: %w", len(c.ACL), xdp.MaxACLRules, xdp.ErrACLLimit)
	}
	for _, r := range c.ACL {
		kr := xdp.ACLRule{ID: r.ID, Action: xdp.ACLAllow, Proto: r.Proto, Src: r.Src, Dst: r.Dst}
		switch r.Action {
		case rules.ActionAllow:
		case rules.ActionBlock:
			kr.Action = xdp.ACLDeny
		default:
			return xdp.ACL{}, fmt.Errorf("rule %d: action %s is not an ACL action: %w", r.ID, r.Action, xdp.ErrInvalidACL)
		}
		kr.SrcPorts = kernelPorts(r.SrcPorts)
		kr.DstPorts = kernelPorts(r.DstPorts)
		acl.Rules = append(acl.Rules, kr)
	}
	return acl, nil
}

func kernelPorts(in []rules.PortRange) []xdp.PortRange {
	if len(in) == 0 {
		return nil
	}
	out := make([]xdp.PortRange, len(in))
	for i, p := range in {
		out[i] = xdp.PortRange{Lo: p.Lo, Hi: p.Hi}
	}
	return out
}
