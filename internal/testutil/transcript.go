package testutil

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Chunk is one read of a recorded connection: the bytes one endpoint
// received in one read, and their direction.
type Chunk struct {
	ToClient bool
	Data     []byte
}

// Transcript reads a recorded connection from path: one chunk a line,
// "> hex" from the client, "< hex" from the server; lines starting with
// '#' (the recording's source) and empty lines are skipped.
func Transcript(tb testing.TB, path string) []Chunk {
	tb.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	var out []Chunk
	for i, line := range strings.Split(string(raw), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		dir, h, ok := strings.Cut(line, " ")
		b, err := hex.DecodeString(h)
		if !ok || err != nil || dir != ">" && dir != "<" {
			tb.Fatalf("%s:%d: not \"> hex\" or \"< hex\"", path, i+1)
		}
		out = append(out, Chunk{ToClient: dir == "<", Data: b})
	}
	return out
}

// Rechunk cuts each direction of chunks into pieces of at most n bytes
// (n 0: one piece per direction run), keeping the order of the
// directions' runs.
func Rechunk(chunks []Chunk, n int) []Chunk {
	var out []Chunk
	for i := 0; i < len(chunks); {
		j := i
		var run []byte
		for ; j < len(chunks) && chunks[j].ToClient == chunks[i].ToClient; j++ {
			run = append(run, chunks[j].Data...)
		}
		for len(run) > 0 {
			k := len(run)
			if n > 0 {
				k = min(k, n)
			}
			out = append(out, Chunk{ToClient: chunks[i].ToClient, Data: run[:k]})
			run = run[k:]
		}
		i = j
	}
	return out
}

// TranscriptGoldens runs every recorded connection in testdata/*.txt
// through run, in its own chunks and cut into pieces of 1, 2, 3, 5, 7 and
// 64 bytes: what run reports must not depend on the cuts, and must match
// the golden file beside the recording (rewritten with update).
func TranscriptGoldens(t *testing.T, update bool, run func([]Chunk) string) {
	t.Helper()
	files, _ := filepath.Glob("testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no captures in testdata")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			chunks := Transcript(t, f)
			want := run(chunks)
			for _, n := range []int{0, 1, 2, 3, 5, 7, 64} {
				if got := run(Rechunk(chunks, n)); got != want {
					t.Fatalf("in chunks of %d:\n%s\nwant (as recorded):\n%s", n, got, want)
				}
			}
			Golden(t, strings.TrimSuffix(f, ".txt")+".golden", []byte(want), update)
		})
	}
}
