package testnet

import (
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

func TestFrame(t *testing.T) {
	a4 := netip.MustParseAddrPort("198.18.0.1:1234")
	b4 := netip.MustParseAddrPort("198.18.0.2:80")
	a6 := netip.MustParseAddrPort("[2001:2::1]:1234")
	b6 := netip.MustParseAddrPort("[2001:2::2]:80")
	for _, tc := range []struct {
		name string
		spec FrameSpec
		want []gopacket.LayerType
	}{
		{"tcp4", FrameSpec{Src: a4, Dst: b4, Proto: ProtoTCP, Flags: SYN, Payload: []byte("x")},
			[]gopacket.LayerType{layers.LayerTypeEthernet, layers.LayerTypeIPv4, layers.LayerTypeTCP}},
		{"udp6 vlan", FrameSpec{Src: a6, Dst: b6, Proto: ProtoUDP, VLAN: 7},
			[]gopacket.LayerType{layers.LayerTypeEthernet, layers.LayerTypeDot1Q, layers.LayerTypeIPv6, layers.LayerTypeUDP}},
		{"icmp4", FrameSpec{Src: a4, Dst: b4, Proto: ProtoICMP},
			[]gopacket.LayerType{layers.LayerTypeEthernet, layers.LayerTypeIPv4, layers.LayerTypeICMPv4}},
		{"icmp6", FrameSpec{Src: a6, Dst: b6, Proto: ProtoICMPv6},
			[]gopacket.LayerType{layers.LayerTypeEthernet, layers.LayerTypeIPv6, layers.LayerTypeICMPv6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := gopacket.NewPacket(Frame(t, tc.spec), layers.LayerTypeEthernet, gopacket.Default)
			if el := p.ErrorLayer(); el != nil {
				t.Fatalf("decode: %v", el.Error())
			}
			for _, lt := range tc.want {
				if p.Layer(lt) == nil {
					t.Errorf("missing layer %v in %v", lt, p)
				}
			}
		})
	}
}
