package afxdp

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"
)

// fakeRing is ring memory laid out the way the kernel lays it out, with a
// "kernel" side driven by the test through the same atomics.
type fakeRing struct {
	mem  []byte
	lay  ringLayout
	size uint32
}

func newFakeRing(tb testing.TB, size uint32, esz int, start uint32) *fakeRing {
	tb.Helper()
	lay := ringLayout{producer: 0, consumer: 64, flags: 128, desc: 192}
	words := make([]uint64, (int(lay.desc)+int(size)*esz)/8)
	mem := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(words))), len(words)*8)
	f := &fakeRing{mem: mem, lay: lay, size: size}
	atomic.StoreUint32(f.prod(), start)
	atomic.StoreUint32(f.cons(), start)
	return f
}

func (f *fakeRing) word(off uint64) *uint32 { return (*uint32)(unsafe.Pointer(&f.mem[off])) }
func (f *fakeRing) prod() *uint32           { return f.word(f.lay.producer) }
func (f *fakeRing) cons() *uint32           { return f.word(f.lay.consumer) }
func (f *fakeRing) addrSlot(i uint32) *uint64 {
	return (*uint64)(unsafe.Pointer(&f.mem[f.lay.desc+uint64(i&(f.size-1))*8]))
}
func (f *fakeRing) descSlot(i uint32) *Desc {
	return (*Desc)(unsafe.Pointer(&f.mem[f.lay.desc+uint64(i&(f.size-1))*16]))
}

