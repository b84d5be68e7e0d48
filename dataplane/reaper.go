package dataplane

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/deepwall/deepwall/xdp"
)

// EndReason says why the reaper ended a flow the kernel carried.
type EndReason uint8

const (
	// EndIdle: no packet for longer than the protocol's timeout.
	EndIdle EndReason = iota
	// EndClosing: FIN or RST seen on the fast path, then idle past
	// AgingConfig.Closing.
	EndClosing
	// EndGone: the kernel dropped the entry by itself (NFQUEUE mode:
	// conntrack expired or evicted it); the counters are the last ones
	// read.
	EndGone
)

func (r EndReason) String() string {
	switch r {
	case EndIdle:
		return "idle"
	case EndClosing:
		return "closing"
	}
	return "gone"
}

// FlowEndFunc hears of every flow entry the reaper removes, with the
// entry's last value (its fast-path counters). It is called from the
// reaper's goroutine, after the entry is gone.
type FlowEndFunc func(k xdp.FlowKey, v xdp.FlowValue, reason EndReason)

type reaperStats struct {
	passes, idle, closing, gone, errors atomic.Uint64
}

func (r *reaperStats) snapshot() ReaperStats {
	return ReaperStats{Passes: r.passes.Load(), Idle: r.idle.Load(), Closing: r.closing.Load(),
		Gone: r.gone.Load(), Errors: r.errors.Load()}
}

// maxReapPerPass bounds the deletions collected in one pass; the rest wait
// for the next.
const maxReapPerPass = 16384

// reapTicker calls pass every interval until ctx is done.
func reapTicker(ctx context.Context, interval time.Duration, pass func(now uint64)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pass(uint64(monoNow()))
	}
}

// expired says whether an entry idle since lastSeen is due at now, and why.
func (a *AgingConfig) expired(proto uint8, closing bool, lastSeen, now uint64) (EndReason, bool) {
	age := time.Duration(0)
	if now > lastSeen {
		age = time.Duration(now - lastSeen)
	}
	switch {
	case closing && age > a.Closing:
		return EndClosing, true
	case age > a.timeout(proto):
		return EndIdle, true
	}
	return 0, false
}

// reapOnce is one pass of the XDP pair's reaper at time now
// (CLOCK_MONOTONIC ns): entries that saw FIN or RST and are idle past
// Closing, and entries idle past their protocol's timeout, are deleted and
// reported to OnFlowEnd.
func (p *Pair) reapOnce(now uint64) {
	a := &p.cfg.Aging
	type victim struct {
		k      xdp.FlowKey
		v      xdp.FlowValue
		reason EndReason
	}
	var victims []victim
	err := p.prog.Flows(func(k xdp.FlowKey, v xdp.FlowValue) bool {
		if r, due := a.expired(k.Proto, v.Flags&xdp.FlowFlagClosing != 0, v.LastSeen, now); due {
			victims = append(victims, victim{k, v, r})
		}
		return len(victims) < maxReapPerPass
	})
	p.reaper.passes.Add(1)
	if err != nil {
		p.reaper.errors.Add(1)
		p.log.Warn("flow reaper: iterate", "error", err)
	}
	for _, vi := range victims {
		// Read it again: packets may have arrived since the pass read it,
		// and the value reported must hold the last counters.
		v, ok, err := p.prog.LookupFlow(vi.k)
		if err != nil {
			p.reaper.errors.Add(1)
			continue
		}
		if !ok || v.LastSeen != vi.v.LastSeen {
			continue
		}
		if err := p.prog.DeleteFlow(vi.k); err != nil {
			p.reaper.errors.Add(1)
			continue
		}
		if vi.reason == EndClosing {
			p.reaper.closing.Add(1)
		} else {
			p.reaper.idle.Add(1)
		}
		if a.OnFlowEnd != nil {
			a.OnFlowEnd(vi.k, v, vi.reason)
		}
	}
}

// SetDefaults fills a's zero fields with the defaults (for the NFQUEUE
// pair, whose reaper keeps the same timeouts).
func (a *AgingConfig) SetDefaults() { a.setDefaults() }

// Timeout is the idle timeout of a flow of protocol proto (after
// SetDefaults).
func (a *AgingConfig) Timeout(proto uint8) time.Duration { return a.timeout(proto) }

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
