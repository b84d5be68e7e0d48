package xdp

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/deepwall/deepwall/internal/testnet"
)

func keyOf(src, dst netip.AddrPort, proto uint8) (FlowKey, Direction) {
	return MakeFlowKey(src.Addr(), dst.Addr(), src.Port(), dst.Port(), proto)
}

func (h *harness) setFlow(k FlowKey, v Verdict, rule uint32) {
	h.tb.Helper()
	if err := h.p.SetFlow(k, v, rule); err != nil {
		h.tb.Fatalf("set flow: %v", err)
	}
}

func (h *harness) flow(k FlowKey) FlowValue {
	h.tb.Helper()
	v, ok, err := h.p.LookupFlow(k)
	if err != nil || !ok {
		h.tb.Fatalf("lookup flow %v: %v, found %v", k, err, ok)
	}
	return v
}

// TestPrivilegedFlowVerdicts checks the fast path: ALLOW redirects to the
// peer, DROP drops, INSPECT goes to user space, and the flow's counters
// grow in the direction of each packet.
func TestPrivilegedFlowVerdicts(t *testing.T) {
	h := newHarness(t, PortConfig{})
	req := frame(t, testnet.Client4, testnet.Server4, testnet.ProtoTCP)
	resp := frame(t, testnet.Server4, testnet.Client4, testnet.ProtoTCP, func(s *testnet.FrameSpec) { s.Payload = make([]byte, 100) })
	k, dir := keyOf(testnet.Client4, testnet.Server4, testnet.ProtoTCP)

	if got, stats := h.run(req); got != xdpRedirect || stats != wantMiss {
		t.Fatalf("no entry: %s %+v", actionName(got), stats)
	}

	h.setFlow(k, VerdictAllow, 7)
	created := h.flow(k)
	if now := monotonicNow(); created.LastSeen == 0 || created.LastSeen > now || created.Packets != [2]uint64{} {
		t.Fatalf("new entry: %+v (now %d)", created, now)
	}
	// Age the entry so the program's update shows.
	created.LastSeen = 1
	if err := h.p.objs.DwFlows.Update(&k, &created, 0); err != nil {
		t.Fatal(err)
	}
	start := monotonicNow()
	for range 3 {
		if got, stats := h.run(req); got != xdpRedirect || stats != (Stats{FastAllow: 1}) {
			t.Fatalf("allow: %s %+v", actionName(got), stats)
		}
	}
	if got, stats := h.run(resp); got != xdpRedirect || stats != (Stats{FastAllow: 1}) {
		t.Fatalf("allow reply: %s %+v", actionName(got), stats)
	}
	v := h.flow(k)
	if v.Packets[dir] != 3 || v.Packets[dir^1] != 1 ||
		v.Bytes[dir] != 3*uint64(len(req)) || v.Bytes[dir^1] != uint64(len(resp)) {
		t.Errorf("counters: packets %v bytes %v, want 3/1 packets from %v, %d/%d bytes", v.Packets, v.Bytes, dir, 3*len(req), len(resp))
	}
	if v.LastSeen < start || v.LastSeen > monotonicNow() || v.RuleID != 7 || v.Verdict != VerdictAllow || v.Flags != 0 {
		t.Errorf("entry after traffic: %+v (traffic from %d)", v, start)
	}

	// A verdict change keeps the counters.
	h.setFlow(k, VerdictDrop, 9)
	if got, stats := h.run(resp); got != xdpDrop || stats != (Stats{FastDrop: 1}) {
		t.Fatalf("drop: %s %+v", actionName(got), stats)
	}
	v = h.flow(k)
	if v.Packets[dir] != 3 || v.Packets[dir^1] != 2 || v.RuleID != 9 {
		t.Errorf("after drop: %+v", v)
	}

	h.setFlow(k, VerdictInspect, 0)
	if got, stats := h.run(req); got != xdpRedirect || stats != (Stats{FailOpen: 1}) {
		t.Errorf("inspect: %s %+v", actionName(got), stats)
	}
	if p := h.flow(k).Packets; p[dir] != 3 {
		t.Errorf("inspect counted on the fast path: %v", p)
	}

	if err := h.p.DeleteFlow(k); err != nil {
		t.Fatal(err)
	}
	if err := h.p.DeleteFlow(k); err != nil {
		t.Errorf("delete missing: %v", err)
	}
	if _, ok, err := h.p.LookupFlow(k); ok || err != nil {
		t.Errorf("lookup after delete: %v %v", ok, err)
	}
	if got, stats := h.run(req); got != xdpRedirect || stats != wantMiss {
		t.Errorf("after delete: %s %+v", actionName(got), stats)
	}
	if err := h.p.SetFlow(k, 3, 0); !errors.Is(err, ErrRange) {
		t.Errorf("verdict 3: %v", err)
	}
}

