package dpi

import (
	"testing"
	"time"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dpi/flow"
	"github.com/deepwall/deepwall/xdp"

	"github.com/deepwall/deepwall/ctl/eve"
)

// TestBypass checks the life of a flow the kernel carries after its final
// verdict: parked at the verdict, in-flight frames get the same verdict,
// FlowEnded merges the kernel's counters into the flow event.
func TestBypass(t *testing.T) {
	now := int64(1e12)
	h := newHarness(t, compileRules(t, "rules:\n"+block("3", "tls.sni", "^evil$")), Config{Bypass: true, Now: func() int64 { return now }})
	c := newCapture(t)
	c.now = now
	v := c.tcp(cli, "198.18.1.1:443").handshake()
	v.send(flow.ToServer, string(clientHello("good.example")))
	vs := h.run(c)
	if !vs[3].Final || vs[3].Action != dataplane.Forward {
		t.Fatalf("client hello: %v", vs[3])
	}
	s := h.e.Stats()
	if s.Flows != 0 || s.Parked != 1 {
		t.Fatalf("after the verdict: %d flows, %d parked", s.Flows, s.Parked)
	}
	// An in-flight frame reaches the engine: same verdict, no new flow.
	c2 := newCapture(t)
	c2.now = c.now
	v.c = c2
	v.send(flow.ToClient, string(serverHello()))
	for i, vd := range h.run(c2) {
		if !vd.Final || vd.Action != dataplane.Forward {
			t.Errorf("in-flight frame %d: %v", i, vd)
		}
	}
	// The parked flow does not expire on the engine's idle timer.
	h.e.Tick(now + int64(time.Hour))
	if s := h.e.Stats(); s.Parked != 1 || s.Flows != 0 {
		t.Fatalf("after an idle hour: %d parked, %d flows", s.Parked, s.Flows)
	}
	var infos []FlowInfo
	h.e.Flows(func(fi FlowInfo) bool { infos = append(infos, fi); return true })
	if len(infos) != 1 || !infos[0].Bypassed || infos[0].App != "tls" || infos[0].Client.String() != cli || infos[0].State != "bypassed" {
		t.Fatalf("flows: %+v", infos)
	}
	key := infos[0].Key
	h.take()
	// The kernel reaped it: 10 packets from the client side, 20 from the server.
	var pkts, bytes [2]uint64
	cd := xdp.FromLo
	if key.Lo().String() != cli {
		cd = xdp.FromHi
	}
	pkts[cd], pkts[cd^1] = 10, 20
	bytes[cd], bytes[cd^1] = 1000, 20000
	if !h.e.FlowEnded(key, pkts, bytes) {
		t.Fatal("FlowEnded: unknown flow")
	}
	if h.e.FlowEnded(key, pkts, bytes) {
		t.Error("FlowEnded twice")
	}
	evs := h.take()
	if len(evs) != 1 || evs[0].EventType != eve.EventFlow {
		dumpEvents(t, evs)
		t.Fatalf("events %d", len(evs))
	}
	f := evs[0].Flow
	if f.PktsToServer != 4+10 || f.PktsToClient != 3+20 || !f.Bypassed || f.Action != "pass" || f.Reason != "kernel" || evs[0].SrcIP != "198.18.0.1" || evs[0].AppProto != "tls" {
		dumpEvents(t, evs)
		t.Errorf("flow event %+v", f)
	}
	if s := h.e.Stats(); s.Parked != 0 || s.OpenStreams != 0 {
		t.Errorf("after FlowEnded: %+v", s)
	}
}

// TestParkedLimits checks the parked records' bounds: lifetime and count.
func TestParkedLimits(t *testing.T) {
	now := int64(1e12)
	cfg := Config{Bypass: true, MaxParked: 2, NoIdentify: true, Now: func() int64 { return now }}
	cfg.Flow.Lifetime = time.Minute
	h := newHarness(t, compileRules(t, "rules:\n  - {id: 1, action: block, dst_port: 80, match: {field: http.uri, regex: x}}\n"), cfg)
	c := newCapture(t)
	c.now = now
	for i := range 3 {
		c.add(icmpEcho(), dataplane.Inner, "ping")
		_ = i
		c.tcp("198.18.0.9:1000"+string(rune('0'+i)), "198.18.1.1:443").handshake()
	}
	h.run(c)
	s := h.e.Stats()
	if s.Parked != 2 {
		t.Errorf("%d parked, want 2 (MaxParked)", s.Parked)
	}
	h.e.Tick(c.now + int64(2*time.Minute))
	if s := h.e.Stats(); s.Parked != 0 {
		t.Errorf("%d parked after their lifetime", s.Parked)
	}
	reasons := map[string]int{}
	for _, ev := range h.take() {
		if ev.EventType == eve.EventFlow {
			reasons[ev.Flow.Reason]++
		}
	}
	if reasons["evicted"] < 1 || reasons["lifetime"] != 2 {
		t.Errorf("flow end reasons %v", reasons)
	}
}
