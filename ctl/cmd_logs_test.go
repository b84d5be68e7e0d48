package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deepwall/deepwall/ctl/eve"
	"github.com/deepwall/deepwall/internal/testutil"
)

func testEvents() []*eve.Event {
	ts := eve.EveTime(time.Date(2026, 11, 23, 21, 0, 0, 123456000, time.UTC))
	return []*eve.Event{
		{Timestamp: ts, FlowID: 1, EventType: eve.EventAlert, SrcIP: "198.18.0.1", SrcPort: 40000, DestIP: "198.18.0.2", DestPort: 80,
			Proto: "TCP", AppProto: "http", Direction: "to_server",
			Alert: &eve.Alert{Action: "blocked", GID: 1, SignatureID: 942100, Rev: 1, Signature: "SQL injection: UNION SELECT",
				Category: "sqli", Severity: 2, AlertExtra: eve.AlertExtra{Field: "http.args", Matched: "union select"}},
			HTTP: &eve.HTTPInfo{Hostname: "shop.example", URL: "/search?q=1 union select \x1b[31mred", Method: "GET"}},
		{Timestamp: ts, FlowID: 2, EventType: eve.EventDrop, SrcIP: "2001:2::1", SrcPort: 5353, DestIP: "2001:2::2", DestPort: 53,
			Proto: "UDP", Drop: &eve.Drop{Reason: "decode.truncated", Len: 20}},
		{Timestamp: ts, FlowID: 3, EventType: eve.EventFlow, SrcIP: "198.18.0.1", SrcPort: 40001, DestIP: "198.18.0.2", DestPort: 443,
			Proto: "TCP", AppProto: "tls", TLS: &eve.TLSInfo{SNI: "api.example", Version: "TLS 1.3"},
			Flow: &eve.FlowStats{PktsToServer: 10, PktsToClient: 12, BytesToServer: 2048, BytesToClient: 1 << 20, Age: 3,
				State: "closed", Reason: "closed", Action: "pass", FlowExtra: eve.FlowExtra{Bypassed: true}}},
		{Timestamp: ts, FlowID: 4, EventType: eve.EventAlert, SrcIP: "198.18.0.2", SrcPort: 80, DestIP: "198.18.0.1", DestPort: 40002,
			Proto: "TCP", AppProto: "http", Direction: "to_client",
			Alert: &eve.Alert{Action: "allowed", SignatureID: 5001, Signature: "card number", Category: "dlp", Severity: 3,
				AlertExtra: eve.AlertExtra{Field: "http.response_body", Matched: "4111********1111"}}},
	}
}

func writeEvents(tb testing.TB, path string, evs []*eve.Event) {
	tb.Helper()
	var b bytes.Buffer
	for _, ev := range evs {
		line, err := json.Marshal(ev)
		if err != nil {
			tb.Fatal(err)
		}
		b.Write(append(line, '\n'))
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		tb.Fatal(err)
	}
}

func TestLogsPretty(t *testing.T) {
	t.Setenv("TZ", "UTC")
	time.Local = time.UTC
	path := filepath.Join(t.TempDir(), "eve.json")
	writeEvents(t, path, testEvents())
	// An incomplete last line (the writer mid-line) is not shown.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"timestamp":"2026-11-23T21:00:01.000000+0000","flow_id":9,"event_type":"al`)
	f.Close()
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"logs.txt", nil},
		{"logs-alert.txt", []string{"--type", "alert"}},
		{"logs-last1.txt", []string{"-n", "1", "--type", "flow,drop"}},
		{"logs-json.txt", []string{"-n", "2", "-o", "json"}},
	} {
		code, out, errs := runCLI(t, append([]string{"logs", "--file", path}, tc.args...)...)
		if code != 0 || errs != "" {
			t.Errorf("%s: exit %d %s", tc.name, code, errs)
		}
		testutil.Golden(t, filepath.Join("testdata", "golden", tc.name), []byte(out), *update)
	}
	if code, _, errs := runCLI(t, "logs", "--file", path, "--type", "alerts"); code == 0 || !strings.Contains(errs, "alert, drop or flow") {
		t.Errorf("bad type: %d %s", code, errs)
	}
	if code, _, errs := runCLI(t, "logs", "--file", path+".none"); code == 0 || !strings.Contains(errs, "no such file") {
		t.Errorf("missing file: %d %s", code, errs)
	}
}

