// Package probe finds out which dataplane backend this host can run: the
// XDP path's BPF map types, AF_XDP sockets and native XDP on a port, or
// the tools of the NFQUEUE fallback. `deepwall run --mode auto` and
// `deepwall doctor` decide with it.
package probe

import (
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Dataplane backends, as `deepwall run --mode` and status name them.
// (Protection modes, discover/monitor/protect, are another thing: how a
// protected container's verdicts are enforced.)
const (
	BackendAuto    = "auto" // probe, XDP when it works
	BackendXDP     = "xdp"
	BackendNFQueue = "nfqueue"
)

// HideXDPEnv, set to 1, makes the auto probe report XDP as unavailable
// (tests of the fallback on hosts that have XDP). It changes nothing else.
const HideXDPEnv = "DEEPWALL_HIDE_XDP"

// CheckXDP checks what the eBPF backend needs: the BPF map types of the
// program, AF_XDP sockets, and on every port what its data path attaches
// there (a no-op program attached and detached again): native XDP, or with
// tc a tcx hook (the tc path's XDP program runs on its own veths).
func CheckXDP(ifindexes []int, tc bool) error {
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
		if tc {
			if err := TCX(idx); err != nil {
				return fmt.Errorf("no tcx hook on ifindex %d: %w", idx, err)
			}
			continue
		}
		if err := NativeXDP(idx); err != nil {
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

// NativeXDP attaches a program that passes everything to ifindex in
// driver mode and removes it again. A port that already runs an XDP
// program (a killed agent's, kept by its pins) supports it.
func NativeXDP(ifindex int) error {
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

// NFQueueMissing says what NFQUEUE mode lacks here ("" if nothing).
func NFQueueMissing() string {
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

// TCX attaches a tc program that passes everything at ifindex's tcx
// ingress and removes it again: what the tc data path needs of a port
// (Linux 6.6 or later, any device).
func TCX(ifindex int) error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1 /* TCX_NEXT */), asm.Return()}})
	if err != nil {
		return fmt.Errorf("load a tc program: %w", err)
	}
	defer prog.Close()
	l, err := link.AttachTCX(link.TCXOptions{Program: prog, Interface: ifindex, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		return err
	}
	return l.Close()
}

// GenericXDP is NativeXDP in generic (skb) mode.
func GenericXDP(ifindex int) error { return attachTestXDP(ifindex, false) }
