package dataplane

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/deepwall/deepwall/dataplane/afxdp"
	"github.com/deepwall/deepwall/xdp"
)

// item is one frame on its way through a worker.
type item struct {
	desc  afxdp.Desc
	side  Side
	act   Action
	reset bool
	pkt   Packet
	// rel is the range of batch.rel holding the frames the Inspector
	// released with this frame's verdict.
	relFrom, relTo int
}

// batch carries frames of one I/O loop to one worker and back, so that a
// hand-off costs one channel operation per batch, not per frame.
type batch struct {
	loop  *ioLoop
	ts    int64
	n     int
	items []item
	// rel and relBuf hold copies of released frames (Verdict.Release)
	// until the loop transmits them: rel[i] is a range of relBuf.
	rel    [][2]int
	relBuf []byte
}

// sideCounters are one port's counters in one I/O loop.
type sideCounters struct {
	rx, tx, dropped, toWorkers, nonIP, malformed, resets, txFull atomic.Uint64
}

// ioLoop owns one queue of both ports: a UMEM shared by the inner and the
// outer socket of that queue, so forwarding a frame is moving its
// descriptor from one socket's RX ring to the other's TX ring.
type ioLoop struct {
	p          *Pair
	q          int
	umem       *afxdp.Umem
	alloc      *afxdp.Allocator
	socks      [2]*afxdp.Socket
	fillTarget int
	batchSize  int
	// inline: one queue and one worker, so this loop calls the worker
	// itself (Inspect stays serial for worker 0) and skips two goroutine
	// hand-offs per batch.
	inline bool

	rx      []afxdp.Desc
	txq     [2][]afxdp.Desc // staged for each side's TX ring
	open    []*batch        // batch being filled, per worker
	pool    []*batch        // empty batches
	results chan *batch
	pollFDs []unix.PollFd
	scratch Packet

	side  [2]sideCounters
	kicks atomic.Uint64
	// outstanding counts the batches handed to workers and not finished;
	// atomic only so that Stats can read it.
	outstanding atomic.Int64
	tid         atomic.Int32 // thread running the loop, 0 when not running
}

func newIOLoop(p *Pair, q int) (*ioLoop, error) {
	u, err := afxdp.NewUmem(afxdp.UmemConfig{FrameSize: p.cfg.FrameSize, NumFrames: p.cfg.NumFrames})
	if err != nil {
		return nil, err
	}
	l := &ioLoop{p: p, q: q, umem: u, alloc: u.Allocator(), batchSize: p.cfg.BatchSize}
	for side, port := range p.ports {
		s, err := afxdp.NewSocket(u, port.sockIfindex(), q, p.socketConfig())
		if err != nil {
			_ = l.close()
			return nil, fmt.Errorf("socket on %s: %w", port.name, err)
		}
		l.socks[side] = s
	}
	nf := int(u.NumFrames())
	// A quarter of the frames waits in each fill ring; the other half is
	// for frames in the workers and in the TX rings.
	l.fillTarget = min(nf/4, int(l.socks[0].Fill.Size()))
	l.rx = make([]afxdp.Desc, l.batchSize)
	for side := range l.txq {
		l.txq[side] = make([]afxdp.Desc, 0, nf)
	}
	l.inline = len(p.work) == 1 && p.ports[0].queues == 1
	nb := batchesPerLoop(len(p.work))
	l.results = make(chan *batch, nb)
	l.open = make([]*batch, len(p.work))
	for i := 0; i < nb; i++ {
		l.pool = append(l.pool, &batch{loop: l, items: make([]item, l.batchSize)})
	}
	l.pollFDs = []unix.PollFd{
		{Fd: int32(l.socks[Inner].FD()), Events: unix.POLLIN},
		{Fd: int32(l.socks[Outer].FD()), Events: unix.POLLIN},
		{Fd: int32(p.stopFD), Events: unix.POLLIN},
	}
	// Stock the fill rings now: once the sockets are registered the kernel
	// queues frames for us even before Run starts.
	for _, s := range l.socks {
		s.Refill(l.fillTarget)
	}
	return l, nil
}

// batchesPerLoop is how many batches an I/O loop has: more than workers,
// so that one is free while every worker holds one.
func batchesPerLoop(workers int) int { return 4*workers + 4 }

func (l *ioLoop) close() error {
	var errs []error
	for i, s := range l.socks {
		if s != nil {
			errs = append(errs, s.Close())
			l.socks[i] = nil
		}
	}
	if l.umem != nil {
		errs = append(errs, l.umem.Close())
		l.umem = nil
	}
	return errors.Join(errs...)
}

