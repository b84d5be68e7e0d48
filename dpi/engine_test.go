package dpi

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dpi/flow"

	"github.com/deepwall/deepwall/ctl/eve"
)

const (
	cli    = "198.18.0.1:40000"
	srv    = "198.18.1.1:80"
	getReq = "GET /index.html HTTP/1.1\r\nHost: shop\r\nUser-Agent: curl/8\r\n\r\n"
	okResp = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
)

// outcome summarises what an engine did with a capture.
type outcome struct {
	alerts  []string // "action:sid" in order
	blocked bool     // some frame got Drop+Final, or an HTTP/2 stream was reset (rewritten)
	resets  int      // frames rewritten to reset an HTTP/2 stream
	final   bool     // some frame got Forward+Final
	drops   int      // frames dropped
}

func run(t *testing.T, rulesYAML string, build func(c *capture)) (outcome, []*eve.Event, *harness) {
	t.Helper()
	h := newHarness(t, compileRules(t, rulesYAML), Config{})
	c := newCapture(t)
	build(c)
	var o outcome
	for _, v := range h.run(c) {
		switch {
		case v.Action == dataplane.Drop && v.Final:
			o.blocked = true
			o.drops++
		case v.Action == dataplane.Drop:
			o.drops++
		case v.Final:
			o.final = true
		}
	}
	evs := h.take()
	o.alerts = alerts(evs)
	return o, evs, h
}

func httpConv(req, resp string) func(c *capture) {
	return func(c *capture) {
		v := c.tcp(cli, srv).handshake()
		v.send(flow.ToServer, req)
		if resp != "" {
			v.send(flow.ToClient, resp)
		}
	}
}

func block(id, field, regex string, extra ...string) string {
	return "  - {id: " + id + ", action: block, match: {field: " + field + ", regex: '" + regex + "'" + strings.Join(extra, "") + "}}\n"
}

