package bench

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/deepwall/deepwall/internal/testnet"
)

// httpPort is the fasthttp server's port in the server namespace.
const httpPort = 8081

// httpPageSize is the size of the page the server answers ordinary
// requests with.
const httpPageSize = 4 << 10

// attackEvery makes one request in attackEvery an attack (1 %).
const attackEvery = 100

// BenchmarkHTTP is scenario 3: a fasthttp server in the server namespace,
// a closed-loop fasthttp load generator in the client namespace (keep-alive,
// many connections), through the bridge and through deepwall's DPI path;
// requests per second, latency percentiles of the ordinary requests, and
// the attacks blocked out of those sent.
func BenchmarkHTTP(b *testing.B) {
	s := h.scenario("http")
	requireRoot(b, s)
	cfg := h.cfg
	specs := []sysSpec{specBridgeDefault, specBridge, specProxy, specModSec, specFastPath, specDPI, specDPIXDP}
	specs = append(specs, nfqueueSpecs(rulesDefault)...)
	envs := upAll(b, "http", specs)
	tr := newTraffic(11)
	page := tr.html(httpPageSize)
	benign := make([]*fasthttp.Request, 512)
	for i := range benign {
		benign[i] = fastRequest(tr.request())
	}
	var attacks []*fasthttp.Request
	for _, x := range tr.attacks() {
		attacks = append(attacks, fastRequest(x))
	}
	for _, e := range envs {
		serveHTTP(b, e.topo, page)
	}
	const c = "keep-alive, closed loop"
	s.ratioTo(c, sysBridgeDefault)
	for _, e := range envs {
		s.declare(c, e.spec.name, "req/s", "requests/s")
	}
	s.note("%d connections, each sending its next request when the previous answer arrived (fasthttp.HostClient, keep-alive, 5 s timeouts); %s per measurement. Ordinary requests are browser-like (GET with query strings and cookies, form and JSON POSTs; %d distinct), answered with a %d-byte HTML page. One request in %d is an attack (%d kinds: SQLi, XSS, traversal, command injection, Shellshock, Log4Shell, scanner, SSRF), answered 200 by the server if it gets through.", cfg.httpConns, cfg.dur, len(benign), httpPageSize, attackEvery, len(attacks))
	s.note("req/s counts answered ordinary requests; latency percentiles are computed per round over its answered ordinary requests (nearest rank), and the table gives their median and range over the rounds. An attack counts as blocked when its connection is reset before an answer; the agent's own block counter is checked against it. The bridge blocks nothing: its attacks get answers. A blocked attack costs its connection, which fasthttp reopens.")
	s.note("%s. deepwall fast path: an L3/L4-only rule set (nothing inspected, attacks pass), to separate the cost of inspection from the cost of the data path. \"XDP path\": the agent with --datapath xdp.", offloadNote)
	s.note("%s: nginx in the fw namespace as a reverse proxy on the bridge's address (the client sends to it), 2 workers, keep-alive to the server. %s: the same with ModSecurity v3 (Debian's nginx module, libmodsecurity 3.0.9) running Debian's OWASP CRS 3.3 at paranoia level 1 (that libmodsecurity cannot parse CRS v4), request and response bodies inspected; it blocks with 403. Machine CPU per request is every busy core of the machine (generator, server and the system under test) over the requests answered, so the systems compare by what they add.", sysProxy, sysModSec)
	s.addChart(chart{Name: "rps", Title: "HTTP requests per second (closed loop)", Metric: "req/s"})
	s.addChart(chart{Name: "latency", Title: "HTTP latency, 99th percentile", Metric: "p99 ms"})

	st := h.steps("http", cfg.rounds*len(envs))
	for round := range cfg.rounds {
		for _, i := range rotate(len(envs), round) {
			e := envs[i]
			settle()
			c0 := e.counters(b)
			w := startCPU(e)
			r := loadHTTP(e.topo, e.target(httpPort), cfg.httpConns, cfg.dur, benign, attacks)
			mc, ac := w.stop()
			// Blocks are counted by the agent when the verdict is made;
			// give the last ones a moment.
			time.Sleep(200 * time.Millisecond)
			c1 := e.counters(b)
			if r.ok == 0 {
				s.notMeasured(c, e.spec.name, "req/s", "requests/s", fmt.Sprintf("no ordinary request answered (%d errors: %v)", r.errors, r.firstErr))
				b.Errorf("http %s: no ordinary request answered: %v", e.spec.name, r.firstErr)
				st.step("round %d: %s failed", round+1, e.spec.name)
				continue
			}
			s.addRatio(c, e.spec.name, "req/s", "requests/s", float64(r.ok)/cfg.dur.Seconds())
			slices.Sort(r.lat)
			for _, p := range []struct {
				name string
				v    float64
			}{{"p50 ms", 50}, {"p99 ms", 99}, {"p99.9 ms", 99.9}} {
				s.add(c, e.spec.name, p.name, "ms", percentile(r.lat, p.v).Seconds()*1e3)
			}
			s.add(c, e.spec.name, "attacks sent", "requests", float64(r.attacks))
			s.add(c, e.spec.name, "attacks blocked", "requests", float64(r.blocked))
			s.add(c, e.spec.name, "ordinary failed", "requests", float64(r.errors))
			s.add(c, e.spec.name, "busy cores", "cores", mc)
			s.add(c, e.spec.name, "machine CPU µs/request", "µs", mc*cfg.dur.Seconds()/float64(r.ok+r.attacks)*1e6)
			if e.agent != nil {
				s.add(c, e.spec.name, "agent cores", "cores", ac)
				s.add(c, e.spec.name, "agent blocks", "flows", float64(c1.blocks-c0.blocks))
				if e.spec.rules != rulesL4 && (r.blocked != r.attacks || c1.blocks-c0.blocks != uint64(r.attacks)) {
					s.setNote(c, e.spec.name, fmt.Sprintf("round %d: %d attacks sent, %d blocked at the client, %d blocks counted by the agent", round+1, r.attacks, r.blocked, c1.blocks-c0.blocks))
				}
			}
			if r.errors > 0 {
				s.setNote(c, e.spec.name, fmt.Sprintf("round %d: %d ordinary requests failed (first: %v)", round+1, r.errors, r.firstErr))
			}
			st.step("round %d: %s: %s req/s, p99 %s ms, attacks %d/%d blocked", round+1, e.spec.name,
				formatValue(float64(r.ok)/cfg.dur.Seconds()), formatValue(percentile(r.lat, 99).Seconds()*1e3), r.blocked, r.attacks)
		}
	}
	for _, e := range envs {
		if e.spec.kind == kindAgent && e.spec.rules != rulesL4 {
			if a, bl := s.lookup(c, e.spec.name, "attacks sent"), s.lookup(c, e.spec.name, "attacks blocked"); a != nil && bl != nil && slices.Equal(a.Samples, bl.Samples) {
				s.setNote(c, e.spec.name, "every attack sent was blocked, in every round")
			}
		}
	}
	noteSystems(s, []string{c}, envs)
	reportMedians(b, s, "req/s")
	reportMedians(b, s, "p99 ms")
}

