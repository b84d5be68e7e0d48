package dataplane

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/deepwall/deepwall/internal/testnet"
	"github.com/deepwall/deepwall/xdp"
)

// optionHeaders is a hop-by-hop header followed by n-1 destination
// options headers, 8 bytes each.
func optionHeaders(n int) []testnet.IPv6Ext {
	exts := []testnet.IPv6Ext{testnet.ExtHopByHop}
	for len(exts) < n {
		exts = append(exts, testnet.ExtDstOpts)
	}
	return exts
}

func TestParsePacket(t *testing.T) {
	tcp4 := testnet.Frame(t, testnet.FrameSpec{Src: testnet.Client4, Dst: testnet.Server4, Proto: testnet.ProtoTCP, Flags: testnet.ACK | testnet.PSH, Seq: 1000, Ack: 2000, Payload: []byte("hello")})
	udp6 := testnet.Frame(t, testnet.FrameSpec{Src: testnet.Client6, Dst: testnet.Server6, Proto: testnet.ProtoUDP, VLAN: 7, Payload: []byte("q")})
	frag4 := append([]byte(nil), tcp4...)
	binary.BigEndian.PutUint16(frag4[ethHeaderLen+6:], 0x2000) // MF
	long4 := append([]byte(nil), tcp4...)
	binary.BigEndian.PutUint16(long4[ethHeaderLen+2:], 1000)
	qinq3 := append([]byte(nil), udp6[:12]...)
	for i := 0; i < 3; i++ {
		qinq3 = append(qinq3, 0x81, 0x00, 0, 7)
	}
	qinq3 = append(qinq3, udp6[16:]...)
	// SCTP: an IPv4 header carrying a 12-byte common header (ports 5000 →
	// 38412) and nothing else; the builder has no SCTP layer.
	sctp := append([]byte(nil), testnet.Frame(t, testnet.FrameSpec{Src: testnet.Client4, Dst: testnet.Server4, Proto: 132, Payload: []byte{0x13, 0x88, 0x96, 0x0c, 0, 0, 0, 1, 0, 0, 0, 0}})...)
	arp := make([]byte, 42)
	binary.BigEndian.PutUint16(arp[12:], 0x0806)
	tcp6 := testnet.Frame(t, testnet.FrameSpec{Src: testnet.Client6, Dst: testnet.Server6, Proto: testnet.ProtoTCP, Flags: testnet.SYN, Seq: 7})

	for _, tc := range []struct {
		name        string
		frame       []byte
		kind        Kind
		keyed, frag bool
		src, dst    netip.AddrPort
		proto       uint8
		l4len       int
	}{
		{"tcp4", tcp4, KindIP, true, false, testnet.Client4, testnet.Server4, protoTCP, 25},
		{"tcp4 padded", append(append([]byte(nil), tcp4...), 0, 0, 0, 0), KindIP, true, false, testnet.Client4, testnet.Server4, protoTCP, 25},
		{"udp6 vlan", udp6, KindIP, true, false, testnet.Client6, testnet.Server6, protoUDP, 9},
		{"icmp4 echo", testnet.Frame(t, testnet.FrameSpec{Src: testnet.Client4, Dst: testnet.Server4, Proto: testnet.ProtoICMP}), KindIP, true, false,
			netip.AddrPortFrom(testnet.Client4.Addr(), 1), netip.AddrPortFrom(testnet.Server4.Addr(), 1), protoICMP, 8},
		{"icmp4 unreachable", testnet.Frame(t, testnet.FrameSpec{Src: testnet.Client4, Dst: testnet.Server4, Proto: testnet.ProtoICMP, ICMPType: 3, ICMPCode: 1}), KindIP, true, false,
			netip.AddrPortFrom(testnet.Client4.Addr(), 0), netip.AddrPortFrom(testnet.Server4.Addr(), 0), protoICMP, 8},
		{"icmp6 echo", testnet.Frame(t, testnet.FrameSpec{Src: testnet.Client6, Dst: testnet.Server6, Proto: testnet.ProtoICMPv6, Payload: []byte{0, 9, 0, 1}}), KindIP, true, false,
			netip.AddrPortFrom(testnet.Client6.Addr(), 9), netip.AddrPortFrom(testnet.Server6.Addr(), 9), protoICMPv6, 8},
		{"icmp6 neighbour solicitation", testnet.Frame(t, testnet.FrameSpec{Src: testnet.Client6, Dst: testnet.Server6, Proto: testnet.ProtoICMPv6, ICMPType: 135, Payload: make([]byte, 20)}), KindOther, false, false,
			netip.AddrPort{}, netip.AddrPort{}, 0, 0},
		{"tcp6 hop-by-hop", testnet.WithIPv6Ext(tcp6, optionHeaders(1)...), KindIP, true, false, testnet.Client6, testnet.Server6, protoTCP, 20},
		{"tcp6 four ext headers", testnet.WithIPv6Ext(tcp6, optionHeaders(4)...), KindIP, true, false, testnet.Client6, testnet.Server6, protoTCP, 20},
		{"tcp6 five ext headers", testnet.WithIPv6Ext(tcp6, optionHeaders(5)...), KindIP, false, false,
			netip.AddrPortFrom(testnet.Client6.Addr(), 0), netip.AddrPortFrom(testnet.Server6.Addr(), 0), protoDstOpts, 0},
		{"ipv4 fragment", frag4, KindIP, false, true, netip.AddrPortFrom(testnet.Client4.Addr(), 0), netip.AddrPortFrom(testnet.Server4.Addr(), 0), protoTCP, 0},
		{"sctp4", sctp, KindIP, true, false, netip.AddrPortFrom(testnet.Client4.Addr(), 5000), netip.AddrPortFrom(testnet.Server4.Addr(), 38412), protoSCTP, 12},
		{"sctp4 truncated", sctp[:ethHeaderLen+ipv4HeaderLen+8], KindMalformed, false, false, netip.AddrPort{}, netip.AddrPort{}, 0, 0},
		{"arp", arp, KindOther, false, false, netip.AddrPort{}, netip.AddrPort{}, 0, 0},
		{"ipv4 longer than frame", long4, KindMalformed, false, false, netip.AddrPort{}, netip.AddrPort{}, 0, 0},
		{"truncated tcp", tcp4[:ethHeaderLen+ipv4HeaderLen+10], KindMalformed, false, false, netip.AddrPort{}, netip.AddrPort{}, 0, 0},
		{"three vlan tags", qinq3, KindMalformed, false, false, netip.AddrPort{}, netip.AddrPort{}, 0, 0},
		{"runt", tcp4[:10], KindMalformed, false, false, netip.AddrPort{}, netip.AddrPort{}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p Packet
			if k := ParsePacket(tc.frame, &p); k != tc.kind {
				t.Fatalf("kind = %v, want %v", k, tc.kind)
			}
			if tc.kind != KindIP {
				return
			}
			if p.Keyed != tc.keyed || p.Fragment != tc.frag || p.Proto != tc.proto {
				t.Fatalf("keyed %v fragment %v proto %d, want %v %v %d", p.Keyed, p.Fragment, p.Proto, tc.keyed, tc.frag, tc.proto)
			}
			wantKey, wantDir := xdp.MakeFlowKey(tc.src.Addr(), tc.dst.Addr(), tc.src.Port(), tc.dst.Port(), tc.proto)
			if p.Key != wantKey || p.Dir != wantDir {
				t.Fatalf("key %v dir %v, want %v %v", p.Key, p.Dir, wantKey, wantDir)
			}
			if tc.keyed && p.L4Len != tc.l4len {
				t.Fatalf("l4 length %d, want %d", p.L4Len, tc.l4len)
			}
		})
	}

	var p Packet
	ParsePacket(tcp4, &p)
	if p.Seq != 1000 || p.Ack != 2000 || p.TCPFlags != tcpFlagACK|0x08 || p.PayloadLen() != 5 {
		t.Fatalf("tcp fields: seq %d ack %d flags %#x payload %d", p.Seq, p.Ack, p.TCPFlags, p.PayloadLen())
	}
}

