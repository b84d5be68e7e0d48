package dataplane_test

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/internal/testnet"
	"github.com/deepwall/deepwall/xdp"
)

// TestPrivilegedKeyMatchesKernel checks, frame by frame, that the flow key
// user space computes is the one the XDP program looks up: with a DROP
// entry under our key the program must drop the frame on the fast path,
// without it the frame must miss. A verdict written under a key the kernel
// never looks up would silently never apply.
func TestPrivilegedKeyMatchesKernel(t *testing.T) {
	testnet.RequirePrivileged(t)
	prog, err := xdp.Load(xdp.Options{MaxFlows: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	// BPF_PROG_TEST_RUN's ingress without a context is the loopback (1).
	if err := prog.SetPort(1, xdp.PortConfig{Slot: 0, Peer: 1, FailClosed: true}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 11))
	addr := func(v6 bool) netip.Addr {
		if v6 {
			var b [16]byte
			b[0], b[1], b[2], b[3] = 0x20, 0x01, 0, 2
			b[15] = byte(rng.IntN(4))
			return netip.AddrFrom16(b)
		}
		return netip.AddrFrom4([4]byte{198, 18, 0, byte(rng.IntN(4))})
	}
	protos := []uint8{testnet.ProtoTCP, testnet.ProtoUDP, testnet.ProtoICMP, testnet.ProtoICMPv6, 132}
	checked := 0
	for i := 0; i < 400; i++ {
		v6 := rng.IntN(2) == 0
		proto := protos[rng.IntN(len(protos))]
		if proto == testnet.ProtoICMP && v6 || proto == testnet.ProtoICMPv6 && !v6 {
			continue
		}
		spec := testnet.FrameSpec{Src: netip.AddrPortFrom(addr(v6), uint16(rng.IntN(3))), Dst: netip.AddrPortFrom(addr(v6), uint16(rng.IntN(3))),
			Proto: proto, Flags: testnet.ACK}
		if rng.IntN(3) == 0 {
			spec.VLAN = uint16(1 + rng.IntN(100))
		}
		switch proto {
		case testnet.ProtoICMP:
			spec.ICMPType = []uint8{0, 8, 3}[rng.IntN(3)]
		case testnet.ProtoICMPv6:
			spec.ICMPType = []uint8{128, 129, 1}[rng.IntN(3)]
			spec.Payload = []byte{0, byte(rng.IntN(3)), 0, 1}
		case 132:
			spec.Payload = []byte{0, byte(rng.IntN(3)), 0, byte(rng.IntN(3)), 0, 0, 0, 1, 0, 0, 0, 0}
		}
		frame := testnet.Frame(t, spec)
		var p dataplane.Packet
		if dataplane.ParsePacket(frame, &p) != dataplane.KindIP || !p.Keyed {
			t.Fatalf("frame %d (%+v) not keyed", i, spec)
		}
		run := func() uint32 {
			ret, err := prog.XDPProgram().Run(&ebpf.RunOptions{Data: frame})
			if err != nil {
				t.Fatal(err)
			}
			return ret
		}
		if ret := run(); ret != 1 { // no entry, no socket, fail-closed: XDP_DROP
			t.Fatalf("frame %d: %d without an entry", i, ret)
		}
		before, _ := prog.Stats()
		if err := prog.SetFlow(p.Key, xdp.VerdictDrop, 0); err != nil {
			t.Fatal(err)
		}
		run()
		after, _ := prog.Stats()
		if after.FastDrop != before.FastDrop+1 {
			t.Fatalf("frame %d (%+v): kernel did not find key %v", i, spec, p.Key)
		}
		if err := prog.DeleteFlow(p.Key); err != nil {
			t.Fatal(err)
		}
		checked++
	}
	if checked < 200 {
		t.Fatalf("only %d frames checked", checked)
	}
}
