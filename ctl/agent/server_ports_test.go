package agent

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/deepwall/deepwall/ctl/agent/protect"
	"github.com/deepwall/deepwall/ctl/api"
)

// portsView is a fake agent with a protected set.
type portsView struct {
	*fakeView
	p protectedSet
}

func (v portsView) protectorOf() protectedSet { return v.p }

// webProtected is a protected set where only "web" is protected; the
// refused calls it serves never reach it further.
type webProtected struct{ protectedSet }

func (webProtected) Has(name string) bool { return name == "web" }

// testProtector is a protector with nothing protected, its store in a
// temporary directory, ns the host side of the containers.
func testProtector(tb testing.TB, ns netns.NsHandle) *protect.Protector {
	tb.Helper()
	p, err := protect.Open(protect.Deps{StateDir: tb.TempDir(), Workers: 1, NS: ns, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}

// A refused mutation of the protected set is audited under the op it
// would have had.
func TestPortsAPIRefusedAudit(t *testing.T) {
	h := newAPIHarness(t, testRules, authorizer{})
	h.srv.view = portsView{h.view, webProtected{}}
	h.as(caller{UID: 65534, GID: 100, PID: 4321})
	tests := []struct {
		method, path string
		body         any
		op           string
	}{
		{"POST", "/v1/ports", api.ProtectRequest{Target: "db"}, "protect"},
		{"POST", "/v1/ports", api.ProtectRequest{Target: "web", Mode: api.ModeMonitor}, "mode"},
		{"POST", "/v1/ports", "not json", "protect"},
		{"DELETE", "/v1/ports/web", nil, "unprotect"},
		{"POST", "/v1/rules/promote", api.PromoteRequest{All: true}, "promote"},
		{"POST", "/v1/rules", api.RulesRequest{Main: "a.yaml", Files: map[string]string{"a.yaml": "rules: []\n"}}, "add"},
		{"DELETE", "/v1/rules/100", nil, "delete"},
	}
	for _, tt := range tests {
		code, body := h.call(t, tt.method, tt.path, tt.body)
		if code != http.StatusForbidden {
			t.Fatalf("%s %s: %d %s, want 403", tt.method, tt.path, code, body)
		}
		all := readAudit(t, h.audit)
		if l := all[len(all)-1]; l.Op != tt.op || l.OK || l.UID != 65534 || l.PID != 4321 || l.Error == "" {
			t.Errorf("%s %s: audited as %+v, want op %s", tt.method, tt.path, l, tt.op)
		}
	}
	// A refused read is an access decision of its own (no change entry).
	n := len(readAudit(t, h.audit))
	if code, _ := h.call(t, "GET", "/v1/ports", nil); code != http.StatusForbidden || len(readAudit(t, h.audit)) != n {
		t.Errorf("GET /v1/ports: %d, change entries grew", code)
	}
	acc := readAccess(t, h.audit)
	if l := acc[len(acc)-1]; l.OK || l.Command != cmdPortsRead || l.UID != 65534 || !strings.Contains(l.Error, "viewer or admin group") {
		t.Errorf("refused GET /v1/ports audited as %+v", l)
	}
}

// TestPortsAPIBounds: bodies are bounded and strict, the ids of a
// promotion bounded, and a target that is not a network namespace is a
// 400 naming it, without its content.
func TestPortsAPIBounds(t *testing.T) {
	h := newAPIHarness(t, testRules, authorizer{})
	own, err := netns.GetFromPath("/proc/self/ns/net") // what the target names (not this thread's)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { own.Close() })
	h.srv.view = portsView{h.view, testProtector(t, own)}
	tooMany := make([]uint32, 4096+1) // more than the learned flows kept
	for i := range tooMany {
		tooMany[i] = 3_000_000_000 + 2*uint32(i+1) // learned rules' ids
	}
	for _, tc := range []struct {
		name, method, path string
		body               any
		code               int
		says               string
	}{
		{"oversized", "POST", "/v1/ports", `{"target":"` + strings.Repeat("a", maxPortBody) + `"}`, http.StatusRequestEntityTooLarge, "too large"},
		{"unknown field", "POST", "/v1/ports", `{"target":"web","mode":"protect","shell":"rm -rf /"}`, http.StatusBadRequest, "unknown field"},
		{"trailing data", "POST", "/v1/ports", `{"target":"web"} {"target":"db"}`, http.StatusBadRequest, "trailing"},
		{"not a namespace", "POST", "/v1/ports", api.ProtectRequest{Target: "/etc/passwd"}, http.StatusBadRequest, "/etc/passwd: not a network namespace"},
		{"the agent's own namespace", "POST", "/v1/ports", api.ProtectRequest{Target: "/proc/self/ns/net"}, http.StatusBadRequest, "agent's own network namespace"},
		{"bad mode", "POST", "/v1/ports", api.ProtectRequest{Target: "web", Mode: "off"}, http.StatusBadRequest, "mode"},
		{"too many ids", "POST", "/v1/rules/promote", api.PromoteRequest{IDs: tooMany}, http.StatusBadRequest, "ids"},
		{"promote oversized", "POST", "/v1/rules/promote", `{"comment":"` + strings.Repeat("a", maxPortBody) + `"}`, http.StatusRequestEntityTooLarge, "too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := h.call(t, tc.method, tc.path, tc.body)
			if code != tc.code || !strings.Contains(string(body), tc.says) {
				t.Fatalf("%d %.300s, want %d saying %s", code, body, tc.code, tc.says)
			}
			if strings.Contains(string(body), "root:") {
				t.Fatalf("answer shows a file's content: %s", body)
			}
		})
	}
}
