package bench

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/internal/agenttest"
	"github.com/deepwall/deepwall/internal/testnet"
)

// The deepwall systems of scenarios 1, 2, 3 and 5 are the real agent:
// `deepwall run`, built from this tree with go build, started in the fw
// namespace of a topology with its state, logs and API socket in a
// temporary directory (internal/agenttest).

var buildNote sync.Once

// agentBinary builds cmd/deepwall once per harness run, saying so on the
// progress line.
func agentBinary(tb testing.TB) string {
	tb.Helper()
	buildNote.Do(func() { h.progress("building deepwall (go build ./cmd/deepwall)") })
	return agenttest.Binary(tb)
}

func cleanupAgentBinary() { agenttest.Cleanup() }

// agent is one `deepwall run` process.
type agent struct {
	*agenttest.Agent
}

// startAgent runs the agent on topo's fw ports with the rule file
// rulesPath, workers DPI workers (0: the agent's default, one per CPU) and
// --mode mode and --datapath datapath ("": the agent's defaults), waits
// until its API answers, and stops it (SIGTERM: it detaches and restores
// the ports) at cleanup.
func startAgent(tb testing.TB, topo *testnet.Topology, rulesPath string, workers int, mode, datapath string) *agent {
	tb.Helper()
	agentBinary(tb)
	a := &agent{agenttest.New(tb.TempDir())}
	args := []string{"--inner", testnet.InnerIf, "--outer", testnet.OuterIf,
		"--run-dir", filepath.Join(a.Dir, "run"), "--rules", rulesPath, "--log-level", "warn"}
	if workers > 0 {
		args = append(args, "--workers", fmt.Sprint(workers))
	}
	if mode != "" {
		args = append(args, "--mode", mode)
	}
	if datapath != "" {
		args = append(args, "--datapath", datapath)
	}
	a.Start(tb, topo.FW, args...) // stopped with SIGTERM at cleanup
	return a
}

func (a *agent) pid() int { return a.PID() }

// status is GET /v1/status.
func (a *agent) status() (api.Status, error) { return a.Client.Status(context.Background()) }

// apply replaces the running rule set (PUT /v1/rules, what `deepwall rules
// apply` does) and returns the agent's answer and the call's wall time.
func (a *agent) apply(yaml []byte) (api.ChangeResult, time.Duration, error) {
	var res api.ChangeResult
	start := time.Now()
	err := a.Client.Send(context.Background(), http.MethodPut, "/v1/rules", url.Values{"comment": {"bench"}},
		"application/yaml", bytes.NewReader(yaml), &res)
	return res, time.Since(start), err
}
