package dataplane_test

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deepwall/deepwall/bench/refxdp"
	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dataplane/afxdp/afxdptest"
	"github.com/deepwall/deepwall/internal/testnet"
	"github.com/deepwall/deepwall/internal/testutil"
	"github.com/deepwall/deepwall/xdp"
)

// pps64 sends 60-byte frames (64 on the wire with the FCS) of benchFlows
// UDP flows from the client for d, counts what reaches the server's sink
// and returns received and offered Mpps.
func pps64(b *testing.B, gen *afxdptest.Generator, sink *afxdptest.Sink, d time.Duration) (got, offered float64) {
	b.Helper()
	before, _ := sink.Count(b)
	sent := gen.Run(d)
	time.Sleep(100 * time.Millisecond)
	after, _ := sink.Count(b)
	return float64(after-before) / d.Seconds() / 1e6, float64(sent) / d.Seconds() / 1e6
}

const benchFlows = 16

func benchFrames(tb testing.TB, topo *testnet.Topology) ([][]byte, []xdp.FlowKey) {
	var frames [][]byte
	var keys []xdp.FlowKey
	for i := 0; i < benchFlows; i++ {
		src := netip.AddrPortFrom(testnet.ClientIP, uint16(10000+i))
		dst := netip.AddrPortFrom(testnet.ServerIP, 9)
		frames = append(frames, testnet.Frame(tb, testnet.FrameSpec{SrcMAC: topo.ClientMAC, DstMAC: topo.ServerMAC,
			Src: src, Dst: dst, Proto: testnet.ProtoUDP, Payload: make([]byte, 18)}))
		k, _ := xdp.MakeFlowKey(src.Addr(), dst.Addr(), src.Port(), dst.Port(), testnet.ProtoUDP)
		keys = append(keys, k)
	}
	return frames, keys
}

// modeInspector forwards everything; in allow mode it also makes every
// verdict final, so a flow leaves user space after its first packet.
type modeInspector struct{ allow atomic.Bool }

func (m *modeInspector) Inspect(_ int, _ *dataplane.Frame) dataplane.Verdict {
	return dataplane.Verdict{Action: dataplane.Forward, Final: m.allow.Load()}
}

