package http

import (
	"bufio"
	"bytes"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/dpi/proto/internal/prototest"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// conversation is one connection: the client's bytes and the server's.
type conversation struct {
	name      string
	requests  string
	responses string
}

var conversations = []conversation{
	{
		name: "keepalive",
		requests: "GET /search?q=deep+wall&lang=en HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n" +
			"POST /api/v1/items HTTP/1.1\r\nHost: www.example.com\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n{\"name\":\"widget\",\"qty\":10}\n" +
			"DELETE /api/v1/items/7 HTTP/1.1\r\nHost: www.example.com\r\n\r\n",
		responses: "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 13\r\n\r\n<html></html>" +
			"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n7;ext=1\r\n{\"id\":7\r\n1\r\n}\r\n0\r\nX-Checksum: abc\r\n\r\n" +
			"HTTP/1.1 204 No Content\r\nServer: nginx\r\n\r\n",
	},
	{
		name: "pipelined_head",
		requests: "GET /a HTTP/1.1\r\nHost: h\r\n\r\nHEAD /big HTTP/1.1\r\nHost: h\r\n\r\n" +
			"GET /c HTTP/1.1\r\nHost: h\r\n\r\n",
		responses: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" +
			"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" +
			"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found",
	},
	{
		name:      "interim_and_304",
		requests:  "POST /upload HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\ndataGET /cached HTTP/1.1\r\nHost: h\r\nIf-None-Match: \"x\"\r\n\r\n",
		responses: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\nETag: \"x\"\r\n\r\n",
	},
	{
		name:      "connect_tunnel",
		requests:  "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01\x00\x05hello",
		responses: "HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03\x03\x00\x02hi",
	},
	{
		name:      "connect_refused",
		requests:  "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
		responses: "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 4\r\n\r\ndeny",
	},
	{
		name:      "websocket_upgrade",
		requests:  "GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
		responses: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello",
	},
	{
		name:      "http10_until_close",
		requests:  "GET /file.txt HTTP/1.0\r\nUser-Agent: Wget/1.21\r\n\r\n",
		responses: "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nline one\nline two\n",
	},
	{
		name: "chunked_request",
		requests: "POST /form HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n" +
			"a;name=\"v\" ; x\r\nuser=admin\r\n5\r\n&pw=1\r\n0\r\nDigest: sha=1\r\n\r\n",
		responses: "HTTP/1.1 302 Found\r\nLocation: /\r\nContent-Length: 0\r\n\r\n",
	},
	{
		name:      "absolute_form_proxy",
		requests:  "GET http://Example.com:8080/a/../b/./c?x=1 HTTP/1.1\r\nHost: example.com:8080\r\n\r\nGET http://other.example/ HTTP/1.1\r\n\r\n",
		responses: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	},
	{
		name: "evasions",
		requests: "\r\n\r\nGET /scripts/..%c0%af../winnt/system32/cmd.exe?/c+dir HTTP/1.1\nHost: h\nX-Fold: a\r\n  b\r\nBad Name: x\r\n\r\n" +
			"GET /a%2f..%2f..%2fetc%252fpasswd%00.html HTTP/1.1\r\nHost: h\r\nHost: i\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
		responses: "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\nHTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
	},
	{
		name:      "smuggling_cl_te",
		requests:  "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
		responses: "",
	},
	{
		name:      "smuggling_te_obs_fold",
		requests:  "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n chunked\r\n\r\n",
		responses: "",
	},
	{
		name:      "truncated",
		requests:  "POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nonly a part",
		responses: "HTTP/1.1 200 OK\r\nContent-",
	},
}

// run parses a conversation fed as the given chunks and returns the log.
func run(tb testing.TB, sc *Scratch, reqChunks, respChunks [][]byte) string {
	tb.Helper()
	r := newRecorder(tb)
	p := NewParser(r, sc)
	feedAll(p, r, proto.ToServer, reqChunks)
	feedAll(p, r, proto.ToClient, respChunks)
	p.Close(proto.ToServer)
	p.Close(proto.ToClient)
	return r.flush()
}

func whole(s string) [][]byte {
	if s == "" {
		return nil
	}
	return [][]byte{[]byte(s)}
}

// TestConversations compares each conversation's log with its golden
// file (go test -update rewrites them; review the diff).
func TestConversations(t *testing.T) {
	sc := NewScratch(Limits{})
	for _, c := range conversations {
		t.Run(c.name, func(t *testing.T) {
			got := run(t, sc, whole(c.requests), whole(c.responses)) + "\n"
			path := filepath.Join("testdata", "golden", c.name+".txt")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden (run with -update to create): %v", err)
			}
			if got != string(want) {
				t.Fatalf("log differs from %s:\n--- got\n%s\n--- want\n%s", path, got, want)
			}
		})
	}
}

// TestChunkingInvariance feeds every conversation cut at every byte
// boundary (and at every pair of boundaries for short streams, and one
// byte at a time): the log must equal the log of the whole stream.
func TestChunkingInvariance(t *testing.T) {
	sc := NewScratch(Limits{})
	pairLimit := 300
	if testing.Short() {
		pairLimit = 0
	}
	for _, c := range conversations {
		t.Run(c.name, func(t *testing.T) {
			want := run(t, sc, whole(c.requests), whole(c.responses))
			n := 0
			prototest.Chunkings([]byte(c.requests), pairLimit, func(chunks [][]byte) {
				n++
				if got := run(t, sc, chunks, whole(c.responses)); got != want {
					t.Fatalf("requests in %d chunks (first %d bytes):\n--- got\n%s\n--- want\n%s", len(chunks), len(chunks[0]), got, want)
				}
			})
			prototest.Chunkings([]byte(c.responses), pairLimit, func(chunks [][]byte) {
				n++
				if got := run(t, sc, whole(c.requests), chunks); got != want {
					t.Fatalf("responses in %d chunks (first %d bytes):\n--- got\n%s\n--- want\n%s", len(chunks), len(chunks[0]), got, want)
				}
			})
			t.Logf("%d chunkings", n)
		})
	}
}

