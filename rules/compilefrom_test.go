package rules

import (
	"bytes"
	"testing"
	"time"
)

// TestCompileFrom changes the default pack by one rule and checks that
// CompileFrom, reusing the databases of the compiled pack, gives exactly
// what Compile gives (same serialised databases), rebuilds only the group
// the rule changed, and does not depend on the old set staying open.
func TestCompileFrom(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the default pack three times")
	}
	old, err := Parse("default.yaml", DefaultPackYAML())
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	c1, err := Compile(old)
	if err != nil {
		t.Fatal(err)
	}
	full := time.Since(t0)
	added := append(DefaultPackYAML(), []byte(`
  - id: 999001
    name: one more rule
    action: block
    match: {field: http.args, regex: 'zz(?:qq|yy)'}
`)...)
	set, err := Parse("default.yaml", added)
	if err != nil {
		t.Fatal(err)
	}
	t0 = time.Now()
	inc, err := CompileFrom(set, c1)
	if err != nil {
		t.Fatal(err)
	}
	incremental := time.Since(t0)
	c1.Close() // inc owns copies
	fresh, err := Compile(set)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	defer inc.Close()
	t.Logf("compile %v, one rule added: incremental %v", full, incremental)
	a, err := inc.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	b, err := fresh.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("CompileFrom and Compile give different databases")
	}
	if incremental > full/3 {
		t.Logf("incremental compile not much faster (%v vs %v): loaded machine?", incremental, full)
	}
	sc, err := inc.NewScratch()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Free()
	for _, g := range inc.Groups {
		if g.Stream || g.Field.Kind != FieldHTTPArgs || len(g.Transforms) != 0 {
			continue
		}
		hit := false
		if err := scanBlock(g, []byte("a=zzyy"), sc, func(r *Rule) { hit = hit || r.ID == 999001 }); err != nil {
			t.Fatal(err)
		}
		if !hit {
			t.Fatal("the added rule does not match")
		}
	}
}
