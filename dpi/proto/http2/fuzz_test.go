package http2

import (
	"testing"

	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/dpi/proto/internal/prototest"
)

// fuzzLimits are small so that the fuzzer reaches every bound.
var fuzzLimits = Limits{MaxStreams: 8, MaxHeaderBlock: 512, MaxContinuations: 4, MaxHeaderListSize: 1024,
	MaxHeaderCount: 16, MaxTableSize: 1024, MaxRapidResets: 4, MaxUnackedPings: 4, MaxUnackedSettings: 4}

// checkBounds fails if a parser holds more than its limits allow.
func checkBounds(t *testing.T, p *Parser) {
	t.Helper()
	if len(p.streams) > fuzzLimits.MaxStreams {
		t.Fatalf("%d streams tracked", len(p.streams))
	}
	for i := range p.d {
		d := &p.d[i]
		if len(d.blk) > fuzzLimits.MaxHeaderBlock || d.pLen > maxPendingSettings {
			t.Fatalf("direction %d: %d header block bytes, %d pending SETTINGS", i, len(d.blk), d.pLen)
		}
	}
}

// fuzzRun parses c2s then s2c in the given chunks. mode bit 0 prepends
// the preface (so that mutations reach the frames), bit 1 starts as after
// an h2c upgrade with settings as HTTP2-Settings.
func fuzzRun(t *testing.T, p *Parser, sc *Scratch, mode byte, settings []byte, cs, ss [][]byte) string {
	r := newRecorder(t)
	p.Reset(r, sc)
	if mode&2 != 0 {
		// The chunking seed doubles as HTTP2-Settings.
		p.Upgrade(settings)
		st := r.stream(1)
		st.head[0], st.end[0] = true, true
	}
	if mode&1 != 0 {
		p.Feed(proto.ToServer, []byte(Preface))
	}
	for _, ch := range cs {
		p.Feed(proto.ToServer, ch)
		checkBounds(t, p)
	}
	for _, ch := range ss {
		p.Feed(proto.ToClient, ch)
		checkBounds(t, p)
	}
	p.Close(proto.ToServer)
	p.Close(proto.ToClient)
	return r.String()
}

// FuzzHTTP2 feeds arbitrary client and server bytes, whole and cut into
// chunks derived from the input: no panic, bounded state, the Sink
// contract held (the recorder checks it), and the same events either way.
// Seeds: the captured conversations and the finding tests' scripts.
func FuzzHTTP2(f *testing.F) {
	for _, c := range loadConversations(f) {
		c2s, mode := c.c2s[c.h1c:], byte(0)
		if c.upgraded {
			mode = 2
		}
		seed := []byte{3, 17}
		if c.upgraded {
			seed = c.settings
		}
		f.Add(c2s[len(Preface):], c.s2c[c.h1s:], seed, mode|1)
	}
	s := newScript(f)
	s.get(1, "/a?b=c", "cookie", "x=1", "cookie", "y=2")
	s.headers(c, 3, false, ":method", "POST", ":scheme", "http", ":authority", "h", ":path", "/", "content-length", "3")
	s.data(c, 3, true, "abc")
	s.rst(c, 1)
	s.ok(3, "done")
	c2s, s2c := s.concat()
	f.Add(c2s[len(Preface):], s2c, []byte{1}, byte(1))
	sc := NewScratch(fuzzLimits, nil)
	p := NewParser(nil, sc)
	f.Fuzz(func(t *testing.T, c2s, s2c, seed []byte, mode byte) {
		want := fuzzRun(t, p, sc, mode, seed, [][]byte{c2s}, [][]byte{s2c})
		got := fuzzRun(t, p, sc, mode, seed, prototest.RandomChunks(c2s, seed), prototest.RandomChunks(s2c, seed))
		if got != want {
			t.Fatalf("chunked:\n%s\nwhole:\n%s", got, want)
		}
	})
}
