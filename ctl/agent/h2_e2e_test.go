package agent_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"

	"github.com/deepwall/deepwall/ctl/eve"
	"github.com/deepwall/deepwall/internal/testnet"
)

// TestPrivilegedAgentHTTP2: through the live inline path, with the
// default pack, nghttpd serving HTTP/2 cleartext on a plain port in the
// server namespace: curl with prior knowledge and nghttp fetch a page
// byte-exact, and `?id=1 UNION SELECT password FROM users` over HTTP/2 is
// blocked (the stream reset, a blocking alert with the stream id,
// app_proto http2).
func TestPrivilegedAgentHTTP2(t *testing.T) { forModes(t, testAgentHTTP2) }

func testAgentHTTP2(t *testing.T, m agentMode) {
	testnet.RequireTools(t, "apt-get install nghttp2-server nghttp2-client curl", "nghttpd", "nghttp", "curl")
	topo := m.topology(t)
	root := t.TempDir()
	page := bytes.Repeat([]byte("<p>hello over h2</p>\n"), 2000) // 42 KB: several DATA frames and segments
	other := bytes.Repeat([]byte("b"), 30000)                    // no 'b' in page: the two bodies can be told apart interleaved
	for name, b := range map[string][]byte{"index.html": page, "b.txt": other} {
		if err := os.WriteFile(filepath.Join(root, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const port = 8080
	topo.Server.Start(t, exec.Command("nghttpd", "--no-tls", "-a", testnet.ServerIP.String(), "-d", root, strconv.Itoa(port)))
	base := "http://" + net.JoinHostPort(testnet.ServerIP.String(), strconv.Itoa(port))
	waitListening(t, topo, port)
	a := startAgent(t, topo, t.TempDir())
	t.Cleanup(func() { a.stop(t) })

	run := func(name string, args ...string) ([]byte, error) {
		return topo.Client.Run(exec.Command(name, args...))
	}
	t.Run("benign curl", func(t *testing.T) {
		out, err := run("curl", "-sS", "--max-time", "10", "--http2-prior-knowledge", base+"/index.html?id=42")
		if err != nil || !bytes.Equal(out, page) {
			t.Fatalf("curl: %v, %d bytes (want %d byte-exact)", err, len(out), len(page))
		}
	})
	t.Run("benign nghttp", func(t *testing.T) {
		// Two concurrent streams: nghttp writes their DATA as it comes.
		out, err := run("nghttp", "-t", "10", base+"/index.html", base+"/b.txt?x=1")
		if n := bytes.Count(out, []byte("b")); err != nil || n != len(other) || !bytes.Equal(bytes.ReplaceAll(out, []byte("b"), nil), page) {
			t.Fatalf("nghttp: %v, %d bytes, %d of b.txt (want both bodies byte-exact)", err, len(out), n)
		}
	})
	t.Run("attack", func(t *testing.T) {
		out, err := run("curl", "-sS", "--max-time", "10", "--http2-prior-knowledge", "--local-port", "41234",
			base+"/index.html?id=1%20UNION%20SELECT%20password%20FROM%20users")
		if err == nil || bytes.Contains(out, []byte("hello over h2")) {
			t.Fatalf("the attack was served: %v, %q", err, out[:min(len(out), 80)])
		}
		evs := a.waitEvents(t, "a blocking alert for the HTTP/2 attack", func(evs []eve.Event) bool {
			return len(blockedIDs(evs, 41234)) > 0
		})
		for _, ev := range evs {
			if ev.Alert == nil || ev.SrcPort != 41234 || ev.Alert.Action != "blocked" {
				continue
			}
			if ev.AppProto != "http2" || ev.HTTP == nil || ev.HTTP.StreamID == 0 || !strings.Contains(ev.HTTP.URL, "UNION") {
				t.Errorf("alert: app_proto %q, http %+v", ev.AppProto, ev.HTTP)
			}
		}
	})
}

// TestPrivilegedAgentH2CUpgrade: through the live inline path, with the
// default pack, a Go h2c server (golang.org/x/net/http2/h2c): curl's
// Upgrade: h2c request and a second request on the upgraded connection
// are served byte-exact; an attack in the second request (HTTP/2 stream 3
// of the upgraded connection) is blocked, the alert saying http2 and the
// stream.
func TestPrivilegedAgentH2CUpgrade(t *testing.T) { forModes(t, testAgentH2CUpgrade) }

func testAgentH2CUpgrade(t *testing.T, m agentMode) {
	testnet.RequireTools(t, "apt-get install curl", "curl")
	topo := m.topology(t)
	page := bytes.Repeat([]byte("upgraded\n"), 3000)
	var mu sync.Mutex
	var served []string
	ln := testnet.Listen(t, topo.Server, "tcp", netip.AddrPortFrom(testnet.ServerIP, 80))
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: h2c.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		served = append(served, r.Proto+" "+r.RequestURI)
		mu.Unlock()
		_, _ = w.Write(page)
	}), &http2.Server{})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	a := startAgent(t, topo, t.TempDir())
	t.Cleanup(func() { a.stop(t) })
	base := "http://" + testnet.ServerIP.String()

	out, err := topo.Client.Run(exec.Command("curl", "-sS", "--max-time", "10", "--http2", base+"/a", base+"/b?id=42"))
	if err != nil || !bytes.Equal(out, append(append([]byte(nil), page...), page...)) {
		t.Fatalf("benign upgrade: %v, %d bytes (want %d byte-exact)", err, len(out), 2*len(page))
	}
	out, err = topo.Client.Run(exec.Command("curl", "-sS", "--max-time", "10", "--http2", "--local-port", "41235",
		base+"/c", base+"/d?id=1%20UNION%20SELECT%20password%20FROM%20users"))
	if err == nil {
		t.Fatalf("the attack after the upgrade was served: %d bytes", len(out))
	}
	// The attack is blocked as HTTP/2 stream 3 of the upgraded
	// connection (its stream reset; had the connection been reset, curl
	// would retry on a new connection with a new upgrade, blocked as
	// HTTP/1).
	a.waitEvents(t, "a blocking alert for stream 3 of the upgraded connection", func(evs []eve.Event) bool {
		for _, ev := range evs {
			if ev.Alert != nil && ev.SrcPort == 41235 && ev.Alert.Action == "blocked" &&
				ev.AppProto == "http2" && ev.HTTP != nil && ev.HTTP.StreamID == 3 && strings.Contains(ev.HTTP.URL, "UNION") {
				return true
			}
		}
		return false
	})
	mu.Lock()
	defer mu.Unlock()
	// The upgrade request is served as HTTP/1.1 by h2c, the next ones as
	// HTTP/2; /d never arrives.
	want := []string{"HTTP/1.1 /a", "HTTP/2.0 /b?id=42", "HTTP/1.1 /c"}
	if strings.Join(served, ",") != strings.Join(want, ",") {
		t.Errorf("the server served %q, want %q", served, want)
	}
}

