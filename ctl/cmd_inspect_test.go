package ctl

import (
	"encoding/json"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
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
