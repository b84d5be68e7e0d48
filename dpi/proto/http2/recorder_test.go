package http2

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/dpi/proto/http"
)

// recorder is a Sink that writes every event as a line of text, with the
// body chunks of a stream's side merged (chunk boundaries depend on how
// the input was cut; their concatenation must not). It checks the Sink
// contract as it goes.
type recorder struct {
	tb       testing.TB
	lines    []string
	streams  map[uint32]*recStream
	closed   map[uint32]bool
	findings []proto.Finding
	stopped  bool
}

// recStream is what recorder knows of a stream's two sides.
type recStream struct {
	head, end [2]bool
	trailers  [2]bool
	body      [2]bytes.Buffer
}

func newRecorder(tb testing.TB) *recorder {
	return &recorder{tb: tb, streams: map[uint32]*recStream{}, closed: map[uint32]bool{}}
}

func (r *recorder) add(format string, args ...any) {
	if r.stopped {
		r.tb.Errorf("event after a fatal finding: "+format, args...)
	}
	r.lines = append(r.lines, fmt.Sprintf(format, args...))
}

func (r *recorder) stream(id uint32) *recStream {
	if r.closed[id] {
		r.tb.Errorf("stream %d: event after StreamClosed", id)
	}
	s := r.streams[id]
	if s == nil {
		s = &recStream{}
		r.streams[id] = s
	}
	return s
}

func (r *recorder) RequestHeaders(id uint32, q *http.Request) {
	s := r.stream(id)
	if s.head[0] {
		r.tb.Errorf("stream %d: second request head", id)
	}
	s.head[0] = true
	var args []string
	for _, a := range q.Args {
		args = append(args, string(a.Name)+"="+string(a.Value))
	}
	r.add("%d req %s uri=%q path=%q query=%q args=%q proto=%s host=%q ua=%q cl=%d seq=%d headers=%q",
		id, q.Method, q.URI, q.Path, q.Query, strings.Join(args, "|"), q.Proto, q.Host, q.UserAgent,
		q.ContentLength, q.Seq, q.HeaderBlock)
	for _, h := range q.Headers {
		if q.Header(string(h.Name)) == nil {
			r.tb.Errorf("Header(%q) = nil", h.Name)
		}
	}
}

func (r *recorder) ResponseHeaders(id uint32, q *http.Response) {
	s := r.stream(id)
	if s.head[1] {
		r.tb.Errorf("stream %d: response head after the final one", id)
	}
	if !q.Interim {
		s.head[1] = true
	}
	r.add("%d resp %d proto=%s cl=%d seq=%d interim=%v headers=%q", id, q.Status, q.Proto, q.ContentLength, q.Seq, q.Interim, q.HeaderBlock)
}

func (r *recorder) RequestBody(id uint32, chunk []byte, end bool)  { r.body(id, 0, chunk, end) }
func (r *recorder) ResponseBody(id uint32, chunk []byte, end bool) { r.body(id, 1, chunk, end) }

var sides = [2]string{"req", "resp"}

func (r *recorder) body(id uint32, side int, chunk []byte, end bool) {
	s := r.stream(id)
	if !s.head[side] || s.end[side] {
		r.tb.Errorf("stream %d: %s body without head or after end", id, sides[side])
	}
	if !end && len(chunk) == 0 {
		r.tb.Errorf("stream %d: empty %s chunk without end", id, sides[side])
	}
	s.body[side].Write(chunk)
	if end {
		s.end[side] = true
		r.add("%d %sbody %s", id, sides[side], short(s.body[side].Bytes()))
		s.body[side].Reset()
	}
}

// short quotes a body, cut to its first 200 bytes and length when
// longer, to keep the golden files small.
func short(b []byte) string {
	if len(b) > 200 {
		return fmt.Sprintf("%q...(%d bytes)", b[:200], len(b))
	}
	return fmt.Sprintf("%q", b)
}

func (r *recorder) Trailers(id uint32, dir proto.Dir, hs []http.Header, block []byte) {
	s := r.stream(id)
	if !s.head[dir] || s.end[dir] || s.trailers[dir] {
		r.tb.Errorf("stream %d: %s trailers out of place", id, dir)
	}
	s.trailers[dir] = true
	r.add("%d trailers %s %q", id, dir, block)
}

func (r *recorder) StreamClosed(id uint32, how End) {
	s := r.stream(id)
	for side := range 2 {
		if s.body[side].Len() > 0 {
			r.add("%d %sbody-open %s", id, sides[side], short(s.body[side].Bytes()))
		}
	}
	if how == EndComplete && !(s.end[0] && s.end[1]) {
		r.tb.Errorf("stream %d complete without both ends", id)
	}
	r.closed[id] = true
	r.add("%d closed %s", id, how)
}

