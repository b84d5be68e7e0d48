package pgsql

import (
	"encoding/binary"
	"flag"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/dpi/proto/internal/prototest"
	"github.com/deepwall/deepwall/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// recorder writes what the parser reports, one line each.
type recorder struct{ b strings.Builder }

func (r *recorder) Startup(s *Startup) {
	fmt.Fprintf(&r.b, "startup %d.%d user=%q database=%q application=%q\n", s.Major, s.Minor, s.User, s.Database, s.ApplicationName)
}

func (r *recorder) Encrypted(kind string) { fmt.Fprintf(&r.b, "encrypted %s\n", kind) }

func (r *recorder) Query(q *Query) {
	t := q.Text
	if len(t) > 100 {
		t = fmt.Appendf(nil, "%s... (%d bytes)", t[:20], len(t))
	}
	fmt.Fprintf(&r.b, "query %c statement=%q text=%q truncated=%v\n", q.Type, q.Statement, t, q.Truncated)
}

func (r *recorder) Finding(f proto.Finding) {
	fmt.Fprintf(&r.b, "finding %s fatal=%v offset=%d\n", f.Kind, f.Fatal, f.Offset)
}

func run(chunks []testutil.Chunk) string {
	var r recorder
	var p Parser
	p.Reset(&r)
	prototest.Feed(&p, chunks)
	return r.b.String()
}

// TestGolden feeds captures of real clients and servers whole and in
// pieces of every size from 1 byte: the same fields, matching the golden
// file.
func TestGolden(t *testing.T) { testutil.TranscriptGoldens(t, *update, run) }

func untyped(code uint32, body string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(8+len(body)))
	b = binary.BigEndian.AppendUint32(b, code)
	return append(b, body...)
}

func typed(t byte, body string) []byte {
	b := binary.BigEndian.AppendUint32([]byte{t}, uint32(4+len(body)))
	return append(b, body...)
}

func TestParser(t *testing.T) {
	startup := untyped(3<<16, "user\x00app\x00\x00")
	long := strings.Repeat("y", MaxQuery+5)
	tests := []struct {
		name string
		in   []testutil.Chunk
		want string
	}{
		{"ssl accepted", []testutil.Chunk{{Data: untyped(codeSSL, "")}, {ToClient: true, Data: []byte("S")}, {Data: []byte{0x16, 3, 1}}},
			"encrypted ssl\n"},
		{"gss refused then ssl refused", []testutil.Chunk{{Data: untyped(codeGSSENC, "")}, {ToClient: true, Data: []byte("N")},
			{Data: untyped(codeSSL, "")}, {ToClient: true, Data: []byte("N")}, {Data: startup}, {Data: typed('Q', "SELECT 1\x00")}},
			"startup 3.0 user=\"app\" database=\"app\" application=\"\"\nquery Q statement=\"\" text=\"SELECT 1\" truncated=false\n"},
		{"parse", []testutil.Chunk{{Data: startup}, {Data: typed('p', "secret\x00")}, {Data: typed('P', "s1\x00SELECT $1\x00\x00\x00")}},
			"startup 3.0 user=\"app\" database=\"app\" application=\"\"\nquery P statement=\"s1\" text=\"SELECT $1\" truncated=false\n"},
		{"long query", []testutil.Chunk{{Data: startup}, {Data: typed('Q', long+"\x00")}},
			"startup 3.0 user=\"app\" database=\"app\" application=\"\"\nfinding pgsql.query_too_long fatal=false offset=18\n" +
				"query Q statement=\"\" text=\"yyyyyyyyyyyyyyyyyyyy... (65536 bytes)\" truncated=true\n"},
		{"bad length", []testutil.Chunk{{Data: startup}, {Data: []byte{'Q', 0, 0, 0, 2}}},
			"startup 3.0 user=\"app\" database=\"app\" application=\"\"\nfinding pgsql.malformed fatal=true offset=18\n"},
		{"protocol 2", []testutil.Chunk{{Data: untyped(2<<16, "user\x00x\x00\x00")}},
			"finding pgsql.malformed fatal=true offset=0\n"},
		{"request before answer", []testutil.Chunk{{Data: untyped(codeSSL, "")}, {Data: startup}},
			"finding pgsql.malformed fatal=true offset=8\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, n := range []int{0, 1, 3} {
				if got := run(testutil.Rechunk(tt.in, n)); got != tt.want {
					t.Fatalf("chunks of %d:\n%s\nwant:\n%s", n, got, tt.want)
				}
			}
		})
	}
}

type nopSink struct{}

func (nopSink) Startup(*Startup)      {}
func (nopSink) Encrypted(string)      {}
func (nopSink) Query(*Query)          {}
func (nopSink) Finding(proto.Finding) {}

// TestAllocs: parsing allocates nothing once the buffer has grown.
func TestAllocs(t *testing.T) {
	data := testutil.Rechunk(testutil.Transcript(t, "testdata/pgbench-prepared.txt"), 3)
	var p Parser
	n := testing.AllocsPerRun(50, func() {
		p.Reset(nopSink{})
		for _, c := range data {
			dir := proto.ToServer
			if c.ToClient {
				dir = proto.ToClient
			}
			p.Feed(dir, c.Data)
		}
	})
	if n != 0 {
		t.Fatalf("%v allocations per connection", n)
	}
}

// FuzzParser: no panic, and the same result however the client's bytes
// are cut.
func FuzzParser(f *testing.F) {
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
	prototest.FuzzChunked(f, nil, run)
}

// BenchmarkParser parses the recorded connections, whole chunks.
func BenchmarkParser(b *testing.B) {
	var p Parser
	prototest.BenchTranscripts(b, &p, func() { p.Reset(nopSink{}) })
}
