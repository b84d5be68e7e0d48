package xdp

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/deepwall/deepwall/internal/testnet"
)

// XDP return codes (enum xdp_action).
const (
	xdpAborted  = 0
	xdpDrop     = 1
	xdpPass     = 2
	xdpRedirect = 4
)

func actionName(a uint32) string {
	switch a {
	case xdpAborted:
		return "XDP_ABORTED"
	case xdpDrop:
		return "XDP_DROP"
	case xdpPass:
		return "XDP_PASS"
	case 3:
		return "XDP_TX"
	case xdpRedirect:
		return "XDP_REDIRECT"
	}
	return "?"
}

// tc return codes (linux/pkt_cls.h).
const (
	tcShot     = 2
	tcRedirect = 7
)

// tcShadow is the shadow pair of harnesses on the tc path. Only the port
// role runs in BPF_PROG_TEST_RUN (its skb comes from the loopback device);
// bpf_redirect checks no ifindex, so these need not exist.
var tcShadow = &Shadow{Near: 1000, Far: 1001}

// tcOutcome is the tc program's outcome at a port for a frame whose XDP
// outcome is (action, s): drop is TC_ACT_SHOT, a redirect to the peer is a
// redirect, and a frame for user space (a socket, or the fail policy) goes
// into the shadow pair instead, with no outcome counted yet.
func tcOutcome(action uint32, s Stats) (uint32, Stats) {
	switch action {
	case xdpDrop:
		action = tcShot
	case xdpRedirect:
		action = tcRedirect
	}
	// The far end's XDP program counts the outcome.
	s.ToUser, s.FailOpen, s.FailClosed = 0, 0, 0
	return action, s
}

// loIfindex is the ingress ifindex BPF_PROG_TEST_RUN reports without a
// context: the loopback device of the caller's namespace.
const loIfindex = 1

// harness is a program loaded without pins, configured for the loopback
// ingress of BPF_PROG_TEST_RUN.
type harness struct {
	tb testing.TB
	p  *Program
}

func newHarness(tb testing.TB, cfg PortConfig) *harness {
	tb.Helper()
	testnet.RequirePrivileged(tb)
	p, err := Load(Options{MaxFlows: 4096})
	if err != nil {
		tb.Fatalf("load: %v", err)
	}
	tb.Cleanup(func() { _ = p.Close() })
	if cfg.Peer == 0 {
		cfg.Peer = loIfindex
	}
	if err := p.SetPort(loIfindex, cfg); err != nil {
		tb.Fatalf("port config: %v", err)
	}
	return &harness{tb: tb, p: p}
}

// run runs the program once on frame and returns its action and what it
// added to the counters.
func (h *harness) run(frame []byte) (uint32, Stats) {
	h.tb.Helper()
	before := h.stats()
	ret, err := h.p.XDPProgram().Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		h.tb.Fatalf("prog run (%d bytes): %v", len(frame), err)
	}
	return ret, h.stats().sub(before)
}

// runTC runs the tc program once on frame, as the port's (tcx ingress),
// and returns its verdict and what it added to the counters. The kernel
// runs no skb program on a frame shorter than its Ethernet and IP headers
// (EINVAL): such a frame is judged as its XDP outcome says the tc program
// would (the parser is the same code).
func (h *harness) runTC(frame []byte) (uint32, Stats) {
	h.tb.Helper()
	before := h.stats()
	ret, err := h.p.objs.DeepwallTc.Run(&ebpf.RunOptions{Data: frame})
	if errors.Is(err, unix.EINVAL) && len(frame) < ethLen+ipv6Len {
		return tcOutcome(h.run(frame))
	}
	if err != nil {
		h.tb.Fatalf("tc prog run (%d bytes): %v", len(frame), err)
	}
	return ret, h.stats().sub(before)
}

func (h *harness) stats() Stats {
	h.tb.Helper()
	s, err := h.p.Stats()
	if err != nil {
		h.tb.Fatalf("stats: %v", err)
	}
	return s
}

func (h *harness) setACL(acl ACL) {
	h.tb.Helper()
	if err := h.p.SetACL(acl); err != nil {
		h.tb.Fatalf("set acl: %v", err)
	}
}