// TestPrivilegedAgentGRPC: through the live inline path, with the default
// pack, a grpc-go client and server (dpi/proto/http2/testdata/grpcpeer,
// built here from the Go module proxy or cache): benign calls (plain,
// gzip-compressed, one failing with a status) complete; a SQL injection
// in a message string is blocked (942105, app_proto grpc).
func TestPrivilegedAgentGRPC(t *testing.T) { forModes(t, testAgentGRPC) }

func testAgentGRPC(t *testing.T, m agentMode) {
	topo := m.topology(t)
	peer := filepath.Join(t.TempDir(), "grpcpeer")
	build := exec.Command("go", "build", "-o", peer, ".")
	build.Dir = "../../dpi/proto/http2/testdata/grpcpeer"
	build.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build grpcpeer (needs google.golang.org/grpc from the module proxy): %v\n%s", err, out)
	}
	addr := net.JoinHostPort(testnet.ServerIP.String(), "8082")
	topo.Server.Start(t, exec.Command(peer, "-serve", addr))
	waitListening(t, topo, 8082)
	a := startAgent(t, topo, t.TempDir())
	t.Cleanup(func() { a.stop(t) })

	if out, err := topo.Client.Run(exec.Command(peer, "-call", addr, "-note", "leave at the door")); err != nil {
		t.Fatalf("benign calls: %v\n%s", err, out)
	}
	if out, err := topo.Client.Run(exec.Command(peer, "-call", addr)); err == nil {
		t.Fatalf("the injection was served:\n%s", out)
	}
	a.waitEvents(t, "a blocking alert on a gRPC string", func(evs []eve.Event) bool {
		for _, ev := range evs {
			if ev.Alert != nil && ev.Alert.Action == "blocked" && ev.Alert.SignatureID == 942105 && ev.AppProto == "grpc" &&
				ev.HTTP != nil && ev.HTTP.URL == "/orders.v1.Orders/Create" {
				return true
			}
		}
		return false
	})
}

// waitListening waits until something listens on port in the server
// namespace.
func waitListening(tb testing.TB, topo *testnet.Topology, port int) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		out, _ := topo.Server.Run(exec.Command("ss", "-Hltn", "sport = :"+strconv.Itoa(port)))
		if len(bytes.TrimSpace(out)) > 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.Fatalf("nothing listens on port %d in the server namespace", port)
}

