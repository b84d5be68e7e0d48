package agent

import (
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/ctl/eve"
	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dpi"
	"github.com/deepwall/deepwall/xdp"
)

// snapshot is every counter of the agent at one moment; status and the
// metrics read the same one.
type snapshot struct {
	kernel  xdp.Stats
	kerr    error
	pair    dataplane.PairStats
	engine  dpi.Stats
	events  eve.Stats
	latency histSnapshot
	fast    uint64 // fast-path bytes of live kernel flows and ended ones
}

func (a *Agent) snapshot() snapshot {
	var s snapshot
	if a.pair != nil {
		s.pair, s.kernel, s.kerr = a.pair.Stats()
	}
	if a.engine != nil {
		s.engine = a.engine.Stats()
	}
	if a.events != nil {
		s.events = a.events.Stats()
	}
	if a.timed != nil {
		s.latency = a.timed.snapshot()
	}
	s.fast = a.fast.total(a.kernelFlows())
	addProtectedStats(a.prot, &s) // containers.go
	return s
}

// drops is the drop counters by reason: the kernel's, the dataplane's and
// the engine's.
func (s *snapshot) drops() map[string]uint64 {
	d := map[string]uint64{
		"acl":            s.kernel.ACLDrop,
		"fast_path":      s.kernel.FastDrop,
		"fail_closed":    s.kernel.FailClosed,
		"malformed":      s.kernel.Errors + s.pair.Inner.Malformed + s.pair.Outer.Malformed,
		"redirect_error": s.kernel.RedirectErrors,
		// Frames the kernel could not put on an AF_XDP socket's RX ring:
		// the agent fell behind.
		"socket_rx_full": s.pair.Inner.KernelDrops + s.pair.Outer.KernelDrops,
	}
	for k, v := range s.engine.Drops {
		d[k] += v
	}
	return d
}

func (s *snapshot) counters() api.Counters {
	c := api.Counters{
		FastPathAllowed: s.kernel.FastAllow,
		FastPathDropped: s.kernel.FastDrop,
		ToUserSpace:     s.kernel.ToUser,
		InspectedBytes:  s.engine.Bytes,
		NonIP:           s.kernel.NonIP + s.pair.Inner.NonIP + s.pair.Outer.NonIP,
		Resets:          s.pair.Inner.Resets + s.pair.Outer.Resets,
		Alerts:          s.engine.Alerts,
		Blocks:          s.engine.Blocks,
		Drops:           s.drops(),
	}
	for _, w := range s.pair.Workers {
		c.Inspected += w.Inspected
		c.Forwarded += w.Forwarded
	}
	return c
}

// Status implements agentView.
func (a *Agent) Status() api.Status {
	s := a.snapshot()
	var ports []api.PortInfo
	if a.cfg.Inner != "" { // a port-less agent has no static pair to show
		ports = a.ports[:]
	}
	st := api.Status{Version: a.cfg.Version, PID: os.Getpid(), Started: a.started.UTC(),
		UptimeSecs: time.Since(a.started).Seconds(), Ports: ports, NetNS: a.nsName,
		Backend: a.backendName(), BackendReason: a.backend.Reason, FailClosed: a.cfg.FailClosed, Workers: a.cfg.Workers,
		Counters: s.counters(), Flows: s.engine.Flows, Protected: a.prot.Count(),
		Events: api.EventCounts{Path: a.cfg.LogPath, Written: s.events.Written, Dropped: s.events.Dropped,
			Rotations: s.events.Rotations, Errors: s.events.Errors}}
	if a.rules != nil && a.rules.current() != nil {
		st.RuleSet = a.rules.current().info()
	}
	return st
}

// Flows implements agentView. A container filter names a protected
// container (errNoContainer otherwise: a typo is not an empty list).
func (a *Agent) Flows(f api.FlowFilter) (api.FlowList, error) {
	var only []netip.Addr
	if f.Container != "" {
		if a.prot == nil || !a.prot.Has(f.Container) {
			return api.FlowList{}, fmt.Errorf("%w %.64q", errNoContainer, f.Container)
		}
		only = a.prot.Addrs(f.Container)
	}
	return mergeFlows(a.engine, a.kernelFlows(), f, only, dataplane.MonoNow(), time.Now()), nil
}

// errNoContainer: a flow filter names no protected container.
var errNoContainer = errors.New("no protected container")

