package bench

import (
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dpi"
	"github.com/deepwall/deepwall/dpi/flow"
	"github.com/deepwall/deepwall/internal/rulegen"
	"github.com/deepwall/deepwall/internal/testnet"
	"github.com/deepwall/deepwall/rules"
)

// BenchmarkScale is scenario 5: the engine's memory per tracked flow, the
// time to compile and to hot-reload rule sets of growing size, and DPI
// throughput with one and two workers.
func BenchmarkScale(b *testing.B) {
	s := h.scenario("scale")
	cfg := h.cfg
	scaleMemory(b, s)
	scaleRules(b, s)
	if os.Geteuid() != 0 {
		const why = "needs root (network namespaces, XDP, AF_XDP)"
		for _, n := range cfg.ruleSizes {
			s.notMeasured(rulesCase(n), "deepwall agent", "reload s", "s", why)
		}
		s.notMeasured("DPI throughput, HTTP bulk download", sysDPI1, "Gbit/s", "Gbit/s", why)
		s.notMeasured("DPI throughput, HTTP bulk download", sysDPI2, "Gbit/s", "Gbit/s", why)
		return
	}
	testnet.RequirePrivileged(b)
	scaleReload(b, s)
	scaleWorkers(b, s)
}

func flowsCase(n int) string { return groupDigits(n) + " flows" }
func rulesCase(n int) string { return groupDigits(n) + " rules" }

// scaleMemory measures the Go heap the engine holds for n tracked TCP
// flows, after their handshakes and after a request each (which gives a
// flow its inspection context), with the default pack.
func scaleMemory(b *testing.B, s *scenario) {
	b.Helper()
	const sys = sysEngine
	for _, n := range h.cfg.flowCounts {
		s.declare(flowsCase(n), sys, "B/flow, handshake", "bytes")
	}
	s.note("Memory: Go heap in use (after a full GC) of one engine worker whose flow table is sized for the flow count, default pack, offline, divided by the flow count; \"handshake\": after SYN, SYN-ACK, ACK of every flow; \"request\": after one HTTP GET each (the flow's inspection context and HTTP parser state allocated). It includes the table's fixed part (its index, sized for the count), given apart as \"fixed MiB\". Measured once per count: the figure is deterministic up to the GC's bookkeeping. The kernel's flow map (LRU hash, preallocated at load) is not included.")
	req := []byte("GET /products/12345?ref=newsletter HTTP/1.1\r\nHost: shop.example.com\r\nUser-Agent: Mozilla/5.0\r\nAccept: */*\r\n\r\n")
	for _, n := range h.cfg.flowCounts {
		h.progress("scale: memory of %s flows", groupDigits(n))
		c, err := compileYAML("default.yaml", rules.DefaultPackYAML())
		if err != nil {
			b.Fatal(err)
		}
		m0 := heapInUse()
		e, err := dpi.New(dpi.Config{Rules: c, Offline: true, Flow: flow.Config{MaxFlows: n}})
		if err != nil {
			b.Fatal(err)
		}
		m1 := heapInUse()
		ts := captureStart.UnixNano()
		inspect := func(spec testnet.FrameSpec, toServer bool) {
			data, err := testnet.BuildFrame(spec)
			if err != nil {
				b.Fatal(err)
			}
			ts += 1000
			fr := dataplane.Frame{Data: data, Timestamp: ts, Ingress: dataplane.Outer}
			if toServer {
				fr.Ingress = dataplane.Inner
			}
			e.Inspect(0, &fr)
		}
		srv := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 19, 0, 1}), 80)
		cli := func(i int) netip.AddrPort {
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 16), byte(i >> 8)}), uint16(1024+i&0xff))
		}
		spec := func(i int, toServer bool, flags uint8, seq, ack uint32, payload []byte) testnet.FrameSpec {
			f := testnet.FrameSpec{SrcMAC: testnet.MACA, DstMAC: testnet.MACB, Src: cli(i), Dst: srv, Proto: testnet.ProtoTCP,
				Flags: flags, Seq: seq, Ack: ack, Payload: payload}
			if !toServer {
				f.SrcMAC, f.DstMAC, f.Src, f.Dst = testnet.MACB, testnet.MACA, srv, cli(i)
			}
			return f
		}
		for i := range n {
			inspect(spec(i, true, testnet.SYN, 1000, 0, nil), true)
			inspect(spec(i, false, testnet.SYN|testnet.ACK, 5000, 1001, nil), false)
			inspect(spec(i, true, testnet.ACK, 1001, 5001, nil), true)
		}
		m2 := heapInUse()
		flows := e.Stats().Flows
		for i := range n {
			inspect(spec(i, true, testnet.PSH|testnet.ACK, 1001, 5001, req), true)
		}
		m3 := heapInUse()
		st := e.Stats()
		if flows != n || st.Flows != n {
			s.notMeasured(flowsCase(n), sys, "B/flow, handshake", "bytes", fmt.Sprintf("the table held %d then %d flows, not %d", flows, st.Flows, n))
		} else {
			s.add(flowsCase(n), sys, "B/flow, handshake", "bytes", float64(m2-m0)/float64(n))
			s.add(flowsCase(n), sys, "B/flow, request", "bytes", float64(m3-m0)/float64(n))
			s.add(flowsCase(n), sys, "fixed MiB", "MiB", float64(m1-m0)/(1<<20))
		}
		e.Close()
		runtime.GC()
	}
	s.addChart(chart{Name: "memory", Title: "Engine memory per tracked flow (after one request)", Metric: "B/flow, request"})
}

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// scaleRules measures parsing plus Hyperscan compilation of generated
// rule sets (rules.Parse, rules.Compile), sizes interleaved.
func scaleRules(b *testing.B, s *scenario) {
	b.Helper()
	sizes := h.cfg.ruleSizes
	for _, n := range sizes {
		s.declare(rulesCase(n), "rules.Compile", "compile s", "s")
	}
	s.note("Compile: rules.Parse + rules.Compile of a generated set (WAF-like regexes over request fields, response body and payload, with transforms), in this process; each round uses other numbers in the patterns (a new set). Reload: the same sets sent to a running agent (`deepwall rules apply` through its API; the agent runs the default pack before) — \"reload s\" is the API call's wall time (parse, compile, kernel ACL swap, engine swap, store, audit, verdict revocation with its second pass 100 ms later), \"compile s\" on its row the compile time the agent reports. The agent's compiled-rules cache never hits: every set is new.")
	st := h.steps("scale rules", h.cfg.rounds*len(sizes))
	for round := range h.cfg.rounds {
		for _, i := range rotate(len(sizes), round) {
			n := sizes[i]
			data := rulegen.Generate(n, uint64(100+round))
			start := time.Now()
			c, err := compileYAML("gen.yaml", data)
			el := time.Since(start)
			if err != nil {
				b.Fatal(err)
			}
			c.Close()
			s.add(rulesCase(n), "rules.Compile", "compile s", "s", el.Seconds())
			st.step("round %d: compile %s rules: %.2f s", round+1, groupDigits(n), el.Seconds())
		}
	}
	s.addChart(chart{Name: "compile", Title: "Rule set compile and reload time", Metric: "compile s", Log: true})
}

