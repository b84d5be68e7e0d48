package dpi

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dpi/flow"
	"github.com/deepwall/deepwall/internal/testnet"

	"github.com/deepwall/deepwall/ctl/eve"
)

// TestTCPEvasion checks reordering, overlaps and retransmissions.
func TestTCPEvasion(t *testing.T) {
	rules := "rules:\n" + block("1", "http.args", "union\\s+select", ", transforms: [url_decode]")
	r := "GET /?q=union%20select%201 HTTP/1.1\r\nHost: a\r\n\r\n"
	type want struct {
		idx    int // frame whose verdict is checked
		action dataplane.Action
		final  bool
	}
	tests := []struct {
		name   string
		build  func(c *capture, v *conv) want
		alerts []string
		drops  []string
	}{
		{"out of order: the gap filler is dropped", func(c *capture, v *conv) want {
			v.segment(flow.ToServer, 12, r[12:]) // forwarded, held
			n := len(c.frames)
			v.segment(flow.ToServer, 0, r[:12]) // completes the request: blocked
			return want{n, dataplane.Drop, true}
		}, []string{"blocked:1"}, []string{"rule"}},
		{"overlap with other bytes", func(c *capture, v *conv) want {
			v.segment(flow.ToServer, 0, "GET /index.html HTTP/1.1\r\n")
			n := len(c.frames)
			v.segment(flow.ToServer, 0, "GET /?q=union%20select")
			return want{n, dataplane.Drop, true}
		}, nil, []string{"tcp.overlap_conflict"}},
		{"retransmission with the same bytes", func(c *capture, v *conv) want {
			v.segment(flow.ToServer, 0, "GET /index.html HTTP/1.1\r\n")
			n := len(c.frames)
			v.segment(flow.ToServer, 0, "GET /index.html HTTP/1.1\r\n")
			return want{n, dataplane.Forward, false}
		}, nil, nil},
		{"overlapping out-of-order segments", func(c *capture, v *conv) want {
			v.segment(flow.ToServer, 20, r[20:])
			v.segment(flow.ToServer, 10, r[10:30]) // overlaps the held bytes, same content
			n := len(c.frames)
			v.segment(flow.ToServer, 0, r[:10])
			return want{n, dataplane.Drop, true}
		}, []string{"blocked:1"}, []string{"rule"}},
		{"overlapping out-of-order segments with other bytes", func(c *capture, v *conv) want {
			v.segment(flow.ToServer, 20, r[20:])
			n := len(c.frames)
			v.segment(flow.ToServer, 10, r[10:20]+"XXXXXXXXXX")
			return want{n, dataplane.Drop, true}
		}, nil, []string{"tcp.overlap_conflict"}},
		{"far beyond the window", func(c *capture, v *conv) want {
			n := len(c.frames)
			v.segment(flow.ToServer, 2<<20, "x")
			return want{n, dataplane.Drop, false}
		}, nil, []string{"tcp.out_of_window"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, compileRules(t, rules), Config{})
			c := newCapture(t)
			v := c.tcp(cli, srv).handshake()
			w := tc.build(c, v)
			vs := h.run(c)
			if got := vs[w.idx]; got.Action != w.action || got.Final != w.final {
				t.Errorf("frame %d: %v, want %v final %v", w.idx, got, w.action, w.final)
			}
			evs := h.take()
			if got := alerts(evs); !slices.Equal(got, tc.alerts) {
				t.Errorf("alerts %v, want %v", got, tc.alerts)
			}
			var drops []string
			for k := range h.e.Stats().Drops {
				drops = append(drops, k)
			}
			if !slices.Equal(drops, tc.drops) {
				dumpEvents(t, evs)
				t.Errorf("drops %v, want %v", drops, tc.drops)
			}
			for _, ev := range evs {
				if ev.EventType == eve.EventDrop && (ev.FlowID == 0 || ev.Drop.Reason == "") {
					t.Errorf("drop event %+v", ev)
				}
			}
		})
	}
}

// TestStrayDrops checks frames without a flow: malformed frames,
// fragments, non-IP frames.
func TestStrayDrops(t *testing.T) {
	h := newHarness(t, compileRules(t, "rules:\n  - {id: 1, action: allow, proto: udp, src: 198.18.0.7}\n"+block("2", "payload", "x")), Config{})
	c := newCapture(t)
	good := testnet.Frame(t, testnet.FrameSpec{Src: netip.MustParseAddrPort(cli), Dst: netip.MustParseAddrPort(srv), Proto: testnet.ProtoTCP, Flags: testnet.SYN})
	for range 15 {
		c.frames = append(c.frames, capFrame{data: good[:40], ts: c.now}) // truncated IPv4
	}
	frag := func(src string) []byte {
		b := testnet.Frame(t, testnet.FrameSpec{Src: netip.MustParseAddrPort(src), Dst: netip.MustParseAddrPort("198.18.1.1:53"), Proto: testnet.ProtoUDP, Payload: []byte(strings.Repeat("x", 64))})
		b[14+6] = 0x20 // MF, offset 0
		testnet.FixIPv4Checksum(b)
		return b
	}
	c.frames = append(c.frames, capFrame{data: frag("198.18.0.1:1000"), ts: c.now}, capFrame{data: frag("198.18.0.7:1000"), ts: c.now})
	arp := make([]byte, 60)
	arp[12], arp[13] = 0x08, 0x06
	c.frames = append(c.frames, capFrame{data: arp, ts: c.now})
	vs := h.run(c)
	for i := range 15 {
		if vs[i].Action != dataplane.Drop || vs[i].Final {
			t.Errorf("malformed frame %d: %v", i, vs[i])
		}
	}
	if vs[15].Action != dataplane.Hold || vs[16].Action != dataplane.Forward || vs[17].Action != dataplane.Forward {
		t.Errorf("fragment (held for reassembly), allowed fragment, arp: %v %v %v", vs[15], vs[16], vs[17])
	}
	n := map[string]int{}
	for _, ev := range h.take() {
		if ev.EventType == eve.EventDrop {
			n[ev.Drop.Reason]++
		}
	}
	if n["decode.truncated"] != DefaultDropEventsPerSecond || len(n) != 1 {
		t.Errorf("drop events %v (rate limit %d/s)", n, DefaultDropEventsPerSecond)
	}
	if s := h.e.Stats(); s.Drops["decode.truncated"] != 15 || len(s.Drops) != 1 || s.Packets != 18 || s.Dropped != 15 || s.Forwarded != 2 || s.Defrag.Datagrams != 1 {
		t.Errorf("stats %+v", s)
	}
}

