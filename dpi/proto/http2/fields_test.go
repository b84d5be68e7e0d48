package http2

import (
	"bytes"
	"strings"
	"testing"

	"golang.org/x/net/http2"

	"github.com/deepwall/deepwall/dpi/proto/http"
	"github.com/deepwall/deepwall/internal/testutil"
)

// TestFields shows what the Sink gets for the HTTP/2 features the
// captured conversations do not cover: pseudo-headers mapped to HTTP/1
// fields, crumbled cookies, CONNECT, interim responses, push, padding and
// priority, trailers (testdata/golden/fields.txt).
func TestFields(t *testing.T) {
	tests := []struct {
		name  string
		build func(s *script)
	}{
		{"cookies crumbled and joined", func(sc *script) {
			sc.get(1, "/?a=1&b=%27or%201=1", "cookie", "a=1", "user-agent", "ua/1", "cookie", "b=2", "cookie", "c=3")
			sc.ok(1, "")
		}},
		{"host header kept, :authority equal", func(sc *script) {
			sc.headers(c, 1, true, ":method", "GET", ":scheme", "https", ":authority", "Example.org", ":path", "/x", "host", "example.org")
			sc.ok(1, "")
		}},
		{"no :authority nor host", func(sc *script) {
			sc.headers(c, 1, true, ":method", "GET", ":scheme", "http", ":path", "/x")
			sc.ok(1, "")
		}},
		{"CONNECT", func(sc *script) {
			sc.headers(c, 1, false, ":method", "CONNECT", ":authority", "db:5432")
			sc.headers(s, 1, false, ":status", "200")
			sc.data(c, 1, false, "tunnelled")
			sc.data(s, 1, false, "bytes")
			sc.rst(c, 1)
		}},
		{"extended CONNECT (RFC 8441)", func(sc *script) {
			sc.headers(c, 1, false, ":method", "CONNECT", ":protocol", "websocket", ":scheme", "http", ":authority", "h", ":path", "/chat")
			sc.headers(s, 1, false, ":status", "200")
		}},
		{"OPTIONS *", func(sc *script) {
			sc.headers(c, 1, true, ":method", "OPTIONS", ":scheme", "http", ":authority", "h", ":path", "*")
			sc.ok(1, "")
		}},
		{"100-continue", func(sc *script) {
			sc.headers(c, 1, false, ":method", "PUT", ":scheme", "http", ":authority", "h", ":path", "/f", "expect", "100-continue", "content-length", "4")
			sc.headers(s, 1, false, ":status", "100")
			sc.data(c, 1, true, "data")
			sc.ok(1, "done")
		}},
		{"trailers both ways", func(sc *script) {
			sc.headers(c, 1, false, ":method", "POST", ":scheme", "http", ":authority", "h", ":path", "/t")
			sc.data(c, 1, false, "part1,")
			sc.data(c, 1, false, "part2")
			sc.headers(c, 1, true, "x-sum", "9")
			sc.headers(s, 1, false, ":status", "200", "trailer", "grpc-status")
			sc.data(s, 1, false, "resp")
			sc.headers(s, 1, true, "grpc-status", "0")
		}},
		{"padding and priority", func(sc *script) {
			blk := sc.block(c, ":method", "POST", ":scheme", "http", ":authority", "h", ":path", "/p")
			sc.do(c, func(f *http2.Framer) error {
				return f.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk, EndHeaders: true, PadLength: 7,
					Priority: http2.PriorityParam{StreamDep: 0, Weight: 200, Exclusive: true}})
			})
			sc.do(c, func(f *http2.Framer) error { return f.WritePriority(1, http2.PriorityParam{Weight: 3}) })
			sc.do(c, func(f *http2.Framer) error { return f.WriteDataPadded(1, false, []byte("abc"), []byte{0, 0, 0}) })
			sc.do(c, func(f *http2.Framer) error { return f.WriteDataPadded(1, true, []byte("def"), make([]byte, 255)) })
			sc.do(c, func(f *http2.Framer) error { return f.WriteDataPadded(3, true, nil, make([]byte, 5)) })
			sc.do(c, func(f *http2.Framer) error { return f.WriteWindowUpdate(0, 1000) })
			sc.do(s, func(f *http2.Framer) error { return f.WriteWindowUpdate(1, 1000) })
			sc.ok(1, "ok")
			sc.do(c, func(f *http2.Framer) error { return f.WriteGoAway(1, http2.ErrCodeNo, []byte("debug data")) })
		}},
		{"server push", func(sc *script) {
			sc.get(1, "/")
			blk := sc.block(s, ":method", "GET", ":scheme", "http", ":authority", "h", ":path", "/style.css")
			sc.do(s, func(f *http2.Framer) error {
				return f.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, BlockFragment: blk, EndHeaders: true})
			})
			sc.ok(1, "<html>")
			sc.ok(2, "body{}")
		}},
		{"empty DATA with END_STREAM", func(sc *script) {
			sc.headers(c, 1, false, ":method", "POST", ":scheme", "http", ":authority", "h", ":path", "/e")
			sc.data(c, 1, false, "x")
			sc.data(c, 1, true, "")
			sc.ok(1, "")
		}},
		{"reset by server", func(sc *script) {
			sc.get(1, "/")
			sc.headers(s, 1, false, ":status", "200")
			sc.data(s, 1, false, "partial")
			sc.rst(s, 1)
		}},
	}
	var b strings.Builder
	for _, tc := range tests {
		sc := newScript(t)
		tc.build(sc)
		r := sc.run(Limits{})
		b.WriteString("== " + tc.name + "\n" + r.String())
	}
	// Upgrade: stream 1 is the HTTP/1.1 request; the client's
	// HTTP2-Settings raise the server's frame size.
	sc := newScript(t)
	sc.headers(s, 1, false, ":status", "200")
	sc.do(s, func(f *http2.Framer) error { return f.WriteData(1, true, bytes.Repeat([]byte("z"), 20000)) })
	sc.get(3, "/next")
	sc.ok(3, "")
	r := newRecorder(t)
	st := r.stream(1)
	st.head[0], st.end[0] = true, true
	p := NewParser(r, NewScratch(Limits{}, nil))
	if !p.Upgrade([]byte("AAUAAIAA")) { // SETTINGS_MAX_FRAME_SIZE 32768
		t.Fatal("Upgrade refused its settings")
	}
	sc.feed(p)
	b.WriteString("== upgrade\n" + r.String())
	testutil.Golden(t, "testdata/golden/fields.txt", []byte(b.String()), *update)

	for _, bad := range []string{"!!", "AAUAAIA", strings.Repeat("AAUAAIAA", 100)} {
		if NewParser(newRecorder(t), NewScratch(Limits{}, nil)).Upgrade([]byte(bad)) {
			t.Errorf("Upgrade accepted settings %.20q", bad)
		}
	}
	if !NewParser(newRecorder(t), NewScratch(Limits{}, nil)).Upgrade([]byte(strings.Repeat("AAUAAIAA", 42))) {
		t.Error("Upgrade refused 42 settings")
	}
}

func TestIsUpgrade(t *testing.T) {
	resp := func(status int, upgrade string) *http.Response {
		return &http.Response{Status: status, Headers: []http.Header{{Name: []byte("Upgrade"), Value: []byte(upgrade)}}}
	}
	for _, tc := range []struct {
		r    *http.Response
		want bool
	}{
		{resp(101, "h2c"), true},
		{resp(101, "H2C"), true},
		{resp(101, "websocket"), false},
		{resp(200, "h2c"), false},
	} {
		if got := IsUpgrade(tc.r); got != tc.want {
			t.Errorf("IsUpgrade(%d %s) = %v", tc.r.Status, tc.r.Headers[0].Value, got)
		}
	}
}