func TestParsePacketSymmetricKey(t *testing.T) {
	for _, pair := range [][2]netip.AddrPort{{testnet.Client4, testnet.Server4}, {testnet.Client6, testnet.Server6}} {
		fwd := testnet.Frame(t, testnet.FrameSpec{Src: pair[0], Dst: pair[1], Proto: testnet.ProtoUDP})
		rev := testnet.Frame(t, testnet.FrameSpec{Src: pair[1], Dst: pair[0], Proto: testnet.ProtoUDP})
		var p, q Packet
		ParsePacket(fwd, &p)
		ParsePacket(rev, &q)
		if p.Key != q.Key || p.Dir == q.Dir || p.Key.Hash() != q.Key.Hash() {
			t.Fatalf("%v: keys %v/%v dirs %v/%v", pair, p.Key, q.Key, p.Dir, q.Dir)
		}
	}
}

func TestParsePacketNoAllocs(t *testing.T) {
	f := testnet.Frame(t, testnet.FrameSpec{Src: testnet.Client6, Dst: testnet.Server6, Proto: testnet.ProtoTCP, VLAN: 3, Payload: make([]byte, 100)})
	var p Packet
	if n := testing.AllocsPerRun(100, func() { ParsePacket(f, &p) }); n != 0 {
		t.Fatalf("ParsePacket allocates %.1f times", n)
	}
}

