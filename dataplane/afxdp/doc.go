// Package afxdp owns deepwall's AF_XDP layer, written over golang.org/x/sys/unix
// alone: UMEM registration, the four rings (fill, completion, RX, TX) mapped
// from the kernel and driven with single-producer/single-consumer atomics,
// need_wakeup handling, batch receive and transmit, a frame allocator whose
// accounting proves that no frame is lost or owned twice, and sockets bound
// to one (ifindex, queue) each, optionally sharing one UMEM across devices
// (XDP_SHARED_UMEM) so that forwarding a frame between two ports is a
// descriptor move.
//
// Nothing here is safe for concurrent use: one goroutine owns a UMEM, its
// allocator and every socket bound to it. The kernel is the other side of
// each ring; the ring code is the only place where memory ordering matters
// and it says why at each atomic.
package afxdp
