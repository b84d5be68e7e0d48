package decode

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/deepwall/deepwall/xdp"
)

// Bounds on repeated headers. A frame that exceeds them is an error, which
// keeps the work per frame and the decoded-layer slice bounded.
const (
	// MaxVLANTags is the number of stacked 802.1Q/802.1ad tags accepted
	// (two: QinQ).
	MaxVLANTags = 2
	// MaxExtHeaders is the number of IPv6 extension headers (fragment and
	// authentication headers included) accepted in one packet: the XDP
	// program's limit (xdp.MaxIPv6ExtHeaders), so that every packet the
	// kernel keys by its transport header is keyed the same way here.
	MaxExtHeaders = 4
)

// Flags describe what a Packet holds.
type Flags uint16

// Packet flags.
const (
	// FlagL4 is set when a TCP, UDP, ICMPv4 or ICMPv6 header was decoded:
	// the port, TCP and ICMP fields are valid.
	FlagL4 Flags = 1 << iota
	// FlagFragment marks an IP fragment; see the package doc for what the
	// engine does with it. Frag holds its details.
	FlagFragment
	// FlagAtomicFrag marks an IPv6 packet with a fragment header that does
	// not fragment (offset 0, no more fragments).
	FlagAtomicFrag
	// FlagIPOptions marks an IPv4 header with options.
	FlagIPOptions
	// FlagExtHeaders marks an IPv6 packet with extension headers.
	FlagExtHeaders
	// FlagVLAN marks a tagged frame.
	FlagVLAN
	// FlagNDP marks ICMPv6 neighbour discovery (types 133-137), which the
	// XDP program forwards like non-IP traffic, without a flow.
	FlagNDP
)

// TCPFlags are the TCP header flag bits as on the wire (byte 13).
type TCPFlags uint8

// TCP flag bits.
const (
	TCPFin TCPFlags = 1 << iota
	TCPSyn
	TCPRst
	TCPPsh
	TCPAck
	TCPUrg
	TCPEce
	TCPCwr
)

// Has reports whether all of want are set.
func (f TCPFlags) Has(want TCPFlags) bool { return f&want == want }

// String lists the set flags, e.g. "SYN|ACK".
func (f TCPFlags) String() string {
	if f == 0 {
		return "none"
	}
	names := [...]string{"FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"}
	var b strings.Builder
	for i, n := range names {
		if f&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteByte('|')
			}
			b.WriteString(n)
		}
	}
	return b.String()
}

// Fragment describes an IP fragment.
type Fragment struct {
	ID     uint32 // IPv4 identification or IPv6 fragment identification
	Offset uint16 // offset of the fragment's data in the original payload, in bytes
	More   bool   // more fragments follow
}

// Packet is what Decode learns from one frame. The caller owns it and
// reuses it from frame to frame; Decode overwrites every field.
type Packet struct {
	// Key is the normalised 5-tuple and Dir which endpoint of it sent the
	// packet. Ports are 0 for protocols without ports and for fragments;
	// for ICMP echo request and reply both ports hold the identifier, as
	// the kernel's flow map does (see xdp.FlowKey).
	Key xdp.FlowKey
	Dir xdp.Direction

	// IPVersion is 4 or 6, or 0 for a frame that is not IP (ARP, LLDP...)
	// in which case only EtherType, VLAN and FrameLen are meaningful.
	IPVersion uint8
	// Proto is the IP protocol after any IPv6 extension headers.
	Proto uint8
	// TTL is the IPv4 TTL or the IPv6 hop limit.
	TTL   uint8
	Flags Flags

	// Src and Dst are the IP addresses, IPv4 as IPv4-mapped IPv6.
	Src, Dst [16]byte
	// SrcPort and DstPort are TCP/UDP ports (the ICMP echo identifier for
	// ICMP echo, see Key).
	SrcPort, DstPort uint16

	// TCP header fields (valid when Proto is TCP and FlagL4 is set).
	Seq, Ack uint32
	TCPFlags TCPFlags
	Window   uint16
	// MSS and WScale come from the options of a SYN; MSS 0 and WScale -1
	// mean absent.
	MSS    uint16
	WScale int8
	SACKOK bool

	// ICMP fields (valid for ICMPv4/ICMPv6 with FlagL4).
	ICMPType, ICMPCode uint8

	// Frag is valid with FlagFragment.
	Frag Fragment

	// EtherType is the innermost EtherType; VLAN the outermost VLAN ID.
	EtherType uint16
	VLAN      uint16

	// Payload is the L4 payload (TCP/UDP data, the ICMP body after the
	// 4- or 8-byte header), the fragment's data for a fragment, or the IP
	// payload for other protocols. It is a sub-slice of the frame: valid as
	// long as the frame is, never copied.
	Payload []byte
	// FrameLen is the length of the frame.
	FrameLen int
	// L3Off, L4Off and PayloadOff are offsets in the frame of the IP header,
	// the transport header and Payload (0 when absent), for the engine to
	// build replies (TCP RST) or rewrite headers.
	L3Off, L4Off, PayloadOff int
}

