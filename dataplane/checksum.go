package dataplane

import (
	"encoding/binary"
	"math/bits"
)

// csumAdd adds b to a ones'-complement running sum (not folded), 8 bytes
// at a time: the carries out of the 64-bit accumulator are added back, so
// the folded result is the RFC 1071 sum.
func csumAdd(sum uint64, b []byte) uint64 {
	var c uint64
	for len(b) >= 32 {
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(b), c)
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(b[8:]), c)
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(b[16:]), c)
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(b[24:]), c)
		b = b[32:]
	}
	for len(b) >= 8 {
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(b), c)
		b = b[8:]
	}
	if len(b) >= 4 {
		sum, c = bits.Add64(sum, uint64(binary.BigEndian.Uint32(b)), c)
		b = b[4:]
	}
	if len(b) >= 2 {
		sum, c = bits.Add64(sum, uint64(binary.BigEndian.Uint16(b)), c)
		b = b[2:]
	}
	if len(b) == 1 {
		sum, c = bits.Add64(sum, uint64(b[0])<<8, c)
	}
	sum, c = bits.Add64(sum, 0, c)
	return sum + c // cannot carry again: adding 1 to a sum that just carried
}

// csumFold folds a running sum to 16 bits (not complemented).
func csumFold(sum uint64) uint16 {
	sum = (sum >> 32) + (sum & 0xffffffff)
	sum = (sum >> 32) + (sum & 0xffffffff)
	sum = (sum >> 16) + (sum & 0xffff)
	sum = (sum >> 16) + (sum & 0xffff)
	sum = (sum >> 16) + (sum & 0xffff)
	return uint16(sum)
}

// pseudoSum is the running sum of the TCP/UDP pseudo-header of a keyed
// packet: addresses, protocol and L4 length.
func pseudoSum(frame []byte, p *Packet) uint64 {
	return pseudoHeaderSum(frame[p.L3Off:], p.IPv6, p.Proto, p.L4Len)
}

// pseudoHeaderSum is the running sum of a pseudo-header whose addresses
// are those of the IP header at the start of ip.
func pseudoHeaderSum(ip []byte, ipv6 bool, proto uint8, l4Len int) uint64 {
	addrs := ip[12:20]
	if ipv6 {
		addrs = ip[8:40]
	}
	return uint64(csumFold(csumAdd(0, addrs))) + uint64(proto) + uint64(l4Len)
}

// l4ChecksumOffset returns where the TCP or UDP checksum field is, or -1.
func l4ChecksumOffset(p *Packet) int {
	if p.Kind != KindIP || !p.Keyed {
		return -1
	}
	switch p.Proto {
	case protoTCP:
		return p.L4Off + 16
	case protoUDP:
		return p.L4Off + 6
	}
	return -1
}

// CompletePartialChecksum fills in the TCP or UDP checksum of a frame
// whose sender left it to offload (CHECKSUM_PARTIAL): such a frame carries
// the folded pseudo-header sum in the checksum field, which an XDP
// redirect or an AF_XDP round trip delivers as is. A frame whose field
// holds anything else is left alone, right or wrong: a wrong checksum is
// the receiver's to reject, not ours to launder. It reports whether it
// changed the frame.
//
// A correct checksum can equal the pseudo-header sum by chance (about one
// in 65536); recomputing it then writes the same value, so no harm is done.
func CompletePartialChecksum(frame []byte, p *Packet) bool {
	off := l4ChecksumOffset(p)
	if off < 0 || p.L4Off+p.L4Len > len(frame) {
		return false
	}
	field := binary.BigEndian.Uint16(frame[off:])
	ps := pseudoSum(frame, p)
	if field != csumFold(ps) {
		return false
	}
	if p.Proto == protoUDP && field == 0 && !p.IPv6 {
		return false // IPv4 UDP without a checksum
	}
	binary.BigEndian.PutUint16(frame[off:], 0)
	c := ^csumFold(csumAdd(ps, frame[p.L4Off:p.L4Off+p.L4Len]))
	if c == 0 && p.Proto == protoUDP {
		c = 0xffff // 0 means "no checksum" for UDP
	}
	binary.BigEndian.PutUint16(frame[off:], c)
	return true
}

