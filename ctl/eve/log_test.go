package eve

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readEvents returns the flow ids of every event in the live file and its
// rotated siblings.
func readEvents(tb testing.TB, path string) []uint64 {
	tb.Helper()
	files, _ := filepath.Glob(path + "*")
	var ids []uint64
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			tb.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var ev Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				tb.Fatalf("%s: bad line %q: %v", name, sc.Text(), err)
			}
			ids = append(ids, ev.FlowID)
		}
		f.Close()
	}
	return ids
}

func TestEventLogRotatesWithoutLoss(t *testing.T) {
	path := filepath.Join(t.TempDir(), "eve.json")
	const n = 20000
	// Keep enough files that none is removed: every event must be found.
	l, err := Open(Config{Path: path, MaxBytes: 64 << 10, Keep: 100, Queue: n})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if !l.Emit(&Event{FlowID: uint64(i), EventType: EventAlert, SrcIP: "198.18.0.1", DestIP: "198.18.0.2", Proto: "TCP"}) {
			t.Fatalf("event %d dropped with a queue as large as the load", i)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	st := l.Stats()
	if st.Written != n || st.Dropped != 0 || st.Errors != 0 {
		t.Fatalf("stats = %+v, want %d written", st, n)
	}
	if st.Rotations == 0 {
		t.Fatalf("no rotation at 64 KiB for %d events", n)
	}
	ids := readEvents(t, path)
	if len(ids) != n {
		t.Fatalf("found %d events in the files, want %d", len(ids), n)
	}
	seen := make(map[uint64]bool, n)
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("event %d written twice", id)
		}
		seen[id] = true
	}
	for name := range readSizes(t, path) {
		if fi, _ := os.Stat(name); fi.Size() > 64<<10 {
			t.Errorf("%s is %d bytes, past the 64 KiB limit", name, fi.Size())
		}
	}
}

func readSizes(tb testing.TB, path string) map[string]int64 {
	tb.Helper()
	files, _ := filepath.Glob(path + "*")
	m := map[string]int64{}
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			tb.Fatal(err)
		}
		m[f] = fi.Size()
	}
	return m
}

func TestEventLogKeepsBoundedFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "eve.json")
	l, err := Open(Config{Path: path, MaxBytes: 4 << 10, Keep: 3})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5000 {
		l.Emit(&Event{FlowID: uint64(i)})
	}
	l.Close()
	if got := len(readSizes(t, path)); got != 4 {
		t.Errorf("%d files, want the live one and 3 rotated", got)
	}
}

func TestEventLogCountsDrops(t *testing.T) {
	path := filepath.Join(t.TempDir(), "eve.json")
	l, err := Open(Config{Path: path, Queue: 1})
	if err != nil {
		t.Fatal(err)
	}
	const n = 100000
	for i := range n {
		l.Emit(&Event{FlowID: uint64(i)})
	}
	l.Close()
	st := l.Stats()
	if st.Written+st.Dropped != n {
		t.Fatalf("written %d + dropped %d != %d emitted", st.Written, st.Dropped, n)
	}
	if got := uint64(len(readEvents(t, path))); got != st.Written {
		t.Fatalf("%d lines on disk, %d counted written", got, st.Written)
	}
}

func TestEventLogReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "eve.json")
	l, err := Open(Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Emit(&Event{FlowID: 1})
	// What logrotate does: move the file away, then signal.
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".old"); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	l.Emit(&Event{FlowID: 2})
	l.Close()
	old, _ := os.ReadFile(path + ".old")
	cur, _ := os.ReadFile(path)
	if !strings.Contains(string(old), `"flow_id":1`) || !strings.Contains(string(cur), `"flow_id":2`) || strings.Contains(string(cur), `"flow_id":1`) {
		t.Fatalf("old=%q new=%q", old, cur)
	}
}

func TestEventLogUnwritable(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(Config{Path: filepath.Join(blocker, "eve.json")})
	if err == nil || !strings.Contains(err.Error(), blocker) {
		t.Fatalf("err = %v, want one naming %s", err, blocker)
	}
}

// TestEventLogTap: the tap sees every event written, in order, with its
// Community ID set, and the file has them too.
func TestEventLogTap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "eve.json")
	var seen []uint64
	var ids []string
	l, err := Open(Config{Path: path, Tap: func(ev *Event) {
		seen = append(seen, ev.FlowID)
		ids = append(ids, ev.CommunityID)
	}})
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	for i := range n {
		l.Emit(&Event{FlowID: uint64(i), EventType: EventAlert, SrcIP: "198.18.0.1", SrcPort: 1, DestIP: "198.18.0.2", DestPort: 80, Proto: "TCP"})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if len(seen) != n || len(readEvents(t, path)) != n {
		t.Fatalf("tap saw %d events, file has %d, want %d each", len(seen), len(readEvents(t, path)), n)
	}
	for i, id := range seen {
		if id != uint64(i) || ids[i] == "" {
			t.Fatalf("tap event %d: flow %d, community id %q", i, id, ids[i])
		}
	}
}