func TestLogsTailLongFile(t *testing.T) {
	// Lines spanning the backwards reader's chunks, and one longer than
	// eve.MaxLine that is skipped.
	path := filepath.Join(t.TempDir(), "eve.json")
	var evs []*eve.Event
	for i := range 3000 {
		ev := *testEvents()[0]
		ev.FlowID = uint64(i)
		ev.HTTP = &eve.HTTPInfo{URL: "/" + strings.Repeat("x", i%500)}
		evs = append(evs, &ev)
	}
	writeEvents(t, path, evs)
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"event_type":"alert","flow_id":99999,"x":"` + strings.Repeat("y", eve.MaxLine) + "\"}\n")
	ev := *evs[0]
	ev.FlowID = 3000
	line, _ := json.Marshal(&ev)
	f.Write(append(line, '\n'))
	f.Close()
	for _, n := range []int{1, 7, 2999, 0} {
		code, out, errs := runCLI(t, "logs", "--file", path, "-n", fmt.Sprint(n), "-o", "json")
		if code != 0 {
			t.Fatalf("exit %d %s", code, errs)
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		want := n
		if n == 0 {
			want = 3001
		}
		if len(lines) != want {
			t.Fatalf("-n %d: %d lines", n, len(lines))
		}
		for i, l := range lines {
			var got eve.Event
			if err := json.Unmarshal([]byte(l), &got); err != nil {
				t.Fatalf("-n %d line %d: %v", n, i, err)
			}
			// Ids 0..3000 in order; the over-long line is skipped.
			if wantID := uint64(3001 - want + i); got.FlowID != wantID {
				t.Fatalf("-n %d line %d: flow %d, want %d", n, i, got.FlowID, wantID)
			}
		}
	}
}

// lockedBuffer is a bytes.Buffer safe to read while a command writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// logs -f follows the live file through rotations (rename, as eve.Log
// and logrotate do) and copytruncate, and sees every event exactly once.
func TestLogsFollowRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "eve.json")
	el, err := eve.Open(eve.Config{Path: path, MaxBytes: 4 << 10, Keep: 100})
	if err != nil {
		t.Fatal(err)
	}
	ev := func(i int) *eve.Event {
		e := *testEvents()[2]
		e.FlowID = uint64(i)
		return &e
	}
	const before = 5
	for i := range before {
		el.Emit(ev(i))
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if b, _ := os.ReadFile(path); bytes.Count(b, []byte("\n")) == before {
			break
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out lockedBuffer
	done := make(chan int)
	go func() {
		done <- execute(ctx, []string{"logs", "--file", path, "-f", "-n", "2", "-o", "json"}, &out, &out)
	}()
	time.Sleep(300 * time.Millisecond)
	const n = 400
	for i := before; i < before+n; i++ {
		for !el.Emit(ev(i)) {
			time.Sleep(time.Millisecond)
		}
		if i%50 == 0 {
			time.Sleep(50 * time.Millisecond) // let the follower see several files
		}
	}
	el.Close()
	if el.Stats().Rotations < 5 {
		t.Fatalf("only %d rotations", el.Stats().Rotations)
	}
	want := 2 + n
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(out.String(), "\n") < want && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("logs -f exit %d: %s", code, out.String())
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != want {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), want, ids(lines))
	}
	for i, l := range lines {
		var got eve.Event
		if err := json.Unmarshal([]byte(l), &got); err != nil || got.FlowID != uint64(i+before-2) {
			t.Fatalf("line %d: flow %d (%v), want %d", i, got.FlowID, err, i+before-2)
		}
	}
}

func TestClean(t *testing.T) {
	for in, want := range map[string]string{
		"plain /path?q=1":  "plain /path?q=1",
		"\x1b[31mred":      `\x1b[31mred`,
		"tab\there":        `tab\there`,
		"caf\u00e9":        "caf\u00e9",
		"bad\xffutf8":      `bad\xffutf8`,
		"c1\u009bcontrol":  `c1\u009bcontrol`,
		"new\nline\r\x00x": `new\nline\r\x00x`,
	} {
		if got := clean(in); got != want {
			t.Errorf("clean(%q) = %q, want %q", in, got, want)
		}
	}
}

func ids(lines []string) string {
	var b strings.Builder
	for _, l := range lines {
		var ev eve.Event
		json.Unmarshal([]byte(l), &ev)
		fmt.Fprintf(&b, "%d ", ev.FlowID)
	}
	return b.String()
}
