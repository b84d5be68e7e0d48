package audit

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func writeAudit(tb testing.TB, n int) (path string, head string) {
	tb.Helper()
	path = filepath.Join(tb.TempDir(), "audit.json")
	a, err := Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	for i := range n {
		if err := a.Append(Entry{UID: 0, Op: "rules.apply", FromVersion: uint64(i), ToVersion: uint64(i + 1), OK: true}); err != nil {
			tb.Fatal(err)
		}
	}
	head = a.Head()
	a.Close()
	return path, head
}

func TestAuditChain(t *testing.T) {
	path, head := writeAudit(t, 5)
	res, err := Verify(path, head)
	if err != nil || res.Broken != nil || res.Entries != 5 {
		t.Fatalf("intact log: %+v, %v", res, err)
	}
	// Reopening continues the chain.
	a, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Append(Entry{Op: "rules.add", OK: true}); err != nil {
		t.Fatal(err)
	}
	a.Close()
	if res, _ := Verify(path, ""); res.Broken != nil || res.Entries != 6 {
		t.Fatalf("after reopen: %+v", res)
	}
}

func TestAuditDetectsTampering(t *testing.T) {
	for _, tc := range []struct {
		name     string
		edit     func([][]byte) [][]byte
		useHead  bool
		wantLine int
	}{
		{"edited middle line", func(l [][]byte) [][]byte {
			l[2] = bytes.Replace(l[2], []byte(`"uid":0`), []byte(`"uid":1`), 1)
			return l
		}, false, 4},
		{"removed middle line", func(l [][]byte) [][]byte { return append(l[:2:2], l[3:]...) }, false, 3},
		{"swapped lines", func(l [][]byte) [][]byte { l[1], l[2] = l[2], l[1]; return l }, false, 2},
		{"removed first line", func(l [][]byte) [][]byte { return l[1:] }, false, 1},
		{"garbage line", func(l [][]byte) [][]byte { l[3] = []byte("hello"); return l }, false, 4},
		{"edited last line (head check)", func(l [][]byte) [][]byte {
			l[4] = bytes.Replace(l[4], []byte(`"op":"rules.apply"`), []byte(`"op":"rules.nope"`), 1)
			return l
		}, true, 5},
		{"removed last line (head check)", func(l [][]byte) [][]byte { return l[:4] }, true, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, head := writeAudit(t, 5)
			data, _ := os.ReadFile(path)
			lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
			lines = tc.edit(lines)
			if err := os.WriteFile(path, append(bytes.Join(lines, []byte("\n")), '\n'), 0o600); err != nil {
				t.Fatal(err)
			}
			want := ""
			if tc.useHead {
				want = head
			}
			res, err := Verify(path, want)
			if err != nil {
				t.Fatal(err)
			}
			if res.Broken == nil || res.Broken.Line != tc.wantLine {
				t.Fatalf("broken = %+v, want line %d", res.Broken, tc.wantLine)
			}
			if !errors.Is(res.Broken, ErrBroken) {
				t.Errorf("errors.Is(ErrBroken) = false")
			}
			if !tc.useHead {
				if _, err := Open(path); !errors.Is(err, ErrBroken) {
					t.Errorf("Open on a broken log: %v", err)
				}
			}
		})
	}
}
