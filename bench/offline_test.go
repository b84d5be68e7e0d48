package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
	"github.com/corazawaf/coraza/v3"
	"github.com/corazawaf/coraza/v3/types"
	"github.com/flier/gohs/hyperscan"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dpi"
	"github.com/deepwall/deepwall/dpi/pcapio"
	"github.com/deepwall/deepwall/internal/rulegen"
	"github.com/deepwall/deepwall/rules"
)

// BenchmarkOffline is scenario 4: deepwall's engine on one core over a
// generated HTTP capture, beside raw Hyperscan over the same bytes, Go's
// regexp over the same rules, Coraza + CRS over the same exchanges and
// nDPI classifying the same capture.
func BenchmarkOffline(b *testing.B) {
	s := h.scenario("offline")
	cfg := h.cfg
	sample := max(cfg.dur/2, 200*time.Millisecond)
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)

	h.progress("offline: generating the capture (%d connections, %d exchanges)", cfg.capConns, cfg.capExchanges)
	capt, err := httpCapture(1, cfg.capConns, cfg.capExchanges)
	if err != nil {
		b.Fatal(err)
	}
	pcapPath := filepath.Join(b.TempDir(), "http.pcap")
	if err := capt.writePcap(pcapPath); err != nil {
		b.Fatal(err)
	}
	s.note("Capture: %d keep-alive connections, %d exchanges (browser-like requests, 1-48 KiB HTML/JSON responses), %d frames, %s of frames, %s of TCP payload, 1,460-byte segments. Gbit/s counts TCP payload bits: the bytes every system here looks at.",
		capt.Conns, len(capt.Exchanges), len(capt.Frames), fmtBytes(uint64(capt.FrameBytes)), fmtBytes(uint64(capt.PayloadBytes)))
	s.note("The generated rule sets are regexes only (no libinjection, no validators); the default pack has 5 libinjection rules and DLP rules with validators, so a generated set of more rules can scan faster than the default pack. Hyperscan alone is the same regexes with nothing around them.")
	s.note("One core: GOMAXPROCS=1 and one goroutine for the Go systems (the Go runtime's own work, GC included, shares that core); ndpiReader is single-threaded on a pcap file.")

	type ruleSet struct {
		name string
		yaml []byte
	}
	sets := []ruleSet{{"default pack", rules.DefaultPackYAML()}}
	for _, n := range cfg.ruleSizes {
		if n >= 1000 {
			sets = append(sets, ruleSet{fmt.Sprintf("%s generated rules", groupDigits(n)), rulegen.Generate(n, 0)})
		}
	}
	if cfg.mode == "smoke" {
		sets = append(sets, ruleSet{fmt.Sprintf("%d generated rules", cfg.ruleSizes[len(cfg.ruleSizes)-1]), rulegen.Generate(cfg.ruleSizes[len(cfg.ruleSizes)-1], 0)})
	}

	type trial struct {
		name string
		run  func() error
	}
	var trials []trial
	for _, rs := range sets {
		h.progress("offline: compiling %s", rs.name)
		c, err := compileYAML(rs.name, rs.yaml)
		if err != nil {
			b.Fatal(err)
		}
		caseName := fmt.Sprintf("%s (%d rules)", rs.name, len(c.Set.Rules))
		if rs.name != "default pack" {
			caseName = rs.name
		}
		s.ratioTo(caseName, sysHyperscan)
		for _, sys := range []string{sysEngine, sysHyperscan, sysGoRegexp} {
			s.declare(caseName, sys, "payload Gbit/s", "Gbit/s")
		}
		raw, err := newRawScan(c, capt)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(raw.close)
		goRe := newGoRegexpScan(c, capt)
		eng, err := newEngineRun(c, capt)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(eng.close)
		if len(raw.dbs) > 0 {
			s.setNote(caseName, sysHyperscan, fmt.Sprintf("%d regexes of %d rules in one block database per direction, each connection's bytes of a direction scanned in one call: no parsing, transforms, streams or confirmation", raw.patterns, len(c.Set.Rules)))
		}
		s.setNote(caseName, sysGoRegexp, fmt.Sprintf("%d regexes one by one over the same bytes (%d Hyperscan-only patterns skipped)", goRe.count(), goRe.skipped))
		if len(c.Detect) > 0 {
			s.setNote(caseName, sysEngine, fmt.Sprintf("includes %d libinjection rules, which the regex-only systems do not run", len(c.Detect)))
		}
		isDefault := rs.name == "default pack"
		trials = append(trials,
			trial{"engine " + rs.name, func() error {
				r, err := eng.run(sample)
				if err != nil {
					return err
				}
				s.addRatio(caseName, sysEngine, "payload Gbit/s", "Gbit/s", r.payloadGbps)
				s.add(caseName, sysEngine, "Mpps", "Mpps", r.mpps)
				if isDefault {
					s.addRatio("HTTP exchanges, default pack vs CRS", sysEngine, "exchanges/s", "exchanges/s per core", r.exchangesPerSec)
				}
				return nil
			}},
			trial{"hyperscan " + rs.name, func() error {
				s.addRatio(caseName, sysHyperscan, "payload Gbit/s", "Gbit/s", raw.run(sample))
				return nil
			}},
			trial{"go regexp " + rs.name, func() error {
				s.addRatio(caseName, sysGoRegexp, "payload Gbit/s", "Gbit/s", goRe.run(sample))
				return nil
			}},
		)
	}

	// Coraza with the CRS, as its documentation recommends.
	const exchCase = "HTTP exchanges, default pack vs CRS"
	s.ratioTo(exchCase, sysCoraza)
	h.progress("offline: loading Coraza with the OWASP CRS")
	loadStart := time.Now()
	waf, err := newCorazaWAF()
	if err != nil {
		s.notMeasured(exchCase, sysCoraza, "exchanges/s", "exchanges/s per core", err.Error())
	} else {
		s.setNote(exchCase, sysCoraza, fmt.Sprintf("@coraza.conf-recommended + @crs-setup.conf.example + @owasp_crs/*.conf, SecRuleEngine On (blocking; paranoia level 1, anomaly threshold 5), loaded in %.2f s; request and response phases, response bodies of text/* as recommended; gets the exchanges already parsed (no TCP, no HTTP parsing charged to it); Coraza's default build, whose @rx operator is Go's regexp (most of its time in a CPU profile); plug-ins that swap its regex engine exist and are not used", time.Since(loadStart).Seconds()))
		cz := &corazaRun{waf: waf, xs: capt.Exchanges}
		if blocked := cz.detect(capt.Exchanges); blocked > 0 {
			s.setNote(exchCase, sysCoraza, fmt.Sprintf("interrupted %d of the %d ordinary exchanges (false positives)", blocked, len(capt.Exchanges)))
		}
		trials = append(trials, trial{"coraza", func() error {
			s.addRatio(exchCase, sysCoraza, "exchanges/s", "exchanges/s per core", cz.run(sample))
			return nil
		}})
		// The same WAF without the response body phase: where its time
		// goes, since the ordinary responses are 1-48 KiB of HTML/JSON.
		if wafReq, err := newCorazaWAF("SecResponseBodyAccess Off"); err != nil {
			s.notMeasured(exchCase, sysCorazaNoResp, "exchanges/s", "exchanges/s per core", err.Error())
		} else {
			czReq := &corazaRun{waf: wafReq, xs: capt.Exchanges}
			s.setNote(exchCase, sysCorazaNoResp, "the same configuration plus SecResponseBodyAccess Off (not the recommended setting): request phases and response headers only; deepwall's row still scans response bodies")
			trials = append(trials, trial{"coraza, no response bodies", func() error {
				s.addRatio(exchCase, sysCorazaNoResp, "exchanges/s", "exchanges/s per core", czReq.run(sample))
				return nil
			}})
		}
		attacks := newTraffic(7).attacks()
		czDet := cz.detect(attacks)
		dwDet, err := engineDetect(attacks)
		if err != nil {
			b.Fatal(err)
		}
		s.note("Detection on the %d attacks of the HTTP scenario (SQLi, XSS, traversal, command injection, Shellshock, Log4Shell, scanner, SSRF): deepwall's default pack blocks %d, Coraza + CRS blocks %d.", len(attacks), dwDet, czDet)
	}
	s.setNote(exchCase, sysEngine, "whole exchanges from frames: decode, flows, TCP reassembly, HTTP parsing, transforms, default pack (request and response bodies)")

	// Classification: deepwall's engine identifying protocols, and nDPI.
	const classCase = "protocol classification"
	s.ratioTo(classCase, sysNDPI)
	cc, err := compileYAML("classify.yaml", classifyRules())
	if err != nil {
		b.Fatal(err)
	}
	cls, err := dpi.New(dpi.Config{Rules: cc, Offline: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cls.Close() })
	s.setNote(classCase, sysEngine, "dpi.Replay of the pcap file (the `deepwall inspect` path): reading, decode, flows, reassembly, identification; a flow's verdict is final once identified")
	trials = append(trials, trial{"classify deepwall", func() error {
		mpps, apps, err := replayRate(cls, pcapPath, sample)
		if err != nil {
			return err
		}
		s.addRatio(classCase, sysEngine, "Mpps", "Mpps", mpps)
		s.add(classCase, sysEngine, "frame Gbit/s", "Gbit/s", mpps*1e6*float64(capt.FrameBytes)/float64(len(capt.Frames))*8/1e9)
		s.setNote(classCase, sysEngine, fmt.Sprintf("identified: %s", apps))
		return nil
	}})
	if _, err := exec.LookPath("ndpiReader"); err != nil {
		s.notMeasured(classCase, sysNDPI, "Mpps", "Mpps", "ndpiReader not installed (apt-get install libndpi-bin)")
	} else {
		s.setNote(classCase, sysNDPI, "ndpiReader -i FILE -l N: its own \"nDPI throughput\" (packets over its processing time, pcap reading included), default settings")
		loops := 0
		trials = append(trials, trial{"ndpi", func() error {
			if loops == 0 {
				r, err := runNDPI(pcapPath, 1)
				if err != nil {
					return err
				}
				per := float64(len(capt.Frames)) / (r.mpps * 1e6)
				loops = int(math.Ceil(sample.Seconds() / max(per, 1e-4)))
				loops = min(max(loops, 1), 2000)
			}
			r, err := runNDPI(pcapPath, loops)
			if err != nil {
				return err
			}
			s.addRatio(classCase, sysNDPI, "Mpps", "Mpps", r.mpps)
			s.add(classCase, sysNDPI, "frame Gbit/s", "Gbit/s", r.mpps*1e6*float64(capt.FrameBytes)/float64(len(capt.Frames))*8/1e9)
			s.setNote(classCase, sysNDPI, "identified: "+r.protocols)
			return nil
		}})
	}

	s.addChart(chart{Name: "scan", Title: "Scanning the same HTTP bytes on one core", Metric: "payload Gbit/s", Log: true})
	s.addChart(chart{Name: "waf", Title: "HTTP exchanges per second on one core", Metric: "exchanges/s", Log: true})
	s.addChart(chart{Name: "classify", Title: "Protocol classification of the same capture on one core", Metric: "Mpps"})

	st := h.steps("offline", cfg.rounds*len(trials))
	for round := range cfg.rounds {
		for _, i := range rotate(len(trials), round) {
			t := trials[i]
			if err := t.run(); err != nil {
				b.Errorf("%s: %v", t.name, err)
			}
			st.step("round %d: %s", round+1, t.name)
		}
	}
	for _, r := range s.Results {
		if r.Metric == "payload Gbit/s" || r.Metric == "exchanges/s" || (r.Metric == "Mpps" && r.Case == classCase) {
			if sm := summarize(r.Samples); sm.N > 0 {
				b.ReportMetric(sm.Median, metricName(r.Case+" "+r.System+" "+r.Metric))
			}
		}
	}
}

