package dataplane

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
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
	Inspected uint64 // frames given to the Inspector
	Forwarded uint64 // frames judged Forward (inspected or by a final verdict)
	Dropped   uint64 // frames judged Drop
	// Held: frames judged Hold (copies kept by the Inspector, the IP
	// fragments of datagrams not complete yet); Released: held frames
	// given back and transmitted.
	Held, Released uint64
	Finals         uint64 // final verdicts written to the flow map
	CacheHits      uint64 // in-flight frames judged by a final verdict, not inspected
	// CacheForwarded and CacheDropped split CacheHits by action: frames of
	// a flow whose final verdict was written moments before, already in
	// user space, forwarded or dropped by it without the Inspector.
	CacheForwarded, CacheDropped uint64
	// VerdictForgets counts the times the worker dropped its remembered
	// verdicts after Pair.ForgetVerdicts.
	VerdictForgets uint64
	FlowErrors     uint64 // flow map writes that failed
	Checksums      uint64 // partial TCP/UDP checksums completed
	QueueDepth     int    // batches waiting in the worker's input
}

// ReaperStats count the flow reaper's work.
type ReaperStats struct {
	Passes, Idle, Closing, Errors uint64
	// Gone: entries the kernel removed by itself between passes (NFQUEUE
	// mode: conntrack's own timeouts).
	Gone uint64
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
		st.InFlight += int(l.outstanding.Load())
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
			Finals:         w.finalsSet.Load(),
			CacheForwarded: w.cacheForwarded.Load(),
			CacheDropped:   w.cacheDropped.Load(),
			VerdictForgets: w.epochClears.Load(),
			FlowErrors:     w.flowErrors.Load(),
			Checksums:      w.csums.Load(),
			Held:           w.held.Load(),
			Released:       w.released.Load(),
			QueueDepth:     len(w.in),
		}
		ws.CacheHits = ws.CacheForwarded + ws.CacheDropped
		for side := range 2 {
			ws.Inspected += w.inspected[side].Load()
			ws.Forwarded += w.forwarded[side].Load()
			ws.Dropped += w.dropped[side].Load()
			st.Side(Side(side)).Inspected += w.inspected[side].Load()
		}
		st.Workers = append(st.Workers, ws)
	}
	st.Reaper = p.reaper.snapshot()
	return st
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
