package decode_test

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dpi/decode"
	"github.com/deepwall/deepwall/internal/testnet"
)

// The engine writes verdicts under the key Decode computes, and the kernel
// looks them up under the key its own parser computes (mirrored in Go by
// dataplane.ParsePacket). FuzzKernelKey checks that the two agree on every
// frame both accept.
func kernelKeySeeds(tb testing.TB) [][]byte {
	c4 := netip.MustParseAddrPort("198.18.0.1:40000")
	s4 := netip.MustParseAddrPort("198.18.0.2:80")
	c6 := netip.MustParseAddrPort("[2001:2::1]:40000")
	s6 := netip.MustParseAddrPort("[2001:2::2]:80")
	var seeds [][]byte
	for _, spec := range []testnet.FrameSpec{
		{Src: c4, Dst: s4, Proto: testnet.ProtoTCP, Flags: testnet.SYN, Payload: []byte("x")},
		{Src: s6, Dst: c6, Proto: testnet.ProtoUDP, VLAN: 3, Payload: []byte("y")},
		{Src: c4, Dst: s4, Proto: testnet.ProtoICMP},
		{Src: c6, Dst: s6, Proto: testnet.ProtoICMPv6, Payload: []byte{0, 7, 0, 1}},
	} {
		seeds = append(seeds, testnet.Frame(tb, spec))
	}
	// IPv6 with hop-by-hop, AH and an atomic fragment before TCP
	seeds = append(seeds, []byte("\x02\xdd\x00\x00\x00\x02\x02\xdd\x00\x00\x00\x01\x86\xdd"+
		"\x60\x00\x00\x00\x00\x34\x00\x40"+"\x20\x01\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"+
		"\x20\x01\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02"+
		"\x33\x00\x01\x04\x00\x00\x00\x00"+"\x2c\x02\x00\x00\x00\x00\x00\x01\x00\x00\x00\x01\xaa\xbb\xcc\xdd"+
		"\x06\x00\x00\x00\x00\x00\x00\x01"+"\x9c\x40\x00\x50\x00\x00\x00\x01\x00\x00\x00\x00\x50\x02\xff\xff\x00\x00\x00\x00"))
	return seeds
}

// The seeds are accepted by both parsers, so FuzzKernelKey starts from
// frames where the keys are compared.
func TestKernelKeySeeds(t *testing.T) {
	d := decode.NewDecoder()
	for i, frame := range kernelKeySeeds(t) {
		var p decode.Packet
		var k dataplane.Packet
		if err := d.Decode(frame, &p); err != nil {
			t.Fatalf("seed %d: %v", i, err)
		}
		if kind := dataplane.ParsePacket(frame, &k); kind != dataplane.KindIP || !k.Keyed {
			t.Fatalf("seed %d: kernel parser: kind %v keyed %v", i, kind, k.Keyed)
		}
		if p.Key != k.Key || p.Dir != k.Dir || p.Flags&decode.FlagL4 == 0 {
			t.Fatalf("seed %d: decode %v, kernel %v", i, p.Key, k.Key)
		}
	}
}

func FuzzKernelKey(f *testing.F) {
	for _, s := range kernelKeySeeds(f) {
		f.Add(s)
	}
	d := decode.NewDecoder()
	f.Fuzz(func(t *testing.T, frame []byte) {
		var p decode.Packet
		var k dataplane.Packet
		err := d.Decode(frame, &p)
		kind := dataplane.ParsePacket(frame, &k)
		if err != nil || kind != dataplane.KindIP || p.IPVersion == 0 {
			// Decode is stricter (UDP length, hop-by-hop order, long
			// extension chains): it may refuse what the kernel keys, and
			// the engine drops what it refuses. It must never accept an IP
			// frame that the kernel finds malformed.
			if err == nil && p.IPVersion != 0 && kind == dataplane.KindMalformed {
				t.Fatalf("kernel parser finds the frame malformed, Decode accepts it: %v", &p)
			}
			var de *decode.Error
			if err != nil && !errors.As(err, &de) {
				t.Fatalf("error %v is not a *decode.Error", err)
			}
			return
		}
		if p.Key != k.Key || p.Dir != k.Dir {
			t.Fatalf("keys differ:\n decode %v dir %d\n kernel %v dir %d", p.Key, p.Dir, k.Key, k.Dir)
		}
		if (p.Flags&decode.FlagFragment != 0) != k.Fragment {
			t.Fatalf("fragment: decode %v, kernel %v", p.Flags&decode.FlagFragment != 0, k.Fragment)
		}
	})
}