// TestPrivilegedFlowClosing: FIN or RST on an ALLOW flow sets the closing
// flag; other packets, and DROP flows, do not.
func TestPrivilegedFlowClosing(t *testing.T) {
	h := newHarness(t, PortConfig{})
	for _, tc := range []struct {
		name    string
		flags   uint8
		verdict Verdict
		want    uint8
	}{
		{"ack", testnet.ACK, VerdictAllow, 0},
		{"syn", testnet.SYN, VerdictAllow, 0},
		{"fin", testnet.FIN | testnet.ACK, VerdictAllow, FlowFlagClosing},
		{"rst", testnet.RST, VerdictAllow, FlowFlagClosing},
		{"rst on drop", testnet.RST, VerdictDrop, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := frame(t, testnet.Client6, testnet.Server6, testnet.ProtoTCP, func(s *testnet.FrameSpec) { s.Flags = tc.flags })
			k, _ := keyOf(testnet.Client6, testnet.Server6, testnet.ProtoTCP)
			_ = h.p.DeleteFlow(k)
			h.setFlow(k, tc.verdict, 1)
			h.run(f)
			if got := h.flow(k).Flags; got != tc.want {
				t.Errorf("flags %#x, want %#x", got, tc.want)
			}
		})
	}
}

// TestPrivilegedFlowSynReopen: a SYN (without ACK) on a decided entry is a
// new connection on a reused 5-tuple; it must not inherit the old verdict.
func TestPrivilegedFlowSynReopen(t *testing.T) {
	h := newHarness(t, PortConfig{})
	k, _ := keyOf(testnet.Client4, testnet.Server4, testnet.ProtoTCP)
	for _, tc := range []struct {
		name    string
		verdict Verdict
		flags   uint8
		reopen  bool
	}{
		{"syn on allow", VerdictAllow, testnet.SYN, true},
		{"syn on drop", VerdictDrop, testnet.SYN, true},
		{"syn-ack on allow", VerdictAllow, testnet.SYN | testnet.ACK, false},
		{"ack on allow", VerdictAllow, testnet.ACK, false},
		{"syn on inspect", VerdictInspect, testnet.SYN, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_ = h.p.DeleteFlow(k)
			h.setFlow(k, tc.verdict, 3)
			f := frame(t, testnet.Client4, testnet.Server4, testnet.ProtoTCP, func(s *testnet.FrameSpec) { s.Flags = tc.flags })
			_, stats := h.run(f)
			v := h.flow(k)
			if tc.reopen {
				if v.Verdict != VerdictInspect || stats.SynReopen != 1 || stats.ToUser+stats.FailOpen+stats.FailClosed != 1 {
					t.Fatalf("verdict %v, stats %+v: want INSPECT and the SYN in user space", v.Verdict, stats)
				}
				return
			}
			if v.Verdict != tc.verdict || stats.SynReopen != 0 {
				t.Fatalf("verdict %v, stats %+v: want %v unchanged", v.Verdict, stats, tc.verdict)
			}
		})
	}
}

