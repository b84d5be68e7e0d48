package xdp

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/deepwall/deepwall/internal/testnet"
	"github.com/deepwall/deepwall/internal/testutil"
)

// bpffsDir mounts a private bpffs on a temporary directory, unmounted at
// cleanup (after everything registered later has run).
func bpffsDir(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	if err := EnsureBPFFS(dir); err != nil {
		tb.Fatalf("bpffs: %v", err)
	}
	tb.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			tb.Errorf("unmount bpffs %s: %v", dir, err)
		}
	})
	return dir
}

// xdpMD is struct xdp_md, the context of BPF_PROG_TEST_RUN.
type xdpMD struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

func progID(tb testing.TB, p *Program) ebpf.ProgramID {
	tb.Helper()
	info, err := p.XDPProgram().Info()
	if err != nil {
		tb.Fatal(err)
	}
	id, _ := info.ID()
	return id
}

// TestPrivilegedAttachPinAdopt attaches to the fw ports of a topology with
// pins, closes the program (the ports stay attached and the maps keep their
// state), loads again from the pins and re-attaches (adopting the links),
// then removes everything and checks that no link and no pin remains.
func TestPrivilegedAttachPinAdopt(t *testing.T) {
	// 65 queues: one more than MaxQueues, to reach the queue-range path.
	topo := testnet.NewTopology(t, testnet.TopologyOptions{Queues: MaxQueues + 1})
	pinDir := filepath.Join(bpffsDir(t), "pair")
	t.Cleanup(func() {
		// On failure, whatever is left is removed through the pins.
		if _, err := os.Stat(pinDir); err != nil {
			return
		}
		topo.FW.MustDo(t, func() error {
			p, err := Load(Options{PinDir: pinDir})
			if err != nil {
				return err
			}
			return p.Remove()
		})
	})
	nl := topo.FW.Netlink(t)
	inner, outer := topo.InnerIndex, topo.OuterIndex
	attachedProg := func(ifindex int) (uint32, uint32) {
		t.Helper()
		l, err := nl.LinkByIndex(ifindex)
		if err != nil {
			t.Fatal(err)
		}
		if x := l.Attrs().Xdp; x != nil && x.Attached {
			return x.ProgId, x.AttachMode
		}
		return 0, 0
	}

	var p *Program
	topo.FW.MustDo(t, func() error {
		var err error
		if p, err = Load(Options{PinDir: pinDir, MaxFlows: 1000}); err != nil {
			return err
		}
		if err := p.Attach(inner, PortConfig{Slot: 0, Peer: outer}); err != nil {
			return err
		}
		return p.Attach(outer, PortConfig{Slot: 1, Peer: inner, FailClosed: true})
	})
	id1 := progID(t, p)
	var linkIDs []link.ID
	for _, ifindex := range []int{inner, outer} {
		if prog, mode := attachedProg(ifindex); prog != uint32(id1) || mode != 1 /* XDP_ATTACHED_DRV */ {
			t.Fatalf("ifindex %d: prog %d mode %d, want %d native", ifindex, prog, mode, id1)
		}
		info, err := p.links[hook{ifindex: ifindex}].Info()
		if err != nil {
			t.Fatal(err)
		}
		linkIDs = append(linkIDs, info.ID)
	}
	for _, name := range []string{"dw_flows", "dw_xsks", "dw_acl_src", "dw_stats", linkPinPrefix + strconv.Itoa(inner), linkPinPrefix + strconv.Itoa(outer)} {
		if _, err := os.Stat(filepath.Join(pinDir, name)); err != nil {
			t.Errorf("pin %s: %v", name, err)
		}
	}

	// Real traffic reaches the program: the client's ARP requests enter
	// inner and are forwarded as non-IP.
	k, _ := keyOf(testnet.Client4, testnet.Server4, testnet.ProtoTCP)
	if err := p.SetFlow(k, VerdictAllow, 5); err != nil {
		t.Fatal(err)
	}
	if err := p.SetACL(ACL{Rules: []ACLRule{{ID: 3, Action: ACLDeny, Proto: 17}}}); err != nil {
		t.Fatal(err)
	}
	topo.Client.MustDo(t, func() error {
		c, err := net.Dial("udp4", "198.18.0.2:9")
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("wake up arp"))
		return err
	})
	if !testutil.WaitFor(3*time.Second, func() bool {
		s, err := p.Stats()
		return err == nil && s.NonIP > 0
	}) {
		t.Fatal("timed out waiting for ARP through the program")
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for _, ifindex := range []int{inner, outer} {
		if prog, _ := attachedProg(ifindex); prog != uint32(id1) {
			t.Errorf("ifindex %d after Close: prog %d, want %d still attached", ifindex, prog, id1)
		}
	}

	// A second process: same maps, same links, new program.
	var p2 *Program
	topo.FW.MustDo(t, func() error {
		var err error
		if p2, err = Load(Options{PinDir: pinDir}); err != nil {
			return err
		}
		if err := p2.Attach(inner, PortConfig{Slot: 0, Peer: outer}); err != nil {
			return err
		}
		return p2.Attach(outer, PortConfig{Slot: 1, Peer: inner, FailClosed: true})
	})
	if p2.MaxFlows() != 1000 {
		t.Errorf("adopted flow map has %d entries, want the pinned 1000", p2.MaxFlows())
	}
	if v, ok, err := p2.LookupFlow(k); err != nil || !ok || v.RuleID != 5 {
		t.Errorf("adopted flow: %+v %v %v", v, ok, err)
	}
	if s, err := p2.Stats(); err != nil || s.NonIP == 0 {
		t.Errorf("adopted counters: %+v %v", s, err)
	}
	var meta deepwallAclMeta
	var gen uint32
	if err := p2.objs.DwAclGen.Lookup(uint32(0), &gen); err != nil {
		t.Fatal(err)
	}
	if err := p2.objs.DwAclMeta.Lookup(gen, &meta); err != nil || meta.Nrules != 1 {
		t.Errorf("adopted acl: %+v %v", meta, err)
	}
	if cfg, ok, err := p2.Port(outer); err != nil || !ok || !cfg.FailClosed || cfg.Peer != inner {
		t.Errorf("outer config: %+v %v %v", cfg, ok, err)
	}
	id2 := progID(t, p2)
	for i, ifindex := range []int{inner, outer} {
		if prog, _ := attachedProg(ifindex); prog != uint32(id2) || id2 == id1 {
			t.Errorf("ifindex %d after adoption: prog %d, want %d (old %d)", ifindex, prog, id2, id1)
		}
		info, err := p2.links[hook{ifindex: ifindex}].Info()
		if err != nil || info.ID != linkIDs[i] {
			t.Errorf("ifindex %d: link %v (%v), want the adopted link %d", ifindex, info, err, linkIDs[i])
		}
	}

	// Queues beyond MaxQueues get the fail policy; a socket on a queue
	// takes its traffic.
	tcp := frame(t, testnet.Client4, testnet.Server4, testnet.ProtoTCP, func(s *testnet.FrameSpec) { s.Src = netip.MustParseAddrPort("198.18.0.7:1") })
	runOn := func(ifindex, queue int) (uint32, Stats) {
		t.Helper()
		before, _ := p2.Stats()
		var ret uint32
		topo.FW.MustDo(t, func() error {
			var err error
			ret, err = p2.XDPProgram().Run(&ebpf.RunOptions{
				Data:    tcp,
				Context: xdpMD{DataEnd: uint32(len(tcp)), IngressIfindex: uint32(ifindex), RxQueueIndex: uint32(queue)},
			})
			return err
		})
		after, _ := p2.Stats()
		return ret, after.sub(before)
	}
	if got, stats := runOn(inner, MaxQueues); got != xdpRedirect || stats != (Stats{FlowMiss: 1, QueueRange: 1, FailOpen: 1}) {
		t.Errorf("inner queue %d: %s %+v", MaxQueues, actionName(got), stats)
	}
	if got, stats := runOn(outer, MaxQueues); got != xdpDrop || stats != (Stats{FlowMiss: 1, QueueRange: 1, FailClosed: 1}) {
		t.Errorf("outer queue %d: %s %+v", MaxQueues, actionName(got), stats)
	}
	if err := p2.RegisterXSK(1, 3, xdpSocket(t)); err != nil {
		t.Fatal(err)
	}
	if got, stats := runOn(outer, 3); got != xdpRedirect || stats != (Stats{FlowMiss: 1, ToUser: 1}) {
		t.Errorf("outer queue 3 with a socket: %s %+v", actionName(got), stats)
	}
	if got, stats := runOn(outer, 2); got != xdpDrop || stats != (Stats{FlowMiss: 1, FailClosed: 1}) {
		t.Errorf("outer queue 2 without a socket: %s %+v", actionName(got), stats)
	}

	topo.FW.MustDo(t, p2.Remove)
	for _, ifindex := range []int{inner, outer} {
		if prog, _ := attachedProg(ifindex); prog != 0 {
			t.Errorf("ifindex %d still has prog %d", ifindex, prog)
		}
	}
	for _, id := range linkIDs {
		if l, err := link.NewFromID(id); err == nil {
			l.Close()
			t.Errorf("link %d still exists", id)
		}
	}
	if _, err := os.Stat(pinDir); !errors.Is(err, os.ErrNotExist) {
		entries, _ := os.ReadDir(pinDir)
		t.Errorf("pin dir left behind: %v %v", err, entries)
	}
}