func (s Stats) sub(o Stats) Stats {
	a, b := s.counters(), o.counters()
	var d Stats
	dc := d.counters()
	for i := range a {
		*dc[i] = *a[i] - *b[i]
	}
	return d
}

func frame(tb testing.TB, src, dst netip.AddrPort, proto uint8, mod ...func(*testnet.FrameSpec)) []byte {
	tb.Helper()
	spec := testnet.FrameSpec{Src: src, Dst: dst, Proto: proto, Flags: testnet.ACK, Payload: []byte("payload")}
	switch proto {
	case testnet.ProtoICMPv6:
		// testnet's ICMPv6 layer is the 4-byte header: the echo id and
		// sequence come from the payload.
		spec.Payload = []byte{0x12, 0x34, 0x00, 0x01, 'p', 'i', 'n', 'g'}
	case protoSCTP:
		// testnet has no SCTP layer: the common header is the payload.
		hdr := binary.BigEndian.AppendUint16(nil, src.Port())
		hdr = binary.BigEndian.AppendUint16(hdr, dst.Port())
		spec.Payload = append(hdr, 0, 0, 0, 1, 0, 0, 0, 0, 'd', 'a', 't', 'a')
	}
	for _, m := range mod {
		m(&spec)
	}
	return testnet.Frame(tb, spec)
}

func arpFrame(tb testing.TB) []byte {
	tb.Helper()
	eth := &layers.Ethernet{SrcMAC: testnet.MACA, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP}
	arp := &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPRequest,
		SourceHwAddress: testnet.MACA, SourceProtAddress: testnet.Client4.Addr().AsSlice(),
		DstHwAddress: make([]byte, 6), DstProtAddress: testnet.Server4.Addr().AsSlice(),
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, eth, arp); err != nil {
		tb.Fatalf("arp frame: %v", err)
	}
	return buf.Bytes()
}

// lldpFrame is a minimal LLDPDU (chassis id, port id, ttl, end) to the
// nearest-bridge group address.
func lldpFrame() []byte {
	f := []byte{0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e}
	f = append(f, testnet.MACA...)
	f = append(f, 0x88, 0xcc)
	f = append(f, 0x02, 0x07, 0x04, 0x02, 0xdd, 0, 0, 0, 0x01) // chassis id: MAC
	f = append(f, 0x04, 0x02, 0x07, '1')                       // port id: local "1"
	f = append(f, 0x06, 0x02, 0x00, 0x78)                      // ttl 120
	f = append(f, 0x00, 0x00)                                  // end
	return f
}

const protoSCTP = 132

// Byte offsets in an untagged frame.
const (
	ethLen  = 14
	ipv4Len = 20
	ipv6Len = 40
)

// withTags inserts 802.1Q/802.1ad tags (outermost first) after the MACs.
func withTags(f []byte, tpids ...uint16) []byte {
	out := append([]byte{}, f[:12]...)
	for i, tpid := range tpids {
		out = binary.BigEndian.AppendUint16(out, tpid)
		out = binary.BigEndian.AppendUint16(out, uint16(100+i)) // VLAN id
	}
	return append(out, f[12:]...)
}

// withIPv4Options pads the IPv4 header of an untagged frame with n words
// of NOP options, fixing IHL and the total length.
func withIPv4Options(f []byte, words int) []byte {
	opts := make([]byte, 4*words)
	for i := range opts {
		opts[i] = 1 // NOP
	}
	out := append([]byte{}, f[:ethLen+ipv4Len]...)
	out = append(out, opts...)
	out = append(out, f[ethLen+ipv4Len:]...)
	ip := out[ethLen:]
	ip[0] = 0x40 | byte(5+words)
	binary.BigEndian.PutUint16(ip[2:], binary.BigEndian.Uint16(ip[2:])+uint16(len(opts)))
	return out
}

// patch returns a copy of f with fn applied.
func patch(f []byte, fn func([]byte)) []byte {
	out := append([]byte{}, f...)
	fn(out)
	return out
}