// Decoder decodes frames into Packets. Make one per worker with
// NewDecoder; it is not safe for concurrent use.
type Decoder struct {
	parser  *gopacket.DecodingLayerParser
	dlc     gopacket.DecodingLayerContainer
	decoded []gopacket.LayerType

	eth     layers.Ethernet
	dot1q   dot1qLayer
	ip4     ipv4Layer
	ip6     ipv6Layer
	ext     extLayer
	ah      ahLayer
	frag6   frag6Layer
	frag    gopacket.Fragment
	tcp     tcpLayer
	udp     udpLayer
	icmp4   icmp4Layer
	icmp6   icmp6Layer
	payload gopacket.Payload

	// per-frame counters the layers update
	vlans        int
	vlanID       uint16
	exts         int
	lateHopByHop bool

	err Error
}

// NewDecoder returns a Decoder for Ethernet frames.
func NewDecoder() *Decoder {
	d := &Decoder{decoded: make([]gopacket.LayerType, 0, 4+MaxVLANTags+MaxExtHeaders)}
	d.dot1q.d = d
	d.ext.d = d
	d.ah.d = d
	d.frag6.d = d
	// Sparse container: an array indexed by layer type, the fastest lookup.
	// The ext skipper goes in before frag6 so the fragment header gets
	// frag6 (both claim it; the later Put wins).
	var dlc gopacket.DecodingLayerContainer = gopacket.DecodingLayerSparse(nil)
	for _, l := range []gopacket.DecodingLayer{
		&d.eth, &d.dot1q, &d.ip4, &d.ip6, &d.ext, &d.ah, &d.frag6, &d.frag,
		&d.tcp, &d.udp, &d.icmp4, &d.icmp6, &d.payload,
	} {
		dlc = dlc.Put(l)
	}
	d.parser = gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet)
	d.parser.SetDecodingLayerContainer(dlc)
	d.dlc = dlc
	// Unknown layers (ARP, ESP, GRE...) end decoding without an error; the
	// Packet tells how far decoding got.
	d.parser.IgnoreUnsupported = true
	return d
}

