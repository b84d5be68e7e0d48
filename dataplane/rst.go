package dataplane

import (
	"encoding/binary"
	"fmt"
)

// MaxRSTLen bounds a reset frame: Ethernet, two VLAN tags, IPv6, TCP.
const MaxRSTLen = ethHeaderLen + maxVLANDepth*vlanHeaderLen + ipv6HeaderLen + tcpHeaderLen

// minFrameLen is the Ethernet minimum without the FCS; resets are padded
// to it.
const minFrameLen = 60

// BuildRST writes into dst a TCP reset that answers the TCP frame parsed
// into p, and returns the reset's length.
//
// toSender false builds the reset for the frame's receiver, as if the
// sender had sent it: same MACs, addresses and ports, seq = the dropped
// segment's seq (what the receiver expects next), so the receiver accepts
// it. toSender true builds the reset for the frame's sender, as if the
// receiver had sent it: MACs, addresses and ports swapped, seq = the
// dropped segment's ack (RFC 9293 3.10.7.1); a segment without ACK (a SYN)
// gets seq 0 and RST|ACK acknowledging everything it carried. VLAN tags are
// kept; IP options and IPv6 extension headers are not.
func BuildRST(dst, frame []byte, p *Packet, toSender bool) (int, error) {
	if p.Kind != KindIP || !p.Keyed || p.Proto != protoTCP {
		return 0, fmt.Errorf("build rst: %w", ErrNotTCP)
	}
	if p.L3Off < ethHeaderLen || p.L3Off > len(frame) || p.L4Off+tcpHeaderLen > len(frame) {
		return 0, fmt.Errorf("build rst: %w", ErrNotTCP)
	}
	ipLen := ipv4HeaderLen
	if p.IPv6 {
		ipLen = ipv6HeaderLen
	}
	n := p.L3Off + ipLen + tcpHeaderLen
	if len(dst) < max(n, minFrameLen) {
		return 0, fmt.Errorf("build rst: need %d bytes, have %d: %w", max(n, minFrameLen), len(dst), ErrShortBuffer)
	}

	// Layer 2: MACs and VLAN tags; the EtherType chain is unchanged.
	copy(dst[:p.L3Off], frame[:p.L3Off])
	if toSender {
		copy(dst[0:6], frame[6:12])
		copy(dst[6:12], frame[0:6])
	}

	srcOff, dstOff, alen := 12, 16, 4
	if p.IPv6 {
		srcOff, dstOff, alen = 8, 24, 16
	}
	src := frame[p.L3Off+srcOff : p.L3Off+srcOff+alen]
	dstAddr := frame[p.L3Off+dstOff : p.L3Off+dstOff+alen]
	sport, dport := p.SrcPort, p.DstPort
	if toSender {
		src, dstAddr = dstAddr, src
		sport, dport = dport, sport
	}

	ip := dst[p.L3Off : p.L3Off+ipLen]
	if p.IPv6 {
		binary.BigEndian.PutUint32(ip[0:], 6<<28)
		binary.BigEndian.PutUint16(ip[4:], tcpHeaderLen)
		ip[6] = protoTCP
		ip[7] = 64
		copy(ip[8:24], src)
		copy(ip[24:40], dstAddr)
	} else {
		ip[0], ip[1] = 0x45, 0
		binary.BigEndian.PutUint16(ip[2:], ipv4HeaderLen+tcpHeaderLen)
		binary.BigEndian.PutUint32(ip[4:], 0x4000) // id 0, DF
		ip[8], ip[9] = 64, protoTCP
		ip[10], ip[11] = 0, 0
		copy(ip[12:16], src)
		copy(ip[16:20], dstAddr)
		binary.BigEndian.PutUint16(ip[10:], IPv4HeaderChecksum(ip))
	}

	var seq, ack uint32
	var flags uint8 = tcpFlagRST
	hasACK := p.TCPFlags&tcpFlagACK != 0
	switch {
	case !toSender:
		seq = p.Seq
		if hasACK {
			ack, flags = p.Ack, tcpFlagRST|tcpFlagACK
		}
	case hasACK:
		seq = p.Ack
	default:
		ack = p.Seq + uint32(p.PayloadLen())
		if p.TCPFlags&tcpFlagSYN != 0 {
			ack++
		}
		if p.TCPFlags&tcpFlagFIN != 0 {
			ack++
		}
		flags = tcpFlagRST | tcpFlagACK
	}
	tcp := dst[p.L3Off+ipLen : n]
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], dport)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	binary.BigEndian.PutUint32(tcp[8:], ack)
	tcp[12], tcp[13] = (tcpHeaderLen/4)<<4, flags
	binary.BigEndian.PutUint32(tcp[14:], 0) // window 0, checksum 0
	binary.BigEndian.PutUint16(tcp[18:], 0) // urgent pointer
	sum := pseudoHeaderSum(ip, p.IPv6, protoTCP, tcpHeaderLen)
	binary.BigEndian.PutUint16(tcp[16:], ^csumFold(csumAdd(sum, tcp)))

	if n < minFrameLen {
		clear(dst[n:minFrameLen])
		n = minFrameLen
	}
	return n, nil
}
