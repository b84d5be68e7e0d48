package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/deepwall/deepwall/rules"
)

func openStore(tb testing.TB, dir string) *Store {
	tb.Helper()
	s, err := Open(dir)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func parse(tb testing.TB, name, src string) *rules.Set {
	tb.Helper()
	s, err := rules.Parse(name, []byte(src))
	if err != nil {
		tb.Fatalf("Parse(%s): %v", name, err)
	}
	return s
}

func setWithPort(tb testing.TB, port int) *rules.Set {
	tb.Helper()
	return parse(tb, "t.yaml", fmt.Sprintf("rules:\n  - {id: 1, name: telnet, action: block, proto: tcp, dst_port: %d}\n", port))
}

func TestStoreVersions(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	if _, _, err := s.Current(); !errors.Is(err, ErrNoRules) {
		t.Fatalf("empty store: %v", err)
	}
	v1, changed, err := s.Put(setWithPort(t, 23), "first")
	if err != nil || !changed || v1.Number != 1 || v1.Rules != 1 || v1.Comment != "first" {
		t.Fatalf("Put 1: %+v %v %v", v1, changed, err)
	}
	// The same rules written differently: no new version.
	same := parse(t, "other.yaml", "# same\nrules:\n- id: 1\n  name: telnet\n  action: block\n  proto: TCP\n  dst_port: [23]\n")
	v, changed, err := s.Put(same, "again")
	if err != nil || changed || v.Number != 1 {
		t.Fatalf("Put same: %+v %v %v", v, changed, err)
	}
	v2, changed, err := s.Put(setWithPort(t, 2323), "second")
	if err != nil || !changed || v2.Number != 2 || v2.Hash == v1.Hash {
		t.Fatalf("Put 2: %+v %v %v", v2, changed, err)
	}
	cur, cv, err := s.Current()
	if err != nil || cv.Number != 2 || cur.Rules[0].DstPorts[0].Lo != 2323 || cur.Hash() != v2.Hash {
		t.Fatalf("Current: %+v %v", cv, err)
	}
	old, ov, err := s.Get(1)
	if err != nil || ov.Number != 1 || old.Rules[0].DstPorts[0].Lo != 23 {
		t.Fatalf("Get(1): %+v %v", ov, err)
	}
	if _, _, err := s.Get(7); !errors.Is(err, ErrNoVersion) {
		t.Errorf("Get(7): %v", err)
	}
	// Going back to old rules is a new version, not a rewind.
	v3, changed, _ := s.Put(old, "rollback")
	if !changed || v3.Number != 3 || v3.Hash != v1.Hash {
		t.Errorf("rollback: %+v %v", v3, changed)
	}
	h, err := s.History()
	if err != nil || len(h) != 3 || h[0].Number != 3 || h[2].Number != 1 || h[1].Comment != "second" {
		t.Fatalf("History: %+v %v", h, err)
	}
	// Invalid sets are refused.
	bad := &rules.Set{Rules: []*rules.Rule{{ID: 0, Action: rules.ActionBlock}}}
	if _, _, err := s.Put(bad, ""); !errors.Is(err, rules.ErrInvalid) {
		t.Errorf("Put invalid: %v", err)
	}
	if _, _, err := s.Put(setWithPort(t, 1), strings.Repeat("x", MaxComment+1)); err == nil {
		t.Error("long comment accepted")
	}

	// Restart: reopen and find the same state.
	s.Close()
	s2 := openStore(t, dir)
	_, cv, err = s2.Current()
	if err != nil || cv.Number != 3 || cv.Hash != v1.Hash {
		t.Fatalf("after restart: %+v %v", cv, err)
	}
	if v, _, _ := s2.Put(setWithPort(t, 99), ""); v.Number != 4 {
		t.Errorf("version after restart %d, want 4", v.Number)
	}
}

func TestStoreHistoryBound(t *testing.T) {
	s := openStore(t, t.TempDir())
	for i := 1; i <= MaxHistory+5; i++ {
		if _, _, err := s.Put(setWithPort(t, i), ""); err != nil {
			t.Fatal(err)
		}
	}
	h, err := s.History()
	if err != nil || len(h) != MaxHistory {
		t.Fatalf("%d versions kept, want %d (%v)", len(h), MaxHistory, err)
	}
	if h[0].Number != MaxHistory+5 || h[len(h)-1].Number != 6 {
		t.Errorf("kept versions %d..%d", h[len(h)-1].Number, h[0].Number)
	}
	if _, _, err := s.Get(1); !errors.Is(err, ErrNoVersion) {
		t.Errorf("old version: %v", err)
	}
}

func TestStoreCorruptAndForeign(t *testing.T) {
	// Not a bbolt file at all.
	dir := t.TempDir()
	path := filepath.Join(dir, File)
	if err := os.WriteFile(path, []byte(strings.Repeat("not a database ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir)
	if !errors.Is(err, rules.ErrCorrupt) || !strings.Contains(err.Error(), path) {
		t.Errorf("garbage file: %v", err)
	}

	// Another program's bbolt file.
	dir = t.TempDir()
	path = filepath.Join(dir, File)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("sessions")); return err })
	db.Close()
	_, err = Open(dir)
	if !errors.Is(err, ErrForeign) || !strings.Contains(err.Error(), path) {
		t.Errorf("foreign file: %v", err)
	}

	// A store of another format version.
	dir = t.TempDir()
	s := openStore(t, dir)
	s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put([]byte(storeFormatKey), []byte("deepwall-rule-store/99"))
	})
	s.Close()
	if _, err := Open(dir); !errors.Is(err, ErrForeign) {
		t.Errorf("other format: %v", err)
	}

	// A damaged version record.
	dir = t.TempDir()
	s = openStore(t, dir)
	if _, _, err := s.Put(setWithPort(t, 23), ""); err != nil {
		t.Fatal(err)
	}
	s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketVersions).Put(u64key(1), []byte(`{"hash":"00","yaml":"rules: []\n"}`))
	})
	if _, _, err := s.Current(); !errors.Is(err, rules.ErrCorrupt) || !strings.Contains(err.Error(), s.Path()) {
		t.Errorf("damaged record: %v", err)
	}
	if _, err := s.History(); !errors.Is(err, rules.ErrCorrupt) {
		t.Errorf("damaged record in history: %v", err)
	}
	s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketVersions).Put(u64key(1), []byte("{")) })
	if _, _, err := s.Get(1); !errors.Is(err, rules.ErrCorrupt) {
		t.Errorf("truncated record: %v", err)
	}
	// Put still works and becomes the current version.
	if v, _, err := s.Put(setWithPort(t, 24), ""); err != nil || v.Number != 2 {
		t.Errorf("Put over damage: %+v %v", v, err)
	}
}
