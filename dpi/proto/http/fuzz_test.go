package http

import (
	"strings"
	"testing"

	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/dpi/proto/internal/prototest"
)

// fuzzLimits are small so that the fuzzer reaches every limit.
var fuzzLimits = Limits{MaxRequestLine: 256, MaxHeaderBytes: 1024, MaxHeaderCount: 16, MaxChunkLine: 64, MaxArgs: 8}

// checkBounds fails if a parser holds more than its limits allow.
func checkBounds(t *testing.T, p *Parser) {
	t.Helper()
	for i := range p.d {
		if n := len(p.d[i].head); n > fuzzLimits.MaxHeaderBytes {
			t.Fatalf("direction %d buffers %d header bytes", i, n)
		}
	}
	if p.pLen > MaxPipelined {
		t.Fatalf("%d pending requests", p.pLen)
	}
}

func runFuzz(t *testing.T, sc *Scratch, reqs, resps [][]byte) (string, *Parser) {
	r := newRecorder(t)
	p := NewParser(r, sc)
	feedAll(p, r, proto.ToServer, reqs)
	checkBounds(t, p)
	feedAll(p, r, proto.ToClient, resps)
	checkBounds(t, p)
	p.Close(proto.ToServer)
	p.Close(proto.ToClient)
	return r.flush(), p
}

func fuzzSeeds(f *testing.F) {
	for _, c := range conversations {
		f.Add([]byte(c.requests), []byte(c.responses), []byte{0, 3, 17})
	}
	req, resp := benchTraffic()
	f.Add(req, resp, []byte{200, 5})
	f.Add([]byte("GET /%c0%af..%2f%u002e?a=%zz&b=1 HTTP/1.1\r\nHost: h\r\n\r\n"), []byte("HTTP/1.1 200 OK\r\n\r\n"), []byte{1})
	f.Add([]byte("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nT: v\r\n\r\n"), []byte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"), []byte{2, 1})
}

// FuzzHTTPRequest feeds arbitrary client bytes, whole and cut into chunks
// derived from the input: no panic, bounded buffers, the Sink contract
// held (checked by the recorder), and the same events either way.
func FuzzHTTPRequest(f *testing.F) {
	fuzzSeeds(f)
	sc := NewScratch(fuzzLimits)
	f.Fuzz(func(t *testing.T, reqs, _ []byte, seed []byte) {
		want, _ := runFuzz(t, sc, [][]byte{reqs}, nil)
		got, _ := runFuzz(t, sc, prototest.RandomChunks(reqs, seed), nil)
		if got != want {
			t.Fatalf("chunked:\n%s\nwhole:\n%s", got, want)
		}
	})
}

// FuzzHTTPResponse does the same for server bytes, after the client's
// requests (so HEAD, CONNECT and pipelining shape the responses).
func FuzzHTTPResponse(f *testing.F) {
	fuzzSeeds(f)
	sc := NewScratch(fuzzLimits)
	f.Fuzz(func(t *testing.T, reqs, resps, seed []byte) {
		want, _ := runFuzz(t, sc, [][]byte{reqs}, [][]byte{resps})
		got, _ := runFuzz(t, sc, [][]byte{reqs}, prototest.RandomChunks(resps, seed))
		if got != want {
			t.Fatalf("chunked:\n%s\nwhole:\n%s", got, want)
		}
		if strings.Count(got, "fatal") > 1 {
			t.Fatalf("more than one fatal finding:\n%s", got)
		}
	})
}
