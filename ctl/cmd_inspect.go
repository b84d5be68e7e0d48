package ctl

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/deepwall/deepwall/ctl/agent"
	"github.com/deepwall/deepwall/ctl/eve"
	"github.com/deepwall/deepwall/dpi"
	"github.com/deepwall/deepwall/dpi/pcapio"
	"github.com/deepwall/deepwall/rules"
)

func newInspectCommand() *cobra.Command {
	var (
		rulesFile, capture, cacheDir string
		summary, noIdentify          bool
		workers                      int
	)
	cmd := &cobra.Command{
		Use:   "inspect -r CAPTURE [--rules FILE] [--summary]",
		Short: "Run the DPI engine over a capture file and print its events",
		Long: `inspect replays a capture (pcap of any version or pcapng, optionally
gzip-compressed; Ethernet, Linux cooked SLL/SLL2, raw IP, BSD loopback/null,
PPP or Cisco HDLC frames, pcapng interfaces of different link types mixed)
through the DPI engine exactly as the agent inspects live traffic: TCP
reassembly, protocol identification, HTTP/TLS/DNS parsing and the rules.
Every event — alerts (allowed or blocked), drops the engine makes for other
reasons (malformed frames, TCP evasion, protocol violations) and the end of
every flow — is printed to standard output as one EVE JSON object per
line, timestamped with the capture's time. Every TCP and UDP
flow's end names its application protocol (app_proto, "unknown" when
identification could not tell), whatever the rules need; --no-identify
names only those of flows some rule may apply to, which is faster.

The ACL rules are applied by the engine, as where XDP is absent. Without
--rules the built-in default pack is used ("deepwall rules default-pack").
Compiled rules are cached in --cache-dir, one file per rule file, as the
agent caches its own: a later run over the same rules loads them in well
under a second instead of compiling them again (about 9 s of CPU for the
default pack). The agent's own cache (` + agent.DefaultStateDir + `/` + agent.CompiledCache + `)
is used, read-only, when it holds these very rules. --cache-dir "" turns
the cache off.

SIGINT or SIGTERM stops inspect at once, whatever it is doing (reading the
rules, compiling them, inspecting): the flows of the frames read so far are
ended and their events printed, then it exits with status 130.

--summary also prints a short table to standard error (so standard output
stays valid JSON lines): frames, flows, application protocols, alerts by
signature, drops by reason and the time taken.

Exit status: 0 when the whole capture was inspected; 130 when interrupted;
1 when the rules or the capture cannot be read (the message names the
file, the record and the reason; events of the records before a damaged
one are still printed).`,
		Example: `  deepwall inspect -r traffic.pcap
  deepwall inspect --rules rules.yaml -r traffic.pcapng --summary | jq 'select(.event_type=="alert")'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if capture == "" {
				return errors.New("inspect: no capture: give one with -r FILE")
			}
			ctx := cmd.Context()
			c, err := loadRulesCached(ctx, rulesFile, cacheDir)
			if err != nil {
				return interrupted(ctx, err)
			}
			return interrupted(ctx, runInspect(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), c, capture, workers, summary, noIdentify))
		},
	}
	f := cmd.Flags()
	f.StringVarP(&capture, "read", "r", "", "capture file to inspect (pcap or pcapng, may be gzip-compressed; see above for link types)")
	f.StringVar(&rulesFile, "rules", "", "rule file (default: the built-in default pack)")
	f.BoolVar(&summary, "summary", false, "print a summary table to standard error")
	f.BoolVar(&noIdentify, "no-identify", false, "identify the application protocol only of flows some rule may apply to (faster; the others carry no app_proto)")
	f.StringVar(&cacheDir, "cache-dir", defaultInspectCache(), `directory of the compiled-rules cache ("" for none)`)
	f.IntVar(&workers, "workers", 1, fmt.Sprintf("engine workers (1-%d); with more than one, events of different flows may interleave differently between runs", min(runtime.NumCPU(), dpi.MaxWorkers)))
	return cmd
}

// interrupted turns the error of a run a signal cut short into exit
// status 130.
func interrupted(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		return &exitError{code: 130, err: err}
	}
	return err
}

// defaultInspectCache is where inspect caches compiled rules: the user's
// cache directory, or none when there is no home.
func defaultInspectCache() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "deepwall")
}

// loadRulesCached is loadRules through the compiled-rules cache in dir
// (none when dir is ""), and returns as soon as ctx is done: Hyperscan's
// compiler cannot be interrupted, so a signal leaves it running in a
// goroutine the exit ends, having written nothing (the cache file is
// replaced atomically).
func loadRulesCached(ctx context.Context, path, dir string) (*rules.Compiled, error) {
	type result struct {
		c   *rules.Compiled
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := loadRulesFrom(path, dir)
		done <- result{c, err}
	}()
	select {
	case r := <-done:
		return r.c, r.err
	case <-ctx.Done():
		go func() {
			if r := <-done; r.c != nil {
				r.c.Close()
			}
		}()
		return nil, fmt.Errorf("inspect: interrupted while reading the rules: %w", context.Cause(ctx))
	}
}

// loadRulesFrom reads a rule file, or the default pack, and compiles it or
// loads it compiled: from the agent's cache when that holds this very set
// (read-only: inspect never rewrites the agent's files), else from its own
// file in dir, named after the rule file, which it rewrites when stale.
func loadRulesFrom(path, dir string) (*rules.Compiled, error) {
	if dir == "" {
		return loadRules(path)
	}
	set, err := readRules(path)
	if err != nil {
		return nil, rulesError(err)
	}
	if data, err := os.ReadFile(filepath.Join(agent.DefaultStateDir, agent.CompiledCache)); err == nil {
		if c, err := rules.UnmarshalCompiled(set, data); err == nil {
			return c, nil
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("inspect: rules cache: %w", err)
	}
	src := rules.DefaultPackName
	if path != "" {
		if abs, err := filepath.Abs(path); err == nil {
			src = abs
		}
	}
	sum := sha256.Sum256([]byte(src))
	file := filepath.Join(dir, "inspect-"+hex.EncodeToString(sum[:8])+".compiled")
	c, cached, err := rules.LoadOrCompileFrom(set, file, nil)
	if errors.Is(err, rules.ErrCacheWrite) {
		return c, nil // compiled; the next run compiles again
	}
	if err != nil {
		return nil, rulesError(err)
	}
	if !cached {
		pruneInspectCache(dir)
	}
	return c, nil
}

// maxInspectCaches bounds the compiled rule files inspect keeps (one per
// rule file it was run with; the default pack's is about 16 MB): past it
// the least recently written go.
const maxInspectCaches = 8

func pruneInspectCache(dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, "inspect-*.compiled"))
	if len(files) <= maxInspectCaches {
		return
	}
	mod := make(map[string]time.Time, len(files))
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			mod[f] = st.ModTime()
		}
	}
	slices.SortFunc(files, func(a, b string) int { return mod[b].Compare(mod[a]) })
	for _, f := range files[maxInspectCaches:] {
		os.Remove(f)
	}
}

// readRules parses a rule file, or the default pack.
func readRules(path string) (*rules.Set, error) {
	if path == "" {
		return rules.DefaultPack()
	}
	return rules.ParseFile(path)
}

// rulesError words a rule file's problem for inspect.
func rulesError(err error) error {
	if errors.Is(err, rules.ErrInvalid) {
		return fmt.Errorf("inspect: invalid rules:\n%w", err)
	}
	return fmt.Errorf("inspect: rules: %w", err)
}

// loadRules parses and compiles a rule file, or the default pack.
func loadRules(path string) (*rules.Compiled, error) {
	set, err := readRules(path)
	if err != nil {
		return nil, rulesError(err)
	}
	c, err := rules.Compile(set)
	if err != nil {
		return nil, rulesError(err)
	}
	return c, nil
}

func runInspect(ctx context.Context, stdout, stderr io.Writer, c *rules.Compiled, path string, workers int, summary, noIdentify bool) error {
	out := bufio.NewWriterSize(stdout, 64<<10)
	enc := json.NewEncoder(out)
	var mu sync.Mutex
	var werr error
	e, err := dpi.New(dpi.Config{
		Rules: c, Workers: workers, Offline: true, NoIdentify: noIdentify,
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
	// A signal also ends a read that waits for data (a capture read from
	// a pipe): closing the file makes it return.
	defer context.AfterFunc(ctx, func() { r.Close() })()
	sum, rerr := dpi.ReplayContext(ctx, e, r)
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
