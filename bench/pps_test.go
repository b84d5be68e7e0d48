package bench

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/deepwall/deepwall/dataplane/afxdp/afxdptest"
	"github.com/deepwall/deepwall/internal/testnet"
)

// ppsFlows is the number of UDP flows the generator cycles through: enough
// for both DPI workers to get some, few enough that every flow stays
// decided on the fast path.
const ppsFlows = 16

// BenchmarkPacketRate is scenario 2: UDP frames of 64 and 1,514 bytes from
// an AF_XDP transmitter (dataplane/afxdp, afxdptest.Generator) in the
// client namespace, counted and dropped by an XDP sink on the server's
// eth0, through the bridge, the plain redirect, deepwall's fast path and
// its DPI path; and the generator alone, into a sink on the fw namespace's
// first port.
func BenchmarkPacketRate(b *testing.B) {
	s := h.scenario("pps")
	requireRoot(b, s)
	cfg := h.cfg
	genAlone := sysSpec{name: sysGenerator, kind: -1}
	specs := []sysSpec{genAlone, specBridge, specRedirect, specFastPath, specFastPathXDP, specDPIPayload}
	specs = append(specs, nfqueueSpecs(rulesPayload)...)
	type env struct {
		*sysEnv
		sink   *afxdptest.Sink
		frames map[int][][]byte
	}
	// Frame lengths without the 4-byte FCS: 60 is the 64-byte minimum
	// frame, 1514 the full frame of a 1,500-byte MTU.
	sizes := []int{60, 1514}
	var envs []env
	for _, sp := range specs {
		var e *sysEnv
		if sp.kind == -1 {
			h.progress("pps: setting up %s", sp.name)
			e = &sysEnv{spec: sp, topo: testnet.NewTopology(b, testnet.TopologyOptions{})}
			setEndpointOffloads(b, e.topo)
		} else {
			e = upAll(b, "pps", []sysSpec{sp})[0]
		}
		v := env{sysEnv: e, sink: afxdptest.NewSink(b), frames: map[int][][]byte{}}
		// The generator alone sends into a sink on fw's inner port: the
		// first hop, nothing forwarded.
		ns, ifname := e.topo.Server, testnet.EndpointIf
		if sp.kind == -1 {
			ns, ifname = e.topo.FW, testnet.InnerIf
		}
		afxdptest.Attach(b, ns, afxdptest.LinkIndex(b, ns, ifname), v.sink.Program)
		for _, size := range sizes {
			v.frames[size] = ppsFrames(b, e.topo, size)
		}
		envs = append(envs, v)
	}
	caseName := func(size int) string {
		if size == 60 {
			return "64-byte frames"
		}
		return "1,518-byte frames (MTU 1500)"
	}
	for _, size := range sizes {
		s.ratioTo(caseName(size), sysRedirect)
		for _, e := range envs {
			s.declare(caseName(size), e.spec.name, "Mpps", "Mpps")
		}
	}
	s.note("Generator: one AF_XDP socket in copy mode, TX only, on the client's eth0 queue 0 (dataplane/afxdp through afxdptest.Generator), %d UDP flows round robin, frames written once into its UMEM so that sending is descriptor work; one goroutine on a locked thread. \"%s\" is its rate into an XDP sink on the fw namespace's inner port (the first hop): every other system's figure is bounded by it. Sizes count the 4-byte FCS the generator does not send (60 + 4 = 64, 1,514 + 4 = 1,518); Gbit/s counts the bytes sent, without FCS.", ppsFlows, sysGenerator)
	s.note("Mpps is what reached the sink on the server's eth0 (%s per measurement); offered is what the generator's socket took. Per core = received Mpps over the cores the whole machine was busy during the measurement (generator, softirq, agent, and anything else running: on a shared machine this understates it); generator cores is the harness process's CPU time (the generator's thread and the kernel work done in its system calls).", cfg.dur)
	s.note("The sink is an XDP program: frames the bridge forwards reach the server's veth as socket buffers, which it turns back into XDP buffers (veth_xdp_rcv_skb, with a copy when a buffer lacks headroom), a cost the XDP paths do not pay. The bridge row is a reference for the XDP rows, not a bridge benchmark.")
	s.note("deepwall DPI here runs the default pack plus one raw-payload rule: the default pack alone has no rule for unidentified UDP and would bypass these flows after two datagrams. The share of frames inspected is written beside the figures. deepwall fast path: an L3/L4-only rule set, every flow ALLOWed in the kernel after its first frame.")
	s.addChart(chart{Name: "mpps", Title: "Packet rate received (AF_XDP generator, UDP)", Metric: "Mpps"})
	s.addChart(chart{Name: "mpps-per-core", Title: "Packets per second per busy core", Metric: "Mpps per core"})

	st := h.steps("pps", cfg.rounds*len(sizes)*len(envs))
	for round := range cfg.rounds {
		for _, size := range sizes {
			c := caseName(size)
			for _, i := range rotate(len(envs), round) {
				e := envs[i]
				settle()
				c0 := e.counters(b)
				f0, _ := e.sink.Count(b)
				sent, mc, ac, gc := generate(b, e.topo, e.frames[size], e.sysEnv, cfg.dur)
				time.Sleep(100 * time.Millisecond)
				f1, _ := e.sink.Count(b)
				c1 := e.counters(b)
				got := float64(f1-f0) / cfg.dur.Seconds() / 1e6
				s.addRatio(c, e.spec.name, "Mpps", "Mpps", got)
				s.add(c, e.spec.name, "offered Mpps", "Mpps", float64(sent)/cfg.dur.Seconds()/1e6)
				s.add(c, e.spec.name, "Gbit/s", "Gbit/s", got*1e6*float64(size)*8/1e9)
				if mc > 0 {
					s.add(c, e.spec.name, "Mpps per core", "Mpps per busy core", got/mc)
				}
				s.add(c, e.spec.name, "busy cores", "cores", mc)
				s.add(c, e.spec.name, "generator cores", "cores", gc)
				if e.agent != nil {
					s.add(c, e.spec.name, "agent cores", "cores", ac)
					s.setNote(c, e.spec.name, e.pathNote(c0, c1))
				}
				st.step("round %d: %s, %s: %s Mpps", round+1, c, e.spec.name, formatValue(got))
			}
		}
	}
	var sys []*sysEnv
	for _, e := range envs {
		if e.spec.kind >= 0 {
			sys = append(sys, e.sysEnv)
		}
	}
	noteSystems(s, []string{caseName(60), caseName(1514)}, sys)
	reportMedians(b, s, "Mpps")
}

