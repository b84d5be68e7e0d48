package ctl

import (
	"fmt"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/deepwall/deepwall/ctl/api"
	"github.com/spf13/cobra"
)

func newRulesLearnedCommand() *cobra.Command {
	var sock, out string
	cmd := &cobra.Command{
		Use:   "learned",
		Short: "List the flows discover mode learned, as proposed allow rules",
		Long: `learned lists what containers in discover mode did: who connected to whom, on
which port and protocol, with which application protocol. Each line is a
proposed allow rule; deepwall rules promote turns them into rules.`,
		Example: `  deepwall rules learned -o json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			var list api.LearnedList
			if err := api.NewClient(sock).Do(cmd.Context(), http.MethodGet, "/v1/rules/learned", nil, nil, &list); err != nil {
				return err
			}
			if out == "json" {
				return printJSON(cmd.OutOrStdout(), list)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tCONTAINER\tDIR\tPEER\tPROTO\tPORT\tAPP\tFLOWS\tLAST\tPROMOTED")
			for _, r := range list.Rules {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\t%d\t%s\t%v\n", r.ID, r.Container, r.Direction, r.Peer, r.Proto,
					r.Port, r.App, r.Flows, r.Last.Local().Format(time.DateTime), r.Promoted)
			}
			return tw.Flush()
		},
	}
	socketFlag(cmd, &sock)
	outputFlag(cmd, &out)
	return cmd
}

func newRulesPromoteCommand() *cobra.Command {
	var sock, out string
	var req api.PromoteRequest
	cmd := &cobra.Command{
		Use:   "promote [ID...] [--all]",
		Short: "Turn learned flows into allow rules",
		Long: `promote adds an allow rule for each learned flow (and one for its replies)
to the running set, before the container's default deny, which it adds
after a container's first promoted rules. Once the container is switched
to protect mode, exactly the promoted traffic passes.`,
		Example: `  deepwall rules promote --all -m "baseline of web"
  deepwall rules promote 3000000002 3000000004`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			if len(args) == 0 && !req.All {
				return fmt.Errorf("name learned rule ids or --all")
			}
			for _, a := range args {
				id, err := parseRuleID(a)
				if err != nil {
					return err
				}
				req.IDs = append(req.IDs, id)
			}
			return runChange(cmd, sock, out, http.MethodPost, "/v1/rules/promote", nil, &req, nil)
		},
	}
	cmd.Flags().BoolVar(&req.All, "all", false, "promote every learned flow not promoted yet")
	changeFlags(cmd, &sock, &out, &req.Comment)
	return cmd
}