// TestInterleaved feeds a keep-alive conversation the way it happens:
// request, response, request, response, in small segments.
func TestInterleaved(t *testing.T) {
	sc := NewScratch(Limits{})
	reqs := []string{
		"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n",
		"HEAD /2 HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST /3 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
	}
	resps := []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none",
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nthree\r\n0\r\n\r\n",
	}
	var want string
	for seg := 0; seg <= 7; seg++ {
		r := newRecorder(t)
		p := NewParser(r, sc)
		cut := func(s string) [][]byte {
			if seg == 0 {
				return whole(s)
			}
			return prototest.RandomChunks([]byte(s), []byte{byte(seg - 1)})
		}
		for i := range reqs {
			feedAll(p, r, proto.ToServer, cut(reqs[i]))
			feedAll(p, r, proto.ToClient, cut(resps[i]))
		}
		p.Close(proto.ToServer)
		p.Close(proto.ToClient)
		got := r.flush()
		if seg == 0 {
			want = got
			if strings.Count(want, "resp 200") != 3 || !strings.Contains(want, `respbody "three"`) {
				t.Fatalf("whole messages:\n%s", want)
			}
			continue
		}
		if got != want {
			t.Fatalf("segments of %d:\n--- got\n%s\n--- want\n%s", seg, got, want)
		}
	}
}

type findingCase struct {
	name  string
	in    string
	want  []proto.FindingKind // must all be reported
	fatal proto.FindingKind   // the fatal one, or FindingNone
}

func checkFindings(t *testing.T, sc *Scratch, dir proto.Dir, prefix string, tc findingCase) *recorder {
	t.Helper()
	r := newRecorder(t)
	p := NewParser(r, sc)
	if prefix != "" {
		p.Feed(proto.ToServer, []byte(prefix))
	}
	p.Feed(dir, []byte(tc.in))
	var fatal proto.FindingKind
	for _, f := range r.findings {
		if f.Fatal {
			if fatal != proto.FindingNone {
				t.Errorf("two fatal findings: %v and %v", fatal, f.Kind)
			}
			fatal = f.Kind
		}
	}
	for _, k := range tc.want {
		if !r.has(k) {
			t.Errorf("missing finding %v; log:\n%s", k, r)
		}
	}
	if fatal != tc.fatal {
		t.Errorf("fatal = %v, want %v; log:\n%s", fatal, tc.fatal, r)
	}
	if tc.fatal != proto.FindingNone && p.State(dir) != StateStopped {
		t.Errorf("state %v after a fatal finding", p.State(dir))
	}
	return r
}

