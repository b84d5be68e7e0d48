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
	// The sections' scenario, its HTTP request scored by scoreRules.
	_, got, _ := run(t, scoreRules+sectionRules, func(c *capture) { sectionConvs(c, "/x?a=union+select+from") })
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