// run is the loop: reclaim, refill, receive and dispatch, collect verdicts,
// transmit; sleep in poll() when there is nothing to do.
func (l *ioLoop) run() error {
	// One thread per loop: it keeps the rings hot in its cache, and its
	// CPU time (LoopCPU) is the loop's cost, kernel TX work included.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	l.tid.Store(int32(unix.Gettid()))
	defer l.tid.Store(0)
	idle := 0
	for !l.p.stopping.Load() {
		progress := 0
		for _, s := range l.socks {
			s.Complete()
			s.Refill(l.fillTarget)
		}
		for side := range l.socks {
			progress += l.receive(Side(side))
		}
		l.dispatch()
		progress += l.collect()
		txMore, err := l.flush()
		if err != nil {
			return err
		}
		if progress > 0 || txMore {
			idle = 0
			continue
		}
		if l.outstanding.Load() > 0 {
			// Workers hold frames: their results are the next thing to do.
			if b, ok := <-l.results; ok {
				l.finish(b)
			}
			continue
		}
		if idle < l.p.cfg.Spin {
			idle++
			continue
		}
		idle = 0
		timeout := 200
		if l.socks[0].InTx()+l.socks[1].InTx() > 0 {
			timeout = 1 // completions to reap
		}
		if _, err := afxdp.Poll(l.pollFDs, timeout); err != nil {
			return err
		}
	}
	return nil
}

// receive takes a batch from one socket and sorts it: IP frames to the
// worker that owns their flow, other frames straight to the peer port,
// malformed frames back to the free list.
func (l *ioLoop) receive(side Side) int {
	s := l.socks[side]
	n := s.Receive(l.rx)
	if n == 0 {
		return 0
	}
	ts := monoNow()
	peer := side.Peer()
	nw := len(l.open)
	var nonIP, malformed, inspect uint64
	for _, d := range l.rx[:n] {
		frame := l.umem.Frame(d.Addr, d.Len)
		switch ParsePacket(frame, &l.scratch) {
		case KindOther:
			l.txq[peer] = append(l.txq[peer], d)
			nonIP++
			continue
		case KindMalformed:
			l.alloc.Free(d.Addr)
			malformed++
			continue
		}
		w := l.scratch.Key.Worker(nw)
		b := l.open[w]
		if b == nil {
			b = l.getBatch()
			b.ts = ts
			l.open[w] = b
		}
		it := &b.items[b.n]
		it.desc, it.side, it.pkt = d, side, l.scratch
		b.n++
		inspect++
		if b.n == len(b.items) {
			l.send(w)
		}
	}
	c := &l.side[side]
	c.rx.Add(uint64(n))
	c.nonIP.Add(nonIP)
	c.malformed.Add(malformed)
	c.dropped.Add(malformed)
	c.toWorkers.Add(inspect)
	return n
}

// getBatch returns an empty batch, waiting for a worker to hand one back
// when all are out (there are more batches than workers, so one is out).
func (l *ioLoop) getBatch() *batch {
	for len(l.pool) == 0 {
		l.finish(<-l.results)
	}
	b := l.pool[len(l.pool)-1]
	l.pool = l.pool[:len(l.pool)-1]
	return b
}

func (l *ioLoop) send(w int) {
	b := l.open[w]
	l.open[w] = nil
	l.outstanding.Add(1)
	if l.inline {
		// The only worker of the only loop: judge here, no hand-off.
		l.p.work[w].judge(b)
		l.finish(b)
		return
	}
	l.p.work[w].in <- b
}

// dispatch hands every partly filled batch to its worker.
func (l *ioLoop) dispatch() {
	for w, b := range l.open {
		if b != nil && b.n > 0 {
			l.send(w)
		}
	}
}

// collect applies the verdicts of the batches the workers have returned.
func (l *ioLoop) collect() int {
	n := 0
	for {
		select {
		case b := <-l.results:
			n += b.n
			l.finish(b)
		default:
			return n
		}
	}
}

