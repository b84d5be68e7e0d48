package eve

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deepwall/deepwall/internal/testnet"
)

func TestParseOutputs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Output
		err  bool
	}{
		{"unix:///dev/log", Output{Kind: OutputSyslog, Network: "unixgram", Address: "/dev/log"}, false},
		{"udp://127.0.0.1:514", Output{Kind: OutputSyslog, Network: "udp", Address: "127.0.0.1:514"}, false},
		{"tcp://[2001:db8::1]:601", Output{Kind: OutputSyslog, Network: "tcp", Address: "[2001:db8::1]:601"}, false},
		{"tcp://host", Output{}, true},
		{"udp://host:514/x", Output{}, true},
		{"unix://host/dev/log", Output{}, true},
		{"/dev/log", Output{}, true},
		{"http://x:1", Output{}, true},
	} {
		got, err := ParseSyslog(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseSyslog(%q) = %+v, %v", tc.in, got, err)
		}
		if err != nil && !errors.Is(err, ErrOutput) {
			t.Errorf("ParseSyslog(%q): %v is not ErrOutput", tc.in, err)
		}
	}
	if _, err := ParseSocket("rel.sock"); !errors.Is(err, ErrOutput) {
		t.Errorf("relative socket path accepted: %v", err)
	}
}

// TestSyslogMessage parses the RFC 5424 header the writer makes.
func TestSyslogMessage(t *testing.T) {
	o := &output{cfg: Output{Kind: OutputSyslog, Network: "udp"}, host: "fw1", pid: "42"}
	ts := EveTime(time.Date(2026, 12, 7, 20, 0, 1, 123456000, time.FixedZone("x", 3600)))
	for _, tc := range []struct {
		ev   Event
		want string
	}{
		{Event{Timestamp: ts, EventType: EventAlert, Alert: &Alert{Severity: 1}}, "<170>1 2026-12-07T19:00:01.123456Z fw1 deepwall 42 alert - {}"},
		{Event{Timestamp: ts, EventType: EventAlert, Alert: &Alert{Severity: 3}}, "<172>1 2026-12-07T19:00:01.123456Z fw1 deepwall 42 alert - {}"},
		{Event{Timestamp: ts, EventType: EventDrop, Drop: &Drop{}}, "<172>1 2026-12-07T19:00:01.123456Z fw1 deepwall 42 drop - {}"},
		{Event{EventType: EventFlow}, "<174>1 - fw1 deepwall 42 flow - {}"},
	} {
		if got := string(o.syslogMessage(&tc.ev, []byte("{}"))); got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
	}
	o.cfg.Network = "tcp"
	if got := string(o.frame([]byte("<1>1 x"))); got != "6 <1>1 x" {
		t.Errorf("tcp frame %q", got)
	}
}

func testEvent(i int) *Event {
	return &Event{Timestamp: EveTime(time.Now()), FlowID: uint64(i), EventType: EventAlert, SrcIP: "198.18.0.1", SrcPort: 40000,
		DestIP: "198.18.0.2", DestPort: 80, Proto: "TCP", Alert: &Alert{Action: "blocked", SignatureID: 942100, Severity: 2}}
}

// TestOutputSocket sends events to a unix stream listener, which reads
// the JSON lines the file has.
func TestOutputSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "events.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	out, _ := ParseSocket(sock)
	l, err := Open(Config{Path: filepath.Join(dir, "eve.json"), Outputs: []Output{out}})
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	got := make(chan []uint64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		var ids []uint64
		sc := bufio.NewScanner(c)
		for len(ids) < n && sc.Scan() {
			var ev Event
			if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.CommunityID == "" {
				break
			}
			ids = append(ids, ev.FlowID)
		}
		got <- ids
	}()
	for i := range n {
		l.Emit(testEvent(i))
	}
	ids := <-got
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if len(ids) != n {
		t.Fatalf("listener read %d events, want %d", len(ids), n)
	}
	for i, id := range ids {
		if id != uint64(i) {
			t.Fatalf("event %d has flow_id %d", i, id)
		}
	}
	if st := l.Stats().Outputs; len(st) != 1 || st[0].Sent != n || st[0].Dropped != 0 || st[0].Name != "socket:"+sock {
		t.Errorf("output stats %+v", st)
	}
}

