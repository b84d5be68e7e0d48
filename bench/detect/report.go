package detect

import (
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"time"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"

	"github.com/deepwall/deepwall/rules/crs"
)

// judgement is one runner's result on one test.
type judgement struct {
	Caught   bool // every expect_ids rule matched (default pack: the request was blocked)
	Silent   bool // no no_expect_ids rule matched
	Passed   bool // both
	Expected bool // the test expects detections
	Quiet    bool // the test expects silences
}

// judge compares an outcome with a test's expectations. With byBlock
// (a rule set whose ids are not CRS's, the default pack) an attack test
// is caught when the request is blocked and silences are not judged.
func judge(t *test, o outcome, byBlock bool) judgement {
	j := judgement{Expected: len(t.Stage.Expect) > 0, Quiet: len(t.Stage.NoExpect) > 0, Caught: true, Silent: true}
	if byBlock {
		j.Quiet = false
		j.Caught = !j.Expected || o.Blocked
		j.Passed = j.Caught
		return j
	}
	for _, id := range t.Stage.Expect {
		j.Caught = j.Caught && o.IDs[id]
	}
	for _, id := range t.Stage.NoExpect {
		j.Silent = j.Silent && !o.IDs[id]
	}
	j.Passed = j.Caught && j.Silent
	return j
}

// familyStats counts one runner's results for one family.
type familyStats struct {
	Family   string   `json:"family"`
	Tests    int      `json:"tests"`
	Passed   int      `json:"passed"`
	Expected int      `json:"expected_detections"`
	Caught   int      `json:"caught"`
	Quiet    int      `json:"expected_silences"`
	Kept     int      `json:"silences_kept"`
	Misses   []string `json:"misses,omitempty"` // test ids whose detections were missed
	Noisy    []string `json:"noisy,omitempty"`  // test ids where an unexpected rule matched
}

// suiteResult is one runner over the suite.
type suiteResult struct {
	Runner   string         `json:"runner"`
	Families []*familyStats `json:"families"`
	Total    familyStats    `json:"total"`
	Seconds  float64        `json:"seconds"`
	ReqPerS  float64        `json:"requests_per_second"`
}

// runSuite runs every test through r.
func runSuite(r runner, tests []test, byBlock bool) *suiteResult {
	res := &suiteResult{Runner: r.Name(), Total: familyStats{Family: "all"}}
	byFam := map[string]*familyStats{}
	for _, f := range families {
		fs := &familyStats{Family: f}
		byFam[f] = fs
		res.Families = append(res.Families, fs)
	}
	other := &familyStats{Family: "other"}
	res.Families = append(res.Families, other)
	start := time.Now()
	for i := range tests {
		t := &tests[i]
		o := r.Run(t.Stage.request())
		j := judge(t, o, byBlock)
		fs := byFam[t.Family]
		if fs == nil {
			fs = other
		}
		for _, s := range []*familyStats{fs, &res.Total} {
			s.Tests++
			if j.Passed {
				s.Passed++
			}
			if j.Expected {
				s.Expected++
				if j.Caught {
					s.Caught++
				} else {
					s.Misses = append(s.Misses, t.ID)
				}
			}
			if j.Quiet {
				s.Quiet++
				if j.Silent {
					s.Kept++
				} else {
					s.Noisy = append(s.Noisy, t.ID)
				}
			}
		}
	}
	res.Seconds = time.Since(start).Seconds()
	if res.Seconds > 0 {
		res.ReqPerS = float64(len(tests)) / res.Seconds
	}
	res.Total.Misses, res.Total.Noisy = nil, nil
	return res
}

// subtotal sums the families named.
func (r *suiteResult) subtotal(fams ...string) familyStats {
	s := familyStats{Family: strings.Join(fams, "+")}
	for _, f := range r.Families {
		if slices.Contains(fams, f.Family) {
			s.Tests += f.Tests
			s.Passed += f.Passed
			s.Expected += f.Expected
			s.Caught += f.Caught
			s.Quiet += f.Quiet
			s.Kept += f.Kept
		}
	}
	return s
}

func pct(a, b int) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(a)/float64(b))
}

