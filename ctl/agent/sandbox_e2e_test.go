package agent_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deepwall/deepwall/ctl/agent"
	"github.com/deepwall/deepwall/internal/testnet"
)

// procStatus reads the fields of /proc/PID/task/TID/status the sandbox
// sets, for every thread of pid.
func procStatus(tb testing.TB, pid int) map[string]map[string]string {
	tb.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) == 0 {
		tb.Fatalf("threads of %d: %v", pid, err)
	}
	all := map[string]map[string]string{}
	for _, path := range tasks {
		f, err := os.Open(path)
		if err != nil {
			continue // the thread exited
		}
		fields := map[string]string{}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if ok {
				fields[k] = strings.TrimSpace(v)
			}
		}
		f.Close()
		all[path] = fields
	}
	return all
}

func capMask(tb testing.TB, s string) uint64 {
	tb.Helper()
	m, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		tb.Fatalf("capability mask %q: %v", s, err)
	}
	return m
}

// fakeNotifySocket stands in for systemd: $NOTIFY_SOCKET for the agents
// started after it, and the datagrams they send.
func fakeNotifySocket(tb testing.TB) <-chan string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	tb.Setenv("NOTIFY_SOCKET", path)
	got := make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			got <- string(buf[:n])
		}
	}()
	return got
}

// waitNotify waits for a datagram starting with prefix.
func waitNotify(tb testing.TB, got <-chan string, prefix string, within time.Duration) {
	tb.Helper()
	deadline := time.After(within)
	for {
		select {
		case s := <-got:
			if strings.HasPrefix(s, prefix) {
				return
			}
		case <-deadline:
			tb.Fatalf("no %q from the agent in %v", prefix, within)
		}
	}
}

// TestPrivilegedAgentSandbox: a running agent (both modes) keeps exactly
// the documented capabilities on every thread (effective, permitted,
// bounding; nothing inheritable or ambient), has no_new_privs and its
// seccomp filter on every thread, and still does its work: systemd
// readiness and watchdog pings over $NOTIFY_SOCKET, a rule change, the
// log reopened on SIGHUP, a clean stop. --no-sandbox leaves it as root
// without a filter.
func TestPrivilegedAgentSandbox(t *testing.T) { forModes(t, testAgentSandbox) }

func testAgentSandbox(t *testing.T, m agentMode) {
	topo := m.topology(t)
	notes := fakeNotifySocket(t)
	t.Setenv("WATCHDOG_USEC", "2000000")
	a := startAgent(t, topo, t.TempDir())
	waitNotify(t, notes, "READY=1", 5*time.Second)
	waitNotify(t, notes, "WATCHDOG=1", 3*time.Second)
	waitNotify(t, notes, "WATCHDOG=1", 3*time.Second)

	// The agent inherits the filters of whoever started it (systemd's, a
	// test wrapper's) and stacks its own on them.
	self := procStatus(t, os.Getpid())[fmt.Sprintf("/proc/%d/task/%d/status", os.Getpid(), os.Getpid())]
	inherited, err := strconv.Atoi(self["Seccomp_filters"])
	if err != nil {
		t.Fatalf("Seccomp_filters of the test: %q", self["Seccomp_filters"])
	}
	wantFilters := strconv.Itoa(inherited + 1)
	want := agent.KeptCapMask()
	for path, st := range procStatus(t, a.PID()) {
		for _, k := range []string{"CapEff", "CapPrm", "CapBnd"} {
			if got := capMask(t, st[k]); got != want {
				t.Errorf("%s: %s %016x, want %016x", path, k, got, want)
			}
		}
		for _, k := range []string{"CapInh", "CapAmb"} {
			if got := capMask(t, st[k]); got != 0 {
				t.Errorf("%s: %s %016x, want 0", path, k, got)
			}
		}
		if st["NoNewPrivs"] != "1" || st["Seccomp"] != "2" || st["Seccomp_filters"] != wantFilters {
			t.Errorf("%s: NoNewPrivs %s Seccomp %s Seccomp_filters %s, want 1 2 %s", path, st["NoNewPrivs"], st["Seccomp"], st["Seccomp_filters"], wantFilters)
		}
	}
	if out := a.Output(); !strings.Contains(out, "sandbox on") || !strings.Contains(out, fmt.Sprintf("syscalls=%d", agent.SandboxSyscallCount())) {
		t.Errorf("no sandbox line in the agent's log:\n%s", out)
	}
	// The agent starts only if the kernel refused its probe call (getcpu)
	// with EPERM: a live check that calls outside the list are refused.
	if out := a.Output(); os.Getenv(agent.SeccompLogEnv) == "" && !strings.Contains(out, `seccomp="allow-list, others EPERM"`) {
		t.Errorf("filter not enforcing:\n%s", out)
	}

	// Work that needs the kept privileges: a rule change (kernel ACL and
	// flow-map writes), the log reopened for logrotate.
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte("rules:\n  - {id: 9100001, name: no 9999, action: block, proto: tcp, dst_port: 9999}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := a.cli(t, "rules", "add", rules); code != 0 {
		t.Errorf("rules add under the sandbox: %s\n%s", errOut, a.Output())
	}
	if err := os.Rename(a.Log, a.Log+".old"); err != nil {
		t.Fatal(err)
	}
	if err := a.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(a.Output(), "event log reopened") {
		if time.Now().After(deadline) {
			t.Fatalf("SIGHUP: log not reopened:\n%s", a.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := os.Stat(a.Log); err != nil {
		t.Errorf("reopened log: %v", err)
	}
	a.stop(t)
	waitNotify(t, notes, "STOPPING=1", time.Second)
	if strings.Contains(a.Output(), "level=ERROR") {
		t.Errorf("errors under the sandbox:\n%s", a.Output())
	}

	t.Setenv("WATCHDOG_USEC", "")
	b := startAgent(t, testnet.NewTopology(t, m.topo), t.TempDir(), "--no-sandbox")
	for path, st := range procStatus(t, b.PID()) {
		if st["Seccomp_filters"] != self["Seccomp_filters"] || st["NoNewPrivs"] != self["NoNewPrivs"] || capMask(t, st["CapEff"]) == want {
			t.Errorf("--no-sandbox: %s: CapEff %s NoNewPrivs %s Seccomp_filters %s, want the test's (%s %s)", path, st["CapEff"], st["NoNewPrivs"], st["Seccomp_filters"], self["NoNewPrivs"], self["Seccomp_filters"])
		}
	}
	b.stop(t)
}
