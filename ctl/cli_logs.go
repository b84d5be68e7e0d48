package ctl

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/deepwall/deepwall/dpi"
)

// Limits of `deepwall logs`.
const (
	maxLogLine     = 1 << 20 // longer lines are skipped
	followInterval = 200 * time.Millisecond
	tailChunk      = 64 << 10
)

func init() { subcommands = append(subcommands, newLogsCommand) }

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
			pos, err := lv.tail(f, n)
			if err != nil {
				return fmt.Errorf("verdict log %s: %w", path, err)
			}
			if !follow {
				return nil
			}
			return lv.follow(cmd.Context(), path, f, pos)
		},
	}
	cmd.Flags().StringVar(&path, "file", DefaultLogPath, "the verdict log")
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

// want decodes line and reports whether it passes the type filter.
func (lv *logViewer) want(line []byte) (*dpi.Event, bool) {
	var ev dpi.Event
	if err := json.Unmarshal(line, &ev); err != nil {
		return nil, false
	}
	if len(lv.types) > 0 && !slices.Contains(lv.types, string(ev.EventType)) {
		return nil, false
	}
	return &ev, true
}

func (lv *logViewer) print(line []byte, ev *dpi.Event) {
	if lv.json {
		lv.w.Write(append(bytes.TrimSpace(line), '\n'))
		return
	}
	fmt.Fprintln(lv.w, formatEvent(ev))
}

// tail prints the last n matching events of f (all for n == 0) and
// returns the offset after the last complete line (the writer may be in
// the middle of the next one).
func (lv *logViewer) tail(f *os.File, n int) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	br := &backLines{f: f, off: st.Size()}
	end, err := br.start()
	if err != nil {
		return 0, err
	}
	var lines [][]byte
	var evs []*dpi.Event
	for n == 0 || len(lines) < n {
		line, ok, err := br.prev()
		if err != nil {
			return 0, err
		}
		if !ok {
			break
		}
		if ev, ok := lv.want(line); ok {
			lines = append(lines, line)
			evs = append(evs, ev)
		}
	}
	for i := len(lines) - 1; i >= 0; i-- {
		lv.print(lines[i], evs[i])
	}
	return end, nil
}

// backLines reads a file's complete lines from the end backwards.
type backLines struct {
	f     *os.File
	off   int64  // file offset of buf[0]
	buf   []byte // unread bytes, ending at a line end
	chunk int    // bytes read at a time; tailChunk when 0
}

// start drops the incomplete last line and returns where complete lines end.
func (b *backLines) start() (int64, error) {
	size := b.off
	for b.off > 0 {
		if err := b.fill(); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(b.buf, '\n'); i >= 0 {
			b.buf = b.buf[:i+1]
			return b.off + int64(i) + 1, nil
		}
		if len(b.buf) > maxLogLine {
			b.buf = b.buf[:0]
		}
	}
	_ = size
	b.buf = nil
	return 0, nil
}

// fill prepends the chunk before buf.
func (b *backLines) fill() error {
	chunk := b.chunk
	if chunk <= 0 {
		chunk = tailChunk
	}
	step := min(int64(chunk), b.off)
	data := make([]byte, step, int(step)+len(b.buf))
	if _, err := b.f.ReadAt(data, b.off-step); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	b.off -= step
	b.buf = append(data, b.buf...)
	return nil
}

// prev returns the line before the ones returned so far, without its
// newline; lines longer than maxLogLine are skipped.
func (b *backLines) prev() ([]byte, bool, error) {
	for {
		body := bytes.TrimSuffix(b.buf, []byte("\n"))
		if i := bytes.LastIndexByte(body, '\n'); i >= 0 {
			line := body[i+1:]
			b.buf = body[:i+1]
			if len(line) > maxLogLine {
				continue
			}
			return line, true, nil
		}
		if b.off == 0 {
			b.buf = nil
			if len(body) == 0 || len(body) > maxLogLine {
				return nil, false, nil
			}
			return body, true, nil
		}
		if len(body) > maxLogLine {
			// Too long to keep: forget it and skip to its start.
			for b.off > 0 {
				b.buf = nil
				if err := b.fill(); err != nil {
					return nil, false, err
				}
				if i := bytes.LastIndexByte(b.buf, '\n'); i >= 0 {
					b.buf = b.buf[:i+1]
					break
				}
			}
			continue
		}
		if err := b.fill(); err != nil {
			return nil, false, err
		}
	}
}

