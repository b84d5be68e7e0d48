package detect

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/deepwall/deepwall/rules"
)

// Config is what Main measures.
type Config struct {
	Tests    string // go-ftw tests directory; "" = the coraza-coreruleset module's
	Out      string // output directory
	Benign   int    // benign requests
	NoCoraza bool
	MaxPL    int // highest paranoia level for the false-positive table
	// CorpusPL is the highest paranoia level Coraza runs the public
	// corpora at (0: no corpora).
	CorpusPL int
}

// report is everything Main measured (detect.json).
type report struct {
	Date      string         `json:"date"`
	Machine   string         `json:"machine"`
	Tests     int            `json:"tests"`
	Skipped   int            `json:"tests_without_log_expectations"`
	Suite     []*suiteResult `json:"suite"`
	Benign    []*fpResult    `json:"benign"`
	Imported  int            `json:"crs_rules_translated"`
	Untrans   int            `json:"crs_rules_untranslated"`
	DefaultPk familyStats    `json:"default_pack_930_944"`
	// DefaultPL splits DefaultPk by the paranoia level of the CRS rule
	// each attack test targets (PL1..PL4, all).
	DefaultPL []familyStats `json:"default_pack_930_944_by_paranoia"`
	// Corpus is every runner on the public attack and benign corpora.
	Corpus []*corpusResult `json:"public_corpora,omitempty"`
}

// testsDir finds the CRS tests of the coraza-coreruleset module in the
// module cache.
func testsDir() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/corazawaf/coraza-coreruleset/v4").Output()
	if err != nil {
		return "", fmt.Errorf("find the coraza-coreruleset module (go list): %w", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "tests"), nil
}

// Main runs the whole harness and writes the report.
func Main(cfg Config, w io.Writer) error {
	if cfg.Tests == "" {
		d, err := testsDir()
		if err != nil {
			return err
		}
		cfg.Tests = d
	}
	cfg.MaxPL = min(max(cfg.MaxPL, 1), rules.MaxParanoia)
	tests, skipped, err := loadSuite(cfg.Tests)
	if err != nil {
		return err
	}
	rep := &report{Date: time.Now().UTC().Format("2006-01-02"), Machine: fmt.Sprintf("%s/%s, %d CPUs", runtime.GOOS, runtime.GOARCH, runtime.NumCPU()),
		Tests: len(tests), Skipped: skipped}
	corpus := benignCorpus(cfg.Benign)
	logf := func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }
	var cases []corpusCase
	benignSets := map[string]bool{"tokenizer": true, "useragents": true}
	if cfg.CorpusPL > 0 {
		att, err := attackCorpus()
		if err != nil {
			return err
		}
		ben, err := benignCorpora()
		if err != nil {
			return err
		}
		cases = append(att, ben...)
	}
	onCorpus := func(r runner) {
		if len(cases) > 0 {
			logf("%s: public corpora, %d requests", r.Name(), len(cases))
			rep.Corpus = append(rep.Corpus, runCorpus(r, cases, benignSets))
		}
	}

	// The default pack: an attack test is caught when the request is blocked.
	pack, err := rules.DefaultPack()
	if err != nil {
		return err
	}
	dp, err := newOffline("deepwall-default", pack)
	if err != nil {
		return err
	}
	logf("default pack: %d tests", len(tests))
	dpRes := runSuite(dp, tests, true)
	dpFP := runBenign(dp, corpus)
	onCorpus(dp)
	dp.Close()
	attackFams := []string{"930", "931", "932", "933", "934", "941", "942", "943", "944"}
	rep.DefaultPk = dpRes.subtotal(attackFams...)
	plOf, err := crsParanoia()
	if err != nil {
		return err
	}
	rep.DefaultPL = byParanoia(dpRes, tests, plOf, attackFams...)
	rep.Benign = append(rep.Benign, dpFP)

	// Imported CRS at each paranoia level (suite at PL1), Coraza beside it.
	var crsPL1 *suiteResult
	for pl := 1; pl <= cfg.MaxPL; pl++ {
		set, res, err := crsRules(pl)
		if err != nil {
			return err
		}
		rep.Imported, rep.Untrans = res.Translated, len(res.Untranslated)
		o, err := newOffline(fmt.Sprintf("deepwall-crs-pl%d", pl), set)
		if err != nil {
			return err
		}
		if pl == 1 {
			logf("imported crs pl1: %d tests", len(tests))
			crsPL1 = runSuite(o, tests, false)
			rep.Suite = append(rep.Suite, crsPL1)
			onCorpus(o)
		}
		logf("imported crs pl%d: benign", pl)
		rep.Benign = append(rep.Benign, runBenign(o, corpus))
		o.Close()
	}
	if !cfg.NoCoraza {
		for pl := 1; pl <= cfg.MaxPL; pl++ {
			c, err := newCorazaRunner(pl)
			if err != nil {
				return err
			}
			if pl == 1 {
				logf("coraza pl1: %d tests", len(tests))
				rep.Suite = append(rep.Suite, runSuite(c, tests, false))
			}
			logf("coraza pl%d: benign", pl)
			rep.Benign = append(rep.Benign, runBenign(c, corpus))
			if pl <= cfg.CorpusPL {
				onCorpus(c)
			}
		}
		// The corpora at levels the false-positive table does not reach.
		for pl := cfg.MaxPL + 1; pl <= cfg.CorpusPL; pl++ {
			c, err := newCorazaRunner(pl)
			if err != nil {
				return err
			}
			onCorpus(c)
		}
	}
	rep.Suite = append(rep.Suite, dpRes)

	var md bytes.Buffer
	writeMarkdown(&md, rep)
	if cfg.Out != "" {
		if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
			return err
		}
		js, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(filepath.Join(cfg.Out, "detect.json"), js, 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(cfg.Out, "detect.md"), md.Bytes(), 0o644); err != nil {
			return err
		}
	}
	_, err = w.Write(md.Bytes())
	return err
}

