package ctl

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/deepwall/deepwall/ctl/api"
	"github.com/spf13/cobra"
)

func newFlowsCommand() *cobra.Command {
	var sock, out, proto, ip string
	var f api.FlowFilter
	cmd := &cobra.Command{
		Use:   "flows",
		Short: "List the agent's live flows",
		Long: `flows lists the flows the agent tracks, oldest first: protocol, client and
server, application protocol, verdict (inspect: still inspected in user space;
pass or drop: final), whether the kernel fast path carries it (bypassed),
packets and bytes each way and age. Filters combine. --container NAME
keeps the flows of a protected container (deepwall ports lists them):
those with one of its addresses at either end.`,
		Example: `  deepwall flows
  deepwall flows --verdict drop
  deepwall flows --proto tcp --port 443 --app tls -o json
  deepwall flows --container web --verdict drop`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			if proto != "" {
				p, err := api.ParseProto(proto)
				if err != nil {
					return err
				}
				f.Proto = p
			}
			if ip != "" {
				a, err := netip.ParseAddr(ip)
				if err != nil {
					return fmt.Errorf("--ip %q: %w", ip, err)
				}
				f.Addr = a
			}
			if f.Verdict != "" && !slices.Contains(api.FlowVerdicts, f.Verdict) {
				return fmt.Errorf("--verdict %q: want one of %s", f.Verdict, strings.Join(api.FlowVerdicts, ", "))
			}
			var fl api.FlowList
			if err := api.NewClient(sock).Do(cmd.Context(), http.MethodGet, "/v1/flows", f.Query(), nil, &fl); err != nil {
				return err
			}
			if out == "json" {
				return printJSON(cmd.OutOrStdout(), fl)
			}
			printFlows(cmd.OutOrStdout(), &fl)
			return nil
		},
	}
	socketFlag(cmd, &sock)
	outputFlag(cmd, &out)
	cmd.Flags().StringVar(&proto, "proto", "", "only this IP protocol (tcp, udp, icmp, icmpv6, sctp or a number)")
	cmd.Flags().StringVar(&ip, "ip", "", "only flows with this address at either end")
	cmd.Flags().Uint16Var(&f.Port, "port", 0, "only flows with this port at either end")
	cmd.Flags().StringVar(&f.Verdict, "verdict", "", "only flows with this verdict: inspect, pass or drop")
	cmd.Flags().StringVar(&f.App, "app", "", "only flows of this application protocol (http, tls, dns...)")
	cmd.Flags().StringVar(&f.Container, "container", "", "only flows of this protected container (its name in deepwall ports)")
	cmd.Flags().IntVar(&f.Limit, "limit", api.DefaultFlowLimit, fmt.Sprintf("at most this many rows (1 to %d)", api.MaxFlowLimit))
	return cmd
}

func printFlows(w io.Writer, fl *api.FlowList) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PROTO\tCLIENT\tSERVER\tAPP\tVERDICT\tBYPASSED\tPKTS >/<\tBYTES >/<\tAGE\tIDLE\tRULE")
	for _, r := range fl.Flows {
		byp := "no"
		if r.Bypassed {
			byp = "yes"
		}
		rule := "-"
		if r.RuleID != 0 {
			rule = fmt.Sprint(r.RuleID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d/%d\t%s/%s\t%s\t%s\t%s\n", r.Proto, r.Client, r.Server, dash(r.App), r.Verdict, byp,
			r.PktsToServer, r.PktsToClient, humanBytes(r.BytesToServer), humanBytes(r.BytesToClient), secs(r.AgeSecs), secs(r.IdleSecs), rule)
	}
	tw.Flush()
	if fl.Truncated {
		fmt.Fprintf(w, "(%d of %d flows shown; --limit shows more)\n", len(fl.Flows), fl.Total)
	} else {
		fmt.Fprintf(w, "(%d %s)\n", fl.Total, plural(fl.Total, "flow"))
	}
}
