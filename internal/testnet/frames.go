package testnet

import (
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// IP protocol numbers used by FrameSpec.Proto.
const (
	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
)

// TCP flag bits for FrameSpec.Flags.
const (
	FIN = 1 << iota
	SYN
	RST
	PSH
	ACK
)

// Default MACs of built frames (locally administered).
var (
	MACA = net.HardwareAddr{0x02, 0xdd, 0, 0, 0, 0x01}
	MACB = net.HardwareAddr{0x02, 0xdd, 0, 0, 0, 0x02}
)

// FrameSpec describes one Ethernet frame. Zero fields take defaults, so a
// test only spells out what it is about.
type FrameSpec struct {
	SrcMAC, DstMAC net.HardwareAddr // default MACA → MACB
	VLAN           uint16           // 802.1Q tag when non-zero
	Src, Dst       netip.AddrPort   // both IPv4 or both IPv6
	Proto          uint8            // ProtoTCP, ProtoUDP, ProtoICMP or ProtoICMPv6
	Flags          uint8            // TCP flags
	Seq, Ack       uint32           // TCP sequence numbers
	Window         uint16           // TCP window (default 65535)
	ICMPType       uint8            // ICMP/ICMPv6 type (default echo request)
	ICMPCode       uint8
	HopLimit       uint8 // TTL / hop limit (default 64)
	Payload        []byte
}

// Frame builds the frame that spec describes, with correct lengths and
// checksums. It fails tb on an inconsistent spec.
func Frame(tb testing.TB, spec FrameSpec) []byte {
	tb.Helper()
	b, err := BuildFrame(spec)
	if err != nil {
		tb.Fatalf("build frame: %v", err)
	}
	return b
}

// BuildFrame is Frame for callers without a testing.TB (benchmarks'
// generators, fuzz seeds).
func BuildFrame(spec FrameSpec) ([]byte, error) {
	if spec.SrcMAC == nil {
		spec.SrcMAC = MACA
	}
	if spec.DstMAC == nil {
		spec.DstMAC = MACB
	}
	if spec.HopLimit == 0 {
		spec.HopLimit = 64
	}
	if spec.Window == 0 {
		spec.Window = 65535
	}
	v6 := spec.Src.Addr().Is6() && !spec.Src.Addr().Is4In6()
	ethType := layers.EthernetTypeIPv4
	if v6 {
		ethType = layers.EthernetTypeIPv6
	}
	var ls []gopacket.SerializableLayer
	eth := &layers.Ethernet{SrcMAC: spec.SrcMAC, DstMAC: spec.DstMAC, EthernetType: ethType}
	ls = append(ls, eth)
	if spec.VLAN != 0 {
		eth.EthernetType = layers.EthernetTypeDot1Q
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: spec.VLAN, Type: ethType})
	}
	var netLayer gopacket.NetworkLayer
	if v6 {
		ip := &layers.IPv6{Version: 6, HopLimit: spec.HopLimit, SrcIP: spec.Src.Addr().AsSlice(), DstIP: spec.Dst.Addr().AsSlice(), NextHeader: layers.IPProtocol(spec.Proto)}
		netLayer = ip
		ls = append(ls, ip)
	} else {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: spec.HopLimit, Flags: layers.IPv4DontFragment, SrcIP: spec.Src.Addr().AsSlice(), DstIP: spec.Dst.Addr().AsSlice(), Protocol: layers.IPProtocol(spec.Proto)}
		netLayer = ip
		ls = append(ls, ip)
	}
	switch spec.Proto {
	case ProtoTCP:
		tcp := &layers.TCP{
			SrcPort: layers.TCPPort(spec.Src.Port()), DstPort: layers.TCPPort(spec.Dst.Port()),
			Seq: spec.Seq, Ack: spec.Ack, Window: spec.Window,
			FIN: spec.Flags&FIN != 0, SYN: spec.Flags&SYN != 0, RST: spec.Flags&RST != 0,
			PSH: spec.Flags&PSH != 0, ACK: spec.Flags&ACK != 0,
		}
		if err := tcp.SetNetworkLayerForChecksum(netLayer); err != nil {
			return nil, err
		}
		ls = append(ls, tcp)
	case ProtoUDP:
		udp := &layers.UDP{SrcPort: layers.UDPPort(spec.Src.Port()), DstPort: layers.UDPPort(spec.Dst.Port())}
		if err := udp.SetNetworkLayerForChecksum(netLayer); err != nil {
			return nil, err
		}
		ls = append(ls, udp)
	case ProtoICMP:
		typ := spec.ICMPType
		if typ == 0 && spec.ICMPCode == 0 {
			typ = layers.ICMPv4TypeEchoRequest
		}
		ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, spec.ICMPCode), Id: 1, Seq: 1})
	case ProtoICMPv6:
		typ := spec.ICMPType
		if typ == 0 {
			typ = layers.ICMPv6TypeEchoRequest
		}
		icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, spec.ICMPCode)}
		if err := icmp.SetNetworkLayerForChecksum(netLayer); err != nil {
			return nil, err
		}
		ls = append(ls, icmp)
	}
	ls = append(ls, gopacket.Payload(spec.Payload))
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
