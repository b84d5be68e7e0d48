package dataplane

import (
	"encoding/binary"

	"github.com/deepwall/deepwall/xdp"
)

// Parser bounds, the same as the XDP program's (xdp.MaxVLANDepth,
// xdp.MaxIPv6ExtHeaders): user space must key a packet exactly as the
// kernel does, or a verdict written for a flow would never be found.
const (
	maxVLANDepth = xdp.MaxVLANDepth
	maxIPv6Ext   = xdp.MaxIPv6ExtHeaders
)

// Kind says what ParsePacket found.
type Kind uint8

const (
	// KindMalformed: an IP frame that is truncated or inconsistent; the
	// XDP program drops these, and so does the dataplane.
	KindMalformed Kind = iota
	// KindOther: not IP (ARP, LLDP, …) or ICMPv6 neighbour discovery;
	// forwarded without inspection, as the XDP program does.
	KindOther
	// KindIP: an IPv4 or IPv6 packet; Keyed says whether it has a flow.
	KindIP
)

// EtherTypes and IP protocols the parser knows.
const (
	etherTypeIPv4  = 0x0800
	etherTypeIPv6  = 0x86dd
	etherTypeVLAN  = 0x8100
	etherTypeQinQ  = 0x88a8
	protoICMP      = 1
	protoTCP       = 6
	protoUDP       = 17
	protoSCTP      = 132
	protoICMPv6    = 58
	protoHopOpts   = 0
	protoRouting   = 43
	protoFragment  = 44
	protoAH        = 51
	protoDstOpts   = 60
	ethHeaderLen   = 14
	vlanHeaderLen  = 4
	ipv4HeaderLen  = 20
	ipv6HeaderLen  = 40
	tcpHeaderLen   = 20
	udpHeaderLen   = 8
	sctpHeaderLen  = 12
	icmpHeaderLen  = 8
	ipv4FragMask   = 0x3fff // MF + offset
	ipv6FragMask   = 0xfff9 // offset + M
	tcpFlagFIN     = 0x01
	tcpFlagSYN     = 0x02
	tcpFlagRST     = 0x04
	tcpFlagACK     = 0x10
	icmpEchoReply  = 0
	icmpEchoReq    = 8
	icmp6EchoReq   = 128
	icmp6EchoReply = 129
	icmp6NDFirst   = 133
	icmp6NDLast    = 137
)

// Packet is what the dataplane needs to know of a frame: where its headers
// are, its flow key and, for TCP, what a reset needs. ParsePacket fills it
// in place without allocating.
type Packet struct {
	Kind Kind
	// Keyed: the L4 header was found, so the packet belongs to a flow the
	// XDP program can look up (false for fragments and over-long IPv6
	// extension chains, which always come to user space).
	Keyed    bool
	Fragment bool
	IPv6     bool
	Proto    uint8
	TCPFlags uint8
	L3Off    int // IP header
	L4Off    int // L4 header (valid when Keyed)
	L4Len    int // L4 header and payload, from the IP length
	Src, Dst [16]byte
	SrcPort  uint16 // TCP/UDP/SCTP ports or the ICMP echo identifier
	DstPort  uint16
	Seq, Ack uint32 // TCP
	TCPHdr   int    // TCP header length
	Key      xdp.FlowKey
	Dir      xdp.Direction
}

// PayloadLen is the TCP payload length of a keyed TCP packet.
func (p *Packet) PayloadLen() int { return p.L4Len - p.TCPHdr }

var v4Mapped = [12]byte{10: 0xff, 11: 0xff}

// ParsePacket decodes frame into p. It never panics on any input and
// follows the XDP program's rules: up to two VLAN tags (more is
// malformed), IPv4 options skipped, up to four IPv6 extension headers, any
// fragment unkeyed, TCP/UDP/SCTP keyed by ports, ICMP echo keyed by its
// identifier, ICMPv6 neighbour discovery treated as non-IP.
func ParsePacket(frame []byte, p *Packet) Kind {
	*p = Packet{}
	p.Kind = parse(frame, p)
	if p.Kind == KindIP {
		p.Key, p.Dir = xdp.MakeFlowKey16(p.Src, p.Dst, p.SrcPort, p.DstPort, p.Proto)
	}
	return p.Kind
}

func parse(b []byte, p *Packet) Kind {
	if len(b) < ethHeaderLen {
		return KindMalformed
	}
	off := ethHeaderLen
	et := binary.BigEndian.Uint16(b[12:])
	for i := 0; i < maxVLANDepth && (et == etherTypeVLAN || et == etherTypeQinQ); i++ {
		if len(b) < off+vlanHeaderLen {
			return KindMalformed
		}
		et = binary.BigEndian.Uint16(b[off+2:])
		off += vlanHeaderLen
	}
	switch et {
	case etherTypeVLAN, etherTypeQinQ:
		return KindMalformed // deeper than the kernel parses
	case etherTypeIPv4:
		p.L3Off = off
		return parseIPv4(b, off, p)
	case etherTypeIPv6:
		p.L3Off = off
		p.IPv6 = true
		return parseIPv6(b, off, p)
	}
	return KindOther
}

