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
			if el := p.ErrorLayer(); el != nil && p.TransportLayer() == nil {
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

// The seeds, raw builders and extension headers included, are frames
// gopacket takes apart down to the transport layer without an error:
// lengths and next-header chains agree. (It may fail on a payload: the
// seeds' are not what their ports say.)
func TestSeedFrames(t *testing.T) {
	for i, f := range SeedFrames(t) {
		p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
		if el := p.ErrorLayer(); el != nil && p.TransportLayer() == nil {
			t.Errorf("seed %d: %v\n%s", i, el.Error(), p.Dump())
		}
	}
}

func TestWithIPv6Ext(t *testing.T) {
	f := Frame(t, FrameSpec{Src: Client6, Dst: Server6, Proto: ProtoUDP, Payload: []byte("x")})
	g := WithIPv6Ext(f, ExtHopByHop, ExtRouting, ExtAH, ExtDstOpts)
	if len(g) != len(f)+8+8+12+8 {
		t.Fatalf("%d bytes, want %d", len(g), len(f)+36)
	}
	p := gopacket.NewPacket(g, layers.LayerTypeEthernet, gopacket.Default)
	if p.ErrorLayer() != nil || p.Layer(layers.LayerTypeUDP) == nil {
		t.Fatalf("not UDP behind the chain:\n%s", p.Dump())
	}
}
