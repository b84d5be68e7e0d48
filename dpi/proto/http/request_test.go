package http

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/deepwall/deepwall/dpi/proto"
)

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
		{"bare lf empty lines", "\n\n\nGET / HTTP/1.1\r\n" + h + "\r\n", []proto.FindingKind{proto.HTTPLeadingEmptyLines}, none},
		{"empty lines at the bound", strings.Repeat("\r\n", proto.MaxEmptyLineBytes/2) + "GET / HTTP/1.1\r\n" + h + "\r\n", []proto.FindingKind{proto.HTTPLeadingEmptyLines}, none},
		{"empty lines past the bound", strings.Repeat("\r\n", proto.MaxEmptyLineBytes/2) + "\nGET / HTTP/1.1\r\n" + h + "\r\n", nil, proto.HTTPTooManyEmptyLines},
		{"empty lines past the bound, nothing after", strings.Repeat("\n", proto.MaxEmptyLineBytes+1), nil, proto.HTTPTooManyEmptyLines},
		{"empty lines between requests past the bound", "GET / HTTP/1.1\r\n" + h + "\r\n" + strings.Repeat("\r\n", proto.MaxEmptyLineBytes) + "GET / HTTP/1.1\r\n" + h + "\r\n", nil, proto.HTTPTooManyEmptyLines},
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
