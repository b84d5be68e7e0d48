package crs

import (
	"flag"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"

	"github.com/deepwall/deepwall/internal/testutil"
	"github.com/deepwall/deepwall/rules"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// crsFS is the Core Rule Set shipped in the coraza-coreruleset module.
func crsFS(tb testing.TB) fs.FS {
	tb.Helper()
	sub, err := fs.Sub(coreruleset.FS, "@owasp_crs")
	if err != nil {
		tb.Fatal(err)
	}
	return sub
}

// subset copies some files of fsys (and every .data file) into a new
// file system.
func subset(tb testing.TB, fsys fs.FS, names ...string) fs.FS {
	tb.Helper()
	m := fstest.MapFS{}
	ents, err := fs.ReadDir(fsys, ".")
	if err != nil {
		tb.Fatal(err)
	}
	for _, e := range ents {
		keep := strings.HasSuffix(e.Name(), ".data")
		for _, n := range names {
			keep = keep || e.Name() == n
		}
		if !keep {
			continue
		}
		b, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			tb.Fatal(err)
		}
		m[e.Name()] = &fstest.MapFile{Data: b, Mode: 0o644}
	}
	return m
}

// TestGolden translates a few real CRS files; the rule file and the list
// of untranslated rules and approximations must match the golden files,
// and the rule file must validate and compile.
func TestGolden(t *testing.T) {
	for _, name := range []string{
		"REQUEST-913-SCANNER-DETECTION.conf",
		"REQUEST-930-APPLICATION-ATTACK-LFI.conf",
		"REQUEST-942-APPLICATION-ATTACK-SQLI.conf",
		"REQUEST-949-BLOCKING-EVALUATION.conf",
		"RESPONSE-951-DATA-LEAKAGES-SQL.conf",
	} {
		t.Run(name, func(t *testing.T) {
			res, err := Import(subset(t, crsFS(t), name, "REQUEST-901-INITIALIZATION.conf"), Options{})
			if err != nil {
				t.Fatal(err)
			}
			var notes strings.Builder
			for _, n := range res.Untranslated {
				notes.WriteString("untranslated " + n.String() + "\n")
			}
			for _, n := range res.Approximations {
				notes.WriteString("approximate " + n.String() + "\n")
			}
			base := filepath.Join("testdata", strings.TrimSuffix(name, ".conf"))
			testutil.Golden(t, base+".yaml", res.YAML, *update)
			testutil.Golden(t, base+".notes", []byte(notes.String()), *update)
			set, err := rules.Parse(name, res.YAML)
			if err != nil {
				t.Fatalf("import output does not validate: %v", err)
			}
			set.ParanoiaLevel = rules.MaxParanoia
			c, err := rules.Compile(set)
			if err != nil {
				t.Fatalf("import output does not compile: %v", err)
			}
			c.Close()
		})
	}
}

// TestImportAll translates the whole Core Rule Set: most rules translate,
// every SecRule is accounted for, the output validates.
func TestImportAll(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the whole CRS")
	}
	res, err := Import(crsFS(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d translated, %d untranslated, %d approximations", res.Translated, len(res.Untranslated), len(res.Approximations))
	reasons := map[string]int{}
	for _, n := range res.Untranslated {
		r := n.Reason
		if len(r) > 60 {
			r = r[:60]
		}
		reasons[r]++
	}
	for r, n := range reasons {
		t.Logf("%4d %s", n, r)
	}
	if res.Translated < 300 {
		t.Errorf("only %d rules translated", res.Translated)
	}
	if _, err := rules.Parse("crs.yaml", res.YAML); err != nil {
		t.Fatal(err)
	}
}

// TestParseSecLang checks continuations, quoting and action lists.
func TestParseSecLang(t *testing.T) {
	src := "# comment\nSecRule ARGS|!ARGS:x \"@rx a\\\"b\\d\" \\\n    \"id:1,\\\n    msg:'it\\'s, ok',t:none,t:lowercase,chain\"\n  SecRule REQUEST_METHOD \"@streq POST\"\nSecMarker END\n"
	ds, err := ParseSecLang("t.conf", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 3 || ds[0].Line != 2 || ds[1].Line != 5 || ds[2].Name != "SecMarker" {
		t.Fatalf("directives %+v", ds)
	}
	if got := ds[0].Args; len(got) != 3 || got[0] != "ARGS|!ARGS:x" || got[1] != `@rx a"b\d` {
		t.Fatalf("args %q", got)
	}
	acts, err := ParseActions(ds[0].Args[2])
	if err != nil {
		t.Fatal(err)
	}
	want := []Action{{"id", "1"}, {"msg", "it's, ok"}, {"t", "none"}, {"t", "lowercase"}, {"chain", ""}}
	if len(acts) != len(want) {
		t.Fatalf("actions %q", acts)
	}
	for i := range want {
		if acts[i] != want[i] {
			t.Errorf("action %d = %q, want %q", i, acts[i], want[i])
		}
	}
	for _, bad := range []string{"SecRule ARGS \"@rx x", "SecRule a b c d e f g h i j k"} {
		if _, err := ParseSecLang("bad.conf", []byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if _, err := ParseActions("id:1,msg:'open"); err == nil {
		t.Error("unterminated quote: no error")
	}
}

// FuzzParseSecLang: any input parses or fails with an error, and
// whatever parses translates (or is listed untranslated) without panic.
func FuzzParseSecLang(f *testing.F) {
	f.Add("SecRule ARGS \"@rx (?i)union\\s+select\" \"id:1,phase:2,block,t:none,t:urlDecodeUni,severity:'CRITICAL',setvar:'tx.inbound_anomaly_score_pl1=+%{tx.critical_anomaly_score}'\"\n")
	f.Add("SecRule &REQUEST_HEADERS:Host \"@eq 0\" \"id:2,block,chain,setvar:'tx.inbound_anomaly_score_pl1=+%{tx.warning_anomaly_score}'\"\n SecRule REQUEST_METHOD \"!@within GET HEAD\"\n")
	f.Add("SecRule REQUEST_HEADERS|!REQUEST_HEADERS:Referer \"@validateByteRange 32-126\" \"id:3,deny\"\n")
	f.Add("SecAction \\\n \"id:4,setvar:'tx.x=1'\"\nSecRule TX:BLOCKING_INBOUND_ANOMALY_SCORE \"@ge %{tx.inbound_anomaly_score_threshold}\" \"id:949110,deny\"\n")
	f.Fuzz(func(t *testing.T, src string) {
		ds, err := ParseSecLang("f.conf", []byte(src))
		if err != nil {
			return
		}
		for _, d := range ds {
			if d.Line < 1 {
				t.Fatalf("directive without a line: %+v", d)
			}
			_, _ = ParseActions(last(d.Args))
		}
		res, err := Import(fstest.MapFS{"f.conf": &fstest.MapFile{Data: []byte(src)}}, Options{NoCompile: true})
		if err != nil {
			return
		}
		if _, err := rules.Parse("out.yaml", res.YAML); err != nil {
			t.Fatalf("import output does not validate: %v\n%s", err, res.YAML)
		}
	})
}
