// Package agenttest runs the real deepwall agent for tests: it builds
// cmd/deepwall once per test binary and starts `deepwall run` in a
// namespace of a testnet topology, with its state, logs and API socket in
// a directory of the test's, and an API client. The end-to-end tests of
// ctl/agent and the benchmarks of bench drive the agent through it.
package agenttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/ctl/eve/evetest"
	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/internal/testnet"
	"github.com/deepwall/deepwall/internal/testutil"
)

// RaceEnv, when set, builds the agent with the race detector.
const RaceEnv = "DEEPWALL_E2E_RACE"

// Timeouts of an agent's life.
const (
	startTimeout = 2 * time.Minute
	stopTimeout  = 30 * time.Second
)

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// Binary builds cmd/deepwall (with -trimpath; -race when RaceEnv is set)
// once per test binary and returns its path. Cleanup removes it.
func Binary(tb testing.TB) string {
	tb.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "deepwall-agenttest-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "deepwall")
		args := []string{"build", "-trimpath", "-o", binPath}
		if os.Getenv(RaceEnv) != "" {
			args = append(args, "-race")
		}
		out, err := exec.Command("go", append(args, "github.com/deepwall/deepwall/cmd/deepwall")...).CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("build deepwall: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		tb.Fatal(binErr)
	}
	return binPath
}

// Cleanup removes the binary Binary built; call it from TestMain after
// the tests ran.
func Cleanup() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}

// CLI runs the deepwall binary with args and returns its exit status and
// output.
func CLI(tb testing.TB, args ...string) (code int, stdout, stderr string) {
	tb.Helper()
	var out, errw bytes.Buffer
	cmd := exec.Command(Binary(tb), args...)
	cmd.Stdout, cmd.Stderr = &out, &errw
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		tb.Fatalf("deepwall %v: %v", args, err)
	}
	return code, out.String(), errw.String()
}

// Agent is one `deepwall run` keeping its files under Dir.
type Agent struct {
	Dir    string
	Socket string // the API socket
	State  string // --state
	Log    string // the verdict log
	Audit  string // the audit log (beside the verdict log)
	Client *api.Client

	cmd  *exec.Cmd
	out  *testutil.Buffer
	done chan error
}

// New returns an agent, not started, keeping its files under dir.
func New(dir string) *Agent {
	sock := filepath.Join(dir, "api.sock")
	return &Agent{Dir: dir, Socket: sock, State: filepath.Join(dir, "state"),
		Log: filepath.Join(dir, "log", "eve.json"), Audit: filepath.Join(dir, "log", "audit.json"),
		Client: api.NewClient(sock)}
}

// Start runs `deepwall run --socket --state --log` and args in ns and
// waits until the API answers; the test fails if the agent exits first.
// At cleanup the agent is stopped with SIGTERM (Stop), before anything
// else of the test is torn down.
func (a *Agent) Start(tb testing.TB, ns *testnet.NS, args ...string) {
	tb.Helper()
	a.out, a.done = &testutil.Buffer{}, make(chan error, 1)
	a.cmd = exec.Command(Binary(tb), append([]string{"run", "--socket", a.Socket, "--state", a.State, "--log", a.Log}, args...)...)
	a.cmd.Stdout, a.cmd.Stderr = a.out, a.out
	// NS.Start only enters the network namespace: /sys and the bpffs
	// pins stay the host's.
	ns.Start(tb, a.cmd)
	go func() { a.done <- a.cmd.Wait() }()
	// Registered after ns.Start's own cleanup, so it runs first: the agent
	// gets SIGTERM and detaches and restores its ports before a SIGKILL
	// could leave them wired.
	tb.Cleanup(func() {
		a.Stop(tb)
		// Every event the agent wrote validates against Suricata's EVE
		// schema and names its flow's Community ID.
		evetest.CheckFiles(tb, a.Log)
	})
	deadline := time.Now().Add(startTimeout)
	for {
		_, err := a.Client.Status(context.Background())
		if err == nil {
			return
		}
		select {
		case werr := <-a.done:
			a.done <- werr
			tb.Fatalf("agent exited (%v) before it answered:\n%s", werr, a.out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			tb.Fatalf("agent did not answer in time: %v\n%s", err, a.out.String())
		}
	}
}

// Stop sends SIGTERM and waits for a clean exit; a stopped agent is left
// alone.
func (a *Agent) Stop(tb testing.TB) {
	tb.Helper()
	if a.cmd == nil {
		return
	}
	select {
	case err := <-a.done: // exited already
		a.done <- err
		return
	default:
	}
	// The process may have ended between the check above and the signal
	// (its exit not yet collected by Wait): then only its status is left.
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		tb.Fatalf("signal agent: %v", err)
	}
	select {
	case err := <-a.done:
		a.done <- err
		if err != nil {
			tb.Fatalf("agent exit: %v\n%s", err, a.out.String())
		}
	case <-time.After(stopTimeout):
		_ = a.cmd.Process.Kill()
		tb.Fatalf("agent did not stop within %v:\n%s", stopTimeout, a.out.String())
	}
}

// Kill kills the agent (SIGKILL: nothing is cleaned up) and waits for it.
func (a *Agent) Kill(tb testing.TB) {
	tb.Helper()
	if err := a.cmd.Process.Kill(); err != nil {
		tb.Fatal(err)
	}
	err := <-a.done
	a.done <- err
}

// Signal sends sig to the agent.
func (a *Agent) Signal(sig os.Signal) error { return a.cmd.Process.Signal(sig) }

// PID is the agent's process id.
func (a *Agent) PID() int { return a.cmd.Process.Pid }

// Output is what the agent wrote to stdout and stderr so far (its log).
func (a *Agent) Output() string { return a.out.String() }

// CLI runs a deepwall command against this agent (--socket appended).
func (a *Agent) CLI(tb testing.TB, args ...string) (code int, stdout, stderr string) {
	tb.Helper()
	return CLI(tb, append(args, "--socket", a.Socket)...)
}

// RemovePins removes the pin directories of the pairs agents protected in
// ns: an agent stopped with containers protected keeps their pins for the
// next agent, and once the test's namespace is gone nobody will adopt
// them. Register it before starting the agents, so that it runs after
// their cleanup.
func RemovePins(tb testing.TB, ns *testnet.NS) {
	tb.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(int(ns.Handle()), &st); err != nil {
		return
	}
	dirs, _ := filepath.Glob(filepath.Join(dataplane.DefaultBPFFS, "deepwall", fmt.Sprintf("ns%d-*", st.Ino)))
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			tb.Errorf("remove pins %s: %v", d, err)
		}
	}
}
