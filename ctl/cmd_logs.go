package ctl

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/deepwall/deepwall/ctl/eve"
)

func newLogsCommand() *cobra.Command {
	var path, out string
	var types []string
	var follow bool
	var n int
	cmd := &cobra.Command{
		Use:   "logs",
		Short: "Show the verdict log (EVE JSON) in a readable form",
		Long: `logs reads the agent's verdict log itself (no agent needed): alerts (a rule
matched; blocked or allowed), drops (packets dropped for a reason other than
a rule: evasion, malformed, limits) and flow events (a flow ended: counters,
verdict, whether the kernel fast path carried it). It prints the last -n
events, then with -f follows the file, across rotations, until interrupted.
Text from the wire is escaped, never printed raw.`,
		Example: `  deepwall logs
  deepwall logs -f --type alert
  deepwall logs -n 0 --type flow -o json | jq .flow.bytes_toclient`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			for _, t := range types {
				if t != "alert" && t != "drop" && t != "flow" {
					return fmt.Errorf("--type %q: want alert, drop or flow", t)
				}
			}
			if n < 0 {
				return fmt.Errorf("-n %d: want 0 (everything) or more", n)
			}
			lv := &logViewer{w: cmd.OutOrStdout(), types: types, json: out == "json"}
			f, err := os.Open(path)
			if err != nil {
				return fmt.Errorf("verdict log: %w", err)
			}
			defer func() { f.Close() }()
			recs, pos, err := eve.Last(f, n, lv.want)
			if err != nil {
				return fmt.Errorf("verdict log %s: %w", path, err)
			}
			for _, r := range recs {
				lv.print(r)
			}
			if !follow {
				return nil
			}
			return eve.Follow(cmd.Context(), path, f, pos, lv.want, lv.print)
		},
	}
	cmd.Flags().StringVar(&path, "file", eve.DefaultPath, "the verdict log")
	cmd.Flags().StringSliceVar(&types, "type", nil, "only these event types: alert, drop, flow (repeat or comma-separate)")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new events, across rotations")
	cmd.Flags().IntVarP(&n, "lines", "n", 20, "print the last N matching events first (0: all)")
	outputFlag(cmd, &out)
	return cmd
}

// logViewer filters and prints events.
type logViewer struct {
	w     io.Writer
	types []string
	json  bool
}

// want reports whether ev passes the type filter.
func (lv *logViewer) want(ev *eve.Event) bool {
	return len(lv.types) == 0 || slices.Contains(lv.types, string(ev.EventType))
}

func (lv *logViewer) print(r eve.Record) {
	if lv.json {
		lv.w.Write(append(bytes.TrimSpace(r.Line), '\n'))
		return
	}
	fmt.Fprintln(lv.w, formatEvent(r.Event))
}

// formatEvent renders one event on one line.
func formatEvent(ev *eve.Event) string {
	var b strings.Builder
	b.WriteString(ev.Timestamp.Time().Local().Format("2006-01-02 15:04:05.000"))
	b.WriteString("  ")
	fmt.Fprintf(&b, "%-5s  ", strings.ToUpper(string(ev.EventType)))
	switch {
	case ev.Alert != nil:
		a := ev.Alert
		fmt.Fprintf(&b, "%-7s  %d %s", a.Action, a.SignatureID, clean(a.Signature))
		if a.Category != "" {
			fmt.Fprintf(&b, " [%s]", clean(a.Category))
		}
	case ev.Drop != nil:
		fmt.Fprintf(&b, "%s", clean(ev.Drop.Reason))
	case ev.Flow != nil:
		fl := ev.Flow
		act := fl.Action
		if act == "" {
			act = "undecided"
		}
		if fl.Bypassed {
			act += " (bypassed)"
		}
		fmt.Fprintf(&b, "%-7s", act)
	}
	fmt.Fprintf(&b, "  %s %s -> %s", ev.Proto, endpoint(ev.SrcIP, ev.SrcPort), endpoint(ev.DestIP, ev.DestPort))
	if ev.AppProto != "" {
		fmt.Fprintf(&b, " %s", clean(ev.AppProto))
	}
	if h := ev.HTTP; h != nil {
		fmt.Fprintf(&b, " %s %s%s", clean(h.Method), clean(h.Hostname), clean(h.URL))
		if h.Status != 0 {
			fmt.Fprintf(&b, " %d", h.Status)
		}
	}
	if t := ev.TLS; t != nil && t.SNI != "" {
		fmt.Fprintf(&b, " sni=%s", clean(t.SNI))
	}
	if d := ev.DNS; d != nil && d.RRName != "" {
		fmt.Fprintf(&b, " %s %s", clean(d.RRType), clean(d.RRName))
	}
	if a := ev.Alert; a != nil {
		if a.Field != "" {
			fmt.Fprintf(&b, " field=%s", clean(a.Field))
		}
		if a.Matched != "" {
			fmt.Fprintf(&b, " matched=%q", a.Matched)
		}
	}
	if fl := ev.Flow; fl != nil {
		fmt.Fprintf(&b, " pkts %d/%d bytes %s/%s age %ds %s", fl.PktsToServer, fl.PktsToClient,
			humanBytes(fl.BytesToServer), humanBytes(fl.BytesToClient), fl.Age, clean(fl.Reason))
		if fl.Alerted {
			b.WriteString(" alerted")
		}
	}
	return b.String()
}

func endpoint(ip string, port uint16) string {
	ip = clean(ip)
	if port == 0 {
		return ip
	}
	if strings.Contains(ip, ":") {
		return fmt.Sprintf("[%s]:%d", ip, port)
	}
	return fmt.Sprintf("%s:%d", ip, port)
}

// clean escapes what must not reach a terminal raw: control characters
// (escape sequences), invalid UTF-8 and the C1 controls.
func clean(s string) string {
	ok := true
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == utf8.RuneError {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	q := fmt.Sprintf("%+q", s)
	return q[1 : len(q)-1]
}
