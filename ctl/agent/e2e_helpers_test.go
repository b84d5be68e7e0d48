package agent_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/deepwall/deepwall/ctl/agent"
	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/ctl/eve"
	"github.com/deepwall/deepwall/ctl/internal/demo"
	"github.com/deepwall/deepwall/internal/agenttest"
	"github.com/deepwall/deepwall/internal/testnet"
	"github.com/deepwall/deepwall/rules"
)

// The end-to-end tests run the real deepwall binary as the agent in the
// fw namespace of a testnet topology, a Go HTTP server in the server
// namespace, and clients in the client namespace.

func TestMain(m *testing.M) {
	code := m.Run()
	agenttest.Cleanup()
	os.Exit(code)
}

// agentProc is one `deepwall run` in a topology's fw namespace or a
// host's namespace, with metrics on and two workers.
type agentProc struct {
	*agenttest.Agent
	topo        *testnet.Topology
	metricsAddr string
}

// startAgent runs the agent with files under dir and waits until its API
// answers.
func startAgent(tb testing.TB, topo *testnet.Topology, dir string, extra ...string) *agentProc {
	tb.Helper()
	a := newAgentProc(dir)
	a.topo = topo
	args := append([]string{"--inner", testnet.InnerIf, "--outer", testnet.OuterIf}, extra...)
	a.launch(tb, topo.FW, append(args, modeArgs(topo)...)...)
	return a
}

// newAgentProc is an agent keeping its files under dir.
func newAgentProc(dir string) *agentProc {
	return &agentProc{Agent: agenttest.New(dir), metricsAddr: "127.0.0.1:9464"}
}

var (
	seedOnce sync.Once
	seedData []byte
)

// seedCompiled puts the default pack's compiled databases into a new
// agent's state directory, compiled once per test binary: most e2e agents
// start with the default pack, and its compile (seconds) would otherwise
// be paid by each. The cache carries its rule set's key, so an agent
// started with other rules compiles them as it always does.
func seedCompiled(tb testing.TB, state string) {
	tb.Helper()
	seedOnce.Do(func() {
		set, err := rules.DefaultPack()
		if err != nil {
			tb.Fatalf("default pack: %v", err)
		}
		c, err := rules.Compile(set)
		if err != nil {
			tb.Fatalf("compile the default pack: %v", err)
		}
		defer c.Close()
		if seedData, err = c.MarshalBinary(); err != nil {
			tb.Fatalf("serialise the default pack: %v", err)
		}
	})
	file := filepath.Join(state, agent.CompiledCache)
	if _, err := os.Stat(file); err == nil {
		return // an agent restarted on its own state
	}
	if err := os.MkdirAll(state, 0o700); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(file, seedData, 0o600); err != nil {
		tb.Fatal(err)
	}
}

// launch starts `deepwall run` with the agent's files and extra in ns and
// waits until its API answers.
func (a *agentProc) launch(tb testing.TB, ns *testnet.NS, extra ...string) {
	tb.Helper()
	seedCompiled(tb, a.State)
	a.Start(tb, ns, append([]string{"--workers", "2", "--metrics", a.metricsAddr}, extra...)...)
}

// metrics scrapes the agent's Prometheus endpoint from ns, where it
// listens.
func (a *agentProc) metrics(tb testing.TB, ns *testnet.NS) string {
	tb.Helper()
	resp, err := testnet.HTTPClient(ns, false).Get("http://" + a.metricsAddr + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// metric returns the value of the series named exactly m (name and
// labels as the endpoint writes them) in metrics, and whether it is there.
func metric(metrics, m string) (string, bool) {
	i := strings.Index(metrics, m+" ")
	if i < 0 {
		return "", false
	}
	return strings.Fields(metrics[i+len(m):])[0], true
}

func (a *agentProc) stop(tb testing.TB) {
	tb.Helper()
	a.Stop(tb)
}

// cli runs a deepwall command against this agent.
func (a *agentProc) cli(tb testing.TB, args ...string) (int, string, string) {
	tb.Helper()
	return a.CLI(tb, args...)
}

func (a *agentProc) status(tb testing.TB) api.Status {
	tb.Helper()
	st, err := a.Client.Status(context.Background())
	if err != nil {
		tb.Fatalf("status: %v", err)
	}
	return st
}

// events reads every event of the verdict log and its rotated files.
func (a *agentProc) events(tb testing.TB) []eve.Event {
	tb.Helper()
	return readEveFiles(tb, a.Log)
}

func readEveFiles(tb testing.TB, path string) []eve.Event {
	tb.Helper()
	files, _ := filepath.Glob(path + ".*")
	files = append(files, path)
	var out []eve.Event
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			continue
		}
		for _, line := range bytes.Split(data, []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			var ev eve.Event
			if err := json.Unmarshal(line, &ev); err != nil {
				continue // a line being written
			}
			out = append(out, ev)
		}
	}
	return out
}

