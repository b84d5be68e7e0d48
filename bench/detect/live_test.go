package detect

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deepwall/deepwall/ctl/eve"
	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dpi"
	"github.com/deepwall/deepwall/internal/testnet"
	"github.com/deepwall/deepwall/rules"
)

// liveRunner sends each request over a real TCP connection from the
// client namespace through deepwall's inline path (XDP + AF_XDP pair in
// the fw namespace, the DPI engine as the pair's inspector) to an HTTP
// backend in the server namespace, and reads the engine's events for
// that connection.
type liveRunner struct {
	t      *testing.T
	topo   *testnet.Topology
	mu     sync.Mutex
	events map[uint16][]*eve.Event // by client port
	blocks map[uint32]bool         // threshold rules that only alert (detectionOnly)
}

func (l *liveRunner) Name() string { return "deepwall-crs-pl1-live" }
func (l *liveRunner) Close() error { return nil }

func (l *liveRunner) emit(ev *eve.Event) {
	port := ev.SrcPort
	if port == 80 {
		port = ev.DestPort
	}
	l.mu.Lock()
	if len(l.events[uint16(port)]) < 64 {
		l.events[uint16(port)] = append(l.events[uint16(port)], ev)
	}
	l.mu.Unlock()
}

func (l *liveRunner) Run(req []byte) outcome {
	var c net.Conn
	err := l.topo.Client.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", netip.AddrPortFrom(testnet.ServerIP, 80).String(), 2*time.Second)
		return err
	})
	if err != nil {
		l.t.Logf("dial: %v", err)
		return outcome{IDs: map[uint32]bool{}}
	}
	port := uint16(c.LocalAddr().(*net.TCPAddr).Port)
	_ = c.SetDeadline(time.Now().Add(time.Second))
	_, _ = c.Write(req)
	_, rerr := io.Copy(io.Discard, c)
	c.Close()
	// The engine emits before it forwards or drops the frame that decided,
	// so the connection's events are in once the response ended; a reset
	// or a timeout means the flow was dropped.
	l.mu.Lock()
	evs := l.events[port]
	delete(l.events, port)
	l.mu.Unlock()
	return outcomeOf(evs, rerr != nil, l.blocks)
}

// answerBackend answers a request like the CRS test backend (albedo):
// /reflect returns the response its JSON body describes.
func answerBackend(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	r, err := http.ReadRequest(bufio.NewReader(c))
	if err != nil {
		_, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
		return
	}
	var body bytes.Buffer
	_, _ = body.ReadFrom(io.LimitReader(r.Body, maxBody))
	_, _ = c.Write(response(r.Method, r.URL.RequestURI(), body.Bytes()))
}

// TestPrivilegedDetectLive runs the CRS regression suite with the
// imported CRS at paranoia level 1 through the live inline path and
// compares it with the offline engine test by test. DETECT_LIVE_OUT names
// a JSON file for the result; DETECT_LIVE_LIMIT bounds the tests run
// (default: all, within 8 minutes).
func TestPrivilegedDetectLive(t *testing.T) {
	topo := testnet.NewTopology(t, testnet.TopologyOptions{})
	dir, err := testsDir()
	if err != nil {
		t.Skip(err)
	}
	tests, _, err := loadSuite(dir)
	if err != nil {
		t.Fatal(err)
	}
	if n := os.Getenv("DETECT_LIVE_LIMIT"); n != "" {
		var k int
		if _, err := fmt.Sscan(n, &k); err == nil && k > 0 && k < len(tests) {
			step := len(tests) / k
			var sample []test
			for i := 0; i < len(tests); i += step {
				sample = append(sample, tests[i])
			}
			tests = sample
		}
	}
	set, _, err := crsRules(1)
	if err != nil {
		t.Fatal(err)
	}
	c, err := rules.Compile(set)
	if err != nil {
		t.Fatal(err)
	}
	live := &liveRunner{t: t, topo: topo, events: map[uint16][]*eve.Event{}, blocks: detectionBlocks(set)}
	e, err := dpi.New(dpi.Config{Workers: 1, Rules: c, Emit: live.emit, KernelACL: true, Bypass: true, ScoreEvents: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	var p *dataplane.Pair
	topo.FW.MustDo(t, func() error {
		var err error
		p, err = dataplane.OpenPair(dataplane.PairConfig{Inner: testnet.InnerIf, Outer: testnet.OuterIf, Workers: 1,
			PinDir: "/sys/fs/bpf/deepwall-detect-" + fmt.Sprint(os.Getpid()), StateDir: t.TempDir(), Inspector: e,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		return err
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run pair: %v", err)
		}
		if err := p.Detach(); err != nil {
			t.Errorf("detach pair: %v", err)
		}
	})
	ln := testnet.Listen(t, topo.Server, "tcp", netip.AddrPortFrom(testnet.ServerIP, 80))
	go testnet.Serve(ln, answerBackend)

	off, err := newOffline("deepwall-crs-pl1", set)
	if err != nil {
		t.Fatal(err)
	}
	defer off.Close()
	deadline := time.Now().Add(8 * time.Minute)
	ran := tests[:0:0]
	for i := range tests {
		if time.Now().After(deadline) {
			t.Logf("time bound reached after %d of %d tests", i, len(tests))
			break
		}
		ran = append(ran, tests[i])
	}
	liveRes := runSuite(live, ran, false)
	offRes := runSuite(off, ran, false)
	var b strings.Builder
	writeSuiteTable(&b, []*suiteResult{liveRes, offRes})
	t.Logf("live vs offline, %d tests:\n%s", len(ran), b.String())
	if liveRes.Total.Tests == 0 || liveRes.Total.Caught == 0 {
		t.Fatalf("the live path caught nothing: %+v", liveRes.Total)
	}
	// The live path must judge like the offline engine: the same rules,
	// the same bytes, reassembled from real segments instead of built ones.
	if d := offRes.Total.Passed - liveRes.Total.Passed; d > offRes.Total.Tests/50 {
		t.Errorf("live passed %d tests, offline %d", liveRes.Total.Passed, offRes.Total.Passed)
	}
	if out := os.Getenv("DETECT_LIVE_OUT"); out != "" {
		js, _ := json.MarshalIndent([]*suiteResult{liveRes, offRes}, "", "  ")
		if err := os.WriteFile(out, js, 0o644); err != nil {
			t.Error(err)
		}
	}
}
