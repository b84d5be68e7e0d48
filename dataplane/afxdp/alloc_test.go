package afxdp

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestAllocatorProperty drives the allocator through random legal frame
// lifecycles (alloc → fill → rx → tx → completion, drops, frees) against a
// model of where every frame is, checking the accounting after each step.
func TestAllocatorProperty(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		const frames, shift = 64, 11
		a := newAllocator(frames, shift)
		model := map[uint64]Place{} // frames not free, by base address
		rng := rand.New(rand.NewPCG(seed, seed*7))
		pick := func(p Place) (uint64, bool) {
			var c []uint64
			for addr, q := range model {
				if q == p {
					c = append(c, addr)
				}
			}
			if len(c) == 0 {
				return 0, false
			}
			return c[rng.IntN(len(c))], true
		}
		for step := 0; step < 3000; step++ {
			// Descriptors carry a data offset inside the chunk.
			off := uint64(rng.IntN(1 << shift))
			switch op := rng.IntN(6); op {
			case 0:
				addr, ok := a.Alloc()
				if ok != (len(model) < frames) {
					t.Fatalf("seed %d step %d: alloc ok=%v with %d used", seed, step, ok, len(model))
				}
				if ok {
					if _, dup := model[addr]; dup || addr&(1<<shift-1) != 0 {
						t.Fatalf("seed %d step %d: alloc returned used or unaligned %#x", seed, step, addr)
					}
					model[addr] = PlaceUser
				}
			case 1:
				if addr, ok := pick(PlaceUser); ok {
					a.Free(addr + off)
					delete(model, addr)
				}
			case 2:
				if addr, ok := pick(PlaceUser); ok {
					a.handOver(addr, PlaceFill)
					model[addr] = PlaceFill
				}
			case 3:
				if addr, ok := pick(PlaceFill); ok {
					a.takeBack(addr+off, PlaceFill)
					model[addr] = PlaceUser
				}
			case 4:
				if addr, ok := pick(PlaceUser); ok {
					a.handOver(addr+off, PlaceTx)
					model[addr] = PlaceTx
				}
			case 5:
				if addr, ok := pick(PlaceTx); ok {
					a.reclaim(addr + off)
					delete(model, addr)
				}
			}
			if err := a.Check(); err != nil {
				t.Fatalf("seed %d step %d: %v", seed, step, err)
			}
			var want [numPlaces]int
			want[PlaceFree] = frames - len(model)
			for _, p := range model {
				want[p]++
			}
			if want != a.counts {
				t.Fatalf("seed %d step %d: counts %v, model %v", seed, step, a.counts, want)
			}
		}
	}
}

// TestAllocatorCatchesBadMoves checks that every illegal move is reported
// and leaves the frame where it was.
func TestAllocatorCatchesBadMoves(t *testing.T) {
	for _, tc := range []struct {
		name string
		do   func(a *Allocator, user, fill, tx uint64) bool
	}{
		{"double free", func(a *Allocator, user, _, _ uint64) bool { a.Free(user); return a.Free(user) }},
		{"free a fill frame", func(a *Allocator, _, fill, _ uint64) bool { return a.Free(fill) }},
		{"free a tx frame", func(a *Allocator, _, _, tx uint64) bool { return a.Free(tx) }},
		{"rx of a frame never filled", func(a *Allocator, user, _, _ uint64) bool { return a.takeBack(user, PlaceFill) }},
		{"completion of a frame never sent", func(a *Allocator, _, fill, _ uint64) bool { return a.reclaim(fill) }},
		{"send a frame the kernel holds", func(a *Allocator, _, fill, _ uint64) bool { return a.handOver(fill, PlaceTx) }},
		{"address outside the umem", func(a *Allocator, _, _, _ uint64) bool { return a.Free(1 << 40) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAllocator(8, 11)
			user, _ := a.Alloc()
			fill, _ := a.Alloc()
			a.handOver(fill, PlaceFill)
			tx, _ := a.Alloc()
			a.handOver(tx, PlaceTx)
			if err := a.Check(); err != nil {
				t.Fatalf("setup: %v", err)
			}
			if tc.do(a, user, fill, tx) {
				t.Fatal("illegal move reported success")
			}
			err := a.Check()
			if !errors.Is(err, ErrAccounting) {
				t.Fatalf("Check = %v, want ErrAccounting", err)
			}
			if a.Violations() == 0 {
				t.Fatal("no violation counted")
			}
			total := 0
			for _, c := range a.counts {
				total += c
			}
			if total != 8 {
				t.Fatalf("counts %v no longer sum to 8", a.counts)
			}
		})
	}
}

func TestAllocatorExhaustion(t *testing.T) {
	a := newAllocator(4, 12)
	seen := map[uint64]bool{}
	for i := 0; i < 4; i++ {
		addr, ok := a.Alloc()
		if !ok || seen[addr] {
			t.Fatalf("alloc %d: %#x ok=%v", i, addr, ok)
		}
		seen[addr] = true
	}
	if _, ok := a.Alloc(); ok {
		t.Fatal("alloc from an empty free list")
	}
	if a.Count(PlaceUser) != 4 || a.FreeCount() != 0 {
		t.Fatalf("accounting %v", a)
	}
}

func BenchmarkAllocatorCycle(b *testing.B) {
	a := newAllocator(4096, 12)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		addr, _ := a.Alloc()
		a.handOver(addr, PlaceFill)
		a.takeBack(addr+256, PlaceFill)
		a.handOver(addr+256, PlaceTx)
		a.reclaim(addr + 256)
	}
}

// BenchmarkForwardCopyVsMove prices the alternative to a shared UMEM: with
// one UMEM per port, forwarding a frame costs an allocation in the other
// UMEM and a copy, where a shared UMEM moves only the descriptor.
func BenchmarkForwardCopyVsMove(b *testing.B) {
	src, err := NewUmem(UmemConfig{NumFrames: 64})
	if err != nil {
		b.Skip(err)
	}
	defer src.Close()
	dst, err := NewUmem(UmemConfig{NumFrames: 64})
	if err != nil {
		b.Skip(err)
	}
	defer dst.Close()
	for _, size := range []uint32{64, 1500} {
		b.Run(fmt.Sprintf("copy-%d", size), func(b *testing.B) {
			a := dst.Allocator()
			b.SetBytes(int64(size))
			for i := 0; i < b.N; i++ {
				addr, _ := a.Alloc()
				copy(dst.Chunk(addr)[:size], src.Frame(uint64(i%64)*uint64(src.FrameSize()), size))
				a.Free(addr)
			}
		})
	}
	b.Run("move", func(b *testing.B) {
		d := make([]Desc, 1)
		for i := 0; i < b.N; i++ {
			d[0] = Desc{Addr: uint64(i%64) * uint64(src.FrameSize()), Len: 1500}
		}
	})
}
