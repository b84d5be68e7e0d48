package testnet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"testing"
	"time"
)

// Iperf runs an iperf3 server in the server namespace and a client in the
// client namespace towards ServerIP:port for d, with args added to the
// client (-u, -P 4, -l 18, ...), and returns the receiver's rate in
// Gbit/s. The client is retried until the server listens (iperf3 -J
// reports a refused connection in its JSON, not always in its exit
// status); any other failure fails tb. It skips tb when iperf3 is missing.
func (t *Topology) Iperf(tb testing.TB, port int, d time.Duration, args ...string) float64 {
	tb.Helper()
	if _, err := exec.LookPath("iperf3"); err != nil {
		tb.Skip("iperf3 not installed")
	}
	srv := exec.Command("iperf3", "-s", "-1", "-p", fmt.Sprint(port))
	t.Server.Start(tb, srv)
	defer func() {
		_ = srv.Process.Kill()
		_ = srv.Wait()
	}()
	var r struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	var err error
	for try := 0; try < 50; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), d+20*time.Second)
		cargs := append([]string{"-c", ServerIP.String(), "-p", fmt.Sprint(port),
			"-t", fmt.Sprint(max(1, int(d.Seconds()))), "-J", "--connect-timeout", "1000"}, args...)
		var out []byte
		out, err = t.Client.Run(exec.CommandContext(ctx, "iperf3", cargs...))
		cancel()
		r.Error = ""
		if jerr := json.Unmarshal(out, &r); jerr != nil && err == nil {
			err = fmt.Errorf("parse iperf3 output: %w", jerr)
		}
		if err == nil && r.Error != "" {
			err = errors.New(r.Error)
		}
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		tb.Fatalf("iperf3 client: %v", err)
	}
	return r.End.SumReceived.BitsPerSecond / 1e9
}
