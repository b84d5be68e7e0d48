package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/deepwall/deepwall/internal/testnet"
)

// BenchmarkInline is scenario 1: TCP throughput through the fw namespace,
// one connection and several, for the Linux bridge (with the kernel's
// default offloads and with deepwall's), the plain XDP redirect, deepwall's
// fast path and deepwall's DPI path with the default pack.
func BenchmarkInline(b *testing.B) {
	s := h.scenario("inline")
	requireRoot(b, s)
	cfg := h.cfg
	specs := []sysSpec{specBridgeDefault, specBridge, specRedirect, specFastPath, specFastPathXDP, specDPI, specDPIXDP}
	specs = append(specs, nfqueueSpecs(rulesDefault)...)
	envs := upAll(b, "inline", specs)
	srv := make([]netip.AddrPort, len(envs))
	body := newTraffic(3).html(bulkBodySize)
	for i, e := range envs {
		srv[i] = serveBulk(b, e.topo, body)
	}
	cases := []struct {
		name    string
		streams int
	}{{"1 connection", 1}, {fmt.Sprintf("%d connections", cfg.streams), cfg.streams}}
	for _, c := range cases {
		s.ratioTo(c.name, sysBridgeDefault)
		for _, e := range envs {
			s.declare(c.name, e.spec.name, "Gbit/s", "Gbit/s")
		}
	}
	s.note("Every system has its own topology (client ns ↔ fw ns ↔ server ns, veth pairs, MTU 1500); the systems are set up once and measured in turn, the order rotating each round. Gbit/s counts response body bytes received by the client over the measurement (%s each).", cfg.dur)
	s.note("%s. An XDP program on a veth takes its peer's TSO away, so no XDP path can keep them; deepwall's tc path (its default) does, see docs/performance.md.", offloadNote)
	s.note("deepwall fast path: the agent with an L3/L4-only rule set, every flow's verdict is final at its SYN and the kernel carries the rest. deepwall DPI: the agent with the default pack and no inspection depth, every frame of the HTTP flows goes through AF_XDP and the engine (request and response bodies scanned); the share of frames inspected is written beside the figures. \"XDP path\": the agent with --datapath xdp.")
	s.addChart(chart{Name: "throughput", Title: "Inline TCP throughput (HTTP bulk download)", Metric: "Gbit/s"})

	st := h.steps("inline", cfg.rounds*len(cases)*len(envs))
	for round := range cfg.rounds {
		for _, c := range cases {
			for _, i := range rotate(len(envs), round) {
				e := envs[i]
				settle()
				c0 := e.counters(b)
				w := startCPU(e)
				gbps, err := bulkRate(e.topo, srv[i], c.streams, cfg.dur)
				mc, ac := w.stop()
				c1 := e.counters(b)
				if err != nil {
					s.notMeasured(c.name, e.spec.name, "Gbit/s", "Gbit/s", err.Error())
					b.Errorf("inline %s %s: %v", c.name, e.spec.name, err)
				} else {
					s.addRatio(c.name, e.spec.name, "Gbit/s", "Gbit/s", gbps)
					s.add(c.name, e.spec.name, "busy cores", "cores", mc)
					if e.agent != nil {
						s.add(c.name, e.spec.name, "agent cores", "cores", ac)
						s.setNote(c.name, e.spec.name, e.pathNote(c0, c1))
					}
				}
				st.step("round %d: %s, %s: %s Gbit/s", round+1, c.name, e.spec.name, formatValue(gbps))
			}
		}
	}
	noteSystems(s, []string{cases[0].name, cases[1].name}, envs)
	reportMedians(b, s, "Gbit/s")
}

// bulkBodySize is the size of one bulk response.
const bulkBodySize = 4 << 20

// bulkPort is the bulk server's port in the server namespace.
const bulkPort = 8080

