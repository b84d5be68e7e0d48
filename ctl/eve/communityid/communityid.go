// Package communityid computes the Community ID of a flow: version 1 of
// the open flow-hash standard (https://github.com/corelight/community-id-spec)
// that Suricata (community_id in EVE) and Zeek write, so that a SIEM joins
// deepwall's events with theirs on the same flow. It imports only the
// standard library and allocates nothing but the returned string.
package communityid

import (
	"crypto/sha1" //nolint:gosec // the standard fixes SHA-1; it names flows, it protects nothing
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
)

// IP protocol numbers the standard hashes with ports (or ICMP types).
const (
	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
	ProtoSCTP   = 132
)

// version is the prefix of every version 1 ID.
const version = "1:"

// maxInput is the longest hash input: seed, two IPv6 addresses, proto,
// padding and two ports.
const maxInput = 2 + 16 + 16 + 1 + 1 + 2 + 2

// Flow is the tuple of one packet, as seen on the wire (the order of
// source and destination does not matter: both directions of a flow
// have the same ID). For ICMP and ICMPv6, SrcPort is the message type
// and DstPort its code.
type Flow struct {
	Proto            uint8
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
}

// ID returns the flow's version 1 Community ID with the given seed,
// base64 encoded ("1:wCb3OG7yAFWelaUydu0D+125CLM="), or "" when the
// addresses are invalid or of different families.
func ID(seed uint16, f Flow) string { return id(seed, f, true) }

// HexID is ID without base64: the SHA-1 in hexadecimal, the standard's
// other form.
func HexID(seed uint16, f Flow) string { return id(seed, f, false) }

func id(seed uint16, f Flow, b64 bool) string {
	src, dst := f.Src.Unmap(), f.Dst.Unmap()
	if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		return ""
	}
	sp, dp := f.SrcPort, f.DstPort
	oneWay := false
	switch f.Proto {
	case ProtoICMP:
		sp, dp, oneWay = icmpPorts(icmp4Pairs[:], uint8(sp), uint8(dp))
	case ProtoICMPv6:
		sp, dp, oneWay = icmpPorts(icmp6Pairs[:], uint8(sp), uint8(dp))
	}
	// Order the endpoints so both directions hash alike: the smaller
	// address first, or the smaller port on equal addresses. One-way ICMP
	// messages keep their order.
	if !oneWay {
		if c := src.Compare(dst); c > 0 || c == 0 && sp > dp {
			src, dst, sp, dp = dst, src, dp, sp
		}
	}
	var in [maxInput]byte
	b := binary.BigEndian.AppendUint16(in[:0], seed)
	b = append(b, src.AsSlice()...)
	b = append(b, dst.AsSlice()...)
	b = append(b, f.Proto, 0)
	if hasPorts(f.Proto) {
		b = binary.BigEndian.AppendUint16(b, sp)
		b = binary.BigEndian.AppendUint16(b, dp)
	}
	sum := sha1.Sum(b) //nolint:gosec
	var out [len(version) + 40]byte
	n := copy(out[:], version)
	if b64 {
		base64.StdEncoding.Encode(out[n:], sum[:])
		n += base64.StdEncoding.EncodedLen(len(sum))
	} else {
		n += hex.Encode(out[n:], sum[:])
	}
	return string(out[:n])
}

func hasPorts(proto uint8) bool {
	switch proto {
	case ProtoTCP, ProtoUDP, ProtoSCTP, ProtoICMP, ProtoICMPv6:
		return true
	}
	return false
}

// icmpPorts maps an ICMP type and code to the standard's port
// equivalents: a request or reply type pairs with its counterpart type
// (so both directions of an exchange share an ID); any other message is
// one-way and keeps its type and code.
func icmpPorts(pairs [][2]uint8, typ, code uint8) (sp, dp uint16, oneWay bool) {
	for _, p := range pairs {
		switch typ {
		case p[0]:
			return uint16(typ), uint16(p[1]), false
		case p[1]:
			return uint16(typ), uint16(p[0]), false
		}
	}
	return uint16(typ), uint16(code), true
}

// The standard's counterpart types (Zeek's ICMP4_counterpart and
// ICMP6_counterpart).
var (
	icmp4Pairs = [...][2]uint8{
		{8, 0},   // echo request, reply
		{13, 14}, // timestamp request, reply
		{15, 16}, // information request, reply
		{10, 9},  // router solicitation, advertisement
		{17, 18}, // address mask request, reply
	}
	icmp6Pairs = [...][2]uint8{
		{128, 129}, // echo request, reply
		{133, 134}, // router solicitation, advertisement
		{135, 136}, // neighbour solicitation, advertisement
		{130, 131}, // multicast listener query, report
		{139, 140}, // node information query, reply ("who are you")
		{144, 145}, // home agent address discovery request, reply
	}
)
