package ctl

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/rules"
)

func newRulesListCommand() *cobra.Command {
	var sock, out string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the running agent's rules",
		Long: `list shows the rule set the agent runs: its version and hash, then one line
per rule (id, action, severity, whether it is an ACL rule enforced in XDP or a
layer-7 rule, the field it matches, category and name).`,
		Example: `  deepwall rules list
  deepwall rules list -o json | jq '.rules[] | select(.category == "sqli") | .id'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			var rl api.RuleList
			if err := api.NewClient(sock).Do(cmd.Context(), http.MethodGet, "/v1/rules", nil, nil, &rl); err != nil {
				return err
			}
			if out == "json" {
				return printJSON(cmd.OutOrStdout(), rl)
			}
			printRuleList(cmd.OutOrStdout(), &rl)
			return nil
		},
	}
	socketFlag(cmd, &sock)
	outputFlag(cmd, &out)
	return cmd
}

func printRuleList(w io.Writer, rl *api.RuleList) {
	fmt.Fprintf(w, "%s\n\n", ruleSetLine(&rl.RuleSet))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tACTION\tSEVERITY\tKIND\tFIELD\tCATEGORY\tNAME")
	for _, r := range rl.Rules {
		kind := r.Kind
		if !r.Enabled {
			kind += " (off)"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Action, r.Severity, kind, dash(r.Field), dash(r.Category), dash(r.Name))
	}
	tw.Flush()
}

func ruleSetLine(rs *api.RuleSetInfo) string {
	return fmt.Sprintf("rule set version %d (sha256 %s), %d rules (%d disabled): %d ACL, %d layer-7; acl_default %s",
		rs.Version, short(rs.Hash), rs.Rules, rs.Disabled, rs.ACL, rs.Layer7, rs.ACLDefault)
}

func short(hash string) string {
	if len(hash) > 12 {
		return hash[:12]
	}
	return hash
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newRulesShowCommand() *cobra.Command {
	var sock, out string
	cmd := &cobra.Command{
		Use:     "show ID",
		Short:   "Show one rule of the running agent",
		Long:    `show prints one rule of the running set in canonical YAML.`,
		Example: `  deepwall rules show 942100`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			id, err := parseRuleID(args[0])
			if err != nil {
				return err
			}
			var rd api.RuleDetail
			if err := api.NewClient(sock).Do(cmd.Context(), http.MethodGet, "/v1/rules/"+strconv.FormatUint(uint64(id), 10), nil, nil, &rd); err != nil {
				return err
			}
			if out == "json" {
				return printJSON(cmd.OutOrStdout(), rd)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "# rule %d (%s, %s) in rule set version %d\n%s", rd.ID, rd.Kind, rd.Action, rd.Version, rd.YAML)
			return nil
		},
	}
	socketFlag(cmd, &sock)
	outputFlag(cmd, &out)
	return cmd
}

func parseRuleID(s string) (uint32, error) {
	id, err := strconv.ParseUint(s, 0, 32)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("rule id %q: want a number from 1 to 4294967295", s)
	}
	return uint32(id), nil
}

// newRulesChangeCommand builds add and apply, which differ in method and
// words only.
func newRulesChangeCommand(use, method, short, long, example string) *cobra.Command {
	var sock, out, comment string
	cmd := &cobra.Command{
		Use:     use + " FILE",
		Short:   short,
		Long:    long,
		Example: example,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			req, names, err := buildRulesRequest(args[0], comment)
			if err != nil {
				printRuleErrors(cmd.ErrOrStderr(), err, nil)
				return &exitError{code: 1, err: fmt.Errorf("%s: invalid, rules not changed", args[0])}
			}
			return runChange(cmd, sock, out, method, "/v1/rules", nil, req, names)
		},
	}
	changeFlags(cmd, &sock, &out, &comment)
	return cmd
}

// changeFlags adds the flags of a rule change: --socket, -o and -m.
func changeFlags(cmd *cobra.Command, sock, out, comment *string) {
	socketFlag(cmd, sock)
	outputFlag(cmd, out)
	cmd.Flags().StringVarP(comment, "message", "m", "", "comment stored with the new version and in the audit log")
}

// runChange sends a rule change (in: the body, nil for none) and prints
// its result; names maps request file names to local paths.
func runChange(cmd *cobra.Command, sock, out, method, path string, q url.Values, in any, names map[string]string) error {
	var res api.ChangeResult
	if err := api.NewClient(sock).Do(cmd.Context(), method, path, q, in, &res); err != nil {
		return changeError(cmd.ErrOrStderr(), err, names)
	}
	if out == "json" {
		return printJSON(cmd.OutOrStdout(), res)
	}
	printChange(cmd.OutOrStdout(), &res)
	return nil
}

func newRulesAddCommand() *cobra.Command {
	return newRulesChangeCommand("add", http.MethodPost, "Add the rules of a file to the running set",
		`add validates FILE (and what it includes) here, sends it to the agent, which
appends its rules to the running set, compiles the result beside the running
rules and swaps it in without a restart. Ids must be new. On any error nothing
changes and every problem is printed as file:line:col: rule ID: message.`,
		`  deepwall rules add block-admin.yaml -m "block /admin for ticket 123"`)
}

func newRulesApplyCommand() *cobra.Command {
	return newRulesChangeCommand("apply", http.MethodPut, "Replace the running rule set with a file",
		`apply validates FILE (and what it includes), sends it to the agent, which
compiles it beside the running rules and swaps the whole set in atomically.
On any error nothing changes and every problem is printed as
file:line:col: rule ID: message.`,
		`  deepwall rules apply /etc/deepwall/rules.yaml`)
}

// buildRulesRequest reads a rule file and the files it includes into a
// request. It validates the set here first, so the files sent are exactly
// those the set needs; names maps request names back to local paths.
func buildRulesRequest(path, comment string) (*api.RulesRequest, map[string]string, error) {
	set, err := rules.ParseFile(path)
	if err != nil {
		return nil, nil, err
	}
	files := set.Files
	if len(files) == 0 {
		files = []string{path}
	}
	abs := make([]string, len(files))
	for i, f := range files {
		if abs[i], err = filepath.Abs(f); err != nil {
			return nil, nil, err
		}
	}
	root := filepath.Dir(abs[0])
	for _, a := range abs[1:] {
		for !strings.HasPrefix(a, root+string(filepath.Separator)) && root != "/" {
			root = filepath.Dir(root)
		}
	}
	req := &api.RulesRequest{Files: map[string]string{}, Comment: comment}
	names := map[string]string{}
	for i, a := range abs {
		rel, err := filepath.Rel(root, a)
		if err != nil {
			return nil, nil, err
		}
		rel = filepath.ToSlash(rel)
		data, err := os.ReadFile(a)
		if err != nil {
			return nil, nil, fmt.Errorf("load rules: %w", err)
		}
		req.Files[rel] = string(data)
		names[rel] = files[i]
		if i == 0 {
			req.Main = rel
		}
	}
	return req, names, nil
}

// printRuleErrors prints a rule error's problems one per line, naming
// local files (names maps request names to them).
func printRuleErrors(w io.Writer, err error, names map[string]string) {
	details := api.Details(err)
	var ce *api.CallError
	if errors.As(err, &ce) {
		details = ce.Body.Details
	}
	if len(details) == 0 {
		fmt.Fprintln(w, err)
		return
	}
	for _, d := range details {
		if local, ok := names[d.File]; ok {
			d.File = local
		}
		fmt.Fprintln(w, d.String())
	}
}

// changeError reports a failed change: validation problems line by line,
// then one summary line.
func changeError(w io.Writer, err error, names map[string]string) error {
	var ce *api.CallError
	if errors.As(err, &ce) && len(ce.Body.Details) > 0 {
		printRuleErrors(w, err, names)
		return &exitError{code: 1, err: fmt.Errorf("%s; rules not changed", ce.Body.Error)}
	}
	if errors.As(err, &ce) && ce.Status == http.StatusUnprocessableEntity {
		return &exitError{code: 1, err: fmt.Errorf("%s; rules not changed", ce.Body.Error)}
	}
	return err
}

func printChange(w io.Writer, r *api.ChangeResult) {
	if !r.Changed {
		fmt.Fprintf(w, "rules unchanged: version %d (sha256 %s) already says this\n", r.ToVersion, short(r.Hash))
		return
	}
	what := ""
	switch {
	case r.Op == "add" && len(r.IDs) > 0:
		what = fmt.Sprintf("; added %s", idList(r.IDs))
	case r.Op == "delete" && len(r.IDs) > 0:
		what = fmt.Sprintf("; deleted %s", idList(r.IDs))
	}
	compiled := fmt.Sprintf("compiled in %.2fs", r.CompileSecs)
	if r.Cached {
		compiled = "loaded from the compiled cache"
	}
	fmt.Fprintf(w, "rules %s: version %d -> %d (sha256 %s), %d rules%s; %s; %d fast-path %s sent back to inspection\n",
		r.Op, r.FromVersion, r.ToVersion, short(r.Hash), r.Rules, what, compiled, r.Revoked, plural(r.Revoked, "flow"))
}

func idList(ids []uint32) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatUint(uint64(id), 10)
	}
	if len(s) > 10 {
		return strings.Join(s[:10], ", ") + fmt.Sprintf(" and %d more", len(s)-10)
	}
	return strings.Join(s, ", ")
}

func newRulesDeleteCommand() *cobra.Command {
	var sock, out, comment string
	cmd := &cobra.Command{
		Use:     "delete ID",
		Short:   "Delete one rule from the running set",
		Long:    `delete removes rule ID from the running set, recompiles and swaps the result in.`,
		Example: `  deepwall rules delete 942100 -m "false positives on /search"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			id, err := parseRuleID(args[0])
			if err != nil {
				return err
			}
			q := url.Values{}
			if comment != "" {
				q["comment"] = []string{comment}
			}
			return runChange(cmd, sock, out, http.MethodDelete, "/v1/rules/"+strconv.FormatUint(uint64(id), 10), q, nil, nil)
		},
	}
	changeFlags(cmd, &sock, &out, &comment)
	return cmd
}