func groupDigits(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// metricName turns a label into a benchmark metric unit (no spaces).
func metricName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == ',' || r == '(' || r == ')' || r == '+' {
			return '_'
		}
		return r
	}, s)
}

// engineRun replays a capture's frames through one engine worker.
type engineRun struct {
	e    *dpi.Engine
	capt *capture
	pass int64
}

type engineResult struct {
	payloadGbps, mpps, exchangesPerSec float64
}

func newEngineRun(c *rules.Compiled, capt *capture) (*engineRun, error) {
	e, err := dpi.New(dpi.Config{Rules: c, Offline: true})
	if err != nil {
		return nil, err
	}
	r := &engineRun{e: e, capt: capt}
	// One pass to check the traffic is benign for these rules (a harness
	// bug otherwise) and to warm the engine's pools.
	r.passOnce()
	if st := e.Stats(); st.Alerts != 0 || st.Dropped != 0 {
		e.Close()
		return nil, fmt.Errorf("benign capture raised %d alerts and %d drops (%v, %v)", st.Alerts, st.Dropped, st.Signatures, st.Drops)
	}
	return r, nil
}

func (r *engineRun) passOnce() {
	span := r.capt.Span.Nanoseconds() + int64(time.Second)
	off := r.pass * span
	var fr dataplane.Frame
	for i := range r.capt.Frames {
		f := &r.capt.Frames[i]
		fr = dataplane.Frame{Data: f.Data, Timestamp: f.TS.UnixNano() + off, Ingress: f.ingress()}
		r.e.Inspect(0, &fr)
	}
	r.pass++
}

