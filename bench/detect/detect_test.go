package detect

import (
	"sync"
	"syscall"
	"testing"
	"time"
)

// benignCRS is the imported CRS at paranoia level 1 in an offline
// engine, built once per test binary: compiling it takes seconds, and the
// benchmark's rounds (-count, b.N growth) must measure inspection only.
var benignCRS = sync.OnceValues(func() (*offline, error) {
	set, _, err := crsRules(1)
	if err != nil {
		return nil, err
	}
	return newOffline("crs", set)
})

// BenchmarkBenignCRS measures the imported CRS (paranoia level 1) over
// the benign corpus, one request per iteration, one core. Besides wall
// time it reports the process's CPU time per request (cpu-us/op, GC
// included) and its inverse, requests per CPU-second (req/cpu-s): on a
// machine shared with other work the CPU time is the steadier figure.
func BenchmarkBenignCRS(b *testing.B) {
	o, err := benignCRS()
	if err != nil {
		b.Fatal(err)
	}
	benchBenign(b, o)
}

// BenchmarkBenignCoraza is BenchmarkBenignCRS for Coraza v3 with the same
// CRS at the same paranoia level, on the same requests.
func BenchmarkBenignCoraza(b *testing.B) {
	c, err := newCorazaRunner(1)
	if err != nil {
		b.Fatal(err)
	}
	benchBenign(b, c)
}

func benchBenign(b *testing.B, o runner) {
	corpus := benignCorpus(64)
	cpu0 := processCPU(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		o.Run(corpus[i%len(corpus)].Request)
	}
	b.StopTimer()
	cpu := processCPU(b) - cpu0
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/op")
	b.ReportMetric(float64(b.N)/cpu.Seconds(), "req/cpu-s")
}

// processCPU is the user and system CPU time the process has used.
func processCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