// TestPrivilegedAgentH2Load measures h2load (10 connections × 10
// concurrent streams, small page) through deepwall with the default pack
// in each mode and through the plain bridge (no deepwall): requests per
// second, and the ratio. A figure, logged (go test -v), not a bound.
func TestPrivilegedAgentH2Load(t *testing.T) {
	testnet.RequireTools(t, "apt-get install nghttp2-client", "h2load")
	if testing.Short() {
		t.Skip("a measurement")
	}
	load := func(t *testing.T, topo *testnet.Topology) float64 {
		root := t.TempDir()
		if err := os.WriteFile(filepath.Join(root, "index.html"), bytes.Repeat([]byte("h2load page\n"), 100), 0o644); err != nil {
			t.Fatal(err)
		}
		topo.Server.Start(t, exec.Command("nghttpd", "--no-tls", "-a", testnet.ServerIP.String(), "-d", root, "8080"))
		waitListening(t, topo, 8080)
		out, err := topo.Client.Run(exec.Command("h2load", "-n", "100000", "-c", "10", "-m", "10",
			"http://"+testnet.ServerIP.String()+":8080/index.html"))
		if err != nil || !bytes.Contains(out, []byte("100000 succeeded")) {
			t.Fatalf("h2load: %v\n%s", err, out)
		}
		// "finished in 1.23s, 16260.16 req/s, 4.56MB/s"
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) >= 5 && f[0] == "finished" && f[4] == "req/s," {
				v, _ := strconv.ParseFloat(f[3], 64)
				return v
			}
		}
		t.Fatalf("no req/s in h2load's output:\n%s", out)
		return 0
	}
	var bridge float64
	t.Run("bridge", func(t *testing.T) {
		topo := testnet.NewTopology(t, testnet.TopologyOptions{Bridge: true})
		bridge = load(t, topo)
		t.Logf("bridge: %.0f req/s", bridge)
	})
	for _, m := range agentModes {
		t.Run(m.name, func(t *testing.T) {
			topo := m.topology(t)
			a := startAgent(t, topo, t.TempDir())
			t.Cleanup(func() { a.stop(t) })
			v := load(t, topo)
			t.Logf("deepwall %s: %.0f req/s (%.2f of the bridge)", m.name, v, v/bridge)
		})
	}
}

// TestPrivilegedAgentHTTP2StreamBlock: through the live inline path, with
// the default pack and the default per-stream policy, nghttpd serving
// HTTP/2 cleartext: on one connection of Go's HTTP/2 client
// (golang.org/x/net/http2), an 8 MiB download in flight (past the
// client's 4 MiB stream window the server waits for it to read) survives
// an attack in a second stream's query; that stream and one whose JSON
// body attacks end in a stream error (RST_STREAM PROTOCOL_ERROR from
// nghttpd, which got the rewritten frames), the download completes
// byte-exact, and the alerts name the blocked streams. nghttp's two concurrent streams on one
// connection: the attack's gets RST_STREAM, the other its page, no
// GOAWAY.
func TestPrivilegedAgentHTTP2StreamBlock(t *testing.T) { forModes(t, testAgentHTTP2StreamBlock) }