// fastRequest turns an exchange's request into a fasthttp request for the
// load generator.
func fastRequest(x *exchange) *fasthttp.Request {
	r := fasthttp.AcquireRequest()
	r.Header.SetMethod(x.Method)
	r.SetRequestURI(x.Target)
	r.Header.SetHost(x.Host)
	// Keep the attack payloads as they are written: fasthttp would
	// otherwise normalise the path.
	r.URI().DisablePathNormalizing = true
	r.Header.DisableNormalizing()
	for _, hd := range x.Headers {
		if strings.EqualFold(hd.Name, "Connection") {
			continue
		}
		r.Header.Set(hd.Name, hd.Value)
	}
	if len(x.Body) > 0 {
		r.SetBody(x.Body)
	}
	if x.Attack != "" {
		r.Header.Set("X-Bench-Attack", "1")
	}
	return r
}

// serveHTTP starts a fasthttp server in topo's server namespace: attacks
// (marked by the harness) get a small page, everything else page.
func serveHTTP(tb testing.TB, topo *testnet.Topology, page []byte) {
	tb.Helper()
	ln := testnet.Listen(tb, topo.Server, "tcp", netip.AddrPortFrom(testnet.ServerIP, httpPort))
	small := []byte("<html><body>ok</body></html>\n")
	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType("text/html; charset=utf-8")
			if len(ctx.Request.Header.Peek("X-Bench-Attack")) > 0 {
				ctx.SetBody(small)
				return
			}
			ctx.SetBody(page)
		},
		Name:               "bench",
		ReadTimeout:        30 * time.Second,
		WriteTimeout:       30 * time.Second,
		MaxRequestBodySize: 1 << 20,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	tb.Cleanup(func() {
		_ = srv.Shutdown()
		<-done
	})
}

