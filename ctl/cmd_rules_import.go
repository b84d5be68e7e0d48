package ctl

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/deepwall/deepwall/internal/atomicfile"
	"github.com/deepwall/deepwall/rules/crs"
)

func newRulesImportCRSCommand() *cobra.Command {
	var out string
	var opts crs.Options
	var quiet bool
	cmd := &cobra.Command{
		Use:   "import-crs DIR",
		Short: "Translate OWASP Core Rule Set (SecLang) files into a deepwall rule file",
		Long: `import-crs translates every .conf file of DIR (the Core Rule Set's rules/
directory, .data files beside them) into one deepwall rule file: SecRule chains
become condition lists, @rx/@pm/@pmFromFile/@detectSQLi/... become regexes, phrase
lists and detectors, CRS variables become fields, t: transformations become
transforms, and the anomaly scores become rule scores with the inbound (949110)
and outbound (959100) threshold rules.

Every SecRule that is not translated is listed on stderr (and at the end of the
output file) with its file, line and reason; rules translated with a different
meaning (an ignored exclusion, XML:/* left out, ...) are listed with -v. The
output validates with "deepwall rules validate".`,
		Example: `  deepwall rules import-crs coreruleset/rules -o crs.yaml --paranoia 2
  deepwall rules validate crs.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			st, err := os.Stat(dir)
			if err != nil {
				return fmt.Errorf("import-crs: %w", err)
			}
			if !st.IsDir() {
				return fmt.Errorf("import-crs: %s is not a directory", dir)
			}
			res, err := crs.Import(os.DirFS(dir), opts)
			if err != nil {
				return err
			}
			w := cmd.ErrOrStderr()
			for _, n := range res.Untranslated {
				fmt.Fprintf(w, "not translated: %s\n", note(dir, n))
			}
			if !quiet {
				for _, n := range res.Approximations {
					fmt.Fprintf(w, "approximated: %s\n", note(dir, n))
				}
			}
			if out == "" || out == "-" {
				_, err = cmd.OutOrStdout().Write(res.YAML)
			} else {
				err = atomicfile.Write(out, res.YAML, 0o644)
			}
			if err != nil {
				return fmt.Errorf("import-crs: %w", err)
			}
			fmt.Fprintf(w, "%d files: %d rules translated, %d not translated, %d approximated\n",
				len(res.Files), res.Translated, len(res.Untranslated), len(res.Approximations))
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "-", "rule file to write (- for stdout)")
	cmd.Flags().IntVar(&opts.ParanoiaLevel, "paranoia", 1, "paranoia_level written in the rule file (1-4; rules of every level are translated)")
	cmd.Flags().IntVar(&opts.InboundThreshold, "inbound-threshold", crs.DefaultInboundThreshold, "inbound anomaly score that blocks a request")
	cmd.Flags().IntVar(&opts.OutboundThreshold, "outbound-threshold", crs.DefaultOutboundThreshold, "outbound anomaly score that blocks a response")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "do not list approximated rules")
	return cmd
}

func note(dir string, n crs.Note) string {
	n.File = filepath.Join(dir, n.File)
	return n.String()
}