// run replays the capture for at least d, whole passes.
func (r *engineRun) run(d time.Duration) (engineResult, error) {
	start := time.Now()
	n := 0
	for n == 0 || time.Since(start) < d {
		r.passOnce()
		n++
	}
	sec := time.Since(start).Seconds()
	if st := r.e.Stats(); st.Alerts != 0 || st.Dropped != 0 {
		return engineResult{}, fmt.Errorf("benign capture raised %d alerts and %d drops", st.Alerts, st.Dropped)
	}
	return engineResult{
		payloadGbps:     float64(r.capt.PayloadBytes) * float64(n) * 8 / sec / 1e9,
		mpps:            float64(len(r.capt.Frames)) * float64(n) / sec / 1e6,
		exchangesPerSec: float64(len(r.capt.Exchanges)) * float64(n) / sec,
	}, nil
}

func (r *engineRun) close() { r.e.Close() }

// rawScan is the limit: every regex that can apply to a direction in one
// Hyperscan block database, each connection's bytes of that direction
// scanned in one call.
type rawScan struct {
	dbs      [2]hyperscan.BlockDatabase
	scratch  [2]*hyperscan.Scratch
	bufs     [2][][]byte
	bytes    int64
	patterns int
	matches  int
}

func toClientField(f rules.Field) bool {
	return f.Kind == rules.FieldHTTPResponseBody || f.Kind == rules.FieldHTTPResponseHeaders || f.Kind == rules.FieldPayloadToClient
}