// l4ChecksumOK verifies a keyed TCP or UDP packet's checksum (tests and
// the fuzzers use it).
func l4ChecksumOK(frame []byte, p *Packet) bool {
	if l4ChecksumOffset(p) < 0 || p.L4Off+p.L4Len > len(frame) {
		return false
	}
	return csumFold(csumAdd(pseudoSum(frame, p), frame[p.L4Off:p.L4Off+p.L4Len])) == 0xffff
}

// IPv4HeaderChecksum computes the checksum of an IPv4 header whose
// checksum field is zero.
func IPv4HeaderChecksum(hdr []byte) uint16 { return ^csumFold(csumAdd(0, hdr)) }

// SetL4Checksum computes the checksum of a TCP or UDP segment into its
// field (after a payload rewrite): ip is the IP header (its addresses),
// l4 the transport header and its payload as the receiver checksums them.
func SetL4Checksum(ip []byte, ipv6 bool, proto uint8, l4 []byte) {
	off := 16
	if proto == protoUDP {
		off = 6
	}
	if len(l4) < off+2 || len(ip) < 20 || ipv6 && len(ip) < 40 {
		return
	}
	binary.BigEndian.PutUint16(l4[off:], 0)
	c := ^csumFold(csumAdd(pseudoHeaderSum(ip, ipv6, proto, len(l4)), l4))
	if c == 0 && proto == protoUDP {
		c = 0xffff // 0 means "no checksum" for UDP
	}
	binary.BigEndian.PutUint16(l4[off:], c)
}

// ChecksumStatus is what VerifyL4Checksum finds in a TCP or UDP checksum.
type ChecksumStatus uint8

// Checksum statuses.
const (
	// ChecksumOK: the checksum is right (or an IPv4 UDP datagram carries
	// none), so the receiver accepts the segment.
	ChecksumOK ChecksumStatus = iota
	// ChecksumPartial: the field holds the folded pseudo-header sum, as a
	// sender with TX checksum offload leaves it (CHECKSUM_PARTIAL). The
	// dataplane completes such a checksum when it forwards the frame
	// (CompletePartialChecksum), so the receiver accepts it too.
	ChecksumPartial
	// ChecksumBad: anything else; the receiver drops the segment.
	ChecksumBad
)

// VerifyL4Checksum checks the checksum of a TCP or UDP segment. ip is the
// IP header (its addresses), l4 the transport header and its payload as
// the receiver checksums them (for UDP, the UDP length). A field equal to
// the pseudo-header sum is taken for a partial checksum first: the cheap
// test, and the one that decides frames from offloading senders.
func VerifyL4Checksum(ip []byte, ipv6 bool, proto uint8, l4 []byte) ChecksumStatus {
	off := 16
	if proto == protoUDP {
		off = 6
	}
	if len(l4) < off+2 || len(ip) < 20 || ipv6 && len(ip) < 40 {
		return ChecksumBad
	}
	field := binary.BigEndian.Uint16(l4[off:])
	if proto == protoUDP && field == 0 {
		if ipv6 {
			return ChecksumBad // RFC 8200 8.1: a zero IPv6 UDP checksum is discarded
		}
		return ChecksumOK // IPv4 UDP without a checksum
	}
	ps := pseudoHeaderSum(ip, ipv6, proto, len(l4))
	if field == csumFold(ps) {
		return ChecksumPartial
	}
	if csumFold(csumAdd(ps, l4)) != 0xffff {
		return ChecksumBad
	}
	return ChecksumOK
}

// IPv4HeaderChecksumOK verifies the checksum of an IPv4 header (options
// included).
func IPv4HeaderChecksumOK(hdr []byte) bool { return csumFold(csumAdd(0, hdr)) == 0xffff }
