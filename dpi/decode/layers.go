package decode

import (
	"encoding/binary"
	"errors"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// The wrappers below adapt gopacket layers so that the parser stops at the
// transport payload (no port-based guessing, no tunnels) and so that the
// repeated layers (VLAN tags, IPv6 extension headers) are bounded.

// IP protocol numbers the decoder dispatches on.
const (
	protoHopByHop = 0
	protoICMPv4   = 1
	protoTCP      = 6
	protoUDP      = 17
	protoRouting  = 43
	protoFragment = 44
	protoAH       = 51
	protoICMPv6   = 58
	protoDestOpts = 60
	protoSCTP     = 132
)

// sctpCommonLen is SCTP's common header: ports first, as in UDP, then the
// verification tag and checksum. The decoder reads only the ports, so SCTP
// flows get the same key the kernel gives them.
const sctpCommonLen = 12

// errJumbo: an IPv6 payload length of 0 announces a jumbogram, which
// cannot occur on deepwall's links; the kernel's parser rejects it too.
var errJumbo = errors.New("ipv6 payload length 0 (jumbogram)")

// ipv6ExtClass is the set of extension headers skipped generically; fragment
// headers have their own layer because their fields matter.
var ipv6ExtClass = gopacket.NewLayerClass([]gopacket.LayerType{
	layers.LayerTypeIPv6HopByHop, layers.LayerTypeIPv6Routing, layers.LayerTypeIPv6Destination,
})

type dot1qLayer struct {
	layers.Dot1Q
	d *Decoder
}

func (l *dot1qLayer) DecodeFromBytes(data []byte, df gopacket.DecodeFeedback) error {
	if l.d.vlans >= MaxVLANTags {
		return ErrTooManyVLANs
	}
	if err := l.Dot1Q.DecodeFromBytes(data, df); err != nil {
		return err
	}
	if l.d.vlans == 0 {
		l.d.vlanID = l.VLANIdentifier
	}
	l.d.vlans++
	return nil
}

type ipv4Layer struct {
	layers.IPv4
}

func (l *ipv4Layer) DecodeFromBytes(data []byte, df gopacket.DecodeFeedback) error {
	if len(data) < 20 {
		df.SetTruncated()
		return ErrTruncated
	}
	if data[0]>>4 != 4 {
		return ErrVersion
	}
	if binary.BigEndian.Uint16(data[2:4]) < 20 {
		// gopacket reads a total length of 0 as "TSO, use the frame
		// length"; such frames never reach deepwall and the kernel's
		// parser rejects them.
		return ErrMalformed
	}
	return l.IPv4.DecodeFromBytes(data, df)
}

func (l *ipv4Layer) fragmented() bool {
	return l.Flags&layers.IPv4MoreFragments != 0 || l.FragOffset != 0
}

func (l *ipv4Layer) NextLayerType() gopacket.LayerType {
	if l.fragmented() {
		return gopacket.LayerTypeFragment
	}
	switch l.Protocol {
	case protoTCP:
		return layers.LayerTypeTCP
	case protoUDP:
		return layers.LayerTypeUDP
	case protoICMPv4:
		return layers.LayerTypeICMPv4
	}
	return gopacket.LayerTypeZero
}

// ipv6Layer decodes the fixed IPv6 header. It replaces layers.IPv6, which
// decodes hop-by-hop options into freshly allocated structs on every packet;
// here the hop-by-hop header is skipped like the other extension headers.
// Jumbograms (payload length 0 with a jumbo option) cannot occur on the
// links deepwall serves; a zero payload length means an empty payload.
type ipv6Layer struct {
	contents, payload []byte
	nextHeader        uint8
	hopLimit          uint8
	src, dst          []byte
}

func (l *ipv6Layer) CanDecode() gopacket.LayerClass    { return layers.LayerTypeIPv6 }
func (l *ipv6Layer) LayerPayload() []byte              { return l.payload }
func (l *ipv6Layer) NextLayerType() gopacket.LayerType { return next6(l.nextHeader) }

func (l *ipv6Layer) DecodeFromBytes(data []byte, df gopacket.DecodeFeedback) error {
	if len(data) < 40 {
		df.SetTruncated()
		return ErrTruncated
	}
	if data[0]>>4 != 6 {
		return ErrVersion
	}
	plen := int(binary.BigEndian.Uint16(data[4:6]))
	if plen == 0 {
		return errJumbo
	}
	end := 40 + plen
	if end > len(data) {
		df.SetTruncated()
		return ErrTruncated
	}
	l.contents, l.payload = data[:40], data[40:end]
	l.nextHeader = data[6]
	l.hopLimit = data[7]
	l.src, l.dst = data[8:24], data[24:40]
	return nil
}

// next6 maps an IPv6 next-header value to the layer the parser decodes
// next; anything else ends decoding with the value reported as Proto.
func next6(nh uint8) gopacket.LayerType {
	switch nh {
	case protoTCP:
		return layers.LayerTypeTCP
	case protoUDP:
		return layers.LayerTypeUDP
	case protoICMPv6:
		return layers.LayerTypeICMPv6
	case protoHopByHop:
		return layers.LayerTypeIPv6HopByHop
	case protoRouting:
		return layers.LayerTypeIPv6Routing
	case protoDestOpts:
		return layers.LayerTypeIPv6Destination
	case protoFragment:
		return layers.LayerTypeIPv6Fragment
	case protoAH:
		return layers.LayerTypeIPSecAH
	}
	return gopacket.LayerTypeZero
}

type extLayer struct {
	layers.IPv6ExtensionSkipper
	d *Decoder
}

func (l *extLayer) CanDecode() gopacket.LayerClass { return ipv6ExtClass }

func (l *extLayer) DecodeFromBytes(data []byte, df gopacket.DecodeFeedback) error {
	if err := l.d.countExt(); err != nil {
		return err
	}
	if len(data) < 2 || len(data) < (int(data[1])+1)*8 {
		df.SetTruncated()
		return ErrTruncated
	}
	return l.IPv6ExtensionSkipper.DecodeFromBytes(data, df)
}

func (l *extLayer) NextLayerType() gopacket.LayerType { return l.d.nextExt(uint8(l.NextHeader)) }

// countExt counts one more extension header against MaxExtHeaders.
func (d *Decoder) countExt() error {
	if d.exts >= MaxExtHeaders {
		return ErrTooManyExt
	}
	d.exts++
	return nil
}

// nextExt is next6 for the header after an extension header, where
// hop-by-hop is out of order (RFC 8200 4.1: only directly after the IPv6
// header).
func (d *Decoder) nextExt(nh uint8) gopacket.LayerType {
	if nh == protoHopByHop {
		d.lateHopByHop = true
		return gopacket.LayerTypeZero
	}
	return next6(nh)
}

// ahLayer skips an IPv6 authentication header to the protocol it protects,
// as the kernel's flow key does (AH in IPv4 is not followed: neither does
// the kernel).
type ahLayer struct {
	layers.IPSecAH
	d *Decoder
}

func (l *ahLayer) DecodeFromBytes(data []byte, df gopacket.DecodeFeedback) error {
	if err := l.d.countExt(); err != nil {
		return err
	}
	return l.IPSecAH.DecodeFromBytes(data, df)
}

func (l *ahLayer) NextLayerType() gopacket.LayerType { return l.d.nextExt(uint8(l.NextHeader)) }

type frag6Layer struct {
	layers.IPv6Fragment
	d *Decoder
}

func (l *frag6Layer) DecodeFromBytes(data []byte, df gopacket.DecodeFeedback) error {
	if err := l.d.countExt(); err != nil {
		return err
	}
	return l.IPv6Fragment.DecodeFromBytes(data, df)
}

func (l *frag6Layer) fragmented() bool { return l.FragmentOffset != 0 || l.MoreFragments }

func (l *frag6Layer) NextLayerType() gopacket.LayerType {
	if l.fragmented() {
		return gopacket.LayerTypeFragment
	}
	return l.d.nextExt(uint8(l.NextHeader))
}

// tcpLayer decodes a TCP header and the options the stream layer uses. It
// replaces layers.TCP, which allocates for every MPTCP option (present on
// every segment of an MPTCP connection). Malformed options end option
// parsing without failing the packet, as in Linux's tcp_parse_options.
type tcpLayer struct {
	contents, payload []byte
	srcPort, dstPort  uint16
	seq, ack          uint32
	flags             TCPFlags
	window            uint16
	mss               uint16
	wscale            int8
	sackOK            bool
}

func (l *tcpLayer) CanDecode() gopacket.LayerClass    { return layers.LayerTypeTCP }
func (l *tcpLayer) LayerPayload() []byte              { return l.payload }
func (l *tcpLayer) NextLayerType() gopacket.LayerType { return gopacket.LayerTypePayload }

func (l *tcpLayer) DecodeFromBytes(data []byte, df gopacket.DecodeFeedback) error {
	if len(data) < 20 {
		df.SetTruncated()
		return ErrTruncated
	}
	off := int(data[12]>>4) * 4
	if off < 20 {
		return ErrMalformed
	}
	if off > len(data) {
		df.SetTruncated()
		return ErrTruncated
	}
	l.srcPort = binary.BigEndian.Uint16(data[0:2])
	l.dstPort = binary.BigEndian.Uint16(data[2:4])
	l.seq = binary.BigEndian.Uint32(data[4:8])
	l.ack = binary.BigEndian.Uint32(data[8:12])
	l.flags = TCPFlags(data[13])
	l.window = binary.BigEndian.Uint16(data[14:16])
	l.contents, l.payload = data[:off], data[off:]
	l.mss, l.wscale, l.sackOK = 0, -1, false
	opts := data[20:off]
	for len(opts) > 0 {
		kind := opts[0]
		if kind == 0 { // end of option list
			break
		}
		if kind == 1 { // nop
			opts = opts[1:]
			continue
		}
		if len(opts) < 2 || opts[1] < 2 || int(opts[1]) > len(opts) {
			break
		}
		n := int(opts[1])
		switch {
		case kind == 2 && n == 4:
			l.mss = binary.BigEndian.Uint16(opts[2:4])
		case kind == 3 && n == 3:
			l.wscale = int8(min(opts[2], 14)) // RFC 7323 2.3: larger values mean 14
		case kind == 4 && n == 2:
			l.sackOK = true
		}
		opts = opts[n:]
	}
	return nil
}

type udpLayer struct{ layers.UDP }

func (l *udpLayer) NextLayerType() gopacket.LayerType { return gopacket.LayerTypePayload }

type icmp4Layer struct{ layers.ICMPv4 }

func (l *icmp4Layer) NextLayerType() gopacket.LayerType { return gopacket.LayerTypePayload }

// icmp6Layer requires the 8 bytes every ICMPv6 message has (type, code,
// checksum and a 4-byte field), as the kernel's parser does.
type icmp6Layer struct{ layers.ICMPv6 }

func (l *icmp6Layer) DecodeFromBytes(data []byte, df gopacket.DecodeFeedback) error {
	if len(data) < 8 {
		df.SetTruncated()
		return ErrTruncated
	}
	return l.ICMPv6.DecodeFromBytes(data, df)
}

func (l *icmp6Layer) NextLayerType() gopacket.LayerType { return gopacket.LayerTypePayload }
