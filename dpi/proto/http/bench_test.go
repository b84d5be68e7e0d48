package http

import (
	"bufio"
	"bytes"
	"io"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/deepwall/deepwall/dpi/proto"
)

// benchRequest is what a browser sends for a page asset on a keep-alive
// connection (Firefox 128's headers).
const benchRequest = "GET /static/js/app.3f2a1c.js?v=20240611&lang=en-US HTTP/1.1\r\n" +
	"Host: www.example.com\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
	"Accept: */*\r\n" +
	"Accept-Language: en-US,en;q=0.5\r\n" +
	"Accept-Encoding: gzip, deflate, br, zstd\r\n" +
	"Referer: https://www.example.com/products/widgets?page=2\r\n" +
	"Connection: keep-alive\r\n" +
	"Cookie: session=8f14e45fceea167a5a36dedd4bea2543; theme=dark; _ga=GA1.2.1234567890.1718000000\r\n" +
	"Sec-Fetch-Dest: script\r\n" +
	"Sec-Fetch-Mode: no-cors\r\n" +
	"Sec-Fetch-Site: same-origin\r\n" +
	"If-None-Match: \"5d8c72a5edda8\"\r\n" +
	"\r\n"

// benchResponseHead precedes a 4 KiB body.
const benchResponseHead = "HTTP/1.1 200 OK\r\n" +
	"Server: nginx/1.24.0\r\n" +
	"Date: Tue, 11 Jun 2024 10:00:00 GMT\r\n" +
	"Content-Type: application/javascript; charset=utf-8\r\n" +
	"Content-Length: 4096\r\n" +
	"Last-Modified: Mon, 10 Jun 2024 08:00:00 GMT\r\n" +
	"Connection: keep-alive\r\n" +
	"ETag: \"5d8c72a5edda9\"\r\n" +
	"Cache-Control: public, max-age=31536000\r\n" +
	"Accept-Ranges: bytes\r\n" +
	"\r\n"

func benchTraffic() (req, resp []byte) {
	body := bytes.Repeat([]byte("function f(){return 42;}\n"), 4096/25+1)[:4096]
	return []byte(benchRequest), append([]byte(benchResponseHead), body...)
}

// countingSink touches what the engine would read for rules, so the
// benchmark cannot skip work.
type countingSink struct{ n int }

func (s *countingSink) RequestHeaders(r *Request) {
	s.n += len(r.Path) + len(r.ArgsBuf) + len(r.HeaderBlock) + len(r.Header("user-agent"))
}
func (s *countingSink) RequestBody(c []byte, _ bool) { s.n += len(c) }
func (s *countingSink) ResponseHeaders(r *Response) {
	s.n += r.Status + len(r.HeaderBlock)
}
func (s *countingSink) ResponseBody(c []byte, _ bool) { s.n += len(c) }
func (s *countingSink) Finding(proto.Finding)         { s.n++ }

// BenchmarkKeepAlive parses one request and its 4 KiB response per
// iteration on one connection, each fed whole.
func BenchmarkKeepAlive(b *testing.B) {
	req, resp := benchTraffic()
	sc := NewScratch(Limits{})
	sink := &countingSink{}
	p := NewParser(sink, sc)
	b.SetBytes(int64(len(req) + len(resp)))
	b.ReportAllocs()
	for b.Loop() {
		p.Feed(proto.ToServer, req)
		p.Feed(proto.ToClient, resp)
	}
	reportRate(b, len(req)+len(resp))
	if p.State(proto.ToServer) != StateHTTP {
		b.Fatal("parser stopped")
	}
}

// BenchmarkKeepAliveSegmented feeds the same traffic as 1448-byte TCP
// segments (one Ethernet MSS) of a stream of 64 exchanges, so heads and
// bodies are cut at arbitrary points.
func BenchmarkKeepAliveSegmented(b *testing.B) {
	req, resp := benchTraffic()
	const exchanges = 64
	reqs := bytes.Repeat(req, exchanges)
	resps := bytes.Repeat(resp, exchanges)
	const mss = 1448
	sc := NewScratch(Limits{})
	sink := &countingSink{}
	p := NewParser(sink, sc)
	b.SetBytes(int64(len(reqs) + len(resps)))
	b.ReportAllocs()
	for b.Loop() {
		// Interleave as a browser sees it: requests, then responses.
		for i := 0; i < len(reqs); i += mss {
			p.Feed(proto.ToServer, reqs[i:min(i+mss, len(reqs))])
		}
		for i := 0; i < len(resps); i += mss {
			p.Feed(proto.ToClient, resps[i:min(i+mss, len(resps))])
		}
	}
	reportRate(b, len(reqs)+len(resps))
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*exchanges), "ns/request")
	if p.State(proto.ToServer) != StateHTTP {
		b.Fatal("parser stopped")
	}
}

func reportRate(b *testing.B, bytesPerOp int) {
	ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(float64(bytesPerOp)*8/ns, "Gbit/s")
}

// BenchmarkHeaderParse compares this package's parser with fasthttp's
// RequestHeader.Read on the same complete request head, the case fasthttp
// handles best (it needs the whole block in a bufio.Reader).
func BenchmarkHeaderParse(b *testing.B) {
	req := []byte(benchRequest)
	b.Run("deepwall", func(b *testing.B) {
		sc := NewScratch(Limits{})
		sink := &countingSink{}
		p := NewParser(sink, sc)
		b.SetBytes(int64(len(req)))
		b.ReportAllocs()
		for b.Loop() {
			p.Feed(proto.ToServer, req)
			// Answer so the pending queue does not fill.
			p.pLen = 0
		}
	})
	b.Run("fasthttp", func(b *testing.B) {
		var h fasthttp.RequestHeader
		h.DisableNormalizing()
		rd := bytes.NewReader(req)
		br := bufio.NewReaderSize(rd, 4096)
		n := 0
		b.SetBytes(int64(len(req)))
		b.ReportAllocs()
		for b.Loop() {
			rd.Reset(req)
			br.Reset(rd)
			if err := h.Read(br); err != nil {
				b.Fatal(err)
			}
			// What the engine reads: the path and a header.
			n += len(h.RequestURI()) + len(h.Peek("User-Agent"))
		}
		_ = n
	})
	b.Run("fasthttp-split", func(b *testing.B) {
		// Incremental input: fasthttp rescans the head on every new
		// segment (here two halves), our parser buffers once.
		var h fasthttp.RequestHeader
		h.DisableNormalizing()
		half := len(req) / 2
		tp := &twoPart{}
		br := bufio.NewReaderSize(tp, 4096)
		b.SetBytes(int64(len(req)))
		b.ReportAllocs()
		for b.Loop() {
			tp.a, tp.b = req[:half], req[half:]
			br.Reset(tp)
			if err := h.Read(br); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("deepwall-split", func(b *testing.B) {
		sc := NewScratch(Limits{})
		p := NewParser(&countingSink{}, sc)
		half := len(req) / 2
		b.SetBytes(int64(len(req)))
		b.ReportAllocs()
		for b.Loop() {
			p.Feed(proto.ToServer, req[:half])
			p.Feed(proto.ToServer, req[half:])
			p.pLen = 0
		}
	})
}

// twoPart returns a then b from Read, as two TCP segments would arrive.
type twoPart struct{ a, b []byte }

func (t *twoPart) Read(p []byte) (int, error) {
	if len(t.a) > 0 {
		n := copy(p, t.a)
		t.a = t.a[n:]
		return n, nil
	}
	if len(t.b) > 0 {
		n := copy(p, t.b)
		t.b = t.b[n:]
		return n, nil
	}
	return 0, io.EOF
}