// writeSuiteTable writes the per-family table of several runners side by
// side: for each, passed/tests, caught/expected, kept/quiet.
func writeSuiteTable(w io.Writer, rs []*suiteResult) {
	fmt.Fprintf(w, "| family |")
	for _, r := range rs {
		fmt.Fprintf(w, " %s passed | caught | silences kept |", r.Runner)
	}
	fmt.Fprintf(w, "\n|---|")
	for range rs {
		fmt.Fprintf(w, "---|---|---|")
	}
	fmt.Fprintln(w)
	rows := len(rs[0].Families)
	for i := 0; i <= rows; i++ {
		name := "**all**"
		if i < rows {
			name = rs[0].Families[i].Family
		}
		fmt.Fprintf(w, "| %s |", name)
		for _, r := range rs {
			f := &r.Total
			if i < rows {
				f = r.Families[i]
			}
			fmt.Fprintf(w, " %d/%d (%s) | %d/%d | %d/%d |", f.Passed, f.Tests, pct(f.Passed, f.Tests), f.Caught, f.Expected, f.Kept, f.Quiet)
		}
		fmt.Fprintln(w)
	}
}

// writeMisses lists each family's missed tests for one runner.
func writeMisses(w io.Writer, r *suiteResult, limit int) {
	fmt.Fprintf(w, "Missed detections (%s):\n\n", r.Runner)
	for _, f := range r.Families {
		if len(f.Misses) == 0 {
			continue
		}
		m := f.Misses
		more := ""
		if len(m) > limit {
			more = fmt.Sprintf(" … (+%d)", len(m)-limit)
			m = m[:limit]
		}
		fmt.Fprintf(w, "- %s (%d): %s%s\n", f.Family, len(f.Misses), strings.Join(m, " "), more)
	}
	fmt.Fprintln(w)
}

// crsParanoia maps every rule id of the embedded Core Rule Set to its
// paranoia level: the `paranoia-level/N` tag of the rule (the first rule
// of a chain carries it). Rules without the tag (bookkeeping) are left
// out.
func crsParanoia() (map[uint32]int, error) {
	sub, err := fs.Sub(coreruleset.FS, "@owasp_crs")
	if err != nil {
		return nil, err
	}
	files, err := fs.Glob(sub, "*.conf")
	if err != nil {
		return nil, err
	}
	out := map[uint32]int{}
	for _, name := range files {
		data, err := fs.ReadFile(sub, name)
		if err != nil {
			return nil, fmt.Errorf("read crs %s: %w", name, err)
		}
		dirs, err := crs.ParseSecLang(name, data)
		if err != nil {
			return nil, fmt.Errorf("crs paranoia levels: %w", err)
		}
		for _, d := range dirs {
			if !strings.EqualFold(d.Name, "SecRule") || len(d.Args) < 3 {
				continue
			}
			acts, err := crs.ParseActions(d.Args[2])
			if err != nil {
				continue
			}
			var id uint32
			pl := 0
			for _, a := range acts {
				switch a.Name {
				case "id":
					if v, err := strconv.ParseUint(a.Value, 10, 32); err == nil {
						id = uint32(v)
					}
				case "tag":
					if n, ok := strings.CutPrefix(a.Value, "paranoia-level/"); ok {
						if v, err := strconv.Atoi(n); err == nil {
							pl = v
						}
					}
				}
			}
			if id != 0 && pl > 0 {
				out[id] = pl
			}
		}
	}
	return out, nil
}

// byParanoia regroups a byBlock runner's attack tests of the families
// named by the paranoia level of the CRS rule each test targets (plOf):
// rows "PL1".."PL4", "PL?" for a rule without a level (only when there
// are some), and "all". A test is caught when it is not in its family's
// misses.
func byParanoia(r *suiteResult, tests []test, plOf map[uint32]int, fams ...string) []familyStats {
	missed := map[string]bool{}
	for _, f := range r.Families {
		if slices.Contains(fams, f.Family) {
			for _, id := range f.Misses {
				missed[id] = true
			}
		}
	}
	rows := make([]familyStats, 6)
	for i := range 4 {
		rows[i].Family = fmt.Sprintf("PL%d", i+1)
	}
	rows[4].Family, rows[5].Family = "PL?", "all"
	for i := range tests {
		t := &tests[i]
		if len(t.Stage.Expect) == 0 || !slices.Contains(fams, t.Family) {
			continue
		}
		row := 4
		if pl := plOf[t.RuleID]; pl >= 1 && pl <= 4 {
			row = pl - 1
		}
		for _, s := range []*familyStats{&rows[row], &rows[5]} {
			s.Tests++
			s.Expected++
			if missed[t.ID] {
				s.Misses = append(s.Misses, t.ID)
			} else {
				s.Caught++
			}
		}
	}
	rows[5].Misses = nil
	if rows[4].Tests == 0 {
		rows = slices.Delete(rows, 4, 5)
	}
	return rows
}
