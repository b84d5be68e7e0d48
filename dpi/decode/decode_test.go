package decode

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"unsafe"

	"github.com/deepwall/deepwall/internal/testnet"
	"github.com/deepwall/deepwall/xdp"
)

// within reports whether sub aliases memory inside frame.
func within(frame, sub []byte) bool {
	if len(sub) == 0 {
		return true
	}
	f0 := uintptr(unsafe.Pointer(unsafe.SliceData(frame)))
	s0 := uintptr(unsafe.Pointer(unsafe.SliceData(sub)))
	return s0 >= f0 && s0+uintptr(len(sub)) <= f0+uintptr(len(frame))
}

func TestDecodeBuiltFrames(t *testing.T) {
	payload := []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, tc := range []struct {
		name string
		spec testnet.FrameSpec
		want Packet // fields checked: IPVersion, Proto, ports, TCP, ICMP, VLAN, Flags
	}{
		{"tcp4", testnet.FrameSpec{Src: testnet.Client4, Dst: testnet.Server4, Proto: testnet.ProtoTCP, Flags: testnet.PSH | testnet.ACK, Seq: 1000, Ack: 2000, Window: 512, Payload: payload},
			Packet{IPVersion: 4, Proto: 6, SrcPort: 40000, DstPort: 80, Seq: 1000, Ack: 2000, TCPFlags: TCPPsh | TCPAck, Window: 512, Flags: FlagL4}},
		{"tcp4 reply", testnet.FrameSpec{Src: testnet.Server4, Dst: testnet.Client4, Proto: testnet.ProtoTCP, Flags: testnet.SYN | testnet.ACK, Seq: 7},
			Packet{IPVersion: 4, Proto: 6, SrcPort: 80, DstPort: 40000, Seq: 7, TCPFlags: TCPSyn | TCPAck, Window: 65535, Flags: FlagL4}},
		{"tcp6", testnet.FrameSpec{Src: testnet.Client6, Dst: testnet.Server6, Proto: testnet.ProtoTCP, Flags: testnet.SYN, Seq: 0xfffffff0, Payload: payload},
			Packet{IPVersion: 6, Proto: 6, SrcPort: 40000, DstPort: 80, Seq: 0xfffffff0, TCPFlags: TCPSyn, Window: 65535, Flags: FlagL4}},
		{"tcp4 port 53 stays raw", testnet.FrameSpec{Src: testnet.Client4, Dst: netip.AddrPortFrom(testnet.Server4.Addr(), 53), Proto: testnet.ProtoTCP, Flags: testnet.ACK, Payload: payload},
			Packet{IPVersion: 4, Proto: 6, SrcPort: 40000, DstPort: 53, TCPFlags: TCPAck, Window: 65535, Flags: FlagL4}},
		{"udp4 vlan", testnet.FrameSpec{Src: testnet.Client4, Dst: testnet.Server4, Proto: testnet.ProtoUDP, VLAN: 42, Payload: payload},
			Packet{IPVersion: 4, Proto: 17, SrcPort: 40000, DstPort: 80, VLAN: 42, Flags: FlagL4 | FlagVLAN}},
		{"udp4 vxlan port stays raw", testnet.FrameSpec{Src: testnet.Client4, Dst: netip.AddrPortFrom(testnet.Server4.Addr(), 4789), Proto: testnet.ProtoUDP, Payload: payload},
			Packet{IPVersion: 4, Proto: 17, SrcPort: 40000, DstPort: 4789, Flags: FlagL4}},
		{"udp6", testnet.FrameSpec{Src: testnet.Client6, Dst: testnet.Server6, Proto: testnet.ProtoUDP, Payload: payload},
			Packet{IPVersion: 6, Proto: 17, SrcPort: 40000, DstPort: 80, Flags: FlagL4}},
		{"icmp4 echo", testnet.FrameSpec{Src: testnet.Client4, Dst: testnet.Server4, Proto: testnet.ProtoICMP, Payload: payload},
			Packet{IPVersion: 4, Proto: 1, SrcPort: 1, DstPort: 1, ICMPType: 8, Flags: FlagL4}},
		{"icmp4 unreachable", testnet.FrameSpec{Src: testnet.Client4, Dst: testnet.Server4, Proto: testnet.ProtoICMP, ICMPType: 3, ICMPCode: 1},
			Packet{IPVersion: 4, Proto: 1, ICMPType: 3, ICMPCode: 1, Flags: FlagL4}},
		{"icmp6 echo", testnet.FrameSpec{Src: testnet.Client6, Dst: testnet.Server6, Proto: testnet.ProtoICMPv6, Payload: []byte{0, 9, 0, 1, 'x'}},
			Packet{IPVersion: 6, Proto: 58, SrcPort: 9, DstPort: 9, ICMPType: 128, Flags: FlagL4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frame := testnet.Frame(t, tc.spec)
			d := NewDecoder()
			var p Packet
			if err := d.Decode(frame, &p); err != nil {
				t.Fatalf("decode: %v", err)
			}
			w := tc.want
			if p.IPVersion != w.IPVersion || p.Proto != w.Proto || p.SrcPort != w.SrcPort || p.DstPort != w.DstPort ||
				p.Seq != w.Seq || p.Ack != w.Ack || p.TCPFlags != w.TCPFlags || p.Window != w.Window ||
				p.ICMPType != w.ICMPType || p.ICMPCode != w.ICMPCode || p.VLAN != w.VLAN || p.Flags != w.Flags {
				t.Errorf("got  %+v\nwant %+v", p, w)
			}
			src, dst := tc.spec.Src.Addr().As16(), tc.spec.Dst.Addr().As16()
			if p.Src != src || p.Dst != dst {
				t.Errorf("addresses %x %x, want %x %x", p.Src, p.Dst, src, dst)
			}
			wk, wd := xdp.MakeFlowKey16(src, dst, w.SrcPort, w.DstPort, w.Proto)
			if p.Key != wk || p.Dir != wd {
				t.Errorf("key %v dir %v, want %v %v", p.Key, p.Dir, wk, wd)
			}
			// ICMPv4: the body after the 8-byte header; ICMPv6: after the
			// 4-byte header, so the echo id and sequence are part of it.
			wantPayload := tc.spec.Payload
			if !bytes.Equal(p.Payload, wantPayload) {
				t.Errorf("payload %q, want %q", p.Payload, wantPayload)
			}
			if !within(frame, p.Payload) {
				t.Error("payload was copied out of the frame")
			}
			if len(p.Payload) > 0 && &frame[p.PayloadOff] != &p.Payload[0] {
				t.Errorf("PayloadOff %d does not point at the payload", p.PayloadOff)
			}
			if p.FrameLen != len(frame) {
				t.Errorf("FrameLen %d, want %d", p.FrameLen, len(frame))
			}
			ipOff := 14
			if tc.spec.VLAN != 0 {
				ipOff = 18
			}
			if p.L3Off != ipOff || frame[p.L3Off]>>4 != p.IPVersion {
				t.Errorf("L3Off %d, want %d", p.L3Off, ipOff)
			}
			if p.L4Off <= p.L3Off {
				t.Errorf("L4Off %d not after L3Off %d", p.L4Off, p.L3Off)
			}
		})
	}
}

