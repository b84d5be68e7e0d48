package ctl

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/deepwall/deepwall/rules"
)

func newRulesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rules",
		Short: "Work with deepwall rule files",
		Long: `Rule files are YAML: ordered layer-3/4 ACL rules (enforced in XDP) and
layer-7 rules (regexes over HTTP, TLS and DNS fields or raw payload,
libinjection detectors, DLP validators) run by the DPI engine.`,
	}
	return cmd
}

func newRulesValidateCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE [FILE...]",
		Short: "Check rule files and compile them, reporting every error",
		Long: `validate reads each FILE (and the files it includes), checks every rule and
compiles the set into Hyperscan databases, as the agent would.

Each problem is printed on its own line as

    file:line:col: rule ID: message

(rule #N when the rule has no valid id), for example a bad regex names the
column inside the pattern and Hyperscan's own reason. All problems of a file
are reported, not just the first. Each valid file gets a one-line summary:
its rules, how many are ACL rules (compiled into XDP) and how many are
layer-7 rules, and the compile time.

Exit status: 0 when every file is valid, 1 otherwise.`,
		Example: `  deepwall rules validate /etc/deepwall/rules.yaml
  deepwall rules validate base.yaml team-*.yaml`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			bad := 0
			for _, path := range args {
				if !validateRuleFile(cmd.OutOrStdout(), cmd.ErrOrStderr(), path) {
					bad++
				}
			}
			if bad > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d of %d rule files invalid", bad, len(args))}
			}
			return nil
		},
	}
}

// validateRuleFile parses and compiles one file, printing its errors to
// errw or its summary to out; it reports whether the file is valid.
func validateRuleFile(out, errw io.Writer, path string) bool {
	set, err := rules.ParseFile(path)
	if err == nil {
		start := time.Now()
		var c *rules.Compiled
		if c, err = rules.Compile(set); err == nil {
			elapsed := time.Since(start)
			defer c.Close()
			disabled := len(set.Rules) - len(set.Enabled())
			fmt.Fprintf(out, "%s: %d rules (%d disabled), %d ACL, %d layer-7 (%d Hyperscan databases, %d libinjection), compiled in %s\n",
				path, len(set.Rules), disabled, len(c.ACL), len(c.L7), len(c.Groups), len(c.Detect), elapsed.Round(time.Millisecond))
			return true
		}
	}
	var list rules.ErrorList
	if errors.As(err, &list) {
		for _, e := range list {
			fmt.Fprintln(errw, e.Error())
		}
		return false
	}
	fmt.Fprintf(errw, "%s: %v\n", path, err)
	return false
}

func newRulesDefaultPackCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "default-pack",
		Short: "Print the built-in default rule pack",
		Long: `default-pack prints the rule pack deepwall ships (WAF rules for SQL
injection, XSS, path traversal, command injection, Log4Shell, SSRF and
scanners; DLP rules for card numbers, SSNs, cloud keys, private keys and
tokens) as YAML, to start a rule file from or to include.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := cmd.OutOrStdout().Write(rules.DefaultPackYAML())
			return err
		},
	}
}
