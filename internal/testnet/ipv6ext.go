package testnet

import "encoding/binary"

// IPv6Ext is an IPv6 extension header for WithIPv6Ext: its type (the
// next-header value that announces it) and its body without the
// next-header byte, which WithIPv6Ext fills in.
type IPv6Ext struct {
	Type uint8
	Body []byte
}

// padN is the body of an 8-byte options header: header length 0 and one
// PadN option of 4 bytes.
var padN = []byte{0, 1, 4, 0, 0, 0, 0}

// Extension headers the parsers' tests chain.
var (
	ExtHopByHop   = IPv6Ext{0, padN}
	ExtDstOpts    = IPv6Ext{60, padN}
	ExtRouting    = IPv6Ext{43, []byte{0, 0, 0, 0, 0, 0, 0}}             // type 0, segments left 0
	ExtAtomicFrag = IPv6Ext{44, []byte{0, 0, 0, 0, 0, 0, 1}}             // offset 0, M 0
	ExtFirstFrag  = IPv6Ext{44, []byte{0, 0, 1, 0, 0, 0, 1}}             // offset 0, M 1
	ExtLaterFrag  = IPv6Ext{44, []byte{0, 0, 0xb8, 0, 0, 0, 1}}          // offset 185*8, M 0
	ExtAH         = IPv6Ext{51, []byte{1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1}} // length 1: 12 bytes
)

// Offsets in an untagged frame.
const (
	ethHeaderLen  = 14
	ipv6HeaderLen = 40
)

// WithIPv6Ext returns a copy of an untagged IPv6 frame with exts inserted
// after the IPv6 header, in order: next-header values chained, the
// payload length fixed.
func WithIPv6Ext(frame []byte, exts ...IPv6Ext) []byte {
	const l3 = ethHeaderLen
	ip := frame[l3 : l3+ipv6HeaderLen]
	out := append([]byte{}, frame[:l3+ipv6HeaderLen]...)
	last := ip[6]
	var added int
	for i, e := range exts {
		next := last
		if i+1 < len(exts) {
			next = exts[i+1].Type
		}
		out = append(out, next)
		out = append(out, e.Body...)
		added += 1 + len(e.Body)
	}
	out = append(out, frame[l3+ipv6HeaderLen:]...)
	if len(exts) > 0 {
		out[l3+6] = exts[0].Type
	}
	binary.BigEndian.PutUint16(out[l3+4:], binary.BigEndian.Uint16(ip[4:])+uint16(added))
	return out
}
