package memcached

import (
	"encoding/binary"
	"flag"
	"fmt"
	"strings"
	"testing"

	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/dpi/proto/internal/prototest"
	"github.com/deepwall/deepwall/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite the golden files")

type recorder struct{ b strings.Builder }

func (r *recorder) Command(c *Command) {
	fmt.Fprintf(&r.b, "command %q keys=%q", c.Name, c.Keys)
	if c.Binary {
		fmt.Fprintf(&r.b, " opcode=%#02x", c.Opcode)
	}
	r.b.WriteByte('\n')
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

// TestGolden feeds captures of real clients whole and in pieces of every
// size from 1 byte: the same commands, matching the golden file.
func TestGolden(t *testing.T) { testutil.TranscriptGoldens(t, *update, run) }

// bin builds a binary request.
func bin(op byte, extras, key, value string) string {
	h := make([]byte, binHeader)
	h[0], h[1] = binMagic, op
	binary.BigEndian.PutUint16(h[2:], uint16(len(key)))
	h[4] = byte(len(extras))
	binary.BigEndian.PutUint32(h[8:], uint32(len(extras)+len(key)+len(value)))
	return string(h) + extras + key + value
}

func TestParser(t *testing.T) {
	manyKeys := "get" + strings.Repeat(" k", MaxKeys+3) + "\r\n"
	tests := []struct {
		name, in, want string
	}{
		{"data block skipped", "set a 0 0 9\r\nflush_all\r\nget a\r\n",
			"command \"set\" keys=[\"a\"]\ncommand \"get\" keys=[\"a\"]\n"},
		{"refused storage line has no data block", "set a 0 0 x\r\nflush_all\r\nset a -1 0 2\r\nhi\r\nset a 0 0 -2\r\nmn\r\n",
			"command \"set\" keys=[\"a\"]\ncommand \"flush_all\" keys=[]\n" +
				"command \"set\" keys=[\"a\"]\ncommand \"hi\" keys=[]\n" +
				"command \"set\" keys=[\"a\"]\ncommand \"mn\" keys=[]\n"},
		{"too many tokens for set", "set a 0 0 2 noreply extra\r\nhi\r\n",
			"command \"set\" keys=[\"a\"]\ncommand \"hi\" keys=[]\n"},
		{"long key has no data block", "set " + strings.Repeat("k", MaxKey+1) + " 0 0 2\r\nhi\r\n",
			"command \"set\" keys=[\"" + strings.Repeat("k", MaxKey+1) + "\"]\ncommand \"hi\" keys=[]\n"},
		{"cas", "cas a 0 0 2 77 noreply\r\nhi\r\ncas a 0 0 2 -1\r\nhi\r\n",
			"command \"cas\" keys=[\"a\"]\ncommand \"cas\" keys=[\"a\"]\ncommand \"hi\" keys=[]\n"},
		{"bad data chunk", "set a 0 0 2\r\nhixxget b\r\n",
			"command \"set\" keys=[\"a\"]\nfinding memcached.bad_data_chunk fatal=false offset=0\ncommand \"get\" keys=[\"b\"]\n"},
		{"spaces and bare LF", "  get   a  b \nGET c\n\n",
			"command \"get\" keys=[\"a\" \"b\"]\ncommand \"GET\" keys=[]\n"},
		{"gat keys after exptime", "gats 10 a b\r\ngat 10\r\n",
			"command \"gats\" keys=[\"a\" \"b\"]\ncommand \"gat\" keys=[]\n"},
		{"too many keys", manyKeys,
			"finding memcached.too_many_keys fatal=false offset=0\ncommand \"get\" keys=" +
				fmt.Sprintf("%q", strings.Fields(strings.Repeat(" k", MaxKeys))) + "\n"},
		{"line too long", "get " + strings.Repeat("k", MaxLine),
			"finding memcached.line_too_long fatal=true offset=0\n"},
		{"binary", bin(0x0c, "", "a", "") + bin(0x11, "12345678", "bb", "value") + bin(0x18, "", "", "") + bin(0x42, "", "x", "yz") + bin(0x0a, "", "", ""),
			"command \"get\" keys=[\"a\"] opcode=0x0c\ncommand \"set\" keys=[\"bb\"] opcode=0x11\n" +
				"command \"flush_all\" keys=[] opcode=0x18\ncommand \"unknown\" keys=[\"x\"] opcode=0x42\ncommand \"noop\" keys=[] opcode=0x0a\n"},
		{"binary key past the body", bin(0x00, "", "a", "")[:11] + "\x00" + strings.Repeat("\x00", 12) + "a",
			"finding memcached.malformed fatal=true offset=0\n"},
		{"binary magic lost", bin(0x00, "", "a", "") + "get a\r\n" + strings.Repeat("\x00", 20),
			"command \"get\" keys=[\"a\"] opcode=0x00\nfinding memcached.malformed fatal=true offset=25\n"},
		{"binary long key", bin(0x00, "", strings.Repeat("k", MaxKey+1), ""),
			"finding memcached.malformed fatal=true offset=0\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { prototest.ClientChunked(t, tt.in, tt.want, run) })
	}
}

type nopSink struct{}

func (nopSink) Command(*Command)      {}
func (nopSink) Finding(proto.Finding) {}

// TestAllocs: parsing allocates nothing once the buffers have grown.
func TestAllocs(t *testing.T) {
	var p Parser
	if n := prototest.TranscriptAllocs(t, &p, func() { p.Reset(nopSink{}) }); n != 0 {
		t.Fatalf("%v allocations per connection", n)
	}
}

// FuzzParser: no panic, and the same result however the bytes are cut.
func FuzzParser(f *testing.F) {
	prototest.SeedTranscripts(f)
	prototest.FuzzChunked(f, nil, run)
}

// BenchmarkParser parses the recorded connections, whole chunks.
func BenchmarkParser(b *testing.B) {
	var p Parser
	prototest.BenchTranscripts(b, &p, func() { p.Reset(nopSink{}) })
}