// hand-built frames: fragments, extension headers, tunnels, options.
func TestDecodeRawFrames(t *testing.T) {
	tcpSeg := testnet.RawTCP(0x18, 5, nil, []byte("data"))
	mptcp := []byte{30, 20, 0x20, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16} // DSS
	synOpts := []byte{2, 4, 0x05, 0xb4, 1, 3, 3, 7, 4, 2, 0, 0}                                // MSS 1460, NOP, WS 7, SACKOK, EOL pad
	for _, tc := range []struct {
		name  string
		frame []byte
		check func(t *testing.T, p *Packet)
	}{
		{"ipv4 first fragment", testnet.RawEth(0x0800, testnet.RawIPv4(6, 0x2000, 77, tcpSeg)), func(t *testing.T, p *Packet) {
			want(t, p.Flags&FlagFragment != 0 && p.Flags&FlagL4 == 0, "fragment without L4: %v", p.Flags)
			want(t, p.Frag == Fragment{ID: 77, Offset: 0, More: true}, "frag %+v", p.Frag)
			want(t, p.Proto == 6 && p.SrcPort == 0 && p.DstPort == 0, "proto %d ports %d %d", p.Proto, p.SrcPort, p.DstPort)
			want(t, bytes.Equal(p.Payload, tcpSeg), "payload is the fragment data")
		}},
		{"ipv4 later fragment", testnet.RawEth(0x0800, testnet.RawIPv4(17, 185, 78, []byte("tail of datagram"))), func(t *testing.T, p *Packet) {
			want(t, p.Frag == Fragment{ID: 78, Offset: 1480, More: false}, "frag %+v", p.Frag)
			want(t, p.Flags&FlagFragment != 0, "flags %v", p.Flags)
		}},
		{"ipv6 fragment", testnet.RawEth(0x86dd, testnet.RawIPv6(44, testnet.RawFrag6(6, 0, true, 99, tcpSeg))), func(t *testing.T, p *Packet) {
			want(t, p.Flags&FlagFragment != 0 && p.Frag == Fragment{ID: 99, More: true}, "frag %+v flags %v", p.Frag, p.Flags)
			want(t, p.Proto == 6 && p.Flags&FlagL4 == 0, "proto %d", p.Proto)
			want(t, bytes.Equal(p.Payload, tcpSeg), "payload is the fragment data")
		}},
		{"ipv6 atomic fragment", testnet.RawEth(0x86dd, testnet.RawIPv6(44, testnet.RawFrag6(6, 0, false, 99, tcpSeg))), func(t *testing.T, p *Packet) {
			want(t, p.Flags&FlagAtomicFrag != 0 && p.Flags&FlagFragment == 0 && p.Flags&FlagL4 != 0, "flags %v", p.Flags)
			want(t, string(p.Payload) == "data", "payload %q", p.Payload)
		}},
		{"ipv6 hop-by-hop, routing, dest opts", testnet.RawEth(0x86dd, testnet.RawIPv6(0, testnet.RawExt(43, testnet.RawExt(60, testnet.RawExt(6, tcpSeg))))), func(t *testing.T, p *Packet) {
			want(t, p.Flags&FlagExtHeaders != 0 && p.Flags&FlagL4 != 0, "flags %v", p.Flags)
			want(t, p.Proto == 6 && p.SrcPort == 40000 && string(p.Payload) == "data", "proto %d port %d payload %q", p.Proto, p.SrcPort, p.Payload)
		}},
		{"ipv6 authentication header", testnet.RawEth(0x86dd, testnet.RawIPv6(51, testnet.RawAH(6, tcpSeg))), func(t *testing.T, p *Packet) {
			want(t, p.Proto == 6 && p.SrcPort == 40000 && p.Flags&FlagL4 != 0 && string(p.Payload) == "data", "proto %d port %d payload %q", p.Proto, p.SrcPort, p.Payload)
		}},
		{"ipv4 authentication header is not followed", testnet.RawEth(0x0800, testnet.RawIPv4(51, 0, 1, testnet.RawAH(6, tcpSeg))), func(t *testing.T, p *Packet) {
			want(t, p.Proto == 51 && p.Flags&FlagL4 == 0 && p.SrcPort == 0, "proto %d flags %v", p.Proto, p.Flags)
		}},
		{"icmpv6 neighbour solicitation", testnet.RawEth(0x86dd, testnet.RawIPv6(58, append([]byte{135, 0, 0, 0}, make([]byte, 20)...))), func(t *testing.T, p *Packet) {
			want(t, p.Flags&FlagNDP != 0 && p.ICMPType == 135, "flags %v type %d", p.Flags, p.ICMPType)
		}},
		{"ipv6 no next header", testnet.RawEth(0x86dd, testnet.RawIPv6(59, make([]byte, 8))), func(t *testing.T, p *Packet) {
			want(t, p.IPVersion == 6 && p.Proto == 59 && p.Flags&FlagL4 == 0, "proto %d flags %v", p.Proto, p.Flags)
		}},
		{"ipip is not followed", testnet.RawEth(0x0800, testnet.RawIPv4(4, 0, 1, testnet.RawIPv4(6, 0, 2, tcpSeg))), func(t *testing.T, p *Packet) {
			want(t, p.Proto == 4 && p.Flags&FlagL4 == 0, "proto %d flags %v", p.Proto, p.Flags)
			want(t, p.Src == testnet.Client4.Addr().As16(), "outer source kept")
			want(t, len(p.Payload) == 20+len(tcpSeg), "payload is the inner packet")
		}},
		{"gre", testnet.RawEth(0x0800, testnet.RawIPv4(47, 0, 1, []byte{0, 0, 0x08, 0})), func(t *testing.T, p *Packet) {
			want(t, p.Proto == 47 && p.Key.Proto == 47 && p.Key.PortLo == 0, "proto %d key %v", p.Proto, p.Key)
		}},
		{"qinq", testnet.RawEth(0x88a8, testnet.RawVLAN(100, 0x8100, testnet.RawVLAN(200, 0x0800, testnet.RawIPv4(17, 0, 1, testnet.RawUDP(1, 2, []byte("q")))))), func(t *testing.T, p *Packet) {
			want(t, p.VLAN == 100 && p.Flags&FlagVLAN != 0 && p.EtherType == 0x0800, "vlan %d ethertype %#x", p.VLAN, p.EtherType)
			want(t, string(p.Payload) == "q", "payload %q", p.Payload)
		}},
		{"arp", testnet.RawEth(0x0806, make([]byte, 28)), func(t *testing.T, p *Packet) {
			want(t, p.IPVersion == 0 && p.EtherType == 0x0806 && p.Payload == nil, "%v", p)
		}},
		{"ethernet padding trimmed", append(testnet.RawEth(0x0800, testnet.RawIPv4(17, 0, 1, testnet.RawUDP(1, 2, []byte("ab")))), make([]byte, 16)...), func(t *testing.T, p *Packet) {
			want(t, string(p.Payload) == "ab", "payload %q", p.Payload)
		}},
		{"tcp syn options", testnet.RawEth(0x0800, testnet.RawIPv4(6, 0, 1, testnet.RawTCP(0x02, 1, synOpts, nil))), func(t *testing.T, p *Packet) {
			want(t, p.MSS == 1460 && p.WScale == 7 && p.SACKOK, "mss %d ws %d sack %v", p.MSS, p.WScale, p.SACKOK)
			want(t, p.TCPFlags == TCPSyn && len(p.Payload) == 0 && p.PayloadOff == 0, "flags %v payload %d", p.TCPFlags, len(p.Payload))
		}},
		{"tcp mptcp option", testnet.RawEth(0x0800, testnet.RawIPv4(6, 0, 1, testnet.RawTCP(0x10, 1, mptcp, []byte("m")))), func(t *testing.T, p *Packet) {
			want(t, p.WScale == -1 && string(p.Payload) == "m", "ws %d payload %q", p.WScale, p.Payload)
		}},
		{"tcp bad option length ends options", testnet.RawEth(0x0800, testnet.RawIPv4(6, 0, 1, testnet.RawTCP(0x02, 1, []byte{2, 9, 0, 0}, nil))), func(t *testing.T, p *Packet) {
			want(t, p.MSS == 0 && p.Flags&FlagL4 != 0, "mss %d", p.MSS)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p Packet
			if err := NewDecoder().Decode(tc.frame, &p); err != nil {
				t.Fatalf("decode: %v", err)
			}
			tc.check(t, &p)
			if p.IPVersion != 0 {
				wk, wd := xdp.MakeFlowKey16(p.Src, p.Dst, p.SrcPort, p.DstPort, p.Proto)
				want(t, p.Key == wk && p.Dir == wd, "key %v, want %v", p.Key, wk)
			}
			want(t, within(tc.frame, p.Payload), "payload copied")
		})
	}
}