func parseIPv4(b []byte, off int, p *Packet) Kind {
	if len(b) < off+ipv4HeaderLen || b[off]>>4 != 4 {
		return KindMalformed
	}
	hlen := int(b[off]&0x0f) * 4
	tot := int(binary.BigEndian.Uint16(b[off+2:]))
	if hlen < ipv4HeaderLen || tot < hlen || off+tot > len(b) {
		return KindMalformed
	}
	copy(p.Src[:12], v4Mapped[:])
	copy(p.Dst[:12], v4Mapped[:])
	copy(p.Src[12:], b[off+12:off+16])
	copy(p.Dst[12:], b[off+16:off+20])
	p.Proto = b[off+9]
	if binary.BigEndian.Uint16(b[off+6:])&ipv4FragMask != 0 {
		p.Fragment = true
		return KindIP
	}
	return parseL4(b, off+hlen, tot-hlen, p)
}

func isIPv6Ext(nh uint8) bool {
	return nh == protoHopOpts || nh == protoRouting || nh == protoFragment || nh == protoDstOpts || nh == protoAH
}

func parseIPv6(b []byte, off int, p *Packet) Kind {
	if len(b) < off+ipv6HeaderLen || b[off]>>4 != 6 {
		return KindMalformed
	}
	remain := int(binary.BigEndian.Uint16(b[off+4:]))
	if remain == 0 || off+ipv6HeaderLen+remain > len(b) {
		return KindMalformed
	}
	copy(p.Src[:], b[off+8:off+24])
	copy(p.Dst[:], b[off+24:off+40])
	nh := b[off+6]
	pos := off + ipv6HeaderLen
	for i := 0; i < maxIPv6Ext && isIPv6Ext(nh); i++ {
		if nh == protoFragment {
			if pos+8 > len(b) || remain < 8 {
				return KindMalformed
			}
			nh = b[pos]
			if binary.BigEndian.Uint16(b[pos+2:])&ipv6FragMask != 0 {
				p.Proto = nh
				p.Fragment = true
				return KindIP
			}
			pos += 8
			remain -= 8
			continue
		}
		if pos+2 > len(b) {
			return KindMalformed
		}
		n := (int(b[pos+1]) + 1) * 8
		if nh == protoAH {
			n = (int(b[pos+1]) + 2) * 4
		}
		if n > remain {
			return KindMalformed
		}
		nh = b[pos]
		pos += n
		remain -= n
	}
	p.Proto = nh
	if isIPv6Ext(nh) {
		return KindIP // chain too long: unkeyed, as in the kernel
	}
	return parseL4(b, pos, remain, p)
}

// parseL4 reads ports, the ICMP echo identifier or TCP fields. remain is
// what the IP header says is left; headers must fit in it and in b.
func parseL4(b []byte, off, remain int, p *Packet) Kind {
	switch p.Proto {
	case protoTCP:
		if off+tcpHeaderLen > len(b) || remain < tcpHeaderLen {
			return KindMalformed
		}
		doff := int(b[off+12]>>4) * 4
		if doff < tcpHeaderLen || doff > remain {
			return KindMalformed
		}
		p.SrcPort = binary.BigEndian.Uint16(b[off:])
		p.DstPort = binary.BigEndian.Uint16(b[off+2:])
		p.Seq = binary.BigEndian.Uint32(b[off+4:])
		p.Ack = binary.BigEndian.Uint32(b[off+8:])
		p.TCPFlags = b[off+13]
		p.TCPHdr = doff
	case protoUDP:
		if off+udpHeaderLen > len(b) || remain < udpHeaderLen {
			return KindMalformed
		}
		p.SrcPort = binary.BigEndian.Uint16(b[off:])
		p.DstPort = binary.BigEndian.Uint16(b[off+2:])
	case protoSCTP:
		// Ports first, as in UDP, in a 12-byte common header.
		if off+sctpHeaderLen > len(b) || remain < sctpHeaderLen {
			return KindMalformed
		}
		p.SrcPort = binary.BigEndian.Uint16(b[off:])
		p.DstPort = binary.BigEndian.Uint16(b[off+2:])
	case protoICMP, protoICMPv6:
		if off+icmpHeaderLen > len(b) || remain < icmpHeaderLen {
			return KindMalformed
		}
		typ := b[off]
		if !p.IPv6 && p.Proto == protoICMP {
			if typ == icmpEchoReq || typ == icmpEchoReply {
				p.SrcPort = binary.BigEndian.Uint16(b[off+4:])
				p.DstPort = p.SrcPort
			}
		} else if p.IPv6 && p.Proto == protoICMPv6 {
			if typ >= icmp6NDFirst && typ <= icmp6NDLast {
				return KindOther
			}
			if typ == icmp6EchoReq || typ == icmp6EchoReply {
				p.SrcPort = binary.BigEndian.Uint16(b[off+4:])
				p.DstPort = p.SrcPort
			}
		}
	}
	p.L4Off = off
	p.L4Len = remain
	p.Keyed = true
	return KindIP
}
