package dpi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/deepwall/deepwall/ctl/eve"
	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dpi/flow"
	"github.com/deepwall/deepwall/internal/ruletest"
	"github.com/deepwall/deepwall/internal/testutil"
)

// compress and chunked are the shared helpers, short.
func compress(tb testing.TB, ce string, b []byte) []byte { return testutil.Encode(tb, ce, b) }

func chunked(b []byte, n int) string { return string(testutil.Chunked(b, n)) }

// exchange is one connection through the default pack: the client's
// bytes (cut into MSS segments), then the server's.
type exchange struct {
	req, resp string
}

// exResult is what the engine did with an exchange.
type exResult struct {
	reqVerdicts []dataplane.Verdict // of the request's data segments
	events      []*eve.Event
	json        string
}

func (r *exResult) blockedRequest() bool {
	for _, v := range r.reqVerdicts {
		if v.Action == dataplane.Drop {
			return true
		}
	}
	return false
}

// alert returns the first alert of direction dir, or nil.
func (r *exResult) alert(dir string) *eve.Alert {
	for _, ev := range r.events {
		if ev.EventType == eve.EventAlert && ev.Direction == dir {
			return ev.Alert
		}
	}
	return nil
}

// drop returns the reason of the first drop event, or "".
func (r *exResult) drop() string {
	for _, ev := range r.events {
		if ev.EventType == eve.EventDrop {
			return ev.Drop.Reason
		}
	}
	return ""
}

func runExchange(t *testing.T, h *harness, port int, x exchange) *exResult {
	t.Helper()
	c := newCapture(t)
	v := c.tcp(fmt.Sprintf("198.18.0.20:%d", 42000+port), "198.18.1.20:80").handshake()
	first := len(c.frames)
	v.send(flow.ToServer, x.req)
	last := len(c.frames)
	if x.resp != "" {
		v.send(flow.ToClient, x.resp)
	}
	v.close()
	vs := h.run(c)
	r := &exResult{reqVerdicts: vs[first:last], events: h.take()}
	b, _ := json.Marshal(r.events)
	r.json = string(b)
	return r
}

// sqliForm is a form body with an injection, long enough for every
// coding to compress its literals (zstd and brotli store short inputs
// as they are).
const sqliForm = "comment=" + lorem + "&id=1' UNION SELECT password FROM users--&more=" + lorem

const lorem = "Lorem+ipsum+dolor+sit+amet,+consectetur+adipiscing+elit,+sed+do+eiusmod+tempor+incididunt+ut+labore+et+dolore+magna+aliqua.+" +
	"Ut+enim+ad+minim+veniam,+quis+nostrud+exercitation+ullamco+laboris+nisi+ut+aliquip+ex+ea+commodo+consequat.+" +
	"Duis+aute+irure+dolor+in+reprehenderit+in+voluptate+velit+esse+cillum+dolore+eu+fugiat+nulla+pariatur."

// hidden compresses b with ce and checks that marker is not readable in
// the result, so that only decoding can find it.
func hidden(tb testing.TB, ce string, b []byte, marker string) string {
	tb.Helper()
	enc := compress(tb, ce, b)
	if bytes.Contains(enc, []byte(marker)) {
		tb.Fatalf("%q readable in the %s body", marker, ce)
	}
	return string(enc)
}

