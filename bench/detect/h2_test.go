package detect

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Runner runs each request of the suite over HTTP/2 prior knowledge:
// the same method, target, header fields and body, framed by
// golang.org/x/net/http2, and the test backend's answer as an HTTP/2
// response.
type h2Runner struct{ *offline }

func (h h2Runner) Name() string { return h.offline.Name() + "-h2" }

func (h h2Runner) Run(req []byte) outcome {
	c2s, s2c, ok := h2Exchange(req)
	if !ok {
		return outcome{}
	}
	return h.offline.run(c2s, s2c)
}

// connectionSpecific are the fields HTTP/2 forbids (RFC 9113 8.2.2);
// Host becomes :authority.
var connectionSpecific = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade", "Host"}

// h2Exchange writes the exchange of an HTTP/1 request as HTTP/2; ok is
// false when the request has no HTTP/2 form (it does not parse as
// HTTP/1, or it needs HTTP/1 framing to mean what it means).
func h2Exchange(req []byte) (c2s, s2c []byte, ok bool) {
	r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(req)))
	if err != nil || r.Method == "CONNECT" || r.RequestURI == "" || r.RequestURI == "*" {
		return nil, nil, false
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		return nil, nil, false
	}
	var cb, hb bytes.Buffer
	cb.WriteString(http2.ClientPreface)
	cf := http2.NewFramer(&cb, nil)
	enc := hpack.NewEncoder(&hb)
	field := func(name, value string) { _ = enc.WriteField(hpack.HeaderField{Name: name, Value: value}) }
	field(":method", r.Method)
	field(":scheme", "http")
	field(":authority", r.Host)
	field(":path", r.RequestURI)
	names := make([]string, 0, len(r.Header))
	for k := range r.Header {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		if slices.Contains(connectionSpecific, k) || k == "Te" && !strings.EqualFold(r.Header.Get(k), "trailers") {
			continue
		}
		for _, v := range r.Header[k] {
			if k == "Content-Length" {
				v = strconv.Itoa(len(body))
			}
			field(strings.ToLower(k), v)
		}
	}
	if r.ContentLength < 0 && len(body) > 0 {
		field("content-length", strconv.Itoa(len(body)))
	}
	if cf.WriteSettings() != nil || cf.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: len(body) == 0}) != nil {
		return nil, nil, false
	}
	for b := body; len(b) > 0; {
		n := min(len(b), 16384)
		if cf.WriteData(1, n == len(b), b[:n]) != nil {
			return nil, nil, false
		}
		b = b[n:]
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(backendResponse(req))), nil)
	if err != nil {
		return nil, nil, false
	}
	rbody, _ := io.ReadAll(resp.Body)
	var sb bytes.Buffer
	sf := http2.NewFramer(&sb, nil)
	hb.Reset()
	senc := hpack.NewEncoder(&hb)
	_ = senc.WriteField(hpack.HeaderField{Name: ":status", Value: strconv.Itoa(resp.StatusCode)})
	_ = senc.WriteField(hpack.HeaderField{Name: "content-type", Value: resp.Header.Get("Content-Type")})
	_ = sf.WriteSettings()
	_ = sf.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: len(rbody) == 0})
	if len(rbody) > 0 {
		_ = sf.WriteData(1, true, rbody)
	}
	return cb.Bytes(), sb.Bytes(), true
}

// TestCRSOverHTTP2 replays the CRS regression suite through the offline
// engine with the imported CRS (paranoia level 1), each request over
// HTTP/1.1 as written and over HTTP/2, and compares the two columns on
// the requests HTTP/2 can carry. HTTP/2 fills the same fields, so the
// verdicts should match; the table is logged (go test -v -run
// TestCRSOverHTTP2 ./bench/detect).
func TestCRSOverHTTP2(t *testing.T) {
	if testing.Short() {
		t.Skip("replays the whole CRS suite")
	}
	dir, err := testsDir()
	if err != nil {
		t.Skip(err)
	}
	tests, _, err := loadSuite(dir)
	if err != nil {
		t.Fatal(err)
	}
	var carried []test
	for _, tc := range tests {
		if _, _, ok := h2Exchange(tc.Stage.request()); ok {
			carried = append(carried, tc)
		}
	}
	set, _, err := crsRules(1)
	if err != nil {
		t.Fatal(err)
	}
	o, err := newOffline("deepwall-crs-pl1", set)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	h1 := runSuite(o, carried, false)
	h2 := runSuite(h2Runner{o}, carried, false)
	t.Logf("CRS regression suite, imported CRS PL1: %d tests, %d expressible over HTTP/2", len(tests), len(carried))
	t.Logf("| family | tests | HTTP/1.1 passed | HTTP/2 passed |")
	for i, f := range h1.Families {
		if f.Tests > 0 {
			t.Logf("| %s | %d | %d | %d |", f.Family, f.Tests, f.Passed, h2.Families[i].Passed)
		}
	}
	t.Logf("| all | %d | %d | %d |", h1.Total.Tests, h1.Total.Passed, h2.Total.Passed)
	if h2.Total.Passed*100 < h1.Total.Passed*97 {
		t.Errorf("HTTP/2 passes %d of %d, HTTP/1.1 %d", h2.Total.Passed, len(carried), h1.Total.Passed)
	}
}