// TestPrivilegedDetach detaches one port of two and checks a later Attach
// of a stale pin recreates the link.
func TestPrivilegedDetach(t *testing.T) {
	topo := testnet.NewTopology(t, testnet.TopologyOptions{})
	pinDir := filepath.Join(bpffsDir(t), "pair")
	var p *Program
	topo.FW.MustDo(t, func() error {
		var err error
		if p, err = Load(Options{PinDir: pinDir}); err != nil {
			return err
		}
		if err := p.Attach(topo.InnerIndex, PortConfig{Peer: topo.OuterIndex}); err != nil {
			return err
		}
		return p.Attach(topo.OuterIndex, PortConfig{Slot: 1, Peer: topo.InnerIndex})
	})
	t.Cleanup(func() { topo.FW.MustDo(t, p.Remove) })
	topo.FW.MustDo(t, func() error { return p.Detach(topo.OuterIndex) })
	if _, err := os.Stat(filepath.Join(pinDir, linkPinPrefix+strconv.Itoa(topo.OuterIndex))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("outer link pin: %v", err)
	}
	if _, ok, _ := p.Port(topo.OuterIndex); ok {
		t.Error("outer port config left")
	}
	if _, ok, _ := p.Port(topo.InnerIndex); !ok {
		t.Error("inner port config gone")
	}
	topo.FW.MustDo(t, func() error {
		if err := p.Detach(topo.OuterIndex); !errors.Is(err, ErrNotAttached) {
			t.Errorf("second detach: %v", err)
		}
		if err := p.Attach(0, PortConfig{Peer: 1}); !errors.Is(err, ErrRange) {
			t.Errorf("attach ifindex 0: %v", err)
		}
		return p.Attach(topo.OuterIndex, PortConfig{Slot: 1, Peer: topo.InnerIndex})
	})
}

