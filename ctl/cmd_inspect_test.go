package ctl

import (
	"encoding/json"
	"errors"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/deepwall/deepwall/ctl/eve"
	"github.com/deepwall/deepwall/dpi/pcapio"
	"github.com/deepwall/deepwall/internal/testnet"
)

// writeCapture writes a small HTTP conversation with an attack to a pcap
// file and returns its path.
func writeCapture(t *testing.T, dir string) string {
	t.Helper()
	c := netip.MustParseAddrPort("198.18.0.1:40000")
	s := netip.MustParseAddrPort("198.18.1.1:80")
	req := "GET /?q=1%27+union+select+password+from+users-- HTTP/1.1\r\nHost: shop\r\n\r\n"
	specs := []testnet.FrameSpec{
		{Src: c, Dst: s, Proto: testnet.ProtoTCP, Flags: testnet.SYN, Seq: 99},
		{Src: s, Dst: c, Proto: testnet.ProtoTCP, Flags: testnet.SYN | testnet.ACK, Seq: 499, Ack: 100},
		{Src: c, Dst: s, Proto: testnet.ProtoTCP, Flags: testnet.ACK, Seq: 100, Ack: 500},
		{Src: c, Dst: s, Proto: testnet.ProtoTCP, Flags: testnet.ACK | testnet.PSH, Seq: 100, Ack: 500, Payload: []byte(req)},
	}
	path := filepath.Join(dir, "attack.pcap")
	var frames []pcapio.Frame
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i, sp := range specs {
		frames = append(frames, pcapio.Frame{Data: testnet.Frame(t, sp), Timestamp: ts.Add(time.Duration(i) * time.Millisecond)})
	}
	if err := pcapio.WriteFile(path, frames); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestInspect(t *testing.T) {
	dir := t.TempDir()
	good := writeCapture(t, dir)

	code, out, errs := runCLI(t, "inspect", "-r", good)
	if code != 0 || errs != "" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	var types []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev eve.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("not JSON: %q: %v", line, err)
		}
		types = append(types, string(ev.EventType))
		if ev.EventType == eve.EventAlert && (ev.Alert.Action != "blocked" || ev.HTTP == nil || ev.HTTP.Hostname != "shop") {
			t.Errorf("alert %s", line)
		}
	}
	if len(types) < 2 || types[0] != "alert" || types[len(types)-1] != "flow" {
		t.Errorf("event types %v\n%s", types, out)
	}

	code, _, errs = runCLI(t, "inspect", "-r", good, "--summary")
	if code != 0 {
		t.Fatalf("--summary: exit %d", code)
	}
	for _, w := range []string{"frames", "4 (", "flows", "app protocols", "http", "alerts by signature", "942100", "drops by reason", "rule", "inspection time"} {
		if !strings.Contains(errs, w) {
			t.Errorf("summary lacks %q:\n%s", w, errs)
		}
	}

	// The same capture as pcapng.
	frames, err := pcapio.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	ng := filepath.Join(dir, "attack.pcapng")
	nf, err := os.Create(ng)
	if err != nil {
		t.Fatal(err)
	}
	nw, err := pcapgo.NewNgWriter(nf, layers.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range frames {
		if err := nw.WritePacket(gopacket.CaptureInfo{Timestamp: f.Timestamp, CaptureLength: len(f.Data), Length: len(f.Data)}, f.Data); err != nil {
			t.Fatal(err)
		}
	}
	nw.Flush()
	nf.Close()
	code, ngOut, _ := runCLI(t, "inspect", "-r", ng)
	if code != 0 || ngOut != out {
		t.Errorf("pcapng: exit %d, events differ from the pcap's:\n%s\n%s", code, ngOut, out)
	}

	rulesFile := filepath.Join(dir, "rules.yaml")
	os.WriteFile(rulesFile, []byte("rules:\n  - {id: 7, name: select, action: alert, match: {field: http.args, regex: select}}\n"), 0o600)
	code, out, _ = runCLI(t, "inspect", "--rules", rulesFile, "-r", good)
	if code != 0 || !strings.Contains(out, `"signature_id":7`) || !strings.Contains(out, `"action":"allowed"`) {
		t.Errorf("--rules: exit %d\n%s", code, out)
	}

	data, _ := os.ReadFile(good)
	trunc := filepath.Join(dir, "truncated.pcap")
	os.WriteFile(trunc, data[:len(data)-10], 0o600)
	garbage := filepath.Join(dir, "garbage.pcap")
	os.WriteFile(garbage, []byte("this is not a capture file at all"), 0o600)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("rules:\n  - {id: 1, action: blok}\n"), 0o600)
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"-r", trunc}, []string{"truncated.pcap", "record 4", "file ends inside a record"}},
		{[]string{"-r", garbage}, []string{"garbage.pcap", "not a pcap or pcapng file"}},
		{[]string{"-r", filepath.Join(dir, "missing.pcap")}, []string{"missing.pcap", "no such file"}},
		{nil, []string{"no capture"}},
		{[]string{"--rules", bad, "-r", good}, []string{"bad.yaml:2", "blok"}},
	} {
		err := runErr(t, append([]string{"inspect"}, tc.args...)...)
		if err == nil {
			t.Errorf("%v: no error", tc.args)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: message lacks %q: %q", tc.args, w, err)
			}
		}
	}
	// Main prints the error and exits non-zero.
	if code := Main([]string{"inspect", "-r", garbage}); code != 1 {
		t.Errorf("Main: exit %d", code)
	}
	// The truncated file's complete records were inspected.
	code, out, _ = runCLI(t, "inspect", "-r", trunc)
	if code == 0 || !strings.Contains(out, `"event_type":"flow"`) {
		t.Errorf("truncated: exit %d, events %q", code, out)
	}
}

