package dpi

import (
	"strings"
	"testing"

	"github.com/deepwall/deepwall/ctl/eve"
	"github.com/deepwall/deepwall/dpi/flow"
)

// Every TCP and UDP flow is named in its flow event, whatever the rules
// need: a DNS flow no rule applies to, and "unknown" for a flow
// that ended before identification decided. Config.NoIdentify names only
// what the rules need.
func TestIdentifyAlways(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want map[uint16]string // app_proto by server port
	}{
		{"always", Config{}, map[uint16]string{53: "dns", 22: "ssh", 7000: "unknown", 80: "http"}},
		{"no-identify", Config{NoIdentify: true}, map[uint16]string{53: "", 22: "ssh", 7000: "", 80: "http"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, compileRules(t, "rules:\n"+block("1", "http.uri", "attack")), tc.cfg)
			c := newCapture(t)
			c.udp("198.18.0.1:5353", "198.18.1.53:53", dnsQuery(1, "a.example", 1))
			c.tcp("198.18.0.1:40001", "198.18.1.1:22").handshake().send(flow.ToClient, "SSH-2.0-OpenSSH_9.6\r\n")
			c.tcp("198.18.0.1:40002", "198.18.1.1:7000").handshake().close()
			c.tcp("198.18.0.1:40003", "198.18.1.1:80").handshake().send(flow.ToServer, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
			got := runApps(t, h, c)
			for port, want := range tc.want {
				if got[port] != want {
					t.Errorf("port %d: app_proto %q, want %q", port, got[port], want)
				}
			}
		})
	}
}

// A flow picked up mid-stream whose server speaks first keeps its client
// and server (the ports, then the server's first bytes, say which is
// which) and is identified from those bytes; TLS after its handshake is
// identified from its record headers.
func TestIdentifyMidstream(t *testing.T) {
	h := newHarness(t, compileRules(t, "rules:\n"+block("1", "http.uri", "attack")), Config{})
	c := newCapture(t)
	c.tcp("198.18.0.1:40010", "198.18.1.1:80").send(flow.ToClient, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	c.tcp("198.18.0.1:40011", "198.18.1.1:40012").send(flow.ToClient, "220 mail.example ESMTP\r\n")
	record := func(n int) string { return "\x17\x03\x03\x00" + string(rune(n)) + strings.Repeat("x", n) }
	c.tcp("198.18.0.1:40013", "198.18.1.1:9443").send(flow.ToServer, record(40)+record(30)).send(flow.ToClient, record(50))
	got := runApps(t, h, c)
	for port, want := range map[uint16]string{80: "http", 40012: "smtp", 9443: "tls"} {
		if got[port] != want {
			t.Errorf("port %d: app_proto %q, want %q (flows %v)", port, got[port], want, got)
		}
	}
}

// runApps runs the capture, which must pass whole, ends its flows and
// returns their app_proto by server port; every client is 198.18.0.1.
func runApps(tb testing.TB, h *harness, c *capture) map[uint16]string {
	tb.Helper()
	for i, v := range h.run(c) {
		if v.Action != 0 {
			tb.Errorf("frame %d (%s): %v", i, label(c, i), v)
		}
	}
	h.e.Flush()
	got := map[uint16]string{}
	for _, ev := range h.take() {
		if ev.EventType == eve.EventFlow {
			if ev.SrcIP != "198.18.0.1" {
				tb.Errorf("flow to port %d: client %s:%d", ev.DestPort, ev.SrcIP, ev.SrcPort)
			}
			got[ev.DestPort] = ev.AppProto
		}
	}
	return got
}
