package prototest

import (
	"path/filepath"
	"testing"

	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/internal/testutil"
)

// Feeder is a parser fed both directions of a connection, as the
// database parsers are.
type Feeder interface {
	Feed(dir proto.Dir, b []byte) bool
}

// Feed gives p the chunks of a recorded connection in order.
func Feed(p Feeder, chunks []testutil.Chunk) {
	for _, c := range chunks {
		dir := proto.ToServer
		if c.ToClient {
			dir = proto.ToClient
		}
		p.Feed(dir, c.Data)
	}
}

// FuzzChunked runs run on the client bytes of each fuzz input after
// prefix (chunks from the server, e.g. a greeting), whole and cut into
// RandomChunks: what run reports must not depend on the cuts. Seeds are
// the caller's.
func FuzzChunked(f *testing.F, prefix []testutil.Chunk, run func([]testutil.Chunk) string) {
	f.Fuzz(func(t *testing.T, data, seed []byte) {
		want := run(append(append([]testutil.Chunk(nil), prefix...), testutil.Chunk{Data: data}))
		cs := append([]testutil.Chunk(nil), prefix...)
		for _, c := range RandomChunks(data, seed) {
			cs = append(cs, testutil.Chunk{Data: c})
		}
		if got := run(cs); got != want {
			t.Fatalf("chunked:\n%s\nwhole:\n%s", got, want)
		}
	})
}

// ClientChunked fails t unless run reports want for the client bytes in,
// whole and cut in pieces of 1 and of 3 bytes.
func ClientChunked(t *testing.T, in, want string, run func([]testutil.Chunk) string) {
	t.Helper()
	for _, n := range []int{0, 1, 3} {
		if got := run(testutil.Rechunk([]testutil.Chunk{{Data: []byte(in)}}, n)); got != want {
			t.Fatalf("chunks of %d:\n%s\nwant:\n%s", n, got, want)
		}
	}
}

// SeedTranscripts adds the client bytes of every recorded connection in
// testdata/*.txt to f's corpus, with a chunking seed for FuzzChunked.
func SeedTranscripts(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.txt")
	for _, path := range files {
		var client []byte
		for _, c := range testutil.Transcript(f, path) {
			if !c.ToClient {
				client = append(client, c.Data...)
			}
		}
		f.Add(client, []byte{3, 200})
	}
}

// TranscriptAllocs returns the allocations of one pass of p over every
// recorded connection in testdata/*.txt cut in 3-byte chunks, reset
// before each connection, once its buffers have grown.
func TranscriptAllocs(tb testing.TB, p Feeder, reset func()) float64 {
	tb.Helper()
	files, _ := filepath.Glob("testdata/*.txt")
	var conns [][]testutil.Chunk
	for _, f := range files {
		conns = append(conns, testutil.Rechunk(testutil.Transcript(tb, f), 3))
	}
	return testing.AllocsPerRun(50, func() {
		for _, data := range conns {
			reset()
			Feed(p, data)
		}
	})
}

// BenchTranscripts measures p over every recorded connection in
// testdata/*.txt, reset before each connection (a parser's state, such
// as memcached's protocol or MySQL's phase, is the connection's).
func BenchTranscripts(b *testing.B, p Feeder, reset func()) {
	files, _ := filepath.Glob("testdata/*.txt")
	var conns [][]testutil.Chunk
	n := 0
	for _, f := range files {
		chunks := testutil.Transcript(b, f)
		for _, c := range chunks {
			n += len(c.Data)
		}
		conns = append(conns, chunks)
	}
	b.SetBytes(int64(n))
	b.ReportAllocs()
	for b.Loop() {
		for _, chunks := range conns {
			reset()
			Feed(p, chunks)
		}
	}
}
