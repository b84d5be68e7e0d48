package dataplane

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/deepwall/deepwall/xdp"
)

// SideStats are one port's user-space counters, summed over its queues.
type SideStats struct {
	RxFrames  uint64 // received on the port's AF_XDP sockets
	TxFrames  uint64 // queued on the port's TX rings (forwarded to it, and resets)
	Dropped   uint64 // received here and not forwarded (verdict Drop, malformed)
	Inspected uint64 // received here and given to the Inspector
	ToWorkers uint64 // received here and handed to a worker
	NonIP     uint64 // received here and forwarded without inspection
	Malformed uint64 // received here and dropped as malformed IP
	Resets    uint64 // TCP resets sent out of this port
	TxFull    uint64 // times the TX ring could not take every staged frame
	// KernelDrops: frames the kernel could not put on this port's RX rings
	// (no fill buffer, RX ring full), from XDP_STATISTICS.
	KernelDrops uint64
}

// WorkerStats are one worker's counters.
type WorkerStats struct {
	Inspected  uint64 // frames given to the Inspector
	Forwarded  uint64 // frames judged Forward (inspected or by a final verdict)
	Dropped    uint64 // frames judged Drop
	Finals     uint64 // final verdicts written to the flow map
	CacheHits  uint64 // in-flight frames judged by a final verdict, not inspected
	FlowErrors uint64 // flow map writes that failed
	Checksums  uint64 // partial TCP/UDP checksums completed
	QueueDepth int    // batches waiting in the worker's input
}

// ReaperStats count the flow reaper's work.
type ReaperStats struct {
	Passes, Idle, Closing, Errors uint64
}

// PairStats are a snapshot of the pair's counters.
type PairStats struct {
	Inner, Outer SideStats
	Workers      []WorkerStats
	// InFlight is the number of batches handed to workers and not back yet.
	InFlight int
	// TxKicks counts sendto calls made to push TX rings.
	TxKicks uint64
	Reaper  ReaperStats
}

// Side returns the counters of one side.
func (s *PairStats) Side(side Side) *SideStats {
	if side == Inner {
		return &s.Inner
	}
	return &s.Outer
}

// Stats returns a snapshot of the pair's counters. It is safe to call
// while the pair runs.
func (p *Pair) Stats() PairStats {
	var st PairStats
	for _, l := range p.loops {
		for side := range l.side {
			c, out := &l.side[side], st.Side(Side(side))
			out.RxFrames += c.rx.Load()
			out.TxFrames += c.tx.Load()
			out.Dropped += c.dropped.Load()
			out.ToWorkers += c.toWorkers.Load()
			out.NonIP += c.nonIP.Load()
			out.Malformed += c.malformed.Load()
			out.Resets += c.resets.Load()
			out.TxFull += c.txFull.Load()
		}
		st.TxKicks += l.kicks.Load()
		st.InFlight += int(l.outstandAtm.Load())
	}
	p.mu.Lock()
	for _, l := range p.loops {
		for side, s := range l.socks {
			if s == nil {
				continue
			}
			if ks, err := s.KernelStats(); err == nil {
				// rx_dropped already counts the frames lost to an empty fill
				// ring (rx_fill_ring_empty_descs tells how often).
				st.Side(Side(side)).KernelDrops += ks.Rx_dropped + ks.Rx_ring_full
			}
		}
	}
	p.mu.Unlock()
	for _, w := range p.work {
		ws := WorkerStats{
			Finals:     w.finalsSet.Load(),
			CacheHits:  w.cacheHits.Load(),
			FlowErrors: w.flowErrors.Load(),
			Checksums:  w.csums.Load(),
			QueueDepth: len(w.in),
		}
		for side := range 2 {
			ws.Inspected += w.inspected[side].Load()
			ws.Forwarded += w.forwarded[side].Load()
			ws.Dropped += w.dropped[side].Load()
			st.Side(Side(side)).Inspected += w.inspected[side].Load()
		}
		st.Workers = append(st.Workers, ws)
	}
	st.Reaper = ReaperStats{Passes: p.reaper.passes.Load(), Idle: p.reaper.idle.Load(),
		Closing: p.reaper.closing.Load(), Errors: p.reaper.errors.Load()}
	return st
}

