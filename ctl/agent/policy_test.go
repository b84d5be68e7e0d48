package agent

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/deepwall/deepwall/ctl/audit"
	"github.com/deepwall/deepwall/internal/testnet"
)

// TestPolicyParse: what a policy file may say, and that every error
// names the file and line and the whole file is refused.
func TestPolicyParse(t *testing.T) {
	tests := []struct {
		name, text string
		err        string // "" : parses
	}{
		{"default", DefaultPolicy, ""},
		{"comments and blanks", "# who may do what\n\nallow * role:admin # admins\n", ""},
		{"every form of who", "allow status uid:7 gid:8 group:0 user:root role:viewer *\n", ""},
		{"every command", "deny status,flows.read,rules.read,rules.change,ports.read,ports.change uid:1\nallow * *\n", ""},
		{"unknown verb", "allow * role:admin\npermit status uid:1\n", `p:2: "permit": a line is "allow|deny COMMANDS WHO..."`},
		{"unknown command", "allow rules.write uid:1\n", `p:1: unknown command "rules.write" (commands: status, flows.read, rules.read, rules.change, ports.read, ports.change, or *)`},
		{"no who", "allow status\n", "p:1: a line is \"allow|deny COMMANDS WHO...\": commands or who missing"},
		{"bad uid", "allow status uid:x\n", `p:1: who "uid:x": x is not a number`},
		{"negative gid", "allow status gid:-1\n", `p:1: who "gid:-1": -1 is not a number`},
		{"unknown role", "allow status role:root\n", `p:1: who "role:root": roles are admin and viewer`},
		{"unknown user", "allow status user:no-such-user-dw\n", `p:1: who "user:no-such-user-dw": user: unknown user no-such-user-dw`},
		{"unknown group", "allow status group:no-such-group-dw\n", `p:1: who "group:no-such-group-dw": group: unknown group no-such-group-dw`},
		{"bad form", "allow status root\n", `p:1: who "root": want uid:N`},
		{"empty", "# nothing\n", "p: no allow or deny line"},
		{"errors on two lines", "allow x uid:1\nallow * role:admin\ndeny status uid:y\n", "p:1: unknown command \"x\""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parsePolicy("p", []byte(tc.text))
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("error %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want %q", err, tc.err)
			}
		})
	}
	// Every bad line is reported, not only the first.
	_, err := parsePolicy("p", []byte("allow x uid:1\nallow * role:admin\ndeny status uid:y\n"))
	if err == nil || !strings.Contains(err.Error(), "p:3: who \"uid:y\"") {
		t.Errorf("second error missing: %v", err)
	}
	// A file: read, bounded, named.
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, []byte(strings.Repeat("# x\n", maxPolicyBytes/4+1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadPolicy(big); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("big policy: %v", err)
	}
	if _, err := loadPolicy(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing policy: %v", err)
	}
}

