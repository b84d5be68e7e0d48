package dpi

import (
	"slices"
	"testing"
)

// exemptRules are CRS-style rules with an exclusion for a WordPress-like
// editor: 10001 takes 942100 off the editor's path (written before the
// rules it exempts, 10002 after them, for file order not to matter).
const exemptRules = `rules:
  - {id: 10001, action: allow, exempts: [942100], match: {field: http.path, regex: '^/wp-admin/post\.php$', transforms: [url_decode, normalize_path]}}
  - {id: 942100, action: block, match: {field: http.args, regex: 'union\s+select', transforms: [url_decode]}}
  - {id: 941100, action: block, match: {field: http.args, regex: '<script', transforms: [url_decode]}}
  - {id: 930100, action: block, match: {field: http.arg, regex: '\.\./', except: [http.arg:file]}}
  - {id: 10002, action: allow, exempts: ["941000-941999"], match: {field: http.header.x-editor, regex: '^preview$'}}
`

// TestExempts checks scoped exclusions (exempts:) and argument
// exclusions (except: http.arg:NAME) end to end through the engine: an
// exempted rule on the excluded path neither blocks nor logs, the same
// attack elsewhere and another rule's attack there still block.
func TestExempts(t *testing.T) {
	get := func(target string, headers ...string) func(c *capture) {
		h := ""
		for _, x := range headers {
			h += x + "\r\n"
		}
		return httpConv("GET "+target+" HTTP/1.1\r\nHost: a\r\n"+h+"\r\n", okResp)
	}
	tests := []struct {
		name   string
		build  func(c *capture)
		alerts []string
	}{
		{"excluded path", get("/wp-admin/post.php?q=union+select+1"), nil},
		{"excluded path encoded", get("/wp-admin/./post%2ephp?q=union+select+1"), nil},
		{"another path", get("/wp-admin/edit.php?q=union+select+1"), []string{"blocked:942100"}},
		{"a rule not exempted", get("/wp-admin/post.php?q=<script>alert(1)</script>"), []string{"blocked:941100"}},
		{"both attacks", get("/wp-admin/post.php?q=union+select+<script>"), []string{"blocked:941100"}},
		{"by header, a range", get("/x?q=<script>", "X-Editor: preview"), nil},
		{"by header, outside the range", get("/x?q=union+select+<script>", "X-Editor: preview"), []string{"blocked:942100"}},
		{"both exclusions", get("/wp-admin/post.php?q=union+select+<script>", "X-Editor: preview"), nil},
		{"argument excluded", get("/dl?file=../x"), nil},
		{"another argument", get("/dl?name=../x"), []string{"blocked:930100"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, evs, _ := run(t, exemptRules, tc.build)
			if !slices.Equal(o.alerts, tc.alerts) || o.blocked != (len(tc.alerts) > 0) {
				dumpEvents(t, evs)
				t.Errorf("alerts %v blocked %v, want %v", o.alerts, o.blocked, tc.alerts)
			}
		})
	}
}

// exemptScoreRules is the imported-CRS shape: scored alert rules and an
// inbound threshold. 10001 exempts 942100 on a path (scanned before the
// arguments); 10002 exempts 942110 when the form body says it posts an
// edit (decided after the query it exempts was scanned).
const exemptScoreRules = `rules:
  - {id: 942100, action: alert, score: 5, match: {field: http.arg, regex: 'union\s+select'}}
  - {id: 942110, action: alert, score: 5, match: {field: http.args, regex: 'drop\s+table', transforms: [url_decode]}}
  - {id: 941100, action: alert, score: 3, match: {field: http.arg, regex: '<script'}}
  - {id: 941110, action: alert, score: 3, match: {field: http.arg, regex: 'onerror='}}
  - {id: 949110, action: block, name: inbound anomaly, anomaly: {direction: inbound, threshold: 5}}
  - {id: 10001, action: allow, exempts: [942100], match: {field: http.path, regex: '^/wp-admin/post\.php$'}}
  - {id: 10002, action: allow, exempts: [942110], match: {field: http.arg, name: action, regex: '^editpost$'}}
`

// TestExemptsScore checks that an exempted scored rule adds nothing to
// the anomaly score, whichever of its field and the exclusion's is
// scanned first, and that the threshold event names only what counted.
func TestExemptsScore(t *testing.T) {
	post := func(target, body string) func(c *capture) {
		return httpConv("POST "+target+" HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: "+itoa(uint32(len(body)))+"\r\n\r\n"+body, okResp)
	}
	tests := []struct {
		name    string
		events  bool // Config.ScoreEvents
		build   func(c *capture)
		alerts  []string
		score   int
		contrib []uint32
	}{
		{"excluded path", true, httpConv("GET /wp-admin/post.php?q=union+select HTTP/1.1\r\nHost: a\r\n\r\n", okResp), nil, 0, nil},
		{"another path", true, httpConv("GET /x?q=union+select HTTP/1.1\r\nHost: a\r\n\r\n", okResp), []string{"allowed:942100", "blocked:949110"}, 5, []uint32{942100}},
		{"excluded path, other rules add up", true, httpConv("GET /wp-admin/post.php?q=union+select&a=<script&b=onerror= HTTP/1.1\r\nHost: a\r\n\r\n", okResp),
			[]string{"allowed:941100", "allowed:941110", "blocked:949110"}, 6, []uint32{941100, 941110}},
		// The query's hits are settled with the request head, before the
		// body's exclusion hits: with score events on, 942110's would be
		// logged; the score is what the exclusion takes back.
		{"exclusion decided after the query", false, post("/edit?q=drop+table+x", "action=editpost&content=hello"), nil, 0, nil},
		{"exclusion does not hit", false, post("/edit?q=drop+table+x", "action=preview&content=hello"), []string{"blocked:949110"}, 5, []uint32{942110}},
		{"exclusion after the query, others add up", false, post("/edit?q=drop+table+x&a=<script", "action=editpost&b=onerror="),
			[]string{"blocked:949110"}, 6, []uint32{941100, 941110}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkScored(t, exemptScoreRules, Config{ScoreEvents: tc.events}, tc.build, tc.alerts, tc.score, tc.contrib)
		})
	}
}