// TestPrivilegedFlowKeyDifferential checks that the program normalises a
// packet into exactly the key xdp.MakeFlowKey computes, for random tuples
// including equal addresses and equal ports, and ICMP echo.
func TestPrivilegedFlowKeyDifferential(t *testing.T) {
	h := newHarness(t, PortConfig{})
	r := rand.New(rand.NewPCG(5, 5))
	for i := range 300 {
		v6 := r.IntN(2) == 0
		src, dst := randAddr(r, v6), randAddr(r, v6)
		if r.IntN(8) == 0 {
			dst = src
		}
		if !v6 && r.IntN(2) == 0 {
			// Addresses that differ only in late bytes test the byte order
			// of the comparison.
			b := src.As4()
			b[3] ^= 0x80
			dst = netip.AddrFrom4(b)
		}
		proto := []uint8{testnet.ProtoTCP, testnet.ProtoUDP, protoSCTP}[r.IntN(3)]
		sport, dport := randPort(r), randPort(r)
		if r.IntN(8) == 0 {
			dport = sport
		}
		f := aclFrame(t, aclPacket{proto: proto, src: src, dst: dst, sport: sport, dport: dport})
		k, dir := MakeFlowKey(src, dst, sport, dport, proto)
		h.setFlow(k, VerdictAllow, uint32(i))
		if got, stats := h.run(f); got != xdpRedirect || stats != (Stats{FastAllow: 1}) {
			t.Fatalf("%v %v:%d → %v:%d: key %v not found by the program (%s %+v)", ProtoName(proto), src, sport, dst, dport, k, actionName(got), stats)
		}
		if v := h.flow(k); v.Packets[dir] != 1 {
			t.Fatalf("%v: packet counted in the wrong direction: %v, want dir %d", k, v.Packets, dir)
		}
		if err := h.p.DeleteFlow(k); err != nil {
			t.Fatal(err)
		}
	}

	// ICMP echo keys on the identifier: testnet's ICMPv4 echo has id 1,
	// the ICMPv6 frames of these tests id 0x1234. Other ICMP uses port 0.
	for _, tc := range []struct {
		name     string
		src, dst netip.Addr
		proto    uint8
		id       uint16
		icmpType uint8
	}{
		{"icmp4 echo", testnet.Client4.Addr(), testnet.Server4.Addr(), testnet.ProtoICMP, 1, 8},
		{"icmp4 echo reply", testnet.Server4.Addr(), testnet.Client4.Addr(), testnet.ProtoICMP, 1, 0},
		{"icmp4 unreachable", testnet.Server4.Addr(), testnet.Client4.Addr(), testnet.ProtoICMP, 0, 3},
		{"icmp6 echo", testnet.Client6.Addr(), testnet.Server6.Addr(), testnet.ProtoICMPv6, 0x1234, 128},
		{"icmp6 echo reply", testnet.Server6.Addr(), testnet.Client6.Addr(), testnet.ProtoICMPv6, 0x1234, 129},
		{"icmp6 too big", testnet.Server6.Addr(), testnet.Client6.Addr(), testnet.ProtoICMPv6, 0, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := frame(t, netip.AddrPortFrom(tc.src, 0), netip.AddrPortFrom(tc.dst, 0), tc.proto,
				func(s *testnet.FrameSpec) { s.ICMPType = tc.icmpType })
			if tc.proto == testnet.ProtoICMP && tc.icmpType == 0 {
				f[ethLen+ipv4Len] = 0 // testnet turns type 0 code 0 into an echo request
			}
			k, _ := MakeFlowKey(tc.src, tc.dst, tc.id, tc.id, tc.proto)
			h.setFlow(k, VerdictAllow, 1)
			defer h.p.DeleteFlow(k)
			if got, stats := h.run(f); got != xdpRedirect || stats != (Stats{FastAllow: 1}) {
				t.Errorf("key %v not found: %s %+v", k, actionName(got), stats)
			}
		})
	}
}

