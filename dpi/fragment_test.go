package dpi

import (
	"strings"
	"testing"

	"github.com/deepwall/deepwall/ctl/eve"
	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dpi/flow"
	"github.com/deepwall/deepwall/internal/testnet"
)

// TestFragments: fragmented datagrams are held until complete, inspected
// whole on the worker of their flow, and released with their last
// fragment when allowed; an attack cut across fragments is blocked with
// none of its fragments released.
func TestFragments(t *testing.T) {
	set := "rules:\n" + block("2", "payload", "attack") + block("3", "http.uri", "union.select")
	attackReq := "GET /?q=" + strings.Repeat("a", 2000) + "+union+select+1 HTTP/1.1\r\nHost: x\r\n\r\n"
	tests := []struct {
		name    string
		build   func(c *capture)
		reverse bool
		block   bool   // the completing fragment is dropped
		sig     uint32 // alert expected
	}{
		{"udp4 benign", func(c *capture) { c.udp("198.18.0.1:5000", "198.18.1.1:7000", []byte(strings.Repeat("b", 3000))) }, false, false, 0},
		{"udp4 attack", func(c *capture) {
			c.udp("198.18.0.1:5000", "198.18.1.1:7000", []byte(strings.Repeat("b", 1478)+"attack"+strings.Repeat("b", 1500)))
		}, false, true, 2},
		{"udp4 attack reverse", func(c *capture) {
			c.udp("198.18.0.1:5000", "198.18.1.1:7000", []byte(strings.Repeat("b", 1478)+"attack"+strings.Repeat("b", 1500)))
		}, true, true, 2},
		{"udp6 benign", func(c *capture) { c.udp("[2001:db8::1]:5000", "[2001:db8::2]:7000", []byte(strings.Repeat("b", 8000))) }, false, false, 0},
		{"udp6 attack", func(c *capture) {
			c.udp("[2001:db8::1]:5000", "[2001:db8::2]:7000", []byte(strings.Repeat("b", 5000)+"attack"+strings.Repeat("b", 3000)))
		}, false, true, 2},
		{"tcp4 attack", func(c *capture) {
			v := c.tcp("198.18.0.1:40000", "198.18.1.1:80").handshake()
			v.mss = 4000
			v.acks = false
			v.send(flow.ToServer, attackReq)
		}, false, true, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, compileRules(t, set), Config{Workers: 2})
			c := newCapture(t)
			tt.build(c)
			first := len(c.frames) - 1
			c.fragmentLast(9, 1448, tt.reverse)
			vs := h.run(c)
			frags := vs[first:]
			for i, v := range frags[:len(frags)-1] {
				if v.Action != dataplane.Hold {
					t.Fatalf("fragment %d: %v, want hold", i, v.Action)
				}
			}
			last := frags[len(frags)-1]
			want := dataplane.Forward
			if tt.block {
				want = dataplane.Drop
			}
			if last.Action != want || len(last.Release) != len(frags)-1 || last.Final {
				t.Fatalf("last fragment: %v with %d released (final %v), want %v with %d", last.Action, len(last.Release), last.Final, want, len(frags)-1)
			}
			var sigs []uint32
			for _, ev := range h.take() {
				if ev.EventType == eve.EventAlert {
					sigs = append(sigs, ev.Alert.SignatureID)
				}
			}
			if tt.sig != 0 && (len(sigs) == 0 || sigs[0] != tt.sig) || tt.sig == 0 && len(sigs) > 0 {
				t.Errorf("alerts %v, want %d", sigs, tt.sig)
			}
			s := h.e.Stats()
			if s.Defrag.Datagrams != 0 || s.Defrag.Outcomes[1] != 1 {
				t.Errorf("defrag stats %+v", s.Defrag)
			}
		})
	}
}

// TestFragmentOverlap: a fragment overlapping another discards the
// datagram (the receiver's policy): nothing is released, the drop says
// why.
func TestFragmentOverlap(t *testing.T) {
	h := newHarness(t, compileRules(t, "rules:\n"+block("2", "payload", "attack")), Config{})
	c := newCapture(t)
	c.udp("198.18.0.1:5000", "198.18.1.1:7000", []byte(strings.Repeat("b", 3000)))
	c.fragmentLast(9, 1480, false)
	// The last fragment, moved 8 bytes back, before the real one: it
	// overlaps the run of the first two partly (a copy inside the run
	// would be a duplicate, ignored).
	over := append([]byte{}, c.frames[2].data...)
	over[14+7] -= 1 // offset in 8-byte units
	testnet.FixIPv4Checksum(over)
	c.frames = append(c.frames[:2], capFrame{data: over, ts: c.now}, c.frames[2])
	vs := h.run(c)
	if vs[0].Action != dataplane.Hold || vs[1].Action != dataplane.Hold || vs[2].Action != dataplane.Drop {
		t.Fatalf("verdicts %v", vs)
	}
	// The last fragment starts a datagram of its own that never completes.
	if vs[3].Action != dataplane.Hold || len(vs[3].Release) != 0 {
		t.Fatalf("last fragment: %+v", vs[3])
	}
	n := 0
	for _, ev := range h.take() {
		if ev.EventType == eve.EventDrop && ev.Drop.Reason == "frag.overlap" {
			n++
		}
	}
	if s := h.e.Stats(); n != 1 || s.Drops["frag.overlap"] != 1 {
		t.Errorf("overlap: %d events, drops %v", n, s.Drops)
	}
}
