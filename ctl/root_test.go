package ctl

import (
	"flag"
	"github.com/deepwall/deepwall/ctl/api"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// golden compares got with testdata/golden/name, or rewrites it with -update.
func golden(tb testing.TB, name, got string) {
	tb.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			tb.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		tb.Errorf("%s differs from the golden file (run with -update after checking):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestCLINoAgent(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	code, _, errs := runCLI(t, "status", "--socket", sock)
	if code != 1 || !strings.Contains(errs, "no agent listening on "+sock) {
		t.Errorf("exit %d, stderr %q", code, errs)
	}
	t.Setenv(api.SocketEnv, sock)
	if _, _, errs := runCLI(t, "rules", "list"); !strings.Contains(errs, sock) {
		t.Errorf("%s not used: %q", api.SocketEnv, errs)
	}
}