// TestPrivilegedFlows fills the map with more entries than one batch and
// checks that iteration sees each exactly once and stops when asked.
func TestPrivilegedFlows(t *testing.T) {
	h := newHarness(t, PortConfig{})
	const n = 3*flowBatch + 17
	want := map[FlowKey]uint32{}
	for i := range n {
		a := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		k, _ := MakeFlowKey(a, testnet.Server4.Addr(), uint16(i), 443, testnet.ProtoTCP)
		h.setFlow(k, Verdict(i%3), uint32(i))
		want[k] = uint32(i)
	}
	seen := map[FlowKey]bool{}
	err := h.p.Flows(func(k FlowKey, v FlowValue) bool {
		if seen[k] {
			t.Errorf("%v seen twice", k)
		}
		seen[k] = true
		if id, ok := want[k]; !ok || v.RuleID != id || v.Verdict != Verdict(id%3) {
			t.Errorf("%v: unexpected %+v", k, v)
		}
		return true
	})
	if err != nil || len(seen) != n {
		t.Fatalf("flows: %v, saw %d of %d", err, len(seen), n)
	}
	calls := 0
	if err := h.p.Flows(func(FlowKey, FlowValue) bool { calls++; return calls < 5 }); err != nil || calls != 5 {
		t.Errorf("early stop: %v after %d calls", err, calls)
	}
	calls = 0
	if err := h.p.iterateFlows(func(FlowKey, FlowValue) bool { calls++; return true }); err != nil || calls != n {
		t.Errorf("iterate fallback: %v, %d entries", err, calls)
	}
}