// finish applies a returned batch's verdicts: forwarded frames go to the
// peer port's TX ring, dropped ones back to the free list, with resets
// built first when asked.
func (l *ioLoop) finish(b *batch) {
	var dropped [2]uint64
	for i := range b.items[:b.n] {
		it := &b.items[i]
		switch it.act {
		case Forward:
			peer := it.side.Peer()
			if it.relTo > it.relFrom {
				l.sendReleased(b, it, peer)
			}
			l.txq[peer] = append(l.txq[peer], it.desc)
			continue
		case Drop:
			if it.reset {
				l.sendResets(it)
			}
			dropped[it.side]++
		}
		l.alloc.Free(it.desc.Addr)
	}
	b.rel, b.relBuf = b.rel[:0], b.relBuf[:0]
	for side, d := range dropped {
		if d > 0 {
			l.side[side].dropped.Add(d)
		}
	}
	b.n = 0
	l.outstanding.Add(-1)
	l.pool = append(l.pool, b)
}

// sendReleased queues the frames released with the verdict on it out of port out,
// ahead of it. A frame that finds no free UMEM frame is lost, counted as
// a TX overflow.
func (l *ioLoop) sendReleased(b *batch, it *item, out Side) {
	for _, r := range b.rel[it.relFrom:it.relTo] {
		frame := b.relBuf[r[0]:r[1]]
		addr, ok := l.alloc.Alloc()
		if !ok || len(frame) > len(l.umem.Chunk(addr)) {
			if ok {
				l.alloc.Free(addr)
			}
			l.side[out].txFull.Add(1)
			continue
		}
		n := copy(l.umem.Chunk(addr), frame)
		l.txq[out] = append(l.txq[out], afxdp.Desc{Addr: addr, Len: uint32(n)})
	}
}

// sendResets queues a reset to each end of the dropped TCP segment: to the
// receiver out of the peer port, to the sender back out of the ingress
// port.
func (l *ioLoop) sendResets(it *item) {
	frame := l.umem.Frame(it.desc.Addr, it.desc.Len)
	for _, toSender := range []bool{false, true} {
		addr, ok := l.alloc.Alloc()
		if !ok {
			return
		}
		n, err := BuildRST(l.umem.Chunk(addr), frame, &it.pkt, toSender)
		if err != nil {
			l.alloc.Free(addr)
			continue
		}
		out := it.side.Peer()
		if toSender {
			out = it.side
		}
		l.txq[out] = append(l.txq[out], afxdp.Desc{Addr: addr, Len: uint32(n)})
		l.side[out].resets.Add(1)
	}
}

// flush puts staged frames on the TX rings and kicks the kernel once per
// ring. Frames that do not fit stay staged for the next turn. more reports
// that a TX ring has frames left after this turn's kick.
//
// One sendto per ring and turn: copy mode sends at most XDP_MAX_TX_SKB_BUDGET
// frames per call and each takes about a microsecond, so looping here until
// the ring is empty would keep the loop from refilling the fill rings for
// milliseconds and the kernel would drop received frames meanwhile; the
// next turn kicks again. Holding kicks back to fill larger batches (tried:
// at most 32 frames or 50 µs) saved no CPU and cost throughput.
func (l *ioLoop) flush() (more bool, err error) {
	for side, s := range l.socks {
		q := l.txq[side]
		if len(q) > 0 {
			sent := s.Transmit(q)
			if sent < len(q) {
				l.side[side].txFull.Add(1)
			}
			l.side[side].tx.Add(uint64(sent))
			l.txq[side] = q[:copy(q, q[sent:])]
		}
		if s.Tx.Pending() == 0 || !s.NeedsKick() {
			continue
		}
		l.kicks.Add(1)
		left, err := s.Kick()
		if err != nil {
			return false, err
		}
		more = more || left
	}
	return more, nil
}

// worker inspects the frames of the flows that hash to it.
type worker struct {
	id     int
	p      *Pair
	in     chan *batch
	frame  Frame // reused for every Inspect call: no allocation per frame
	finals map[xdp.FlowKey]finalEntry
	// epoch is the Pair's verdict epoch the finals belong to; when
	// ForgetVerdicts moves the Pair's on, the worker drops them all.
	epoch uint64

	inspected, forwarded, dropped             [2]atomic.Uint64 // by ingress side
	finalsSet, flowErrors, csums              atomic.Uint64
	cacheForwarded, cacheDropped, epochClears atomic.Uint64
	held, released                            atomic.Uint64
}

// finalEntry remembers a final verdict for frames of the flow that were
// already on their way through user space when it was written.
type finalEntry struct {
	act   Action
	until int64
}

// Limits of the final-verdict memory.
const (
	// finalTTL is how long a final verdict applies to frames still in
	// user space; after it the kernel's entry has long taken over.
	finalTTL = int64(2e9)
	// maxFinals bounds the memory per worker; it is cleared when full.
	maxFinals = 1 << 14
)

