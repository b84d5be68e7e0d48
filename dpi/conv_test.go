package dpi

import (
	"encoding/json"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dpi/flow"
	"github.com/deepwall/deepwall/internal/testnet"
	"github.com/deepwall/deepwall/rules"

	"github.com/deepwall/deepwall/ctl/eve"
)

// capture is a sequence of frames with timestamps, built by the
// conversation helpers below.
type capture struct {
	tb     testing.TB
	frames []capFrame
	now    int64 // next timestamp (ns); offline tests use wall time
	step   int64
}

type capFrame struct {
	data    []byte
	ts      int64
	ingress dataplane.Side
	label   string // for test failures
}

// baseTime is the wall time of generated captures (deterministic
// goldens).
var baseTime = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC).UnixNano()

func newCapture(tb testing.TB) *capture {
	tb.Helper()
	return &capture{tb: tb, now: baseTime, step: int64(time.Millisecond)}
}

func (c *capture) add(spec testnet.FrameSpec, ingress dataplane.Side, label string) {
	c.tb.Helper()
	c.frames = append(c.frames, capFrame{data: testnet.Frame(c.tb, spec), ts: c.now, ingress: ingress, label: label})
	c.now += c.step
}

// fragmentLast replaces the last frame added by its IP fragments of size
// payload bytes each (identification id), in order, or in reverse.
func (c *capture) fragmentLast(id uint32, size int, reverse bool) {
	c.tb.Helper()
	last := c.frames[len(c.frames)-1]
	c.frames = c.frames[:len(c.frames)-1]
	frags := testnet.Fragments(last.data, id, size)
	if reverse {
		slices.Reverse(frags)
	}
	for i, f := range frags {
		c.frames = append(c.frames, capFrame{data: f, ts: last.ts + int64(i), ingress: last.ingress, label: last.label + " fragment"})
	}
}

// udp adds one datagram.
func (c *capture) udp(src, dst string, payload []byte) {
	c.tb.Helper()
	c.add(testnet.FrameSpec{Src: netip.MustParseAddrPort(src), Dst: netip.MustParseAddrPort(dst), Proto: testnet.ProtoUDP, Payload: payload}, dataplane.Inner, "udp")
}

// conv is one TCP connection of a capture: it tracks both sides'
// sequence numbers so a test writes segments by content.
type conv struct {
	c        *capture
	cli, srv netip.AddrPort
	next     [2]uint32 // next sequence number per direction (ToServer, ToClient)
	mss      int
	acks     bool // the receiver acknowledges every data segment
}

// tcp starts a connection (no frames yet).
func (c *capture) tcp(client, server string) *conv {
	return &conv{c: c, cli: netip.MustParseAddrPort(client), srv: netip.MustParseAddrPort(server),
		next: [2]uint32{1000, 5000000}, mss: 1448, acks: true}
}

func (v *conv) spec(d flow.Dir, flags uint8, seq uint32, payload []byte) testnet.FrameSpec {
	s := testnet.FrameSpec{Src: v.cli, Dst: v.srv, Proto: testnet.ProtoTCP, Flags: flags, Seq: seq, Payload: payload}
	if d == flow.ToClient {
		s.Src, s.Dst = v.srv, v.cli
	}
	if flags&testnet.SYN == 0 || flags&testnet.ACK != 0 {
		s.Flags |= testnet.ACK
		s.Ack = v.next[d^1]
	}
	return s
}

func ingressOf(d flow.Dir) dataplane.Side {
	if d == flow.ToServer {
		return dataplane.Inner
	}
	return dataplane.Outer
}

// handshake adds SYN, SYN-ACK, ACK.
func (v *conv) handshake() *conv {
	v.c.tb.Helper()
	v.c.add(testnet.FrameSpec{Src: v.cli, Dst: v.srv, Proto: testnet.ProtoTCP, Flags: testnet.SYN, Seq: v.next[0] - 1}, dataplane.Inner, "syn")
	v.c.add(testnet.FrameSpec{Src: v.srv, Dst: v.cli, Proto: testnet.ProtoTCP, Flags: testnet.SYN | testnet.ACK, Seq: v.next[1] - 1, Ack: v.next[0]}, dataplane.Outer, "syn-ack")
	v.ack(flow.ToServer)
	return v
}

// ack adds a pure ACK sent in direction d.
func (v *conv) ack(d flow.Dir) {
	v.c.tb.Helper()
	v.c.add(v.spec(d, 0, v.next[d], nil), ingressOf(d), "ack")
}

