package mqtt

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

func (r *recorder) Packet(p *Packet) {
	fmt.Fprintf(&r.b, "packet %q topics=%q", p.Name, p.Topics)
	if p.Type == Connect {
		fmt.Fprintf(&r.b, " version=%d client_id=%q user=%q", p.Version, p.ClientID, p.User)
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
// size from 1 byte: the same packets, matching the golden file.
func TestGolden(t *testing.T) { testutil.TranscriptGoldens(t, *update, run) }

// pkt frames a control packet: type and flags, remaining length, body.
func pkt(first byte, body string) string {
	out := []byte{first}
	n := len(body)
	for {
		c := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			c |= 0x80
		}
		out = append(out, c)
		if n == 0 {
			break
		}
	}
	return string(out) + body
}

// str encodes an MQTT string.
func str(s string) string { return string([]byte{byte(len(s) >> 8), byte(len(s))}) + s }

func TestParser(t *testing.T) {
	connect311 := pkt(0x10, str("MQTT")+"\x04\x02\x00\x3c"+str("c1"))
	var many strings.Builder
	many.WriteString("\x00\x01")
	for range MaxTopics + 1 {
		many.WriteString(str("t") + "\x00")
	}
	big := strings.Repeat("x", 70000)
	tests := []struct {
		name, in, want string
	}{
		{"publish with a long message", connect311 + pkt(0x30, str("a/b")+big) + pkt(0xc0, ""),
			"packet \"connect\" topics=[] version=4 client_id=\"c1\" user=\"\"\npacket \"publish\" topics=[\"a/b\"]\npacket \"pingreq\" topics=[]\n"},
		{"publish qos 1 empty topic", pkt(0x32, str("")+"\x00\x05hi"), "packet \"publish\" topics=[\"\"]\n"},
		{"publish shorter than its topic", pkt(0x30, "\x00\x09a/b"), "finding mqtt.malformed fatal=true offset=0\n"},
		{"publish without topic length", pkt(0x30, "") + pkt(0xc0, ""), "finding mqtt.malformed fatal=true offset=0\n"},
		{"reserved type", "\x00\x00", "finding mqtt.malformed fatal=true offset=0\n"},
		{"remaining length past 4 bytes", "\x30\xff\xff\xff\xff\x01", "finding mqtt.malformed fatal=true offset=0\n"},
		{"another protocol", pkt(0x10, str("AMQP")+"\x04\x02\x00\x3c"+str("c1")), "finding mqtt.malformed fatal=true offset=0\n"},
		{"subscribe filter past the end", connect311 + pkt(0x82, "\x00\x01\x00\x05a/"),
			"packet \"connect\" topics=[] version=4 client_id=\"c1\" user=\"\"\nfinding mqtt.malformed fatal=true offset=16\n"},
		{"too many filters", pkt(0x82, many.String()),
			"finding mqtt.too_many_topics fatal=false offset=0\npacket \"subscribe\" topics=" + fmt.Sprintf("%q", strings.Fields(strings.Repeat("t ", MaxTopics))) + "\n"},
		{"subscribe past MaxKeep", pkt(0x82, "\x00\x01"+str("a/b")+"\x00"+str(big[:65535-10])+"\x00"+str(big[:100])+"\x00"),
			"finding mqtt.packet_too_long fatal=false offset=0\npacket \"subscribe\" topics=[\"a/b\" \"" + big[:65535-10] + "\"]\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { prototest.ClientChunked(t, tt.in, tt.want, run) })
	}
}

type nopSink struct{}

func (nopSink) Packet(*Packet)        {}
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