// httpResult is what one load run saw.
type httpResult struct {
	ok, errors       int
	attacks, blocked int
	lat              []time.Duration
	firstErr         error
}

// loadHTTP runs conns closed-loop clients in topo's client namespace for d
// against addr.
func loadHTTP(topo *testnet.Topology, target netip.AddrPort, conns int, d time.Duration, benign, attacks []*fasthttp.Request) httpResult {
	addr := target.String()
	hc := &fasthttp.HostClient{
		Addr: addr,
		Dial: func(a string) (net.Conn, error) {
			var c net.Conn
			err := topo.Client.Do(func() error {
				var err error
				c, err = net.DialTimeout("tcp", a, 5*time.Second)
				return err
			})
			return c, err
		},
		MaxConns:                      conns,
		ReadTimeout:                   5 * time.Second,
		WriteTimeout:                  5 * time.Second,
		MaxIdemponentCallAttempts:     1,
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
	}
	defer hc.CloseIdleConnections()
	end := time.Now().Add(d)
	results := make([]httpResult, conns)
	var wg sync.WaitGroup
	for g := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[g]
			r.lat = make([]time.Duration, 0, 4096)
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseResponse(resp)
			req := fasthttp.AcquireRequest()
			defer fasthttp.ReleaseRequest(req)
			for i := g * 7; time.Now().Before(end); i++ {
				attack := i%attackEvery == attackEvery-1
				src := benign[i%len(benign)]
				if attack {
					src = attacks[(i/attackEvery)%len(attacks)]
				}
				src.CopyTo(req)
				start := time.Now()
				err := hc.DoTimeout(req, resp, 5*time.Second)
				el := time.Since(start)
				switch {
				case attack:
					r.attacks++
					// deepwall resets; a WAF in a proxy answers 403.
					if (err != nil && blockedErr(err)) || (err == nil && resp.StatusCode() == fasthttp.StatusForbidden) {
						r.blocked++
					}
				case err == nil && resp.StatusCode() == fasthttp.StatusOK:
					r.ok++
					r.lat = append(r.lat, el)
				default:
					r.errors++
					if r.firstErr == nil {
						if err == nil {
							err = fmt.Errorf("status %d", resp.StatusCode())
						}
						r.firstErr = err
					}
				}
			}
		}()
	}
	wg.Wait()
	var out httpResult
	for _, r := range results {
		out.ok += r.ok
		out.errors += r.errors
		out.attacks += r.attacks
		out.blocked += r.blocked
		out.lat = append(out.lat, r.lat...)
		if out.firstErr == nil {
			out.firstErr = r.firstErr
		}
	}
	return out
}

// blockedErr says whether a request's error is its connection being
// closed or reset without an answer (what deepwall does to a blocked
// request), not a timeout (a hang is not a block).
func blockedErr(err error) bool {
	if errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, fasthttp.ErrDialTimeout) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return true
}
