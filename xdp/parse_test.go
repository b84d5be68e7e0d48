package xdp

import (
	"encoding/binary"
	"testing"

	"github.com/deepwall/deepwall/internal/testnet"
)

// With no flow, no ACL and no socket, a parsed IP packet misses the flow
// map and takes the fail-open path to the peer.
var (
	wantMiss    = Stats{FlowMiss: 1, FailOpen: 1}
	wantNonIP   = Stats{NonIP: 1}
	wantErr     = Stats{Errors: 1}
	wantFragOut = Stats{Fragments: 1, FailOpen: 1}
)

// TestPrivilegedParse runs every parse path of the program on crafted
// frames and checks its action and counters; the tc program must judge
// each frame the same way (tcOutcome).
func TestPrivilegedParse(t *testing.T) {
	h := newHarness(t, PortConfig{})
	htc := newHarness(t, PortConfig{Shadow: tcShadow})
	tcp4 := frame(t, testnet.Client4, testnet.Server4, testnet.ProtoTCP)
	tcp6 := frame(t, testnet.Client6, testnet.Server6, testnet.ProtoTCP)
	udp6 := frame(t, testnet.Client6, testnet.Server6, testnet.ProtoUDP)
	icmp4 := frame(t, testnet.Client4, testnet.Server4, testnet.ProtoICMP)
	setType := func(typ uint8) func(*testnet.FrameSpec) {
		return func(s *testnet.FrameSpec) { s.ICMPType = typ }
	}
	nd := func(typ uint8) []byte {
		return frame(t, testnet.Client6, testnet.Server6, testnet.ProtoICMPv6, setType(typ),
			func(s *testnet.FrameSpec) { s.HopLimit = 255; s.Payload = make([]byte, 20) })
	}
	for _, tc := range []struct {
		name  string
		frame []byte
		want  uint32
		stats Stats
	}{
		{"tcp4", tcp4, xdpRedirect, wantMiss},
		{"udp4", frame(t, testnet.Client4, testnet.Server4, testnet.ProtoUDP), xdpRedirect, wantMiss},
		{"icmp4 echo", icmp4, xdpRedirect, wantMiss},
		{"icmp4 unreachable", frame(t, testnet.Client4, testnet.Server4, testnet.ProtoICMP, setType(3)), xdpRedirect, wantMiss},
		{"gre4 (no L4 parser)", frame(t, testnet.Client4, testnet.Server4, 47), xdpRedirect, wantMiss},
		{"sctp4", frame(t, testnet.Client4, testnet.Server4, protoSCTP), xdpRedirect, wantMiss},
		{"sctp6", frame(t, testnet.Client6, testnet.Server6, protoSCTP), xdpRedirect, wantMiss},
		{"tcp6", tcp6, xdpRedirect, wantMiss},
		{"udp6", udp6, xdpRedirect, wantMiss},
		{"icmp6 echo", frame(t, testnet.Client6, testnet.Server6, testnet.ProtoICMPv6), xdpRedirect, wantMiss},
		{"icmp6 unreachable", frame(t, testnet.Client6, testnet.Server6, testnet.ProtoICMPv6, setType(1)), xdpRedirect, wantMiss},
		{"icmp6 mld report (not ND)", frame(t, testnet.Client6, testnet.Server6, testnet.ProtoICMPv6, setType(143)), xdpRedirect, wantMiss},
		{"tcp4 padded to 60", append(append([]byte{}, tcp4...), make([]byte, 8)...), xdpRedirect, wantMiss},

		{"vlan tcp4", frame(t, testnet.Client4, testnet.Server4, testnet.ProtoTCP, func(s *testnet.FrameSpec) { s.VLAN = 7 }), xdpRedirect, wantMiss},
		{"qinq tcp4", withTags(tcp4, 0x88a8, 0x8100), xdpRedirect, wantMiss},
		{"qinq tcp6", withTags(tcp6, 0x8100, 0x8100), xdpRedirect, wantMiss},
		{"three tags", withTags(tcp4, 0x88a8, 0x8100, 0x8100), xdpDrop, Stats{Errors: 1, HeaderLimit: 1}},

		{"arp", arpFrame(t), xdpRedirect, wantNonIP},
		{"vlan arp", withTags(arpFrame(t), 0x8100), xdpRedirect, wantNonIP},
		{"lldp", lldpFrame(), xdpRedirect, wantNonIP},
		{"nd router solicitation", nd(133), xdpRedirect, wantNonIP},
		{"nd router advertisement", nd(134), xdpRedirect, wantNonIP},
		{"nd neighbour solicitation", nd(135), xdpRedirect, wantNonIP},
		{"nd neighbour advertisement", nd(136), xdpRedirect, wantNonIP},
		{"nd redirect", nd(137), xdpRedirect, wantNonIP},
		{"nd behind hop-by-hop", testnet.WithIPv6Ext(nd(135), testnet.ExtHopByHop), xdpRedirect, wantNonIP},

		{"ipv4 options", withIPv4Options(tcp4, 3), xdpRedirect, wantMiss},
		{"ipv4 max options", withIPv4Options(tcp4, 10), xdpRedirect, wantMiss},
		{"ipv4 first fragment", patch(tcp4, func(f []byte) { f[ethLen+6] = 0x20 }), xdpRedirect, wantFragOut},
		{"ipv4 later fragment", patch(tcp4, func(f []byte) { f[ethLen+6], f[ethLen+7] = 0x00, 0xb9 }), xdpRedirect, wantFragOut},

		{"ipv6 hop", testnet.WithIPv6Ext(tcp6, testnet.ExtHopByHop), xdpRedirect, wantMiss},
		{"ipv6 4 ext", testnet.WithIPv6Ext(tcp6, testnet.ExtHopByHop, testnet.ExtDstOpts, testnet.ExtRouting, testnet.ExtDstOpts), xdpRedirect, wantMiss},
		{"ipv6 ah", testnet.WithIPv6Ext(udp6, testnet.ExtAH), xdpRedirect, wantMiss},
		{"ipv6 atomic fragment", testnet.WithIPv6Ext(tcp6, testnet.ExtAtomicFrag), xdpRedirect, wantMiss},
		{"ipv6 first fragment", testnet.WithIPv6Ext(tcp6, testnet.ExtFirstFrag), xdpRedirect, wantFragOut},
		{"ipv6 later fragment", testnet.WithIPv6Ext(tcp6, testnet.ExtHopByHop, testnet.ExtLaterFrag), xdpRedirect, wantFragOut},
		{"ipv6 5 ext", testnet.WithIPv6Ext(tcp6, testnet.ExtHopByHop, testnet.ExtDstOpts, testnet.ExtRouting, testnet.ExtAtomicFrag, testnet.ExtDstOpts), xdpRedirect, Stats{HeaderLimit: 1, FailOpen: 1}},
		{"ipv6 no next header", patch(tcp6, func(f []byte) { f[ethLen+6] = 59 }), xdpRedirect, wantMiss},

		{"ipv4 ihl 4", patch(tcp4, func(f []byte) { f[ethLen] = 0x44 }), xdpDrop, wantErr},
		{"ipv4 version 6", patch(tcp4, func(f []byte) { f[ethLen] = 0x65 }), xdpDrop, wantErr},
		{"ipv4 total < header", patch(tcp4, func(f []byte) { binary.BigEndian.PutUint16(f[ethLen+2:], 19) }), xdpDrop, wantErr},
		{"ipv4 total > frame", patch(tcp4, func(f []byte) { binary.BigEndian.PutUint16(f[ethLen+2:], uint16(len(f))) }), xdpDrop, wantErr},
		{"ipv4 ihl beyond total", patch(tcp4, func(f []byte) { f[ethLen] = 0x4f; binary.BigEndian.PutUint16(f[ethLen+2:], 40) }), xdpDrop, wantErr},
		{"tcp doff 4", patch(tcp4, func(f []byte) { f[ethLen+ipv4Len+12] = 0x40 }), xdpDrop, wantErr},
		{"tcp doff beyond packet", patch(tcp4, func(f []byte) { f[ethLen+ipv4Len+12] = 0xf0 }), xdpDrop, wantErr},
		{"tcp cut by ip total", patch(tcp4, func(f []byte) { binary.BigEndian.PutUint16(f[ethLen+2:], ipv4Len+12) }), xdpDrop, wantErr},
		{"udp cut by ip total", patch(frame(t, testnet.Client4, testnet.Server4, testnet.ProtoUDP), func(f []byte) { binary.BigEndian.PutUint16(f[ethLen+2:], ipv4Len+6) }), xdpDrop, wantErr},
		{"sctp cut by ip total", patch(frame(t, testnet.Client4, testnet.Server4, protoSCTP), func(f []byte) { binary.BigEndian.PutUint16(f[ethLen+2:], ipv4Len+10) }), xdpDrop, wantErr},
		{"icmp cut by ip total", patch(icmp4, func(f []byte) { binary.BigEndian.PutUint16(f[ethLen+2:], ipv4Len+4) }), xdpDrop, wantErr},
		{"ipv6 version 4", patch(tcp6, func(f []byte) { f[ethLen] = 0x40 }), xdpDrop, wantErr},
		{"ipv6 payload 0", patch(tcp6, func(f []byte) { binary.BigEndian.PutUint16(f[ethLen+4:], 0) }), xdpDrop, wantErr},
		{"ipv6 payload > frame", patch(tcp6, func(f []byte) { binary.BigEndian.PutUint16(f[ethLen+4:], 1000) }), xdpDrop, wantErr},
		{"ipv6 ext beyond payload", patch(testnet.WithIPv6Ext(tcp6, testnet.ExtHopByHop), func(f []byte) { f[ethLen+ipv6Len+1] = 200 }), xdpDrop, wantErr},
		{"icmp6 nd cut by payload", patch(nd(135), func(f []byte) { binary.BigEndian.PutUint16(f[ethLen+4:], 4) }), xdpDrop, wantErr},
		{"ethernet only", tcp4[:ethLen], xdpDrop, wantErr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, stats := h.run(tc.frame)
			if got != tc.want || stats != tc.stats {
				t.Errorf("got %s %+v, want %s %+v", actionName(got), stats, actionName(tc.want), tc.stats)
			}
			want, wantStats := tcOutcome(tc.want, tc.stats)
			if got, stats := htc.runTC(tc.frame); got != want || stats != wantStats {
				t.Errorf("tc: got %d %+v, want %d %+v", got, stats, want, wantStats)
			}
		})
	}
}

