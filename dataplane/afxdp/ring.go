package afxdp

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Desc is one RX or TX descriptor (struct xdp_desc): a frame's address in
// the UMEM (chunk base plus data offset), its length and option bits.
type Desc struct {
	Addr    uint64
	Len     uint32
	Options uint32
}

// Compile-time check that Desc is laid out like struct xdp_desc.
var _ [16 - unsafe.Sizeof(Desc{})]byte
var _ [unsafe.Sizeof(Desc{}) - 16]byte

// ringHeader points at the shared part of a ring: the producer and consumer
// indexes (free-running, wrap at 2^32) and the flags word the kernel uses
// for need_wakeup.
type ringHeader struct {
	producer *uint32
	consumer *uint32
	flags    *uint32
	mask     uint32
	size     uint32
}

// needWakeup reports whether the kernel asked to be woken up for this ring
// (XDP_RING_NEED_WAKEUP). The flag is written by the kernel at any time, so
// it is read atomically; a stale read only costs one syscall or one poll.
func (h *ringHeader) needWakeup() bool {
	return h.flags != nil && atomic.LoadUint32(h.flags)&unix.XDP_RING_NEED_WAKEUP != 0
}

// ProdRing is a ring user space produces into and the kernel consumes from:
// the fill ring (frame addresses) and the TX ring (descriptors).
//
// Protocol (single producer): Reserve slots, write them with Set, then
// Submit publishes them with one atomic store of the producer index. The
// descriptor writes happen before that store, and the kernel reads the
// producer with acquire semantics before it reads descriptors, so it never
// sees a half-written slot. Free space is computed from an atomic load of
// the consumer index: the kernel publishes its consumer only after it has
// finished reading the slots, so overwriting them afterwards is safe.
type ProdRing[T uint64 | Desc] struct {
	h          ringHeader
	descs      []T
	cachedProd uint32 // next slot to reserve
	cachedCons uint32 // consumer index as last loaded, plus size
	published  uint32 // producer index as last stored
}

// Size is the ring's capacity in entries.
func (r *ProdRing[T]) Size() uint32 { return r.h.size }

// NeedWakeup reports whether the kernel wants a syscall to make progress on
// this ring (sendto for TX, poll or recvfrom for fill).
func (r *ProdRing[T]) NeedWakeup() bool { return r.h.needWakeup() }

// Free returns how many slots can be reserved now, refreshing the cached
// consumer index when the cached view shows fewer than want.
func (r *ProdRing[T]) Free(want uint32) uint32 {
	free := r.cachedCons - r.cachedProd
	if free >= want {
		return free
	}
	// Acquire: the kernel stored the consumer after reading the slots.
	r.cachedCons = atomic.LoadUint32(r.h.consumer) + r.h.size
	return r.cachedCons - r.cachedProd
}

// Reserve claims up to n slots and returns the index of the first one and
// how many it got (possibly 0). Reserved slots must be written with Set and
// published with Submit before the next Reserve.
func (r *ProdRing[T]) Reserve(n uint32) (idx, got uint32) {
	free := r.Free(n)
	got = min(n, free)
	idx = r.cachedProd
	r.cachedProd += got
	return idx, got
}

// Set writes the slot at idx (an index returned by Reserve, plus offset).
func (r *ProdRing[T]) Set(idx uint32, v T) { r.descs[idx&r.h.mask] = v }

// Submit publishes n reserved slots to the kernel.
func (r *ProdRing[T]) Submit(n uint32) {
	r.published += n
	// Release: every Set above happens before the kernel can see the new
	// producer index.
	atomic.StoreUint32(r.h.producer, r.published)
}

// Cancel gives back the last n reserved, unsubmitted slots.
func (r *ProdRing[T]) Cancel(n uint32) { r.cachedProd -= n }

// Pending returns how many published entries the kernel has not consumed
// yet (an atomic snapshot, for accounting checks and tests).
func (r *ProdRing[T]) Pending() uint32 {
	return atomic.LoadUint32(r.h.producer) - atomic.LoadUint32(r.h.consumer)
}

// Put reserves, writes and submits as many of vs as fit, in order, and
// returns how many it queued.
func (r *ProdRing[T]) Put(vs []T) int {
	idx, got := r.Reserve(uint32(min(len(vs), int(r.h.size))))
	for i := uint32(0); i < got; i++ {
		r.descs[(idx+i)&r.h.mask] = vs[i]
	}
	if got > 0 {
		r.Submit(got)
	}
	return int(got)
}

// ConsRing is a ring the kernel produces into and user space consumes from:
// the RX ring (descriptors) and the completion ring (frame addresses).
//
// Protocol (single consumer): Peek finds how many entries are ready from an
// atomic load of the producer index (acquire: the kernel wrote the slots
// before it stored the producer), Get reads them, Release publishes the new
// consumer index with an atomic store after the reads, so the kernel never
// overwrites a slot that is still being read.
type ConsRing[T uint64 | Desc] struct {
	h          ringHeader
	descs      []T
	cachedProd uint32 // producer index as last loaded
	cachedCons uint32 // next slot to peek
	released   uint32 // consumer index as last stored
}