// kernelFlows is every pair's kernel side: the static pair's and the
// protected ones' (nil: none).
func (a *Agent) kernelFlows() flowTable {
	if a.prot != nil {
		return a.prot.Kernel()
	}
	if a.pair != nil && a.pair.Kernel() != nil {
		return a.pair.Kernel()
	}
	return nil
}

// fastBytes accounts the kernel fast path's bytes, counted per flow only:
// the ended flows' counters are added up as they end, the live ones are
// summed when asked.
type fastBytes struct {
	ended atomic.Uint64
}

// kernelFlowEnded is the dataplane reaper's report of a kernel entry it
// removed (dataplane.AgingConfig.OnFlowEnd).
func (a *Agent) kernelFlowEnded(k xdp.FlowKey, v xdp.FlowValue, _ dataplane.EndReason) {
	a.flowEnded(k, v)
}

// flowEnded is the report of a kernel entry that is gone: count its
// fast-path traffic and let the engine emit the flow's event.
func (a *Agent) flowEnded(k xdp.FlowKey, v xdp.FlowValue) {
	a.fast.ended.Add(v.Bytes[0] + v.Bytes[1])
	if a.engine != nil {
		a.engine.FlowEnded(k, v.Packets, v.Bytes)
	}
}

func (f *fastBytes) total(kern flowTable) uint64 {
	out := f.ended.Load()
	if kern == nil {
		return out
	}
	_ = kern.Flows(func(_ xdp.FlowKey, v xdp.FlowValue) bool {
		out += v.Bytes[0] + v.Bytes[1]
		return true
	})
	return out
}

// Latency histogram buckets: upper bounds 250 ns · 2^i, i < latBuckets-1,
// then +Inf (250 ns … 2 ms).
const (
	latBase    = 250 // ns
	latBuckets = 15
)

// latSample: one frame in latSample is timed. Reading the clock twice
// costs ~80 ns a frame on these VMs, as much as decoding it; sampling
// keeps the histogram's shape at a twentieth of that.
const latSample = 16

// workerHist is one worker's inspection latency histogram. Only its
// worker writes it (atomically, so scrapes read it safely); padding keeps
// workers off each other's cache lines.
type workerHist struct {
	counts  [latBuckets]atomic.Uint64
	sum     atomic.Uint64 // ns
	inspect atomic.Uint64 // sampled frames
	frames  uint32        // the worker's own frame counter, for sampling
	_       [64]byte
}

// timedInspector measures the engine's per-frame inspection time.
type timedInspector struct {
	eng  dpiEngine
	hist []workerHist
}

func newTimedInspector(eng dpiEngine, workers int) *timedInspector {
	return &timedInspector{eng: eng, hist: make([]workerHist, max(workers, 1))}
}

// Inspect implements dataplane.Inspector.
func (t *timedInspector) Inspect(w int, f *dataplane.Frame) dataplane.Verdict {
	if uint(w) >= uint(len(t.hist)) {
		return t.eng.Inspect(w, f)
	}
	h := &t.hist[w]
	if h.frames++; h.frames%latSample != 0 {
		return t.eng.Inspect(w, f)
	}
	start := time.Now()
	v := t.eng.Inspect(w, f)
	d := time.Since(start)
	h.counts[latBucket(d)].Add(1)
	h.sum.Add(uint64(d))
	h.inspect.Add(1)
	return v
}

func latBucket(d time.Duration) int {
	if d <= latBase {
		return 0
	}
	i := bits.Len64(uint64((d - 1) / latBase))
	return min(i, latBuckets-1)
}

// latBound is the upper bound of bucket i in seconds (+Inf for the last).
func latBound(i int) float64 { return float64(int64(latBase)<<i) / 1e9 }

type histSnapshot struct {
	counts [latBuckets]uint64
	sum    time.Duration
	n      uint64
}

func (t *timedInspector) snapshot() histSnapshot {
	var s histSnapshot
	t.addTo(&s)
	return s
}

// addTo adds t's histogram to s.
func (t *timedInspector) addTo(s *histSnapshot) {
	for i := range t.hist {
		h := &t.hist[i]
		for b := range h.counts {
			s.counts[b] += h.counts[b].Load()
		}
		s.sum += time.Duration(h.sum.Load())
		s.n += h.inspect.Load()
	}
}

// cumulative returns the histogram as Prometheus wants it.
func (s histSnapshot) cumulative() map[float64]uint64 {
	out := make(map[float64]uint64, latBuckets-1)
	var acc uint64
	for i := 0; i < latBuckets-1; i++ {
		acc += s.counts[i]
		out[latBound(i)] = acc
	}
	return out
}