// TestACLDirections checks that the ACL applies to each direction as XDP
// would: the reply direction is judged by its own source and destination.
func TestACLDirections(t *testing.T) {
	h := newHarness(t, compileRules(t, "rules:\n  - {id: 1, action: block, src: 198.18.1.1/32, src_port: 80}\n"+block("2", "http.uri", "x")), Config{})
	c := newCapture(t)
	c.tcp(cli, srv).handshake()
	vs := h.run(c)
	if vs[0].Action != dataplane.Forward || vs[0].Final || vs[1].Action != dataplane.Drop || vs[1].Final || vs[2].Action != dataplane.Forward {
		t.Errorf("verdicts %v", vs)
	}
	// With XDP enforcing the ACL the engine does not look at it.
	h = newHarness(t, compileRules(t, "rules:\n  - {id: 1, action: block, src: 198.18.1.1/32, src_port: 80}\n"+block("2", "http.uri", "x")), Config{KernelACL: true})
	if vs = h.run(c); vs[1].Action != dataplane.Forward {
		t.Errorf("kernel ACL: %v", vs)
	}
}

// TestFlowEvents checks the flow event of an ended flow.
func TestFlowEvents(t *testing.T) {
	h := newHarness(t, compileRules(t, "rules:\n"+block("1", "http.uri", "attack")), Config{})
	c := newCapture(t)
	v := c.tcp(cli, srv).handshake()
	v.send(flow.ToServer, getReq).send(flow.ToClient, okResp).close()
	last := c.now
	h.run(c)
	var infos []FlowInfo
	h.e.Flows(func(fi FlowInfo) bool { infos = append(infos, fi); return true })
	if len(infos) != 1 || infos[0].App != "http" || infos[0].State != "closed" || infos[0].Client.String() != cli || infos[0].Packets != [2]uint64{6, 5} || infos[0].Verdict != "" {
		t.Errorf("flows %+v", infos)
	}
	h.e.Tick(last + 11e9) // past the linger time
	evs := h.take()
	if len(evs) != 1 || evs[0].EventType != eve.EventFlow {
		dumpEvents(t, evs)
		t.Fatalf("%d events", len(evs))
	}
	ev := evs[0]
	f := ev.Flow
	if ev.SrcIP != "198.18.0.1" || ev.DestPort != 80 || ev.AppProto != "http" || ev.Proto != "TCP" ||
		f.PktsToServer != 6 || f.PktsToClient != 5 || f.State != "closed" || f.Reason != "closed" || f.Alerted || f.Action != "" || f.Bypassed ||
		f.Start.Time().UnixNano() != baseTime || f.End.Time().UnixNano() != last-c.step {
		dumpEvents(t, evs)
		t.Errorf("flow event %+v", f)
	}
}

// TestProtocolViolation checks that a fatal HTTP finding blocks the flow
// (the rest of the connection could not be inspected), except on a flow
// picked up mid-stream.
func TestProtocolViolation(t *testing.T) {
	rules := "rules:\n" + block("1", "http.uri", "attack")
	smuggle := "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello"
	o, evs, h := run(t, rules, httpConv(smuggle, ""))
	if !o.blocked || len(evs) != 1 || evs[0].EventType != eve.EventDrop || evs[0].Drop.Reason != "http.content_length_conflict" || evs[0].HTTP != nil && evs[0].HTTP.URL != "/" {
		dumpEvents(t, evs)
		t.Errorf("smuggling: %+v", o)
	}
	if h.e.Stats().Drops["http.content_length_conflict"] != 1 {
		t.Errorf("drops %v", h.e.Stats().Drops)
	}
	// Picked up mid-stream inside a response body: the response parser
	// fails, HTTP inspection ends, nothing is blocked.
	o, evs, _ = run(t, rules, func(c *capture) {
		v := c.tcp(cli, srv)
		v.send(flow.ToClient, "body bytes of a response we never saw the head of")
		v.send(flow.ToServer, "GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
		v.send(flow.ToClient, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	})
	if o.blocked || o.drops != 0 {
		dumpEvents(t, evs)
		t.Errorf("mid-stream: %+v", o)
	}
}