// ppsFrames builds one frame of size bytes (without FCS) for each of
// ppsFlows UDP flows from the client to the server's discard port.
func ppsFrames(tb testing.TB, topo *testnet.Topology, size int) [][]byte {
	tb.Helper()
	const headers = 14 + 20 + 8
	frames := make([][]byte, ppsFlows)
	for i := range frames {
		payload := make([]byte, max(size-headers, 0))
		frames[i] = testnet.Frame(tb, testnet.FrameSpec{SrcMAC: topo.ClientMAC, DstMAC: topo.ServerMAC,
			Src: netip.AddrPortFrom(testnet.ClientIP, uint16(10000+i)), Dst: netip.AddrPortFrom(testnet.ServerIP, 9),
			Proto: testnet.ProtoUDP, Payload: payload})
		if len(frames[i]) != size {
			tb.Fatalf("frame of %d bytes, want %d", len(frames[i]), size)
		}
	}
	return frames
}

// generate sends frames from topo's client for d with a generator of its
// own, which lives only as long as the measurement (a queue takes one
// AF_XDP socket, and each frame size has its own generator), and returns
// what the kernel took, the machine's busy cores, the agent's and the
// harness's.
func generate(b *testing.B, topo *testnet.Topology, frames [][]byte, e *sysEnv, d time.Duration) (sent uint64, machine, agent, gen float64) {
	sc := newScope(b)
	defer sc.close()
	g := afxdptest.NewGenerator(sc, topo.Client, testnet.EndpointIf, frames)
	w := startCPU(e)
	sent = g.Run(d)
	machine, agent = w.stop()
	return sent, machine, agent, w.harnessCores()
}

// scope is a testing.TB whose cleanups run when the scope closes rather
// than at the end of the benchmark; everything else goes to the
// benchmark. If the benchmark fails first, its own cleanup closes the
// scope.
type scope struct {
	testing.TB
	mu       sync.Mutex
	cleanups []func()
}

func newScope(tb testing.TB) *scope {
	s := &scope{TB: tb}
	tb.Cleanup(s.close)
	return s
}

// Cleanup registers f to run when the scope closes.
func (s *scope) Cleanup(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cleanups = append(s.cleanups, f)
}

func (s *scope) close() {
	s.mu.Lock()
	fs := s.cleanups
	s.cleanups = nil
	s.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}
