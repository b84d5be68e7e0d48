package ctl

import (
	"context"
	"time"

	"github.com/deepwall/deepwall/xdp"
)

// The agent reaps the kernel flow map itself, with the dataplane's
// timeouts (dataplane.AgingConfig defaults), because the dataplane's
// reaper deletes entries without telling anyone, and a bypassed flow's
// end is where its flow event (with the kernel's counters) comes from.
// The pair runs with its own reaper disabled.
type reaperConfig struct {
	TCP, UDP, ICMP, Other, Closing time.Duration
	Interval                       time.Duration
}

var defaultReaper = reaperConfig{TCP: 10 * time.Minute, UDP: time.Minute, ICMP: 30 * time.Second,
	Other: time.Minute, Closing: 10 * time.Second, Interval: 2500 * time.Millisecond}

// maxReapPerPass bounds the deletions of one pass; the rest wait.
const maxReapPerPass = 16384

func (r *reaperConfig) timeout(proto uint8) time.Duration {
	switch proto {
	case 6:
		return r.TCP
	case 17:
		return r.UDP
	case 1, 58:
		return r.ICMP
	}
	return r.Other
}

// reap removes idle entries until ctx is done.
func (a *Agent) reap(ctx context.Context, cfg reaperConfig) {
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.reapOnce(cfg, uint64(monoNow()))
	}
}

// reapOnce is one pass at now (CLOCK_MONOTONIC ns): entries that saw FIN
// or RST and are idle past Closing, and entries idle past their
// protocol's timeout, are deleted and reported to the engine.
func (a *Agent) reapOnce(cfg reaperConfig, now uint64) int {
	prog := a.pair.Program()
	if prog == nil {
		return 0
	}
	type victim struct {
		k xdp.FlowKey
		v xdp.FlowValue
	}
	var victims []victim
	err := prog.Flows(func(k xdp.FlowKey, v xdp.FlowValue) bool {
		idle := time.Duration(0)
		if now > v.LastSeen {
			idle = time.Duration(now - v.LastSeen)
		}
		if v.Flags&xdp.FlowFlagClosing != 0 && idle > cfg.Closing || idle > cfg.timeout(k.Proto) {
			victims = append(victims, victim{k, v})
		}
		return len(victims) < maxReapPerPass
	})
	if err != nil {
		a.log.Warn("flow reaper: iterate the flow map", "error", err)
	}
	n := 0
	for _, vi := range victims {
		// Read it again: packets may have arrived since the pass read it.
		v, ok, err := prog.LookupFlow(vi.k)
		if err != nil || !ok || v.LastSeen != vi.v.LastSeen {
			continue
		}
		if err := prog.DeleteFlow(vi.k); err != nil {
			continue
		}
		a.flowEnded(vi.k, v)
		n++
	}
	return n
}