// follow prints lines appended after pos until ctx ends. When the path
// names a new file (rotation) the old one is read to its end first, then
// the new one from its start; a file that shrank (copytruncate) is read
// again from its start.
func (lv *logViewer) follow(ctx context.Context, path string, f *os.File, pos int64) error {
	if _, err := f.Seek(pos, io.SeekStart); err != nil {
		return err
	}
	r := bufio.NewReaderSize(f, 64<<10)
	var partial []byte
	drain := func() error {
		for {
			line, err := r.ReadSlice('\n')
			if errors.Is(err, bufio.ErrBufferFull) {
				partial = append(partial, line...)
				if len(partial) > maxLogLine {
					partial = partial[:0]
					// Skip the rest of this line.
					for errors.Is(err, bufio.ErrBufferFull) {
						_, err = r.ReadSlice('\n')
					}
				}
				continue
			}
			if len(line) > 0 && line[len(line)-1] == '\n' {
				full := line
				if len(partial) > 0 {
					full = append(partial, line...)
					partial = partial[:0]
				}
				if ev, ok := lv.want(bytes.TrimSuffix(full, []byte("\n"))); ok {
					lv.print(full, ev)
				}
				continue
			}
			partial = append(partial, line...) // incomplete: the writer is mid-line
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
	tick := time.NewTicker(followInterval)
	defer tick.Stop()
	for {
		if err := drain(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		cur, err := f.Stat()
		if err != nil {
			return err
		}
		next, err := os.Stat(path)
		switch {
		case err != nil:
			continue // between rename and create: keep the old file
		case !os.SameFile(cur, next):
			if err := drain(); err != nil {
				return err
			}
			// Several rotations may have happened since the last look: the
			// old file is now path.K; path.K-1 … path.1 came after it.
			files := filesAfter(path, cur)
			if len(files) == 0 {
				continue
			}
			for i, nf := range files {
				f.Close()
				f = nf
				r.Reset(f)
				partial = partial[:0]
				if i < len(files)-1 {
					if err := drain(); err != nil {
						for _, g := range files[i+1:] {
							g.Close()
						}
						return err
					}
				}
			}
		default:
			off, _ := f.Seek(0, io.SeekCurrent)
			if cur.Size() < off-int64(r.Buffered()) {
				_, _ = f.Seek(0, io.SeekStart)
				r.Reset(f)
				partial = partial[:0]
			}
		}
	}
}

// maxRotated bounds the rotated files looked at when following.
const maxRotated = 1000

// filesAfter opens the files written after old, oldest first, the live
// file last. With old now at path.K that is path.K-1 … path.1, path. A
// rotation while it looks shows up as a file seen twice or a missing
// name; it then looks again. When old is gone (deleted, or renamed some
// other way) only the live file is returned.
func filesAfter(path string, old os.FileInfo) []*os.File {
	for range 50 {
		if files, ok := snapshotAfter(path, old); ok {
			return files
		}
		time.Sleep(10 * time.Millisecond)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	return []*os.File{f}
}

func snapshotAfter(path string, old os.FileInfo) ([]*os.File, bool) {
	var opened []*os.File
	var infos []os.FileInfo
	fail := func() ([]*os.File, bool) {
		for _, f := range opened {
			f.Close()
		}
		return nil, false
	}
	for k := 0; k <= maxRotated; k++ {
		name := path
		if k > 0 {
			name = fmt.Sprintf("%s.%d", path, k)
		}
		f, err := os.Open(name)
		if err != nil {
			return fail()
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return fail()
		}
		if os.SameFile(fi, old) {
			f.Close()
			slices.Reverse(opened)
			return opened, true
		}
		for _, seen := range infos {
			if os.SameFile(fi, seen) {
				f.Close()
				return fail()
			}
		}
		opened, infos = append(opened, f), append(infos, fi)
	}
	return fail()
}

// formatEvent renders one event on one line.
func formatEvent(ev *dpi.Event) string {
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
