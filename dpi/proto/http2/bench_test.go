package http2

import (
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