func newWorker(p *Pair, id int) *worker {
	// Room for every batch of every loop: a loop never blocks on a send.
	return &worker{id: id, p: p, in: make(chan *batch, batchesPerLoop(p.cfg.Workers)*max(p.ports[0].queues, 1)),
		finals: make(map[xdp.FlowKey]finalEntry)}
}

func (w *worker) run() {
	for b := range w.in {
		w.judge(b)
		b.loop.results <- b
	}
}

func (w *worker) judge(b *batch) {
	u := b.loop.umem
	insp := w.p.cfg.Inspector
	if e := w.p.epoch.Load(); e != w.epoch {
		// Verdicts were revoked (a rule change): none remembered before
		// may judge another frame.
		w.epoch = e
		if len(w.finals) > 0 {
			clear(w.finals)
			w.epochClears.Add(1)
		}
	}
	var inspected, forwarded, dropped [2]uint64
	var cs, cacheFwd, cacheDrop, held, released uint64
	for i := range b.items[:b.n] {
		it := &b.items[i]
		frame := u.Frame(it.desc.Addr, it.desc.Len)
		it.relFrom, it.relTo = 0, 0
		if e, ok := w.final(&it.pkt); ok && b.ts < e.until {
			it.act, it.reset = e.act, false
			if e.act == Forward {
				cacheFwd++
			} else {
				cacheDrop++
			}
		} else {
			w.frame = Frame{Data: frame, Ingress: it.side, Ifindex: w.p.ports[it.side].ifindex, Key: it.pkt.Key, Dir: it.pkt.Dir, Timestamp: b.ts}
			v := insp.Inspect(w.id, &w.frame)
			inspected[it.side]++
			it.act = v.Action
			if v.Action == Forward && len(v.Release) > 0 {
				// Copied now: the Inspector's frames are valid until its
				// next call only.
				it.relFrom = len(b.rel)
				for _, f := range v.Release {
					b.rel = append(b.rel, [2]int{len(b.relBuf), len(b.relBuf) + len(f)})
					b.relBuf = append(b.relBuf, f...)
				}
				it.relTo = len(b.rel)
				released += uint64(len(v.Release))
			}
			it.reset = v.Reset && v.Action == Drop && it.pkt.Keyed && it.pkt.Proto == protoTCP
			if v.Final && it.pkt.Keyed {
				w.setFinal(it.pkt.Key, v.Action, v.RuleID, b.ts)
			}
		}
		switch it.act {
		case Forward:
			forwarded[it.side]++
			if CompletePartialChecksum(frame, &it.pkt) {
				cs++
			}
		case Hold:
			held++
		default:
			dropped[it.side]++
		}
	}
	w.frame = Frame{}
	for side := range 2 {
		w.inspected[side].Add(inspected[side])
		w.forwarded[side].Add(forwarded[side])
		w.dropped[side].Add(dropped[side])
	}
	if cs > 0 {
		w.csums.Add(cs)
	}
	if held > 0 {
		w.held.Add(held)
	}
	if released > 0 {
		w.released.Add(released)
	}
	if cacheFwd > 0 {
		w.cacheForwarded.Add(cacheFwd)
	}
	if cacheDrop > 0 {
		w.cacheDropped.Add(cacheDrop)
	}
}

// final returns the remembered final verdict of a keyed packet's flow.
func (w *worker) final(p *Packet) (finalEntry, bool) {
	if len(w.finals) == 0 || !p.Keyed {
		return finalEntry{}, false
	}
	e, ok := w.finals[p.Key]
	return e, ok
}

// setFinal writes a final verdict, with the rule that decided it, into the
// kernel's flow map so that the flow's next packets stay in the kernel,
// and remembers it for the frames already in flight.
func (w *worker) setFinal(k xdp.FlowKey, act Action, ruleID uint32, now int64) {
	v := xdp.VerdictAllow
	if act == Drop {
		v = xdp.VerdictDrop
	}
	if err := w.p.prog.SetFlow(k, v, ruleID); err != nil {
		if w.flowErrors.Add(1) == 1 {
			w.p.log.Error("write flow verdict", "flow", k.String(), "verdict", v.String(), "error", err)
		}
	}
	w.finalsSet.Add(1)
	if len(w.finals) >= maxFinals {
		clear(w.finals)
	}
	w.finals[k] = finalEntry{act: act, until: now + finalTTL}
}