func (r *recorder) Finding(id uint32, f proto.Finding) {
	r.findings = append(r.findings, f)
	fatal := ""
	if f.Fatal {
		fatal = " fatal"
	}
	r.add("finding %s stream=%d %s@%d%s", f.Kind, id, f.Dir, f.Offset, fatal)
	if f.Fatal {
		r.stopped = true
	}
}

// has reports whether kind was found.
func (r *recorder) has(k proto.FindingKind) bool {
	for _, f := range r.findings {
		if f.Kind == k {
			return true
		}
	}
	return false
}

func (r *recorder) String() string { return strings.Join(r.lines, "\n") + "\n" }

// conversation is a captured connection: its two byte streams.
type conversation struct {
	name       string
	c2s, s2c   []byte
	upgraded   bool   // starts in HTTP/1.1 with Upgrade: h2c
	settings   []byte // the upgrade's HTTP2-Settings
	h1c, h1s   int    // bytes of HTTP/1 before HTTP/2 in each direction
	h1Requests []string
}

// loadConversations reads testdata/conv (see capture.sh there).
func loadConversations(tb testing.TB) []conversation {
	tb.Helper()
	names, err := filepath.Glob("testdata/conv/*.c2s")
	if err != nil || len(names) == 0 {
		tb.Fatalf("no conversations: %v", err)
	}
	var out []conversation
	for _, n := range names {
		base := strings.TrimSuffix(n, ".c2s")
		c2s, err := os.ReadFile(n)
		if err != nil {
			tb.Fatal(err)
		}
		s2c, err := os.ReadFile(base + ".s2c")
		if err != nil {
			tb.Fatal(err)
		}
		c := conversation{name: filepath.Base(base), c2s: c2s, s2c: s2c}
		if !bytes.HasPrefix(c2s, []byte(Preface)) {
			upgradeSplit(tb, &c)
		}
		out = append(out, c)
	}
	return out
}

// h1sink finds where HTTP/1 ends and what the upgrade request said, as
// the engine does.
type h1sink struct {
	settings []byte
	reqs     []string
	upgraded bool
}

func (s *h1sink) RequestHeaders(r *http.Request) {
	s.settings = append([]byte(nil), UpgradeSettings(r)...)
	s.reqs = append(s.reqs, string(r.Method)+" "+string(r.URI))
}
func (s *h1sink) RequestBody([]byte, bool)         {}
func (s *h1sink) ResponseHeaders(r *http.Response) { s.upgraded = IsUpgrade(r) }
func (s *h1sink) ResponseBody([]byte, bool)        {}
func (s *h1sink) Finding(proto.Finding)            {}

// upgradeSplit runs the HTTP/1 parser over an upgraded conversation, as
// the engine does, to find where each direction switches to HTTP/2.
func upgradeSplit(tb testing.TB, c *conversation) {
	tb.Helper()
	var s h1sink
	p := http.NewParser(&s, http.NewScratch(http.Limits{}))
	// The client sends its preface only after the 101 (the engine feeds
	// the 101 first): feed its request head, then the server's bytes.
	head := bytes.Index(c.c2s, []byte("\r\n\r\n")) + 4
	c.h1c = p.Feed(proto.ToServer, c.c2s[:head])
	c.h1s = p.Feed(proto.ToClient, c.s2c)
	if c.h1c != head || !s.upgraded || p.State(proto.ToServer) != http.StateTunnel || p.State(proto.ToClient) != http.StateTunnel {
		tb.Fatalf("%s: no h2c upgrade (%v %v)", c.name, p.State(proto.ToServer), p.State(proto.ToClient))
	}
	c.upgraded, c.settings, c.h1Requests = true, s.settings, s.reqs
}

// run parses a conversation: client bytes in cchunks, then server bytes
// in schunks (each direction's chunks concatenate to its HTTP/2 part).
func run(p *Parser, c conversation, cchunks, schunks [][]byte) {
	if c.upgraded {
		p.Upgrade(c.settings)
		if r, ok := p.sink.(*recorder); ok {
			// The HTTP/1 parser delivered stream 1's request.
			s := r.stream(1)
			s.head[0], s.end[0] = true, true
		}
	}
	for _, ch := range cchunks {
		p.Feed(proto.ToServer, ch)
	}
	for _, ch := range schunks {
		p.Feed(proto.ToClient, ch)
	}
	p.Close(proto.ToServer)
	p.Close(proto.ToClient)
}
