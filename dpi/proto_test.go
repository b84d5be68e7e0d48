package dpi

import (
	"encoding/binary"
	"net/netip"
	"strings"

	"github.com/deepwall/deepwall/internal/testnet"
)

// clientHello builds a TLS 1.3 ClientHello record offering sni.
func clientHello(sni string) []byte {
	var ext []byte
	if sni != "" {
		name := []byte(sni)
		list := append([]byte{0}, u16(len(name))...)
		list = append(list, name...)
		body := append(u16(len(list)), list...)
		ext = append(ext, u16(0)...)
		ext = append(ext, u16(len(body))...)
		ext = append(ext, body...)
	}
	ext = append(ext, 0x00, 0x2b, 0x00, 0x03, 0x02, 0x03, 0x04) // supported_versions: TLS 1.3
	var hello []byte
	hello = append(hello, 0x03, 0x03)
	for i := range 32 {
		hello = append(hello, byte(i*7))
	}
	hello = append(hello, 0)                                  // session id
	hello = append(hello, 0x00, 0x04, 0x13, 0x01, 0x13, 0x02) // cipher suites
	hello = append(hello, 0x01, 0x00)                         // compression
	hello = append(hello, u16(len(ext))...)
	hello = append(hello, ext...)
	hs := append([]byte{0x01, 0, byte(len(hello) >> 8), byte(len(hello))}, hello...)
	return append([]byte{0x16, 0x03, 0x01, byte(len(hs) >> 8), byte(len(hs))}, hs...)
}

// serverHello builds a TLS 1.3 ServerHello record.
func serverHello() []byte {
	var hello []byte
	hello = append(hello, 0x03, 0x03)
	for i := range 32 {
		hello = append(hello, byte(i*3+1))
	}
	hello = append(hello, 0, 0x13, 0x01, 0x00)
	ext := []byte{0x00, 0x2b, 0x00, 0x02, 0x03, 0x04}
	hello = append(hello, u16(len(ext))...)
	hello = append(hello, ext...)
	hs := append([]byte{0x02, 0, byte(len(hello) >> 8), byte(len(hello))}, hello...)
	return append([]byte{0x16, 0x03, 0x03, byte(len(hs) >> 8), byte(len(hs))}, hs...)
}

func u16(n int) []byte { return binary.BigEndian.AppendUint16(nil, uint16(n)) }

// dnsQuery builds a DNS query message for name (type A unless qtype).
func dnsQuery(id uint16, name string, qtype uint16) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	b = append(b, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0)
	for _, l := range strings.Split(name, ".") {
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	b = append(b, 0)
	b = binary.BigEndian.AppendUint16(b, qtype)
	return binary.BigEndian.AppendUint16(b, 1)
}

// dnsResponse answers a query with one A record.
func dnsResponse(q []byte) []byte {
	b := append([]byte(nil), q...)
	b[2], b[3] = 0x81, 0x80
	b[7] = 1 // ANCOUNT
	b = append(b, 0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 18, 1, 53)
	return b
}

func icmpEcho() testnet.FrameSpec {
	return testnet.FrameSpec{Src: netip.MustParseAddrPort("198.18.0.1:0"), Dst: netip.MustParseAddrPort("198.18.1.1:0"), Proto: testnet.ProtoICMP, Payload: []byte("ping")}
}
