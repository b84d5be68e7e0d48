package dpi

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/flier/gohs/hyperscan"
	"golang.org/x/sys/unix"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dpi/decode"
	"github.com/deepwall/deepwall/dpi/flow"
	"github.com/deepwall/deepwall/dpi/internal/hs"
	"github.com/deepwall/deepwall/internal/rulegen"
	"github.com/deepwall/deepwall/internal/ruletest"
	"github.com/deepwall/deepwall/rules"
)

// Realistic HTTP traffic for benchmarks: browser-like requests (a few
// with query strings, cookies, form and JSON bodies), responses with
// HTML/JSON/text bodies of 1-48 KiB, keep-alive connections, MSS-sized
// segments, a delayed ACK every two segments.
var (
	benchPaths = []string{"/", "/index.html", "/products/12345", "/api/v1/cart", "/static/app.3f9a2c.js",
		"/search", "/account/orders", "/blog/2024/10/how-we-ship", "/images/logo.svg", "/api/v1/products"}
	benchQueries = []string{"", "", "", "q=running+shoes&sort=price_asc&page=3", "id=8812&ref=newsletter",
		"category=books&filter=in_stock%3Dtrue&lang=en-US", "utm_source=google&utm_medium=cpc&utm_campaign=spring_sale"}
	benchWords = strings.Fields(`the quick brown fox jumps over lazy dog order shipping delivery customer
		product review rating price discount cart checkout account profile settings search results page
		category featured popular new arrivals sale limited offer free returns warranty support contact
		about careers press privacy terms cookies newsletter subscribe email password login logout help`)
)

func benchRequest(r *rand.Rand, host string, i int) string {
	path := benchPaths[r.IntN(len(benchPaths))]
	q := benchQueries[r.IntN(len(benchQueries))]
	if q != "" {
		path += "?" + q
	}
	method, body := "GET", ""
	switch r.IntN(8) {
	case 0:
		method, body = "POST", "email=jane.doe%40example.com&name=Jane+Doe&message=Where+is+my+order%3F+It+was+due+on+Monday.&subscribe=on"
	case 1:
		method, body = "POST", `{"items":[{"sku":"A-1234","qty":2},{"sku":"B-9","qty":1}],"coupon":"SPRING24","note":"leave at the door"}`
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path, host)
	b.WriteString("User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n")
	b.WriteString("Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n")
	b.WriteString("Accept-Language: en-US,en;q=0.9,de;q=0.8\r\nAccept-Encoding: gzip, deflate, br\r\n")
	fmt.Fprintf(&b, "Cookie: session=%016x; _ga=GA1.2.1098765432.1712345678; prefs=theme%%3Ddark%%26lang%%3Den\r\n", r.Uint64())
	b.WriteString("Referer: https://" + host + "/\r\nConnection: keep-alive\r\n")
	if body != "" {
		ct := "application/x-www-form-urlencoded"
		if body[0] == '{' {
			ct = "application/json"
		}
		fmt.Fprintf(&b, "Content-Type: %s\r\nContent-Length: %d\r\n", ct, len(body))
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	return b.String()
}

func benchResponse(r *rand.Rand) string {
	size := []int{1 << 10, 4 << 10, 8 << 10, 16 << 10, 48 << 10}[r.IntN(5)]
	var body strings.Builder
	ct := "text/html; charset=utf-8"
	if r.IntN(3) == 0 {
		ct = "application/json"
		body.WriteString(`{"results":[`)
		for body.Len() < size {
			fmt.Fprintf(&body, `{"id":%d,"name":"%s %s","price":%d.%02d,"rating":%d.%d,"in_stock":true},`,
				r.IntN(100000), benchWords[r.IntN(len(benchWords))], benchWords[r.IntN(len(benchWords))],
				r.IntN(500), r.IntN(100), r.IntN(5), r.IntN(10))
		}
		body.WriteString(`{}]}`)
	} else {
		body.WriteString("<!doctype html><html><head><title>Shop</title><link rel=stylesheet href=/static/site.css></head><body>\n")
		for body.Len() < size {
			body.WriteString("<p class=\"item\">")
			for range 12 + r.IntN(12) {
				body.WriteString(benchWords[r.IntN(len(benchWords))])
				body.WriteByte(' ')
			}
			fmt.Fprintf(&body, "<a href=\"/products/%d\">more</a></p>\n", r.IntN(100000))
		}
		body.WriteString("</body></html>\n")
	}
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nServer: nginx/1.25.3\r\nDate: Thu, 14 Mar 2026 15:09:26 GMT\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: keep-alive\r\nCache-Control: private, max-age=0\r\nETag: \"%x\"\r\n\r\n%s",
		ct, body.Len(), r.Uint64(), body.String())
}