// waitEvents polls the log until ok says it holds what the test needs.
func (a *agentProc) waitEvents(tb testing.TB, what string, ok func([]eve.Event) bool) []eve.Event {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs := a.events(tb)
		if ok(evs) {
			return evs
		}
		if time.Now().After(deadline) {
			tb.Fatalf("verdict log never had %s (%d events)", what, len(evs))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// blockedIDs returns the signature ids of blocked alerts of the flow from
// client port port.
func blockedIDs(evs []eve.Event, port uint16) []uint32 {
	var ids []uint32
	for _, ev := range evs {
		if ev.Alert != nil && ev.Alert.Action == "blocked" && (ev.SrcPort == port || ev.DestPort == port) {
			ids = append(ids, ev.Alert.SignatureID)
		}
	}
	return ids
}

// testServer serves deterministic content in the server namespace:
// /bytes?n=N&seed=S (N pseudo-random bytes), /echo (the request body),
// /account (a page with a card number), anything else "ok <path>".
func testServer(tb testing.TB, topo *testnet.Topology) netip.AddrPort {
	tb.Helper()
	addr := netip.AddrPortFrom(testnet.ServerIP, 80)
	ln := testnet.Listen(tb, topo.Server, "tcp", addr)
	mux := http.NewServeMux()
	mux.HandleFunc("/bytes", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		seed, _ := strconv.ParseUint(r.URL.Query().Get("seed"), 10, 64)
		w.Header().Set("Content-Length", strconv.Itoa(n))
		_, _ = w.Write(pseudoBytes(n, seed))
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	})
	mux.HandleFunc("/account", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "<p>Card on file: %s</p>\n", demo.Card)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "ok %s", r.URL.Path)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return addr
}

// pseudoBytes is n bytes from seed; benign traffic must not contain
// attack patterns, so they are restricted to lower-case letters and
// digits... which could spell a card number: bytes are letters only.
func pseudoBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + r.IntN(26))
	}
	return b
}

// rawResult is what became of one raw HTTP request.
type rawResult struct {
	port   uint16 // the client's port
	status int
	body   []byte
	reset  bool // the connection was reset
	hang   bool // nothing came back in time
	err    error
}

// rawRequest sends req (a whole HTTP/1.1 request) on a new connection from
// the client namespace and reads the answer.
func rawRequest(tb testing.TB, topo *testnet.Topology, server netip.AddrPort, req string) rawResult {
	tb.Helper()
	// No tb.Fatal here: attackers run in goroutines of their own.
	var c net.Conn
	if err := topo.Client.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", server.String(), 5*time.Second)
		return err
	}); err != nil {
		return rawResult{err: err}
	}
	defer c.Close()
	res := rawResult{port: uint16(c.LocalAddr().(*net.TCPAddr).Port)}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	_, err := io.WriteString(c, req)
	if err == nil {
		var resp *http.Response
		resp, err = http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil {
			res.status = resp.StatusCode
			res.body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
	}
	var ne net.Error
	switch {
	case err == nil:
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE):
		res.reset = true
	case errors.As(err, &ne) && ne.Timeout():
		res.hang = true
	default:
		res.err = err
	}
	return res
}

func get(target string, headers ...string) string {
	return request("GET", target, "", headers...)
}

func post(target, body string, headers ...string) string {
	return request("POST", target, body, append(headers, "Content-Type: application/x-www-form-urlencoded")...)
}

func request(method, target, body string, headers ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: 198.18.0.2\r\nUser-Agent: deepwall-e2e/1.0\r\nAccept: */*\r\n", method, target)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	if body != "" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("Connection: close\r\n\r\n")
	b.WriteString(body)
	return b.String()
}

func sum(b []byte) [32]byte { return sha256.Sum256(b) }

// agentMode is one dataplane the end-to-end tests run the agent with:
// XDP on the plain topology, NFQUEUE on a bridged one (br_netfilter).
type agentMode struct {
	name string
	topo testnet.TopologyOptions
	args []string
}

var agentModes = []agentMode{
	{"xdp", testnet.TopologyOptions{}, []string{"--mode", "xdp"}},
	{"nfqueue", testnet.TopologyOptions{Bridge: true}, []string{"--mode", "nfqueue"}},
}

// forModes runs fn once per dataplane mode.
func forModes(t *testing.T, fn func(*testing.T, agentMode)) {
	for _, m := range agentModes {
		t.Run(m.name, func(t *testing.T) { fn(t, m) })
	}
}

// topoModes remembers the mode each topology was built for, so that
// startAgent passes its --mode.
var topoModes sync.Map // *testnet.Topology → []string

func (m agentMode) topology(tb testing.TB) *testnet.Topology {
	tb.Helper()
	topo := testnet.NewTopology(tb, m.topo)
	topoModes.Store(topo, m.args)
	tb.Cleanup(func() { topoModes.Delete(topo) })
	return topo
}

func modeArgs(topo *testnet.Topology) []string {
	if v, ok := topoModes.Load(topo); ok {
		return v.([]string)
	}
	return nil
}

// rules is iptables-save and ip6tables-save of the fw namespace without
// counters and comment lines ("" in XDP mode, which adds none).
func (m agentMode) rules(tb testing.TB, topo *testnet.Topology) string {
	tb.Helper()
	return testnet.RulesSnapshot(tb, topo.FW)
}

// waitCardAlert waits for the default pack's card-number alert (5001) on
// the flow from client port port: allowed, its match masked.
func (a *agentProc) waitCardAlert(tb testing.TB, port uint16) {
	tb.Helper()
	a.waitEvents(tb, "the card number alert", func(evs []eve.Event) bool {
		for _, ev := range evs {
			if ev.Alert != nil && ev.Alert.SignatureID == 5001 && ev.DestPort == port && ev.Alert.Action == "allowed" &&
				!strings.Contains(ev.Alert.Matched, demo.Card) {
				return true
			}
		}
		return false
	})
}

// udpExchange sends msg from ns to server and waits up to 2s for one
// datagram back.
func udpExchange(ns *testnet.NS, server netip.AddrPort, msg []byte) ([]byte, error) {
	var c net.Conn
	if err := ns.Do(func() error {
		var err error
		c, err = net.Dial("udp", server.String())
		return err
	}); err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(msg); err != nil {
		return nil, err
	}
	buf := make([]byte, 65536)
	n, err := c.Read(buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}
