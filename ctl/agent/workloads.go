package agent

import (
	"sort"
	"sync"

	"github.com/deepwall/deepwall/ctl/eve"
)

// hostWorkload labels events of the --inner/--outer pair, which name no
// container. The series are bounded like the per-container metrics
// (maxMetricContainers, otherContainers): events of workloads past the
// bound are counted under "_other", so a host that churns containers
// cannot grow the scrape without bound.
const hostWorkload = "_pair"

// workloadEvent is a kind of event counted per workload.
type workloadEvent uint8

const (
	wlFlow workloadEvent = iota
	wlAlert
	wlBlock
	wlDrop
	numWorkloadEvents
)

var workloadEventNames = [numWorkloadEvents]string{"flow", "alert", "block", "drop"}

// workloadCounters counts events per protected workload (the container
// an event is annotated with) for deepwall_workload_events_total. It is
// fed from the event path, after the engine decided, under a short
// lock: events are far rarer than frames.
type workloadCounters struct {
	mu sync.Mutex
	n  map[string]*[numWorkloadEvents]uint64
}

// note counts ev under its workload.
func (w *workloadCounters) note(ev *eve.Event) {
	var k workloadEvent
	switch {
	case ev.EventType == eve.EventFlow:
		k = wlFlow
	case ev.EventType == eve.EventDrop:
		k = wlDrop
	case ev.Alert != nil && ev.Alert.Action == "blocked":
		k = wlBlock
	case ev.Alert != nil:
		k = wlAlert
	default:
		return
	}
	name := hostWorkload
	if ev.Container != nil && ev.Container.Name != "" {
		name = ev.Container.Name
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n == nil {
		w.n = map[string]*[numWorkloadEvents]uint64{}
	}
	c := w.n[name]
	if c == nil {
		if len(w.n) >= maxMetricContainers {
			name = otherContainers
			if c = w.n[name]; c == nil {
				c = new([numWorkloadEvents]uint64)
				w.n[name] = c
			}
		} else {
			c = new([numWorkloadEvents]uint64)
			w.n[name] = c
		}
	}
	c[k]++
}

// each calls fn for every workload's counters, in name order.
func (w *workloadCounters) each(fn func(name, event string, n uint64)) {
	w.mu.Lock()
	names := make([]string, 0, len(w.n))
	for name := range w.n {
		names = append(names, name)
	}
	counts := make([][numWorkloadEvents]uint64, len(names))
	sort.Strings(names)
	for i, name := range names {
		counts[i] = *w.n[name]
	}
	w.mu.Unlock()
	for i, name := range names {
		for k, v := range counts[i] {
			fn(name, workloadEventNames[k], v)
		}
	}
}
