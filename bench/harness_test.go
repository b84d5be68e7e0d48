package bench

// The harness: each scenario of the benchmark issue is one Go benchmark
// (BenchmarkInline, BenchmarkPacketRate, BenchmarkHTTP, BenchmarkOffline,
// BenchmarkScale), run once (-benchtime 1x) and measuring its systems in
// interleaved rounds itself. TestMain writes the report of whatever ran.
//
//	make bench         # full: 5 rounds, 10 s per measurement (about an hour)
//	make bench-quick   # 3 rounds, 2 s: under 10 minutes on 2 cores
//	DEEPWALL_BENCH_MODE=smoke go test ./bench -run '^$' -bench . -benchtime 1x
//
// Environment: DEEPWALL_BENCH_MODE (full, quick, smoke; default smoke, so
// that a plain `go test -bench .` stays short), DEEPWALL_BENCH_ROUNDS and
// DEEPWALL_BENCH_DURATION override the mode's size, DEEPWALL_BENCH_OUT is
// the results directory (default: bench/results for full and quick runs, a
// temporary directory for smoke runs, which are not worth keeping).

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flier/gohs/hyperscan"

	"github.com/deepwall/deepwall/internal/testutil"
)

// config is the size of a harness run.
type config struct {
	mode   string
	rounds int
	// dur is the length of one measurement of traffic (scenarios 1-3 and
	// the throughput of 5); offline measurements take dur/2.
	dur time.Duration
	out string
	// Offline capture: connections and exchanges.
	capConns, capExchanges int
	// Rule-set sizes of scenarios 4 and 5.
	ruleSizes []int
	// Flow counts of the memory measurement.
	flowCounts []int
	// Connections of the multi-stream TCP case and of the HTTP load.
	streams, httpConns int
}

func loadConfig() (config, error) {
	c := config{mode: os.Getenv("DEEPWALL_BENCH_MODE")}
	if c.mode == "" {
		c.mode = "smoke"
	}
	switch c.mode {
	case "full":
		c.rounds, c.dur = 5, 10*time.Second
		c.capConns, c.capExchanges = 64, 2048
		c.ruleSizes, c.flowCounts = []int{100, 1000, 10000}, []int{10_000, 100_000, 1_000_000}
	case "quick":
		c.rounds, c.dur = 3, 2*time.Second
		c.capConns, c.capExchanges = 64, 1024
		c.ruleSizes, c.flowCounts = []int{100, 1000, 10000}, []int{10_000, 100_000, 1_000_000}
	case "smoke":
		c.rounds, c.dur = 1, time.Second
		c.capConns, c.capExchanges = 8, 64
		c.ruleSizes, c.flowCounts = []int{100, 200}, []int{1000, 2000}
	default:
		return c, fmt.Errorf("DEEPWALL_BENCH_MODE=%q: want full, quick or smoke", c.mode)
	}
	c.streams, c.httpConns = 4, 64
	var err error
	if c.rounds, err = testutil.LookupBenchRounds(c.rounds); err != nil {
		return c, err
	}
	if c.dur, err = testutil.LookupBenchDuration(c.dur); err != nil {
		return c, err
	}
	c.out = os.Getenv("DEEPWALL_BENCH_OUT")
	return c, nil
}

// harness is the state of one run, shared by the scenario benchmarks.
type harness struct {
	cfg    config
	report *report
	start  time.Time

	progressMu sync.Mutex
	ran        bool      // some scenario recorded something
	current    *scenario // the scenario running, for its load average
}

var h *harness

