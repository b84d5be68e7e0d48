package dpi

import (
	"slices"
	"strings"
	"testing"

	"github.com/deepwall/deepwall/dpi/flow"
)

func postConv(ct, body string) func(c *capture) {
	return httpConv("POST /submit?lang=en HTTP/1.1\r\nHost: shop\r\nContent-Type: "+ct+"\r\nContent-Length: "+itoa(uint32(len(body)))+"\r\n\r\n"+body, "")
}

// TestValueFields checks the per-value fields, condition lists, phrases,
// negation, counts and except: end to end through the engine.
func TestValueFields(t *testing.T) {
	mp := "--XyZ\r\nContent-Disposition: form-data; name=\"comment\"\r\n\r\nhello <script>\r\n--XyZ\r\nContent-Disposition: form-data; name=\"upload\"; filename=\"shell.php\"\r\nContent-Type: application/x-php\r\n\r\n<?php system($_GET['c']); ?>\r\n--XyZ--\r\n"
	cookieReq := "GET / HTTP/1.1\r\nHost: a\r\nCookie: theme=dark; sid=../../etc/passwd\r\nCookie: b=2\r\n\r\n"
	tests := []struct {
		name   string
		rules  string
		build  func(c *capture)
		alerts []string
	}{
		{"http.arg query anchored", block("1", "http.arg", "^admin$"), httpConv("GET /?user=admin&x=1 HTTP/1.1\r\nHost: a\r\n\r\n", ""), []string{"blocked:1"}},
		{"http.arg anchored miss", block("1", "http.arg", "^admin$"), httpConv("GET /?user=xadmin HTTP/1.1\r\nHost: a\r\n\r\n", ""), nil},
		{"http.arg form body", block("1", "http.arg", "^1 or 1=1$"), postConv("application/x-www-form-urlencoded", "a=b&q=1+or+1%3D1"), []string{"blocked:1"}},
		{"http.arg json body", block("1", "http.arg", "^drop table$"), postConv("application/json", `{"a":{"b":["x","drop table"]},"n":1}`), []string{"blocked:1"}},
		{"http.arg_name json", block("1", "http.arg_name", `^json\.user\.role$`), postConv("application/json", `{"user":{"role":"admin"}}`), []string{"blocked:1"}},
		{"http.arg multipart", block("1", "http.arg", "<script"), postConv("multipart/form-data; boundary=XyZ", mp), []string{"blocked:1"}},
		{"http.file multipart", block("1", "http.file", "\\.php$"), postConv("multipart/form-data; boundary=\"XyZ\"", mp), []string{"blocked:1"}},
		{"http.file_field", block("1", "http.file_field", "^upload$"), postConv("multipart/form-data; boundary=XyZ", mp), []string{"blocked:1"}},
		{"http.part_header", block("1", "http.part_header", "(?i)^content-type: application/x-php"), postConv("multipart/form-data; boundary=XyZ", mp), []string{"blocked:1"}},
		{"file content is not an arg", block("1", "http.arg", "system\\("), postConv("multipart/form-data; boundary=XyZ", mp), nil},
		{"http.cookie", block("1", "http.cookie", "\\.\\./"), httpConv(cookieReq, ""), []string{"blocked:1"}},
		{"http.cookie_name", block("1", "http.cookie_name", "^b$"), httpConv(cookieReq, ""), []string{"blocked:1"}},
		{"http.header_value", block("1", "http.header_value", "^evil$"), httpConv("GET / HTTP/1.1\r\nHost: a\r\nX-A: evil\r\n\r\n", ""), []string{"blocked:1"}},
		{"http.header_value except", "  - {id: 1, action: block, match: {field: http.header_value, regex: '^evil$', except: [x-a]}}\n",
			httpConv("GET / HTTP/1.1\r\nHost: a\r\nX-A: evil\r\n\r\n", ""), nil},
		{"http.header_name", block("1", "http.header_name", "(?i)^x-forwarded-host$"), httpConv("GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-Host: b\r\n\r\n", ""), []string{"blocked:1"}},
		{"http.header every value", block("1", "http.header.x-a", "^two$"), httpConv("GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\nX-A: two\r\n\r\n", ""), []string{"blocked:1"}},
		{"http.filename decoded once", block("1", "http.filename", "^/a%2e/b c$"), httpConv("GET /a%252e/b%20c?x HTTP/1.1\r\nHost: a\r\n\r\n", ""), []string{"blocked:1"}},
		{"http.basename", block("1", "http.basename", "^index\\.bak$"), httpConv("GET /www/index.bak?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", ""), []string{"blocked:1"}},
		{"http.request_line", block("1", "http.request_line", "^GET /x HTTP/1\\.0$"), httpConv("GET /x HTTP/1.0\r\nHost: a\r\n\r\n", ""), []string{"blocked:1"}},
		{"http.protocol", block("1", "http.protocol", "^HTTP/1\\.0$"), httpConv("GET /x HTTP/1.0\r\nHost: a\r\n\r\n", ""), []string{"blocked:1"}},
		{"http.query raw", block("1", "http.query", "%27"), httpConv("GET /x?a=%27 HTTP/1.1\r\nHost: a\r\n\r\n", ""), []string{"blocked:1"}},
		{"http.status", block("1", "http.status", "^5\\d\\d$"), httpConv(getReq, "HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"), []string{"blocked:1"}},
		{"http.response_header_value", block("1", "http.response_header_value", "^PHP/5"), httpConv(getReq, "HTTP/1.1 200 OK\r\nX-Powered-By: PHP/5.2\r\nContent-Length: 0\r\n\r\n"), []string{"blocked:1"}},
		{"phrases", "  - {id: 1, action: block, match: {field: http.header.user-agent, phrases: [nikto, sqlmap], flags: [caseless]}}\n",
			httpConv("GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: Mozilla SQLMap/1.5\r\n\r\n", ""), []string{"blocked:1"}},
		{"phrases miss", "  - {id: 1, action: block, match: {field: http.header.user-agent, phrases: [nikto, sqlmap]}}\n",
			httpConv("GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: curl\r\n\r\n", ""), nil},
		{"chain both hold", "  - id: 1\n    action: block\n    match:\n      - {field: http.method, regex: '^POST$'}\n      - {field: http.arg, regex: '^x$'}\n",
			postConv("application/x-www-form-urlencoded", "a=x"), []string{"blocked:1"}},
		{"chain one holds", "  - id: 1\n    action: block\n    match:\n      - {field: http.method, regex: '^PUT$'}\n      - {field: http.arg, regex: '^x$'}\n",
			postConv("application/x-www-form-urlencoded", "a=x"), nil},
		{"count zero", "  - id: 1\n    action: block\n    match:\n      - {field: http.method, regex: '^GET$'}\n      - {field: http.header.accept, count: '== 0'}\n",
			httpConv("GET / HTTP/1.1\r\nHost: a\r\n\r\n", ""), []string{"blocked:1"}},
		{"count not zero", "  - id: 1\n    action: block\n    match:\n      - {field: http.method, regex: '^GET$'}\n      - {field: http.header.accept, count: '== 0'}\n",
			httpConv("GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n", ""), nil},
		{"count args with body", "  - {id: 1, action: block, match: {field: http.arg, count: '> 2'}}\n",
			postConv("application/x-www-form-urlencoded", "a=1&b=2"), []string{"blocked:1"}},
		{"not regex holds", "  - {id: 1, action: block, match: {field: http.header.content-type, regex: '^application/(json|xml)', not: true}}\n",
			postConv("text/x-evil", "x"), []string{"blocked:1"}},
		{"not regex fails", "  - {id: 1, action: block, match: {field: http.header.content-type, regex: '^application/(json|xml)', not: true}}\n",
			postConv("application/json", "{}"), nil},
		{"detect sqli on http.arg", "  - {id: 1, action: block, match: {field: http.arg, detect: sqli}}\n",
			postConv("application/x-www-form-urlencoded", "q=1'+or+'1'%3D'1"), []string{"blocked:1"}},
		{"multi_match", "  - {id: 1, action: block, match: {field: http.arg, regex: '^%41$', transforms: [url_decode], multi_match: true}}\n",
			httpConv("GET /?a=%2541 HTTP/1.1\r\nHost: a\r\n\r\n", ""), []string{"blocked:1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, evs, h := run(t, "rules:\n"+tc.rules, tc.build)
			if !slices.Equal(o.alerts, tc.alerts) || o.blocked != (len(tc.alerts) > 0) {
				dumpEvents(t, evs)
				t.Errorf("alerts %v blocked %v, want %v", o.alerts, o.blocked, tc.alerts)
			}
			h.e.Flush()
			if s := h.e.Stats(); s.OpenStreams != 0 || s.Flows != 0 {
				t.Errorf("after flush: %d streams, %d flows", s.OpenStreams, s.Flows)
			}
		})
	}
}

