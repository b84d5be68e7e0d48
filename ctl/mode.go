package ctl

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dataplane/nfq"
	"github.com/deepwall/deepwall/xdp"
)

// Dataplane modes of `deepwall run --mode`.
const (
	DataplaneAuto    = "auto"
	DataplaneXDP     = "xdp"
	DataplaneNFQueue = "nfqueue"
)

// HideXDPEnv, set to 1, makes the auto probe report XDP as unavailable
// (tests of the fallback on hosts that have XDP). It changes nothing else.
const HideXDPEnv = "DEEPWALL_HIDE_XDP"

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
	// Mode names the path for status: "xdp" or "nfqueue".
	Mode() string
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

func (xdpPath) Mode() string { return DataplaneXDP }

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

func (nfqPath) Mode() string          { return DataplaneNFQueue }
func (p nfqPath) Kernel() kernelTable { return p.Pair }

// modeChoice is the mode the agent runs and why.
type modeChoice struct {
	Mode, Reason string
}

// chooseMode resolves --mode: xdp and nfqueue are taken as asked; auto
// probes the ports (run inside their namespace).
func chooseMode(asked string, ifindexes []int) (modeChoice, error) {
	switch asked {
	case DataplaneXDP:
		return modeChoice{DataplaneXDP, "asked for (--mode xdp)"}, nil
	case DataplaneNFQueue:
		return modeChoice{DataplaneNFQueue, "asked for (--mode nfqueue)"}, nil
	case "", DataplaneAuto:
	default:
		return modeChoice{}, fmt.Errorf("--mode %q: want auto, xdp or nfqueue", asked)
	}
	if err := probeXDP(ifindexes); err != nil {
		return modeChoice{DataplaneNFQueue, "auto: " + err.Error()}, nil
	}
	return modeChoice{DataplaneXDP, "auto: native XDP on both ports, AF_XDP sockets and the BPF map types work"}, nil
}

// probeXDP checks what the XDP path needs: the BPF map types of the
// program, AF_XDP sockets, and native XDP on every port (a no-op program
// attached and detached again).
func probeXDP(ifindexes []int) error {
	if os.Getenv(HideXDPEnv) == "1" {
		return fmt.Errorf("XDP hidden by %s=1", HideXDPEnv)
	}
	for _, mt := range []ebpf.MapType{ebpf.LPMTrie, ebpf.LRUHash, ebpf.XSKMap, ebpf.DevMap, ebpf.PerCPUArray} {
		if err := probeMap(mt); err != nil {
			return fmt.Errorf("BPF map type %s unavailable: %w", mt, err)
		}
	}
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("no AF_XDP sockets: %w", err)
	}
	unix.Close(fd)
	for _, idx := range ifindexes {
		if err := probeNativeXDP(idx); err != nil {
			return fmt.Errorf("no native XDP on ifindex %d: %w", idx, err)
		}
	}
	return nil
}

func probeMap(mt ebpf.MapType) error {
	spec := &ebpf.MapSpec{Type: mt, KeySize: 4, ValueSize: 4, MaxEntries: 1}
	switch mt {
	case ebpf.LPMTrie:
		spec.KeySize, spec.Flags = 8, unix.BPF_F_NO_PREALLOC
	}
	m, err := ebpf.NewMap(spec)
	if err != nil {
		return err
	}
	return m.Close()
}

// probeNativeXDP attaches a program that passes everything to ifindex in
// driver mode and removes it again. A port that already runs an XDP
// program (a killed agent's, kept by its pins) supports it.
func probeNativeXDP(ifindex int) error {
	if l, err := netlink.LinkByIndex(ifindex); err == nil && l.Attrs().Xdp != nil && l.Attrs().Xdp.Attached {
		return nil
	}
	return attachTestXDP(ifindex, true)
}

// attachTestXDP attaches and detaches a program that passes everything,
// in driver (native) or generic mode.
func attachTestXDP(ifindex int, native bool) error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2 /* XDP_PASS */), asm.Return()}})
	if err != nil {
		return fmt.Errorf("load an XDP program: %w", err)
	}
	defer prog.Close()
	flags := link.XDPGenericMode
	if native {
		flags = link.XDPDriverMode
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: flags})
	if err != nil {
		return err
	}
	return l.Close()
}

// nfqueueMissing says what NFQUEUE mode lacks here ("" if nothing).
func nfqueueMissing() string {
	var missing []string
	for _, tool := range []string{"iptables", "ip6tables"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		return "missing " + strings.Join(missing, ", ")
	}
	return ""
}

// openNFQueue puts the NFQUEUE fallback between the ports. On failure it
// has removed whatever it installed.
func (a *Agent) openNFQueue() error {
	if miss := nfqueueMissing(); miss != "" {
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

// modeName describes the running dataplane for status.
func (a *Agent) modeName() string {
	switch {
	case a.pair == nil && a.mode.Mode == DataplaneNFQueue: // protected containers only
		return "nfqueue (iptables, connmark fast path)"
	case a.pair == nil:
		return "xdp native, af_xdp" // protected containers only
	case a.pair.Mode() == DataplaneNFQueue:
		return "nfqueue (iptables, connmark fast path)"
	}
	return "xdp native, af_xdp"
}