// TestPolicyDecide: first match decides, no match refuses, roles come
// from the group flags, and the default policy is what the group flags
// allowed before policies existed (TestAPIAuthorization runs the API
// with it).
func TestPolicyDecide(t *testing.T) {
	p, err := parsePolicy("/etc/deepwall/api-policy", []byte(`
deny  rules.change uid:1001          # line 2
allow rules.change,rules.read gid:77 # line 3
allow status *                       # line 4
allow * role:admin                   # line 5
`))
	if err != nil {
		t.Fatal(err)
	}
	a := authorizer{AdminGIDs: []int{50}, ViewerGIDs: []int{60}}
	tests := []struct {
		who   caller
		cmd   string
		allow bool
		where string
	}{
		{caller{UID: 1001, GID: 77}, cmdRulesChange, false, "/etc/deepwall/api-policy:2"},
		{caller{UID: 1002, GID: 1, Groups: []int{77}}, cmdRulesChange, true, "/etc/deepwall/api-policy:3"},
		{caller{UID: 1002, GID: 1}, cmdStatus, true, "/etc/deepwall/api-policy:4"},
		{caller{UID: 1002, GID: 1}, cmdFlowsRead, false, "no line of /etc/deepwall/api-policy matched"},
		{caller{UID: 1003, GID: 50}, cmdPortsChange, true, "/etc/deepwall/api-policy:5"},
		{caller{UID: 0}, cmdRulesChange, true, "/etc/deepwall/api-policy:5"},
		{caller{UID: 1004, GID: 60}, cmdRulesRead, false, "no line of /etc/deepwall/api-policy matched"},
	}
	for _, tc := range tests {
		allow, where := a.decide(p, tc.cmd, tc.who)
		if allow != tc.allow || where != tc.where {
			t.Errorf("%+v %s: %v by %q, want %v by %q", tc.who, tc.cmd, allow, where, tc.allow, tc.where)
		}
	}
	def := authorizer{AdminGIDs: []int{50}, ViewerGIDs: []int{60}}
	for _, cmd := range apiCommands {
		for _, tc := range []struct {
			who  caller
			want bool
		}{
			{caller{UID: 0}, true},
			{caller{UID: 1003, GID: 50}, true},
			{caller{UID: 1004, GID: 1, Groups: []int{60}}, !changes(cmd)},
			{caller{UID: 1005, GID: 1}, false},
		} {
			if got, where := def.decide(nil, cmd, tc.who); got != tc.want {
				t.Errorf("default policy, %+v %s: %v by %s, want %v", tc.who, cmd, got, where, tc.want)
			}
		}
	}
}

// TestPrivilegedAPIPolicyPeers runs the API with a policy file and calls
// it from real peers: curl processes of other uids and groups on the
// unix socket, whose SO_PEERCRED and /proc groups the server reads.
// Each command is allowed or refused as the policy says, root included,
// and every decision is in the audit log with the line that made it.
func TestPrivilegedAPIPolicyPeers(t *testing.T) {
	testnet.RequirePrivileged(t)
	testnet.RequireTools(t, "apt-get install curl", "curl")
	policyFile := filepath.Join(t.TempDir(), "api-policy")
	if err := os.WriteFile(policyFile, []byte(`# test policy
allow status,flows.read uid:1001 uid:1002
allow rules.read gid:5100
allow rules.change uid:1001
deny  ports.change *
allow * role:admin
`), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := loadPolicy(policyFile)
	if err != nil {
		t.Fatal(err)
	}
	h := newAPIHarness(t, testRules, authorizer{})
	h.srv.policy.Store(p)
	h.srv.peer = peerCred // the real credentials, not the harness's
	// Let the other uids reach the socket (the agent's socket is 0660 and
	// its group decides who connects; here everyone may).
	for _, d := range []string{filepath.Dir(h.sock), filepath.Dir(filepath.Dir(h.sock))} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(h.sock, 0o666); err != nil {
		t.Fatal(err)
	}
	line := func(n int) string { return fmt.Sprintf("%s:%d", policyFile, n) }
	type call struct {
		method, path, cmd string
		code              int
		where             string
	}
	tests := []struct {
		name   string
		uid    uint32
		groups []uint32
		calls  []call
	}{
		{"uid 1001", 1001, nil, []call{
			{"GET", "/v1/status", cmdStatus, 200, line(2)},
			{"GET", "/v1/rules", cmdRulesRead, 403, "no line of " + policyFile + " matched"},
			// Allowed: the manager answers (no such rule), not the guard.
			{"DELETE", "/v1/rules/999999", cmdRulesChange, 404, line(4)},
			{"DELETE", "/v1/ports/web", cmdPortsChange, 403, line(5)},
		}},
		{"uid 1002 in group 5100", 1002, []uint32{5100}, []call{
			{"GET", "/v1/flows", cmdFlowsRead, 200, line(2)},
			{"GET", "/v1/rules/export", cmdRulesRead, 200, line(3)},
			{"DELETE", "/v1/rules/999999", cmdRulesChange, 403, "no line of " + policyFile + " matched"},
		}},
		{"nobody", 65534, nil, []call{
			{"GET", "/v1/status", cmdStatus, 403, "no line of " + policyFile + " matched"},
			{"PUT", "/v1/rules", cmdRulesChange, 403, "no line of " + policyFile + " matched"},
		}},
		{"root", 0, nil, []call{
			{"GET", "/v1/rules", cmdRulesRead, 200, line(6)},
			{"DELETE", "/v1/ports/web", cmdPortsChange, 403, line(5)},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, c := range tc.calls {
				before := len(readAuditAll(t, h.audit))
				cmd := exec.Command("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", h.sock,
					"-X", c.method, "http://deepwall"+c.path)
				gid := tc.uid
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: tc.uid, Gid: gid, Groups: tc.groups}}
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("curl %s %s: %v %s", c.method, c.path, err, out)
				}
				if got := strings.TrimSpace(string(out)); got != strconv.Itoa(c.code) {
					t.Errorf("%s %s: %s, want %d", c.method, c.path, got, c.code)
				}
				all := readAuditAll(t, h.audit)
				if len(all) <= before {
					t.Fatalf("%s %s: not audited", c.method, c.path)
				}
				e := all[before] // the decision comes first
				allowed := c.code != 403
				if e.UID != int(tc.uid) || e.GID != int(gid) || e.PID == 0 || e.OK != allowed || e.Command != c.cmd || e.Policy != c.where {
					t.Errorf("%s %s: audited as %+v", c.method, c.path, e)
				}
				switch {
				case allowed && e.Op != audit.OpAccess:
					t.Errorf("%s %s: allowed call audited as op %s", c.method, c.path, e.Op)
				case !allowed && changes(c.cmd) && e.Op == audit.OpAccess:
					t.Errorf("%s %s: refused change audited as op access, not its own", c.method, c.path)
				case !allowed && !strings.Contains(e.Error, "may not call "+c.cmd) || !allowed && !strings.Contains(e.Error, c.where):
					t.Errorf("%s %s: refusal %q does not name the command and %s", c.method, c.path, e.Error, c.where)
				}
			}
		})
	}
	res, err := audit.Verify(h.audit, "")
	if err != nil || res.Broken != nil {
		t.Errorf("audit chain: %+v %v", res, err)
	}
}

