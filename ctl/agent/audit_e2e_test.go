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

// procMemory is a field of /proc/PID/status (VmRSS, RssFile, …) in bytes.
func procMemory(tb testing.TB, pid int, field string) int64 {
	tb.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for l := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(l, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				tb.Fatalf("%s %q: %v", field, rest, err)
			}
			return kb << 10
		}
	}
	tb.Fatalf("no %s in /proc/%d/status", field, pid)
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
	last := agent.ReadAuditAll(t, a.Audit)[len(lines)-1]
	if l := len(lines[len(lines)-1]); l > audit.MaxEntry || last.Op != "add" || !last.OK ||
		!strings.Contains(last.Detail, fmt.Sprintf("(%d ids, sha256 ", n)) {
		t.Fatalf("the add's entry (%d bytes): %+v", l, last)
	}
	if st := a.status(t); st.RuleSet.Version != 2 || st.RuleSet.Rules < n {
		t.Fatalf("status after the add: %+v", st.RuleSet)
	}

	// Memory: large reloads (each a real compile: new patterns) return
	// the agent to the same resident size. The agent gives freed memory
	// back a few seconds after a change (ctl/agent/memory.go).
	const rounds = 3
	settle := func() int64 {
		time.Sleep(6 * time.Second)
		return procMemory(t, a.PID(), "VmRSS")
	}
	rssFile := func() int64 { return procMemory(t, a.PID(), "RssFile") >> 20 }
	rss := []int64{settle()}
	t.Logf("after the add: VmRSS %d MiB (files mapped: %d MiB)", rss[0]>>20, rssFile())
	for round := range rounds {
		set := generatedRules(n, uint64(10+round), 3_000_000+uint32(round%2)*100_000)
		file := agent.WriteFile(t, dir, fmt.Sprintf("apply-%d.yaml", round), string(set))
		if code, out, errs := a.cli(t, "rules", "apply", file); code != 0 {
			t.Fatalf("rules apply round %d: %d %s %s", round, code, out, errs)
		}
		rss = append(rss, settle())
		t.Logf("reload %d: %d new rules, VmRSS %d MiB (files mapped: %d MiB)", round+1, n, rss[round+1]>>20, rssFile())
	}
	// The add's set is the default pack plus n rules, larger than a
	// reload's n: no reload may end above it by more than noise.
	for i, r := range rss[1:] {
		if r > rss[0]+32<<20 {
			t.Errorf("VmRSS after reload %d is %d MiB, after the add %d MiB: reloads keep memory", i+1, r>>20, rss[0]>>20)
		}
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
