package ctl

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs the deepwall command line and returns its exit status and
// what it printed.
func runCLI(tb testing.TB, args ...string) (code int, stdout, stderr string) {
	tb.Helper()
	var out, errw bytes.Buffer
	code = execute(context.Background(), args, &out, &errw)
	return code, out.String(), errw.String()
}

func TestRulesValidate(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte(`rules:
  - {id: 10, name: deny telnet, action: block, proto: tcp, dst_port: 23}
  - {id: 11, action: alert, enabled: false, proto: tcp, dst_port: 21}
  - {id: 942100, action: block, match: {field: http.args, regex: 'union\s+select', transforms: [url_decode]}}
  - {id: 942101, action: block, match: {field: http.args, detect: sqli}}
`), 0o600)
	os.WriteFile(bad, []byte("rules:\n  - id: 1\n    action: block\n    dst_port: 9000-8000\n    match: {field: http.args, regex: 'a(b'}\n"), 0o600)

	code, out, errs := runCLI(t, "rules", "validate", good)
	if code != 0 || errs != "" {
		t.Fatalf("good file: exit %d, stderr %q", code, errs)
	}
	want := good + ": 4 rules (1 disabled), 1 ACL, 2 layer-7 (1 Hyperscan databases, 1 libinjection), compiled in "
	if !strings.HasPrefix(out, want) || strings.Count(out, "\n") != 1 {
		t.Errorf("summary %q, want prefix %q", out, want)
	}

	code, out, errs = runCLI(t, "rules", "validate", good, bad)
	if code != 1 {
		t.Errorf("bad file: exit %d, want 1", code)
	}
	for _, w := range []string{
		bad + `:4:15: rule 1: dst_port: range "9000-8000" is empty: 9000 is above 8000`,
		bad + ":5:40: rule 1: regex: hyperscan: Missing close parenthesis for group started at index 1",
	} {
		if !strings.Contains(errs, w+"\n") {
			t.Errorf("stderr %q lacks %q", errs, w)
		}
	}
	if !strings.Contains(out, good+": 4 rules") {
		t.Errorf("good file not summarised among bad ones: %q", out)
	}

	if code, _, errs := runCLI(t, "rules", "validate", filepath.Join(dir, "missing.yaml")); code != 1 || !strings.Contains(errs, "no such file") {
		t.Errorf("missing file: exit %d, %q", code, errs)
	}
	if code, _, _ := runCLI(t, "rules", "validate"); code == 0 {
		t.Error("no arguments accepted")
	}
}

func TestRulesDefaultPack(t *testing.T) {
	code, out, _ := runCLI(t, "rules", "default-pack")
	if code != 0 || !strings.Contains(out, "id: 942190") {
		t.Fatalf("exit %d, output %.100q", code, out)
	}
	path := filepath.Join(t.TempDir(), "pack.yaml")
	os.WriteFile(path, []byte(out), 0o600)
	if code, out, errs := runCLI(t, "rules", "validate", path); code != 0 || !strings.Contains(out, "ACL") {
		t.Errorf("default pack does not validate: %d %q %q", code, out, errs)
	}
}