// TestFields checks every field of the rule format end to end.
func TestFields(t *testing.T) {
	body := "name=x&q=select+password+from+users"
	post := "POST /form HTTP/1.1\r\nHost: shop\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: " + itoa(uint32(len(body))) + "\r\n\r\n" + body
	chunked := "POST /up HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n\r\n8\r\nselect p\r\n10\r\nassword from use\r\n2\r\nrs\r\n0\r\n\r\n"
	tests := []struct {
		name   string
		rules  string
		build  func(c *capture)
		alerts []string
		block  bool
	}{
		{"http.method", block("1", "http.method", "^TRACE$"), httpConv("TRACE / HTTP/1.1\r\nHost: a\r\n\r\n", ""), []string{"blocked:1"}, true},
		{"http.uri", block("1", "http.uri", "/etc/passwd"), httpConv("GET /x?f=/etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n", ""), []string{"blocked:1"}, true},
		{"http.path normalised", block("1", "http.path", "^/admin"), httpConv("GET /public/../admin HTTP/1.1\r\nHost: a\r\n\r\n", ""), []string{"blocked:1"}, true},
		{"http.args decoded", block("1", "http.args", "union\\s+select", ", flags: [caseless]"), httpConv(req, ""), []string{"blocked:1"}, true},
		{"http.headers", block("1", "http.headers", "(?m)^X-Evil: 1"), httpConv("GET / HTTP/1.1\r\nHost: a\r\nX-Evil: 1\r\n\r\n", ""), []string{"blocked:1"}, true},
		{"http.header.name", block("1", "http.header.x-api-key", "^test_"), httpConv("GET / HTTP/1.1\r\nHost: a\r\nX-API-Key: test_123\r\n\r\n", ""), []string{"blocked:1"}, true},
		{"http.header other name", block("1", "http.header.x-api-key", "^test_"), httpConv("GET / HTTP/1.1\r\nHost: a\r\nX-Other: test_123\r\n\r\n", ""), nil, false},
		{"http.response_headers", block("1", "http.response_headers", "(?i)set-cookie: debug="), httpConv(getReq, "HTTP/1.1 200 OK\r\nSet-Cookie: debug=1\r\nContent-Length: 0\r\n\r\n"), []string{"blocked:1"}, true},
		{"http.body split", block("1", "http.body", "select\\s+password\\s+from", ", transforms: [url_decode]"), func(c *capture) {
			c.tcp(cli, srv).handshake().sendSplit(flow.ToServer, post, len(post)-30, len(post)-17, len(post)-5)
		}, []string{"blocked:1"}, true},
		{"http.body chunked", block("1", "http.body", "select\\s+password\\s+from\\s+users"), func(c *capture) {
			c.tcp(cli, srv).handshake().sendSplit(flow.ToServer, chunked, 60, 75)
		}, []string{"blocked:1"}, true},
		{"http.response_body", block("1", "http.response_body", "hel+o"), httpConv(getReq, okResp), []string{"blocked:1"}, true},
		{"tls.sni", block("1", "tls.sni", "(?i)evil\\.example$"), func(c *capture) {
			c.tcp(cli, "198.18.1.1:443").handshake().send(flow.ToServer, string(clientHello("www.EVIL.example")))
		}, []string{"blocked:1"}, true},
		{"tls.sni other", block("1", "tls.sni", "evil\\.example$"), func(c *capture) {
			c.tcp(cli, "198.18.1.1:443").handshake().send(flow.ToServer, string(clientHello("good.example")))
		}, nil, false},
		{"dns.query udp", block("1", "dns.query", "tunnel\\.example$"), func(c *capture) {
			c.udp("198.18.0.1:5353", "198.18.1.53:53", dnsQuery(7, "x1.TUNNEL.example", 1))
		}, []string{"blocked:1"}, true},
		{"dns.query tcp", block("1", "dns.query", "tunnel\\.example$"), func(c *capture) {
			q := dnsQuery(7, "x1.tunnel.example", 16)
			c.tcp(cli, "198.18.1.53:53").handshake().send(flow.ToServer, string(append(u16(len(q)), q...)))
		}, []string{"blocked:1"}, true},
		{"payload split", block("1", "payload", "SECRET-CMD"), func(c *capture) {
			c.tcp(cli, "198.18.1.1:7000").handshake().sendSplit(flow.ToServer, "hello SECRET-CMD now", 10, 13)
		}, []string{"blocked:1"}, true},
		{"payload.to_client", block("1", "payload.to_client", "BANNER-X"), func(c *capture) {
			c.tcp(cli, "198.18.1.1:7000").handshake().send(flow.ToServer, "hi").sendSplit(flow.ToClient, "xxBANNER-Xyy", 5)
		}, []string{"blocked:1"}, true},
		{"payload not to_client", block("1", "payload", "BANNER-X"), func(c *capture) {
			c.tcp(cli, "198.18.1.1:7000").handshake().send(flow.ToServer, "hi").send(flow.ToClient, "xxBANNER-Xyy")
		}, nil, false},
		{"payload udp", block("1", "payload", "^PING [0-9]+$"), func(c *capture) {
			c.udp("198.18.0.1:9999", "198.18.1.1:9999", []byte("PING 42"))
		}, []string{"blocked:1"}, true},
		{"detect sqli", "  - {id: 1, action: block, match: {field: http.args, detect: sqli, transforms: [url_decode]}}\n", httpConv("GET /?id=1%27%20OR%20%271%27%3D%271 HTTP/1.1\r\nHost: a\r\n\r\n", ""), []string{"blocked:1"}, true},
		{"detect xss body", "  - {id: 1, action: block, match: {field: http.body, detect: xss}}\n", func(c *capture) {
			b := "c=<script>alert(1)</script>"
			c.tcp(cli, srv).handshake().send(flow.ToServer, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: "+itoa(uint32(len(b)))+"\r\n\r\n"+b)
		}, []string{"blocked:1"}, true},
		{"validate luhn", "  - {id: 1, action: alert, category: dlp, match: {field: http.response_body, regex: '\\b(?:\\d[ -]?){13,16}\\b', validate: luhn}}\n",
			httpConv(getReq, "HTTP/1.1 200 OK\r\nContent-Length: 45\r\n\r\norder 1234567812345678, card 4111111111111111"), []string{"allowed:1"}, false},
		{"validate luhn miss", "  - {id: 1, action: alert, category: dlp, match: {field: http.response_body, regex: '\\b(?:\\d[ -]?){13,16}\\b', validate: luhn}}\n",
			httpConv(getReq, "HTTP/1.1 200 OK\r\nContent-Length: 23\r\n\r\norder 1234567812345678."), nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, evs, h := run(t, "rules:\n"+tc.rules, tc.build)
			if !slices.Equal(o.alerts, tc.alerts) || o.blocked != tc.block {
				dumpEvents(t, evs)
				t.Errorf("alerts %v blocked %v, want %v %v", o.alerts, o.blocked, tc.alerts, tc.block)
			}
			for _, ev := range evs {
				if ev.EventType == eve.EventAlert && (ev.Alert.Field == "" || ev.FlowID == 0) {
					t.Errorf("alert without field or flow id: %+v", ev.Alert)
				}
			}
			h.e.Flush()
			if s := h.e.Stats(); s.OpenStreams != 0 || s.Flows != 0 {
				t.Errorf("after flush: %d streams, %d flows", s.OpenStreams, s.Flows)
			}
		})
	}
}