// Size is the ring's capacity in entries.
func (r *ConsRing[T]) Size() uint32 { return r.h.size }

// NeedWakeup reports the ring's need_wakeup flag.
func (r *ConsRing[T]) NeedWakeup() bool { return r.h.needWakeup() }

// Available returns how many entries are ready, loading the producer index
// when the cached view has fewer than want.
func (r *ConsRing[T]) Available(want uint32) uint32 {
	avail := r.cachedProd - r.cachedCons
	if avail >= want {
		return avail
	}
	// Acquire: the kernel wrote the descriptors before storing producer.
	r.cachedProd = atomic.LoadUint32(r.h.producer)
	return r.cachedProd - r.cachedCons
}

// Peek claims up to n ready entries and returns the index of the first and
// how many it got. Read them with Get, then Release them.
func (r *ConsRing[T]) Peek(n uint32) (idx, got uint32) {
	got = min(n, r.Available(n))
	idx = r.cachedCons
	r.cachedCons += got
	return idx, got
}

// Get reads the entry at idx.
func (r *ConsRing[T]) Get(idx uint32) T { return r.descs[idx&r.h.mask] }

// Release hands n peeked entries back to the kernel.
func (r *ConsRing[T]) Release(n uint32) {
	r.released += n
	// Release: our reads of the slots happen before the kernel may reuse them.
	atomic.StoreUint32(r.h.consumer, r.released)
}

// Pending returns how many entries the kernel has produced and user space
// has not released (an atomic snapshot).
func (r *ConsRing[T]) Pending() uint32 {
	return atomic.LoadUint32(r.h.producer) - atomic.LoadUint32(r.h.consumer)
}

// Take copies up to len(dst) ready entries into dst, releases them and
// returns how many it copied.
func (r *ConsRing[T]) Take(dst []T) int {
	idx, got := r.Peek(uint32(min(len(dst), int(r.h.size))))
	for i := uint32(0); i < got; i++ {
		dst[i] = r.descs[(idx+i)&r.h.mask]
	}
	if got > 0 {
		r.Release(got)
	}
	return int(got)
}

// ringLayout is where a ring's fields live inside its mapping, as reported
// by XDP_MMAP_OFFSETS.
type ringLayout struct {
	producer, consumer, flags, desc uint64
}

// initRing points a ring header and descriptor slice into mem, checking that
// everything lies inside it (the offsets come from the kernel, but a wrong
// struct size or a short mapping must not turn into a wild pointer).
func initRing[T uint64 | Desc](mem []byte, lay ringLayout, size uint32) (ringHeader, []T, error) {
	if size == 0 || size&(size-1) != 0 {
		return ringHeader{}, nil, fmt.Errorf("ring size %d: %w", size, ErrRingSize)
	}
	var zero T
	esz := uint64(unsafe.Sizeof(zero))
	need := lay.desc + uint64(size)*esz
	for _, off := range []uint64{lay.producer, lay.consumer, lay.flags} {
		if off%4 != 0 || off+4 > uint64(len(mem)) {
			return ringHeader{}, nil, fmt.Errorf("ring index offset %d outside %d-byte mapping: %w", off, len(mem), ErrRingLayout)
		}
	}
	if lay.desc%8 != 0 || need > uint64(len(mem)) {
		return ringHeader{}, nil, fmt.Errorf("ring of %d entries at %d needs %d bytes, mapping has %d: %w", size, lay.desc, need, len(mem), ErrRingLayout)
	}
	base := unsafe.Pointer(unsafe.SliceData(mem))
	h := ringHeader{
		producer: (*uint32)(unsafe.Add(base, lay.producer)),
		consumer: (*uint32)(unsafe.Add(base, lay.consumer)),
		flags:    (*uint32)(unsafe.Add(base, lay.flags)),
		mask:     size - 1,
		size:     size,
	}
	descs := unsafe.Slice((*T)(unsafe.Add(base, lay.desc)), size)
	return h, descs, nil
}

// newProdRing builds a producer ring over mem. The cached indexes start
// from what the kernel shows (zero on a fresh ring).
func newProdRing[T uint64 | Desc](mem []byte, lay ringLayout, size uint32) (*ProdRing[T], error) {
	h, descs, err := initRing[T](mem, lay, size)
	if err != nil {
		return nil, err
	}
	prod := atomic.LoadUint32(h.producer)
	return &ProdRing[T]{h: h, descs: descs, cachedProd: prod, published: prod,
		cachedCons: atomic.LoadUint32(h.consumer) + size}, nil
}

// newConsRing builds a consumer ring over mem.
func newConsRing[T uint64 | Desc](mem []byte, lay ringLayout, size uint32) (*ConsRing[T], error) {
	h, descs, err := initRing[T](mem, lay, size)
	if err != nil {
		return nil, err
	}
	cons := atomic.LoadUint32(h.consumer)
	return &ConsRing[T]{h: h, descs: descs, cachedCons: cons, released: cons,
		cachedProd: atomic.LoadUint32(h.producer)}, nil
}