// serveBulk starts an HTTP/1.1 server in topo's server namespace that
// answers every request with body (keep-alive), until cleanup.
func serveBulk(tb testing.TB, topo *testnet.Topology, body []byte) netip.AddrPort {
	tb.Helper()
	addr := netip.AddrPortFrom(testnet.ServerIP, bulkPort)
	ln := testnet.Listen(tb, topo.Server, "tcp", addr)
	resp := fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: %d\r\n\r\n", len(body))
	resp = append(resp, body...)
	var wg sync.WaitGroup
	tb.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		var conns sync.WaitGroup
		defer conns.Wait()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer conns.Done()
				defer c.Close()
				br := bufio.NewReaderSize(c, 4096)
				for {
					if _, err := readHead(br); err != nil {
						return
					}
					// Bound a stuck peer: the harness's clients read
					// everything they ask for until their deadline.
					_ = c.SetWriteDeadline(time.Now().Add(time.Minute))
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	return addr
}

// maxHead bounds a message head the bulk server and client read.
const maxHead = 16 << 10

var errHeadTooLong = errors.New("message head too long")

// readHead reads an HTTP message head up to its blank line and returns
// the Content-Length (0 without one).
func readHead(br *bufio.Reader) (int64, error) {
	var n int
	var length int64
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		n += len(line)
		if n > maxHead {
			return 0, errHeadTooLong
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			return length, nil
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(bytes.TrimSpace(k), []byte("Content-Length")) {
			length, err = strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			if err != nil || length < 0 {
				return 0, fmt.Errorf("bad content-length %q", v)
			}
		}
	}
}

// bulkRate downloads from srv over streams keep-alive connections for d
// and returns the goodput (response body bytes) in Gbit/s. Any error
// other than the end of the measurement fails it: a connection reset or
// stalled by the system under test has no rate.
func bulkRate(topo *testnet.Topology, srv netip.AddrPort, streams int, d time.Duration) (float64, error) {
	conns := make([]net.Conn, 0, streams)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range streams {
		var c net.Conn
		err := topo.Client.Do(func() error {
			var err error
			c, err = net.DialTimeout("tcp", srv.String(), 5*time.Second)
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("connect: %w", err)
		}
		conns = append(conns, c)
	}
	req := fmt.Appendf(nil, "GET /bulk HTTP/1.1\r\nHost: %s\r\nUser-Agent: deepwall-bench\r\nAccept: */*\r\n\r\n", srv)
	start := time.Now()
	end := start.Add(d)
	var mu sync.Mutex
	var total int64
	var errs []error
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := bulkConn(c, req, end)
			mu.Lock()
			defer mu.Unlock()
			total += n
			if err != nil {
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	return float64(total) * 8 / d.Seconds() / 1e9, nil
}

// bulkConn requests and reads responses on c until end; it returns the
// body bytes read before end.
func bulkConn(c net.Conn, req []byte, end time.Time) (int64, error) {
	if err := c.SetDeadline(end); err != nil {
		return 0, err
	}
	br := bufio.NewReaderSize(c, 256<<10)
	var total int64
	for {
		if _, err := c.Write(req); err != nil {
			return total, expired(err, total)
		}
		length, err := readHead(br)
		if err != nil {
			return total, expired(err, total)
		}
		n, err := io.CopyN(io.Discard, br, length)
		total += n
		if err != nil {
			return total, expired(err, total)
		}
	}
}

// expired maps the deadline that ends a measurement to success, unless
// not one byte of a response body arrived (a stalled path).
func expired(err error, got int64) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if got == 0 {
			return fmt.Errorf("no response body byte arrived before the end of the measurement")
		}
		return nil
	}
	return err
}

// reportMedians reports the medians of metric for every (case, system)
// as benchmark metrics, so that `go test -bench` output shows them too.
func reportMedians(b *testing.B, s *scenario, metric string) {
	for _, r := range s.Results {
		if r.Metric == metric {
			if sm := summarize(r.Samples); sm.N > 0 {
				b.ReportMetric(sm.Median, metricName(r.Case+" "+r.System+" "+metric))
			}
		}
	}
}
