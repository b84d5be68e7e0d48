package agent

import (
	"fmt"

	"github.com/deepwall/deepwall/ctl/agent/packetpath"
	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dataplane/nfq"
	"github.com/deepwall/deepwall/dataplane/probe"
)

// backendChoice is the dataplane backend the agent runs and why.
type backendChoice struct {
	Name, Reason string
}

// chooseBackend resolves --mode: xdp and nfqueue are taken as asked; auto
// probes the ports for the data path (run inside their namespace).
func chooseBackend(asked string, path dataplane.Path, ifindexes []int) (backendChoice, error) {
	switch asked {
	case probe.BackendXDP:
		return backendChoice{probe.BackendXDP, "asked for (--mode xdp)"}, nil
	case probe.BackendNFQueue:
		return backendChoice{probe.BackendNFQueue, "asked for (--mode nfqueue)"}, nil
	case "", probe.BackendAuto:
	default:
		return backendChoice{}, fmt.Errorf("--mode %q: want auto, xdp or nfqueue", asked)
	}
	tc := path == dataplane.PathTC
	if err := probe.CheckXDP(ifindexes, tc); err != nil {
		return backendChoice{probe.BackendNFQueue, "auto: " + err.Error()}, nil
	}
	if tc {
		return backendChoice{probe.BackendXDP, "auto: tcx on both ports, AF_XDP sockets and the BPF map types work"}, nil
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
			a.pair = packetpath.NFQueue{Pair: p}
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
		return a.ebpfName() // protected containers only
	case a.pair.Backend() == probe.BackendNFQueue:
		return "nfqueue (iptables, connmark fast path)"
	}
	return a.ebpfName()
}

// ebpfName names the eBPF backend's data path.
func (a *Agent) ebpfName() string {
	if a.cfg.DataPath == dataplane.PathXDP {
		return "xdp native, af_xdp"
	}
	return "tc (tcx), af_xdp through shadow veths"
}