// TestContentDecoding checks that compressed bodies are inspected as the
// application will read them: an attack in a request body under any
// coding is blocked on the request, a card number in a compressed
// response raises the DLP alert (masked), a bomb is stopped with an
// event.
func TestContentDecoding(t *testing.T) {
	h := newHarness(t, ruletest.DefaultPack(t), Config{})
	form := "Content-Type: application/x-www-form-urlencoded\r\n"
	post := func(ce, body string, extra string) string {
		return "POST /login HTTP/1.1\r\nHost: shop.example\r\n" + extra + "Content-Encoding: " + ce +
			fmt.Sprintf("\r\nContent-Length: %d\r\n\r\n", len(body)) + body
	}
	ok := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	for i, ce := range []struct{ header, wire string }{
		{"gzip", "gzip"},
		{"x-gzip", "gzip"},
		{"deflate", "deflate"},
		{"deflate", "raw-deflate"},
		{"br", "br"},
		{"zstd", "zstd"},
		{"gzip, br", "gzip, br"},
	} {
		t.Run("request "+ce.wire, func(t *testing.T) {
			r := runExchange(t, h, i, exchange{req: post(ce.header, hidden(t, ce.wire, []byte(sqliForm), "UNION"), form), resp: ok})
			if a := r.alert("to_server"); a == nil || a.Action != "blocked" || !r.blockedRequest() {
				dumpEvents(t, r.events)
				t.Fatalf("%s SQL injection not blocked on the request (verdicts %v)", ce.header, r.reqVerdicts)
			}
		})
	}
	t.Run("request gzip chunked json", func(t *testing.T) {
		body := compress(t, "gzip", []byte(`{"user":{"id":"1' UNION SELECT password FROM users--"}}`))
		req := "POST /api HTTP/1.1\r\nHost: shop.example\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(body, 9)
		r := runExchange(t, h, 10, exchange{req: req, resp: ok})
		if a := r.alert("to_server"); a == nil || a.Action != "blocked" || !r.blockedRequest() {
			dumpEvents(t, r.events)
			t.Fatal("gzip JSON body not blocked")
		}
	})
	t.Run("benign gzip request passes", func(t *testing.T) {
		r := runExchange(t, h, 11, exchange{req: post("gzip", string(compress(t, "gzip", []byte("user=alice&remember=1"))), form), resp: ok})
		if r.blockedRequest() || r.alert("to_server") != nil {
			dumpEvents(t, r.events)
			t.Fatal("benign gzip body blocked")
		}
	})
	for i, ce := range []string{"gzip", "br", "zstd", "deflate", "gzip, zstd"} {
		t.Run("response card "+ce, func(t *testing.T) {
			leak := []byte(hidden(t, ce, []byte("<p>"+lorem+" Your card: 4111 1111 1111 1111, thanks. "+lorem+"</p>"), "4111"))
			resp := "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: " + ce + "\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(leak, 11)
			r := runExchange(t, h, 20+i, exchange{req: "GET /receipt HTTP/1.1\r\nHost: shop.example\r\n\r\n", resp: resp})
			a := r.alert("to_client")
			if a == nil || a.SignatureID != 5001 || a.Matched != "4111 **** **** 1111" {
				dumpEvents(t, r.events)
				t.Fatal("no masked DLP alert on a compressed response")
			}
			if strings.Contains(r.json, "4111 1111 1111 1111") {
				t.Fatal("the card number leaked into the events")
			}
		})
	}
	t.Run("bomb", func(t *testing.T) {
		bomb := compress(t, "gzip", make([]byte, 10<<20))
		r := runExchange(t, h, 30, exchange{req: post("gzip", string(bomb), form), resp: ok})
		if r.drop() != "http.decompression_bomb" || !r.blockedRequest() {
			dumpEvents(t, r.events)
			t.Fatalf("bomb: drop %q", r.drop())
		}
	})
	t.Run("too many codings", func(t *testing.T) {
		body := compress(t, "gzip, gzip, gzip, gzip", []byte(sqliForm))
		r := runExchange(t, h, 31, exchange{req: post("gzip, gzip, gzip, gzip", string(body), form), resp: ok})
		if r.drop() != "http.too_many_encodings" || !r.blockedRequest() {
			dumpEvents(t, r.events)
			t.Fatalf("four codings: drop %q", r.drop())
		}
	})
	t.Run("corrupt request body", func(t *testing.T) {
		body := hidden(t, "gzip", []byte(sqliForm), "UNION")
		body = body[:len(body)/2] + "\x00\xff garbage" + body[len(body)/2:]
		r := runExchange(t, h, 34, exchange{req: post("gzip", body, form), resp: ok})
		if r.drop() != "http.decode_error" && r.alert("to_server") == nil || !r.blockedRequest() {
			dumpEvents(t, r.events)
			t.Fatalf("corrupt gzip request: drop %q", r.drop())
		}
	})
	t.Run("multipart base64 part", func(t *testing.T) {
		body := "--xyz\r\nContent-Disposition: form-data; name=\"id\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
			"MScgVU5JT04gU0VMRUNUIHBhc3N3b3JkIEZST00gdXNlcnMtLQ==\r\n--xyz--\r\n"
		req := "POST /upload HTTP/1.1\r\nHost: shop.example\r\nContent-Type: multipart/form-data; boundary=xyz\r\n" +
			fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)) + body
		r := runExchange(t, h, 32, exchange{req: req, resp: ok})
		if a := r.alert("to_server"); a == nil || a.Action != "blocked" || !r.blockedRequest() {
			dumpEvents(t, r.events)
			t.Fatal("base64 multipart attack not blocked")
		}
	})
	t.Run("multipart quoted-printable part", func(t *testing.T) {
		body := "--xyz\r\nContent-Disposition: form-data; name=\"id\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
			"1=27 UNION SEL=\r\nECT password FROM users--\r\n--xyz--\r\n"
		req := "POST /upload HTTP/1.1\r\nHost: shop.example\r\nContent-Type: multipart/form-data; boundary=xyz\r\n" +
			fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)) + body
		r := runExchange(t, h, 33, exchange{req: req, resp: ok})
		if a := r.alert("to_server"); a == nil || a.Action != "blocked" || !r.blockedRequest() {
			dumpEvents(t, r.events)
			t.Fatal("quoted-printable multipart attack not blocked")
		}
	})
}

