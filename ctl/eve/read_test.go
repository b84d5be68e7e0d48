package eve

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// FuzzBackLines: reading lines backwards gives the file's complete lines
// (those within MaxLine), last first, whatever the content and the
// chunking.
func FuzzBackLines(f *testing.F) {
	f.Add([]byte("a\nb\nc\n"), uint8(0))
	f.Add([]byte("\n\n\nx"), uint8(1))
	f.Add([]byte(strings.Repeat("long line ", 300)+"\nshort\n"), uint8(7))
	f.Fuzz(func(t *testing.T, data []byte, cut uint8) {
		path := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		fh, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		br := &backLines{f: fh, off: int64(len(data)), chunk: int(cut) + 1}
		end, err := br.start()
		if err != nil {
			t.Fatal(err)
		}
		complete := data[:end]
		if i := bytes.LastIndexByte(data, '\n'); int64(i+1) != end {
			t.Fatalf("end %d, last newline at %d", end, i)
		}
		var want [][]byte
		for _, l := range bytes.Split(bytes.TrimSuffix(complete, []byte("\n")), []byte("\n")) {
			if len(complete) > 0 && len(l) <= MaxLine {
				want = append(want, l)
			}
		}
		var got [][]byte
		for {
			l, ok, err := br.prev()
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			got = append(got, l)
		}
		// Empty lines are lines too, except that an all-empty tail is
		// indistinguishable: compare without them.
		nonEmpty := func(ls [][]byte) (out []string) {
			for _, l := range ls {
				if len(l) > 0 {
					out = append(out, string(l))
				}
			}
			return out
		}
		w := nonEmpty(want)
		slices.Reverse(w)
		if g := nonEmpty(got); !slices.Equal(g, w) {
			t.Fatalf("got %q, want %q", g, w)
		}
	})
}