const req = "GET /search?q=1%27%20union%20select%20password%20from%20users HTTP/1.1\r\nHost: shop\r\nUser-Agent: curl/8\r\n\r\n"

// TestSemantics checks the rule semantics: ACL first match, any block
// wins, allow exemptions, alerts, app_proto conditions.
func TestSemantics(t *testing.T) {
	sqli := block("100", "http.args", "union\\s+select", ", flags: [caseless]")
	tests := []struct {
		name   string
		rules  string
		build  func(c *capture)
		alerts []string
		block  bool
	}{
		{"acl first match allows", "  - {id: 1, action: allow, proto: tcp, dst: 198.18.1.1/32, dst_port: 80}\n  - {id: 2, action: block, proto: tcp, dst_port: 80}\n",
			httpConv(getReq, okResp), nil, false},
		{"acl first match blocks", "  - {id: 2, action: block, proto: tcp, dst_port: 80}\n  - {id: 1, action: allow, proto: tcp, dst: 198.18.1.1/32, dst_port: 80}\n",
			httpConv(getReq, okResp), []string{"blocked:2"}, true},
		{"acl default block", "acl_default: block\nrules:\n  - {id: 1, action: allow, proto: tcp, dst_port: 443}\n",
			httpConv(getReq, okResp), nil, true},
		{"any block wins", "  - {id: 10, action: alert, match: {field: http.uri, regex: 'search'}}\n" + sqli + "  - {id: 11, action: alert, match: {field: http.method, regex: 'GET'}}\n",
			httpConv(req, ""), []string{"allowed:10", "blocked:100", "allowed:11"}, true},
		{"allow exempts rules below", "  - {id: 5, action: allow, match: {field: http.header.host, regex: '^shop$'}}\n" + sqli,
			httpConv(req, okResp), nil, false},
		{"allow does not exempt rules above", sqli + "  - {id: 5, action: allow, match: {field: http.header.host, regex: '^shop$'}}\n",
			httpConv(req, ""), []string{"blocked:100"}, true},
		{"allow exemption is per transaction", "  - {id: 5, action: allow, match: {field: http.path, regex: '^/health$'}}\n" + sqli,
			func(c *capture) {
				v := c.tcp(cli, srv).handshake()
				v.send(flow.ToServer, "GET /health?x=union+select HTTP/1.1\r\nHost: a\r\n\r\n").send(flow.ToClient, okResp)
				v.send(flow.ToServer, req)
			}, []string{"blocked:100"}, true},
		{"alert only", "  - {id: 7, action: alert, severity: low, match: {field: http.uri, regex: 'index'}}\n",
			httpConv(getReq, okResp), []string{"allowed:7"}, false},
		{"alert on addresses", "  - {id: 8, action: alert, proto: tcp, dst_port: 80}\n",
			httpConv(getReq, okResp), []string{"allowed:8"}, false},
		{"app_proto_not blocks tls on 80", "  - {id: 9, action: block, dst_port: 80, app_proto_not: http}\n",
			func(c *capture) { c.tcp(cli, srv).handshake().send(flow.ToServer, string(clientHello("a.example"))) }, []string{"blocked:9"}, true},
		{"app_proto_not passes http on 80", "  - {id: 9, action: block, dst_port: 80, app_proto_not: http}\n",
			httpConv(getReq, okResp), nil, false},
		{"app_proto payload rule waits for identification", "  - {id: 3, action: block, app_proto: ssh, match: {field: payload, regex: 'SSH-2\\.0-evil'}}\n",
			func(c *capture) {
				c.tcp(cli, "198.18.1.1:22").handshake().send(flow.ToServer, "SSH-2.0-evil_1.0\r\n")
			}, []string{"blocked:3"}, true},
		{"app_proto payload rule other app", "  - {id: 3, action: block, app_proto: ssh, match: {field: payload, regex: 'evil'}}\n",
			httpConv("GET /evil HTTP/1.1\r\nHost: a\r\n\r\n", ""), nil, false},
		{"rule on other server", "  - {id: 4, action: block, dst: 198.18.9.9, match: {field: http.uri, regex: 'index'}}\n",
			httpConv(getReq, okResp), nil, false},
		{"src names the client for responses", "  - {id: 4, action: block, src: 198.18.0.1, match: {field: http.response_body, regex: 'hello'}}\n",
			httpConv(getReq, okResp), []string{"blocked:4"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.rules
			if !strings.HasPrefix(r, "acl_default") {
				r = "rules:\n" + r
			}
			o, evs, _ := run(t, r, tc.build)
			if !slices.Equal(o.alerts, tc.alerts) || o.blocked != tc.block {
				dumpEvents(t, evs)
				t.Errorf("alerts %v blocked %v, want %v %v", o.alerts, o.blocked, tc.alerts, tc.block)
			}
		})
	}
}

