package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
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

func TestRuleIDs(t *testing.T) {
	seq := func(first, n int) []uint32 {
		ids := make([]uint32, n)
		for i := range ids {
			ids[i] = uint32(first + i)
		}
		return ids
	}
	for _, tc := range []struct {
		name string
		ids  []uint32
		want string // prefix
	}{
		{"one", []uint32{9001}, "rules [9001]"},
		{"at the cap", seq(1, MaxRuleIDs), fmt.Sprintf("rules %v", seq(1, MaxRuleIDs))},
		{"above the cap", seq(1, MaxRuleIDs+1), fmt.Sprintf("rules %v and 1 more (%d ids, sha256 ", seq(1, MaxRuleIDs), MaxRuleIDs+1)},
		{"ten thousand", seq(1, 10000), fmt.Sprintf("rules %v and 9936 more (10000 ids, sha256 ", seq(1, MaxRuleIDs))},
		{"largest ids", seq(math.MaxUint32-100000, 100000), "rules [4294867295 "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := RuleIDs(tc.ids)
			if !strings.HasPrefix(got, tc.want) {
				t.Errorf("RuleIDs = %.200q, want prefix %.200q", got, tc.want)
			}
			// It is also the store comment of a change ("add [...]"),
			// which rules/store bounds to 1,024 bytes.
			if len(got) > 900 {
				t.Errorf("RuleIDs is %d bytes", len(got))
			}
		})
	}
	// The digest pins the whole list down: another id at the end changes it.
	a, b := seq(1, 10000), seq(1, 10000)
	b[9999]++
	if RuleIDs(a) == RuleIDs(b) {
		t.Error("lists that differ after the cap give the same detail")
	}
}

// TestAppendBoundsEntry: free text of any size is cut, keeping its
// length and digest, so the line stays within MaxEntry and reads back.
func TestAppendBoundsEntry(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.json")
	a, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	// The worst case: every byte escaped to six ("<" is \u003c).
	huge := strings.Repeat("<", 1<<20)
	if err := a.Append(Entry{Op: "add", Detail: huge, Error: huge + "é", OK: false}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(data) - 1; n > MaxEntry || n < 2*maxText*6 {
		t.Errorf("maximal entry is %d bytes, want between %d and MaxEntry %d", n, 2*maxText*6, MaxEntry)
	}
	var e Entry
	if err := json.Unmarshal(bytes.TrimSuffix(data, []byte("\n")), &e); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(huge))
	if want := fmt.Sprintf("... (%d bytes, sha256 %x)", len(huge), sum); !strings.HasSuffix(e.Detail, want) {
		t.Errorf("detail ends %q, want %q", e.Detail[len(e.Detail)-120:], want)
	}
	if !utf8.ValidString(e.Error) {
		t.Error("cut error text is not valid UTF-8")
	}
	// Above MaxEntry (a field Append does not cut) it refuses, and the
	// log stays as it was.
	head := a.Head()
	if err := a.Append(Entry{Op: strings.Repeat("x", MaxEntry)}); !errors.Is(err, ErrEntryTooLarge) {
		t.Fatalf("oversized entry: %v, want ErrEntryTooLarge", err)
	}
	if err := a.Append(Entry{Op: "apply", OK: true}); err != nil {
		t.Fatal(err)
	}
	if res, err := Verify(path, a.Head()); err != nil || res.Broken != nil || res.Entries != 2 {
		t.Fatalf("log with a maximal entry: %+v, %v", res, err)
	}
	if head == a.Head() {
		t.Error("head did not move")
	}
}

// TestVerifyLegacyLongLines: earlier versions wrote every id of a change
// into one line (70 KB for 10,000 rules, megabytes for more); such a log
// verifies, opens and is extended.
func TestVerifyLegacyLongLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.json")
	var log bytes.Buffer
	prev := genesisHash
	for i, n := range []int{3, 10000, 700000, 1} {
		ids := make([]uint32, n)
		for j := range ids {
			ids[j] = uint32(100000 + j)
		}
		line, err := json.Marshal(Entry{Op: "add", FromVersion: uint64(i), ToVersion: uint64(i + 1),
			Detail: fmt.Sprintf("rules %v", ids), OK: true, Prev: prev})
		if err != nil {
			t.Fatal(err)
		}
		log.Write(append(line, '\n'))
		prev = hashLine(line)
	}
	if err := os.WriteFile(path, log.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if res, err := Verify(path, prev); err != nil || res.Broken != nil || res.Entries != 4 {
		t.Fatalf("legacy log: %+v, %v", res, err)
	}
	a, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Append(Entry{Op: "apply", OK: true}); err != nil {
		t.Fatal(err)
	}
	head := a.Head()
	a.Close()
	if res, err := Verify(path, head); err != nil || res.Broken != nil || res.Entries != 5 {
		t.Fatalf("legacy log extended: %+v, %v", res, err)
	}
}

func TestReadLine(t *testing.T) {
	long := strings.Repeat("a", 200)
	for _, tc := range []struct {
		name, in string
		max      int
		want     []string
		wantErr  error
	}{
		{"short lines", "a\nbc\n", 10, []string{"a\n", "bc\n"}, io.EOF},
		{"longer than the reader's buffer", long + "\nx\n", 1000, []string{long + "\n", "x\n"}, io.EOF},
		{"no final newline", "a\nbc", 10, []string{"a\n", "bc"}, io.EOF},
		{"at the bound", long[:9] + "\n", 10, []string{long[:9] + "\n"}, io.EOF},
		{"above the bound", long + "\n", 100, nil, errLineTooLong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(tc.in), 16)
			var got []string
			for {
				line, err := readLine(br, nil, tc.max)
				if len(line) > 0 && (err == nil || err == io.EOF) {
					got = append(got, string(line))
				}
				if err != nil {
					if !errors.Is(err, tc.wantErr) {
						t.Fatalf("err = %v, want %v", err, tc.wantErr)
					}
					break
				}
			}
			if tc.wantErr != io.EOF {
				return
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("lines = %q, want %q", got, tc.want)
			}
		})
	}
}