// send adds data in direction d, cut into MSS-sized segments, each
// acknowledged by the other side when acks is set.
func (v *conv) send(d flow.Dir, data string) *conv {
	v.c.tb.Helper()
	for len(data) > 0 {
		n := min(len(data), v.mss)
		v.c.add(v.spec(d, testnet.PSH, v.next[d], []byte(data[:n])), ingressOf(d), "data")
		v.next[d] += uint32(n)
		data = data[n:]
		if v.acks {
			v.ack(d ^ 1)
		}
	}
	return v
}

// sendSplit adds data as segments cut at the given offsets.
func (v *conv) sendSplit(d flow.Dir, data string, cuts ...int) *conv {
	v.c.tb.Helper()
	prev := 0
	for _, cut := range append(cuts, len(data)) {
		v.send(d, data[prev:cut])
		prev = cut
	}
	return v
}

// segment adds a segment at offset rel from the next expected sequence
// number of direction d, without advancing it (out of order, overlaps).
func (v *conv) segment(d flow.Dir, rel int, data string) {
	v.c.tb.Helper()
	v.c.add(v.spec(d, testnet.PSH, v.next[d]+uint32(rel), []byte(data)), ingressOf(d), "segment")
}

// advance moves direction d's next sequence number by n (after segment).
func (v *conv) advance(d flow.Dir, n int) { v.next[d] += uint32(n) }

// fin adds a FIN from direction d and its ACK.
func (v *conv) fin(d flow.Dir) *conv {
	v.c.tb.Helper()
	v.c.add(v.spec(d, testnet.FIN, v.next[d], nil), ingressOf(d), "fin")
	v.next[d]++
	v.ack(d ^ 1)
	return v
}

// close adds FINs both ways.
func (v *conv) close() {
	v.c.tb.Helper()
	v.fin(flow.ToServer)
	v.fin(flow.ToClient)
}

// harness runs frames through an engine and records events.
type harness struct {
	tb     testing.TB
	e      *Engine
	mu     sync.Mutex
	events []*eve.Event
}

func compileRules(tb testing.TB, yaml string) *rules.Compiled {
	tb.Helper()
	set, err := rules.Parse("test.yaml", []byte(yaml))
	if err != nil {
		tb.Fatalf("parse rules: %v", err)
	}
	c, err := rules.Compile(set)
	if err != nil {
		tb.Fatalf("compile rules: %v", err)
	}
	return c
}

// newHarness starts an offline engine over rules (YAML, or the compiled
// set); cfg's Rules and Emit are filled in.
func newHarness(tb testing.TB, c *rules.Compiled, cfg Config) *harness {
	tb.Helper()
	h := &harness{tb: tb}
	cfg.Rules = c
	if cfg.Emit == nil {
		cfg.Emit = func(ev *eve.Event) {
			h.mu.Lock()
			h.events = append(h.events, ev)
			h.mu.Unlock()
		}
	}
	if !cfg.Bypass && cfg.Now == nil {
		cfg.Offline = true
	}
	e, err := New(cfg)
	if err != nil {
		tb.Fatalf("new engine: %v", err)
	}
	tb.Cleanup(func() { e.Close() })
	h.e = e
	return h
}

// run feeds the capture's frames to worker 0 and returns the verdicts.
func (h *harness) run(c *capture) []dataplane.Verdict {
	h.tb.Helper()
	out := make([]dataplane.Verdict, 0, len(c.frames))
	for i := range c.frames {
		f := &c.frames[i]
		fr := dataplane.Frame{Data: f.data, Timestamp: f.ts, Ingress: f.ingress}
		w := 0
		if n := h.e.Workers(); n > 1 {
			var p = h.e.workers[0].pkt
			_ = h.e.workers[0].dec.Decode(f.data, &p)
			w = p.Key.Worker(n)
		}
		out = append(out, h.e.Inspect(w, &fr))
	}
	return out
}

// take returns and forgets the recorded events.
func (h *harness) take() []*eve.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	ev := h.events
	h.events = nil
	return ev
}

// alerts returns the alert events' signature ids and actions.
func alerts(evs []*eve.Event) []string {
	var out []string
	for _, ev := range evs {
		if ev.EventType == eve.EventAlert {
			out = append(out, ev.Alert.Action+":"+itoa(ev.Alert.SignatureID))
		}
	}
	return out
}

func itoa(n uint32) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func dumpEvents(tb testing.TB, evs []*eve.Event) {
	tb.Helper()
	for _, ev := range evs {
		b, _ := json.Marshal(ev)
		tb.Logf("%s", b)
	}
}
