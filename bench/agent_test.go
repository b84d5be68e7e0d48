package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/deepwall/deepwall/ctl"
	"github.com/deepwall/deepwall/internal/testnet"
)

// The deepwall systems of scenarios 1, 2, 3 and 5 are the real agent:
// `deepwall run`, built from this tree with go build, started in the fw
// namespace of a topology with its state, logs and API socket in a
// temporary directory.

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// agentBinary builds cmd/deepwall once per harness run.
func agentBinary(tb testing.TB) string {
	tb.Helper()
	binOnce.Do(func() {
		h.progress("building deepwall (go build ./cmd/deepwall)")
		binDir, binErr = os.MkdirTemp("", "deepwall-bench-bin-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "deepwall")
		out, err := exec.Command("go", "build", "-trimpath", "-o", binPath, "github.com/deepwall/deepwall/cmd/deepwall").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("build deepwall: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		tb.Fatal(binErr)
	}
	return binPath
}

func cleanupAgentBinary() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}

// agent is one `deepwall run` process.
type agent struct {
	cmd    *exec.Cmd
	dir    string
	sock   string
	out    *syncBuffer
	done   chan error
	client *http.Client
}

// syncBuffer collects the agent's log for failure messages.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 1<<20 {
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startAgent runs the agent on topo's fw ports with the rule file
// rulesPath, workers DPI workers (0: the agent's default, one per CPU) and
// --mode mode ("": the agent's default), waits until its API answers, and
// stops it (SIGTERM: it detaches and restores the ports) at cleanup.
func startAgent(tb testing.TB, topo *testnet.Topology, rulesPath string, workers int, mode string) *agent {
	tb.Helper()
	dir := tb.TempDir()
	a := &agent{dir: dir, sock: filepath.Join(dir, "api.sock"), out: &syncBuffer{}, done: make(chan error, 1)}
	args := []string{"run", "--inner", testnet.InnerIf, "--outer", testnet.OuterIf,
		"--socket", a.sock, "--state", filepath.Join(dir, "state"), "--log", filepath.Join(dir, "log", "eve.json"),
		"--run-dir", filepath.Join(dir, "run"), "--rules", rulesPath, "--log-level", "warn"}
	if workers > 0 {
		args = append(args, "--workers", fmt.Sprint(workers))
	}
	if mode != "" {
		args = append(args, "--mode", mode)
	}
	a.cmd = exec.Command(agentBinary(tb), args...)
	a.cmd.Stdout, a.cmd.Stderr = a.out, a.out
	a.client = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", a.sock)
	}}, Timeout: 10 * time.Minute}
	// In the fw namespace like the ctl end-to-end tests (NS.Start only
	// enters the namespace, /sys and the bpffs pins stay the host's).
	topo.FW.Start(tb, a.cmd)
	go func() { a.done <- a.cmd.Wait() }()
	tb.Cleanup(func() { a.stop(tb) })
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, err := a.status(); err == nil {
			return a
		} else if time.Now().After(deadline) {
			tb.Fatalf("agent did not answer: %v\n%s", err, a.out.String())
		}
		select {
		case err := <-a.done:
			a.done <- err
			tb.Fatalf("agent exited (%v) before it answered:\n%s", err, a.out.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (a *agent) stop(tb testing.TB) {
	if a.cmd.ProcessState != nil {
		return
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-a.done:
		a.done <- err
		if err != nil {
			tb.Errorf("agent exit: %v\n%s", err, a.out.String())
		}
	case <-time.After(30 * time.Second):
		_ = a.cmd.Process.Kill()
		tb.Errorf("agent did not stop within 30s:\n%s", a.out.String())
	}
}

func (a *agent) pid() int { return a.cmd.Process.Pid }

func (a *agent) call(method, path, ctype string, body []byte, out any) error {
	req, err := http.NewRequest(method, "http://deepwall"+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(data))
	}
	return json.Unmarshal(data, out)
}

// status is GET /v1/status.
func (a *agent) status() (ctl.Status, error) {
	var st ctl.Status
	err := a.call(http.MethodGet, "/v1/status", "", nil, &st)
	return st, err
}

// apply replaces the running rule set (PUT /v1/rules, what `deepwall rules
// apply` does) and returns the agent's answer and the call's wall time.
func (a *agent) apply(yaml []byte) (ctl.ChangeResult, time.Duration, error) {
	var res ctl.ChangeResult
	start := time.Now()
	err := a.call(http.MethodPut, "/v1/rules?comment=bench", "application/yaml", yaml, &res)
	return res, time.Since(start), err
}
