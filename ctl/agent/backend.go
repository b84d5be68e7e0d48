package agent

import (
	"context"
	"fmt"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dataplane/nfq"
	"github.com/deepwall/deepwall/dataplane/probe"
	"github.com/deepwall/deepwall/xdp"
)

// kernelTable is the kernel side of one packet path: its ACL and its
// decided flows (*xdp.Program for XDP, *nfq.Pair for NFQUEUE).
type kernelTable interface {
	SetACL(xdp.ACL) error
	Flows(fn func(xdp.FlowKey, xdp.FlowValue) bool) error
	SetFlow(k xdp.FlowKey, v xdp.Verdict, ruleID uint32) error
	LookupFlow(k xdp.FlowKey) (xdp.FlowValue, bool, error)
}

// packetPath is the dataplane of the agent's port pair: the AF_XDP pair
// or the NFQUEUE fallback. The agent talks to either through it alone.
type packetPath interface {
	// Backend names the path for status: "xdp" or "nfqueue".
	Backend() string
	// Kernel is the kernel side; nil once the path is detached.
	Kernel() kernelTable
	// ForgetVerdicts applies revocations to verdicts remembered for
	// packets in flight.
	ForgetVerdicts()
	Run(ctx context.Context) error
	// Stats are the user-space counters and the kernel's.
	Stats() (dataplane.PairStats, xdp.Stats, error)
	Queues() int
	// Detach removes the path from the ports (call in their namespace).
	Detach() error
}

// xdpPath is the AF_XDP pair.
type xdpPath struct{ *dataplane.Pair }

func (xdpPath) Backend() string { return probe.BackendXDP }

func (p xdpPath) Kernel() kernelTable {
	if prog := p.Program(); prog != nil {
		return prog
	}
	return nil
}

func (p xdpPath) Stats() (dataplane.PairStats, xdp.Stats, error) {
	st := p.Pair.Stats()
	if prog := p.Program(); prog != nil {
		ks, err := prog.Stats()
		return st, ks, err
	}
	return st, xdp.Stats{}, nil
}

// nfqPath is the NFQUEUE fallback.
type nfqPath struct{ *nfq.Pair }

func (nfqPath) Backend() string       { return probe.BackendNFQueue }
func (p nfqPath) Kernel() kernelTable { return p.Pair }

// backendChoice is the dataplane backend the agent runs and why.
type backendChoice struct {
	Name, Reason string
}

// chooseBackend resolves --mode: xdp and nfqueue are taken as asked; auto
// probes the ports (run inside their namespace).
func chooseBackend(asked string, ifindexes []int) (backendChoice, error) {
	switch asked {
	case probe.BackendXDP:
		return backendChoice{probe.BackendXDP, "asked for (--mode xdp)"}, nil
	case probe.BackendNFQueue:
		return backendChoice{probe.BackendNFQueue, "asked for (--mode nfqueue)"}, nil
	case "", probe.BackendAuto:
	default:
		return backendChoice{}, fmt.Errorf("--mode %q: want auto, xdp or nfqueue", asked)
	}
	if err := probe.CheckXDP(ifindexes); err != nil {
		return backendChoice{probe.BackendNFQueue, "auto: " + err.Error()}, nil
	}
	return backendChoice{probe.BackendXDP, "auto: native XDP on both ports, AF_XDP sockets and the BPF map types work"}, nil
}

// openNFQueue puts the NFQUEUE fallback between the ports. On failure it
// has removed whatever it installed.
func (a *Agent) openNFQueue() error {
	if miss := probe.NFQueueMissing(); miss != "" {
		return fmt.Errorf("nfqueue mode: %s", miss)
	}
	cfg := nfq.Config{Inner: a.cfg.Inner, Outer: a.cfg.Outer, Workers: a.cfg.Workers, FailClosed: a.cfg.FailClosed,
		Inspector: ruleInspector{a.timed, &a.blocks}, Logger: a.log,
		Aging: dataplane.AgingConfig{OnFlowEnd: a.kernelFlowEnded}}
	err := a.inNS(func() error {
		p, err := nfq.Open(cfg)
		if err == nil {
			a.pair = nfqPath{p}
		}
		return err
	})
	if err != nil {
		return err
	}
	for i := range a.ports {
		a.ports[i].Queues = a.pair.Queues()
	}
	return nil
}

// backendName describes the running dataplane for status.
func (a *Agent) backendName() string {
	switch {
	case a.pair == nil && a.backend.Name == probe.BackendNFQueue: // protected containers only
		return "nfqueue (iptables, connmark fast path)"
	case a.pair == nil:
		return "xdp native, af_xdp" // protected containers only
	case a.pair.Backend() == probe.BackendNFQueue:
		return "nfqueue (iptables, connmark fast path)"
	}
	return "xdp native, af_xdp"
}