// scaleReload applies generated sets to a running agent.
func scaleReload(b *testing.B, s *scenario) {
	b.Helper()
	sizes := h.cfg.ruleSizes
	const sys = "deepwall agent"
	for _, n := range sizes {
		s.declare(rulesCase(n), sys, "reload s", "s")
	}
	e := upAll(b, "scale", []sysSpec{specDPI})[0]
	st := h.steps("scale reload", h.cfg.rounds*len(sizes))
	for round := range h.cfg.rounds {
		for _, i := range rotate(len(sizes), round) {
			n := sizes[i]
			res, el, err := e.agent.apply(rulegen.Generate(n, uint64(200+round)))
			if err != nil {
				s.notMeasured(rulesCase(n), sys, "reload s", "s", err.Error())
				b.Errorf("reload %d rules: %v", n, err)
				continue
			}
			if res.Cached {
				s.setNote(rulesCase(n), sys, "a reload hit the agent's compiled cache")
			}
			s.add(rulesCase(n), sys, "reload s", "s", el.Seconds())
			s.add(rulesCase(n), sys, "compile s", "s", res.CompileSecs)
			st.step("round %d: reload %s rules: %.2f s (compile %.2f s)", round+1, groupDigits(n), el.Seconds(), res.CompileSecs)
		}
	}
	s.addChart(chart{Name: "reload", Title: "Hot reload through the agent's API", Metric: "reload s", Log: true})
}

// scaleWorkers measures DPI throughput with one and two workers.
func scaleWorkers(b *testing.B, s *scenario) {
	b.Helper()
	const c = "DPI throughput, HTTP bulk download"
	envs := upAll(b, "scale", []sysSpec{specDPI1, specDPI2})
	body := newTraffic(3).html(bulkBodySize)
	srv := make([]netip.AddrPort, len(envs))
	for i, e := range envs {
		srv[i] = serveBulk(b, e.topo, body)
		s.declare(c, e.spec.name, "Gbit/s", "Gbit/s")
	}
	s.ratioTo(c, sysDPI1)
	s.note("Workers: the agent with --workers 1 and 2 and the default pack, %d connections of HTTP bulk download (as in scenario 1), %s. On a 2-core machine the second worker shares its core with the AF_XDP I/O loop, the kernel and both endpoints.", h.cfg.streams, h.cfg.dur)
	st := h.steps("scale workers", h.cfg.rounds*len(envs))
	for round := range h.cfg.rounds {
		for _, i := range rotate(len(envs), round) {
			e := envs[i]
			settle()
			c0 := e.counters(b)
			w := startCPU(e)
			gbps, err := bulkRate(e.topo, srv[i], h.cfg.streams, h.cfg.dur)
			mc, ac := w.stop()
			c1 := e.counters(b)
			if err != nil {
				s.notMeasured(c, e.spec.name, "Gbit/s", "Gbit/s", err.Error())
				b.Errorf("workers %s: %v", e.spec.name, err)
			} else {
				s.addRatio(c, e.spec.name, "Gbit/s", "Gbit/s", gbps)
				s.add(c, e.spec.name, "busy cores", "cores", mc)
				s.add(c, e.spec.name, "agent cores", "cores", ac)
				s.setNote(c, e.spec.name, e.pathNote(c0, c1))
			}
			st.step("round %d: %s: %s Gbit/s", round+1, e.spec.name, formatValue(gbps))
		}
	}
	s.addChart(chart{Name: "workers", Title: "DPI throughput by worker count", Metric: "Gbit/s", Cases: []string{c}})
}