// TestPolicyReload: SIGHUP's reload puts an edited policy in force for
// the next call; a file that no longer parses leaves the previous one.
func TestPolicyReload(t *testing.T) {
	file := filepath.Join(t.TempDir(), "api-policy")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("allow * role:admin\n")
	p, err := loadPolicy(file)
	if err != nil {
		t.Fatal(err)
	}
	h := newAPIHarness(t, testRules, authorizer{})
	h.srv.policy.Store(p)
	h.as(caller{UID: 0, GID: 0, PID: 99})
	if code, body := h.call(t, "GET", "/v1/status", nil); code != 200 {
		t.Fatalf("status: %d %s", code, body)
	}
	write("deny status uid:0\nallow * role:admin\n")
	if err := h.srv.reloadPolicy(file); err != nil {
		t.Fatal(err)
	}
	code, body := h.call(t, "GET", "/v1/status", nil)
	if code != 403 || !strings.Contains(string(body), "refused by "+file+":1") {
		t.Fatalf("status after reload: %d %s", code, body)
	}
	write("deny status uid:zero\n")
	if err := h.srv.reloadPolicy(file); err == nil || !strings.Contains(err.Error(), file+":1: who \"uid:zero\"") {
		t.Fatalf("bad policy reloaded: %v", err)
	}
	if code, _ := h.call(t, "GET", "/v1/status", nil); code != 403 {
		t.Errorf("status after a bad reload: %d, want the previous policy's 403", code)
	}
	if code, _ := h.call(t, "GET", "/v1/rules", nil); code != 200 {
		t.Errorf("rules after a bad reload: %d, want the previous policy's 200", code)
	}
}
