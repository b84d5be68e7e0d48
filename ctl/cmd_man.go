package ctl

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// newManCommand writes the manual pages, generated from the command tree
// itself so that they cannot drift from --help.
func newManCommand() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "man",
		Short: "Write a manual page for every command",
		Long: `Write a manual page (troff, section 8) for deepwall and each of its
commands into a directory, from the same text --help prints. Packagers
install them under /usr/share/man/man8; "make man" writes them to man/.`,
		Example: `  deepwall man --dir /usr/local/share/man/man8 && mandb -q
  man deepwall-rules-add`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("man: %w", err)
			}
			root := cmd.Root()
			root.DisableAutoGenTag = true // pages identical from run to run
			hdr := &doc.GenManHeader{Title: "DEEPWALL", Section: "8", Source: "deepwall " + Version, Manual: "deepwall manual"}
			if err := doc.GenManTree(root, hdr, dir); err != nil {
				return fmt.Errorf("man: write pages to %s: %w", dir, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "manual pages written to %s\n", dir)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "man", "directory to write the pages into (created if missing)")
	return cmd
}
