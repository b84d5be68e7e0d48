package testnet

import (
	"encoding/binary"
	"net/netip"
)

// The endpoints of crafted frames: the topology's client and server
// addresses, a client's ephemeral port and HTTP. The raw builders use
// them; tests compare decoded fields with them.
var (
	Client4 = netip.AddrPortFrom(ClientIP, 40000)
	Server4 = netip.AddrPortFrom(ServerIP, 80)
	Client6 = netip.AddrPortFrom(ClientIP6, 40000)
	Server6 = netip.AddrPortFrom(ServerIP6, 80)
)

// Raw builders, for what FrameSpec cannot express: fragments, extension
// headers, options, malformed fields. Each wraps payload in one header;
// lengths are those of the payload given, checksums are left zero (fix
// a field afterwards to make it malformed). IP headers go from Client4
// to Server4 (Client6 to Server6), TCP from Client4's to Server4's port.

// RawEth is an Ethernet header from MACA to MACB.
func RawEth(etype uint16, payload []byte) []byte {
	b := make([]byte, 14, 14+len(payload))
	copy(b[0:6], MACB)
	copy(b[6:12], MACA)
	binary.BigEndian.PutUint16(b[12:], etype)
	return append(b, payload...)
}

// RawVLAN is the rest of an 802.1Q/802.1ad tag after its TPID (which the
// enclosing header's EtherType is): the tag control and the next
// EtherType.
func RawVLAN(id, etype uint16, payload []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	b = binary.BigEndian.AppendUint16(b, etype)
	return append(b, payload...)
}

// RawIPv4 is a 20-byte IPv4 header; flagsFrag is the flags and fragment
// offset field as on the wire.
func RawIPv4(proto uint8, flagsFrag, id uint16, payload []byte) []byte {
	b := make([]byte, 20, 20+len(payload))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(20+len(payload)))
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], flagsFrag)
	b[8], b[9] = 64, proto
	copy(b[12:16], Client4.Addr().AsSlice())
	copy(b[16:20], Server4.Addr().AsSlice())
	return append(b, payload...)
}

// RawIPv6 is an IPv6 header with next header nh.
func RawIPv6(nh uint8, payload []byte) []byte {
	b := make([]byte, 40, 40+len(payload))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(payload)))
	b[6], b[7] = nh, 64
	copy(b[8:24], Client6.Addr().AsSlice())
	copy(b[24:40], Server6.Addr().AsSlice())
	return append(b, payload...)
}

// RawExt is a generic IPv6 extension header (hop-by-hop, routing or
// destination options, as the header before it says): 8 bytes, one PadN
// option.
func RawExt(nh uint8, payload []byte) []byte {
	b := append([]byte{nh}, padN...)
	return append(b, payload...)
}

// RawAH is an authentication header with a 4-byte ICV (16 bytes).
func RawAH(nh uint8, payload []byte) []byte {
	return append([]byte{nh, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd}, payload...)
}

// RawFrag6 is an IPv6 fragment header; off counts 8-byte units.
func RawFrag6(nh uint8, off uint16, more bool, id uint32, payload []byte) []byte {
	b := []byte{nh, 0, 0, 0, 0, 0, 0, 0}
	v := off << 3
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(b[2:], v)
	binary.BigEndian.PutUint32(b[4:], id)
	return append(b, payload...)
}

// RawTCP is a TCP header with options opts (a multiple of 4 bytes) and a
// 65535 window.
func RawTCP(flags uint8, seq uint32, opts, payload []byte) []byte {
	hl := 20 + len(opts)
	b := make([]byte, 20, hl+len(payload))
	binary.BigEndian.PutUint16(b[0:], Client4.Port())
	binary.BigEndian.PutUint16(b[2:], Server4.Port())
	binary.BigEndian.PutUint32(b[4:], seq)
	b[12] = byte(hl/4) << 4
	b[13] = flags
	binary.BigEndian.PutUint16(b[14:], 65535)
	b = append(b, opts...)
	return append(b, payload...)
}

// RawUDP is a UDP header.
func RawUDP(sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(payload)))
	return append(b, payload...)
}