// Decode decodes frame into p. On error p is partly filled and must not be
// used for flow tracking; the error is a *Error owned by d (valid until the
// next call).
func (d *Decoder) Decode(frame []byte, p *Packet) error {
	*p = Packet{FrameLen: len(frame), WScale: -1}
	if len(frame) < 14 {
		return d.fail(ReasonShort, layers.LayerTypeEthernet, nil)
	}
	d.vlans, d.vlanID, d.exts, d.lateHopByHop = 0, 0, 0, false
	err := d.parser.DecodeLayers(frame, &d.decoded)
	if err != nil {
		return d.failErr(err)
	}
	if d.parser.Truncated {
		return d.fail(ReasonTruncated, d.lastLayer(), nil)
	}
	if d.lateHopByHop {
		return d.fail(ReasonHopByHopOrder, layers.LayerTypeIPv6HopByHop, nil)
	}
	// The parser also stops without an error when a header is followed by
	// nothing at all (an IPv4 ethertype and no IP header, an IP header that
	// announces TCP and ends): that is a truncated frame, not a short one.
	if n := len(d.decoded); n > 0 {
		if dl, ok := d.decodingLayer(d.decoded[n-1]); ok {
			if next := dl.NextLayerType(); next != gopacket.LayerTypeZero {
				if _, known := d.dlc.Decoder(next); known {
					if isL4(next) {
						return d.fail(ReasonMissingL4, d.decoded[n-1], nil)
					}
					return d.fail(ReasonTruncated, next, nil)
				}
			}
		}
	}
	base := cap(frame)
	for _, typ := range d.decoded {
		switch typ {
		case layers.LayerTypeEthernet:
			p.EtherType = uint16(d.eth.EthernetType)
		case layers.LayerTypeDot1Q:
			p.EtherType = uint16(d.dot1q.Type)
		case layers.LayerTypeIPv4:
			ip := &d.ip4
			p.IPVersion, p.Proto, p.TTL = 4, uint8(ip.Protocol), ip.TTL
			p.Src, p.Dst = mapped4(ip.SrcIP), mapped4(ip.DstIP)
			p.L3Off = base - cap(ip.Contents)
			p.Payload = ip.Payload
			if ip.IHL > 5 {
				p.Flags |= FlagIPOptions
			}
			if ip.fragmented() {
				p.Flags |= FlagFragment
				p.Frag = Fragment{ID: uint32(ip.Id), Offset: ip.FragOffset * 8, More: ip.Flags&layers.IPv4MoreFragments != 0}
			}
		case layers.LayerTypeIPv6:
			ip := &d.ip6
			p.IPVersion, p.Proto, p.TTL = 6, ip.nextHeader, ip.hopLimit
			p.Src, p.Dst = [16]byte(ip.src), [16]byte(ip.dst)
			p.L3Off = base - cap(ip.contents)
			p.Payload = ip.payload
		case layers.LayerTypeIPv6HopByHop, layers.LayerTypeIPv6Routing, layers.LayerTypeIPv6Destination:
			p.Flags |= FlagExtHeaders
			p.Proto = uint8(d.ext.NextHeader)
			p.Payload = d.ext.Payload
		case layers.LayerTypeIPSecAH:
			p.Flags |= FlagExtHeaders
			p.Proto = uint8(d.ah.NextHeader)
			p.Payload = d.ah.Payload
		case layers.LayerTypeIPv6Fragment:
			f := &d.frag6
			p.Flags |= FlagExtHeaders
			p.Proto = uint8(f.NextHeader)
			p.Payload = f.Payload
			if f.fragmented() {
				p.Flags |= FlagFragment
				p.Frag = Fragment{ID: f.Identification, Offset: f.FragmentOffset * 8, More: f.MoreFragments}
			} else {
				p.Flags |= FlagAtomicFrag
			}
		case gopacket.LayerTypeFragment:
			p.Payload = d.frag
		case layers.LayerTypeTCP:
			t := &d.tcp
			p.Flags |= FlagL4
			p.SrcPort, p.DstPort = t.srcPort, t.dstPort
			p.Seq, p.Ack, p.TCPFlags, p.Window = t.seq, t.ack, t.flags, t.window
			p.MSS, p.WScale, p.SACKOK = t.mss, t.wscale, t.sackOK
			p.L4Off = base - cap(t.contents)
			p.Payload = t.payload
		case layers.LayerTypeUDP:
			u := &d.udp
			p.Flags |= FlagL4
			p.SrcPort, p.DstPort = uint16(u.SrcPort), uint16(u.DstPort)
			p.L4Off = base - cap(u.Contents)
			p.Payload = u.Payload
		case layers.LayerTypeICMPv4:
			c := &d.icmp4
			p.Flags |= FlagL4
			p.ICMPType, p.ICMPCode = c.TypeCode.Type(), c.TypeCode.Code()
			if p.ICMPType == layers.ICMPv4TypeEchoRequest || p.ICMPType == layers.ICMPv4TypeEchoReply {
				p.SrcPort, p.DstPort = c.Id, c.Id
			}
			p.L4Off = base - cap(c.Contents)
			p.Payload = c.Payload
		case layers.LayerTypeICMPv6:
			c := &d.icmp6
			p.Flags |= FlagL4
			p.ICMPType, p.ICMPCode = c.TypeCode.Type(), c.TypeCode.Code()
			switch {
			case p.ICMPType == layers.ICMPv6TypeEchoRequest || p.ICMPType == layers.ICMPv6TypeEchoReply:
				id := binary.BigEndian.Uint16(c.Payload) // 8 bytes checked by icmp6Layer
				p.SrcPort, p.DstPort = id, id
			case p.ICMPType >= layers.ICMPv6TypeRouterSolicitation && p.ICMPType <= layers.ICMPv6TypeRedirect:
				p.Flags |= FlagNDP
			}
			p.L4Off = base - cap(c.Contents)
			p.Payload = c.Payload
		}
	}
	if d.vlans > 0 {
		p.Flags |= FlagVLAN
		p.VLAN = d.vlanID
	}
	if p.IPVersion == 0 {
		p.Payload = nil
		return nil
	}
	if p.Flags&(FlagL4|FlagFragment) == 0 {
		if hasL4(p.IPVersion, p.Proto) {
			return d.fail(ReasonMissingL4, ipLayer(p.IPVersion), nil)
		}
		if p.Proto == protoSCTP {
			if len(p.Payload) < sctpCommonLen {
				return d.fail(ReasonTruncated, ipLayer(p.IPVersion), nil)
			}
			p.SrcPort = binary.BigEndian.Uint16(p.Payload)
			p.DstPort = binary.BigEndian.Uint16(p.Payload[2:])
		}
		if (p.Proto == protoICMPv4 || p.Proto == protoICMPv6) && len(p.Payload) < 8 {
			// ICMP of the other IP version is not decoded, but the kernel
			// still requires its 8-byte header.
			return d.fail(ReasonTruncated, ipLayer(p.IPVersion), nil)
		}
	}
	if len(p.Payload) > 0 {
		p.PayloadOff = base - cap(p.Payload)
	}
	p.Key, p.Dir = xdp.MakeFlowKey16(p.Src, p.Dst, p.SrcPort, p.DstPort, p.Proto)
	return nil
}

