package agent_test

import (
	"flag"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/deepwall/deepwall/ctl/agent"
	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/internal/agenttest"
	"github.com/deepwall/deepwall/internal/testutil"
)

// The CLI's rendering of every API answer, over the agent's real API
// server (a rule manager on a fake engine, a fixed status and flows) and
// the deepwall binary.

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

var fixedStart = time.Date(2026, 11, 23, 21, 0, 0, 0, time.UTC)

func fixedStatus() api.Status {
	return api.Status{
		Version: "v1.2.3", PID: 4321, Started: fixedStart, UptimeSecs: 3723.4,
		Ports: []api.PortInfo{{Side: "inner", Name: "veth-app", Ifindex: 7, Queues: 2}, {Side: "outer", Name: "veth-br", Ifindex: 8, Queues: 2}},
		NetNS: "app1", Backend: "xdp native, af_xdp", FailClosed: true, Workers: 2,
		RuleSet: api.RuleSetInfo{Version: 12, Hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", Rules: 72,
			Disabled: 1, ACL: 2, Layer7: 69, ACLDefault: "allow", Stored: fixedStart, Applied: fixedStart.Add(time.Minute), Comment: "add [9001]"},
		Counters: api.Counters{FastPathAllowed: 123456, FastPathDropped: 42, ToUserSpace: 98765, Inspected: 98765, InspectedBytes: 45678901,
			Forwarded: 98000, NonIP: 12, Resets: 14, Alerts: 9, Blocks: 7,
			Drops: map[string]uint64{"acl": 3, "fast_path": 42, "fail_closed": 0, "malformed": 1, "redirect_error": 0, "rule": 7, "tcp.overlap_conflict": 2}},
		Events: api.EventCounts{Path: "/var/log/deepwall/eve.json", Written: 1200, Dropped: 3, Rotations: 1},
		Flows:  17,
	}
}

func fixedFlows() api.FlowList {
	return api.FlowList{Total: 3, Flows: []api.FlowRow{
		{Proto: "tcp", Client: "198.18.0.1:40001", Server: "198.18.0.2:80", App: "http", Verdict: "inspect",
			PktsToServer: 12, PktsToClient: 10, BytesToServer: 3400, BytesToClient: 1 << 20, AgeSecs: 65.2, IdleSecs: 0.25},
		{Proto: "tcp", Client: "198.18.0.1:40002", Server: "198.18.0.2:443", App: "tls", Verdict: "pass", Bypassed: true,
			PktsToServer: 1000, PktsToClient: 2000, BytesToServer: 65536, BytesToClient: 3 << 30, AgeSecs: 12, IdleSecs: 1},
		{Proto: "tcp", Client: "198.18.0.1:40003", Server: "198.18.0.2:80", App: "http", Verdict: "drop", Bypassed: true, RuleID: 942100,
			PktsToServer: 4, PktsToClient: 1, BytesToServer: 700, BytesToClient: 60, AgeSecs: 0.5, IdleSecs: 0.4},
	}}
}

var (
	reCompiled = regexp.MustCompile(`compiled in [0-9.]+s|loaded from the compiled cache`)
	reTime     = regexp.MustCompile(`"20\d\d-\d\d-\d\dT[0-9:.]+Z"`)
)

func TestCLIGolden(t *testing.T) {
	h := agent.StartFakeAPI(t, agent.TestRules, fixedStatus(), fixedFlows())
	dir := t.TempDir()
	add := agent.WriteFile(t, dir, "add.yaml", "rules:\n  - {id: 9001, name: block admin, action: block, category: custom, match: {field: http.path, regex: '^/admin'}}\n")
	bad := agent.WriteFile(t, dir, "bad.yaml", "rules:\n  - id: 9002\n    action: block\n    match: {field: http.path, regex: 'a(b'}\n  - {id: 9002, action: alrt}\n")
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"status.txt", []string{"status"}, 0},
		{"status.json", []string{"status", "-o", "json"}, 0},
		{"flows.txt", []string{"flows"}, 0},
		{"flows.json", []string{"flows", "-o", "json"}, 0},
		{"rules-list.txt", []string{"rules", "list"}, 0},
		{"rules-list.json", []string{"rules", "list", "-o", "json"}, 0},
		{"rules-show.txt", []string{"rules", "show", "100"}, 0},
		{"rules-show-missing.txt", []string{"rules", "show", "99"}, 1},
		{"rules-add.txt", []string{"rules", "add", add, "-m", "ticket 1"}, 0},
		{"rules-add-again.txt", []string{"rules", "add", add}, 1},
		{"rules-apply-bad.txt", []string{"rules", "apply", bad}, 1},
		{"rules-delete.txt", []string{"rules", "delete", "9001"}, 0},
		{"rules-export.txt", []string{"rules", "export"}, 0},
		{"output-bad.txt", []string{"status", "-o", "yaml"}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := agenttest.CLI(t, append(tc.args, "--socket", h.Socket)...)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr %s", code, tc.code, errs)
			}
			got := out
			if errs != "" {
				got += "--- stderr\n" + errs
			}
			got = strings.ReplaceAll(got, dir, "$DIR")
			got = strings.ReplaceAll(got, h.Dir, "$STATE")
			got = reTime.ReplaceAllString(got, `"TIME"`)
			got = reCompiled.ReplaceAllString(got, "compiled in Xs")
			testutil.Golden(t, filepath.Join("testdata", "golden", tc.name), []byte(got), *update)
		})
	}
	// The filter travels to the agent.
	code, _, errs := agenttest.CLI(t, "flows", "--socket", h.Socket, "--proto", "tcp", "--ip", "198.18.0.2", "--port", "80", "--verdict", "drop", "--app", "http", "--container", "web", "--limit", "5")
	want := api.FlowFilter{Proto: 6, Addr: netip.MustParseAddr("198.18.0.2"), Port: 80, Verdict: "drop", App: "http", Container: "web", Limit: 5}
	if code != 0 || h.Filter() != want {
		t.Errorf("filter %+v (exit %d %s), want %+v", h.Filter(), code, errs, want)
	}
	if code, _, errs := agenttest.CLI(t, "flows", "--socket", h.Socket, "--verdict", "maybe"); code == 0 || !strings.Contains(errs, "inspect, pass, drop") {
		t.Errorf("bad verdict: %d %s", code, errs)
	}
}
