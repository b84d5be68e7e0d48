package agent

import (
	"strconv"
	"testing"

	"github.com/deepwall/deepwall/ctl/eve"
)

// TestWorkloadCounters checks the per-workload counts and their bound:
// past maxMetricContainers workloads, events go to _other.
func TestWorkloadCounters(t *testing.T) {
	var w workloadCounters
	ev := func(name string, typ eve.EventType, action string) *eve.Event {
		e := &eve.Event{EventType: typ}
		if name != "" {
			e.Container = &eve.Container{Name: name}
		}
		if typ == eve.EventAlert {
			e.Alert = &eve.Alert{Action: action}
		}
		return e
	}
	w.note(ev("web", eve.EventAlert, "blocked"))
	w.note(ev("web", eve.EventAlert, "allowed"))
	w.note(ev("web", eve.EventFlow, ""))
	w.note(ev("", eve.EventDrop, ""))
	for i := range 2 * maxMetricContainers {
		w.note(ev("c"+strconv.Itoa(i), eve.EventFlow, ""))
	}
	got := map[string]uint64{}
	names := map[string]bool{}
	w.each(func(name, event string, n uint64) {
		got[name+"/"+event] = n
		names[name] = true
	})
	for k, want := range map[string]uint64{"web/block": 1, "web/alert": 1, "web/flow": 1, "web/drop": 0, "_pair/drop": 1, "c0/flow": 1} {
		if got[k] != want {
			t.Errorf("%s = %d, want %d", k, got[k], want)
		}
	}
	if len(names) != maxMetricContainers+1 {
		t.Errorf("%d workload series, want %d and _other", len(names), maxMetricContainers)
	}
	// web, _pair and 62 containers got their own series; the other 66
	// flows are _other's.
	if want := uint64(2*maxMetricContainers - (maxMetricContainers - 2)); got["_other/flow"] != want {
		t.Errorf("_other/flow = %d, want %d", got["_other/flow"], want)
	}
}