// TestPrivilegedFailPolicy: packets for user space go to the socket of
// their slot and queue, else to the peer (fail-open) or nowhere
// (fail-closed); broken or missing port setups are counted.
func TestPrivilegedFailPolicy(t *testing.T) {
	tcp := frame(t, testnet.Client4, testnet.Server4, testnet.ProtoTCP)
	frag := testnet.WithIPv6Ext(frame(t, testnet.Client6, testnet.Server6, testnet.ProtoUDP), testnet.ExtLaterFrag)

	t.Run("fail-closed", func(t *testing.T) {
		h := newHarness(t, PortConfig{FailClosed: true})
		if got, stats := h.run(tcp); got != xdpDrop || stats != (Stats{FlowMiss: 1, FailClosed: 1}) {
			t.Errorf("miss: %s %+v", actionName(got), stats)
		}
		if got, stats := h.run(frag); got != xdpDrop || stats != (Stats{Fragments: 1, FailClosed: 1}) {
			t.Errorf("fragment: %s %+v", actionName(got), stats)
		}
		if got, stats := h.run(arpFrame(t)); got != xdpRedirect || stats != wantNonIP {
			t.Errorf("arp: %s %+v", actionName(got), stats)
		}
	})

	t.Run("socket", func(t *testing.T) {
		h := newHarness(t, PortConfig{Slot: 1, FailClosed: true})
		fd := xdpSocket(t)
		// Slot 0 is the other port's: not ours.
		if err := h.p.RegisterXSK(0, 0, fd); err != nil {
			t.Fatal(err)
		}
		if got, stats := h.run(tcp); got != xdpDrop || stats != (Stats{FlowMiss: 1, FailClosed: 1}) {
			t.Errorf("other slot's socket: %s %+v", actionName(got), stats)
		}
		if err := h.p.RegisterXSK(1, 0, fd); err != nil {
			t.Fatal(err)
		}
		if got, stats := h.run(tcp); got != xdpRedirect || stats != (Stats{FlowMiss: 1, ToUser: 1}) {
			t.Errorf("registered: %s %+v", actionName(got), stats)
		}
		if got, stats := h.run(frag); got != xdpRedirect || stats != (Stats{Fragments: 1, ToUser: 1}) {
			t.Errorf("fragment: %s %+v", actionName(got), stats)
		}
		k, _ := keyOf(testnet.Client4, testnet.Server4, testnet.ProtoTCP)
		h.setFlow(k, VerdictInspect, 0)
		if got, stats := h.run(tcp); got != xdpRedirect || stats != (Stats{ToUser: 1}) {
			t.Errorf("inspect: %s %+v", actionName(got), stats)
		}
		if err := h.p.UnregisterXSK(1, 0); err != nil {
			t.Fatal(err)
		}
		if err := h.p.UnregisterXSK(1, 0); err != nil {
			t.Errorf("unregister twice: %v", err)
		}
		if got, stats := h.run(tcp); got != xdpDrop || stats != (Stats{FailClosed: 1}) {
			t.Errorf("unregistered: %s %+v", actionName(got), stats)
		}
		for _, bad := range []struct {
			slot  uint32
			queue int
		}{{MaxSlots, 0}, {0, MaxQueues}, {0, -1}} {
			if err := h.p.RegisterXSK(bad.slot, bad.queue, fd); !errors.Is(err, ErrRange) {
				t.Errorf("register slot %d queue %d: %v", bad.slot, bad.queue, err)
			}
		}
	})

	t.Run("no peer", func(t *testing.T) {
		h := newHarness(t, PortConfig{})
		if err := h.p.objs.DwPeers.Delete(uint32(loIfindex)); err != nil {
			t.Fatal(err)
		}
		if got, stats := h.run(tcp); got != xdpDrop || stats != (Stats{FlowMiss: 1, RedirectErrors: 1}) {
			t.Errorf("fail-open: %s %+v", actionName(got), stats)
		}
		if got, stats := h.run(lldpFrame()); got != xdpDrop || stats != (Stats{RedirectErrors: 1}) {
			t.Errorf("lldp: %s %+v", actionName(got), stats)
		}
	})

	t.Run("unconfigured", func(t *testing.T) {
		h := newHarness(t, PortConfig{})
		if err := h.p.deletePort(loIfindex); err != nil {
			t.Fatal(err)
		}
		for _, f := range [][]byte{tcp, arpFrame(t), tcp[:ethLen+3]} {
			if got, stats := h.run(f); got != xdpPass || stats != (Stats{Unconfigured: 1}) {
				t.Errorf("%s %+v", actionName(got), stats)
			}
		}
	})

	t.Run("port config", func(t *testing.T) {
		h := newHarness(t, PortConfig{Slot: 1, FailClosed: true})
		cfg, ok, err := h.p.Port(loIfindex)
		if err != nil || !ok || cfg != (PortConfig{Slot: 1, Peer: loIfindex, FailClosed: true}) {
			t.Errorf("port: %+v %v %v", cfg, ok, err)
		}
		if err := h.p.SetPort(loIfindex, PortConfig{Slot: 2, Peer: loIfindex}); !errors.Is(err, ErrRange) {
			t.Errorf("slot 2: %v", err)
		}
		if _, ok, err := h.p.Port(12345); ok || err != nil {
			t.Errorf("missing port: %v %v", ok, err)
		}
		if err := h.p.SetPort(loIfindex+1, PortConfig{Slot: 1, Peer: loIfindex}); !errors.Is(err, ErrSlotTaken) {
			t.Errorf("taken slot: %v", err)
		}
		// Moving a port to another slot frees the old one.
		if err := h.p.SetPort(loIfindex, PortConfig{Slot: 0, Peer: loIfindex}); err != nil {
			t.Fatal(err)
		}
		if err := h.p.SetPort(loIfindex+1, PortConfig{Slot: 1, Peer: loIfindex}); err != nil {
			t.Errorf("freed slot: %v", err)
		}
		if cfg, ok, _ := h.p.Port(loIfindex); !ok || cfg.Slot != 0 {
			t.Errorf("moved port: %+v %v", cfg, ok)
		}
	})
}

// xdpSocket opens an AF_XDP socket, closed at cleanup. The XSKMAP takes
// an unbound one, which is all BPF_PROG_TEST_RUN needs.
func xdpSocket(tb testing.TB) int {
	tb.Helper()
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatalf("af_xdp socket: %v", err)
	}
	tb.Cleanup(func() { unix.Close(fd) })
	return fd
}