func TestMain(m *testing.M) {
	// The harness runs only for benchmarks (-bench, as `make bench` and
	// `make bench-quick` run it): a plain `go test ./...` runs this
	// package's tests alone, quickly, and writes no report.
	flag.Parse()
	if f := flag.Lookup("test.bench"); f == nil || f.Value.String() == "" {
		os.Exit(m.Run())
	}
	cfg, err := loadConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	h = &harness{cfg: cfg, report: newReport(cfg.mode, cfg.rounds, cfg.dur), start: time.Now()}
	h.report.Machine = describeMachine()
	// The scenarios in the order, so the report always lists all
	// five, saying which did not run.
	for _, s := range scenarioTitles {
		h.report.scenario(s.id, s.title, s.what).skip("not run: not selected (-bench) in this run")
	}
	code := m.Run()
	if h.ran {
		h.report.Machine.LoadEnd = loadAverage()
		recordVersions(h.report)
		out := cfg.out
		if out == "" {
			if cfg.mode == "smoke" {
				out, err = os.MkdirTemp("", "deepwall-bench-")
				if err == nil {
					defer os.RemoveAll(out)
				}
			} else {
				out = "results"
			}
		}
		if err == nil {
			var files []string
			files, err = h.report.write(out)
			for _, f := range files {
				abs, _ := filepath.Abs(f)
				fmt.Fprintf(os.Stderr, "bench: wrote %s\n", abs)
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: report:", err)
			code = 1
		}
	}
	cleanupAgentBinary()
	os.Exit(code)
}

var scenarioTitles = []struct{ id, title, what string }{
	{"inline", "Inline TCP throughput",
		"HTTP/1.1 bulk downloads (4 MiB HTML responses on keep-alive connections, a Go sender and receiver) from the server namespace to the client namespace through the fw namespace, one connection and several. Goodput of response bytes."},
	{"pps", "Packet rate",
		"UDP frames of 64 and 1,514 bytes from an AF_XDP copy-mode transmitter (dataplane/afxdp) in the client namespace, counted by an XDP program that drops them at the server's eth0. Mpps received; per core = over all busy cores of the machine, generator included."},
	{"http", "HTTP through the firewall",
		"A fasthttp server in the server namespace; a fasthttp load generator in the client namespace, keep-alive, many connections, each sending the next request when the previous answer arrived (closed loop). Browser-like requests (GET with cookies and query strings, form and JSON POSTs) with 1% attacks mixed in. Latency percentiles over the ordinary requests."},
	{"offline", "Engine offline on a generated HTTP capture",
		"One core (GOMAXPROCS=1, one goroutine): deepwall's engine over the frames of a generated capture of keep-alive HTTP connections, beside the raw Hyperscan scan of the same bytes, Go's regexp over the same rules, Coraza v3 with the OWASP CRS v4 evaluating the same HTTP exchanges, and nDPI's ndpiReader classifying the same capture."},
	{"scale", "Scale",
		"Memory per tracked flow in deepwall's engine; rule compile and hot-reload time; DPI throughput with 1 and 2 workers."},
}

// scenario returns the scenario id of the report, marked as run.
func (h *harness) scenario(id string) *scenario {
	for _, s := range scenarioTitles {
		if s.id == id {
			sc := h.report.scenario(s.id, s.title, s.what)
			sc.mu.Lock()
			sc.Skipped = ""
			sc.LoadStart, sc.LoadEnd = loadAverage(), 0
			sc.mu.Unlock()
			h.ran = true
			h.current = sc
			return sc
		}
	}
	panic("unknown scenario " + id)
}

// progress prints a line on stderr: long runs show where they are.
func (h *harness) progress(format string, args ...any) {
	h.progressMu.Lock()
	defer h.progressMu.Unlock()
	el := time.Since(h.start).Round(time.Second)
	fmt.Fprintf(os.Stderr, "bench %6s  %s\n", el, fmt.Sprintf(format, args...))
}

// steps counts the measurements of a scenario, for progress lines with an
// estimate of the time left.
type steps struct {
	h     *harness
	name  string
	total int
	done  int
	start time.Time
}

func (h *harness) steps(name string, total int) *steps {
	return &steps{h: h, name: name, total: total, start: time.Now()}
}

// step reports one finished measurement.
func (s *steps) step(format string, args ...any) {
	s.done++
	if sc := s.h.current; sc != nil {
		sc.mu.Lock()
		sc.LoadEnd = loadAverage()
		sc.mu.Unlock()
	}
	left := ""
	if s.done < s.total {
		per := time.Since(s.start) / time.Duration(s.done)
		left = fmt.Sprintf(", ~%s left", (per * time.Duration(s.total-s.done)).Round(time.Second))
	}
	s.h.progress("%s [%d/%d%s] %s", s.name, s.done, s.total, left, fmt.Sprintf(format, args...))
}

func recordVersions(r *report) {
	r.setVersion("go", runtime.Version())
	r.setVersion("deepwall", deepwallVersion())
	r.setVersion("hyperscan", hyperscan.Version())
	mods := []string{"github.com/corazawaf/coraza/v3", "github.com/corazawaf/coraza-coreruleset/v4",
		"github.com/valyala/fasthttp", "github.com/cilium/ebpf", "github.com/flier/gohs", "gonum.org/v1/plot"}
	found := moduleVersions(mods...)
	for _, p := range mods {
		v := found[p]
		if v == "" || v == "(devel)" {
			// Test binaries may lack dependency build info: ask the
			// module graph the binary was built from.
			v = firstLine("go", "list", "-m", "-f", "{{.Version}}", p)
		}
		r.setVersion(p, v)
	}
	if v := debianPackageVersion("libndpi-bin"); v != "" {
		r.setVersion("nDPI (libndpi-bin)", v)
	} else {
		r.setVersion("nDPI (libndpi-bin)", "not installed")
	}
	if v := debianPackageVersion("libhyperscan5"); v != "" {
		r.setVersion("libhyperscan5 (Debian)", v)
	}
	if l := firstLine("ethtool", "--version"); l != "" {
		r.setVersion("ethtool", strings.TrimPrefix(l, "ethtool version "))
	}
}

// deepwallVersion is the git description of the tree the harness runs in.
func deepwallVersion() string {
	if l := firstLine("git", "describe", "--tags", "--always", "--dirty"); l != "" && !strings.Contains(l, "fatal") {
		return l
	}
	return "unknown"
}