// byDirection splits a capture's streams into the client's (0) and the
// server's (1), and totals their bytes.
func byDirection(capt *capture) (bufs [2][][]byte, total int64) {
	for i, s := range capt.Streams {
		bufs[i%2] = append(bufs[i%2], s)
		total += int64(len(s))
	}
	return bufs, total
}

func newRawScan(c *rules.Compiled, capt *capture) (*rawScan, error) {
	r := &rawScan{}
	r.bufs, r.bytes = byDirection(capt)
	for d := range 2 {
		var pats []*hyperscan.Pattern
		for _, g := range c.Groups {
			if toClientField(g.Field) != (d == 1) {
				continue
			}
			for i := range g.Patterns {
				// The expression as the engine compiled it: phrase
				// patterns have no regex of their own.
				if g.Patterns[i].Empty {
					continue // matches the empty buffer: nothing to scan for
				}
				p := hyperscan.NewPattern(g.Patterns[i].Expression(), g.Patterns[i].Flags)
				p.Id = len(pats)
				pats = append(pats, p)
			}
		}
		r.patterns += len(pats)
		if len(pats) == 0 {
			continue
		}
		db, err := hyperscan.NewBlockDatabase(pats...)
		if err != nil {
			return nil, fmt.Errorf("raw hyperscan database: %w", err)
		}
		r.dbs[d] = db
		if r.scratch[d], err = hyperscan.NewScratch(db); err != nil {
			return nil, fmt.Errorf("raw hyperscan scratch: %w", err)
		}
	}
	return r, nil
}

