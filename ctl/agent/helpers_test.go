package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/ctl/audit"
	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dpi"
	"github.com/deepwall/deepwall/rules"
	"github.com/deepwall/deepwall/rules/store"
	"github.com/deepwall/deepwall/xdp"
)

// fakeEngine records what the agent gives it. Like dpi.Engine it owns the
// compiled sets it gets and closes the one it replaces, so a rollback
// that reused a replaced set would be caught.
type fakeEngine struct {
	mu     sync.Mutex
	cur    *rules.Compiled
	sets   int
	setErr error
	flows  []dpi.FlowInfo
	stats  dpi.Stats
	ended  []xdp.FlowKey
}

func (f *fakeEngine) Inspect(int, *dataplane.Frame) dataplane.Verdict { return dataplane.Verdict{} }

func (f *fakeEngine) SetRules(c *rules.Compiled) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.setErr != nil {
		return f.setErr
	}
	if f.cur != nil && f.cur != c {
		f.cur.Close()
	}
	f.cur = c
	f.sets++
	return nil
}

func (f *fakeEngine) current() *rules.Compiled {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cur
}

func (f *fakeEngine) FlowEnded(k xdp.FlowKey, _, _ [2]uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ended = append(f.ended, k)
	return true
}
func (f *fakeEngine) Tick(int64) {}
func (f *fakeEngine) Flows(fn func(dpi.FlowInfo) bool) {
	for _, fl := range f.flows {
		if !fn(fl) {
			return
		}
	}
}
func (f *fakeEngine) Stats() dpi.Stats { return f.stats }
func (f *fakeEngine) Close() error     { return nil }

// fakeKernel is the flow map and ACL of a pair.
type fakeKernel struct {
	mu     sync.Mutex
	acl    xdp.ACL
	acls   int
	aclErr error
	flows  map[xdp.FlowKey]xdp.FlowValue
}

func newFakeKernel() *fakeKernel { return &fakeKernel{flows: map[xdp.FlowKey]xdp.FlowValue{}} }

func (k *fakeKernel) SetACL(a xdp.ACL) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.aclErr != nil {
		return k.aclErr
	}
	k.acl = a
	k.acls++
	return nil
}

func (k *fakeKernel) Flows(fn func(xdp.FlowKey, xdp.FlowValue) bool) error {
	k.mu.Lock()
	all := make(map[xdp.FlowKey]xdp.FlowValue, len(k.flows))
	for kk, v := range k.flows {
		all[kk] = v
	}
	k.mu.Unlock()
	for kk, v := range all {
		if !fn(kk, v) {
			break
		}
	}
	return nil
}

func (k *fakeKernel) SetFlow(key xdp.FlowKey, v xdp.Verdict, rule uint32) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	fv := k.flows[key]
	fv.Verdict, fv.RuleID = v, rule
	k.flows[key] = fv
	return nil
}

func (k *fakeKernel) verdict(key xdp.FlowKey) xdp.Verdict {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.flows[key].Verdict
}

// testRules is a small rule set that compiles fast.
const testRules = `rules:
  - {id: 10, name: deny telnet, action: block, proto: tcp, dst_port: 23}
  - id: 100
    name: secret path
    action: block
    category: test
    match: {field: http.uri, regex: 'secret'}
  - id: 200
    name: curious user agent
    action: alert
    match: {field: http.header.user-agent, regex: 'curious'}
`

func writeFile(tb testing.TB, dir, name, data string) string {
	tb.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		tb.Fatal(err)
	}
	return p
}

// testManager is a ruleManager over a real store and audit log, a fake
// engine and a fake kernel.
type testManager struct {
	*ruleManager
	dir    string
	eng    *fakeEngine
	kern   *fakeKernel
	audit  string
	logBuf *bytes.Buffer
}

