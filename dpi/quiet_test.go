package dpi

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/deepwall/deepwall/dpi/flow"
)

func TestQuietCache(t *testing.T) {
	q := newQuietCache()
	v := []byte("keep-alive")
	h := q.hash(v)
	if q.has(h, 1, 1, v) {
		t.Fatal("empty cache has a value")
	}
	q.add(h, 1, 1, v)
	tests := []struct {
		name  string
		gen   uint64
		fp    uint32
		value string
		want  bool
	}{
		{"same", 1, 1, "keep-alive", true},
		{"other generation", 2, 1, "keep-alive", false},
		{"other field", 1, 2, "keep-alive", false},
		{"other bytes, same hash", 1, 1, "keep-alivE", false},
		{"prefix, same hash", 1, 1, "keep-aliv", false},
	}
	for _, tc := range tests {
		// The stored hash is reused on purpose: only the bytes may tell
		// the values apart.
		if got := q.has(h, tc.gen, tc.fp, []byte(tc.value)); got != tc.want {
			t.Errorf("%s: has = %v, want %v", tc.name, got, tc.want)
		}
	}
	long := []byte(strings.Repeat("a", quietMaxLen+1))
	q.add(q.hash(long), 1, 1, long)
	if q.has(q.hash(long), 1, 1, long) {
		t.Error("a value over quietMaxLen was kept")
	}
	// A set holds quietWays values; more evict the one not used last.
	set := h % quietSets
	var same [][]byte
	for i := 0; len(same) < quietWays; i++ {
		b := fmt.Appendf(nil, "v%d", i)
		if q.hash(b)%quietSets == set {
			same = append(same, b)
		}
	}
	q.has(h, 1, 1, v) // v used last
	q.add(q.hash(same[0]), 1, 1, same[0])
	if !q.has(h, 1, 1, v) || !q.has(q.hash(same[0]), 1, 1, same[0]) {
		t.Error("insertion evicted the entry used last")
	}
	q.add(q.hash(same[1]), 1, 1, same[1])
	if q.has(h, 1, 1, v) {
		t.Error("the entry not used last was not evicted")
	}
}

// TestQuietValues checks that values the engine remembers as quiet give
// the same result as a full inspection when they come again: negated
// conditions hold again, a value skipped for its header name is not taken
// as quiet for another, and a new rule set sees every value afresh.
func TestQuietValues(t *testing.T) {
	const times = 3
	tests := []struct {
		name   string
		rules  string
		reqs   []string // sent on flows of their own, each times times
		alerts []string
		quiet  string // a value the cache must hold afterwards, if any
	}{
		{"quiet stays quiet", block("1", "http.header_value", "^evil$"),
			[]string{"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"}, nil, "keep-alive"},
		{"hits are not remembered", block("1", "http.header_value", "^evil$"),
			[]string{"GET / HTTP/1.1\r\nHost: a\r\nX-A: evil\r\n\r\n"}, []string{"blocked:1", "blocked:1", "blocked:1"}, ""},
		{"negated holds each time", "  - {id: 1, action: block, match: {field: http.header.content-type, regex: '^application/json', not: true}}\n",
			[]string{"POST / HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: 1\r\n\r\nx"},
			[]string{"blocked:1", "blocked:1", "blocked:1"}, "text/plain"},
		{"negated header value", "  - {id: 1, action: alert, match: {field: http.header_value, regex: 'a', not: true, except: [host]}}\n",
			[]string{"GET / HTTP/1.1\r\nHost: b\r\nX-A: zzz\r\n\r\n"}, []string{"allowed:1", "allowed:1", "allowed:1"}, ""},
		{"except by name, then another name", "  - {id: 1, action: block, match: {field: http.header_value, regex: '^evil$', except: [x-a]}}\n",
			[]string{"GET / HTTP/1.1\r\nHost: a\r\nX-A: evil\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\r\nX-B: evil\r\n\r\n"},
			[]string{"blocked:1", "blocked:1", "blocked:1"}, ""},
		{"detect except by name, then another name", "  - {id: 1, action: block, match: {field: http.header_value, detect: sqli, except: [x-a]}}\n",
			[]string{"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1' or '1'='1\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\r\nX-B: 1' or '1'='1\r\n\r\n"},
			[]string{"blocked:1", "blocked:1", "blocked:1"}, ""},
		{"arg names", block("1", "http.arg", "^admin$"),
			[]string{"GET /?user=bob HTTP/1.1\r\nHost: a\r\n\r\n", "GET /?user=admin HTTP/1.1\r\nHost: a\r\n\r\n"},
			[]string{"blocked:1", "blocked:1", "blocked:1"}, "bob"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, compileRules(t, "rules:\n"+tc.rules), Config{Workers: 1})
			c := newCapture(t)
			port := 40000
			for _, req := range tc.reqs {
				for range times {
					c.tcp(fmt.Sprintf("198.18.0.1:%d", port), srv).handshake().send(flow.ToServer, req)
					port++
				}
			}
			h.run(c)
			evs := h.take()
			if got := alerts(evs); !slices.Equal(got, tc.alerts) {
				dumpEvents(t, evs)
				t.Errorf("alerts %v, want %v", got, tc.alerts)
			}
			if tc.quiet != "" && !h.quietHolds(tc.quiet) {
				t.Errorf("%q is not remembered as quiet", tc.quiet)
			}
		})
	}
}

