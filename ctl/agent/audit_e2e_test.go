package agent_test

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deepwall/deepwall/ctl/agent"
	"github.com/deepwall/deepwall/ctl/audit"
	"github.com/deepwall/deepwall/internal/agenttest"
	"github.com/deepwall/deepwall/internal/rulegen"
)

var genID = regexp.MustCompile(`\{id: (\d+),`)

// generatedRules is rulegen's set of n rules with seed, renumbered from
// first so that it can be added to the default pack (ids below 1,000,000).
func generatedRules(n int, seed uint64, first uint32) []byte {
	return genID.ReplaceAllFunc(rulegen.Generate(n, seed), func(m []byte) []byte {
		id, _ := strconv.Atoi(string(genID.FindSubmatch(m)[1]))
		return fmt.Appendf(nil, "{id: %d,", first+uint32(id)-1)
	})
}

// vmRSS is a process's resident set size in bytes (/proc/PID/status).
func vmRSS(tb testing.TB, pid int) int64 {
	tb.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for l := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				tb.Fatalf("VmRSS %q: %v", rest, err)
			}
			return kb << 10
		}
	}
	tb.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// TestPrivilegedAgentLargeRuleChange: adding 10,000 rules to a
// fail-closed agent is audited in one bounded entry, the log verifies,
// and the agent starts again on its state; repeated large reloads return
// to the same memory.
func TestPrivilegedAgentLargeRuleChange(t *testing.T) {
	m := agentModes[0] // the audit log does not depend on the dataplane
	topo := m.topology(t)
	server := testServer(t, topo)
	dir := t.TempDir()
	a := startAgent(t, topo, dir, "--fail-closed")

	const n = 10000
	add := agent.WriteFile(t, dir, "add.yaml", string(generatedRules(n, 1, 2_000_000)))
	code, out, errs := a.cli(t, "rules", "add", add)
	if code != 0 || !strings.Contains(out, "version 1 -> 2") {
		t.Fatalf("rules add of %d rules: %d %s %s", n, code, out, errs)
	}
	verify := func(what string) {
		t.Helper()
		code, out, errs := agenttest.CLI(t, "audit", "verify", "--file", a.Audit, "--state", a.State)
		if code != 0 || !strings.Contains(out, "chain intact") {
			t.Fatalf("audit verify %s: %d %s %s", what, code, out, errs)
		}
	}
	verify("after the add")
	data, err := os.ReadFile(a.Audit)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	last := agent.ReadAudit(t, a.Audit)[len(lines)-1]
	if l := len(lines[len(lines)-1]); l > audit.MaxEntry || last.Op != "add" || !last.OK ||
		!strings.Contains(last.Detail, fmt.Sprintf("(%d ids, sha256 ", n)) {
		t.Fatalf("the add's entry (%d bytes): %+v", l, last)
	}
	if st := a.status(t); st.RuleSet.Version != 2 || st.RuleSet.Rules < n {
		t.Fatalf("status after the add: %+v", st.RuleSet)
	}

	// Memory: the same large change, applied again and again with new
	// patterns (each a real compile), must not grow the agent.
	const rounds = 5
	var rss []int64
	for round := range rounds {
		set := generatedRules(n, uint64(10+round), 3_000_000)
		file := agent.WriteFile(t, dir, fmt.Sprintf("apply-%d.yaml", round), string(set))
		if code, out, errs := a.cli(t, "rules", "apply", file); code != 0 {
			t.Fatalf("rules apply round %d: %d %s %s", round, code, out, errs)
		}
		time.Sleep(3 * time.Second)
		rss = append(rss, vmRSS(t, a.PID()))
		t.Logf("round %d: %d new rules applied, VmRSS %d MiB", round+1, n, rss[round]>>20)
	}
	// The first reload may still hold the default pack's share; from
	// the second on every round runs the same size of set.
	if grow := rss[rounds-1] - rss[1]; grow > 64<<20 {
		t.Errorf("VmRSS grew by %d MiB over %d reloads of %d rules: %v", grow>>20, rounds-2, n, rss)
	}
	verify("after the reloads")

	// The agent starts again on the state (and log) it wrote.
	a.stop(t)
	b := startAgent(t, topo, dir, "--fail-closed")
	t.Cleanup(func() { b.stop(t) })
	if st := b.status(t); st.RuleSet.Version != 2+rounds || st.RuleSet.Rules != n {
		t.Fatalf("status after the restart: %+v", st.RuleSet)
	}
	if res := rawRequest(t, topo, server, get("/alive-again")); res.status != 200 {
		t.Fatalf("after restart: %+v", res)
	}
	verify("after the restart")
}
