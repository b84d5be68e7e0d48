package redis

import (
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
	fmt.Fprintf(&r.b, "command %q args=%d inline=%v keys=%q\n", c.Name, c.Args, c.Inline, c.Keys)
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

// resp encodes args as a RESP array of bulk strings.
func resp(args ...string) string {
	s := fmt.Sprintf("*%d\r\n", len(args))
	for _, a := range args {
		s += fmt.Sprintf("$%d\r\n%s\r\n", len(a), a)
	}
	return s
}

func TestParser(t *testing.T) {
	manyKeys := []string{"DEL"}
	for i := range MaxKeys + 2 {
		manyKeys = append(manyKeys, fmt.Sprint("k", i))
	}
	longKey := strings.Repeat("k", MaxArg+1)
	tests := []struct {
		name, in, want string
	}{
		{"keys by position", resp("GET", "a") + resp("MSET", "a", "1", "b", "2") + resp("BLPOP", "x", "y", "0") + resp("PING") + resp("rename", "a", "b"),
			"command \"get\" args=1 inline=false keys=[\"a\"]\n" +
				"command \"mset\" args=4 inline=false keys=[\"a\" \"b\"]\n" +
				"command \"blpop\" args=3 inline=false keys=[\"x\" \"y\"]\n" +
				"command \"ping\" args=0 inline=false keys=[]\n" +
				"command \"rename\" args=2 inline=false keys=[\"a\" \"b\"]\n"},
		{"eval", resp("EVALSHA", "abc", "2", "k1", "k2", "arg"),
			"command \"evalsha\" args=5 inline=false keys=[\"k1\" \"k2\"]\n"},
		{"empty arrays ignored", "*0\r\n*-1\r\n" + resp("GET", "a"),
			"command \"get\" args=1 inline=false keys=[\"a\"]\n"},
		{"inline", "set \"a\\x41 b\" 'it\\'s'\r\n\r\nEVAL \"return 1\" 1 key\n",
			"command \"set\" args=2 inline=true keys=[\"aA b\"]\n" +
				"command \"eval\" args=3 inline=true keys=[\"key\"]\n"},
		{"unbalanced quotes", "GET \"a\r\n", "finding redis.malformed fatal=true offset=0\n"},
		{"closing quote before a word", "GET \"a\"b\r\n", "finding redis.malformed fatal=true offset=0\n"},
		{"not a bulk", "*1\r\n:1\r\n", "finding redis.malformed fatal=true offset=0\n"},
		{"bad bulk end", "*1\r\n$3\r\nGETxx", "finding redis.malformed fatal=true offset=0\n"},
		{"header without CR", "*1\n$3\r\nGET\r\n", "finding redis.malformed fatal=true offset=0\n"},
		{"too many keys", resp(manyKeys...),
			"finding redis.too_many_keys fatal=false offset=0\n" +
				"command \"del\" args=66 inline=false keys=" + fmt.Sprintf("%q", manyKeys[1:MaxKeys+1]) + "\n"},
		{"long key", resp("GET", longKey),
			"finding redis.arg_too_long fatal=false offset=0\n" +
				"command \"get\" args=1 inline=false keys=[\"" + longKey[:MaxArg] + "\"]\n"},
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
	data := testutil.Rechunk(append(testutil.Transcript(t, "testdata/redis-cli.txt"), testutil.Transcript(t, "testdata/inline.txt")...), 3)
	var p Parser
	n := testing.AllocsPerRun(50, func() {
		p.Reset(nopSink{})
		for _, c := range data {
			if !c.ToClient {
				p.Feed(proto.ToServer, c.Data)
			}
		}
	})
	if n != 0 {
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
