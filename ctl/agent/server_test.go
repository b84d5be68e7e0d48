package agent

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/ctl/audit"
	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dpi"
	"github.com/deepwall/deepwall/xdp"
)

const (
	adminGID  = 5001
	viewerGID = 5002
)

func TestAPIAuthorization(t *testing.T) {
	h := newAPIHarness(t, testRules, authorizer{AdminGIDs: []int{adminGID}, ViewerGIDs: []int{viewerGID}})
	add := api.RulesRequest{Main: "new.yaml", Files: map[string]string{"new.yaml": "rules:\n  - {id: 300, action: block, match: {field: http.uri, regex: 'x300'}}\n"}}
	nobody := os.Getuid() + 10000 // never the agent's own uid
	tests := []struct {
		name       string
		who        caller
		readCode   int
		changeCode int
	}{
		{"root", caller{UID: 0, GID: 0}, 200, 200},
		{"admin by primary group", caller{UID: nobody, GID: adminGID}, 200, 200},
		{"admin by supplementary group", caller{UID: nobody, GID: 100, Groups: []int{7, adminGID}}, 200, 200},
		{"viewer", caller{UID: nobody, GID: 100, Groups: []int{viewerGID}}, 200, 403},
		{"viewer by primary group", caller{UID: nobody, GID: viewerGID}, 200, 403},
		{"stranger", caller{UID: nobody, GID: 100, Groups: []int{101}}, 403, 403},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.who.PID = 1000 + i
			h.as(tc.who)
			for _, path := range []string{"/v1/status", "/v1/rules", "/v1/flows", "/v1/rules/100", "/v1/rules/export", "/v1/rules/history"} {
				if code, body := h.call(t, "GET", path, nil); code != tc.readCode {
					t.Errorf("GET %s: %d %s, want %d", path, code, body, tc.readCode)
				}
			}
			// Each allowed change is undone so that the next case starts
			// from the same set.
			code, body := h.call(t, "POST", "/v1/rules", add)
			if code != tc.changeCode {
				t.Fatalf("POST /v1/rules: %d %s, want %d", code, body, tc.changeCode)
			}
			if code == 403 {
				e := mustJSON[api.ErrorBody](t, body)
				if !strings.Contains(e.Error, "forbidden") || !strings.Contains(e.Error, "admin group") {
					t.Errorf("forbidden body %q", e.Error)
				}
				last := readAudit(t, h.audit)
				if l := last[len(last)-1]; l.OK || l.UID != tc.who.UID || l.PID != tc.who.PID || l.Op != "add" || l.Error == "" {
					t.Errorf("refused change audited as %+v", l)
				}
				return
			}
			if code, body := h.call(t, "DELETE", "/v1/rules/300", nil); code != 200 {
				t.Fatalf("DELETE: %d %s", code, body)
			}
		})
	}
}