// TestPrivilegedTruncated cuts valid frames at every length from the
// Ethernet header on: each cut must be counted as an error and dropped,
// never read past its end (the verifier guarantees the latter; the former
// is the IP length checks).
func TestPrivilegedTruncated(t *testing.T) {
	h := newHarness(t, PortConfig{})
	htc := newHarness(t, PortConfig{Shadow: tcShadow})
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"tcp4 options", withIPv4Options(frame(t, testnet.Client4, testnet.Server4, testnet.ProtoTCP), 2)},
		{"udp4 qinq", withTags(frame(t, testnet.Client4, testnet.Server4, testnet.ProtoUDP), 0x88a8, 0x8100)},
		{"icmp4", frame(t, testnet.Client4, testnet.Server4, testnet.ProtoICMP)},
		{"tcp6 ext", testnet.WithIPv6Ext(frame(t, testnet.Client6, testnet.Server6, testnet.ProtoTCP), testnet.ExtHopByHop, testnet.ExtRouting, testnet.ExtAtomicFrag)},
		{"icmp6 vlan", frame(t, testnet.Client6, testnet.Server6, testnet.ProtoICMPv6, func(s *testnet.FrameSpec) { s.VLAN = 9 })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Cuts in the Ethernet padding after the IP packet are fine.
			for n := ethLen; n < ipEnd(tc.frame); n++ {
				got, stats := h.run(tc.frame[:n])
				if got != xdpDrop || stats != wantErr {
					t.Errorf("cut at %d of %d: got %s %+v, want XDP_DROP %+v", n, len(tc.frame), actionName(got), stats, wantErr)
				}
				if got, stats := htc.runTC(tc.frame[:n]); got != tcShot || stats != wantErr {
					t.Errorf("tc: cut at %d of %d: got %d %+v, want TC_ACT_SHOT %+v", n, len(tc.frame), got, stats, wantErr)
				}
			}
			if got, stats := h.run(tc.frame); got != xdpRedirect || stats.Errors != 0 {
				t.Errorf("whole frame: got %s %+v", actionName(got), stats)
			}
		})
	}
}