func newRulesExportCommand() *cobra.Command {
	var sock string
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Print the running rule set as YAML",
		Long: `export prints the running set in canonical YAML (includes expanded, defaults
written out), a file that rules apply takes back unchanged.`,
		Example: `  deepwall rules export > rules.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var y []byte
			if err := api.NewClient(sock).Do(cmd.Context(), http.MethodGet, "/v1/rules/export", nil, nil, &y); err != nil {
				return err
			}
			_, err := cmd.OutOrStdout().Write(y)
			return err
		},
	}
	socketFlag(cmd, &sock)
	return cmd
}

func newRulesHistoryCommand() *cobra.Command {
	var sock, out string
	cmd := &cobra.Command{
		Use:   "history",
		Short: "List the stored versions of the rule set",
		Long:  `history lists the versions kept in the agent's rule store, newest first.`,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			var vs []api.VersionInfo
			if err := api.NewClient(sock).Do(cmd.Context(), http.MethodGet, "/v1/rules/history", nil, nil, &vs); err != nil {
				return err
			}
			if out == "json" {
				return printJSON(cmd.OutOrStdout(), vs)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "VERSION\tTIME\tRULES\tSHA256\tCOMMENT")
			for _, v := range vs {
				cur := ""
				if v.Current {
					cur = " *"
				}
				fmt.Fprintf(tw, "%d%s\t%s\t%d\t%s\t%s\n", v.Version, cur, v.Time.UTC().Format("2006-01-02 15:04:05"), v.Rules, short(v.Hash), dash(v.Comment))
			}
			return tw.Flush()
		},
	}
	socketFlag(cmd, &sock)
	outputFlag(cmd, &out)
	return cmd
}
