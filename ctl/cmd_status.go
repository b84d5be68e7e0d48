package ctl

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/deepwall/deepwall/ctl/api"
	"github.com/spf13/cobra"
)

func newStatusCommand() *cobra.Command {
	var sock, out string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the running agent: ports, mode, rules, counters",
		Long: `status asks the running agent for its ports, mode, rule-set version and hash,
uptime and counters: packets the kernel fast path carried, packets sent to
user space and inspected, drops by reason, and the verdict log's events
(written, and dropped because the writer fell behind).`,
		Example: `  deepwall status
  deepwall status -o json | jq .counters.drops`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			var st api.Status
			if err := api.NewClient(sock).Do(cmd.Context(), http.MethodGet, "/v1/status", nil, nil, &st); err != nil {
				return err
			}
			if out == "json" {
				return printJSON(cmd.OutOrStdout(), st)
			}
			printStatus(cmd.OutOrStdout(), &st)
			return nil
		},
	}
	socketFlag(cmd, &sock)
	outputFlag(cmd, &out)
	return cmd
}

func printStatus(w io.Writer, st *api.Status) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	up := (time.Duration(st.UptimeSecs * 1e9)).Round(time.Second)
	fmt.Fprintf(tw, "agent\tdeepwall %s, pid %d, up %s (since %s)\n", st.Version, st.PID, up, st.Started.UTC().Format(time.RFC3339))
	var ports []string
	for _, p := range st.Ports {
		ports = append(ports, fmt.Sprintf("%s %s (ifindex %d)", p.Side, p.Name, p.Ifindex))
	}
	ns := ""
	if st.NetNS != "" {
		ns = ", netns " + st.NetNS
	}
	queues := 0
	if len(st.Ports) > 0 {
		queues = st.Ports[0].Queues
	}
	if len(ports) > 0 {
		fmt.Fprintf(tw, "ports\t%s; %d %s each%s\n", strings.Join(ports, " <-> "), queues, plural(queues, "queue"), ns)
	}
	if st.Protected > 0 || len(ports) == 0 {
		fmt.Fprintf(tw, "protected\t%d %s (deepwall ports); counters below include them\n", st.Protected, plural(st.Protected, "container"))
	}
	fail := "fail-open"
	if st.FailClosed {
		fail = "fail-closed"
	}
	fmt.Fprintf(tw, "mode\t%s, %d %s, %s\n", st.Backend, st.Workers, plural(st.Workers, "worker"), fail)
	if st.BackendReason != "" {
		fmt.Fprintf(tw, "mode chosen\t%s\n", st.BackendReason)
	}
	rs := &st.RuleSet
	fmt.Fprintf(tw, "rules\tversion %d, sha256 %s, %d rules (%d disabled): %d ACL, %d layer-7; acl_default %s\n",
		rs.Version, short(rs.Hash), rs.Rules, rs.Disabled, rs.ACL, rs.Layer7, rs.ACLDefault)
	fmt.Fprintf(tw, "\tapplied %s%s\n", rs.Applied.UTC().Format(time.RFC3339), quoted(rs.Comment))
	fmt.Fprintf(tw, "flows\t%d tracked\n", st.Flows)
	ev := &st.Events
	fmt.Fprintf(tw, "events\t%d written, %d dropped (writer behind), %d %s, %d write %s (%s)\n", ev.Written, ev.Dropped,
		ev.Rotations, plural(int(ev.Rotations), "rotation"), ev.Errors, plural(int(ev.Errors), "error"), ev.Path)
	tw.Flush()

	c := &st.Counters
	row := func(name string, v uint64) { fmt.Fprintf(w, "  %-28s %14d\n", name, v) }
	fmt.Fprintln(w, "\npackets")
	row("fast path allowed", c.FastPathAllowed)
	row("fast path dropped", c.FastPathDropped)
	row("to user space", c.ToUserSpace)
	row("inspected", c.Inspected)
	row("inspected bytes", c.InspectedBytes)
	row("forwarded from user space", c.Forwarded)
	row("non-IP", c.NonIP)
	row("alerts", c.Alerts)
	row("blocks", c.Blocks)
	row("resets sent", c.Resets)
	fmt.Fprintln(w, "\ndrops by reason")
	reasons := make([]string, 0, len(c.Drops))
	for r := range c.Drops {
		reasons = append(reasons, r)
	}
	slices.Sort(reasons)
	for _, r := range reasons {
		row(r, c.Drops[r])
	}
}

func quoted(s string) string {
	if s == "" {
		return ""
	}
	return fmt.Sprintf(": %q", s)
}