// httpTraffic builds conns keep-alive connections of exchanges
// request/response exchanges each.
func httpTraffic(tb testing.TB, conns, exchanges int) *capture {
	return httpTrafficOf(tb, conns, exchanges, false)
}

// httpTrafficOf is httpTraffic; with unique, every request header value
// but Content-Type and Content-Length ends in a random token, so that no
// value repeats (the worst case for the engine's quiet-value cache).
func httpTrafficOf(tb testing.TB, conns, exchanges int, unique bool) *capture {
	c := newCapture(tb)
	c.step = int64(10 * time.Microsecond)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range conns {
		v := c.tcp(fmt.Sprintf("198.18.0.%d:%d", 1+i%200, 30000+i), "198.18.1.1:80")
		v.acks = false
		v.handshake()
		for j := range exchanges {
			req := benchRequest(r, "shop.example.com", j)
			if unique {
				req = uniqueValues(r, req)
			}
			v.send(flow.ToServer, req)
			v.ack(flow.ToClient)
			resp := benchResponse(r)
			for k := 0; len(resp) > 0; k++ {
				n := min(len(resp), v.mss)
				v.send(flow.ToClient, resp[:n])
				resp = resp[n:]
				if k%2 == 1 || len(resp) == 0 {
					v.ack(flow.ToServer)
				}
			}
		}
		v.close()
	}
	return c
}

// uniqueValues appends a random token to every header value of req but
// Content-Type and Content-Length.
func uniqueValues(r *rand.Rand, req string) string {
	head, body, _ := strings.Cut(req, "\r\n\r\n")
	lines := strings.Split(head, "\r\n")
	for i := 1; i < len(lines); i++ {
		if !strings.HasPrefix(lines[i], "Content-") {
			lines[i] += fmt.Sprintf(" %08x", r.Uint32())
		}
	}
	return strings.Join(lines, "\r\n") + "\r\n\r\n" + body
}

// benchSets compiles the rule sets of the benchmarks once.
var benchSets = map[string]func(tb testing.TB) *rules.Compiled{
	"default": ruletest.DefaultPack,
	"1k":      func(tb testing.TB) *rules.Compiled { return compileRules(tb, string(rulegen.Generate(1000, 0))) },
	"10k":     func(tb testing.TB) *rules.Compiled { return compileRules(tb, string(rulegen.Generate(10000, 0))) },
}

func captureBytes(c *capture) (frames, payload int64) {
	dec := decode.NewDecoder()
	var p decode.Packet
	for _, f := range c.frames {
		frames += int64(len(f.data))
		if dec.Decode(f.data, &p) == nil {
			payload += int64(len(p.Payload))
		}
	}
	return frames, payload
}

// BenchmarkEngine measures the whole engine on one core over the HTTP
// traffic, in Gbit/s of frames and of TCP payload.
func BenchmarkEngine(b *testing.B) { benchEngine(b, httpTraffic(b, 32, 24), "default", "1k", "10k") }

// BenchmarkUniqueValues is BenchmarkEngine/default with no request header
// value repeated (values the engine cannot have seen before).
func BenchmarkUniqueValues(b *testing.B) { benchEngine(b, httpTrafficOf(b, 32, 24, true), "default") }

// benchEngine runs the traffic of c through an engine with each of the
// rule sets sets (benchSets keys).
func benchEngine(b *testing.B, c *capture, sets ...string) {
	frameBytes, payloadBytes := captureBytes(c)
	span := c.now - baseTime
	for _, name := range sets {
		b.Run(name, func(b *testing.B) {
			e, err := New(Config{Rules: benchSets[name](b), Offline: true})
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			var fr dataplane.Frame
			pass := int64(0)
			b.ResetTimer()
			cpu0 := cpuTime()
			for b.Loop() {
				off := pass * span
				for i := range c.frames {
					f := &c.frames[i]
					fr = dataplane.Frame{Data: f.data, Timestamp: f.ts + off, Ingress: f.ingress}
					e.Inspect(0, &fr)
				}
				pass++
			}
			sec := b.Elapsed().Seconds() / float64(b.N)
			b.ReportMetric(float64(frameBytes)*8/sec/1e9, "Gbit/s")
			b.ReportMetric(float64(payloadBytes)*8/sec/1e9, "payload-Gbit/s")
			// The same per second of CPU the process used: on a machine
			// shared with other work, wall time counts the time the
			// benchmark waited for a core.
			b.ReportMetric(float64(payloadBytes)*8/((cpuTime()-cpu0).Seconds()/float64(b.N))/1e9, "payload-Gbit/cpu-s")
			b.ReportMetric(float64(len(c.frames))/sec/1e6, "Mpps")
			st := e.Stats()
			if st.Alerts != 0 || st.Dropped != 0 {
				b.Errorf("benign traffic: %d alerts, %d drops %v", st.Alerts, st.Dropped, st.Drops)
			}
		})
	}
}