func newTestManager(tb testing.TB, initial string) *testManager {
	tb.Helper()
	dir := tb.TempDir()
	store, err := store.Open(filepath.Join(dir, "state"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	auditPath := filepath.Join(dir, "audit.json")
	al, err := audit.Open(auditPath)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { al.Close() })
	var logBuf bytes.Buffer
	tm := &testManager{dir: dir, eng: &fakeEngine{}, kern: newFakeKernel(), audit: auditPath, logBuf: &logBuf}
	tm.ruleManager = newRuleManager(store, al, filepath.Join(dir, "state"), slog.New(slog.NewTextHandler(&syncWriter{w: &logBuf}, nil)))
	tm.engine, tm.settle = tm.eng, 0
	file := ""
	if initial != "" {
		file = writeFile(tb, dir, "initial.yaml", initial)
	}
	st, err := tm.loadInitial(file, caller{UID: 0, PID: 1})
	if err != nil {
		tb.Fatal(err)
	}
	if err := tm.eng.SetRules(st.compiled); err != nil {
		tb.Fatal(err)
	}
	if _, err := tm.attachKernel(tm.kern); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if c := tm.eng.current(); c != nil {
			c.Close()
		}
	})
	return tm
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// fakeView is a fixed agent for the read-only endpoints.
type fakeView struct {
	status api.Status
	flows  api.FlowList
	filter api.FlowFilter
}

func (v *fakeView) Status() api.Status { return v.status }
func (v *fakeView) Flows(f api.FlowFilter) (api.FlowList, error) {
	v.filter = f
	return v.flows, nil
}

// apiHarness serves an apiServer on a unix socket with credentials the
// test chooses.
type apiHarness struct {
	*testManager
	srv    *apiServer
	sock   string
	caller atomic.Pointer[caller]
	view   *fakeView
}

func newAPIHarness(tb testing.TB, initial string, auth authorizer) *apiHarness {
	tb.Helper()
	h := &apiHarness{testManager: newTestManager(tb, initial), view: &fakeView{}}
	h.sock = filepath.Join(h.dir, "api.sock")
	h.srv = newAPIServer(h.ruleManager, h.view, auth, nil, h.log)
	h.srv.peer = func(net.Conn) (caller, error) {
		c := h.caller.Load()
		if c == nil {
			return caller{}, errors.New("no caller set")
		}
		return *c, nil
	}
	h.as(caller{UID: 0, GID: 0, PID: 4242})
	ln, err := listenUnix(h.sock, -1)
	if err != nil {
		tb.Fatal(err)
	}
	go h.srv.Serve(ln)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.srv.Shutdown(ctx)
	})
	return h
}

func (h *apiHarness) as(c caller) { h.caller.Store(&c) }

// call makes one API call on a fresh connection (credentials are read
// per connection) and returns the status and body.
func (h *apiHarness) call(tb testing.TB, method, path string, body any) (int, []byte) {
	tb.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			tb.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, "http://deepwall"+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if s, ok := body.(string); ok && s != "" {
		req.Header.Set("Content-Type", "application/yaml")
	}
	c := api.NewClient(h.sock)
	c.HTTP().Transport.(*http.Transport).DisableKeepAlives = true
	resp, err := c.HTTP().Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, data
}

// readAudit returns the audit log's entries of changes and refused
// changes; the authorisation decisions of op access are left out
// (readAccess returns them).
func readAudit(tb testing.TB, path string) []audit.Entry {
	tb.Helper()
	var out []audit.Entry
	for _, e := range readAuditAll(tb, path) {
		if e.Op != audit.OpAccess {
			out = append(out, e)
		}
	}
	return out
}

// readAccess returns the authorisation decisions of the audit log.
func readAccess(tb testing.TB, path string) []audit.Entry {
	tb.Helper()
	var out []audit.Entry
	for _, e := range readAuditAll(tb, path) {
		if e.Op == audit.OpAccess {
			out = append(out, e)
		}
	}
	return out
}

// readAuditAll returns every entry of the audit log.
func readAuditAll(tb testing.TB, path string) []audit.Entry {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	var out []audit.Entry
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var e audit.Entry
		if err := json.Unmarshal(line, &e); err != nil {
			tb.Fatalf("audit line %q: %v", line, err)
		}
		out = append(out, e)
	}
	return out
}

func mustJSON[T any](tb testing.TB, data []byte) T {
	tb.Helper()
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		tb.Fatalf("decode %s: %v", data, err)
	}
	return v
}