func want(t *testing.T, ok bool, format string, args ...any) {
	t.Helper()
	if !ok {
		t.Errorf(format, args...)
	}
}

func TestDecodeErrors(t *testing.T) {
	tcpSeg := testnet.RawTCP(0x18, 5, nil, []byte("data"))
	badIHL := testnet.RawIPv4(6, 0, 1, tcpSeg)
	badIHL[0] = 0x43
	v6inv4 := testnet.RawIPv4(6, 0, 1, tcpSeg)
	v6inv4[0] = 0x65
	longV4 := testnet.RawIPv4(6, 0, 1, tcpSeg)
	binary.BigEndian.PutUint16(longV4[2:], uint16(len(longV4)+10))
	badOff := testnet.RawTCP(0x18, 5, nil, nil)
	badOff[12] = 0x40
	bigOff := testnet.RawTCP(0x18, 5, nil, nil)
	bigOff[12] = 0xf0
	badUDP := testnet.RawUDP(1, 2, []byte("x"))
	binary.BigEndian.PutUint16(badUDP[4:], 3)
	longUDP := testnet.RawUDP(1, 2, []byte("x"))
	binary.BigEndian.PutUint16(longUDP[4:], 100)
	// a chain of MaxExtHeaders+1 destination-options headers ending in TCP
	var manyExt []byte
	manyExt = tcpSeg
	nh := uint8(6)
	for range MaxExtHeaders + 1 {
		manyExt = testnet.RawExt(nh, manyExt)
		nh = 60
	}
	for _, tc := range []struct {
		name   string
		frame  []byte
		reason Reason
	}{
		{"empty", nil, ReasonShort},
		{"13 bytes", make([]byte, 13), ReasonShort},
		{"ipv4 ethertype, nothing after", testnet.RawEth(0x0800, nil), ReasonTruncated},
		{"vlan ethertype, nothing after", testnet.RawEth(0x8100, nil), ReasonTruncated},
		{"short ipv4 header", testnet.RawEth(0x0800, make([]byte, 10)), ReasonTruncated},
		{"ipv4 ihl 3", testnet.RawEth(0x0800, badIHL), ReasonMalformed},
		{"version 6 in ipv4 ethertype", testnet.RawEth(0x0800, v6inv4), ReasonVersion},
		{"version 4 in ipv6 ethertype", testnet.RawEth(0x86dd, testnet.RawIPv4(6, 0, 1, append(tcpSeg, make([]byte, 20)...))), ReasonVersion},
		{"ipv4 total length past frame", testnet.RawEth(0x0800, longV4), ReasonTruncated},
		{"ipv4 announces tcp, has none", testnet.RawEth(0x0800, testnet.RawIPv4(6, 0, 1, nil)), ReasonMissingL4},
		{"ipv6 extension header announces tcp, has none", testnet.RawEth(0x86dd, testnet.RawIPv6(60, testnet.RawExt(6, nil))), ReasonMissingL4},
		{"ipv6 payload length 0", testnet.RawEth(0x86dd, testnet.RawIPv6(17, nil)), ReasonMalformed},
		{"icmpv6 shorter than 8 bytes", testnet.RawEth(0x86dd, testnet.RawIPv6(58, []byte{1, 0, 0, 0, 0, 0})), ReasonTruncated},
		{"ipv6 payload length past frame", testnet.RawEth(0x86dd, testnet.RawIPv6(6, tcpSeg)[:50]), ReasonTruncated},
		{"tcp data offset 4", testnet.RawEth(0x0800, testnet.RawIPv4(6, 0, 1, badOff)), ReasonMalformed},
		{"tcp data offset past packet", testnet.RawEth(0x0800, testnet.RawIPv4(6, 0, 1, bigOff)), ReasonTruncated},
		{"tcp header cut", testnet.RawEth(0x0800, testnet.RawIPv4(6, 0, 1, tcpSeg[:12])), ReasonTruncated},
		{"udp length 3", testnet.RawEth(0x0800, testnet.RawIPv4(17, 0, 1, badUDP)), ReasonMalformed},
		{"udp length past packet", testnet.RawEth(0x0800, testnet.RawIPv4(17, 0, 1, longUDP)), ReasonTruncated},
		{"icmp6 echo without id", testnet.RawEth(0x86dd, testnet.RawIPv6(58, []byte{128, 0, 0, 0, 1})), ReasonTruncated},
		{"three vlan tags", testnet.RawEth(0x8100, testnet.RawVLAN(1, 0x8100, testnet.RawVLAN(2, 0x8100, testnet.RawVLAN(3, 0x0800, testnet.RawIPv4(17, 0, 1, testnet.RawUDP(1, 2, nil)))))), ReasonTooManyVLANs},
		{"too many extension headers", testnet.RawEth(0x86dd, testnet.RawIPv6(60, manyExt)), ReasonTooManyExt},
		{"late hop-by-hop", testnet.RawEth(0x86dd, testnet.RawIPv6(60, testnet.RawExt(0, testnet.RawExt(6, tcpSeg)))), ReasonHopByHopOrder},
		{"extension header cut", testnet.RawEth(0x86dd, testnet.RawIPv6(60, []byte{6, 1, 0, 0, 0, 0, 0, 0})), ReasonTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p Packet
			err := NewDecoder().Decode(tc.frame, &p)
			var de *Error
			if !errors.As(err, &de) {
				t.Fatalf("err = %v, want *Error %v", err, tc.reason)
			}
			if de.Reason != tc.reason {
				t.Errorf("reason %v (%v), want %v", de.Reason, err, tc.reason)
			}
			if !errors.Is(err, reasonErr[tc.reason]) {
				t.Errorf("errors.Is(%v, %v) = false", err, reasonErr[tc.reason])
			}
			if err.Error() == "" {
				t.Error("empty message")
			}
		})
	}
}