// quietHolds reports whether some worker remembers value as quiet for
// some field of its rule set.
func (h *harness) quietHolds(value string) bool {
	for _, w := range h.e.workers {
		w.mu.Lock()
		held := false
		for _, fp := range w.rs.Block {
			if fp != nil && w.quiet.has(w.quiet.hash([]byte(value)), w.rs.Gen, fp.ID, []byte(value)) {
				held = true
			}
		}
		for _, fp := range w.rs.Headers {
			if w.quiet.has(w.quiet.hash([]byte(value)), w.rs.Gen, fp.ID, []byte(value)) {
				held = true
			}
		}
		w.mu.Unlock()
		if held {
			return true
		}
	}
	return false
}

// TestQuietReload checks that a value quiet under one rule set is
// inspected again under the next.
func TestQuietReload(t *testing.T) {
	h := newHarness(t, compileRules(t, "rules:\n"+block("1", "http.header_value", "^nothing$")), Config{Workers: 1})
	req := "GET / HTTP/1.1\r\nHost: a\r\nX-A: token\r\n\r\n"
	c := newCapture(t)
	c.tcp(cli, srv).handshake().send(flow.ToServer, req)
	h.run(c)
	if got := alerts(h.take()); len(got) != 0 || !h.quietHolds("token") {
		t.Fatalf("first set: alerts %v, quiet %v", got, h.quietHolds("token"))
	}
	if err := h.e.SetRules(compileRules(t, "rules:\n"+block("2", "http.header_value", "^token$"))); err != nil {
		t.Fatal(err)
	}
	c = newCapture(t)
	c.now = baseTime + 1e9
	c.tcp("198.18.0.1:40001", srv).handshake().send(flow.ToServer, req)
	h.run(c)
	if got := alerts(h.take()); !slices.Equal(got, []string{"blocked:2"}) {
		t.Errorf("after reload: alerts %v", got)
	}
}

// TestQuietNamed checks that a condition selecting values by name
// (name:) is not bypassed by the quiet-value cache: a value inspected
// first under a name the condition does not select (so its detector was
// skipped) must not be replayed as quiet under a name it selects.
func TestQuietNamed(t *testing.T) {
	tests := []struct {
		name   string
		rules  string
		reqs   []string
		alerts []string
	}{
		{"detect by name", "  - {id: 1, action: block, match: {field: http.arg, detect: sqli, name: [q]}}\n",
			[]string{"GET /?x=1%27%20or%20%271%27%3D%271 HTTP/1.1\r\nHost: a\r\n\r\n", "GET /?Q=1%27%20or%20%271%27%3D%271 HTTP/1.1\r\nHost: a\r\n\r\n"},
			[]string{"blocked:1"}},
		{"regex by name", "  - {id: 1, action: block, match: {field: http.cookie, regex: '^1$', name_regex: '\\x22?\\x24version'}}\n",
			[]string{"GET / HTTP/1.1\r\nHost: a\r\nCookie: MyVersion=1\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\r\nCookie: $Version=1\r\n\r\n"},
			[]string{"blocked:1"}},
		{"negated by name", "  - {id: 1, action: alert, match: {field: http.arg, regex: '^utf-8$', not: true, name: [_charset_]}}\n",
			[]string{"GET /?a=utf-7 HTTP/1.1\r\nHost: a\r\n\r\n", "GET /?_charset_=utf-7 HTTP/1.1\r\nHost: a\r\n\r\n", "GET /?_charset_=utf-8 HTTP/1.1\r\nHost: a\r\n\r\n"},
			[]string{"allowed:1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, compileRules(t, "rules:\n"+tc.rules), Config{Workers: 1})
			c := newCapture(t)
			for i, req := range tc.reqs {
				c.tcp(fmt.Sprintf("198.18.0.1:%d", 41000+i), srv).handshake().send(flow.ToServer, req)
			}
			h.run(c)
			evs := h.take()
			if got := alerts(evs); !slices.Equal(got, tc.alerts) {
				dumpEvents(t, evs)
				t.Errorf("alerts %v, want %v", got, tc.alerts)
			}
		})
	}
}