// runErr runs the command line and returns the error Main would print.
func runErr(tb testing.TB, args ...string) error {
	tb.Helper()
	root := newRootCommand()
	root.SetArgs(args)
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	return root.Execute()
}

// Captures of the link types other than Ethernet give the events of the
// same traffic captured on Ethernet.
func TestInspectLinkTypes(t *testing.T) {
	dir := t.TempDir()
	eth := writeCapture(t, dir)
	rulesFile := filepath.Join(dir, "rules.yaml")
	os.WriteFile(rulesFile, []byte("rules:\n  - {id: 7, name: select, action: block, match: {field: http.args, regex: select}}\n"), 0o600)
	cache := filepath.Join(dir, "cache")
	code, want, errs := runCLI(t, "inspect", "--cache-dir", cache, "--rules", rulesFile, "-r", eth)
	if code != 0 || !strings.Contains(want, `"signature_id":7`) {
		t.Fatalf("ethernet: exit %d %s\n%s", code, errs, want)
	}
	frames, err := pcapio.ReadFile(eth)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		link   layers.LinkType
		header func(etherType []byte) []byte
	}{
		{layers.LinkTypeLinuxSLL, func(et []byte) []byte { return []byte{0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, et[0], et[1]} }},
		{layers.LinkTypeLinuxSLL2, func(et []byte) []byte {
			return []byte{et[0], et[1], 0, 0, 0, 0, 0, 3, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0}
		}},
		{layers.LinkTypeRaw, func([]byte) []byte { return nil }},
		{layers.LinkTypeNull, func([]byte) []byte { return []byte{2, 0, 0, 0} }},
		{layers.LinkTypeLoop, func([]byte) []byte { return []byte{0, 0, 0, 2} }},
		{layers.LinkTypePPP, func([]byte) []byte { return []byte{0xff, 0x03, 0x00, 0x21} }},
	} {
		path := filepath.Join(dir, tc.link.String()+".pcap")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		w := pcapgo.NewWriterNanos(f)
		w.WriteFileHeader(65535, tc.link)
		for _, fr := range frames {
			rec := append(tc.header(fr.Data[12:14]), fr.Data[14:]...)
			w.WritePacket(gopacket.CaptureInfo{Timestamp: fr.Timestamp, CaptureLength: len(rec), Length: len(rec)}, rec)
		}
		f.Close()
		code, got, errs := runCLI(t, "inspect", "--cache-dir", cache, "--rules", rulesFile, "-r", path)
		if code != 0 || got != want {
			t.Errorf("%v: exit %d %s, events differ from ethernet's:\n%s\n%s", tc.link, code, errs, got, want)
		}
	}
}

