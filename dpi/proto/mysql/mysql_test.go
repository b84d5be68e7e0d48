package mysql

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

func (r *recorder) Handshake(h *Handshake) {
	fmt.Fprintf(&r.b, "handshake user=%q database=%q caps=%#x tls=%v\n", h.User, h.Database, h.Capabilities, h.TLS)
}

func (r *recorder) Command(c *Command) {
	q := c.Query
	if len(q) > 100 {
		q = fmt.Appendf(nil, "%s... (%d bytes)", q[:20], len(q))
	}
	fmt.Fprintf(&r.b, "command %s query=%q truncated=%v database=%q user=%q\n", c.Name(), q, c.Truncated, c.Database, c.User)
}

func (r *recorder) Finding(f proto.Finding) {
	fmt.Fprintf(&r.b, "finding %s fatal=%v offset=%d\n", f.Kind, f.Fatal, f.Offset)
}

// run feeds chunks to a new parser and returns what it reported.
func run(chunks []testutil.Chunk) string {
	var r recorder
	var p Parser
	p.Reset(&r)
	prototest.Feed(&p, chunks)
	return r.b.String()
}

// TestGolden feeds captures of real clients and servers in their own
// chunks, then cut into pieces of every size from 1 byte: the fields
// reported are the same and match the golden file.
func TestGolden(t *testing.T) { testutil.TranscriptGoldens(t, *update, run) }

// packet frames payload as a MySQL packet with sequence id seq.
func packet(seq byte, payload []byte) []byte {
	n := len(payload)
	return append([]byte{byte(n), byte(n >> 8), byte(n >> 16), seq}, payload...)
}

// response41 is a handshake response with caps, user, auth and db.
func response41(caps uint32, user, db string) []byte {
	b := binary.LittleEndian.AppendUint32(nil, caps)
	b = append(b, 0, 0, 0, 1, 33)
	b = append(b, make([]byte, 23)...)
	b = append(append(b, user...), 0)
	b = append(b, 2, 'x', 'y') // SECURE_CONNECTION auth
	if db != "" {
		b = append(append(b, db...), 0)
	}
	return packet(1, b)
}

func TestParser(t *testing.T) {
	const base = CapProtocol41 | CapSecureConnection
	longQuery := strings.Repeat("x", MaxQuery+10)
	attrs := []byte{ComQuery, 1, 1, 0, 1, 0x0f, 0, 1, 'n', 3, 'a', 'b', 'c'} // one VARCHAR attribute n=abc
	tests := []struct {
		name   string
		stream [][]byte
		want   string
	}{
		{"ssl request", [][]byte{packet(1, append(binary.LittleEndian.AppendUint32(nil, base|CapSSL), make([]byte, 28)...))},
			"handshake user=\"\" database=\"\" caps=0x8a00 tls=true\n"},
		{"user and db", [][]byte{response41(base|CapConnectWithDB, "app", "shop")},
			"handshake user=\"app\" database=\"shop\" caps=0x8208 tls=false\n"},
		{"commands", [][]byte{response41(base, "app", ""),
			packet(3, []byte{0xfe, 'a', 'u', 't', 'h'}), // auth switch response: skipped
			packet(0, append([]byte{ComStmtPrepare}, "SELECT ?"...)),
			packet(0, append([]byte{ComInitDB}, "other"...)),
			packet(0, append([]byte{ComChangeUser}, "root\x00\x02ab"+"mysql\x00"...)),
			packet(0, []byte{0x17, 1, 0, 0, 0}),
			packet(0, []byte{ComQuit})},
			"handshake user=\"app\" database=\"\" caps=0x8200 tls=false\n" +
				"command stmt_prepare query=\"SELECT ?\" truncated=false database=\"\" user=\"\"\n" +
				"command init_db query=\"\" truncated=false database=\"other\" user=\"\"\n" +
				"command change_user query=\"\" truncated=false database=\"mysql\" user=\"root\"\n" +
				"command stmt_execute query=\"\" truncated=false database=\"\" user=\"\"\n" +
				"command quit query=\"\" truncated=false database=\"\" user=\"\"\n"},
		{"query attributes", [][]byte{response41(base|CapQueryAttributes, "a", ""), packet(0, append(attrs, "SELECT 1"...))},
			"handshake user=\"a\" database=\"\" caps=0x8008200 tls=false\n" +
				"command query query=\"SELECT 1\" truncated=false database=\"\" user=\"\"\n"},
		{"long query", [][]byte{response41(base, "a", ""), packet(0, append([]byte{ComQuery}, longQuery...))},
			"handshake user=\"a\" database=\"\" caps=0x8200 tls=false\n" +
				"finding mysql.query_too_long fatal=false offset=41\n" +
				"command query query=\"xxxxxxxxxxxxxxxxxxxx... (65536 bytes)\" truncated=true database=\"\" user=\"\"\n"},
		{"compressed", [][]byte{response41(base|CapCompress, "a", ""), packet(0, []byte{ComQuery, 'x'})},
			"handshake user=\"a\" database=\"\" caps=0x8220 tls=false\n" +
				"finding mysql.compressed fatal=false offset=0\n"},
		{"empty command", [][]byte{response41(base, "a", ""), packet(0, nil)},
			"handshake user=\"a\" database=\"\" caps=0x8200 tls=false\n" +
				"finding mysql.malformed fatal=true offset=41\n"},
		{"short handshake", [][]byte{packet(1, []byte{0, 2, 0, 0, 0})},
			"finding mysql.malformed fatal=true offset=0\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var all []byte
			for _, s := range tt.stream {
				all = append(all, s...)
			}
			for _, n := range []int{0, 1, 3} {
				got := run(testutil.Rechunk([]testutil.Chunk{{Data: all}}, n))
				if got != tt.want {
					t.Fatalf("chunks of %d:\n%s\nwant:\n%s", n, got, tt.want)
				}
			}
		})
	}
}

// TestAllocs: parsing commands allocates nothing once the parser's
// buffer has grown.
func TestAllocs(t *testing.T) {
	chunks := testutil.Transcript(t, "testdata/mariadb-client.txt")
	var p Parser
	sink := &nopSink{}
	data := testutil.Rechunk(chunks, 3)
	n := testing.AllocsPerRun(50, func() {
		p.Reset(sink)
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

type nopSink struct{}

func (nopSink) Handshake(*Handshake)  {}
func (nopSink) Command(*Command)      {}
func (nopSink) Finding(proto.Finding) {}

// FuzzParser feeds arbitrary bytes in arbitrary chunks to both
// directions: no panic, and the same result however the input is cut.
func FuzzParser(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.txt")
	for _, path := range files {
		for _, c := range testutil.Transcript(f, path) {
			if !c.ToClient {
				f.Add(c.Data, []byte{3, 200})
			}
		}
	}
	greet := []testutil.Chunk{{ToClient: true, Data: packet(0, []byte{10, '8', 0, 1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0xff, 0xff, 33, 2, 0, 0xff, 0xff})}}
	prototest.FuzzChunked(f, greet, run)
}

// BenchmarkParser parses the recorded connections, whole chunks.
func BenchmarkParser(b *testing.B) {
	var p Parser
	prototest.BenchTranscripts(b, &p, func() { p.Reset(nopSink{}) })
}