// hasL4 reports whether the decoder knows the transport header of proto,
// so that its absence makes the packet malformed.
func hasL4(v, proto uint8) bool {
	switch proto {
	case protoTCP, protoUDP:
		return true
	case protoICMPv4:
		return v == 4
	case protoICMPv6:
		return v == 6
	}
	return false
}

func isL4(t gopacket.LayerType) bool {
	switch t {
	case layers.LayerTypeTCP, layers.LayerTypeUDP, layers.LayerTypeICMPv4, layers.LayerTypeICMPv6:
		return true
	}
	return false
}

func ipLayer(v uint8) gopacket.LayerType {
	if v == 6 {
		return layers.LayerTypeIPv6
	}
	return layers.LayerTypeIPv4
}

func mapped4(b []byte) [16]byte {
	return [16]byte{10: 0xff, 11: 0xff, 12: b[0], 13: b[1], 14: b[2], 15: b[3]}
}

// lastLayer is the last layer decoded: with truncation reported through
// DecodeFeedback the layer itself succeeded, so it is the best name.
func (d *Decoder) lastLayer() gopacket.LayerType {
	if len(d.decoded) == 0 {
		return layers.LayerTypeEthernet
	}
	return d.decoded[len(d.decoded)-1]
}

func (d *Decoder) decodingLayer(t gopacket.LayerType) (gopacket.DecodingLayer, bool) {
	switch t {
	case layers.LayerTypeEthernet:
		return &d.eth, true
	case layers.LayerTypeDot1Q:
		return &d.dot1q, true
	case layers.LayerTypeIPv4:
		return &d.ip4, true
	case layers.LayerTypeIPv6:
		return &d.ip6, true
	case layers.LayerTypeIPv6HopByHop, layers.LayerTypeIPv6Routing, layers.LayerTypeIPv6Destination:
		return &d.ext, true
	case layers.LayerTypeIPSecAH:
		return &d.ah, true
	case layers.LayerTypeIPv6Fragment:
		return &d.frag6, true
	}
	return nil, false
}

func (d *Decoder) failErr(err error) error {
	// The layer that failed is the one after the last decoded.
	layer := layers.LayerTypeEthernet
	if n := len(d.decoded); n > 0 {
		if dl, ok := d.decodingLayer(d.decoded[n-1]); ok {
			layer = dl.NextLayerType()
		}
	}
	for r, e := range reasonErr {
		if e != nil && err == e {
			return d.fail(Reason(r), layer, nil)
		}
	}
	if d.parser.Truncated {
		return d.fail(ReasonTruncated, layer, err)
	}
	return d.fail(ReasonMalformed, layer, err)
}

func (d *Decoder) fail(r Reason, layer gopacket.LayerType, err error) error {
	d.err = Error{Reason: r, Layer: layer, Err: err}
	return &d.err
}

// String formats the packet for logs and test failures (it allocates).
func (p *Packet) String() string {
	if p.IPVersion == 0 {
		return fmt.Sprintf("non-ip ethertype %#04x len %d", p.EtherType, p.FrameLen)
	}
	s := fmt.Sprintf("%s dir %d len %d payload %d", p.Key, p.Dir, p.FrameLen, len(p.Payload))
	if p.Flags&FlagFragment != 0 {
		s += fmt.Sprintf(" frag id %d off %d more %v", p.Frag.ID, p.Frag.Offset, p.Frag.More)
	}
	if p.Proto == protoTCP && p.Flags&FlagL4 != 0 {
		s += fmt.Sprintf(" tcp %s seq %d ack %d win %d", p.TCPFlags, p.Seq, p.Ack, p.Window)
	}
	return s
}
