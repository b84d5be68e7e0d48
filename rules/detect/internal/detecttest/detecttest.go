// Package detecttest holds what the tests of the semantic detectors share:
// the check of a table of attacks and benign values, the fuzz body and the
// benchmark over benign request values.
package detecttest

import "testing"

// MatchFunc is a detector's Match.
type MatchFunc func(value []byte) (hit bool, reason string)

// Check fails tb for every attack match misses and every benign value it
// reports.
func Check(tb testing.TB, match MatchFunc, attacks, benign []string) {
	tb.Helper()
	for _, s := range attacks {
		if hit, _ := match([]byte(s)); !hit {
			tb.Errorf("attack missed: %q", s)
		}
	}
	for _, s := range benign {
		if hit, why := match([]byte(s)); hit {
			tb.Errorf("benign value reported (%s): %q", why, s)
		}
	}
}

// Fuzz seeds f with every value of the seed lists and runs match on every
// input: it must not panic, and must not change its input.
func Fuzz(f *testing.F, match MatchFunc, seeds ...[]string) {
	for _, l := range seeds {
		for _, v := range l {
			f.Add([]byte(v))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		in := string(b)
		match(b)
		if string(b) != in {
			t.Fatalf("Match changed its input")
		}
	})
}

// Bench measures match over a mix of benign values, the common case.
func Bench(b *testing.B, match MatchFunc) {
	values := [][]byte{
		[]byte("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"),
		[]byte("Hello, I would like to order 3 items; please call me at (555) 123-4567 & thanks!"),
		[]byte("{\"name\":\"Seán O'Brien\",\"note\":\"leave at door #4\"}"),
		[]byte("annual-report.v2.final.pdf"),
		[]byte("session=9f8e7d6c5b4a; theme=dark"),
	}
	var n int64
	for _, v := range values {
		n += int64(len(v))
	}
	b.SetBytes(n)
	b.ReportAllocs()
	for b.Loop() {
		for _, v := range values {
			match(v)
		}
	}
}
