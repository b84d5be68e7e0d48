package dpi

import (
	"strings"
	"testing"

	"github.com/deepwall/deepwall/dpi/flow"
	"github.com/deepwall/deepwall/internal/ruletest"

	"github.com/deepwall/deepwall/ctl/eve"
	"github.com/deepwall/deepwall/ctl/eve/evetest"
)

// TestEVESchema validates the events the engine really writes against
// Suricata's EVE JSON schema (ctl/eve/evetest): alerts with their http
// (HTTP/1 and HTTP/2), tls, dns and ssh sections, a masked DLP match, an
// anomaly score naming its rules, drops, and the flow events of every
// flow when the engine flushes. It fails if a scenario stops producing
// the kind of event it is there for.
func TestEVESchema(t *testing.T) {
	var evs []*eve.Event
	_, got, _ := run(t, scoreRules+
		"  - {id: 1, action: alert, match: {field: tls.sni, regex: xample}}\n"+
		"  - {id: 2, action: alert, match: {field: dns.query, regex: example}}\n"+
		"  - {id: 3, action: alert, match: {field: http.response_headers, regex: nginx}}\n"+
		"  - {id: 4, action: alert, match: {field: payload, regex: 'SSH-2.0-evil'}}\n",
		func(c *capture) {
			c.tcp(cli, "198.18.1.1:443").handshake().send(flow.ToServer, string(clientHello("www.Example.org"))).send(flow.ToClient, string(serverHello()))
			q := dnsQuery(9, "WWW.example.org", 28)
			c.udp("198.18.0.1:5353", "198.18.1.53:53", q)
			c.udp("198.18.1.53:53", "198.18.0.1:5353", dnsResponse(q))
			v := c.tcp("198.18.0.1:40001", srv).handshake()
			v.send(flow.ToServer, "GET /x?a=union+select+from HTTP/1.1\r\nHost: shop\r\nUser-Agent: ua/1\r\n\r\n").send(flow.ToClient, "HTTP/1.1 404 Not Found\r\nServer: nginx\r\nContent-Length: 0\r\n\r\n")
			s := c.tcp("198.18.0.1:40002", "198.18.1.1:22").handshake()
			s.send(flow.ToClient, "SSH-2.0-OpenSSH_9.6\r\n").send(flow.ToServer, "SSH-2.0-evil_1\r\n")
		})
	evs = append(evs, got...)

	h := newHarness(t, ruletest.DefaultPack(t), Config{})
	for _, parts := range [][][]byte{
		h1(h2Request{method: "GET", path: "/?id=1%20UNION%20SELECT%20password%20FROM%20users"}),
		h1(h2Request{method: "GET", path: "/account", resp: "<p>Card on file: 4111 1111 1111 1111</p>"}),
		h2(t, h2Request{method: "GET", path: "/../../etc/passwd"}),
		h2(t, h2Request{method: "POST", path: "/api/items", headers: [][2]string{{"content-type", "application/json"}}, body: `{"note":"1 UNION SELECT password FROM users"}`}),
	} {
		_, got := runConv(t, h, parts...)
		evs = append(evs, got...)
	}
	// A retransmission with other bytes: a drop no rule explains.
	c := newCapture(t)
	v := c.tcp("198.18.0.17:41007", "198.18.1.5:80").handshake()
	v.segment(flow.ToServer, 0, "GET /index.html HTT")
	v.segment(flow.ToServer, 0, "GET /admin/../../..")
	h.run(c)
	h.e.Flush()
	evs = append(evs, h.take()...)

	seen := map[string]bool{}
	for _, ev := range evs {
		seen[string(ev.EventType)] = true
		for name, ok := range map[string]bool{
			"http": ev.HTTP != nil, "http2": ev.HTTP != nil && ev.HTTP.StreamID != 0, "tls": ev.TLS != nil,
			"dns": ev.DNS != nil, "ssh": ev.SSH != nil, "score": ev.Alert != nil && len(ev.Alert.Rules) > 0,
			"masked": ev.Alert != nil && strings.Contains(ev.Alert.Matched, "*"),
		} {
			seen[name] = seen[name] || ok
		}
	}
	for _, want := range []string{"alert", "drop", "flow", "http", "http2", "tls", "dns", "ssh", "score", "masked"} {
		if !seen[want] {
			t.Errorf("no %s event among the %d the scenarios made", want, len(evs))
		}
	}
	evetest.Check(t, evs)
}

func h1(r h2Request) [][]byte {
	c2s, s2c := h1Bytes(r)
	return [][]byte{c2s, s2c}
}

func h2(tb testing.TB, r h2Request) [][]byte {
	c2s, s2c := h2Bytes(tb, r)
	return [][]byte{c2s, s2c}
}