type reaperStats struct {
	passes, idle, closing, errors atomic.Uint64
}

// maxReapPerPass bounds the deletions collected in one pass; the rest wait
// for the next.
const maxReapPerPass = 16384

// reap deletes flow entries that are idle past their protocol's timeout,
// and entries of flows that saw FIN or RST once they are idle past the
// closing grace, until ctx is done.
func (p *Pair) reap(ctx context.Context) {
	t := time.NewTicker(p.cfg.Aging.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.reapOnce(uint64(monoNow()))
	}
}

// reapOnce is one pass at time now (CLOCK_MONOTONIC ns).
func (p *Pair) reapOnce(now uint64) {
	a := &p.cfg.Aging
	var victims []xdp.FlowKey
	var idle, closing uint64
	err := p.prog.Flows(func(k xdp.FlowKey, v xdp.FlowValue) bool {
		age := time.Duration(0)
		if now > v.LastSeen {
			age = time.Duration(now - v.LastSeen)
		}
		switch {
		case v.Flags&xdp.FlowFlagClosing != 0 && age > a.Closing:
			closing++
		case age > a.timeout(k.Proto):
			idle++
		default:
			return true
		}
		victims = append(victims, k)
		return len(victims) < maxReapPerPass
	})
	p.reaper.passes.Add(1)
	if err != nil {
		p.reaper.errors.Add(1)
		p.log.Warn("flow reaper: iterate", "error", err)
	}
	for _, k := range victims {
		if err := p.prog.DeleteFlow(k); err != nil {
			p.reaper.errors.Add(1)
		}
	}
	p.reaper.idle.Add(idle)
	p.reaper.closing.Add(closing)
}

func (a *AgingConfig) timeout(proto uint8) time.Duration {
	switch proto {
	case protoTCP:
		return a.TCP
	case protoUDP:
		return a.UDP
	case protoICMP, protoICMPv6:
		return a.ICMP
	}
	return a.Other
}

// QueueRx returns the frames received per queue (both ports), to see how
// traffic spreads over queues.
func (p *Pair) QueueRx() []uint64 {
	out := make([]uint64, len(p.loops))
	for i, l := range p.loops {
		out[i] = l.side[Inner].rx.Load() + l.side[Outer].rx.Load()
	}
	return out
}

// Diagnostics describes every queue's frame accounting and its sockets'
// ring occupancy and kernel counters, for failure reports. It reads rings
// the I/O loops are using, so its figures are a racy snapshot.
func (p *Pair) Diagnostics() string {
	var b strings.Builder
	for _, l := range p.loops {
		fmt.Fprintf(&b, "queue %d: %v", l.q, l.alloc)
		for side, so := range l.socks {
			if so == nil {
				continue // closed
			}
			ks, err := so.KernelStats()
			fmt.Fprintf(&b, "; %v fill %d rx pending %d tx pending %d completions %d kernel %+v (err %v)",
				Side(side), so.InFill(), so.Rx.Pending(), so.Tx.Pending(), so.Comp.Pending(), ks, err)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// LoopCPU returns the CPU time (user and system) the I/O loop threads have
// used so far, read from /proc; loops that are not running count 0. With
// one worker on one queue the loop does all of the pair's user-space work,
// so this is the whole cost of the AF_XDP path outside the kernel's receive
// softirq.
func (p *Pair) LoopCPU() time.Duration {
	var total time.Duration
	for _, l := range p.loops {
		tid := l.tid.Load()
		if tid == 0 {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/stat", tid))
		if err != nil {
			continue
		}
		total += threadCPU(b)
	}
	return total
}

// clockTicks is USER_HZ, the unit of /proc CPU times; it is 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// threadCPU parses utime+stime out of a /proc/<pid>/task/<tid>/stat line.
func threadCPU(stat []byte) time.Duration {
	// The command name may contain spaces and parentheses: fields start
	// after the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks
}
