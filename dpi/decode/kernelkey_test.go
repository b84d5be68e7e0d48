package decode_test

import (
	"errors"
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
	var seeds [][]byte
	for _, spec := range []testnet.FrameSpec{
		{Src: testnet.Client4, Dst: testnet.Server4, Proto: testnet.ProtoTCP, Flags: testnet.SYN, Payload: []byte("x")},
		{Src: testnet.Server6, Dst: testnet.Client6, Proto: testnet.ProtoUDP, VLAN: 3, Payload: []byte("y")},
		{Src: testnet.Client4, Dst: testnet.Server4, Proto: testnet.ProtoICMP},
		{Src: testnet.Client6, Dst: testnet.Server6, Proto: testnet.ProtoICMPv6, Payload: []byte{0, 7, 0, 1}},
	} {
		seeds = append(seeds, testnet.Frame(tb, spec))
	}
	// IPv6 with hop-by-hop, AH and an atomic fragment before TCP
	tcp := testnet.RawTCP(testnet.SYN, 1, nil, nil)
	seeds = append(seeds, testnet.RawEth(0x86dd, testnet.RawIPv6(0,
		testnet.RawExt(51, testnet.RawAH(44, testnet.RawFrag6(testnet.ProtoTCP, 0, false, 1, tcp))))))
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
