package testnet

import "encoding/binary"

// Frag cuts one fragment out of a whole untagged frame that Frame built
// (IPv4 or IPv6): the IP payload bytes [off, end) with the given
// more-fragments flag and identification. An IPv4 fragment keeps the
// frame's IP header (DF cleared, checksum fixed); an IPv6 fragment gets a
// fragment header after the 40-byte header. off need not be a multiple
// of 8 for IPv6 (the field holds off/8, as a sender's would); tests of
// odd lengths cut end where they like.
func Frag(frame []byte, id uint32, off, end int, more bool) []byte {
	ip := frame[ethHeaderLen:]
	if ip[0]>>4 == 4 {
		ihl := int(ip[0]&0x0f) * 4
		payload := ip[ihl:binary.BigEndian.Uint16(ip[2:])]
		out := append([]byte{}, frame[:ethHeaderLen+ihl]...)
		out = append(out, payload[off:end]...)
		h := out[ethHeaderLen:]
		binary.BigEndian.PutUint16(h[2:], uint16(ihl+end-off))
		binary.BigEndian.PutUint16(h[4:], uint16(id))
		v := uint16(off / 8)
		if more {
			v |= 0x2000
		}
		binary.BigEndian.PutUint16(h[6:], v)
		FixIPv4Checksum(out)
		return out
	}
	payload := ip[ipv6HeaderLen : ipv6HeaderLen+int(binary.BigEndian.Uint16(ip[4:]))]
	out := append([]byte{}, frame[:ethHeaderLen+ipv6HeaderLen]...)
	out = append(out, RawFrag6(ip[6], uint16(off/8), more, id, payload[off:end])...)
	h := out[ethHeaderLen:]
	h[6] = 44
	binary.BigEndian.PutUint16(h[4:], uint16(8+end-off))
	return out
}

// Fragments cuts a whole frame's IP payload into fragments of size bytes
// (a multiple of 8), the last one shorter, as a sender with that MTU
// would: Frag for each piece, in order.
func Fragments(frame []byte, id uint32, size int) [][]byte {
	ip := frame[ethHeaderLen:]
	var n int
	if ip[0]>>4 == 4 {
		n = int(binary.BigEndian.Uint16(ip[2:])) - int(ip[0]&0x0f)*4
	} else {
		n = int(binary.BigEndian.Uint16(ip[4:]))
	}
	var out [][]byte
	for off := 0; off < n; off += size {
		end := min(off+size, n)
		out = append(out, Frag(frame, id, off, end, end < n))
	}
	return out
}
