package xdp

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Verdict is a flow's fate in the kernel.
type Verdict uint8

const (
	// VerdictInspect sends the flow's packets to user space (as no entry
	// does).
	VerdictInspect Verdict = 0
	// VerdictAllow forwards the flow to the peer port in the kernel.
	VerdictAllow Verdict = 1
	// VerdictDrop drops the flow's packets in the kernel.
	VerdictDrop Verdict = 2
)

func (v Verdict) String() string {
	switch v {
	case VerdictInspect:
		return "inspect"
	case VerdictAllow:
		return "allow"
	case VerdictDrop:
		return "drop"
	}
	return fmt.Sprintf("verdict-%d", uint8(v))
}

// Flow flags (FlowValue.Flags).
const (
	// FlowFlagClosing: a FIN or RST crossed an ALLOW flow on the fast path,
	// so user space may reap the entry once the flow is idle.
	FlowFlagClosing uint8 = 1
)

// FlowValue mirrors struct flow_value. Counters are for packets the kernel
// handled on the fast path (ALLOW/DROP); index them by Direction. Bytes
// count whole frames from the Ethernet header on.
type FlowValue struct {
	Verdict Verdict
	Flags   uint8
	_       [2]byte
	RuleID  uint32 // rule that decided, 0 if none (informational)
	Packets [2]uint64
	Bytes   [2]uint64
	// LastSeen is CLOCK_MONOTONIC in nanoseconds at tick resolution
	// (bpf_ktime_get_coarse_ns): it may lag the precise clock by a few
	// milliseconds, never lead it. It serves idle reaping.
	LastSeen uint64
}

// SetFlow creates a flow entry or changes its verdict and rule, keeping its
// counters and flags. A new entry's LastSeen is now, so an idle reaper does
// not take it at once. Counter increments that race with the update may be
// lost: the kernel replaces the element as a whole.
func (p *Program) SetFlow(k FlowKey, v Verdict, ruleID uint32) error {
	if v > VerdictDrop {
		return fmt.Errorf("set flow %v: verdict %d: %w", k, v, ErrRange)
	}
	var val FlowValue
	err := p.objs.DwFlows.Lookup(&k, &val)
	switch {
	case errors.Is(err, ebpf.ErrKeyNotExist):
		val = FlowValue{LastSeen: monotonicNow()}
	case err != nil:
		return fmt.Errorf("set flow %v: %w", k, err)
	}
	val.Verdict, val.RuleID = v, ruleID
	if err := p.objs.DwFlows.Update(&k, &val, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("set flow %v: %w", k, err)
	}
	return nil
}

// LookupFlow returns a flow's entry, and false if there is none.
func (p *Program) LookupFlow(k FlowKey) (FlowValue, bool, error) {
	var val FlowValue
	err := p.objs.DwFlows.Lookup(&k, &val)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return FlowValue{}, false, nil
	}
	if err != nil {
		return FlowValue{}, false, fmt.Errorf("lookup flow %v: %w", k, err)
	}
	return val, true, nil
}

// DeleteFlow removes a flow's entry; a missing entry is not an error.
func (p *Program) DeleteFlow(k FlowKey) error {
	if err := p.objs.DwFlows.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete flow %v: %w", k, err)
	}
	return nil
}

// flowBatch is the number of entries one batch lookup returns. Hash maps
// need room for a whole bucket; 256 is far above any bucket's length.
const flowBatch = 256

// Flows calls fn for every flow entry until fn returns false. It reads the
// map in batches where the kernel supports it. Entries added or removed
// meanwhile may or may not be seen; none is seen twice within a batch pass.
func (p *Program) Flows(fn func(FlowKey, FlowValue) bool) error {
	keys := make([]FlowKey, flowBatch)
	vals := make([]FlowValue, flowBatch)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := p.objs.DwFlows.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			if !fn(keys[i], vals[i]) {
				return nil
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if errors.Is(err, ebpf.ErrNotSupported) && n == 0 {
			return p.iterateFlows(fn)
		}
		if err != nil {
			return fmt.Errorf("flows: %w", err)
		}
	}
}

func (p *Program) iterateFlows(fn func(FlowKey, FlowValue) bool) error {
	var (
		k FlowKey
		v FlowValue
	)
	it := p.objs.DwFlows.Iterate()
	for it.Next(&k, &v) {
		if !fn(k, v) {
			return nil
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("flows: %w", err)
	}
	return nil
}

// monotonicNow is the clock of FlowValue.LastSeen: CLOCK_MONOTONIC_COARSE
// in nanoseconds, what bpf_ktime_get_coarse_ns reads.
func monotonicNow() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts)
	return uint64(ts.Nano())
}