// TestPrivilegedPins covers bpffs and pin compatibility.
func TestPrivilegedPins(t *testing.T) {
	testnet.RequirePrivileged(t)
	root := bpffsDir(t)
	if err := EnsureBPFFS(root); err != nil {
		t.Errorf("second EnsureBPFFS: %v", err)
	}
	if n := countMounts(t, root); n != 1 {
		t.Errorf("%d mounts at %s, want 1", n, root)
	}
	plain := filepath.Join(t.TempDir(), "a", "b")
	if _, err := Load(Options{PinDir: plain}); !errors.Is(err, ErrNotBPFFS) {
		t.Errorf("load on a plain directory: %v", err)
	}
	if _, err := os.Stat(plain); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused pin dir was created: %v", err)
	}
	dir := filepath.Join(root, "x")
	p, err := Load(Options{PinDir: dir, MaxFlows: 512})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Remove() })
	if _, err := Load(Options{PinDir: dir, MaxFlows: 1024}); !errors.Is(err, ErrIncompatiblePins) {
		t.Errorf("other MaxFlows: %v", err)
	}
	p2, err := Load(Options{PinDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	if p2.MaxFlows() != 512 {
		t.Errorf("adopted %d flows, want 512", p2.MaxFlows())
	}
}

func countMounts(tb testing.TB, path string) int {
	tb.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		tb.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == path {
			n++
		}
	}
	return n
}