const scoreRules = `rules:
  - {id: 10, action: alert, score: 3, match: {field: http.arg, regex: 'union'}}
  - {id: 11, action: alert, score: 3, match: {field: http.arg, regex: 'select'}}
  - {id: 12, action: alert, score: 5, paranoia: 2, match: {field: http.arg, regex: 'from'}}
  - {id: 20, action: alert, score: 4, match: {field: http.response_body, regex: 'SQL syntax'}}
  - {id: 949110, action: block, name: inbound anomaly, anomaly: {direction: inbound, threshold: 5}}
  - {id: 959100, action: block, name: outbound anomaly, anomaly: {direction: outbound, threshold: 4}}
`

// TestAnomalyScore checks CRS-style scoring: scored rules add up per
// transaction, the threshold rule blocks with one event naming them,
// paranoia levels filter rules, and scores do not leak between
// transactions of one connection.
func TestAnomalyScore(t *testing.T) {
	tests := []struct {
		name, pl   string
		build      func(c *capture)
		alerts     []string
		score      int
		contrib    []uint32
		scoreEvent bool
	}{
		{"below threshold", "", httpConv("GET /?q=union HTTP/1.1\r\nHost: a\r\n\r\n", ""), nil, 0, nil, false},
		{"reaches threshold", "", httpConv("GET /?q=union+select HTTP/1.1\r\nHost: a\r\n\r\n", ""), []string{"blocked:949110"}, 6, []uint32{10, 11}, false},
		{"score events", "", httpConv("GET /?q=union+select HTTP/1.1\r\nHost: a\r\n\r\n", ""), []string{"allowed:10", "allowed:11", "blocked:949110"}, 6, []uint32{10, 11}, true},
		{"paranoia 1 skips 12", "", httpConv("GET /?q=from HTTP/1.1\r\nHost: a\r\n\r\n", ""), nil, 0, nil, false},
		{"paranoia 2", "paranoia_level: 2\n", httpConv("GET /?q=from HTTP/1.1\r\nHost: a\r\n\r\n", ""), []string{"blocked:949110"}, 5, []uint32{12}, false},
		{"query and body add up", "", postConv("application/x-www-form-urlencoded", "b=select"), nil, 0, nil, false},
		{"query and body add up 2", "", httpConv("POST /?a=union HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 8\r\n\r\nb=select", ""), []string{"blocked:949110"}, 6, []uint32{10, 11}, false},
		{"per transaction", "", func(c *capture) {
			v := c.tcp(cli, srv).handshake()
			v.send(flow.ToServer, "GET /?q=union HTTP/1.1\r\nHost: a\r\n\r\n")
			v.send(flow.ToClient, okResp)
			v.send(flow.ToServer, "GET /?q=select HTTP/1.1\r\nHost: a\r\n\r\n")
			v.send(flow.ToClient, okResp)
		}, nil, 0, nil, false},
		{"outbound", "", httpConv(getReq, "HTTP/1.1 500 Oops\r\nContent-Length: 22\r\n\r\nerror in SQL syntax at"), []string{"blocked:959100"}, 4, []uint32{20}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkScored(t, strings.Replace(scoreRules, "rules:\n", tc.pl+"rules:\n", 1), Config{ScoreEvents: tc.scoreEvent}, tc.build, tc.alerts, tc.score, tc.contrib)
		})
	}
}

// checkScored runs build's capture through rulesYAML and checks the alert
// events, and that the threshold rules' (949110, 959100) events give
// score and name contrib, with their transaction.
func checkScored(tb testing.TB, rulesYAML string, cfg Config, build func(c *capture), want []string, score int, contrib []uint32) {
	tb.Helper()
	h := newHarness(tb, compileRules(tb, rulesYAML), cfg)
	c := newCapture(tb)
	build(c)
	h.run(c)
	evs := h.take()
	if got := alerts(evs); !slices.Equal(got, want) {
		dumpEvents(tb, evs)
		tb.Fatalf("alerts %v, want %v", got, want)
	}
	for _, ev := range evs {
		if ev.Alert == nil || ev.Alert.SignatureID != 949110 && ev.Alert.SignatureID != 959100 {
			continue
		}
		if ev.Alert.Score != score || !slices.Equal(ev.Alert.Rules, contrib) {
			tb.Errorf("threshold event score %d rules %v, want %d %v", ev.Alert.Score, ev.Alert.Rules, score, contrib)
		}
		if ev.HTTP == nil || ev.HTTP.URL == "" {
			tb.Errorf("threshold event without its transaction: %+v", ev)
		}
	}
}
