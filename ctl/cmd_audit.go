package ctl

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/deepwall/deepwall/ctl/agent"
	"github.com/deepwall/deepwall/ctl/audit"
	"github.com/deepwall/deepwall/ctl/eve"
)

func newAuditCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Work with the audit log of rule changes",
		Long: `The agent appends one JSON line to its audit log for every attempt to
change the rules (start, add, apply, delete), refused ones too,
with who asked (uid, gid, pid), the versions before and after, and the
SHA-256 of the line before it, so that an edited, removed or reordered
line breaks the chain. "audit verify" checks it.`,
	}
	var path, state string
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Check the audit log's hash chain",
		Long: `verify reads the audit log (no agent needed) and checks that every entry
carries the SHA-256 of the one before it, and that the last entry is the one
the agent recorded in its state directory. It reports the first broken link:
an edited, removed, inserted or reordered line.

Exit status: 0 when the chain holds, 1 when it is broken or unreadable.`,
		Example: `  deepwall audit verify
  deepwall audit verify --file /var/log/deepwall/audit.json --state /var/lib/deepwall`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			head := ""
			if state != "" {
				b, err := os.ReadFile(filepath.Join(state, audit.HeadFile))
				switch {
				case err == nil:
					head = strings.TrimSpace(string(b))
				case !errors.Is(err, os.ErrNotExist):
					return fmt.Errorf("audit head: %w", err)
				}
			}
			res, err := audit.Verify(path, head)
			if err != nil {
				return err
			}
			if res.Broken != nil {
				return &exitError{code: 1, err: fmt.Errorf("audit log %s: chain broken at line %d: %s (%d entries before it verify)",
					path, res.Broken.Line, res.Broken.Reason, res.Entries)}
			}
			anchored := "not checked against the agent's record (no --state head)"
			if head != "" {
				anchored = "last entry matches the agent's record"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "audit log %s: %d %s, chain intact, %s (head %s)\n", path, res.Entries,
				map[bool]string{true: "entry", false: "entries"}[res.Entries == 1], anchored, short(res.Head))
			return nil
		},
	}
	verify.Flags().StringVar(&path, "file", filepath.Join(filepath.Dir(eve.DefaultPath), "audit.json"), "the audit log")
	verify.Flags().StringVar(&state, "state", agent.DefaultStateDir, "the agent's state directory, holding the chain's recorded head (\"\" to skip)")
	cmd.AddCommand(verify)
	return cmd
}