func TestAPIVersionsAndAudit(t *testing.T) {
	h := newAPIHarness(t, testRules, authorizer{})
	h.as(caller{UID: 0, GID: 0, PID: 77})
	version := func() uint64 {
		code, body := h.call(t, "GET", "/v1/rules", nil)
		if code != 200 {
			t.Fatalf("GET /v1/rules: %d %s", code, body)
		}
		return mustJSON[api.RuleList](t, body).RuleSet.Version
	}
	if v := version(); v != 1 {
		t.Fatalf("initial version %d, want 1", v)
	}
	add := api.RulesRequest{Main: "a/add.yaml", Comment: "ticket 7", Files: map[string]string{
		"a/add.yaml":  "include: inc.yaml\nrules:\n  - {id: 301, action: block, match: {field: http.uri, regex: 'x301'}}\n",
		"a/inc.yaml":  "rules:\n  - {id: 302, action: alert, match: {field: http.uri, regex: 'x302'}}\n",
		"unused.yaml": "not even yaml: [",
	}}
	code, body := h.call(t, "POST", "/v1/rules", add)
	if code != 200 {
		t.Fatalf("add: %d %s", code, body)
	}
	res := mustJSON[api.ChangeResult](t, body)
	if !res.Changed || res.FromVersion != 1 || res.ToVersion != 2 || res.Rules != 5 || len(res.IDs) != 2 {
		t.Errorf("add result %+v", res)
	}
	if got := h.eng.current().Set.Rule(302); got == nil {
		t.Errorf("engine does not run the added rules")
	}

	// The same set again is not a change.
	code, body = h.call(t, "PUT", "/v1/rules", exportRequest(t, h))
	if res := mustJSON[api.ChangeResult](t, body); code != 200 || res.Changed || res.ToVersion != 2 {
		t.Errorf("re-apply: %d %+v", code, res)
	}

	// Adding an id that exists changes nothing and says where.
	code, body = h.call(t, "POST", "/v1/rules", api.RulesRequest{Main: "dup.yaml", Files: map[string]string{
		"dup.yaml": "rules:\n  - {id: 100, action: block, match: {field: http.uri, regex: 'y'}}\n"}})
	if code != http.StatusUnprocessableEntity {
		t.Fatalf("duplicate add: %d %s", code, body)
	}
	e := mustJSON[api.ErrorBody](t, body)
	if len(e.Details) != 1 || e.Details[0].File != "dup.yaml" || e.Details[0].Line != 2 || e.Details[0].Rule != 100 ||
		!strings.Contains(e.Details[0].Message, "duplicate id 100") {
		t.Errorf("duplicate add error %+v", e)
	}

	code, body = h.call(t, "DELETE", "/v1/rules/301", nil)
	if res := mustJSON[api.ChangeResult](t, body); code != 200 || res.ToVersion != 3 || res.Rules != 4 {
		t.Errorf("delete: %d %s", code, body)
	}
	if code, body = h.call(t, "DELETE", "/v1/rules/301", nil); code != 404 || !strings.Contains(string(body), "no such rule") {
		t.Errorf("delete again: %d %s", code, body)
	}
	if code, body = h.call(t, "DELETE", "/v1/rules/abc", nil); code != 400 {
		t.Errorf("delete abc: %d %s", code, body)
	}
	// A plain YAML body works for apply.
	code, body = h.call(t, "PUT", "/v1/rules", "rules:\n  - {id: 1, action: block, proto: tcp, dst_port: 25}\n")
	if res := mustJSON[api.ChangeResult](t, body); code != 200 || res.ToVersion != 4 || res.Rules != 1 {
		t.Errorf("apply yaml: %d %s", code, body)
	}
	if v := version(); v != 4 {
		t.Errorf("version %d, want 4", v)
	}
	code, body = h.call(t, "GET", "/v1/rules/history", nil)
	hist := mustJSON[[]api.VersionInfo](t, body)
	if code != 200 || len(hist) != 4 || !hist[0].Current || hist[0].Version != 4 || hist[2].Comment != "ticket 7" {
		t.Errorf("history %d %+v", code, hist)
	}

	// The audit log: initial load, add, unchanged apply, refused add,
	// delete, refused delete x2 (404, 400 never reaches the manager), apply.
	entries := readAudit(t, h.audit)
	type brief struct {
		op       string
		from, to uint64
		ok       bool
	}
	var got []brief
	for _, e := range entries {
		got = append(got, brief{e.Op, e.FromVersion, e.ToVersion, e.OK})
	}
	want := []brief{{"start --rules", 0, 1, true}, {"add", 1, 2, true}, {"apply", 2, 2, true}, {"add", 2, 2, false},
		{"delete", 2, 3, true}, {"delete", 3, 3, false}, {"apply", 3, 4, true}}
	if len(got) != len(want) {
		t.Fatalf("audit entries %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("audit entry %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if e := entries[1]; e.PID != 77 || e.UID != 0 || !strings.Contains(e.Detail, "ticket 7") || e.RulesHash == "" {
		t.Errorf("add entry %+v", e)
	}
	head, _ := os.ReadFile(filepath.Join(h.dir, "state", audit.HeadFile))
	res2, err := audit.Verify(h.audit, strings.TrimSpace(string(head)))
	if err != nil || res2.Broken != nil || res2.Entries != len(readAuditAll(t, h.audit)) {
		t.Errorf("verify: %+v %v", res2, err)
	}
}

func exportRequest(tb testing.TB, h *apiHarness) api.RulesRequest {
	code, body := h.call(tb, "GET", "/v1/rules/export", nil)
	if code != 200 {
		tb.Fatalf("export: %d %s", code, body)
	}
	return api.RulesRequest{Main: "export.yaml", Files: map[string]string{"export.yaml": string(body)}}
}

func TestAPIApplyInvalidChangesNothing(t *testing.T) {
	h := newAPIHarness(t, testRules, authorizer{})
	before := h.eng.current()
	sets, acls := h.eng.sets, h.kern.acls
	bad := api.RulesRequest{Main: "bad.yaml", Files: map[string]string{"bad.yaml": `rules:
  - {id: 1, action: block, proto: tcp, dst_port: 22}
  - id: 2
    action: block
    match: {field: http.args, regex: 'union(select'}
  - {id: 3, action: blok}
`}}
	code, body := h.call(t, "PUT", "/v1/rules", bad)
	if code != http.StatusUnprocessableEntity {
		t.Fatalf("bad apply: %d %s", code, body)
	}
	e := mustJSON[api.ErrorBody](t, body)
	if e.Error != "rule set invalid: 2 problems" || len(e.Details) != 2 {
		t.Fatalf("error body %s", body)
	}
	d := e.Details[0]
	if d.File != "bad.yaml" || d.Line != 5 || d.Col != 44 || d.Rule != 2 || !strings.Contains(d.Message, "Missing close parenthesis") {
		t.Errorf("regex detail %+v (%s)", d, d)
	}
	if d := e.Details[1]; d.Line != 6 || d.Rule != 3 || !strings.Contains(d.Message, `"blok"`) {
		t.Errorf("action detail %+v", d)
	}
	if h.eng.current() != before || h.eng.sets != sets || h.kern.acls != acls {
		t.Errorf("engine or ACL touched by an invalid set")
	}
	if _, v, err := h.store.Current(); err != nil || v.Number != 1 {
		t.Errorf("store at %d (%v), want 1", v.Number, err)
	}

	// Malformed requests.
	for _, tc := range []struct {
		body any
		code int
		want string
	}{
		{api.RulesRequest{Main: "x.yaml", Files: map[string]string{"y.yaml": "rules: []"}}, 400, "main file"},
		{api.RulesRequest{Main: "../x.yaml", Files: map[string]string{"../x.yaml": "rules: []"}}, 400, "relative slash path"},
		{api.RulesRequest{Main: "x.yaml"}, 400, "0 files"},
		{`{"main": "x.yaml", "extra": 1}`, 400, "unknown field"},
		{api.RulesRequest{Main: "x.yaml", Files: map[string]string{"x.yaml": "include: /etc/passwd\nrules: []\n"}}, 422, ""},
	} {
		var code int
		var body []byte
		if s, ok := tc.body.(string); ok {
			code, body = callJSONString(t, h, "PUT", "/v1/rules", s)
		} else {
			code, body = h.call(t, "PUT", "/v1/rules", tc.body)
		}
		if code != tc.code || !strings.Contains(string(body), tc.want) {
			t.Errorf("%v: %d %s, want %d %q", tc.body, code, body, tc.code, tc.want)
		}
		if mustJSON[api.ErrorBody](t, body).Error == "" {
			t.Errorf("%v: no error message", tc.body)
		}
	}
	if h.eng.sets != sets {
		t.Errorf("engine swapped by a malformed request")
	}
}

func callJSONString(tb testing.TB, h *apiHarness, method, path, body string) (int, []byte) {
	tb.Helper()
	req, _ := http.NewRequest(method, "http://deepwall"+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := api.NewClient(h.sock).HTTP().Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	data := make([]byte, 0, 1024)
	buf := make([]byte, 1024)
	for {
		n, err := resp.Body.Read(buf)
		data = append(data, buf[:n]...)
		if err != nil {
			break
		}
	}
	return resp.StatusCode, data
}

// A failure at any step of the swap leaves the engine, the ACL and the
// store as they were.
func TestAPIApplyAtomic(t *testing.T) {
	next := api.RulesRequest{Main: "n.yaml", Files: map[string]string{"n.yaml": "rules:\n  - {id: 7, action: block, proto: tcp, dst_port: 7}\n  - {id: 8, action: block, match: {field: http.uri, regex: 'eight'}}\n"}}
	check := func(t *testing.T, h *apiHarness, wantSets int) {
		t.Helper()
		if c := h.eng.current(); c == nil || c.Set.Rule(100) == nil || c.Set.Rule(8) != nil {
			t.Errorf("engine runs the wrong set")
		}
		if h.eng.sets != wantSets {
			t.Errorf("engine swapped %d times, want %d", h.eng.sets, wantSets)
		}
		if len(h.kern.acl.Rules) != 1 || h.kern.acl.Rules[0].ID != 10 {
			t.Errorf("kernel ACL %+v, want the old one", h.kern.acl)
		}
		// By content: a rollback after the store write stores the old set
		// again (as a new version).
		if set, v, err := h.store.Current(); err != nil || set.Rule(100) == nil || set.Rule(8) != nil {
			t.Errorf("store: version %d holds the wrong set (%v)", v.Number, err)
		}
		if code, body := h.call(t, "GET", "/v1/rules", nil); mustJSON[api.RuleList](t, body).RuleSet.Version != 1 || code != 200 {
			t.Errorf("API reports %s", body)
		}
	}
	t.Run("kernel refuses the ACL", func(t *testing.T) {
		h := newAPIHarness(t, testRules, authorizer{})
		h.kern.aclErr = xdp.ErrACLLimit
		code, body := h.call(t, "PUT", "/v1/rules", next)
		if code != http.StatusUnprocessableEntity || !strings.Contains(string(body), "exceeds a limit") {
			t.Errorf("%d %s", code, body)
		}
		h.kern.aclErr = nil
		check(t, h, 1)
	})
	t.Run("engine refuses the rules", func(t *testing.T) {
		h := newAPIHarness(t, testRules, authorizer{})
		h.eng.setErr = errors.New("scratch: out of memory")
		code, body := h.call(t, "PUT", "/v1/rules", next)
		if code != 500 || !strings.Contains(string(body), "out of memory") {
			t.Errorf("%d %s", code, body)
		}
		h.eng.setErr = nil
		check(t, h, 1)
	})
	t.Run("audit log cannot be written", func(t *testing.T) {
		h := newAPIHarness(t, testRules, authorizer{})
		h.ruleManager.audit.Close() // Append fails from now on
		code, body := h.call(t, "PUT", "/v1/rules", next)
		if code != 500 || !strings.Contains(string(body), "rules not changed") {
			t.Errorf("%d %s", code, body)
		}
		// Swapped in, then restored from the serialised old set.
		check(t, h, 3)
		// The restored set runs like any other: the next change works.
		al, err := audit.Open(h.audit)
		if err != nil {
			t.Fatal(err)
		}
		h.ruleManager.audit = al
		t.Cleanup(func() { al.Close() })
		if code, body := h.call(t, "PUT", "/v1/rules", next); code != 200 || h.eng.current().Set.Rule(8) == nil {
			t.Errorf("change after a rollback: %d %s", code, body)
		}
	})
}

func TestRevokeVerdicts(t *testing.T) {
	h := newTestManager(t, testRules)
	key := func(port uint16) xdp.FlowKey {
		k, _ := xdp.MakeFlowKey(netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2"), port, 80, 6)
		return k
	}
	allow, dropRule, dropAnon, inspect := key(1), key(2), key(3), key(4)
	h.kern.flows[allow] = xdp.FlowValue{Verdict: xdp.VerdictAllow}
	h.kern.flows[dropRule] = xdp.FlowValue{Verdict: xdp.VerdictDrop, RuleID: 100}
	h.kern.flows[dropAnon] = xdp.FlowValue{Verdict: xdp.VerdictDrop}
	h.kern.flows[inspect] = xdp.FlowValue{Verdict: xdp.VerdictInspect}
	root := caller{UID: 0}
	apply := func(t *testing.T, yaml string) api.ChangeResult {
		t.Helper()
		res, err := h.Apply(&api.RulesRequest{Main: "r.yaml", Files: map[string]string{"r.yaml": yaml}}, root)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	// An ACL-only change keeps every verdict: XDP applies the ACL first.
	res := apply(t, strings.Replace(testRules, "dst_port: 23", "dst_port: 24", 1))
	if res.Revoked != 0 || h.kern.verdict(allow) != xdp.VerdictAllow {
		t.Errorf("ACL change revoked %d", res.Revoked)
	}
	// A new layer-7 rule sends ALLOW flows back; drops stay while their
	// rule still blocks.
	res = apply(t, testRules+"  - {id: 400, action: block, match: {field: http.uri, regex: 'new'}}\n")
	if res.Revoked != 1 || h.kern.verdict(allow) != xdp.VerdictInspect || h.kern.verdict(dropRule) != xdp.VerdictDrop {
		t.Errorf("new rule revoked %d; allow=%v drop=%v", res.Revoked, h.kern.verdict(allow), h.kern.verdict(dropRule))
	}
	// Deleting the rule that dropped a flow lets it be inspected again,
	// whether the kernel or the engine names the rule; drops no rule
	// explains stay.
	dropEngine := key(5)
	h.kern.flows[dropEngine] = xdp.FlowValue{Verdict: xdp.VerdictDrop}
	h.eng.flows = []dpi.FlowInfo{{Key: dropEngine, Verdict: "drop", RuleID: 100}, {Key: dropAnon, Verdict: "drop"}}
	r, err := h.Delete(100, "", root)
	if err != nil {
		t.Fatal(err)
	}
	if r.Revoked != 2 || h.kern.verdict(dropRule) != xdp.VerdictInspect || h.kern.verdict(dropEngine) != xdp.VerdictInspect ||
		h.kern.verdict(dropAnon) != xdp.VerdictDrop {
		t.Errorf("delete revoked %d; drop=%v engine=%v anon=%v", r.Revoked, h.kern.verdict(dropRule),
			h.kern.verdict(dropEngine), h.kern.verdict(dropAnon))
	}
}

func TestPeerCredentials(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "c.sock")
	ln, err := listenUnix(sock, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != socketMode {
		t.Errorf("socket mode %v (%v), want %v", fi.Mode().Perm(), err, os.FileMode(socketMode))
	}
	// A live socket is not replaced.
	if _, err := listenUnix(sock, -1); err == nil || !strings.Contains(err.Error(), "another agent") {
		t.Errorf("second listen: %v", err)
	}
	got := make(chan caller, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		who, err := peerCred(c)
		if err != nil {
			t.Error(err)
		}
		got <- who
	}()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	who := <-got
	if who.UID != os.Getuid() || who.GID != os.Getgid() || who.PID != os.Getpid() {
		t.Errorf("peer %+v, want uid %d gid %d pid %d", who, os.Getuid(), os.Getgid(), os.Getpid())
	}
	// A stale socket file (no listener) is replaced.
	ln.Close()
	stale := filepath.Join(t.TempDir(), "stale.sock")
	l2, _ := net.Listen("unix", stale)
	l2.(*net.UnixListener).SetUnlinkOnClose(false)
	l2.Close()
	l3, err := listenUnix(stale, -1)
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	l3.Close()
	// A file that is not a socket is left alone.
	notSock := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notSock, nil, 0o600)
	if _, err := listenUnix(notSock, -1); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("regular file: %v", err)
	}
}

func TestGroupsAndSocketGroup(t *testing.T) {
	gid := os.Getgid()
	auth, sock, err := resolveGroups(fmt.Sprint(gid), "")
	if err != nil || sock != gid || len(auth.AdminGIDs) != 1 || auth.AdminGIDs[0] != gid || auth.ViewerGIDs != nil {
		t.Errorf("admin only: %+v %d %v", auth, sock, err)
	}
	// The socket's group is the viewer group when there is one: admins
	// are expected in it too.
	auth, sock, err = resolveGroups("0", fmt.Sprint(gid))
	if err != nil || sock != gid || auth.ViewerGIDs[0] != gid || auth.AdminGIDs[0] != 0 {
		t.Errorf("both: %+v %d %v", auth, sock, err)
	}
	if _, _, err := resolveGroups("no-such-group-deepwall", ""); err == nil || !strings.Contains(err.Error(), "--admin-group no-such-group-deepwall") {
		t.Errorf("unknown group: %v", err)
	}
	if _, _, err := resolveGroups("", "-5"); err == nil {
		t.Errorf("negative gid accepted")
	}
	if _, sock, _ := resolveGroups("", ""); sock != -1 {
		t.Errorf("no groups: socket group %d", sock)
	}
	path := filepath.Join(t.TempDir(), "g.sock")
	ln, err := listenUnix(path, gid)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, _ := os.Stat(path)
	if st := fi.Sys().(*syscall.Stat_t); int(st.Gid) != gid || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket gid %d mode %v", st.Gid, fi.Mode().Perm())
	}
	ln.Close()
	if _, err := os.Stat(path); err == nil {
		t.Errorf("socket file left after close")
	}
}

type nopEngine struct{ fakeEngine }

func (*nopEngine) Inspect(int, *dataplane.Frame) dataplane.Verdict { return dataplane.Verdict{} }

// BenchmarkTimedInspector measures what the latency histogram costs per
// frame: compare with BenchmarkDirectInspector.
func BenchmarkTimedInspector(b *testing.B) {
	ti := newTimedInspector(&nopEngine{}, 1)
	var f dataplane.Frame
	b.ReportAllocs()
	for b.Loop() {
		ti.Inspect(0, &f)
	}
}

func BenchmarkDirectInspector(b *testing.B) {
	var e dpiEngine = &nopEngine{}
	var f dataplane.Frame
	b.ReportAllocs()
	for b.Loop() {
		e.Inspect(0, &f)
	}
}