func (r *rawScan) run(d time.Duration) float64 {
	h := func(uint, uint64, uint64, uint, any) error { r.matches++; return nil }
	start := time.Now()
	n := 0
	for n == 0 || time.Since(start) < d {
		for dir := range 2 {
			if r.dbs[dir] == nil {
				continue
			}
			for _, buf := range r.bufs[dir] {
				_ = r.dbs[dir].Scan(buf, r.scratch[dir], h, nil)
			}
		}
		n++
	}
	return float64(r.bytes) * float64(n) * 8 / time.Since(start).Seconds() / 1e9
}

func (r *rawScan) close() {
	for d := range 2 {
		if r.scratch[d] != nil {
			r.scratch[d].Free()
		}
		if r.dbs[d] != nil {
			r.dbs[d].Close()
		}
	}
}

// goRegexpScan is the naive way: each rule's regex with Go's regexp, one
// after the other, over the same bytes as rawScan.
type goRegexpScan struct {
	res     [2][]*regexp.Regexp
	bufs    [2][][]byte
	bytes   int64
	skipped int
	// Where the time-bounded scan resumes: direction, buffer, regex.
	dir, buf, re int
}

func newGoRegexpScan(c *rules.Compiled, capt *capture) *goRegexpScan {
	g := &goRegexpScan{}
	g.bufs, g.bytes = byDirection(capt)
	for _, grp := range c.Groups {
		d := 0
		if toClientField(grp.Field) {
			d = 1
		}
		for i, rl := range grp.Rules {
			flags := ""
			if rl.Match.Caseless {
				flags += "i"
			}
			if rl.Match.DotAll {
				flags += "s"
			}
			if rl.Match.Multiline {
				flags += "m"
			}
			// The pattern as Hyperscan got it: a phrase-list entry has no
			// regex of its own (an empty one would match at once) but an
			// escaped literal, which Go's regexp reads too.
			expr := grp.Patterns[i].Expression()
			if flags != "" {
				expr = "(?" + flags + ")" + expr
			}
			re, err := regexp.Compile(expr)
			if err != nil {
				g.skipped++
				continue
			}
			g.res[d] = append(g.res[d], re)
		}
	}
	return g
}

func (g *goRegexpScan) count() int { return len(g.res[0]) + len(g.res[1]) }

// run scans for about d, one (regex, buffer) pair at a time, resuming
// where the last run stopped, and returns the traffic rate: the bytes that
// went through every regex of their direction per second.
func (g *goRegexpScan) run(d time.Duration) float64 {
	var total float64 // work units of a full pass: bytes × regexes
	for dir := range 2 {
		var n int64
		for _, b := range g.bufs[dir] {
			n += int64(len(b))
		}
		total += float64(n) * float64(len(g.res[dir]))
	}
	if total == 0 {
		return math.NaN()
	}
	var done float64
	start := time.Now()
	for done == 0 || time.Since(start) < d {
		if g.re >= len(g.res[g.dir]) {
			g.re = 0
			g.buf++
		}
		if g.buf >= len(g.bufs[g.dir]) {
			g.buf = 0
			g.dir = (g.dir + 1) % 2
			continue
		}
		buf := g.bufs[g.dir][g.buf]
		g.res[g.dir][g.re].Match(buf)
		done += float64(len(buf))
		g.re++
	}
	// done/total of a full pass over the capture took this long.
	return float64(g.bytes) * (done / total) * 8 / time.Since(start).Seconds() / 1e9
}