// Every prefix of a valid frame that cuts into the IP packet is an error,
// never a silently shorter payload.
func TestDecodeTruncations(t *testing.T) {
	d := NewDecoder()
	for _, frame := range testnet.SeedFrames(t) {
		var p Packet
		if err := d.Decode(frame, &p); err != nil {
			t.Fatalf("full frame: %v", err)
		}
		if p.IPVersion == 0 {
			continue
		}
		ipEnd := ipEndOf(frame, p.L3Off)
		for n := 0; n < ipEnd; n++ {
			err := d.Decode(frame[:n], &p)
			if err == nil {
				t.Errorf("%s: prefix %d/%d decoded without error: %v", p.Key, n, ipEnd, &p)
				continue
			}
			var de *Error
			if !errors.As(err, &de) || (de.Reason != ReasonShort && de.Reason != ReasonTruncated && de.Reason != ReasonMissingL4) {
				t.Errorf("prefix %d: %v, want a truncation reason", n, err)
			}
		}
	}
}

// ipEndOf returns the offset of the end of the IP packet in frame.
func ipEndOf(frame []byte, l3 int) int {
	if frame[l3]>>4 == 4 {
		return l3 + int(binary.BigEndian.Uint16(frame[l3+2:]))
	}
	return l3 + 40 + int(binary.BigEndian.Uint16(frame[l3+4:]))
}

