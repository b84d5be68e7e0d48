package testnet

import "encoding/binary"

// FixIPv4Checksum recomputes the IPv4 header checksum of an untagged
// Ethernet frame, after a test changed a header field (flags, TTL…) of a
// frame Frame built.
func FixIPv4Checksum(frame []byte) {
	ip := frame[14:]
	hdr := ip[:int(ip[0]&0x0f)*4]
	binary.BigEndian.PutUint16(hdr[10:], 0)
	var sum uint32
	for i := 0; i+1 < len(hdr); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(hdr[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(hdr[10:], ^uint16(sum))
}
