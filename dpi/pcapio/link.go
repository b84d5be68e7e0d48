package pcapio

import (
	"encoding/binary"

	"github.com/gopacket/gopacket/layers"
)

// Link types beyond gopacket's names: libpcap writes DLT_RAW as 12 on most
// systems and 14 on OpenBSD in files older than LINKTYPE_RAW (101), and
// maps both to raw IP when it reads them.
const (
	linkTypeRawBSD     layers.LinkType = 12
	linkTypeRawOpenBSD layers.LinkType = 14
)

// ethLen is the length of the Ethernet header a record is given.
const ethLen = 14

// EtherTypes of the network layers a converted record carries.
const (
	etherIPv4 = 0x0800
	etherIPv6 = 0x86dd
)

// supportedLink reports whether records of link type lt can be turned into
// Ethernet frames.
func supportedLink(lt layers.LinkType) bool {
	switch lt {
	case layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL, layers.LinkTypeLinuxSLL2,
		layers.LinkTypeRaw, linkTypeRawBSD, linkTypeRawOpenBSD, layers.LinkTypeIPv4, layers.LinkTypeIPv6,
		layers.LinkTypeNull, layers.LinkTypeLoop, layers.LinkTypePPP, layers.LinkTypePPP_HDLC, layers.LinkTypeC_HDLC:
		return true
	}
	return false
}

// toEthernet turns one record of link type lt (supportedLink) into the
// Ethernet frame the decoder reads, with the network layer's EtherType and
// zero MAC addresses (nothing offline looks at them). Linux cooked headers
// are longer than Ethernet's and are rewritten in place; the others get a
// new buffer. A record too short for its link header, or whose network
// layer is not IP, becomes a frame the decoder counts as malformed or
// non-IP: a damaged record is traffic to account for, not a damaged file.
func toEthernet(lt layers.LinkType, data []byte) []byte {
	switch lt {
	case layers.LinkTypeEthernet:
		return data
	case layers.LinkTypeLinuxSLL:
		// packet type, ARPHRD, address length, address[8], protocol
		if len(data) < 16 {
			return data[:0]
		}
		f := data[16-ethLen:]
		clear(f[:12])
		return f
	case layers.LinkTypeLinuxSLL2:
		// protocol, reserved, ifindex, ARPHRD, packet type, address length, address[8]
		if len(data) < 20 {
			return data[:0]
		}
		proto := binary.BigEndian.Uint16(data)
		f := data[20-ethLen:]
		clear(f[:12])
		binary.BigEndian.PutUint16(f[12:], proto)
		return f
	case layers.LinkTypeRaw, linkTypeRawBSD, linkTypeRawOpenBSD, layers.LinkTypeIPv4, layers.LinkTypeIPv6:
		return withEthernet(ipEtherType(data), data)
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		// A 4-byte address family, in the capturing host's byte order for
		// DLT_NULL and with values that differ between systems (AF_INET6
		// is 10, 24, 28 or 30): the IP version nibble says more.
		if len(data) < 4 {
			return data[:0]
		}
		return withEthernet(ipEtherType(data[4:]), data[4:])
	case layers.LinkTypePPP, layers.LinkTypePPP_HDLC:
		return pppToEthernet(data)
	case layers.LinkTypeC_HDLC:
		return cHDLCToEthernet(data)
	}
	return data[:0]
}

// ipEtherType is the EtherType of a raw IP packet, from its version.
func ipEtherType(p []byte) uint16 {
	if len(p) == 0 {
		return 0
	}
	switch p[0] >> 4 {
	case 4:
		return etherIPv4
	case 6:
		return etherIPv6
	}
	return 0
}

// withEthernet returns payload after an Ethernet header with etherType.
func withEthernet(etherType uint16, payload []byte) []byte {
	f := make([]byte, ethLen+len(payload))
	binary.BigEndian.PutUint16(f[12:], etherType)
	copy(f[ethLen:], payload)
	return f
}

// pppToEthernet converts a PPP frame: optional HDLC address and control
// (0xff 0x03), then a 1- or 2-byte protocol (RFC 1661 protocol field
// compression: an odd first byte is the whole field). libpcap also stores
// Cisco HDLC frames under the PPP link types; their address byte is 0x0f
// or 0x8f.
func pppToEthernet(data []byte) []byte {
	if len(data) >= 1 && (data[0] == 0x0f || data[0] == 0x8f) {
		return cHDLCToEthernet(data)
	}
	p := data
	if len(p) >= 2 && p[0] == 0xff && p[1] == 0x03 {
		p = p[2:]
	}
	if len(p) == 0 {
		return data[:0]
	}
	var proto uint16
	if p[0]&1 == 1 {
		proto, p = uint16(p[0]), p[1:]
	} else {
		if len(p) < 2 {
			return data[:0]
		}
		proto, p = binary.BigEndian.Uint16(p), p[2:]
	}
	var et uint16
	switch proto {
	case 0x0021:
		et = etherIPv4
	case 0x0057:
		et = etherIPv6
	}
	return withEthernet(et, p)
}

// cHDLCToEthernet converts a Cisco HDLC frame: address, control, then an
// EtherType.
func cHDLCToEthernet(data []byte) []byte {
	if len(data) < 4 {
		return data[:0]
	}
	return withEthernet(binary.BigEndian.Uint16(data[2:]), data[4:])
}
