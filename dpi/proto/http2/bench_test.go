package http2

import (
	"fmt"
	"testing"

	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/dpi/proto/http"
)

// nopSink discards events, as cheaply as a Sink can.
type nopSink struct{ n int }

func (s *nopSink) RequestHeaders(uint32, *http.Request)            { s.n++ }
func (*nopSink) RequestBody(uint32, []byte, bool)                  {}
func (*nopSink) ResponseHeaders(uint32, *http.Response)            {}
func (*nopSink) ResponseBody(uint32, []byte, bool)                 {}
func (*nopSink) Trailers(uint32, proto.Dir, []http.Header, []byte) {}
func (*nopSink) StreamClosed(uint32, End)                          {}
func (*nopSink) Finding(uint32, proto.Finding)                     {}

// h2load returns the h2load capture: 100 GETs on one connection, 10 at
// a time, from h2load to nghttpd.
func h2load(tb testing.TB) conversation {
	tb.Helper()
	for _, c := range loadConversations(tb) {
		if c.name == "h2load.0" {
			return c
		}
	}
	tb.Fatal("no h2load conversation")
	return conversation{}
}

// parseConn parses a whole conversation with a reused parser.
func parseConn(p *Parser, s Sink, sc *Scratch, c conversation) {
	p.Reset(s, sc)
	p.Feed(proto.ToServer, c.c2s)
	p.Feed(proto.ToClient, c.s2c)
	p.Close(proto.ToServer)
	p.Close(proto.ToClient)
}

// BenchmarkParse parses the h2load capture (both directions), a fresh
// connection per iteration: the HPACK tables start empty each time, so
// the first request and response of each connection allocate their
// literal strings (x/net/http2/hpack makes strings); later ones hit the
// table and allocate nothing.
func BenchmarkParse(b *testing.B) {
	c := h2load(b)
	sc := NewScratch(Limits{}, nil)
	s := &nopSink{}
	p := NewParser(s, sc)
	b.SetBytes(int64(len(c.c2s) + len(c.s2c)))
	b.ReportAllocs()
	for b.Loop() {
		parseConn(p, s, sc, c)
	}
	b.ReportMetric(float64(s.n)/float64(b.N), "requests/op")
}

// h1Sink records a conversation's messages as HTTP/1.1 text, one
// request and its response after the other.
type h1Sink struct {
	nopSink
	req, resp [][]byte
}

func (s *h1Sink) RequestHeaders(_ uint32, r *http.Request) {
	s.req = append(s.req, fmt.Appendf(nil, "%s %s HTTP/1.1\r\n%s\r\n", r.Method, r.URI, r.HeaderBlock))
	s.resp = append(s.resp, nil)
}

func (s *h1Sink) ResponseHeaders(_ uint32, r *http.Response) {
	s.resp[r.Seq] = fmt.Appendf(nil, "HTTP/1.1 %d OK\r\n%s\r\n", r.Status, r.HeaderBlock)
}

func (s *h1Sink) ResponseBody(id uint32, chunk []byte, _ bool) {
	// h2load's stream ids are 2*seq+1.
	s.resp[id/2] = append(s.resp[id/2], chunk...)
}

// BenchmarkParseHTTP1 parses the h2load capture's 100 requests and
// responses written as HTTP/1.1 (same heads, same bodies, keep-alive)
// with dpi/proto/http: the per-request cost HTTP/2 is compared with.
func BenchmarkParseHTTP1(b *testing.B) {
	c := h2load(b)
	s := &h1Sink{}
	parseConn(NewParser(s, NewScratch(Limits{}, nil)), s, NewScratch(Limits{}, nil), c)
	var h1 h1nop
	sc := http.NewScratch(http.Limits{})
	p := http.NewParser(&h1, sc)
	n := 0
	for i := range s.req {
		n += len(s.req[i]) + len(s.resp[i])
	}
	b.SetBytes(int64(n))
	b.ReportAllocs()
	for b.Loop() {
		p.Reset(&h1, sc)
		for i := range s.req {
			p.Feed(proto.ToServer, s.req[i])
			p.Feed(proto.ToClient, s.resp[i])
		}
		p.Close(proto.ToServer)
		p.Close(proto.ToClient)
	}
	b.ReportMetric(float64(h1.n)/float64(b.N), "requests/op")
}

// h1nop is an http.Sink that counts requests.
type h1nop struct{ n int }

func (s *h1nop) RequestHeaders(*http.Request) { s.n++ }
func (*h1nop) RequestBody([]byte, bool)       {}
func (*h1nop) ResponseHeaders(*http.Response) {}
func (*h1nop) ResponseBody([]byte, bool)      {}
func (*h1nop) Finding(proto.Finding)          {}

// TestAllocs bounds the allocations of a connection. The parser itself
// allocates nothing per request; x/net/http2/hpack makes a string of each
// literal field it decodes, so a connection pays for the literals of its
// first request, and for each literal the server's encoder sends
// without indexing (nghttpd: content-length, and date when it changes).
func TestAllocs(t *testing.T) {
	c := h2load(t)
	sc := NewScratch(Limits{}, nil)
	s := &nopSink{}
	p := NewParser(s, sc)
	parseConn(p, s, sc, c)
	if s.n != 100 {
		t.Fatalf("%d requests, want 100", s.n)
	}
	requests := testing.AllocsPerRun(20, func() {
		p.Reset(s, sc)
		p.Feed(proto.ToServer, c.c2s)
	})
	both := testing.AllocsPerRun(20, func() { parseConn(p, s, sc, c) })
	t.Logf("allocations per connection of 100 requests: %.0f for the requests, %.0f with the responses", requests, both)
	if requests > 10 {
		t.Errorf("%.0f allocations for 100 requests, want at most 10 (the first request's literals)", requests)
	}
	if both > requests+2*100+10 {
		t.Errorf("%.0f allocations for 100 requests and responses, want at most 2 per response", both)
	}
}