// FuzzProgram runs the program on arbitrary frames: every run must end in
// XDP_DROP or XDP_REDIRECT and count exactly one outcome, and the tc
// program must judge the frame the same way.
func FuzzProgram(f *testing.F) {
	h := newHarness(f, PortConfig{})
	htc := newHarness(f, PortConfig{Shadow: tcShadow})
	for _, s := range [][]byte{
		frame(f, testnet.Client4, testnet.Server4, testnet.ProtoTCP),
		testnet.WithIPv6Ext(frame(f, testnet.Client6, testnet.Server6, testnet.ProtoUDP), testnet.ExtHopByHop, testnet.ExtFirstFrag),
		withTags(arpFrame(f), 0x8100),
		lldpFrame(),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < ethLen || len(data) > 1514 {
			return // the kernel refuses shorter input; longer is not a frame
		}
		h.tb = t
		got, stats := h.run(data)
		if stats.Packets() != 1 {
			t.Fatalf("%s with %+v: %d outcomes counted", actionName(got), stats, stats.Packets())
		}
		if got != xdpDrop && got != xdpRedirect {
			t.Fatalf("action %s", actionName(got))
		}
		htc.tb = t
		want, wantStats := tcOutcome(got, stats)
		if got, stats := htc.runTC(data); got != want || stats != wantStats {
			t.Fatalf("tc: got %d %+v, want %d %+v", got, stats, want, wantStats)
		}
	})
}

// ipEnd is the offset of the end of the IP packet in f, before any
// Ethernet padding.
func ipEnd(f []byte) int {
	off := 12
	for binary.BigEndian.Uint16(f[off:]) == 0x8100 || binary.BigEndian.Uint16(f[off:]) == 0x88a8 {
		off += 4
	}
	l3 := off + 2
	if binary.BigEndian.Uint16(f[off:]) == 0x0800 {
		return l3 + int(binary.BigEndian.Uint16(f[l3+2:]))
	}
	return l3 + ipv6Len + int(binary.BigEndian.Uint16(f[l3+4:]))
}