// TestDLPMasking checks that secrets never appear in events.
func TestDLPMasking(t *testing.T) {
	const card = "4111111111111111"
	const jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
	rules := `rules:
  - {id: 5001, name: card, action: alert, category: dlp, match: {field: http.response_body, regex: '\b(?:\d[ -]?){13,16}\b', validate: luhn}}
  - {id: 5008, name: jwt in url, action: alert, category: dlp, match: {field: http.args, regex: '\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{10,}', validate: jwt}}
  - {id: 20, name: token param, action: alert, match: {field: http.args, regex: 'token='}}
  - {id: 21, name: charged, action: alert, match: {field: http.response_body, regex: 'charged'}}
  - {id: 22, name: charged raw, action: alert, match: {field: payload.to_client, regex: 'charged'}}
`
	body := "your card " + card + " was charged"
	o, evs, _ := run(t, rules, httpConv("GET /cb?token="+jwt+"&x=1 HTTP/1.1\r\nHost: a\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: "+itoa(uint32(len(body)))+"\r\n\r\n"+body))
	if !slices.Equal(o.alerts, []string{"allowed:5008", "allowed:20", "allowed:22", "allowed:5001", "allowed:21"}) {
		dumpEvents(t, evs)
		t.Fatalf("alerts %v", o.alerts)
	}
	for _, ev := range evs {
		b, _ := json.Marshal(ev)
		for _, secret := range []string{card, jwt, jwt[:40], jwt[len(jwt)-40:], card[2:14]} {
			if strings.Contains(string(b), secret) {
				t.Errorf("event leaks %q: %s", secret, b)
			}
		}
		if ev.EventType == eve.EventAlert && ev.Alert.SignatureID == 5001 && ev.Alert.Matched != "4111********1111" {
			t.Errorf("card masked as %q", ev.Alert.Matched)
		}
		if ev.EventType == eve.EventAlert && ev.HTTP != nil && !strings.HasPrefix(ev.HTTP.URL, "/cb?") {
			t.Errorf("url %q: the path should stay readable", ev.HTTP.URL)
		}
	}
}

