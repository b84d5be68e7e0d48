package http

import (
	"flag"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/dpi/proto/internal/prototest"
	"github.com/deepwall/deepwall/internal/testutil"
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
		name: "leading_empty_lines",
		requests: "\r\n\r\nGET /?id=1%20UNION%20SELECT%20password%20FROM%20users HTTP/1.1\r\nHost: h\r\n\r\n" +
			"\n\r\nPOST /f HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\na=1\r\n" +
			"GET /last HTTP/1.1\r\nHost: h\r\n\r\n",
		responses: "\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" +
			"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" +
			"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	},
	{
		name: "content_encoding",
		// {"a":"' OR 1=1--"} deflated (zlib) in chunks that cut the
		// compressed bytes, answered by "hello" gzipped.
		requests: "POST /json HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Encoding: deflate\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"5\r\nx\x9c\xabVJ\r\n15\r\nT\xb2RRW\xf0\x0fR0\xb45\xd4\xd5U\xaa\x05\x00'\xd0\x04\x1d\r\n0\r\n\r\n",
		responses: "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 25\r\n\r\n" +
			"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\x03\xcbH\xcd\xc9\xc9\x07\x00\x86\xa6\x106\x05\x00\x00\x00",
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
			testutil.Golden(t, filepath.Join("testdata", "golden", c.name+".txt"), []byte(got), *update)
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

func sortKinds(ks []proto.FindingKind) []proto.FindingKind {
	ks = slices.Clone(ks)
	slices.Sort(ks)
	return ks
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