// refSum is RFC 1071 done the slow way, 16 bits at a time.
func refSum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

func TestCsumAddMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		b := make([]byte, rng.IntN(200))
		for j := range b {
			b[j] = byte(rng.UintN(256))
			if i%3 == 0 {
				b[j] = 0xff // long carry chains
			}
		}
		if got, want := csumFold(csumAdd(0, b)), refSum(b); got != want {
			t.Fatalf("len %d: sum %#x, want %#x", len(b), got, want)
		}
	}
}

func TestCompletePartialChecksum(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec testnet.FrameSpec
	}{
		{"tcp4", testnet.FrameSpec{Src: testnet.Client4, Dst: testnet.Server4, Proto: testnet.ProtoTCP, Flags: testnet.ACK, Payload: []byte("some payload, odd length")}},
		{"tcp6", testnet.FrameSpec{Src: testnet.Client6, Dst: testnet.Server6, Proto: testnet.ProtoTCP, Flags: testnet.ACK, Payload: make([]byte, 1400)}},
		{"udp4", testnet.FrameSpec{Src: testnet.Client4, Dst: testnet.Server4, Proto: testnet.ProtoUDP, Payload: []byte("x")}},
		{"udp6 vlan", testnet.FrameSpec{Src: testnet.Client6, Dst: testnet.Server6, Proto: testnet.ProtoUDP, VLAN: 9, Payload: []byte("dns?")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			good := testnet.Frame(t, tc.spec)
			var p Packet
			ParsePacket(good, &p)
			off := l4ChecksumOffset(&p)
			if !l4ChecksumOK(good, &p) {
				t.Fatal("builder produced a bad checksum")
			}
			verify := func(f []byte) ChecksumStatus {
				return VerifyL4Checksum(f[p.L3Off:], p.IPv6, p.Proto, f[p.L4Off:p.L4Off+p.L4Len])
			}
			if s := verify(good); s != ChecksumOK {
				t.Fatalf("verify a correct checksum: %d", s)
			}
			f := append([]byte(nil), good...)
			if CompletePartialChecksum(f, &p) || string(f) != string(good) {
				t.Fatal("changed a correct checksum")
			}
			// What a sender with TX checksum offload hands over.
			binary.BigEndian.PutUint16(f[off:], csumFold(pseudoSum(f, &p)))
			if s := verify(f); s != ChecksumPartial {
				t.Fatalf("verify a partial checksum: %d", s)
			}
			if !CompletePartialChecksum(f, &p) {
				t.Fatal("partial checksum not recognised")
			}
			if string(f) != string(good) {
				t.Fatalf("completed checksum %#x, want %#x", binary.BigEndian.Uint16(f[off:]), binary.BigEndian.Uint16(good[off:]))
			}
			// A wrong checksum stays wrong.
			binary.BigEndian.PutUint16(f[off:], binary.BigEndian.Uint16(good[off:])^0x1234)
			bad := append([]byte(nil), f...)
			if CompletePartialChecksum(f, &p) || string(f) != string(bad) {
				t.Fatal("rewrote a wrong checksum")
			}
			if s := verify(f); s != ChecksumBad {
				t.Fatalf("verify a wrong checksum: %d", s)
			}
			if s := verify(f[:p.L4Off+4]); s != ChecksumBad {
				t.Fatalf("verify a truncated header: %d", s)
			}
			// SetL4Checksum after a payload rewrite (from a wrong, a
			// partial or a right field alike).
			f[len(f)-1] ^= 0x5a
			SetL4Checksum(f[p.L3Off:], p.IPv6, p.Proto, f[p.L4Off:p.L4Off+p.L4Len])
			if s := verify(f); s != ChecksumOK {
				t.Fatalf("verify after SetL4Checksum: %d", s)
			}
		})
	}
	// IPv4 UDP with checksum 0 means "none": left alone.
	f := testnet.Frame(t, testnet.FrameSpec{Src: testnet.Client4, Dst: testnet.Server4, Proto: testnet.ProtoUDP})
	var p Packet
	ParsePacket(f, &p)
	binary.BigEndian.PutUint16(f[l4ChecksumOffset(&p):], 0)
	if CompletePartialChecksum(f, &p) {
		t.Fatal("filled in an absent UDP checksum")
	}
	if s := VerifyL4Checksum(f[p.L3Off:], false, p.Proto, f[p.L4Off:p.L4Off+p.L4Len]); s != ChecksumOK {
		t.Fatalf("verify an absent IPv4 UDP checksum: %d", s)
	}
	// In IPv6 a UDP checksum is mandatory (RFC 8200 8.1).
	f = testnet.Frame(t, testnet.FrameSpec{Src: testnet.Client6, Dst: testnet.Server6, Proto: testnet.ProtoUDP})
	ParsePacket(f, &p)
	binary.BigEndian.PutUint16(f[l4ChecksumOffset(&p):], 0)
	if s := VerifyL4Checksum(f[p.L3Off:], true, p.Proto, f[p.L4Off:p.L4Off+p.L4Len]); s != ChecksumBad {
		t.Fatalf("verify a zero IPv6 UDP checksum: %d", s)
	}
	// The IPv4 header checksum.
	f = testnet.Frame(t, testnet.FrameSpec{Src: testnet.Client4, Dst: testnet.Server4, Proto: testnet.ProtoTCP})
	if !IPv4HeaderChecksumOK(f[14:34]) {
		t.Fatal("IPv4 header checksum of a built frame")
	}
	f[14+8]-- // TTL
	if IPv4HeaderChecksumOK(f[14:34]) {
		t.Fatal("IPv4 header checksum after a change")
	}
	testnet.FixIPv4Checksum(f)
	if !IPv4HeaderChecksumOK(f[14:34]) {
		t.Fatal("testnet.FixIPv4Checksum")
	}
}

