package agent_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/internal/testnet"
)

// TestPrivilegedAgentKilledDecided: what SIGKILL does to a fail-closed
// port is the same every time and in both dataplanes (docs/xdp.md "Fail
// policy", docs/nfqueue.md "A killed agent"): a flow the kernel already
// decided keeps its verdict (a bypassed transfer in progress goes on and
// completes: XDP's ALLOW entry, NFQUEUE's connmark fast path), a flow
// still under inspection stops (its next request gets nothing), and a new
// connection gets nowhere. Three rounds, each with a new agent taking over
// what the one killed before left (XDP pins, NFQUEUE chains), then a
// fail-open round: the same, except that what is not decided passes
// uninspected.
func TestPrivilegedAgentKilledDecided(t *testing.T) { forModes(t, testAgentKilledDecided) }

func testAgentKilledDecided(t *testing.T, m agentMode) {
	const transfer = 64 << 20                     // bytes, under way when the agent dies
	failClosed := []bool{true, true, true, false} // per round
	topo := m.topology(t)
	httpSrv, tlsSrv := testServer(t, topo), sizeServer(t, topo)
	dir := t.TempDir()
	for round, closed := range failClosed {
		var a *agentProc
		if closed {
			a = startAgent(t, topo, dir, "--fail-closed")
		} else {
			a = startAgent(t, topo, dir)
		}

		// A decided flow: TLS, bypassed to the kernel after its hellos.
		dec := dialSizeServer(t, topo, tlsSrv)
		deadline := time.Now().Add(10 * time.Second)
		for !bypassed(t, a, dec.port) {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the TLS flow never reached the fast path: %+v", round+1, a.Flows(t, api.FlowFilter{Port: dec.port, Limit: 10}))
			}
			if err := dec.fetch(100, 5*time.Second); err != nil {
				t.Fatalf("round %d: %v", round+1, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		// An undecided flow: HTTP keep-alive, inspected request by request.
		und := testnet.Dial(t, topo.Client, "tcp", httpSrv)
		undBr := bufio.NewReader(und)
		undGet := func(path string, timeout time.Duration) error {
			und.SetDeadline(time.Now().Add(timeout))
			fmt.Fprintf(und, "GET %s HTTP/1.1\r\nHost: server\r\n\r\n", path)
			resp, err := http.ReadResponse(undBr, nil)
			if err != nil {
				return err
			}
			resp.Body.Close()
			return nil
		}
		if err := undGet("/before", 5*time.Second); err != nil {
			t.Fatalf("round %d: keep-alive before the kill: %v", round+1, err)
		}
		if bypassed(t, a, uint16(und.LocalAddr().(*net.TCPAddr).Port)) {
			t.Fatalf("round %d: the HTTP flow is bypassed; the test needs it under inspection", round+1)
		}

		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- dec.fetch(transfer, 30*time.Second) }()
		time.Sleep(20 * time.Millisecond)
		select {
		case err := <-done:
			t.Fatalf("round %d: the transfer ended (%v) before the kill; it must be under way", round+1, err)
		default:
		}
		a.Kill(t)
		if err := <-done; err != nil {
			t.Fatalf("round %d: the decided transfer did not complete after SIGKILL: %v", round+1, err)
		}
		t.Logf("round %d: %d MiB over the bypassed flow in %v across the kill", round+1, transfer>>20, time.Since(start).Round(time.Millisecond))
		if err := dec.fetch(1<<20, 5*time.Second); err != nil {
			t.Fatalf("round %d: the decided flow after the kill: %v", round+1, err)
		}
		if err := undGet("/after", 2*time.Second); (err == nil) == closed {
			t.Fatalf("round %d (fail-closed %v): a request of a flow under inspection with the agent dead: %v", round+1, closed, err)
		}
		if err := topo.Client.Do(func() error {
			c, err := net.DialTimeout("tcp", httpSrv.String(), 1500*time.Millisecond)
			if err == nil {
				c.Close()
			}
			return err
		}); (err == nil) == closed {
			t.Fatalf("round %d (fail-closed %v): a new connection with the agent dead: %v", round+1, closed, err)
		}
		dec.Close()
		und.Close()
	}
	// The last agent's successor inspects again.
	a := startAgent(t, topo, dir, "--fail-closed")
	t.Cleanup(func() { a.stop(t) })
	if res := rawRequest(t, topo, httpSrv, get("/alive-again")); res.status != 200 {
		t.Fatalf("after the rounds: %+v", res)
	}
}

// bypassed reports whether the agent has passed the flow of a client port
// to the kernel's fast path.
func bypassed(tb testing.TB, a *agentProc, clientPort uint16) bool {
	tb.Helper()
	for _, r := range a.Flows(tb, api.FlowFilter{Port: clientPort, Limit: 10}).Flows {
		if r.Bypassed && r.Verdict == "pass" {
			return true
		}
	}
	return false
}