// corazaRun evaluates exchanges as Coraza transactions.
type corazaRun struct {
	waf coraza.WAF
	xs  []*exchange
	id  int
}

// newCorazaWAF loads Coraza with the CRS as the coraza-coreruleset README
// and Coraza's own recommended configuration say, in blocking mode.
// extra directives follow the recommended ones.
func newCorazaWAF(extra ...string) (coraza.WAF, error) {
	d := "Include @coraza.conf-recommended\nInclude @crs-setup.conf.example\nInclude @owasp_crs/*.conf\nSecRuleEngine On\n"
	for _, e := range extra {
		d += e + "\n"
	}
	return coraza.NewWAF(coraza.NewWAFConfig().WithDirectives(d).WithRootFS(coreruleset.FS))
}

// eval runs one exchange through every phase, as Coraza's net/http
// middleware does, and reports whether the WAF interrupted it.
func (c *corazaRun) eval(x *exchange) bool {
	c.id++
	tx := c.waf.NewTransactionWithID(strconv.Itoa(c.id))
	defer tx.Close()
	tx.ProcessConnection("198.18.0.1", 40000+c.id%20000, "198.19.0.1", 80)
	tx.ProcessURI(x.Target, x.Method, "HTTP/1.1")
	tx.AddRequestHeader("Host", x.Host)
	for _, hd := range x.Headers {
		tx.AddRequestHeader(hd.Name, hd.Value)
	}
	if len(x.Body) > 0 {
		tx.AddRequestHeader("Content-Length", strconv.Itoa(len(x.Body)))
	}
	blocked := func(it *types.Interruption) bool { return it != nil }
	if blocked(tx.ProcessRequestHeaders()) {
		tx.ProcessLogging()
		return true
	}
	if tx.IsRequestBodyAccessible() && len(x.Body) > 0 {
		if it, _, err := tx.WriteRequestBody(x.Body); err == nil && blocked(it) {
			tx.ProcessLogging()
			return true
		}
	}
	if it, err := tx.ProcessRequestBody(); err == nil && blocked(it) {
		tx.ProcessLogging()
		return true
	}
	for _, hd := range x.RespHeaders {
		tx.AddResponseHeader(hd.Name, hd.Value)
	}
	tx.AddResponseHeader("Content-Length", strconv.Itoa(len(x.RespBody)))
	if blocked(tx.ProcessResponseHeaders(x.Status, "HTTP/1.1")) {
		tx.ProcessLogging()
		return true
	}
	if tx.IsResponseBodyAccessible() && tx.IsResponseBodyProcessable() {
		if it, _, err := tx.WriteResponseBody(x.RespBody); err == nil && blocked(it) {
			tx.ProcessLogging()
			return true
		}
	}
	it, err := tx.ProcessResponseBody()
	tx.ProcessLogging()
	return err == nil && blocked(it)
}

func (c *corazaRun) run(d time.Duration) float64 {
	start := time.Now()
	n := 0
	for i := 0; n == 0 || time.Since(start) < d; i++ {
		c.eval(c.xs[i%len(c.xs)])
		n++
	}
	return float64(n) / time.Since(start).Seconds()
}

// detect counts the exchanges of xs the WAF interrupts.
func (c *corazaRun) detect(xs []*exchange) int {
	n := 0
	for _, x := range xs {
		if c.eval(x) {
			n++
		}
	}
	return n
}

