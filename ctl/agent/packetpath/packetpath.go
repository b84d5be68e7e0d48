// Package packetpath is the one face the agent's two dataplanes show the
// agent: a Path is the AF_XDP pair (XDP) or the NFQUEUE fallback
// (NFQueue) between two ports, and its Kernel the kernel side the rule
// manager writes (the ACL and the decided flows). The agent's static
// pair and every protected container's pair are Paths.
package packetpath

import (
	"context"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dataplane/nfq"
	"github.com/deepwall/deepwall/dataplane/probe"
	"github.com/deepwall/deepwall/xdp"
)

// Kernel is the kernel side of one packet path: its ACL and its decided
// flows (*xdp.Program for XDP, *nfq.Pair for NFQUEUE).
type Kernel interface {
	SetACL(xdp.ACL) error
	Flows(fn func(xdp.FlowKey, xdp.FlowValue) bool) error
	SetFlow(k xdp.FlowKey, v xdp.Verdict, ruleID uint32) error
	LookupFlow(k xdp.FlowKey) (xdp.FlowValue, bool, error)
}

// Path is the dataplane of a port pair: the AF_XDP pair or the NFQUEUE
// fallback. The agent talks to either through it alone.
type Path interface {
	// Backend names the path for status: "xdp" or "nfqueue".
	Backend() string
	// Kernel is the kernel side; nil once the path is detached.
	Kernel() Kernel
	// ForgetVerdicts applies revocations to verdicts remembered for
	// packets in flight.
	ForgetVerdicts()
	Run(ctx context.Context) error
	// Stats are the user-space counters and the kernel's.
	Stats() (dataplane.PairStats, xdp.Stats, error)
	Queues() int
	// Detach removes the path from the ports (call in their namespace).
	Detach() error
	// Close stops the path and leaves it in place (the fail policy
	// applies until the next agent takes it over).
	Close() error
}

// XDP is the AF_XDP pair.
type XDP struct{ *dataplane.Pair }

func (XDP) Backend() string { return probe.BackendXDP }

func (p XDP) Kernel() Kernel {
	if prog := p.Program(); prog != nil {
		return prog
	}
	return nil
}

func (p XDP) Stats() (dataplane.PairStats, xdp.Stats, error) {
	st := p.Pair.Stats()
	if prog := p.Program(); prog != nil {
		ks, err := prog.Stats()
		return st, ks, err
	}
	return st, xdp.Stats{}, nil
}

// NFQueue is the NFQUEUE fallback.
type NFQueue struct{ *nfq.Pair }

func (NFQueue) Backend() string  { return probe.BackendNFQueue }
func (p NFQueue) Kernel() Kernel { return p.Pair }
