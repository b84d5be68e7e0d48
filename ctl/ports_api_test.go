package ctl

import (
	"net/http"
	"testing"
)

// portsView is a fake agent with a protector.
type portsView struct {
	*fakeView
	p *protector
}

func (v portsView) protectorOf() *protector { return v.p }

// A refused mutation of the protected set is audited under the op it
// would have had.
func TestPortsAPIRefusedAudit(t *testing.T) {
	h := newAPIHarness(t, testRules, Authorizer{})
	p, _, _ := testProtector(t, modeRules) // protects "web"
	h.srv.view = portsView{h.view, p}
	h.as(Caller{UID: 65534, GID: 100, PID: 4321})
	tests := []struct {
		method, path string
		body         any
		op           string
	}{
		{"POST", "/v1/ports", ProtectRequest{Target: "db"}, "protect"},
		{"POST", "/v1/ports", ProtectRequest{Target: "web", Mode: ModeMonitor}, "mode"},
		{"POST", "/v1/ports", "not json", "protect"},
		{"DELETE", "/v1/ports/web", nil, "unprotect"},
		{"POST", "/v1/rules/promote", PromoteRequest{All: true}, "promote"},
		{"POST", "/v1/rules", RulesRequest{Main: "a.yaml", Files: map[string]string{"a.yaml": "rules: []\n"}}, "add"},
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
	// Read-only calls are not audited; viewers are refused them here.
	n := len(readAudit(t, h.audit))
	if code, _ := h.call(t, "GET", "/v1/ports", nil); code != http.StatusForbidden || len(readAudit(t, h.audit)) != n {
		t.Errorf("GET /v1/ports: %d, audit grew", code)
	}
}
