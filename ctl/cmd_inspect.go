package ctl

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"sync"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/deepwall/deepwall/ctl/eve"
	"github.com/deepwall/deepwall/dpi"
	"github.com/deepwall/deepwall/dpi/pcapio"
	"github.com/deepwall/deepwall/rules"
)

func newInspectCommand() *cobra.Command {
	var (
		rulesFile, capture string
		summary            bool
		workers            int
	)
	cmd := &cobra.Command{
		Use:   "inspect -r CAPTURE [--rules FILE] [--summary]",
		Short: "Run the DPI engine over a capture file and print its events",
		Long: `inspect replays a capture (pcap or pcapng, optionally gzip-compressed,
Ethernet frames) through the DPI engine exactly as the agent inspects live
traffic: TCP reassembly, protocol identification, HTTP/TLS/DNS parsing and
the rules. Every event — alerts (allowed or blocked), drops the engine makes
for other reasons (malformed frames, TCP evasion, protocol violations) and
the end of every flow — is printed to standard output as one EVE JSON
object per line, timestamped with the capture's time.

The ACL rules are applied by the engine, as where XDP is absent. Without
--rules the built-in default pack is used ("deepwall rules default-pack").

--summary also prints a short table to standard error (so standard output
stays valid JSON lines): frames, flows, application protocols, alerts by
signature, drops by reason and the time taken.

Exit status: 0 when the whole capture was inspected; 1 when the rules or
the capture cannot be read (the message names the file, the record and
the reason; events of the records before a damaged one are still printed).`,
		Example: `  deepwall inspect -r traffic.pcap
  deepwall inspect --rules rules.yaml -r traffic.pcapng --summary | jq 'select(.event_type=="alert")'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if capture == "" {
				return errors.New("inspect: no capture: give one with -r FILE")
			}
			c, err := loadRules(rulesFile)
			if err != nil {
				return err
			}
			return runInspect(cmd.OutOrStdout(), cmd.ErrOrStderr(), c, capture, workers, summary)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&capture, "read", "r", "", "capture file to inspect (pcap or pcapng, may be gzip-compressed)")
	f.StringVar(&rulesFile, "rules", "", "rule file (default: the built-in default pack)")
	f.BoolVar(&summary, "summary", false, "print a summary table to standard error")
	f.IntVar(&workers, "workers", 1, fmt.Sprintf("engine workers (1-%d); with more than one, events of different flows may interleave differently between runs", min(runtime.NumCPU(), dpi.MaxWorkers)))
	return cmd
}

// loadRules parses and compiles a rule file, or the default pack.
func loadRules(path string) (*rules.Compiled, error) {
	var set *rules.Set
	var err error
	if path == "" {
		set, err = rules.DefaultPack()
	} else {
		set, err = rules.ParseFile(path)
	}
	if err == nil {
		var c *rules.Compiled
		if c, err = rules.Compile(set); err == nil {
			return c, nil
		}
	}
	if errors.Is(err, rules.ErrInvalid) {
		return nil, fmt.Errorf("inspect: invalid rules:\n%w", err)
	}
	return nil, fmt.Errorf("inspect: rules: %w", err)
}

func runInspect(stdout, stderr io.Writer, c *rules.Compiled, path string, workers int, summary bool) error {
	out := bufio.NewWriterSize(stdout, 64<<10)
	enc := json.NewEncoder(out)
	var mu sync.Mutex
	var werr error
	e, err := dpi.New(dpi.Config{
		Rules: c, Workers: workers, Offline: true,
		Emit: func(ev *eve.Event) {
			ev.SetCommunityID(0)
			mu.Lock()
			if werr == nil {
				werr = enc.Encode(ev)
			}
			mu.Unlock()
		},
	})
	if err != nil {
		c.Close()
		return fmt.Errorf("inspect: %w", err)
	}
	defer e.Close()
	r, err := pcapio.Open(path)
	if err != nil {
		return fmt.Errorf("inspect: %w", err)
	}
	defer r.Close()
	sum, rerr := dpi.Replay(e, r)
	if err := out.Flush(); err != nil && werr == nil {
		werr = err
	}
	if summary {
		printSummary(stderr, path, &sum)
	}
	if rerr != nil {
		return fmt.Errorf("inspect: %w", rerr)
	}
	if werr != nil {
		return fmt.Errorf("inspect: write events: %w", werr)
	}
	return nil
}

func printSummary(w io.Writer, path string, s *dpi.Summary) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	span := s.Last.Sub(s.First)
	fmt.Fprintf(tw, "capture\t%s\n", path)
	fmt.Fprintf(tw, "frames\t%d (%d bytes): %d forwarded, %d dropped\n", s.Frames, s.Bytes, s.Forwarded, s.Dropped)
	fmt.Fprintf(tw, "flows\t%d\n", s.Flows)
	fmt.Fprintf(tw, "capture time\t%s\n", span)
	rate := ""
	if sec := s.Elapsed.Seconds(); sec > 0 {
		rate = fmt.Sprintf(" (%.0f frames/s, %.2f Gbit/s)", float64(s.Frames)/sec, float64(s.Bytes)*8/sec/1e9)
	}
	fmt.Fprintf(tw, "inspection time\t%s%s\n", s.Elapsed.Round(1e3), rate)
	section(tw, "app protocols", s.Apps)
	if len(s.Alerts) > 0 {
		fmt.Fprintln(tw, "alerts by signature")
		for _, a := range s.Alerts {
			fmt.Fprintf(tw, "  %d\t%d\t%s\n", a.Count, a.ID, a.Signature)
		}
	} else {
		fmt.Fprintln(tw, "alerts\tnone")
	}
	section(tw, "drops by reason", s.Drops)
	_ = tw.Flush()
}

func section(tw io.Writer, title string, m map[string]uint64) {
	if len(m) == 0 {
		fmt.Fprintf(tw, "%s\tnone\n", title)
		return
	}
	fmt.Fprintln(tw, title)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	for _, k := range keys {
		fmt.Fprintf(tw, "  %d\t%s\n", m[k], k)
	}
}