// writeMarkdown writes the report's tables.
func writeMarkdown(w io.Writer, rep *report) {
	fmt.Fprintf(w, "## Detection (%s, %s)\n\n", rep.Date, rep.Machine)
	fmt.Fprintf(w, "CRS regression suite: %d tests with log expectations (%d status-only tests left out); imported CRS: %d rules translated, %d not.\n\n",
		rep.Tests, rep.Skipped, rep.Imported, rep.Untrans)
	var ids []*suiteResult
	for _, s := range rep.Suite {
		if s.Runner != "deepwall-default" {
			ids = append(ids, s)
		}
	}
	if len(ids) > 0 {
		fmt.Fprintf(w, "### CRS suite at paranoia level 1 (passed = every expected rule logged and no unexpected one)\n\n")
		writeSuiteTable(w, ids)
		fmt.Fprintln(w)
	}
	d := rep.DefaultPk
	fmt.Fprintf(w, "### Default pack: attack tests of families 930-944 blocked: %d/%d (%s)\n\n", d.Caught, d.Expected, pct(d.Caught, d.Expected))
	for _, s := range rep.Suite {
		if s.Runner == "deepwall-default" {
			fmt.Fprintf(w, "| family | attack tests blocked |\n|---|---|\n")
			for _, f := range s.Families {
				fmt.Fprintf(w, "| %s | %d/%d (%s) |\n", f.Family, f.Caught, f.Expected, pct(f.Caught, f.Expected))
			}
			fmt.Fprintln(w)
		}
	}
	if len(rep.DefaultPL) > 0 {
		writeParanoiaTable(w, rep)
	}
	if len(rep.Corpus) > 0 {
		writeCorpusTables(w, rep.Corpus, []string{"tokenizer", "useragents"})
	}
	fmt.Fprintf(w, "### Benign corpus (%d requests): false positives (blocked requests)\n\n| rule set | blocked | rate | requests/s (1 core) | rules that matched (top) |\n|---|---|---|---|---|\n", rep.Benign[0].Requests)
	for _, b := range rep.Benign {
		fmt.Fprintf(w, "| %s | %d | %.2f%% | %.0f | %s |\n", b.Runner, b.Blocked, 100*b.Rate, b.ReqPerS, b.topRules(6))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "### Inspection rate on the suite (requests/s, one core)\n\n| runner | requests/s |\n|---|---|\n")
	for _, s := range rep.Suite {
		fmt.Fprintf(w, "| %s | %.0f |\n", s.Runner, s.ReqPerS)
	}
	fmt.Fprintln(w)
	for _, s := range rep.Suite {
		writeMisses(w, s, 40)
	}
}

// writeParanoiaTable writes the default pack's 930-944 catch rate by the
// paranoia level of the CRS rule each attack test targets, beside the
// imported CRS's false-positive rate at that level (when measured): what
// blocking that level's tests costs CRS on the benign corpus.
func writeParanoiaTable(w io.Writer, rep *report) {
	fp := map[string]string{}
	for _, b := range rep.Benign {
		if pl, ok := strings.CutPrefix(b.Runner, "deepwall-crs-pl"); ok {
			fp["PL"+pl] = fmt.Sprintf("%d/%d (%.2f%%)", b.Blocked, b.Requests, 100*b.Rate)
		}
	}
	fmt.Fprintf(w, "#### Default pack by the paranoia level of the tested CRS rule (families 930-944)\n\n")
	fmt.Fprintf(w, "| CRS paranoia level | attack tests blocked | misses | imported CRS at this level: benign blocked |\n|---|---|---|---|\n")
	for _, r := range rep.DefaultPL {
		name, f := r.Family, fp[r.Family]
		if name == "all" {
			name = "**all**"
		}
		if f == "" {
			f = "-"
		}
		fmt.Fprintf(w, "| %s | %d/%d (%s) | %d | %s |\n", name, r.Caught, r.Expected, pct(r.Caught, r.Expected), r.Expected-r.Caught, f)
	}
	fmt.Fprintln(w)
}