// TestOutputBackPressure checks a receiver that accepts and never reads,
// and one that is not there, cost the packet path nothing: Emit returns
// at once, the file gets every event, the outputs count what they drop.
func TestOutputBackPressure(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "stuck.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never read
		}
	}()
	stuck, _ := ParseSocket(sock)
	stuck.Queue = 64
	away, _ := ParseSyslog("unix://" + filepath.Join(dir, "nobody.sock"))
	const n = 50000
	l, err := Open(Config{Path: filepath.Join(dir, "eve.json"), Queue: n, MaxBytes: -1, Outputs: []Output{stuck, away}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range n {
		if !l.Emit(testEvent(i)) {
			t.Fatalf("event %d refused by the file's queue", i)
		}
	}
	emit := time.Since(start)
	// The writer drains into the file while the outputs are stuck.
	deadline := time.Now().Add(20 * time.Second)
	for l.Stats().Written < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	st := l.Stats()
	if st.Written != n {
		t.Fatalf("file got %d of %d events with stuck outputs", st.Written, n)
	}
	for _, o := range st.Outputs {
		if o.Dropped == 0 || o.Sent+o.Dropped > n {
			t.Errorf("output %s: sent %d dropped %d of %d", o.Name, o.Sent, o.Dropped, n)
		}
	}
	t.Logf("emit %d events: %v (%v each); outputs %+v", n, emit, emit/n, st.Outputs)
	ln.Close()
	closed := make(chan struct{})
	go func() { l.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(3 * outputWriteTimeout):
		t.Fatal("Close blocked on a stuck output")
	}
}

// TestOutputSyslogRsyslog sends events to a real rsyslogd over a unix
// socket, UDP and TCP (loopback), which parses them as RFC 5424 and
// writes back the fields it read.
func TestOutputSyslogRsyslog(t *testing.T) {
	testnet.RequireTools(t, "apt-get install rsyslog", "rsyslogd")
	dir := t.TempDir()
	udpPort, tcpPort := freePort(t, "udp"), freePort(t, "tcp")
	sock := filepath.Join(dir, "log.sock")
	outFile := filepath.Join(dir, "out.log")
	conf := fmt.Sprintf(`global(workDirectory=%q)
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket=%q UseSpecialParser="off" ParseHostname="on")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="%d")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="%d")
template(name="fields" type="string" string="%%protocol-version%%|%%app-name%%|%%procid%%|%%msgid%%|%%syslogfacility%%|%%syslogseverity%%|%%msg%%\n")
action(type="omfile" file=%q template="fields")
`, dir, sock, udpPort, tcpPort, outFile)
	confPath := filepath.Join(dir, "rsyslog.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("rsyslogd", "-n", "-f", confPath, "-i", filepath.Join(dir, "rsyslogd.pid"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitFor(t, func() bool {
		_, err := os.Stat(sock)
		return err == nil && canDial("tcp", fmt.Sprintf("127.0.0.1:%d", tcpPort))
	})

	var outs []Output
	for _, u := range []string{"unix://" + sock, fmt.Sprintf("udp://127.0.0.1:%d", udpPort), fmt.Sprintf("tcp://127.0.0.1:%d", tcpPort)} {
		o, err := ParseSyslog(u)
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, o)
	}
	l, err := Open(Config{Path: filepath.Join(dir, "eve.json"), Outputs: outs})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	for i := range n {
		l.Emit(testEvent(i))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, o := range l.Stats().Outputs {
		if o.Sent != n {
			t.Errorf("output %s sent %d of %d (dropped %d)", o.Name, o.Sent, n, o.Dropped)
		}
	}
	var lines []string
	waitFor(t, func() bool {
		b, _ := os.ReadFile(outFile)
		lines = strings.Split(strings.TrimSpace(string(b)), "\n")
		return len(lines) >= 3*n
	})
	pid := fmt.Sprint(os.Getpid())
	for _, line := range lines {
		f := strings.SplitN(line, "|", 7)
		if len(f) != 7 || f[0] != "1" || f[1] != "deepwall" || f[2] != pid || f[3] != "alert" || f[4] != "21" || f[5] != "3" {
			t.Fatalf("rsyslog read %q", line)
		}
		var ev Event
		if err := json.Unmarshal([]byte(strings.TrimSpace(f[6])), &ev); err != nil || ev.Alert == nil || ev.Alert.SignatureID != 942100 {
			t.Fatalf("message %q: %v", f[6], err)
		}
	}
}

func freePort(tb testing.TB, network string) int {
	tb.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func canDial(network, addr string) bool {
	c, err := net.DialTimeout(network, addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func waitFor(tb testing.TB, ok func() bool) {
	tb.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); {
		if time.Now().After(deadline) {
			tb.Fatal("timed out")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FuzzParseSyslog: any destination either parses into an output whose
// name parses back to it, or is refused with ErrOutput; never a panic.
func FuzzParseSyslog(f *testing.F) {
	for _, s := range []string{"unix:///dev/log", "udp://127.0.0.1:514", "tcp://[::1]:601", "tcp://h", "unix://", "%zz", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o, err := ParseSyslog(s)
		if err != nil {
			if !errors.Is(err, ErrOutput) {
				t.Fatalf("%q: %v is not ErrOutput", s, err)
			}
			return
		}
		back, err := ParseSyslog(strings.TrimPrefix(o.String(), "syslog+"))
		if err != nil || back != o {
			t.Fatalf("%q → %+v → %q → %+v, %v", s, o, o.String(), back, err)
		}
	})
}