// TestFinal checks when a flow's verdict becomes final: the index of the
// first frame whose verdict is final (-1: none).
func TestFinal(t *testing.T) {
	httpRule := block("1", "http.uri", "attack")
	payloadRule := block("2", "payload", "attack")
	tests := []struct {
		name  string
		rules string
		cfg   Config
		build func(c *capture) int
	}{
		{"no rule for the port", "  - {id: 1, action: block, dst_port: 80, match: {field: http.uri, regex: x}}\n", Config{NoIdentify: true}, func(c *capture) int {
			c.tcp(cli, "198.18.1.1:443").handshake()
			return 0 // the SYN
		}},
		{"no rule for the port, identified", "  - {id: 1, action: block, dst_port: 80, match: {field: http.uri, regex: x}}\n", Config{}, func(c *capture) int {
			v := c.tcp(cli, "198.18.1.1:443").handshake()
			n := len(c.frames)
			v.send(flow.ToClient, "SSH-2.0-OpenSSH_9.6\r\n")
			return n
		}},
		{"udp without udp rules, identified", httpRule, Config{}, func(c *capture) int {
			c.udp("198.18.0.1:5353", "198.18.1.53:53", dnsQuery(1, "a.example", 1))
			return 0
		}},
		{"udp without udp rules", httpRule, Config{NoIdentify: true}, func(c *capture) int {
			c.udp("198.18.0.1:5353", "198.18.1.53:53", dnsQuery(1, "a.example", 1))
			return 0
		}},
		{"icmp", httpRule, Config{}, func(c *capture) int {
			c.add(icmpEcho(), dataplane.Inner, "ping")
			return 0
		}},
		{"http stays inspected", httpRule, Config{}, func(c *capture) int {
			v := c.tcp(cli, srv).handshake()
			v.send(flow.ToServer, getReq).send(flow.ToClient, okResp).close()
			return -1
		}},
		{"http without http rules", block("3", "tls.sni", "^evil$"), Config{}, func(c *capture) int {
			v := c.tcp(cli, srv).handshake()
			n := len(c.frames)
			v.send(flow.ToServer, getReq)
			return n
		}},
		{"tls after the client hello", block("3", "tls.sni", "^evil$") + httpRule, Config{}, func(c *capture) int {
			v := c.tcp(cli, "198.18.1.1:443").handshake()
			n := len(c.frames)
			v.send(flow.ToServer, string(clientHello("a.example"))).send(flow.ToClient, string(serverHello()))
			return n
		}},
		{"tls with payload rules", block("3", "tls.sni", "^evil$") + payloadRule, Config{}, func(c *capture) int {
			v := c.tcp(cli, "198.18.1.1:443").handshake()
			v.send(flow.ToServer, string(clientHello("a.example"))).send(flow.ToClient, string(serverHello()))
			return -1
		}},
		{"ssh at identification", httpRule, Config{}, func(c *capture) int {
			v := c.tcp(cli, "198.18.1.1:22").handshake()
			n := len(c.frames)
			v.send(flow.ToClient, "SSH-2.0-OpenSSH_9.6\r\n")
			return n
		}},
		{"undecided protocol stays", httpRule, Config{}, func(c *capture) int {
			v := c.tcp(cli, "198.18.1.1:7000").handshake()
			v.send(flow.ToServer, "\x00\x01")
			return -1
		}},
		{"depth in both directions", payloadRule, Config{Depth: 100}, func(c *capture) int {
			v := c.tcp(cli, "198.18.1.1:7000").handshake()
			v.send(flow.ToServer, strings.Repeat("a", 150))
			n := len(c.frames)
			v.send(flow.ToClient, strings.Repeat("b", 150))
			return n
		}},
		{"exempting allow", "  - {id: 9, action: allow, dst_port: 80, app_proto: http}\n" + httpRule, Config{}, func(c *capture) int {
			v := c.tcp(cli, srv).handshake()
			n := len(c.frames)
			v.send(flow.ToServer, "GET /attack HTTP/1.1\r\nHost: a\r\n\r\n")
			return n
		}},
		{"allow below the rules exempts nothing", httpRule + "  - {id: 9, action: allow, dst_port: 80, app_proto: http}\n", Config{}, func(c *capture) int {
			v := c.tcp(cli, srv).handshake()
			v.send(flow.ToServer, getReq)
			return -1
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, compileRules(t, "rules:\n"+tc.rules), tc.cfg)
			c := newCapture(t)
			want := tc.build(c)
			got := -1
			for i, v := range h.run(c) {
				if v.Final && got < 0 {
					got = i
					if v.Action != dataplane.Forward {
						t.Errorf("frame %d: final %v", i, v)
					}
				}
			}
			if got != want {
				dumpEvents(t, h.take())
				t.Errorf("first final frame %d (%s), want %d", got, label(c, got), want)
			}
		})
	}
}

