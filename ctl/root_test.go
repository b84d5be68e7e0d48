package ctl

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/deepwall/deepwall/ctl/api"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

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

// TestHelpText fails when a command or a flag has no help text: every
// command a user can see has a one-line summary and a description, every
// flag a usage line (man pages and completion are generated from them).
func TestHelpText(t *testing.T) {
	root := newRootCommand()
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden {
			return
		}
		if c.Short == "" {
			t.Errorf("%q has no short help", c.CommandPath())
		}
		if c.Long == "" && c.HasParent() && c.Name() != "help" {
			t.Errorf("%q has no long help", c.CommandPath())
		}
		check := func(f *pflag.Flag) {
			if !f.Hidden && strings.TrimSpace(f.Usage) == "" {
				t.Errorf("%q: flag --%s has no help", c.CommandPath(), f.Name)
			}
		}
		c.LocalFlags().VisitAll(check)
		c.InheritedFlags().VisitAll(check)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// TestManAndCompletion writes the manual pages and the completion scripts
// and checks that every visible command has its page.
func TestManAndCompletion(t *testing.T) {
	dir := t.TempDir()
	if code, _, errs := runCLI(t, "man", "--dir", dir); code != 0 {
		t.Fatalf("man: exit %d: %s", code, errs)
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" {
			return
		}
		page := filepath.Join(dir, strings.ReplaceAll(c.CommandPath(), " ", "-")+".8")
		b, err := os.ReadFile(page)
		if err != nil {
			t.Errorf("no manual page for %q: %v", c.CommandPath(), err)
		} else if !strings.Contains(string(b), c.Short) {
			t.Errorf("%s does not hold the command's summary %q", page, c.Short)
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCommand())
	for _, shell := range []string{"bash", "zsh", "fish"} {
		code, out, errs := runCLI(t, "completion", shell)
		if code != 0 || !strings.Contains(out, "deepwall") || len(out) < 1000 {
			t.Errorf("completion %s: exit %d, %d bytes, stderr %q", shell, code, len(out), errs)
		}
	}
}