// BenchmarkRawHyperscan is the limit the engine is compared with: the
// payload bytes of each direction scanned once, segment by segment, by one
// block database holding every regex that can apply to that direction
// (request fields and payload for the client's bytes; response fields and
// payload.to_client for the server's), without parsing, transforms,
// confirmation or flow tracking.
func BenchmarkRawHyperscan(b *testing.B) {
	c := httpTraffic(b, 32, 24)
	dec := decode.NewDecoder()
	var payloads [2][][]byte
	var payloadBytes int64
	var p decode.Packet
	for _, f := range c.frames {
		if dec.Decode(f.data, &p) == nil && len(p.Payload) > 0 {
			d := 0
			if p.SrcPort == 80 {
				d = 1
			}
			payloads[d] = append(payloads[d], p.Payload)
			payloadBytes += int64(len(p.Payload))
		}
	}
	toClient := func(f rules.Field) bool {
		return f.Kind == rules.FieldHTTPResponseBody || f.Kind == rules.FieldHTTPResponseHeaders || f.Kind == rules.FieldPayloadToClient
	}
	for _, name := range []string{"default", "1k", "10k"} {
		b.Run(name, func(b *testing.B) {
			cs := benchSets[name](b)
			defer cs.Close()
			var dbs [2]hs.DB
			var scs [2]*hs.Scratch
			for d := range 2 {
				var pats hyperscan.Patterns
				for _, g := range cs.Groups {
					if toClient(g.Field) != (d == 1) {
						continue
					}
					for i := range g.Patterns {
						// The expression, not the rule's regex: phrase
						// patterns have none (an empty pattern).
						pt := hyperscan.NewPattern(g.Patterns[i].Expression(), g.Patterns[i].Flags)
						pt.Id = len(pats)
						pats = append(pats, pt)
					}
				}
				db, err := (&hyperscan.DatabaseBuilder{Patterns: pats, Mode: hyperscan.BlockMode}).Build()
				if err != nil {
					b.Fatal(err)
				}
				defer db.Close()
				gs, err := hyperscan.NewScratch(db)
				if err != nil {
					b.Fatal(err)
				}
				defer gs.Free()
				dbs[d], _ = hs.Block(db.(hyperscan.BlockDatabase))
				scs[d], _ = hs.CloneScratch(gs)
				defer scs[d].Free()
			}
			s, _ := hs.NewScanner(0)
			defer s.Close()
			var n nopHandler
			b.ResetTimer()
			for b.Loop() {
				for d := range 2 {
					for _, pl := range payloads[d] {
						_ = s.Scan(dbs[d], scs[d], pl, &n)
					}
				}
			}
			sec := b.Elapsed().Seconds() / float64(b.N)
			b.ReportMetric(float64(payloadBytes)*8/sec/1e9, "payload-Gbit/s")
			b.ReportMetric(float64(n.n)/float64(b.N), "matches/op")
		})
	}
}

// cpuTime is the CPU time (user and system) the process used so far.
func cpuTime() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type nopHandler struct{ n int }

func (h *nopHandler) Match(uint, uint64, uint64) { h.n++ }

// BenchmarkInspectFinal is the per-frame cost for a flow whose verdict is
// final (frames still in flight): decode, flow lookup, the worker lock.
func BenchmarkInspectFinal(b *testing.B) {
	e, err := New(Config{Rules: compileRules(b, "rules:\n  - {id: 1, action: block, dst_port: 80, match: {field: http.uri, regex: x}}\n"), Offline: true})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	c := newCapture(b)
	c.tcp(cli, "198.18.1.1:443").handshake().send(flow.ToServer, strings.Repeat("x", 1400))
	var fr dataplane.Frame
	for i := range c.frames {
		fr = dataplane.Frame{Data: c.frames[i].data, Timestamp: c.frames[i].ts}
		e.Inspect(0, &fr)
	}
	f := &c.frames[3]
	ts := f.ts
	b.ReportAllocs()
	for b.Loop() {
		ts++
		fr = dataplane.Frame{Data: f.data, Timestamp: ts}
		if v := e.Inspect(0, &fr); !v.Final {
			b.Fatal("not final")
		}
	}
}

// BenchmarkWorkerLock is the uncontended lock Inspect takes per frame.
func BenchmarkWorkerLock(b *testing.B) {
	var w worker
	for b.Loop() {
		w.mu.Lock()
		w.mu.Unlock()
	}
}