func BenchmarkParsePacket(b *testing.B) {
	f := testnet.Frame(b, testnet.FrameSpec{Src: testnet.Client4, Dst: testnet.Server4, Proto: testnet.ProtoTCP, Flags: testnet.ACK, Payload: make([]byte, 1400)})
	var p Packet
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		ParsePacket(f, &p)
	}
}

func BenchmarkChecksum1500(b *testing.B) {
	buf := make([]byte, 1500)
	b.SetBytes(1500)
	for i := 0; i < b.N; i++ {
		csumAdd(0, buf)
	}
}

// seedFrames are testnet's seeds and a frame with more extension headers
// than the parser follows.
func seedFrames(tb testing.TB) [][]byte {
	tb.Helper()
	tcp6 := testnet.Frame(tb, testnet.FrameSpec{Src: testnet.Client6, Dst: testnet.Server6, Proto: testnet.ProtoTCP, Flags: testnet.ACK, Seq: 3})
	return append(testnet.SeedFrames(tb), testnet.WithIPv6Ext(tcp6, optionHeaders(5)...))
}

func FuzzParsePacket(f *testing.F) {
	for _, s := range seedFrames(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		var p Packet
		k := ParsePacket(frame, &p)
		if k != KindIP {
			return
		}
		if p.L3Off < ethHeaderLen || p.L3Off >= len(frame) {
			t.Fatalf("l3 offset %d in %d bytes", p.L3Off, len(frame))
		}
		rk, rd := xdp.MakeFlowKey16(p.Dst, p.Src, p.DstPort, p.SrcPort, p.Proto)
		if rk != p.Key || (rd == p.Dir && !(p.Src == p.Dst && p.SrcPort == p.DstPort)) {
			t.Fatalf("key not symmetric: %v %v vs %v %v", p.Key, p.Dir, rk, rd)
		}
		if !p.Keyed {
			return
		}
		if p.L4Off <= p.L3Off || p.L4Off+p.L4Len > len(frame) {
			t.Fatalf("l4 %d+%d outside %d bytes", p.L4Off, p.L4Len, len(frame))
		}
		if p.Proto == protoTCP && (p.TCPHdr < tcpHeaderLen || p.TCPHdr > p.L4Len) {
			t.Fatalf("tcp header %d of %d", p.TCPHdr, p.L4Len)
		}
		c := append([]byte(nil), frame...)
		if CompletePartialChecksum(c, &p) && !l4ChecksumOK(c, &p) {
			t.Fatal("completed checksum does not verify")
		}
	})
}