func label(c *capture, i int) string {
	if i < 0 || i >= len(c.frames) {
		return "none"
	}
	return c.frames[i].label
}

// sectionRules alert on a field of each protocol section of events
// (tls, dns, http, ssh); sectionConvs has a conversation for each, its
// HTTP request for path.
const sectionRules = "  - {id: 1, action: alert, match: {field: tls.sni, regex: xample}}\n" +
	"  - {id: 2, action: alert, match: {field: dns.query, regex: example}}\n" +
	"  - {id: 3, action: alert, match: {field: http.response_headers, regex: nginx}}\n" +
	"  - {id: 4, action: alert, match: {field: payload, regex: 'SSH-2.0-evil'}}\n"

func sectionConvs(c *capture, path string) {
	c.tcp(cli, "198.18.1.1:443").handshake().send(flow.ToServer, string(clientHello("www.Example.org"))).send(flow.ToClient, string(serverHello()))
	q := dnsQuery(9, "WWW.example.org", 28)
	c.udp("198.18.0.1:5353", "198.18.1.53:53", q)
	c.udp("198.18.1.53:53", "198.18.0.1:5353", dnsResponse(q))
	v := c.tcp("198.18.0.1:40001", srv).handshake()
	v.send(flow.ToServer, "GET "+path+" HTTP/1.1\r\nHost: shop\r\nUser-Agent: ua/1\r\n\r\n").send(flow.ToClient, "HTTP/1.1 404 Not Found\r\nServer: nginx\r\nContent-Length: 0\r\n\r\n")
	s := c.tcp("198.18.0.1:40002", "198.18.1.1:22").handshake()
	s.send(flow.ToClient, "SSH-2.0-OpenSSH_9.6\r\n").send(flow.ToServer, "SSH-2.0-evil_1\r\n")
}

// TestEventSections checks the protocol sections of alert events.
func TestEventSections(t *testing.T) {
	_, evs, _ := run(t, "rules:\n"+sectionRules, func(c *capture) { sectionConvs(c, "/x?a=1") })
	got := map[uint32]*eve.Event{}
	for _, ev := range evs {
		if ev.EventType == eve.EventAlert {
			got[ev.Alert.SignatureID] = ev
		}
	}
	if ev := got[1]; ev == nil || ev.TLS == nil || ev.TLS.SNI != "www.Example.org" || ev.TLS.Version != "TLS 1.3" || ev.AppProto != "tls" {
		t.Errorf("tls alert %+v", ev)
	}
	if ev := got[2]; ev == nil || ev.DNS == nil || ev.DNS.RRName != "www.example.org" || ev.DNS.RRType != "AAAA" || ev.DNS.Type != "query" || ev.Proto != "UDP" || ev.AppProto != "dns" {
		t.Errorf("dns alert %+v", ev)
	}
	if ev := got[3]; ev == nil || ev.HTTP == nil || ev.HTTP.Status != 404 || ev.HTTP.URL != "/x?a=1" || ev.HTTP.UserAgent != "ua/1" || ev.Direction != "to_client" || ev.SrcPort != 80 {
		t.Errorf("http alert %+v %+v", ev, ev.HTTP)
	}
	if ev := got[4]; ev == nil || ev.SSH == nil || ev.SSH.Server == nil || ev.SSH.Server.SoftwareVersion != "OpenSSH_9.6" || ev.AppProto != "ssh" {
		t.Errorf("ssh alert %+v", ev)
	}
}

func TestScrub(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"no digits", "no digits"},
		{"order 12345 ok", "order 12345 ok"},
		{"card 4111 1111 1111 1111 charged", "card 4111 **** **** 1111 charged"},
		{"4111111111111111", "4111********1111"},
		{"a 123456789012-b 1234567890123", "a 1234****9012-b 1234*****0123"},
		{"phone 555-123-4567", "phone 555-123-4567"},
	} {
		if got := scrub([]byte(tc.in)); got != tc.want {
			t.Errorf("scrub(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
