package hs

import (
	"strings"
	"testing"

	"github.com/flier/gohs/hyperscan"
)

type recorder struct{ got []match }

type match struct {
	id       uint
	from, to uint64
}

func (r *recorder) Match(id uint, from, to uint64) { r.got = append(r.got, match{id, from, to}) }

func compile(tb testing.TB, mode hyperscan.ModeFlag, exprs ...string) hyperscan.Database {
	tb.Helper()
	var pats hyperscan.Patterns
	for i, e := range exprs {
		p := hyperscan.NewPattern(e, hyperscan.SomLeftMost)
		p.Id = i
		pats = append(pats, p)
	}
	db, err := (&hyperscan.DatabaseBuilder{Patterns: pats, Mode: mode}).Build()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

func setup(tb testing.TB, db hyperscan.Database, batch int) (*Scanner, *Scratch) {
	tb.Helper()
	gs, err := hyperscan.NewScratch(db)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { gs.Free() })
	sc, err := CloneScratch(gs)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(sc.Free)
	s, err := NewScanner(batch)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s, sc
}

func TestBlock(t *testing.T) {
	bdb := compile(t, hyperscan.BlockMode, "abc", "x+y")
	db, err := Block(bdb.(hyperscan.BlockDatabase))
	if err != nil {
		t.Fatal(err)
	}
	if db.own {
		t.Error("gohs layout not recognised: using a private copy")
	}
	for _, batch := range []int{1, 2, DefaultBatch} {
		s, sc := setup(t, bdb, batch)
		var r recorder
		if err := s.Scan(db, sc, []byte("abc xxy abc"), &r); err != nil {
			t.Fatal(err)
		}
		want := []match{{0, 0, 3}, {1, 4, 7}, {0, 8, 11}}
		if len(r.got) != len(want) {
			t.Fatalf("batch %d: %v, want %v", batch, r.got, want)
		}
		for i := range want {
			if r.got[i] != want[i] {
				t.Errorf("batch %d: match %d = %v, want %v", batch, i, r.got[i], want[i])
			}
		}
	}
}

func TestPrivateCopy(t *testing.T) {
	bdb := compile(t, hyperscan.BlockMode, "abc")
	// A value whose layout findDB does not know forces the copy.
	if p := findDB(reflectValueOf(struct{ x int }{})); p != nil {
		t.Fatal("findDB accepted a foreign value")
	}
	data, _ := bdb.Marshal()
	if len(data) == 0 {
		t.Fatal("marshal")
	}
	db, err := borrowCopy(bdb)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Release()
	s, sc := setup(t, bdb, 0)
	var r recorder
	if err := s.Scan(db, sc, []byte("--abc--"), &r); err != nil || len(r.got) != 1 {
		t.Fatalf("%v %v", r.got, err)
	}
}

func TestStream(t *testing.T) {
	sdb := compile(t, hyperscan.StreamMode|hyperscan.SomHorizonSmallMode, "union\\s+select", "end$")
	db, err := Stream(sdb.(hyperscan.StreamDatabase))
	if err != nil {
		t.Fatal(err)
	}
	if db.StreamSize() <= 0 {
		t.Error("stream size")
	}
	s, sc := setup(t, sdb, 1)
	st, err := s.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	var r recorder
	for _, piece := range []string{"a uni", "on   sel", "ect b en", "d"} {
		if err := s.ScanStream(st, sc, []byte(piece), &r); err != nil {
			t.Fatal(err)
		}
	}
	if len(r.got) != 1 || r.got[0] != (match{0, 2, 16}) {
		t.Fatalf("split match: %v", r.got)
	}
	// "end$" matches only at the end of data: reported by Reset.
	if err := s.Reset(st, sc, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.got) != 2 || r.got[1].id != 1 {
		t.Fatalf("end of data: %v", r.got)
	}
	r.got = nil
	if err := s.ScanStream(st, sc, []byte(strings.Repeat("union select ", 3)+"end"), &r); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseStream(&st, sc, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.got) != 4 || st.Open() {
		t.Fatalf("after reset: %v (open %v)", r.got, st.Open())
	}
	if err := s.CloseStream(&st, sc, &r); err != nil {
		t.Errorf("second close: %v", err)
	}
}

type counter struct{ n int }

func (c *counter) Match(uint, uint64, uint64) { c.n++ }

func TestAllocs(t *testing.T) {
	bdb := compile(t, hyperscan.BlockMode, "a")
	sdb := compile(t, hyperscan.StreamMode|hyperscan.SomHorizonSmallMode, "b")
	bd, _ := Block(bdb.(hyperscan.BlockDatabase))
	sd, _ := Stream(sdb.(hyperscan.StreamDatabase))
	s, sc := setup(t, bdb, 4)
	ss, ssc := setup(t, sdb, 4)
	st, err := ss.Open(sd)
	if err != nil {
		t.Fatal(err)
	}
	defer ss.CloseStream(&st, nil, nil)
	data := []byte(strings.Repeat("ab", 100))
	var c counter
	if n := testing.AllocsPerRun(100, func() {
		_ = s.Scan(bd, sc, data, &c)
		_ = ss.ScanStream(st, ssc, data, &c)
		_ = ss.Reset(st, ssc, &c)
	}); n != 0 {
		t.Errorf("%v allocations per scan", n)
	}
	if c.n == 0 {
		t.Error("no matches")
	}
}

func BenchmarkScanSmall(b *testing.B) {
	bdb := compile(b, hyperscan.BlockMode, "union\\s+select", "etc/passwd")
	bd, _ := Block(bdb.(hyperscan.BlockDatabase))
	s, sc := setup(b, bdb, 0)
	data := []byte("/index.html?q=hello+world&page=2")
	var c counter
	b.ReportAllocs()
	for b.Loop() {
		_ = s.Scan(bd, sc, data, &c)
	}
}

func BenchmarkGohsScanSmall(b *testing.B) {
	bdb := compile(b, hyperscan.BlockMode, "union\\s+select", "etc/passwd")
	gs, _ := hyperscan.NewScratch(bdb)
	defer gs.Free()
	data := []byte("/index.html?q=hello+world&page=2")
	h := func(id uint, from, to uint64, flags uint, ctx any) error { return nil }
	b.ReportAllocs()
	for b.Loop() {
		_ = bdb.(hyperscan.BlockDatabase).Scan(data, gs, h, nil)
	}
}