func TestRingSizeAndLayoutChecks(t *testing.T) {
	f := newFakeRing(t, 8, 8, 0)
	for _, tc := range []struct {
		name string
		lay  ringLayout
		size uint32
		want error
	}{
		{"not power of two", f.lay, 6, ErrRingSize},
		{"zero", f.lay, 0, ErrRingSize},
		{"descs past mapping", f.lay, 16, ErrRingLayout},
		{"index past mapping", ringLayout{producer: uint64(len(f.mem)), consumer: 64, flags: 128, desc: 192}, 8, ErrRingLayout},
		{"unaligned index", ringLayout{producer: 2, consumer: 64, flags: 128, desc: 192}, 8, ErrRingLayout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newProdRing[uint64](f.mem, tc.lay, tc.size)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestProdRingWrapAndFull(t *testing.T) {
	// Start just below 2^32 so the free-running indexes wrap mid-test.
	const size = 8
	f := newFakeRing(t, size, 8, ^uint32(0)-3)
	r, err := newProdRing[uint64](f.mem, f.lay, size)
	if err != nil {
		t.Fatal(err)
	}
	next := uint64(100) // value the user writes next
	want := uint64(100) // value the kernel expects next
	for round := 0; round < 20; round++ {
		// Fill as much as possible; a full ring reserves nothing.
		idx, got := r.Reserve(size + 3)
		if got != size-(atomic.LoadUint32(f.prod())-atomic.LoadUint32(f.cons())) {
			t.Fatalf("round %d: reserved %d with %d pending", round, got, r.Pending())
		}
		for i := uint32(0); i < got; i++ {
			r.Set(idx+i, next)
			next++
		}
		r.Submit(got)
		if _, more := r.Reserve(1); more != 0 {
			t.Fatalf("round %d: reserved on a full ring", round)
		}
		// The kernel consumes a varying amount.
		take := uint32(round%size) + 1
		c := atomic.LoadUint32(f.cons())
		for i := uint32(0); i < take; i++ {
			if v := *f.addrSlot(c + i); v != want {
				t.Fatalf("round %d: kernel read %d, want %d", round, v, want)
			}
			want++
		}
		atomic.StoreUint32(f.cons(), c+take)
	}
}

func TestProdRingCancel(t *testing.T) {
	f := newFakeRing(t, 4, 16, 0)
	r, err := newProdRing[Desc](f.mem, f.lay, 4)
	if err != nil {
		t.Fatal(err)
	}
	idx, got := r.Reserve(3)
	r.Set(idx, Desc{Addr: 1, Len: 1})
	r.Cancel(got - 1)
	r.Submit(1)
	if p := atomic.LoadUint32(f.prod()); p != 1 {
		t.Fatalf("producer = %d after cancel, want 1", p)
	}
	if _, got := r.Reserve(4); got != 3 {
		t.Fatalf("reserve after cancel got %d, want 3", got)
	}
}

func TestConsRingWrapAndRelease(t *testing.T) {
	const size = 16
	f := newFakeRing(t, size, 16, ^uint32(0)-5)
	r, err := newConsRing[Desc](f.mem, f.lay, size)
	if err != nil {
		t.Fatal(err)
	}
	produced, consumed := uint32(0), uint32(0)
	dst := make([]Desc, 5)
	for round := 0; round < 40; round++ {
		// Kernel produces as much as fits, up to round%7+1.
		p := atomic.LoadUint32(f.prod())
		space := size - (p - atomic.LoadUint32(f.cons()))
		n := min(space, uint32(round%7)+1)
		for i := uint32(0); i < n; i++ {
			*f.descSlot(p + i) = Desc{Addr: uint64(produced), Len: produced + 1}
			produced++
		}
		atomic.StoreUint32(f.prod(), p+n)
		got := r.Take(dst)
		for i := 0; i < got; i++ {
			if dst[i].Addr != uint64(consumed) || dst[i].Len != consumed+1 {
				t.Fatalf("round %d: got %+v, want addr %d", round, dst[i], consumed)
			}
			consumed++
		}
		if r.Pending() != produced-consumed {
			t.Fatalf("round %d: pending %d, want %d", round, r.Pending(), produced-consumed)
		}
	}
	if consumed == 0 {
		t.Fatal("nothing consumed")
	}
}

func TestRingNeedWakeup(t *testing.T) {
	f := newFakeRing(t, 4, 8, 0)
	r, err := newProdRing[uint64](f.mem, f.lay, 4)
	if err != nil {
		t.Fatal(err)
	}
	if r.NeedWakeup() {
		t.Fatal("need_wakeup set on a fresh ring")
	}
	atomic.StoreUint32(f.word(f.lay.flags), 1)
	if !r.NeedWakeup() {
		t.Fatal("need_wakeup flag not seen")
	}
}

// TestRingConcurrentSPSC runs a producer ring and a consumer ring against a
// "kernel" goroutine that moves entries from one to the other, the way the
// fill → RX path works. Under -race it also checks that the atomics order
// the plain descriptor accesses.
func TestRingConcurrentSPSC(t *testing.T) {
	const size, total = 64, 200000
	ff := newFakeRing(t, size, 8, ^uint32(0)-100)
	rf := newFakeRing(t, size, 16, 7)
	fill, err := newProdRing[uint64](ff.mem, ff.lay, size)
	if err != nil {
		t.Fatal(err)
	}
	rx, err := newConsRing[Desc](rf.mem, rf.lay, size)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // kernel: fill ring → rx ring
		defer wg.Done()
		moved := 0
		for moved < total {
			fc, fp := atomic.LoadUint32(ff.cons()), atomic.LoadUint32(ff.prod())
			rp, rc := atomic.LoadUint32(rf.prod()), atomic.LoadUint32(rf.cons())
			n := min(fp-fc, size-(rp-rc))
			for i := uint32(0); i < n; i++ {
				a := *ff.addrSlot(fc + i)
				*rf.descSlot(rp + i) = Desc{Addr: a, Len: uint32(a)}
			}
			atomic.StoreUint32(ff.cons(), fc+n)
			atomic.StoreUint32(rf.prod(), rp+n)
			moved += int(n)
		}
	}()
	sent, recvd := uint64(0), uint64(0)
	dst := make([]Desc, 17)
	for recvd < total {
		if sent < total {
			idx, got := fill.Reserve(uint32(min(13, total-sent)))
			for i := uint32(0); i < got; i++ {
				fill.Set(idx+i, sent)
				sent++
			}
			fill.Submit(got)
		}
		n := rx.Take(dst)
		for i := 0; i < n; i++ {
			if dst[i].Addr != recvd || dst[i].Len != uint32(recvd) {
				t.Fatalf("received %+v, want %d", dst[i], recvd)
			}
			recvd++
		}
	}
	wg.Wait()
}

func BenchmarkRingRoundTrip(b *testing.B) {
	const size = 2048
	f := newFakeRing(b, size, 16, 0)
	tx, _ := newProdRing[Desc](f.mem, f.lay, size)
	rx, _ := newConsRing[Desc](f.mem, f.lay, size)
	batch := make([]Desc, 64)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(batch) {
		tx.Put(batch)
		rx.Take(batch)
	}
}
