package http

import (
	"fmt"
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

// FuzzDecode feeds a body under every content coding deepwall decodes,
// as the raw bytes of a request and as a response, whole and cut into
// chunks: no panic, no more decoded text than MaxDecodedBody, decoder
// memory returned, and the same events either way. Seeds are the
// conversations (testdata/golden) and the test bodies of decode_test.go
// in each coding.
func FuzzDecode(f *testing.F) {
	for _, c := range conversations {
		f.Add([]byte(c.requests), uint8(0), []byte{3})
	}
	for i := range fuzzCodings {
		f.Add(encode(f, fuzzWire[i], []byte(decodePlain)), uint8(i), []byte{0, 7})
	}
	lim := fuzzLimits
	lim.MaxDecodedBody = 4 << 10
	sc := NewScratch(lim)
	f.Fuzz(func(t *testing.T, body []byte, sel uint8, seed []byte) {
		ce := fuzzCodings[int(sel)%len(fuzzCodings)]
		head := fmt.Sprintf("Content-Encoding: %s\r\nContent-Length: %d\r\n\r\n", ce, len(body))
		req := append([]byte("POST / HTTP/1.1\r\nHost: h\r\n"+head), body...)
		resp := append([]byte("HTTP/1.1 200 OK\r\n"+head), body...)
		want, p := runFuzz(t, sc, [][]byte{req}, [][]byte{resp})
		got, _ := runFuzz(t, sc, prototest.RandomChunks(req, seed), prototest.RandomChunks(resp, seed))
		if strings.Contains(want, "decode_error") {
			// A stream decoder hands on what it decoded before it
			// meets the error: how much depends on the cuts.
			want, got = withoutBodies(want), withoutBodies(got)
		}
		if got != want {
			t.Fatalf("chunked:\n%s\nwhole:\n%s", got, want)
		}
		for _, l := range strings.Split(got, "\n") {
			if len(l) > 2*lim.MaxDecodedBody+len("respbody-open \"\"") && strings.Contains(l, "body") {
				t.Fatalf("body beyond MaxDecodedBody: %d bytes", len(l))
			}
		}
		p.Release()
		if sc.decMem != 0 {
			t.Fatalf("%d bytes of decoder memory reserved after the connections", sc.decMem)
		}
	})
}

var (
	fuzzCodings = []string{"gzip", "deflate", "deflate", "br", "zstd", "gzip, br", "zstd, deflate"}
	fuzzWire    = []string{"gzip", "deflate", "raw-deflate", "br", "zstd", "gzip, br", "zstd, deflate"}
)

// withoutBodies drops the body lines of a log.
func withoutBodies(log string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if !strings.HasPrefix(l, "reqbody") && !strings.HasPrefix(l, "respbody") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