func testAgentHTTP2StreamBlock(t *testing.T, m agentMode) {
	testnet.RequireTools(t, "apt-get install nghttp2-server nghttp2-client", "nghttpd", "nghttp")
	topo := m.topology(t)
	root := t.TempDir()
	big := make([]byte, 8<<20)
	for i := range big {
		big[i] = byte(i*7 + i>>10)
	}
	page := bytes.Repeat([]byte("<p>hello over h2</p>\n"), 100)
	for name, b := range map[string][]byte{"big.bin": big, "index.html": page} {
		if err := os.WriteFile(filepath.Join(root, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const port = 8080
	topo.Server.Start(t, exec.Command("nghttpd", "--no-tls", "-a", testnet.ServerIP.String(), "-d", root, strconv.Itoa(port)))
	waitListening(t, topo, port)
	a := startAgent(t, topo, t.TempDir())
	t.Cleanup(func() { a.stop(t) })
	server := netip.AddrPortFrom(testnet.ServerIP, port)
	base := "http://" + server.String()
	const attack = "/index.html?id=1%20UNION%20SELECT%20password%20FROM%20users"

	t.Run("go client", func(t *testing.T) {
		defer func() {
			if t.Failed() {
				for _, ev := range a.events(t) {
					b, _ := json.Marshal(ev)
					t.Logf("%s", b)
				}
			}
		}()
		var dials atomic.Int32
		var ports []uint16
		var mu sync.Mutex
		// x/net's Transport: net/http's retries a request its server reset
		// with PROTOCOL_ERROR (golang/go#47635), six times with backoff.
		tr := &http2.Transport{AllowHTTP: true,
			DialTLSContext: func(context.Context, string, string, *tls.Config) (net.Conn, error) {
				dials.Add(1)
				c := testnet.Dial(t, topo.Client, "tcp", server)
				mu.Lock()
				ports = append(ports, uint16(c.LocalAddr().(*net.TCPAddr).Port))
				mu.Unlock()
				return c, nil
			}}
		t.Cleanup(tr.CloseIdleConnections)
		cl := &http.Client{Transport: tr, Timeout: 20 * time.Second}
		resp, err := cl.Get(base + "/big.bin")
		if err != nil {
			t.Fatalf("download: %v", err)
		}
		defer resp.Body.Close()
		got := make([]byte, 100<<10)
		if _, err := io.ReadFull(resp.Body, got); err != nil {
			t.Fatalf("download start: %v", err)
		}
		// The download is in flight: the server waits for window.
		served := func(r *http.Response, err error) error {
			if err != nil {
				return err
			}
			defer r.Body.Close()
			_, err = io.ReadAll(r.Body)
			if err == nil {
				return fmt.Errorf("served: %s", r.Status)
			}
			return err
		}
		for name, do := range map[string]func() (*http.Response, error){
			"query": func() (*http.Response, error) { return cl.Get(base + attack) },
			"body": func() (*http.Response, error) {
				return cl.Post(base+"/index.html", "application/json", strings.NewReader(`{"id": "1' UNION SELECT password FROM users--", "note": "leave at the door"}`))
			},
		} {
			err := served(do())
			if err == nil || !strings.Contains(err.Error(), "stream error") || !strings.Contains(err.Error(), "PROTOCOL_ERROR") {
				t.Errorf("%s attack: %v, want a stream error PROTOCOL_ERROR", name, err)
			}
		}
		rest, err := io.ReadAll(resp.Body)
		if err != nil || !bytes.Equal(append(got, rest...), big) {
			t.Fatalf("download: %v, %d bytes (want %d byte-exact)", err, len(got)+len(rest), len(big))
		}
		// Go's client takes no new request on a connection whose server
		// reset a stream with PROTOCOL_ERROR (it keeps it for the
		// streams in flight): the body attack goes on a second one.
		if n := dials.Load(); n > 2 {
			t.Errorf("%d connections dialed, want at most 2", n)
		}
		mu.Lock()
		defer mu.Unlock()
		evs := a.waitEvents(t, "blocking alerts for both attack streams", func(evs []eve.Event) bool {
			return len(blockedStreams(evs, ports[0])) > 0 && len(blockedStreams(evs, ports[len(ports)-1])) > 0 &&
				(len(ports) == 2 || len(blockedStreams(evs, ports[0])) == 2)
		})
		if ids := blockedStreams(evs, ports[0]); slices.Contains(ids, 1) {
			t.Errorf("blocked streams %v of the download's connection include the download's", ids)
		}
	})

	t.Run("nghttp", func(t *testing.T) {
		out, _ := topo.Client.Run(exec.Command("nghttp", "-v", "-t", "10", base+"/index.html", base+attack))
		s := string(out)
		if strings.Count(s, "recv RST_STREAM frame") != 1 || !strings.Contains(s, "error_code=PROTOCOL_ERROR") ||
			strings.Count(s, ":status: 200") != 1 || strings.Contains(s, "recv GOAWAY") || !strings.Contains(s, string(page[:200])) {
			t.Fatalf("nghttp, want one stream served and one reset on one connection:\n%s", s)
		}
	})

	// The streams blocked alone are counted: the Go client's two and
	// nghttp's one.
	var resets float64
	for deadline := time.Now().Add(5 * time.Second); resets < 3 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		v, _ := metric(a.metrics(t, topo.FW), `deepwall_http2_streams_total{kind="reset"}`)
		resets, _ = strconv.ParseFloat(v, 64)
	}
	if resets < 3 {
		t.Errorf("deepwall_http2_streams_total{kind=\"reset\"} %v, want ≥ 3", resets)
	}
}

// blockedStreams is the HTTP/2 streams of the connection from client
// port that blocking alerts name, each once.
func blockedStreams(evs []eve.Event, port uint16) []uint32 {
	var ids []uint32
	for _, ev := range evs {
		if ev.Alert != nil && ev.Alert.Action == "blocked" && ev.SrcPort == port && ev.AppProto == "http2" &&
			ev.HTTP != nil && !slices.Contains(ids, ev.HTTP.StreamID) {
			ids = append(ids, ev.HTTP.StreamID)
		}
	}
	return ids
}