// TestLeadingEmptyLines checks that a request behind empty lines, which
// servers skip (RFC 9112 2.2), is inspected and blocked on the request,
// in one segment or with the empty lines in their own; and that more
// empty lines than proto.MaxEmptyLineBytes stop the flow.
func TestLeadingEmptyLines(t *testing.T) {
	h := newHarness(t, ruletest.DefaultPack(t), Config{})
	attack := "GET /?id=1%27%20UNION%20SELECT%20password%20FROM%20users-- HTTP/1.1\r\nHost: shop.example\r\n\r\n"
	for i, tc := range []struct {
		name, prefix string
		split        bool
		drop         string
	}{
		{"crlf", "\r\n\r\n", false, ""},
		{"bare lf", "\n\n\n", false, ""},
		{"own segment", "\r\n\r\n", true, ""},
		{"past the bound", strings.Repeat("\r\n", 40), false, "http.too_many_empty_lines"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCapture(t)
			v := c.tcp(fmt.Sprintf("198.18.0.21:%d", 43000+i), "198.18.1.21:80").handshake()
			first := len(c.frames)
			if tc.split {
				v.send(flow.ToServer, tc.prefix)
				v.send(flow.ToServer, attack)
			} else {
				v.send(flow.ToServer, tc.prefix+attack)
			}
			last := len(c.frames)
			v.send(flow.ToClient, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecret")
			v.close()
			vs := h.run(c)
			r := &exResult{reqVerdicts: vs[first:last], events: h.take()}
			if !r.blockedRequest() || vs[last-1].Action != dataplane.Drop {
				dumpEvents(t, r.events)
				t.Fatalf("request forwarded: verdicts %v", vs[first:last])
			}
			if tc.drop != "" {
				if r.drop() != tc.drop {
					dumpEvents(t, r.events)
					t.Fatalf("drop reason %q, want %q", r.drop(), tc.drop)
				}
				return
			}
			if a := r.alert("to_server"); a == nil || a.Action != "blocked" {
				dumpEvents(t, r.events)
				t.Fatal("no blocking alert on the request")
			}
		})
	}
}

// TestLimitDropEvent: a request over a named limit of the HTTP parser is
// dropped with an event that names the finding and the limit with its
// value (a benign long query must not fail silently).
func TestLimitDropEvent(t *testing.T) {
	h := newHarness(t, ruletest.DefaultPack(t), Config{})
	for i, tc := range []struct {
		req, reason, limit string
	}{
		{"GET /search?q=" + strings.Repeat("a", 9000) + " HTTP/1.1\r\nHost: shop.example\r\n\r\n", "http.request_line_too_long", "http.max_request_line=8192"},
		{"GET / HTTP/1.1\r\nHost: shop.example\r\n" + strings.Repeat("X-A: b\r\n", 200) + "\r\n", "http.too_many_headers", "http.max_header_count=128"},
	} {
		r := runExchange(t, h, 60+i, exchange{req: tc.req})
		if !r.blockedRequest() {
			t.Errorf("%s: not blocked", tc.reason)
			continue
		}
		var got *eve.Drop
		for _, ev := range r.events {
			if ev.EventType == eve.EventDrop {
				got = ev.Drop
			}
		}
		if got == nil || got.Reason != tc.reason || got.Limit != tc.limit {
			t.Errorf("drop event %+v, want reason %s, limit %s", got, tc.reason, tc.limit)
		}
	}
}