// engineDetect counts the attack exchanges (one per connection) that the
// default pack blocks.
func engineDetect(xs []*exchange) (int, error) {
	capt, err := buildCapture(xs, len(xs))
	if err != nil {
		return 0, err
	}
	c, err := compileYAML("default.yaml", rules.DefaultPackYAML())
	if err != nil {
		return 0, err
	}
	e, err := dpi.New(dpi.Config{Rules: c, Offline: true})
	if err != nil {
		return 0, err
	}
	defer e.Close()
	blocked := map[netip.Addr]bool{}
	var fr dataplane.Frame
	for i := range capt.Frames {
		f := &capt.Frames[i]
		fr = dataplane.Frame{Data: f.Data, Timestamp: f.TS.UnixNano(), Ingress: f.ingress()}
		if v := e.Inspect(0, &fr); v.Action == dataplane.Drop && v.Final {
			// Connections differ by client address: the IPv4 source of
			// a frame to the server, the destination of one back.
			client := f.Data[26:30]
			if !f.ToServer {
				client = f.Data[30:34]
			}
			blocked[netip.AddrFrom4([4]byte(client))] = true
		}
	}
	return len(blocked), nil
}

// replayRate replays the pcap file through e until d has passed and
// returns Mpps and the application protocols identified in the last pass.
func replayRate(e *dpi.Engine, path string, d time.Duration) (float64, string, error) {
	var frames uint64
	var elapsed time.Duration
	var apps map[string]uint64
	for elapsed == 0 || elapsed < d {
		r, err := pcapio.Open(path)
		if err != nil {
			return 0, "", err
		}
		sum, err := dpi.Replay(e, r)
		r.Close()
		if err != nil {
			return 0, "", err
		}
		frames += sum.Frames
		elapsed += sum.Elapsed
		apps = sum.Apps
	}
	var parts []string
	for k, v := range apps {
		parts = append(parts, fmt.Sprintf("%d flows %s", v, k))
	}
	return float64(frames) / elapsed.Seconds() / 1e6, strings.Join(parts, ", "), nil
}

type ndpiResult struct {
	mpps      float64
	protocols string
}

var ndpiThroughput = regexp.MustCompile(`nDPI throughput:\s+([0-9.]+) ([KMG]?) ?pps`)

// runNDPI runs ndpiReader over path for loops detection loops and returns
// its packet rate (total packets over the sum of its per-loop processing
// times) and the protocols it detected.
func runNDPI(path string, loops int) (ndpiResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ndpiReader", "-i", path, "-l", strconv.Itoa(loops)).CombinedOutput()
	if err != nil {
		return ndpiResult{}, fmt.Errorf("ndpiReader: %v: %s", err, lastLines(out, 5))
	}
	var rates []float64
	for _, m := range ndpiThroughput.FindAllSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		switch string(m[2]) {
		case "K":
			v *= 1e3
		case "M":
			v *= 1e6
		case "G":
			v *= 1e9
		}
		if v > 0 {
			rates = append(rates, v)
		}
	}
	if len(rates) == 0 {
		return ndpiResult{}, fmt.Errorf("ndpiReader: no throughput in its output: %s", lastLines(out, 5))
	}
	// Every loop handles the same packets: the overall rate is the
	// harmonic mean of the loops' rates.
	var inv float64
	for _, r := range rates {
		inv += 1 / r
	}
	res := ndpiResult{mpps: float64(len(rates)) / inv / 1e6}
	// The last "Detected protocols:" block.
	if i := bytes.LastIndex(out, []byte("Detected protocols:")); i >= 0 {
		sc := bufio.NewScanner(bytes.NewReader(out[i:]))
		sc.Scan()
		var parts []string
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 0 {
				break
			}
			if len(f) >= 7 && f[5] == "flows:" {
				parts = append(parts, f[6]+" flows "+strings.ToLower(f[0]))
			}
		}
		res.protocols = strings.Join(parts, ", ")
	}
	return res, nil
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