// The compiled rules are cached: the second run loads what the first wrote,
// and a changed rule file is compiled again.
func TestInspectCache(t *testing.T) {
	dir := t.TempDir()
	capture := writeCapture(t, dir)
	rulesFile := filepath.Join(dir, "rules.yaml")
	cache := filepath.Join(dir, "cache")
	write := func(name string) {
		os.WriteFile(rulesFile, []byte("rules:\n  - {id: 7, name: "+name+", action: alert, match: {field: http.args, regex: select}}\n"), 0o600)
	}
	run := func(want string) {
		t.Helper()
		code, out, errs := runCLI(t, "inspect", "--cache-dir", cache, "--rules", rulesFile, "-r", capture)
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("exit %d %s, want %q in\n%s", code, errs, want, out)
		}
	}
	write("first")
	run(`"signature":"first"`)
	files, _ := filepath.Glob(filepath.Join(cache, "inspect-*.compiled"))
	if len(files) != 1 {
		t.Fatalf("cache files %v", files)
	}
	st, _ := os.Stat(files[0])
	run(`"signature":"first"`)
	if st2, _ := os.Stat(files[0]); !st2.ModTime().Equal(st.ModTime()) {
		t.Error("cache rewritten by a run over the same rules")
	}
	write("second")
	run(`"signature":"second"`)
	// No cache at all.
	code, out, _ := runCLI(t, "inspect", "--cache-dir", "", "--rules", rulesFile, "-r", capture)
	if code != 0 || !strings.Contains(out, `"signature":"second"`) {
		t.Errorf("--cache-dir '': exit %d\n%s", code, out)
	}
}

// inspectChildEnv makes the test binary run the command line in
// DEEPWALL_INSPECT_ARGS (separated by US, 0x1f) as deepwall would, for a test to
// signal it.
const inspectChildEnv = "DEEPWALL_INSPECT_ARGS"

func TestInspectChild(t *testing.T) {
	args := os.Getenv(inspectChildEnv)
	if args == "" {
		t.Skip("run by TestInspectSignal")
	}
	os.Exit(Main(strings.Split(args, "\x1f")))
}

// SIGINT and SIGTERM stop inspect promptly while it compiles the rules
// (Hyperscan's compiler is not interruptible: inspect stops waiting for
// it) and while it inspects (the events of the frames read are printed).
func TestInspectSignal(t *testing.T) {
	dir := t.TempDir()
	eth := writeCapture(t, dir)
	start := func(tb testing.TB, args ...string) (*exec.Cmd, *strings.Builder, *strings.Builder) {
		tb.Helper()
		cmd := exec.Command(os.Args[0], "-test.run=^TestInspectChild$")
		cmd.Env = append(os.Environ(), inspectChildEnv+"="+strings.Join(args, "\x1f"))
		var out, errs strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errs
		if err := cmd.Start(); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd, &out, &errs
	}
	stop := func(tb testing.TB, cmd *exec.Cmd, sig os.Signal, errs *strings.Builder, want string) {
		tb.Helper()
		t0 := time.Now()
		if err := cmd.Process.Signal(sig); err != nil {
			tb.Fatal(err)
		}
		err := cmd.Wait()
		took := time.Since(t0)
		if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.ExitCode() != 130 {
			tb.Errorf("exit %v, want status 130; stderr %s", err, errs)
		}
		if !strings.Contains(errs.String(), want) {
			tb.Errorf("stderr %q lacks %q", errs, want)
		}
		if took > 2*time.Second {
			tb.Errorf("stopped %v after the signal", took)
		}
	}

	t.Run("compiling", func(t *testing.T) {
		// The default pack without a cache compiles for seconds.
		cmd, _, errs := start(t, "inspect", "--cache-dir", "", "-r", eth)
		time.Sleep(300 * time.Millisecond)
		stop(t, cmd, syscall.SIGTERM, errs, "interrupted while reading the rules")
	})
	t.Run("inspecting", func(t *testing.T) {
		// The capture comes through a pipe that keeps it open after its
		// first frames, as a long capture would be still being read.
		fifo := filepath.Join(dir, "capture.fifo")
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Fatal(err)
		}
		rulesFile := filepath.Join(dir, "rules.yaml")
		os.WriteFile(rulesFile, []byte("rules:\n  - {id: 7, name: select, action: alert, match: {field: http.args, regex: select}}\n"), 0o600)
		cmd, out, errs := start(t, "inspect", "--cache-dir", "", "--rules", rulesFile, "-r", fifo)
		pipe, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer pipe.Close()
		data, err := os.ReadFile(eth)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pipe.Write(data); err != nil {
			t.Fatal(err)
		}
		// The child compiles one regex and reads the frames in well under
		// this, then waits in a read for more.
		time.Sleep(2 * time.Second)
		stop(t, cmd, syscall.SIGINT, errs, "interrupted after 4 frames")
		for _, want := range []string{`"signature_id":7`, `"event_type":"flow"`} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("events lack %s:\n%s", want, out)
			}
		}
	})
}
