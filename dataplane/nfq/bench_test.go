package nfq

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/internal/testnet"
	"github.com/deepwall/deepwall/internal/testutil"
)

// passInspector forwards every packet without a final verdict: every
// packet of every flow goes through the queue.
type passInspector struct{}

func (passInspector) Inspect(int, *dataplane.Frame) dataplane.Verdict {
	return dataplane.Verdict{Action: dataplane.Forward}
}

// cpuTimes is this process's user and system CPU time: the pair's
// goroutines and the kernel work done in their system calls (a verdict
// re-injects the packet, and the rest of its way through the bridge and
// the receiver's stack often runs in that call).
func cpuTimes(tb testing.TB) (user, sys time.Duration) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

// BenchmarkNFQueue measures the NFQUEUE path with a pass-through inspector
// (every packet queued and judged in user space) on a bridged and a routed
// fw namespace, endpoints with TX checksum offload off and GRO on as in
// the bench harness, and on a bridged one whose endpoints keep the
// kernel's default offloads (TSO: GSO packets, queued whole): one iperf3
// TCP stream, and 18-byte UDP datagrams (60-byte frames) from 4 iperf3
// streams. It reports Gbit/s, the packets the
// queues took per second, and this process's CPU per queued packet (user
// and system); it asserts nothing about them. iperf3 runs in processes of
// its own, so the CPU is the pair's alone.
func BenchmarkNFQueue(b *testing.B) {
	d := testutil.BenchDuration(b)
	for _, mode := range []struct {
		name string
		opts testnet.TopologyOptions
		tso  bool // endpoints keep the kernel's default offloads
	}{
		{"bridged", testnet.TopologyOptions{Bridge: true}, false},
		{"routed", testnet.TopologyOptions{Routed: true}, false},
		{"bridged-tso", testnet.TopologyOptions{Bridge: true}, true},
	} {
		b.Run(mode.name, func(b *testing.B) {
			topo := testnet.NewTopology(b, mode.opts)
			for _, ns := range []*testnet.NS{topo.Client, topo.Server} {
				if mode.tso {
					break
				}
				if out, err := ns.Run(exec.Command("ethtool", "-K", testnet.EndpointIf, "tx", "off", "gro", "on")); err != nil {
					b.Fatalf("ethtool: %v %s", err, strings.TrimSpace(string(out)))
				}
			}
			p, _ := openPair(b, topo, passInspector{}, nil)
			port := 5300
			for _, c := range []struct {
				name    string
				args    []string
				payload int // UDP payload bytes; 0 for TCP
			}{
				{"tcp", nil, 0},
				{"udp60", []string{"-u", "-b", "0", "-l", "18", "-P", "4"}, 18},
			} {
				b.Run(c.name, func(b *testing.B) {
					port++
					st0, _, _ := p.Stats()
					u0, s0 := cpuTimes(b)
					start := time.Now()
					gbps := topo.Iperf(b, port, d, c.args...)
					el := time.Since(start)
					u1, s1 := cpuTimes(b)
					st1, _, _ := p.Stats()
					rx := float64(st1.Inner.RxFrames + st1.Outer.RxFrames - st0.Inner.RxFrames - st0.Outer.RxFrames)
					b.ReportMetric(gbps, "Gbit/s")
					if c.payload > 0 {
						b.ReportMetric(gbps*1e9/8/float64(c.payload)/1e3, "rcvd-kpps")
					}
					b.ReportMetric(rx/el.Seconds()/1e3, "queued-kpps")
					b.ReportMetric((u1-u0+s1-s0).Seconds()/el.Seconds(), "cores")
					if rx > 0 {
						b.ReportMetric(float64((u1-u0).Microseconds())/rx, "user-µs/pkt")
						b.ReportMetric(float64((s1-s0).Microseconds())/rx, "sys-µs/pkt")
					}
					b.ReportMetric(float64(loadAvg1()), "load1")
				})
			}
		})
	}
}

// loadAvg1 is the 1-minute load average (the machine is shared: figures
// mean little without it).
func loadAvg1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	var l float64
	fmt.Sscanf(string(b), "%f", &l)
	return l
}