func TestRequestFindings(t *testing.T) {
	sc := NewScratch(Limits{MaxRequestLine: 128, MaxHeaderBytes: 512, MaxHeaderCount: 8, MaxChunkLine: 32, MaxArgs: 4})
	none := proto.FindingNone
	const h = "Host: h\r\n"
	tests := []findingCase{
		{"clean", "GET / HTTP/1.1\r\n" + h + "\r\n", nil, none},
		{"bare lf", "GET / HTTP/1.1\n" + "Host: h\n\n", []proto.FindingKind{proto.HTTPBareLF}, none},
		{"bare cr in value", "GET / HTTP/1.1\r\n" + h + "X: a\rb\r\n\r\n", []proto.FindingKind{proto.HTTPBareCR}, none},
		{"obs fold", "GET / HTTP/1.1\r\n" + h + "X: a\r\n b\r\n\r\n", []proto.FindingKind{proto.HTTPObsFold}, none},
		{"fold before any field", "GET / HTTP/1.1\r\n b\r\n" + h + "\r\n", []proto.FindingKind{proto.HTTPObsFold, proto.HTTPInvalidHeaderName}, none},
		{"space before colon", "GET / HTTP/1.1\r\n" + h + "Transfer-Encoding : x\r\n\r\n", []proto.FindingKind{proto.HTTPInvalidHeaderName}, proto.HTTPInvalidTransferEncoding},
		{"non-token name", "GET / HTTP/1.1\r\n" + h + "X[1]: a\r\n\r\n", []proto.FindingKind{proto.HTTPInvalidHeaderName}, none},
		{"empty name", "GET / HTTP/1.1\r\n" + h + ": a\r\n\r\n", []proto.FindingKind{proto.HTTPInvalidHeaderName}, none},
		{"no colon", "GET / HTTP/1.1\r\n" + h + "Nocolon\r\n\r\n", []proto.FindingKind{proto.HTTPHeaderNoColon}, none},
		{"nul in value", "GET / HTTP/1.1\r\n" + h + "X: a\x00b\r\n\r\n", []proto.FindingKind{proto.HTTPInvalidHeaderValue}, none},
		{"cl and te", "POST / HTTP/1.1\r\n" + h + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", []proto.FindingKind{proto.HTTPCLAndTE}, none},
		{"cl conflict", "POST / HTTP/1.1\r\n" + h + "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", nil, proto.HTTPContentLengthConflict},
		{"cl list conflict", "POST / HTTP/1.1\r\n" + h + "Content-Length: 3, 4\r\n\r\nabcd", nil, proto.HTTPContentLengthConflict},
		{"cl duplicate equal", "POST / HTTP/1.1\r\n" + h + "Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", []proto.FindingKind{proto.HTTPDuplicateContentLength}, none},
		{"cl list equal", "POST / HTTP/1.1\r\n" + h + "Content-Length: 3,3\r\n\r\nabc", []proto.FindingKind{proto.HTTPDuplicateContentLength}, none},
		{"cl conflict under te", "POST / HTTP/1.1\r\n" + h + "Content-Length: 3\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", []proto.FindingKind{proto.HTTPCLAndTE, proto.HTTPContentLengthConflict}, none},
		{"cl plus sign", "POST / HTTP/1.1\r\n" + h + "Content-Length: +3\r\n\r\nabc", nil, proto.HTTPInvalidContentLength},
		{"cl negative", "POST / HTTP/1.1\r\n" + h + "Content-Length: -1\r\n\r\n", nil, proto.HTTPInvalidContentLength},
		{"cl hex", "POST / HTTP/1.1\r\n" + h + "Content-Length: 0x10\r\n\r\n", nil, proto.HTTPInvalidContentLength},
		{"cl empty", "POST / HTTP/1.1\r\n" + h + "Content-Length:\r\n\r\n", nil, proto.HTTPInvalidContentLength},
		{"cl huge", "POST / HTTP/1.1\r\n" + h + "Content-Length: 99999999999999999999\r\n\r\n", nil, proto.HTTPInvalidContentLength},
		{"cl folded", "POST / HTTP/1.1\r\n" + h + "Content-Length: 3\r\n 3\r\n\r\nabc", []proto.FindingKind{proto.HTTPObsFold}, proto.HTTPInvalidContentLength},
		{"te chunked not last", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked, gzip\r\n\r\n", nil, proto.HTTPInvalidTransferEncoding},
		{"te chunked twice", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", nil, proto.HTTPInvalidTransferEncoding},
		{"te xchunked", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: xchunked\r\n\r\n", nil, proto.HTTPInvalidTransferEncoding},
		{"te quoted", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: \"chunked\"\r\n\r\n", nil, proto.HTTPInvalidTransferEncoding},
		{"te vertical tab", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: \x0bchunked\r\n\r\n", []proto.FindingKind{proto.HTTPInvalidHeaderValue}, proto.HTTPInvalidTransferEncoding},
		{"te gzip only", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: gzip\r\n\r\n", nil, proto.HTTPInvalidTransferEncoding},
		{"te empty", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: \r\n\r\n", nil, proto.HTTPInvalidTransferEncoding},
		{"te unknown then chunked", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: foo, chunked\r\n\r\n0\r\n\r\n", []proto.FindingKind{proto.HTTPInvalidTransferEncoding}, none},
		{"te gzip chunked is legal", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: gzip, Chunked\r\n\r\n0\r\n\r\n", nil, none},
		{"te in http/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", []proto.FindingKind{proto.HTTPTransferEncodingHTTP10}, none},
		{"chunk size 0x", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", nil, proto.HTTPInvalidChunkSize},
		{"chunk size empty", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n", nil, proto.HTTPInvalidChunkSize},
		{"chunk size negative", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n-5\r\n", nil, proto.HTTPInvalidChunkSize},
		{"chunk size overflow", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n1000000000000000\r\n", nil, proto.HTTPInvalidChunkSize},
		{"chunk size garbage after", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n5 x\r\n", nil, proto.HTTPInvalidChunkSize},
		{"chunk size cr without lf", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n5\rhello", nil, proto.HTTPInvalidChunkSize},
		{"chunk ext whitespace ok", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n5 ; a=b\r\nhello\r\n0\r\n\r\n", nil, none},
		{"chunk size bare lf", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", []proto.FindingKind{proto.HTTPBareLF}, none},
		{"chunk line too long", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n5;" + strings.Repeat("x", 40) + "\r\n", nil, proto.HTTPChunkLineTooLong},
		{"chunk data overrun", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n", nil, proto.HTTPInvalidChunkData},
		{"chunk data bare lf", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n", []proto.FindingKind{proto.HTTPBareLF}, none},
		{"trailer without colon", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n0\r\nbad trailer\r\n\r\n", []proto.FindingKind{proto.HTTPInvalidTrailer}, none},
		{"trailer end cr junk", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n0\r\n\rX", nil, proto.HTTPInvalidTrailer},
		{"trailer too large", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n0\r\nX: " + strings.Repeat("y", 600) + "\r\n\r\n", nil, proto.HTTPTrailerTooLarge},
		{"missing host", "GET / HTTP/1.1\r\n\r\n", []proto.FindingKind{proto.HTTPMissingHost}, none},
		{"http/1.0 needs no host", "GET / HTTP/1.0\r\n\r\n", nil, none},
		{"duplicate host", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", []proto.FindingKind{proto.HTTPDuplicateHost}, none},
		{"host mismatch", "GET http://a.example/ HTTP/1.1\r\nHost: b.example\r\n\r\n", []proto.FindingKind{proto.HTTPHostMismatch}, none},
		{"request line too long", "GET /" + strings.Repeat("a", 200) + " HTTP/1.1\r\n" + h + "\r\n", nil, proto.HTTPRequestLineTooLong},
		{"request line too long unterminated", "GET /" + strings.Repeat("a", 200), nil, proto.HTTPRequestLineTooLong},
		{"headers too large", "GET / HTTP/1.1\r\n" + h + "X: " + strings.Repeat("a", 600) + "\r\n\r\n", nil, proto.HTTPHeadersTooLarge},
		{"too many headers", "GET / HTTP/1.1\r\n" + strings.Repeat("X: 1\r\n", 9) + "\r\n", nil, proto.HTTPTooManyHeaders},
		{"binary garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", nil, proto.HTTPInvalidMethod},
		{"method with slash", "GET/ HTTP/1.1\r\n\r\n", nil, proto.HTTPInvalidMethod},
		{"leading space", " GET / HTTP/1.1\r\n\r\n", nil, proto.HTTPInvalidMethod},
		{"method only", "GET\r\n\r\n", nil, proto.HTTPInvalidRequestLine},
		{"http/0.9", "GET /index.html\r\n\r\n", nil, proto.HTTP09Request},
		{"space in target", "GET /a b HTTP/1.1\r\n" + h + "\r\n", []proto.FindingKind{proto.HTTPURIInvalidChar}, none},
		{"http/2.0 in request line", "GET / HTTP/2.0\r\n" + h + "\r\n", nil, proto.HTTPInvalidVersion},
		{"unknown major version", "GET / HTTP/4.0\r\n" + h + "\r\n", nil, proto.HTTPInvalidVersion},
		{"http/0.9 with a version", "GET / HTTP/0.9\r\n\r\n", nil, proto.HTTPInvalidVersion},
		{"two-digit major", "GET / HTTP/11.1\r\n" + h + "\r\n", nil, proto.HTTPInvalidVersion},
		{"lower-case version", "GET / http/1.1\r\n" + h + "\r\n", nil, proto.HTTP09Request},
		{"version with junk", "GET / HTTP/1.1x\r\n" + h + "\r\n", nil, proto.HTTPInvalidVersion},
		{"http/1.2", "GET / HTTP/1.2\r\n" + h + "\r\n", []proto.FindingKind{proto.HTTPUnknownMinorVersion}, none},
		{"tab separators", "GET\t/\tHTTP/1.1\r\n" + h + "\r\n", []proto.FindingKind{proto.HTTPInvalidRequestLine}, none},
		{"double space", "GET  /  HTTP/1.1\r\n" + h + "\r\n", []proto.FindingKind{proto.HTTPInvalidRequestLine}, none},
		{"trailing space", "GET / HTTP/1.1 \r\n" + h + "\r\n", []proto.FindingKind{proto.HTTPInvalidRequestLine}, none},
		{"fragment", "GET /a#frag HTTP/1.1\r\n" + h + "\r\n", []proto.FindingKind{proto.HTTPURIFragment}, none},
		{"control in target", "GET /a\x01b HTTP/1.1\r\n" + h + "\r\n", []proto.FindingKind{proto.HTTPURIInvalidChar}, none},
		{"raw nul in target", "GET /a\x00b HTTP/1.1\r\n" + h + "\r\n", []proto.FindingKind{proto.HTTPURINullByte}, none},
		{"non-ascii target", "GET /caf\xc3\xa9 HTTP/1.1\r\n" + h + "\r\n", []proto.FindingKind{proto.HTTPURINonASCIIPath}, none},
		{"relative target", "GET index.html HTTP/1.1\r\n" + h + "\r\n", []proto.FindingKind{proto.HTTPURIPathNotAbsolute}, none},
		{"leading empty lines", "\r\n\r\n\r\nGET / HTTP/1.1\r\n" + h + "\r\n", []proto.FindingKind{proto.HTTPLeadingEmptyLines}, none},
		{"one leading empty line is fine", "\r\nGET / HTTP/1.1\r\n" + h + "\r\n", nil, none},
		{"too many args", "GET /?a=1&b=2&c=3&d=4&e=5 HTTP/1.1\r\n" + h + "\r\n", []proto.FindingKind{proto.HTTPURITooManyArgs}, none},
		{"pipeline too deep", strings.Repeat("GET / HTTP/1.1\r\n"+h+"\r\n", MaxPipelined+1), nil, proto.HTTPPipelineTooDeep},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := checkFindings(t, sc, proto.ToServer, "", tc)
			if len(tc.want) == 0 && tc.fatal == proto.FindingNone && len(r.findings) != 0 {
				t.Errorf("unexpected findings: %v", r.findings)
			}
		})
	}
}

func TestResponseFindings(t *testing.T) {
	sc := NewScratch(Limits{})
	none := proto.FindingNone
	get := "GET / HTTP/1.1\r\nHost: h\r\n\r\n"
	tests := []struct {
		findingCase
		prefix string
	}{
		{findingCase{"clean", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", nil, none}, get},
		{findingCase{"unsolicited", "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n", []proto.FindingKind{proto.HTTPUnsolicitedResponse}, none}, ""},
		{findingCase{"garbage", "SSH-2.0-x\r\n", nil, proto.HTTPInvalidStatusLine}, get},
		{findingCase{"no status", "HTTP/1.1\r\n\r\n", nil, proto.HTTPInvalidStatusLine}, get},
		{findingCase{"status letters", "HTTP/1.1 2OO OK\r\n\r\n", nil, proto.HTTPInvalidStatusLine}, get},
		{findingCase{"status four digits", "HTTP/1.1 2000 OK\r\n\r\n", nil, proto.HTTPInvalidStatusLine}, get},
		{findingCase{"status without reason", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", nil, none}, get},
		{findingCase{"version 2", "HTTP/2.0 200 OK\r\n\r\n", nil, proto.HTTPInvalidVersion}, get},
		{findingCase{"cl invalid", "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n", nil, proto.HTTPInvalidContentLength}, get},
		{findingCase{"cl conflict", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", nil, proto.HTTPContentLengthConflict}, get},
		{findingCase{"cl invalid on 304 is harmless", "HTTP/1.1 304 Not Modified\r\nContent-Length: abc\r\n\r\n", []proto.FindingKind{proto.HTTPInvalidContentLength}, none}, get},
		{findingCase{"te not chunked reads until close", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxyz", nil, none}, get},
		{findingCase{"te and cl", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", []proto.FindingKind{proto.HTTPCLAndTE}, none}, get},
		{findingCase{"bad chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", nil, proto.HTTPInvalidChunkSize}, get},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := checkFindings(t, sc, proto.ToClient, tc.prefix, tc.findingCase)
			if len(tc.want) == 0 && tc.fatal == proto.FindingNone && len(r.findings) != 0 {
				t.Errorf("unexpected findings: %v", r.findings)
			}
		})
	}
}

func kinds(ks ...proto.FindingKind) []proto.FindingKind { return ks }

func setKinds(s *proto.KindSet) []proto.FindingKind {
	var out []proto.FindingKind
	for _, k := range proto.FindingKinds() {
		if s.Has(k) {
			out = append(out, k)
		}
	}
	return out
}

func TestNormalizePath(t *testing.T) {
	tests := []struct {
		raw, want string
		kinds     []proto.FindingKind
	}{
		{"/a/b", "/a/b", nil},
		{"/", "/", nil},
		{"", "/", nil},
		{"a/b", "/a/b", nil},
		{"/a/b/", "/a/b/", nil},
		{"/a/./b", "/a/b", kinds(proto.HTTPURIDotSegment)},
		{"/a/../b", "/b", kinds(proto.HTTPURIDotSegment)},
		{"/a/.", "/a/", kinds(proto.HTTPURIDotSegment)},
		{"/a/..", "/", kinds(proto.HTTPURIDotSegment)},
		{"/.", "/", kinds(proto.HTTPURIDotSegment)},
		{"/..", "/", kinds(proto.HTTPURIDotSegment, proto.HTTPURIAboveRoot)},
		{"/../etc/passwd", "/etc/passwd", kinds(proto.HTTPURIDotSegment, proto.HTTPURIAboveRoot)},
		{"/a/b/../../../c", "/c", kinds(proto.HTTPURIDotSegment, proto.HTTPURIAboveRoot)},
		{"/a/.../b", "/a/.../b", nil},
		{"/a/..b/c", "/a/..b/c", nil},
		{"/a//b", "/a/b", kinds(proto.HTTPURIDuplicateSlash)},
		{"//a", "/a", kinds(proto.HTTPURIDuplicateSlash)},
		{"/a\\b", "/a/b", kinds(proto.HTTPURIBackslash)},
		{"\\..\\windows", "/windows", kinds(proto.HTTPURIBackslash, proto.HTTPURIDotSegment, proto.HTTPURIAboveRoot)},
		{"/a%2fb", "/a/b", kinds(proto.HTTPURIEncodedSlash)},
		{"/a%5cb", "/a/b", kinds(proto.HTTPURIEncodedSlash, proto.HTTPURIBackslash)},
		{"/%2e%2e/etc", "/etc", kinds(proto.HTTPURIEncodedDot, proto.HTTPURIDotSegment, proto.HTTPURIDotSegmentEscape, proto.HTTPURIAboveRoot)},
		{"/a/%2E%2e/b", "/b", kinds(proto.HTTPURIEncodedDot, proto.HTTPURIDotSegment, proto.HTTPURIDotSegmentEscape)},
		{"/a/.%2e/b", "/b", kinds(proto.HTTPURIEncodedDot, proto.HTTPURIDotSegment, proto.HTTPURIDotSegmentEscape)},
		{"/%2e/", "/", kinds(proto.HTTPURIEncodedDot, proto.HTTPURIDotSegment, proto.HTTPURIDotSegmentEscape)},
		{"/file%2etxt", "/file.txt", kinds(proto.HTTPURIEncodedDot)},
		{"/%c0%af", "/", kinds(proto.HTTPURIOverlongUTF8, proto.HTTPURIDuplicateSlash)},
		{"/..%c0%af..%c0%afetc/passwd", "/etc/passwd", kinds(proto.HTTPURIOverlongUTF8, proto.HTTPURIDotSegment, proto.HTTPURIAboveRoot)},
		{"/%c0%ae%c0%ae/x", "/x", kinds(proto.HTTPURIOverlongUTF8, proto.HTTPURIDotSegment, proto.HTTPURIAboveRoot)},
		{"/a%e0%80%afb", "/a/b", kinds(proto.HTTPURIOverlongUTF8)},
		{"/a%f0%80%80%afb", "/a/b", kinds(proto.HTTPURIOverlongUTF8)},
		{"/a%c1%9c..", "/", kinds(proto.HTTPURIOverlongUTF8, proto.HTTPURIBackslash, proto.HTTPURIDotSegment)},
		{"/a%c1%9cb", "/a/b", kinds(proto.HTTPURIOverlongUTF8, proto.HTTPURIBackslash)},
		{"/%c0%80", "/\x00", kinds(proto.HTTPURIOverlongUTF8, proto.HTTPURINullByte)},
		{"/caf%C3%A9", "/caf\u00e9", nil},
		{"/\u4e2d\u6587", "/\u4e2d\u6587", nil},
		{"/%ff", "/\xff", kinds(proto.HTTPURIInvalidUTF8)},
		{"/%c3", "/\xc3", kinds(proto.HTTPURIInvalidUTF8)},
		{"/%c3x", "/\xc3x", kinds(proto.HTTPURIInvalidUTF8)},
		{"/%ed%a0%80", "/\xed\xa0\x80", kinds(proto.HTTPURIInvalidUTF8)},
		{"/a%00.jpg", "/a\x00.jpg", kinds(proto.HTTPURINullByte)},
		{"/%zz", "/%zz", kinds(proto.HTTPURIInvalidEscape)},
		{"/%4", "/%4", kinds(proto.HTTPURIInvalidEscape)},
		{"/%", "/%", kinds(proto.HTTPURIInvalidEscape)},
		{"/%252e%252e/", "/%2e%2e/", kinds(proto.HTTPURIDoubleEncoding)},
		{"/%25u002e", "/%u002e", kinds(proto.HTTPURIDoubleEncoding)},
		{"/100%25", "/100%", nil},
		{"/%u002e%u002e/x", "/x", kinds(proto.HTTPURIUEncoding, proto.HTTPURIEncodedDot, proto.HTTPURIDotSegment, proto.HTTPURIDotSegmentEscape, proto.HTTPURIAboveRoot)},
		{"/%u4e2d", "/\u4e2d", kinds(proto.HTTPURIUEncoding)},
		{"/%u002f", "/", kinds(proto.HTTPURIUEncoding, proto.HTTPURIEncodedSlash, proto.HTTPURIDuplicateSlash)},
		{"/%u00zz", "/%u00zz", kinds(proto.HTTPURIInvalidEscape)},
		{"/a;jsessionid=1/..;/b", "/a;jsessionid=1/..;/b", kinds(proto.HTTPURIParameterInPath)},
		{"/a+b", "/a+b", nil},
	}
	for _, tc := range tests {
		var s proto.KindSet
		dst := make([]byte, 0, len(tc.raw)+1)
		got := NormalizePath(dst, []byte(tc.raw), &s)
		if string(got) != tc.want {
			t.Errorf("NormalizePath(%q) = %q, want %q", tc.raw, got, tc.want)
		}
		if gk := setKinds(&s); !slices.Equal(sortKinds(gk), sortKinds(tc.kinds)) {
			t.Errorf("NormalizePath(%q) findings %v, want %v", tc.raw, gk, tc.kinds)
		}
		if len(got) > len(tc.raw)+1 {
			t.Errorf("NormalizePath(%q) grew to %d bytes", tc.raw, len(got))
		}
		if len(tc.raw)+1 > 0 && &got[0] != &dst[:1][0] {
			t.Errorf("NormalizePath(%q) reallocated", tc.raw)
		}
	}
}

func sortKinds(ks []proto.FindingKind) []proto.FindingKind {
	ks = slices.Clone(ks)
	slices.Sort(ks)
	return ks
}

func TestDecodeArgs(t *testing.T) {
	tests := []struct {
		query   string
		max     int
		args    []string // name=value, or name alone when it has no '='
		buf     string
		kinds   []proto.FindingKind
		noValue []bool
	}{
		{"a=1&b=2", 8, []string{"a=1", "b=2"}, "a=1&b=2", nil, nil},
		{"q=deep+wall&x=%41%42", 8, []string{"q=deep wall", "x=AB"}, "q=deep wall&x=AB", nil, nil},
		{"a&b=", 8, []string{"a", "b="}, "a&b=", nil, nil},
		{"a=1&&b=2&", 8, []string{"a=1", "b=2"}, "a=1&b=2", nil, nil},
		{"=v", 8, []string{"=v"}, "=v", nil, nil},
		{"x=%zz", 8, []string{"x=%zz"}, "x=%zz", kinds(proto.HTTPURIInvalidEscape), nil},
		{"x=%00", 8, []string{"x=\x00"}, "x=\x00", kinds(proto.HTTPURINullByte), nil},
		{"x=%u0041", 8, []string{"x=A"}, "x=A", kinds(proto.HTTPURIUEncoding), nil},
		{"x=%2527", 8, []string{"x=%27"}, "x=%27", kinds(proto.HTTPURIDoubleEncoding), nil},
		{"x=%2f..%2f", 8, []string{"x=/../"}, "x=/../", nil, nil},
		{"id=1%27%20OR%201=1--", 8, []string{"id=1' OR 1=1--"}, "id=1' OR 1=1--", nil, nil},
		{"a%3db=c%26d", 8, []string{"a=b=c&d"}, "a=b=c&d", nil, nil},
		{"a=1&b=2&c=3&d=4", 2, []string{"a=1", "b=2"}, "a=1&b=2&c=3&d=4", kinds(proto.HTTPURITooManyArgs), nil},
		{"a=1&b=2&&c=%41", 2, []string{"a=1", "b=2"}, "a=1&b=2&c=A", kinds(proto.HTTPURITooManyArgs), nil},
	}
	for _, tc := range tests {
		var s proto.KindSet
		buf, args := DecodeArgs(make([]byte, 0, len(tc.query)), make([]Arg, 0, tc.max), []byte(tc.query), tc.max, &s)
		var got []string
		for _, a := range args {
			if a.Value == nil {
				got = append(got, string(a.Name))
			} else {
				got = append(got, string(a.Name)+"="+string(a.Value))
			}
		}
		if !slices.Equal(got, tc.args) || string(buf) != tc.buf {
			t.Errorf("DecodeArgs(%q) = %q, %q; want %q, %q", tc.query, got, buf, tc.args, tc.buf)
		}
		if gk := setKinds(&s); !slices.Equal(sortKinds(gk), sortKinds(tc.kinds)) {
			t.Errorf("DecodeArgs(%q) findings %v, want %v", tc.query, gk, tc.kinds)
		}
	}
}

func TestFindEnd(t *testing.T) {
	tests := []struct {
		in   string
		end  int
		more int
	}{
		{"GET / HTTP/1.1\r\n\r\n", 18, 0},
		{"GET / HTTP/1.1\n\n", 16, 0},
		{"GET / HTTP/1.1\r\n\n", 17, 0},
		{"GET / HTTP/1.1\n\r\n", 17, 0},
		{"GET / HTTP/1.1\r\nA: b\r\n", -1, 21},
		{"GET / HTTP/1.1\r\nA: b\r\n\r", -1, 21},
		{"GET / HTTP/1.1\r\nA: b", -1, 20},
		{"GET / HTTP/1.1\r\n\r\rX\r\n\r\n", 23, 0},
	}
	for _, tc := range tests {
		end, more := findEnd([]byte(tc.in), 0)
		if end != tc.end || end < 0 && more != tc.more {
			t.Errorf("findEnd(%q) = %d, %d; want %d, %d", tc.in, end, more, tc.end, tc.more)
		}
	}
}

// TestHeaderLookup checks the rule-field accessors on a request.
func TestHeaderLookup(t *testing.T) {
	sc := NewScratch(Limits{})
	var got struct {
		host, ua, cookie, missing, block string
		n                                int
	}
	sink := &funcSink{req: func(r *Request) {
		got.host = string(r.Header("host"))
		got.ua = string(r.Header("User-Agent"))
		got.cookie = string(r.Header("cookie"))
		got.missing = string(r.Header("x-missing"))
		got.block = string(r.HeaderBlock)
		got.n = len(r.Headers)
	}}
	p := NewParser(sink, sc)
	p.Feed(proto.ToServer, []byte("GET / HTTP/1.1\r\nhOST:  h.example \r\nUser-Agent:Mozilla/5.0\r\nCookie: a=1\r\n\tb=2\r\nCookie: second\r\n\r\n"))
	if got.host != "h.example" || got.ua != "Mozilla/5.0" || got.cookie != "a=1 b=2" || got.missing != "" || got.n != 4 {
		t.Fatalf("lookups: %+v", got)
	}
	const wantBlock = "hOST: h.example\r\nUser-Agent: Mozilla/5.0\r\nCookie: a=1 b=2\r\nCookie: second\r\n"
	if got.block != wantBlock {
		t.Fatalf("HeaderBlock = %q, want %q", got.block, wantBlock)
	}
}

// funcSink adapts functions to Sink for tests.
type funcSink struct {
	req  func(*Request)
	resp func(*Response)
	body func(dir proto.Dir, chunk []byte, end bool)
	find func(proto.Finding)
}

func (s *funcSink) RequestHeaders(r *Request) {
	if s.req != nil {
		s.req(r)
	}
}

func (s *funcSink) RequestBody(c []byte, end bool) {
	if s.body != nil {
		s.body(proto.ToServer, c, end)
	}
}

func (s *funcSink) ResponseHeaders(r *Response) {
	if s.resp != nil {
		s.resp(r)
	}
}

func (s *funcSink) ResponseBody(c []byte, end bool) {
	if s.body != nil {
		s.body(proto.ToClient, c, end)
	}
}

func (s *funcSink) Finding(f proto.Finding) {
	if s.find != nil {
		s.find(f)
	}
}

// TestBodyStreaming checks that bodies arrive as slices of the input, as
// they come, without waiting for the end.
func TestBodyStreaming(t *testing.T) {
	sc := NewScratch(Limits{})
	var chunks [][]byte
	var ends int
	sink := &funcSink{body: func(dir proto.Dir, c []byte, end bool) {
		if len(c) > 0 {
			chunks = append(chunks, c)
		}
		if end {
			ends++
		}
	}}
	p := NewParser(sink, sc)
	head := []byte("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n01234")
	p.Feed(proto.ToServer, head)
	if len(chunks) != 1 || string(chunks[0]) != "01234" || ends != 0 {
		t.Fatalf("after the first part: %q, %d ends", chunks, ends)
	}
	if &chunks[0][0] != &head[len(head)-5] {
		t.Fatal("body chunk is a copy, not a slice of the input")
	}
	p.Feed(proto.ToServer, []byte("56789GET"))
	if len(chunks) != 2 || string(chunks[1]) != "56789" || ends != 1 {
		t.Fatalf("after the second part: %q, %d ends", chunks, ends)
	}
}

// TestSteadyStateAllocs checks that parsing keep-alive traffic does not
// allocate once the buffers have grown.
func TestSteadyStateAllocs(t *testing.T) {
	sc := NewScratch(Limits{})
	p := NewParser(discard{}, sc)
	req, resp := benchTraffic()
	// Warm up: split heads make the parser allocate its buffers once.
	p.Feed(proto.ToServer, req[:20])
	p.Feed(proto.ToServer, req[20:])
	p.Feed(proto.ToClient, resp[:20])
	p.Feed(proto.ToClient, resp[20:])
	allocs := testing.AllocsPerRun(200, func() {
		p.Feed(proto.ToServer, req[:100])
		p.Feed(proto.ToServer, req[100:])
		p.Feed(proto.ToClient, resp)
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per request/response round", allocs)
	}
	if p.State(proto.ToServer) != StateHTTP || p.State(proto.ToClient) != StateHTTP {
		t.Fatal("parser left HTTP")
	}
}

type discard struct{}

func (discard) RequestHeaders(*Request)   {}
func (discard) RequestBody([]byte, bool)  {}
func (discard) ResponseHeaders(*Response) {}
func (discard) ResponseBody([]byte, bool) {}
func (discard) Finding(proto.Finding)     {}

// TestAgainstFasthttp parses valid requests with fasthttp's header parser
// and with ours: method, target, host, content length and every header
// must agree.
func TestAgainstFasthttp(t *testing.T) {
	reqs := []string{
		"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"GET /search?q=a+b&x=%20 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: text/html,application/xhtml+xml\r\nAccept-Language: en-US,en;q=0.5\r\nCookie: a=1; b=2\r\n\r\n",
		"POST /api HTTP/1.1\r\nHost: api.example.com:8443\r\nContent-Type: application/json\r\nContent-Length: 42\r\nX-Request-ID: 0f8fad5b-d9cb-469f-a165-70867728950e\r\n\r\n",
		"PUT /obj HTTP/1.0\r\nContent-Length: 0\r\nauthorization: Bearer abc.def.ghi\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost:h\r\nX-Empty:\r\nX-Spaces:   padded   \r\n\r\n",
	}
	sc := NewScratch(Limits{})
	for _, raw := range reqs {
		var fh fasthttp.RequestHeader
		fh.DisableNormalizing()
		if err := fh.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			t.Fatalf("fasthttp rejects %q: %v", raw, err)
		}
		var got *Request
		var hs []Header
		p := NewParser(&funcSink{req: func(r *Request) {
			c := *r
			got = &c
			for _, h := range r.Headers {
				hs = append(hs, Header{Name: bytes.Clone(h.Name), Value: bytes.Clone(h.Value)})
			}
			got.Method, got.URI, got.Host = bytes.Clone(r.Method), bytes.Clone(r.URI), bytes.Clone(r.Host)
		}}, sc)
		p.Feed(proto.ToServer, []byte(raw))
		if got == nil {
			t.Fatalf("no request from %q", raw)
		}
		if string(got.Method) != string(fh.Method()) || string(got.URI) != string(fh.RequestURI()) {
			t.Errorf("%q: method/uri %q %q, fasthttp %q %q", raw, got.Method, got.URI, fh.Method(), fh.RequestURI())
		}
		if string(got.Host) != string(fh.Host()) {
			t.Errorf("%q: host %q, fasthttp %q", raw, got.Host, fh.Host())
		}
		wantCL := int64(fh.ContentLength())
		if wantCL < 0 {
			wantCL = -1
		}
		if got.ContentLength != wantCL && !(got.ContentLength == -1 && wantCL == 0) {
			t.Errorf("%q: content length %d, fasthttp %d", raw, got.ContentLength, wantCL)
		}
		n := 0
		for k, v := range fh.All() {
			if string(k) == "Connection" && lookup(hs, "connection") == nil {
				// fasthttp adds "Connection: close" for HTTP/1.0.
				continue
			}
			if vv := lookup(hs, string(k)); !bytes.Equal(vv, v) {
				t.Errorf("%q: header %q = %q, fasthttp %q", raw, k, vv, v)
			}
			n++
		}
		if n != len(hs) {
			t.Errorf("%q: %d headers, fasthttp %d", raw, len(hs), n)
		}
	}
}

// TestScanPlain checks the word-at-a-time scan against a byte loop.
func TestScanPlain(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	buf := make([]byte, 64)
	for n := 0; n < 200000; n++ {
		size := rng.IntN(len(buf) + 1)
		for i := range size {
			// Mostly printable, some controls, DEL and high bytes.
			switch rng.IntN(16) {
			case 0:
				buf[i] = byte(rng.IntN(0x20))
			case 1:
				buf[i] = 0x7f
			case 2:
				buf[i] = 0x80 + byte(rng.IntN(0x80))
			default:
				buf[i] = 0x20 + byte(rng.IntN(0x5f))
			}
		}
		from := rng.IntN(size + 1)
		want := from
		for want < size && buf[want] >= 0x20 && buf[want] != 0x7f {
			want++
		}
		if got := scanPlain(buf[:size], from); got != want {
			t.Fatalf("scanPlain(%q, %d) = %d, want %d", buf[:size], from, got, want)
		}
	}
}

// TestPathIsNormal checks that the fast path agrees with NormalizePath.
func TestPathIsNormal(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const alphabet = "/./a%2e\\;b\x00\xc3"
	buf := make([]byte, 12)
	for n := 0; n < 200000; n++ {
		size := rng.IntN(len(buf) + 1)
		for i := range size {
			buf[i] = alphabet[rng.IntN(len(alphabet))]
		}
		raw := buf[:size]
		if !pathIsNormal(raw) {
			continue
		}
		var s proto.KindSet
		got := NormalizePath(nil, raw, &s)
		if string(got) != string(raw) || s != (proto.KindSet{}) {
			t.Fatalf("pathIsNormal(%q) but NormalizePath gives %q, %v", raw, got, setKinds(&s))
		}
	}
}

// TestUnknownMajorVersion checks that a well-formed request line with a
// version deepwall does not know is given to the sink for inspection
// before the parser stops on it, and that a malformed one is not.
func TestUnknownMajorVersion(t *testing.T) {
	tests := []struct {
		name, in string
		head     bool // the head reaches the sink
	}{
		{"http/4.0", "GET /a?x=1 HTTP/4.0\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"http/0.9 versioned", "GET /a HTTP/0.9\r\n\r\n", true},
		{"two-digit major", "GET /a HTTP/10.0\r\nHost: h\r\n\r\n", false},
		{"letter minor", "GET /a HTTP/4.x\r\nHost: h\r\n\r\n", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRecorder(t)
			p := NewParser(r, NewScratch(Limits{}))
			p.Feed(proto.ToServer, []byte(tc.in))
			log := r.String()
			if got := strings.Contains(log, `uri="/a`); got != tc.head {
				t.Errorf("head given to the sink: %v, want %v; log:\n%s", got, tc.head, log)
			}
			if strings.Contains(log, `uri="/b"`) {
				t.Errorf("a request after the unknown version was parsed; log:\n%s", log)
			}
			if p.State(proto.ToServer) != StateStopped {
				t.Errorf("state %v, want stopped", p.State(proto.ToServer))
			}
		})
	}
}
