package dataplane

import (
	"testing"

	"github.com/deepwall/deepwall/dataplane/afxdp"
	"github.com/deepwall/deepwall/internal/testnet"
)

// TestJudgeNoAllocs: a worker judging a batch (parse results, Inspect,
// checksum completion) allocates nothing per frame.
func TestJudgeNoAllocs(t *testing.T) {
	u, err := afxdp.NewUmem(afxdp.UmemConfig{NumFrames: 64})
	if err != nil {
		t.Skipf("umem: %v", err)
	}
	defer u.Close()
	seen := 0
	w, b := judgeBatch(u, func(_ int, f *Frame) Verdict {
		seen += len(f.Data)
		return Verdict{Action: Forward}
	}, 32, testnet.Frame(t, testnet.FrameSpec{Src: testnet.Client4, Dst: testnet.Server4, Proto: testnet.ProtoTCP, Flags: testnet.ACK, Payload: make([]byte, 1000)}))
	if n := testing.AllocsPerRun(100, func() { w.judge(b) }); n != 0 {
		t.Fatalf("judge allocates %.1f times per batch", n)
	}
	if seen == 0 || w.forwarded[Inner].Load() == 0 {
		t.Fatal("inspector not called")
	}
}

func BenchmarkJudge(b *testing.B) {
	u, err := afxdp.NewUmem(afxdp.UmemConfig{NumFrames: 64})
	if err != nil {
		b.Skip(err)
	}
	defer u.Close()
	w, bt := judgeBatch(u, func(int, *Frame) Verdict { return Verdict{} }, 64,
		testnet.Frame(b, testnet.FrameSpec{Src: testnet.Client4, Dst: testnet.Server4, Proto: testnet.ProtoUDP, Payload: make([]byte, 18)}))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += bt.n {
		w.judge(bt)
	}
}

// judgeBatch makes a one-worker pair judging with fn and a batch of n
// copies of frame in u, parsed as the I/O loop parses them.
func judgeBatch(u *afxdp.Umem, fn InspectorFunc, n int, frame []byte) (*worker, *batch) {
	p := &Pair{cfg: PairConfig{Workers: 1, Inspector: fn}}
	b := &batch{loop: &ioLoop{p: p, umem: u}, items: make([]item, n), n: n}
	for i := range b.items {
		addr := uint64(i) * uint64(u.FrameSize())
		copy(u.Chunk(addr), frame)
		it := &b.items[i]
		it.desc = afxdp.Desc{Addr: addr, Len: uint32(len(frame))}
		ParsePacket(frame, &it.pkt)
	}
	return newWorker(p, 0), b
}
