package dpi

import (
	"slices"
	"testing"
)

// TestCompareAndBodyFields checks compare: conditions (a capture compared
// with another request field or another group), http.plain_body (the
// body unless parsed as JSON, XML or multipart) and the XML value fields
// end to end through the engine.
func TestCompareAndBodyFields(t *testing.T) {
	const fixation = `  - id: 1
    action: block
    match:
      - {field: http.arg_name, regex: '^jsessionid$'}
      - field: http.header.referer
        regex: '^(?:ht|f)tps?://(.*?)/'
        compare: {group: 1, op: ends_with, field: http.header.host, not: true}
`
	const rng = "  - {id: 2, action: block, match: {field: http.header.range, regex: '(\\d+)-(\\d+)', compare: {group: 2, op: lt, with_group: 1}}}\n"
	ref := func(referer, host string) func(c *capture) {
		return httpConv("GET /login?jsessionid=1 HTTP/1.1\r\nHost: "+host+"\r\nReferer: "+referer+"\r\n\r\n", "")
	}
	const xml = `<?xml version="1.0"?><a><!-- java.lang.Runtime --><b attr="java.lang.Runtime">text</b><c><![CDATA[ java.lang.ProcessBuilder ]]></c></a>`
	tests := []struct {
		name   string
		rules  string
		build  func(c *capture)
		alerts []string
	}{
		{"off-site referer", fixation, ref("http://www.attackersite.com/test", "localhost"), []string{"blocked:1"}},
		{"same-site referer", fixation, ref("http://localhost/test", "localhost"), nil},
		{"sub-domain referer", fixation, ref("https://shop.example.com/", "example.com"), nil},
		{"no session argument", fixation, httpConv("GET /?x=1 HTTP/1.1\r\nHost: a\r\nReferer: http://evil/x\r\n\r\n", ""), nil},
		{"referer without path", fixation, ref("http://evil.com", "localhost"), nil},
		{"range reversed", rng, httpConv("GET / HTTP/1.1\r\nHost: a\r\nRange: bytes=0-,5-0\r\n\r\n", ""), []string{"blocked:2"}},
		{"range ordered", rng, httpConv("GET / HTTP/1.1\r\nHost: a\r\nRange: bytes=0-99\r\n\r\n", ""), nil},
		{"plain body form", block("3", "http.plain_body", "ProcessBuilder"), postConv("application/x-www-form-urlencoded", "a=java.lang.ProcessBuilder"), []string{"blocked:3"}},
		{"plain body text", block("3", "http.plain_body", "ProcessBuilder"), postConv("text/plain", "a=java.lang.ProcessBuilder"), []string{"blocked:3"}},
		{"plain body anchored", block("3", "http.plain_body", "^a=1&b=2$"), postConv("application/x-www-form-urlencoded", "a=1&b=2"), []string{"blocked:3"}},
		{"plain body not json", block("3", "http.plain_body", "ProcessBuilder"), postConv("application/json", `{"a":"java.lang.ProcessBuilder"}`), nil},
		{"plain body not xml", block("3", "http.plain_body", "ProcessBuilder"), postConv("text/xml", xml), nil},
		// A type deepwall does not parse into arguments is plain, whatever
		// Coraza's looser prefixes would do: no body goes unseen.
		{"plain body json-like type", block("3", "http.plain_body", "ProcessBuilder"), postConv("application/jsonx", `{"a":"java.lang.ProcessBuilder"}`), []string{"blocked:3"}},
		{"plain body multipart without boundary", block("3", "http.plain_body", "ProcessBuilder"), postConv("multipart/form-data", "java.lang.ProcessBuilder"), []string{"blocked:3"}},
		{"xml text", block("4", "http.xml_text", "^java\\.lang\\.ProcessBuilder$"), postConv("application/xml", xml), []string{"blocked:4"}},
		{"xml comment is no text", block("4", "http.xml_text", "Runtime"), postConv("application/xml", xml), nil},
		{"xml attribute", block("5", "http.xml_attr", "^java\\.lang\\.Runtime$"), postConv("application/soap+xml; charset=utf-8", xml), []string{"blocked:5"}},
		{"xml fields need an xml type", block("5", "http.xml_attr", "Runtime"), postConv("text/plain", xml), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, evs, _ := run(t, "rules:\n"+tc.rules, tc.build)
			if !slices.Equal(o.alerts, tc.alerts) || o.blocked != (len(tc.alerts) > 0) {
				dumpEvents(t, evs)
				t.Errorf("alerts %v blocked %v, want %v", o.alerts, o.blocked, tc.alerts)
			}
		})
	}
}
