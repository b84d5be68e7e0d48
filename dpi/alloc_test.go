package dpi

import (
	"strings"
	"testing"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dpi/flow"
	"github.com/deepwall/deepwall/internal/ruletest"
	"github.com/deepwall/deepwall/rules"
)

// TestAllocs checks that steady-state frames of an established,
// inspected HTTP flow allocate nothing: request heads with query
// arguments and cookies, a form body, chunked and Content-Length
// responses, ACKs, all through the default pack. The pack's libinjection
// rules are left out of the assertion: libinjection-go allocates on every
// call (an HTML5 tokenizer state per XSS test, strings.ToUpper per SQL
// keyword lookup); with them the count is logged.
func TestAllocs(t *testing.T) {
	set, err := rules.DefaultPack()
	if err != nil {
		t.Fatal(err)
	}
	var kept []*rules.Rule
	for _, r := range set.Rules {
		if r.Match == nil || r.Match.Detect == "" {
			kept = append(kept, r)
		}
	}
	set.Rules = kept
	c, err := rules.Compile(set)
	if err != nil {
		t.Fatal(err)
	}
	if n := exchangeAllocs(t, c); n != 0 {
		t.Errorf("%.1f allocations per exchange", n)
	}
	t.Logf("with the libinjection rules: %.1f allocations per exchange (libinjection-go)", exchangeAllocs(t, ruletest.DefaultPack(t)))
}

// exchangeAllocs measures the allocations of one keep-alive exchange of
// 12 frames through an engine with rule set c.
func exchangeAllocs(t *testing.T, rs *rules.Compiled) float64 {
	h := newHarness(t, rs, Config{})
	c := newCapture(t)
	v := c.tcp(cli, srv).handshake()
	form := "name=Jane+Doe&comment=Where+is+my+order%3F"
	exchange := func() {
		v.send(flow.ToServer, "GET /products/42?color=blue&size=m HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: Mozilla/5.0\r\nCookie: session=abc123; theme=dark\r\n\r\n")
		v.send(flow.ToClient, "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 3000\r\n\r\n"+strings.Repeat("<p>hello world, order 12345</p>\n", 3000/32)+strings.Repeat("x", 3000%32))
		v.send(flow.ToServer, "POST /contact HTTP/1.1\r\nHost: shop.example\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: "+itoa(uint32(len(form)))+"\r\n\r\n"+form)
		v.send(flow.ToClient, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nthank\r\n3\r\nyou\r\n0\r\n\r\n")
	}
	for range 4 {
		exchange()
	}
	h.run(c)
	// Fresh sequence numbers for every run (the first run is AllocsPerRun's
	// warm-up).
	const runs = 50
	var batches [][]capFrame
	for range runs + 1 {
		n := len(c.frames)
		exchange()
		batches = append(batches, c.frames[n:])
	}
	before := h.e.Stats()
	next := 0
	var fr dataplane.Frame
	allocs := testing.AllocsPerRun(runs, func() {
		for i := range batches[next] {
			f := &batches[next][i]
			fr = dataplane.Frame{Data: f.data, Timestamp: f.ts, Ingress: f.ingress}
			if vd := h.e.Inspect(0, &fr); vd.Action != dataplane.Forward {
				t.Fatalf("frame %d: %v", i, vd)
			}
		}
		next++
	})
	s := h.e.Stats()
	if s.Alerts != 0 || s.Flows != 1 || s.Reasm.DeliveredBytes-before.Reasm.DeliveredBytes < uint64(runs*3000) {
		t.Errorf("stats %+v", s)
	}
	return allocs
}