// BenchmarkDataplane measures, on one topology, TCP throughput (one
// iperf3 stream) and the 64-byte frame rate through three paths: the plain
// in-kernel redirect of bench/refxdp (the reference), deepwall's fast path
// (flows marked ALLOW) and deepwall's AF_XDP path with a pass-through
// inspector. It reports figures and ratios to the reference; it asserts
// nothing about them.
func BenchmarkDataplane(b *testing.B) {
	topo := testnet.NewTopology(b, testnet.TopologyOptions{})
	d := testutil.BenchDuration(b)
	dir, state := pinDir(b), b.TempDir()
	insp := &modeInspector{}
	cfg := dataplane.PairConfig{Inner: testnet.InnerIf, Outer: testnet.OuterIf, PinDir: dir, StateDir: state, Inspector: insp}

	// Let deepwall's XDP path prepare the port peers, then take it off
	// again: the reference runs with the same peer settings (GRO on, TX
	// checksum offload off), which it needs to work at all. (The tc path,
	// the default, prepares nothing; its runs below put the peers back.)
	prep := cfg
	prep.Path = dataplane.PathXDP
	topo.FW.MustDo(b, func() error {
		p, err := dataplane.OpenPair(prep)
		if err != nil {
			return err
		}
		return p.Close()
	})
	removePins(b, dir)

	frames, keys := benchFrames(b, topo)
	gen := afxdptest.NewGenerator(b, topo.Client, testnet.EndpointIf, frames)
	sinkProg := afxdptest.NewSink(b)
	serverEth := afxdptest.LinkIndex(b, topo.Server, testnet.EndpointIf)
	withSink := func(b *testing.B, fn func(*afxdptest.Sink)) {
		l := afxdptest.Attach(b, topo.Server, serverEth, sinkProg.Program)
		defer l.Close()
		fn(sinkProg)
	}

	var refTCP, refPPS float64
	port := 5201
	b.Run("tcp/redirect", func(b *testing.B) {
		f, err := refxdp.Load()
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		topo.FW.MustDo(b, func() error {
			if err := f.Attach(topo.InnerIndex, topo.OuterIndex); err != nil {
				return err
			}
			return f.Attach(topo.OuterIndex, topo.InnerIndex)
		})
		port++
		refTCP = topo.Iperf(b, port, d)
		b.ReportMetric(refTCP, "Gbit/s")
	})
	b.Run("pps64/redirect", func(b *testing.B) {
		f, err := refxdp.Load()
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		topo.FW.MustDo(b, func() error { return f.Attach(topo.InnerIndex, topo.OuterIndex) })
		withSink(b, func(s *afxdptest.Sink) {
			var offered float64
			refPPS, offered = pps64(b, gen, s, d)
			b.ReportMetric(refPPS, "Mpps")
			b.ReportMetric(offered, "offered-Mpps")
		})
	})

	ratio := func(b *testing.B, v, ref float64) {
		if ref > 0 {
			b.ReportMetric(v/ref, "x-redirect")
		}
	}
	// open runs a pair until the returned stop; stop closes it (pins and
	// peer settings stay for the next one, the last cleanup removes them).
	open := func(b *testing.B, c dataplane.PairConfig) (*dataplane.Pair, func()) {
		p, run := startPair(b, topo, c)
		return p, func() {
			if err := run(); err != nil {
				b.Errorf("run: %v", err)
			}
			if err := p.Close(); err != nil {
				b.Errorf("close: %v", err)
			}
		}
	}

	p, stop := open(b, cfg)
	b.Run("tcp/fastpath", func(b *testing.B) {
		insp.allow.Store(true)
		port++
		g := topo.Iperf(b, port, d)
		b.ReportMetric(g, "Gbit/s")
		ratio(b, g, refTCP)
	})
	b.Run("pps64/fastpath", func(b *testing.B) {
		for _, k := range keys {
			if err := p.Program().SetFlow(k, xdp.VerdictAllow, 0); err != nil {
				b.Fatal(err)
			}
		}
		withSink(b, func(s *afxdptest.Sink) {
			got, offered := pps64(b, gen, s, d)
			b.ReportMetric(got, "Mpps")
			b.ReportMetric(offered, "offered-Mpps")
			ratio(b, got, refPPS)
		})
		for _, k := range keys {
			if err := p.Program().DeleteFlow(k); err != nil {
				b.Fatal(err)
			}
		}
	})
	insp.allow.Store(false)
	stop()

	// The AF_XDP path in three setups: the default (runtime.NumCPU()
	// workers), one worker judging on the I/O loop, and busy polling.
	for _, v := range []struct {
		name string
		mod  func(*dataplane.PairConfig)
	}{
		{"afxdp", func(*dataplane.PairConfig) {}},
		{"afxdp-1worker", func(c *dataplane.PairConfig) { c.Workers = 1 }},
		{"afxdp-busypoll", func(c *dataplane.PairConfig) { c.BusyPoll = true }},
	} {
		c := cfg
		v.mod(&c)
		p, stop := open(b, c)
		b.Run("tcp/"+v.name, func(b *testing.B) {
			port++
			before := p.Stats()
			g := topo.Iperf(b, port, d)
			after := p.Stats()
			b.ReportMetric(g, "Gbit/s")
			ratio(b, g, refTCP)
			b.ReportMetric(float64(after.Inner.Inspected+after.Outer.Inspected-before.Inner.Inspected-before.Outer.Inspected)/d.Seconds()/1e6, "inspected-Mpps")
		})
		b.Run("pps64/"+v.name, func(b *testing.B) {
			withSink(b, func(s *afxdptest.Sink) {
				before, cpu0 := p.Stats(), p.LoopCPU()
				got, offered := pps64(b, gen, s, d)
				after, cpu1 := p.Stats(), p.LoopCPU()
				b.ReportMetric(got, "Mpps")
				b.ReportMetric(offered, "offered-Mpps")
				ratio(b, got, refPPS)
				rx := float64(after.Inner.RxFrames-before.Inner.RxFrames) / d.Seconds() / 1e6
				b.ReportMetric(rx, "rx-Mpps")
				// The I/O loop's share of a core (its TX syscalls
				// included; with one worker it is all the user-space work).
				b.ReportMetric(float64(after.Inner.KernelDrops-before.Inner.KernelDrops)/d.Seconds()/1e6, "xsk-drop-Mpps")
				if k := after.TxKicks - before.TxKicks; k > 0 {
					b.ReportMetric(float64(after.Outer.TxFrames-before.Outer.TxFrames)/float64(k), "frames/kick")
				}
				if util := (cpu1 - cpu0).Seconds() / d.Seconds(); util > 0 {
					b.ReportMetric(util, "loop-cores")
					b.ReportMetric(rx/util, "Mpps/loop-core")
				}
			})
		})
		stop()
	}
}