func TestDecodeNoAllocs(t *testing.T) {
	d := NewDecoder()
	var p Packet
	for _, frame := range testnet.SeedFrames(t) {
		if err := d.Decode(frame, &p); err != nil {
			t.Fatalf("decode: %v", err)
		}
		if n := testing.AllocsPerRun(200, func() { _ = d.Decode(frame, &p) }); n != 0 {
			t.Errorf("%v: %.1f allocations per frame, want 0", &p, n)
		}
	}
	// errors of this package's own layers do not allocate either
	for _, frame := range [][]byte{nil, testnet.RawEth(0x0800, testnet.RawIPv4(6, 0, 1, nil)), testnet.RawEth(0x86dd, testnet.RawIPv6(6, nil)[:30])} {
		if n := testing.AllocsPerRun(200, func() { _ = d.Decode(frame, &p) }); n != 0 {
			t.Errorf("error path for %d-byte frame: %.1f allocations, want 0", len(frame), n)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, frame := range testnet.SeedFrames(f) {
		f.Add(frame)
		for _, n := range []int{13, 14, 20, 34, 40, 54, len(frame) - 1} {
			if n >= 0 && n < len(frame) {
				f.Add(frame[:n])
			}
		}
	}
	d := NewDecoder()
	f.Fuzz(func(t *testing.T, frame []byte) {
		var p Packet
		err := d.Decode(frame, &p)
		if err != nil {
			var de *Error
			if !errors.As(err, &de) || de.Reason == 0 || int(de.Reason) >= len(reasonErr) {
				t.Fatalf("error %v is not a *Error with a reason", err)
			}
			_ = err.Error()
			return
		}
		if p.FrameLen != len(frame) {
			t.Fatalf("FrameLen %d != %d", p.FrameLen, len(frame))
		}
		if p.IPVersion == 0 {
			return
		}
		if p.IPVersion != 4 && p.IPVersion != 6 {
			t.Fatalf("IPVersion %d", p.IPVersion)
		}
		if !within(frame, p.Payload) {
			t.Fatal("payload outside the frame")
		}
		if len(p.Payload) > 0 && (p.PayloadOff+len(p.Payload) > len(frame) || &frame[p.PayloadOff] != &p.Payload[0]) {
			t.Fatalf("PayloadOff %d wrong", p.PayloadOff)
		}
		if p.L3Off < 14 || p.L3Off >= len(frame) || (p.Flags&FlagL4 != 0 && p.L4Off <= p.L3Off) {
			t.Fatalf("offsets L3 %d L4 %d", p.L3Off, p.L4Off)
		}
		wk, wd := xdp.MakeFlowKey16(p.Src, p.Dst, p.SrcPort, p.DstPort, p.Proto)
		if p.Key != wk || p.Dir != wd {
			t.Fatalf("key %v, want %v", p.Key, wk)
		}
		if p.Flags&FlagFragment != 0 && (p.Flags&FlagL4 != 0 || p.SrcPort != 0) {
			t.Fatalf("fragment with transport fields: %v", &p)
		}
		if p.Flags&FlagL4 == 0 && p.Flags&FlagFragment == 0 && hasL4(p.IPVersion, p.Proto) {
			t.Fatalf("transport header announced, not decoded, no error: %v", &p)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	pl := bytes.Repeat([]byte("x"), 512)
	for _, bc := range []struct {
		name string
		spec testnet.FrameSpec
	}{
		{"tcp4-512B", testnet.FrameSpec{Src: testnet.Client4, Dst: testnet.Server4, Proto: testnet.ProtoTCP, Flags: testnet.ACK | testnet.PSH, Payload: pl}},
		{"tcp6-512B", testnet.FrameSpec{Src: testnet.Client6, Dst: testnet.Server6, Proto: testnet.ProtoTCP, Flags: testnet.ACK | testnet.PSH, Payload: pl}},
		{"udp4-vlan-512B", testnet.FrameSpec{Src: testnet.Client4, Dst: testnet.Server4, Proto: testnet.ProtoUDP, VLAN: 5, Payload: pl}},
		{"tcp4-ack", testnet.FrameSpec{Src: testnet.Client4, Dst: testnet.Server4, Proto: testnet.ProtoTCP, Flags: testnet.ACK}},
	} {
		frame, err := testnet.BuildFrame(bc.spec)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bc.name, func(b *testing.B) {
			d := NewDecoder()
			var p Packet
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			for b.Loop() {
				if err := d.Decode(frame, &p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
