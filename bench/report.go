package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// reportFormat is the version of the JSON layout of a report.
const reportFormat = 1

// report is everything one harness run measured, with the machine and the
// versions it was measured on. It is safe for concurrent use.
type report struct {
	Format int `json:"format"`
	// Mode is full, quick or smoke; Rounds and Duration are the size of
	// each scenario's interleaved measurement.
	Mode     string    `json:"mode"`
	Rounds   int       `json:"rounds"`
	Duration string    `json:"duration"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Machine  machine   `json:"machine"`
	// Versions of deepwall, Go, the libraries and every peer measured.
	Versions  map[string]string `json:"versions"`
	Scenarios []*scenario       `json:"scenarios"`

	mu sync.Mutex
}

// scenario is one question the harness answers, with its results.
type scenario struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	// What says what is measured and how.
	What string `json:"what"`
	// Notes are method and fairness notes that apply to the whole scenario.
	Notes []string `json:"notes,omitempty"`
	// LoadStart and LoadEnd are the machine's 1-minute load averages when
	// the scenario started and at its last measurement.
	LoadStart float64 `json:"load_start,omitempty"`
	LoadEnd   float64 `json:"load_end,omitempty"`
	// Skipped says why the scenario did not run at all.
	Skipped string    `json:"skipped,omitempty"`
	Results []*result `json:"results"`
	// Charts to draw from the results.
	Charts []chart `json:"charts,omitempty"`

	// refs: case → reference system of the ratios of that case; "" key is
	// the default.
	refs map[string]string
	mu   *sync.Mutex
}

// result is one figure: a metric of one system in one case, every sample
// of it, and its summary.
type result struct {
	Case    string    `json:"case"`
	System  string    `json:"system"`
	Metric  string    `json:"metric"`
	Unit    string    `json:"unit"`
	Samples []float64 `json:"samples"`
	Median  float64   `json:"median"`
	Min     float64   `json:"min"`
	Max     float64   `json:"max"`
	// Ratio is Median over the reference system's median of the same case
	// and metric (set for the scenario's ratio metrics only).
	Ratio   float64 `json:"ratio,omitempty"`
	RatioTo string  `json:"ratio_to,omitempty"`
	// Note is written beside the figure (fairness, bounds, what it
	// includes).
	Note string `json:"note,omitempty"`
	// NotMeasured says why there is no figure; Samples is then empty.
	NotMeasured string `json:"not_measured,omitempty"`

	ratio bool // this metric gets a ratio column
}

// chart describes a PNG the report draws from a scenario's results.
type chart struct {
	// Name is the file name's suffix.
	Name   string `json:"name"`
	Title  string `json:"title"`
	Metric string `json:"metric"`
	// Log draws the value axis on a log scale (figures spanning decades).
	Log bool `json:"log,omitempty"`
	// Cases limits the chart to these cases (all when empty).
	Cases []string `json:"cases,omitempty"`
	// File is set once the chart is drawn (a path relative to the report).
	File string `json:"file,omitempty"`
}

// newReport starts a report.
func newReport(mode string, rounds int, d time.Duration) *report {
	return &report{Format: reportFormat, Mode: mode, Rounds: rounds, Duration: d.String(), Started: time.Now(),
		Versions: map[string]string{}}
}

// scenario returns the scenario id, creating it (in call order).
func (r *report) scenario(id, title, what string) *scenario {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.Scenarios {
		if s.ID == id {
			return s
		}
	}
	s := &scenario{ID: id, Title: title, What: what, refs: map[string]string{}, mu: &r.mu}
	r.Scenarios = append(r.Scenarios, s)
	return s
}

// setVersion records the version of a component.
func (r *report) setVersion(name, v string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Versions[name] = v
}

// note adds a scenario-wide note.
func (s *scenario) note(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Notes = append(s.Notes, fmt.Sprintf(format, args...))
}

// skip records why the scenario did not run.
func (s *scenario) skip(reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Skipped = reason
}

// addChart asks for a chart of the scenario's results.
func (s *scenario) addChart(c chart) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Charts = append(s.Charts, c)
}

// ratioTo makes ratios of case c (every case when c is "") relative to
// system ref.
func (s *scenario) ratioTo(c, ref string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refs[c] = ref
}

// result returns the result (case, system, metric), creating it; s.mu held.
func (s *scenario) result(c, system, metric, unit string) *result {
	for _, r := range s.Results {
		if r.Case == c && r.System == system && r.Metric == metric {
			if r.Unit == "" {
				r.Unit = unit
			}
			return r
		}
	}
	r := &result{Case: c, System: system, Metric: metric, Unit: unit}
	s.Results = append(s.Results, r)
	return r
}

// declare creates the result (case, system, metric) without a sample, so
// that rows and charts list systems in the order declared, whatever order
// their first samples come in.
func (s *scenario) declare(c, system, metric, unit string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.result(c, system, metric, unit)
}

// add records one sample. Metrics added with addRatio get a ratio column.
func (s *scenario) add(c, system, metric, unit string, v float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.result(c, system, metric, unit)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return
	}
	r.Samples = append(r.Samples, v)
}

// addRatio is add for a metric whose ratio to the reference system is
// reported.
func (s *scenario) addRatio(c, system, metric, unit string, v float64) {
	s.add(c, system, metric, unit, v)
	s.mu.Lock()
	s.result(c, system, metric, unit).ratio = true
	s.mu.Unlock()
}

// notMeasured records that a figure could not be measured, and why.
func (s *scenario) notMeasured(c, system, metric, unit, why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.result(c, system, metric, unit)
	if r.NotMeasured == "" {
		r.NotMeasured = why
	}
}

// setNote writes a note beside the first figure of (case, system).
func (s *scenario) setNote(c, system, note string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.Results {
		if r.Case == c && r.System == system {
			if r.Note == "" {
				r.Note = note
			} else if !strings.Contains(r.Note, note) {
				r.Note += "; " + note
			}
			return
		}
	}
	r := s.result(c, system, "", "")
	r.Note = note
}

// lookup returns the result (case, system, metric), or nil.
func (s *scenario) lookup(c, system, metric string) *result {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.Results {
		if r.Case == c && r.System == system && r.Metric == metric {
			return r
		}
	}
	return nil
}

// finish summarises every result and computes the ratios.
func (r *report) finish() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Finished = time.Now()
	for _, s := range r.Scenarios {
		for _, res := range s.Results {
			sm := summarize(res.Samples)
			res.Median, res.Min, res.Max = sm.Median, sm.Min, sm.Max
			if len(res.Samples) > 0 {
				res.NotMeasured = ""
			} else if res.NotMeasured == "" && res.Metric != "" {
				res.NotMeasured = "no sample was taken"
			}
		}
		for _, res := range s.Results {
			res.Ratio, res.RatioTo = 0, ""
			if !res.ratio || len(res.Samples) == 0 {
				continue
			}
			ref, ok := s.refs[res.Case]
			if !ok {
				ref = s.refs[""]
			}
			if ref == "" || ref == res.System {
				continue
			}
			for _, o := range s.Results {
				if o.Case == res.Case && o.System == ref && o.Metric == res.Metric && len(o.Samples) > 0 && o.Median != 0 {
					res.Ratio, res.RatioTo = res.Median/o.Median, ref
				}
			}
		}
	}
}

// writeJSON writes the report as indented JSON.
func (r *report) writeJSON(w io.Writer) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// baseName is the file name stem of the report: <date>-<host>.
func (r *report) baseName() string {
	host := strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' {
			return c
		}
		return '_'
	}, r.Machine.Host)
	if host == "" {
		host = "unknown"
	}
	return r.Started.Format("2006-01-02") + "-" + host
}

// write finishes the report and writes <dir>/<date>-<host>.json, .md and
// one PNG per chart; it returns the paths written.
func (r *report) write(dir string) ([]string, error) {
	r.finish()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("results directory: %w", err)
	}
	base := filepath.Join(dir, r.baseName())
	var written []string
	for _, s := range r.Scenarios {
		for i := range s.Charts {
			c := &s.Charts[i]
			name := fmt.Sprintf("%s-%s-%s.png", r.baseName(), s.ID, c.Name)
			if err := drawChart(s, *c, filepath.Join(dir, name)); err != nil {
				if errors.Is(err, errNoData) {
					continue
				}
				return written, fmt.Errorf("chart %s: %w", name, err)
			}
			c.File = name
			written = append(written, filepath.Join(dir, name))
		}
	}
	for _, out := range []struct {
		ext   string
		write func(io.Writer) error
	}{{".json", r.writeJSON}, {".md", r.writeMarkdown}} {
		f, err := os.Create(base + out.ext)
		if err != nil {
			return written, fmt.Errorf("write report: %w", err)
		}
		err = out.write(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return written, fmt.Errorf("write %s: %w", base+out.ext, err)
		}
		written = append(written, base+out.ext)
	}
	return written, nil
}

// formatValue prints v with three significant digits (no exponent for
// the magnitudes the harness measures).
func formatValue(v float64) string {
	a := math.Abs(v)
	switch {
	case v == 0:
		return "0"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	case a >= 0.01:
		return fmt.Sprintf("%.3f", v)
	default:
		return fmt.Sprintf("%.2g", v)
	}
}

// cell formats a result for a table: median and, for several samples,
// the range.
func (res *result) cell() string {
	if res == nil {
		return ""
	}
	if len(res.Samples) == 0 {
		if res.NotMeasured != "" {
			return "not measured"
		}
		return ""
	}
	s := formatValue(res.Median)
	if len(res.Samples) > 1 && res.Min != res.Max {
		s += fmt.Sprintf(" (%s–%s)", formatValue(res.Min), formatValue(res.Max))
	}
	return s
}

// writeMarkdown writes the report as Markdown: machine and versions, then
// one table per scenario (rows: case and system; columns: metrics as
// "median (min–max)"; the ratio to the reference; notes), its notes and
// its charts.
func (r *report) writeMarkdown(w io.Writer) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "# deepwall benchmark, %s, %s\n\n", r.Started.Format("2006-01-02"), m.Host)
	fmt.Fprintf(&b, "%s; %d cores; %s RAM; kernel %s; %s", m.CPU, m.Cores, fmtBytes(m.MemoryBytes), m.Kernel, m.OS)
	if m.Virtualization != "" {
		fmt.Fprintf(&b, "; %s", m.Virtualization)
	}
	fmt.Fprintf(&b, ".\nMode %s: %d interleaved rounds, %s per measurement; run %s → %s (%s); load average %.2f at start, %.2f at end.\n\n",
		r.Mode, r.Rounds, r.Duration, r.Started.Format("15:04:05"), r.Finished.Format("15:04:05"),
		r.Finished.Sub(r.Started).Round(time.Second), m.LoadStart, m.LoadEnd)
	b.WriteString("Figures are medians of the rounds, with the range (min–max) in brackets. ")
	b.WriteString("A system's ratio is its median over the reference's median in the same case.\n\n")
	names := make([]string, 0, len(r.Versions))
	for k := range r.Versions {
		names = append(names, k)
	}
	slices.Sort(names)
	b.WriteString("| component | version |\n|---|---|\n")
	for _, k := range names {
		fmt.Fprintf(&b, "| %s | %s |\n", k, mdEscape(r.Versions[k]))
	}
	b.WriteString("\n")
	for i, s := range r.Scenarios {
		fmt.Fprintf(&b, "## %d. %s\n\n%s\n\n", i+1, s.Title, s.What)
		if s.Skipped != "" {
			fmt.Fprintf(&b, "**Not measured:** %s\n\n", s.Skipped)
		} else if s.LoadStart > 0 || s.LoadEnd > 0 {
			fmt.Fprintf(&b, "Load average %.2f at the start, %.2f at the last measurement.\n\n", s.LoadStart, s.LoadEnd)
		}
		writeTable(&b, s)
		for _, n := range s.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
		if len(s.Notes) > 0 {
			b.WriteString("\n")
		}
		for _, c := range s.Charts {
			if c.File != "" {
				fmt.Fprintf(&b, "![%s](%s)\n\n", c.Title, c.File)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeTable(b *strings.Builder, s *scenario) {
	type row struct{ c, sys string }
	var rows []row
	var metrics []string
	units := map[string]string{}
	ratioMetric := map[string]bool{}
	byKey := map[[3]string]*result{}
	for _, res := range s.Results {
		k := row{res.Case, res.System}
		if !slices.Contains(rows, k) {
			rows = append(rows, k)
		}
		if res.Metric != "" && !slices.Contains(metrics, res.Metric) {
			metrics = append(metrics, res.Metric)
		}
		if res.Metric != "" && units[res.Metric] == "" {
			units[res.Metric] = res.Unit
		}
		if res.ratio {
			ratioMetric[res.Metric] = true
		}
		byKey[[3]string{res.Case, res.System, res.Metric}] = res
	}
	if len(rows) == 0 {
		return
	}
	b.WriteString("| case | system |")
	for _, m := range metrics {
		name := m
		if u := units[m]; u != "" && u != m {
			name += " (" + u + ")"
		}
		fmt.Fprintf(b, " %s |", mdEscape(name))
		if ratioMetric[m] {
			b.WriteString(" × ref |")
		}
	}
	b.WriteString(" notes |\n|---|---|")
	for _, m := range metrics {
		b.WriteString("---|")
		if ratioMetric[m] {
			b.WriteString("---|")
		}
	}
	b.WriteString("---|\n")
	for _, rw := range rows {
		var notes []string
		fmt.Fprintf(b, "| %s | %s |", mdEscape(rw.c), mdEscape(rw.sys))
		for _, m := range metrics {
			res := byKey[[3]string{rw.c, rw.sys, m}]
			fmt.Fprintf(b, " %s |", res.cell())
			if ratioMetric[m] {
				if res != nil && res.RatioTo != "" {
					fmt.Fprintf(b, " %s |", formatValue(res.Ratio))
				} else {
					b.WriteString(" |")
				}
			}
			if res != nil && len(res.Samples) == 0 && res.NotMeasured != "" {
				notes = append(notes, m+" not measured: "+res.NotMeasured)
			}
		}
		for _, res := range s.Results {
			if res.Case == rw.c && res.System == rw.sys && res.Note != "" {
				notes = append(notes, res.Note)
			}
		}
		fmt.Fprintf(b, " %s |\n", mdEscape(strings.Join(notes, "; ")))
	}
	refs := map[string]bool{}
	for _, ref := range s.refs {
		refs[ref] = true
	}
	if len(refs) > 0 {
		var rs []string
		for ref := range refs {
			rs = append(rs, ref)
		}
		slices.Sort(rs)
		fmt.Fprintf(b, "\nReference for × ref: %s.\n", strings.Join(rs, ", "))
	}
	b.WriteString("\n")
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func fmtBytes(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%d B", n)
	}
}
