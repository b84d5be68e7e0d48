package afxdp

import (
	"fmt"
	"strings"
)

// Place is where a UMEM frame is. Every frame is in exactly one place at
// any time; the allocator tracks it per frame so that a lost, doubly freed
// or doubly queued frame is caught instead of corrupting traffic.
type Place uint8

const (
	// PlaceFree: on the allocator's free list.
	PlaceFree Place = iota
	// PlaceFill: handed to the kernel for receiving (in a fill ring, held
	// by the kernel, or in an RX ring not yet read).
	PlaceFill
	// PlaceUser: in user space's hands (received, or allocated to build a
	// frame).
	PlaceUser
	// PlaceTx: handed to the kernel for sending (in a TX ring, being sent,
	// or in a completion ring not yet read).
	PlaceTx
	numPlaces
)

func (p Place) String() string {
	switch p {
	case PlaceFree:
		return "free"
	case PlaceFill:
		return "fill"
	case PlaceUser:
		return "user"
	case PlaceTx:
		return "tx"
	}
	return fmt.Sprintf("place-%d", uint8(p))
}

// Allocator hands out the frames of one UMEM and accounts for every move.
// It is owned by the goroutine that drives the UMEM's sockets.
type Allocator struct {
	free       []uint64 // frame base addresses, used as a stack
	place      []Place  // by frame index
	counts     [numPlaces]int
	frameShift uint
	frameMask  uint64
	numFrames  uint32

	violations int
	first      string // first violation, for the error message
}

// newAllocator makes an allocator of numFrames frames of 1<<frameShift
// bytes, all free.
func newAllocator(numFrames uint32, frameShift uint) *Allocator {
	a := &Allocator{
		free:       make([]uint64, numFrames),
		place:      make([]Place, numFrames),
		frameShift: frameShift,
		frameMask:  1<<frameShift - 1,
		numFrames:  numFrames,
	}
	// Pop order is low addresses first (the stack's top is the end).
	for i := range a.free {
		a.free[i] = uint64(numFrames-1-uint32(i)) << frameShift
	}
	a.counts[PlaceFree] = int(numFrames)
	return a
}

// NumFrames is the UMEM's frame count.
func (a *Allocator) NumFrames() int { return int(a.numFrames) }

// FreeCount is how many frames are on the free list.
func (a *Allocator) FreeCount() int { return len(a.free) }

// Count returns how many frames are in place p.
func (a *Allocator) Count(p Place) int { return a.counts[p] }

// Base returns the chunk base of a frame address (descriptors carry the
// base plus the offset of the data inside the chunk).
func (a *Allocator) Base(addr uint64) uint64 { return addr &^ a.frameMask }

// move records that the frame holding addr goes from one place to another.
// A frame that is not where the caller thinks, or an address outside the
// UMEM, is a violation: it is counted and the frame is left alone.
func (a *Allocator) move(addr uint64, from, to Place) bool {
	idx := addr >> a.frameShift
	if idx >= uint64(a.numFrames) {
		a.violate(fmt.Sprintf("address %#x outside the UMEM (%d frames) moving %v→%v", addr, a.numFrames, from, to))
		return false
	}
	if got := a.place[idx]; got != from {
		a.violate(fmt.Sprintf("frame %d (%#x) is %v, expected %v moving to %v", idx, addr, got, from, to))
		return false
	}
	a.place[idx] = to
	a.counts[from]--
	a.counts[to]++
	return true
}

func (a *Allocator) violate(msg string) {
	if a.violations == 0 {
		a.first = msg
	}
	a.violations++
}

// Alloc takes a frame off the free list into user hands and returns its
// base address; ok is false when none is free.
func (a *Allocator) Alloc() (addr uint64, ok bool) { return a.take(PlaceUser) }

// take pops a frame off the free list straight into place to (one move,
// where Alloc then handOver would make two).
func (a *Allocator) take(to Place) (addr uint64, ok bool) {
	n := len(a.free)
	if n == 0 {
		return 0, false
	}
	addr = a.free[n-1]
	a.free = a.free[:n-1]
	a.move(addr, PlaceFree, to)
	return addr, true
}

// Free returns a frame in user hands to the free list. addr may carry a
// data offset. It reports false (and counts a violation) when the frame was
// not in user hands.
func (a *Allocator) Free(addr uint64) bool { return a.release(addr, PlaceUser) }

// release puts the frame holding addr, which must be in place from, back
// on the free list.
func (a *Allocator) release(addr uint64, from Place) bool {
	addr = a.Base(addr)
	if !a.move(addr, from, PlaceFree) {
		return false
	}
	a.free = append(a.free, addr)
	return true
}

// handOver moves a user frame to the kernel (fill or TX).
func (a *Allocator) handOver(addr uint64, to Place) bool {
	return a.move(a.Base(addr), PlaceUser, to)
}

// takeBack moves a frame the kernel returned (from fill via RX, or from TX
// via completion) into user hands.
func (a *Allocator) takeBack(addr uint64, from Place) bool {
	return a.move(a.Base(addr), from, PlaceUser)
}

// reclaim moves a completed TX frame straight to the free list.
func (a *Allocator) reclaim(addr uint64) bool { return a.release(addr, PlaceTx) }

// Violations returns how many inconsistent moves were seen.
func (a *Allocator) Violations() int { return a.violations }

// Check verifies the accounting: no violations so far, every frame in
// exactly one place, the per-place counters equal to a recount, the free
// list holding exactly the free frames once each. It is O(frames), for
// tests and debug builds, not for the packet path.
func (a *Allocator) Check() error {
	var problems []string
	if a.violations > 0 {
		problems = append(problems, fmt.Sprintf("%d bad moves, first: %s", a.violations, a.first))
	}
	var recount [numPlaces]int
	for i, p := range a.place {
		if p >= numPlaces {
			problems = append(problems, fmt.Sprintf("frame %d in unknown place %d", i, p))
			continue
		}
		recount[p]++
	}
	if recount != a.counts {
		problems = append(problems, fmt.Sprintf("counters %v, recount %v", a.counts, recount))
	}
	total := 0
	for _, c := range a.counts {
		total += c
	}
	if total != int(a.numFrames) {
		problems = append(problems, fmt.Sprintf("counters sum to %d, UMEM has %d frames", total, a.numFrames))
	}
	seen := make([]bool, a.numFrames)
	for _, addr := range a.free {
		idx := addr >> a.frameShift
		switch {
		case addr&a.frameMask != 0 || idx >= uint64(a.numFrames):
			problems = append(problems, fmt.Sprintf("free list holds bad address %#x", addr))
		case seen[idx]:
			problems = append(problems, fmt.Sprintf("free list holds frame %d twice", idx))
		case a.place[idx] != PlaceFree:
			problems = append(problems, fmt.Sprintf("free list holds frame %d which is %v", idx, a.place[idx]))
		default:
			seen[idx] = true
		}
	}
	if len(a.free) != recount[PlaceFree] {
		problems = append(problems, fmt.Sprintf("free list has %d entries, %d frames are free", len(a.free), recount[PlaceFree]))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrAccounting, strings.Join(problems, "; "))
	}
	return nil
}

// String summarises the accounting.
func (a *Allocator) String() string {
	return fmt.Sprintf("frames %d: free %d fill %d user %d tx %d", a.numFrames,
		a.counts[PlaceFree], a.counts[PlaceFill], a.counts[PlaceUser], a.counts[PlaceTx])
}
