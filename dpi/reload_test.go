package dpi

import (
	"slices"
	"sync"
	"testing"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dpi/flow"
)

// TestReloadMidFlow switches rule sets in the middle of inspected and of
// bypassed flows.
func TestReloadMidFlow(t *testing.T) {
	a := compileRules(t, "rules:\n  - {id: 1, action: block, dst_port: 7000, match: {field: payload, regex: alpha}}\n")
	h := newHarness(t, a, Config{NoIdentify: true})
	c := newCapture(t)
	inspected := c.tcp(cli, "198.18.1.1:7000").handshake()
	inspected.send(flow.ToServer, "hello alph")
	bypassed := c.tcp("198.18.0.2:40001", "198.18.1.1:443").handshake()
	vs := h.run(c)
	if !vs[5].Final || vs[4].Final {
		t.Fatalf("before reload: %v", vs)
	}
	if s := h.e.Stats(); s.OpenStreams != 1 {
		t.Fatalf("%d open streams, want 1", s.OpenStreams)
	}
	b := compileRules(t, "rules:\n"+block("10", "payload", "beta|secret"))
	if err := h.e.SetRules(b); err != nil {
		t.Fatal(err)
	}
	if h.e.Rules() != b {
		t.Fatal("Rules() is not the new set")
	}
	c = newCapture(t)
	c.now = baseTime + 1e9
	inspected.c, bypassed.c = c, c
	inspected.send(flow.ToServer, "a beta")                      // 'alpha' no longer exists; 'beta' blocks
	bypassed.send(flow.ToServer, "GET /secret HTTP/1.1\r\n\r\n") // picked up mid-stream
	vs = h.run(c)
	evs := h.take()
	if got := alerts(evs); !slices.Equal(got, []string{"blocked:10", "blocked:10"}) {
		dumpEvents(t, evs)
		t.Errorf("alerts %v", got)
	}
	if v := vs[0]; v.Action != dataplane.Drop || !v.Final {
		t.Errorf("inspected flow after reload: %v", v)
	}
	if v := vs[2]; v.Action != dataplane.Drop || !v.Final {
		t.Errorf("formerly bypassed flow after reload: %v", v)
	}
	// Every worker switched: the old set is closed.
	for _, g := range a.Groups {
		if g.Block != nil || g.Streaming != nil {
			t.Errorf("old set still holds a database for %v", g.Field)
		}
	}
	h.e.Flush()
	if s := h.e.Stats(); s.OpenStreams != 0 || s.Reloads != 1 || s.RulesGen != 2 {
		t.Errorf("stats after flush: %+v", s)
	}
}

// TestReloadIdleWorker checks that a worker without traffic switches at
// Tick and that rule sets published in between are released.
func TestReloadIdleWorker(t *testing.T) {
	h := newHarness(t, compileRules(t, "rules:\n"+block("1", "payload", "a")), Config{Workers: 2})
	mid := compileRules(t, "rules:\n"+block("2", "payload", "b"))
	last := compileRules(t, "rules:\n"+block("3", "payload", "c"))
	if err := h.e.SetRules(mid); err != nil {
		t.Fatal(err)
	}
	if err := h.e.SetRules(last); err != nil {
		t.Fatal(err)
	}
	if mid.Groups[0].Streaming != nil {
		t.Error("a set no worker adopted was not released")
	}
	h.e.Tick(baseTime)
	for _, w := range h.e.workers {
		if w.rs.Compiled != last {
			t.Errorf("worker %d on an old set", w.id)
		}
	}
}

// TestReloadConcurrent publishes sets while workers inspect (run with
// -race).
func TestReloadConcurrent(t *testing.T) {
	h := newHarness(t, compileRules(t, "rules:\n"+block("1", "http.uri", "attack")), Config{Workers: 2})
	c := httpTraffic(t, 4, 4)
	sets := []string{block("1", "http.uri", "attack"), block("2", "payload", "attack"), block("3", "http.response_body", "attack")}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 6 {
			if err := h.e.SetRules(compileRules(t, "rules:\n"+sets[i%len(sets)])); err != nil {
				t.Error(err)
			}
		}
	}()
	for range 3 {
		h.run(c)
	}
	wg.Wait()
	h.e.Tick(c.now)
	h.e.Flush()
	if s := h.e.Stats(); s.OpenStreams != 0 || s.Alerts != 0 {
		t.Errorf("%d streams open, %d alerts", s.OpenStreams, s.Alerts)
	}
}
