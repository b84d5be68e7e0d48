package flow

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/deepwall/deepwall/dpi/decode"
	"github.com/deepwall/deepwall/xdp"
)

const (
	SYN = decode.TCPSyn
	ACK = decode.TCPAck
	FIN = decode.TCPFin
	RST = decode.TCPRst
	PSH = decode.TCPPsh
)

var (
	cli = netip.MustParseAddrPort("198.18.0.1:40000")
	srv = netip.MustParseAddrPort("198.18.0.2:80")
)

// pkt builds the decoded packet the table sees.
func pkt(src, dst netip.AddrPort, proto uint8, flags decode.TCPFlags, seq, ack uint32, payload int) *decode.Packet {
	p := &decode.Packet{IPVersion: 4, Proto: proto, Flags: decode.FlagL4, TCPFlags: flags, Seq: seq, Ack: ack,
		SrcPort: src.Port(), DstPort: dst.Port(), Src: src.Addr().As16(), Dst: dst.Addr().As16(),
		Payload: make([]byte, payload), FrameLen: 54 + payload}
	p.Key, p.Dir = xdp.MakeFlowKey(src.Addr(), dst.Addr(), src.Port(), dst.Port(), proto)
	return p
}

func tcp(src, dst netip.AddrPort, flags decode.TCPFlags, seq, ack uint32, payload int) *decode.Packet {
	return pkt(src, dst, 6, flags, seq, ack, payload)
}

type ended struct {
	id     uint64
	key    xdp.FlowKey
	reason Reason
}

type recorder struct{ ends []ended }

func (r *recorder) onEnd(f *Flow[int], reason Reason) {
	r.ends = append(r.ends, ended{f.ID, f.Key, reason})
}

func newTable(tb testing.TB, cfg Config) (*Table[int], *recorder) {
	tb.Helper()
	r := &recorder{}
	t, err := New(cfg, r.onEnd)
	if err != nil {
		tb.Fatalf("new table: %v", err)
	}
	return t, r
}

func mustLookup(tb testing.TB, t *Table[int], p *decode.Packet, now int64) (*Flow[int], Dir) {
	tb.Helper()
	f, d, err := t.Lookup(p, now)
	if err != nil {
		tb.Fatalf("lookup %v: %v", p.Key, err)
	}
	return f, d
}

const sec = int64(time.Second)

func TestTCPLifecycle(t *testing.T) {
	tb, rec := newTable(t, Config{})
	steps := []struct {
		p     *decode.Packet
		dir   Dir
		state TCPState
	}{
		{tcp(cli, srv, SYN, 100, 0, 0), ToServer, TCPSynSent},
		{tcp(srv, cli, SYN|ACK, 500, 101, 0), ToClient, TCPSynRecv},
		{tcp(cli, srv, ACK, 101, 501, 0), ToServer, TCPEstablished},
		{tcp(cli, srv, ACK|PSH, 101, 501, 10), ToServer, TCPEstablished},
		{tcp(srv, cli, ACK|PSH, 501, 111, 20), ToClient, TCPEstablished},
		{tcp(cli, srv, FIN|ACK, 111, 521, 0), ToServer, TCPClosing},
		{tcp(srv, cli, FIN|ACK, 521, 112, 0), ToClient, TCPClosed},
		{tcp(cli, srv, ACK, 112, 522, 0), ToServer, TCPClosed},
	}
	var id uint64
	for i, s := range steps {
		f, d := mustLookup(t, tb, s.p, int64(i)*sec)
		if id == 0 {
			id = f.ID
		}
		if f.ID != id || d != s.dir || f.TCP != s.state {
			t.Fatalf("step %d: id %d dir %v state %v, want %d %v %v", i, f.ID, d, f.TCP, id, s.dir, s.state)
		}
	}
	f := tb.Find(steps[0].p.Key)
	if f.Client() != cli || f.Server() != srv {
		t.Errorf("client %v server %v", f.Client(), f.Server())
	}
	if f.Packets != [2]uint64{5, 3} || f.Bytes[ToServer] != 5*54+10 || f.Bytes[ToClient] != 3*54+20 {
		t.Errorf("packets %v bytes %v", f.Packets, f.Bytes)
	}
	if f.Flags&(FlagReplied|FlagFinToServer|FlagFinToClient) != FlagReplied|FlagFinToServer|FlagFinToClient || f.Flags&FlagMidstream != 0 {
		t.Errorf("flags %b", f.Flags)
	}
	last := int64(len(steps)-1) * sec
	linger := int64(DefaultTimeouts.Linger)
	if n := tb.Expire(last + linger - 1); n != 0 {
		t.Fatalf("expired %d before the linger time", n)
	}
	if n := tb.Expire(last + linger); n != 1 || len(rec.ends) != 1 || rec.ends[0].reason != ReasonClosed || rec.ends[0].id != id {
		t.Fatalf("after linger: expired %d, ends %+v", n, rec.ends)
	}
	if tb.Len() != 0 || tb.Find(steps[0].p.Key) != nil {
		t.Fatal("flow still in the table")
	}
}

func TestClientSide(t *testing.T) {
	peer := netip.MustParseAddrPort("198.18.0.2:40001")
	mysql := netip.MustParseAddrPort("198.18.0.2:3306")
	greeting := tcp(peer, cli, ACK, 1, 2, 0)
	greeting.Payload = []byte("greeting")
	for _, tc := range []struct {
		name       string
		first      *decode.Packet
		wantClient netip.AddrPort
		wantDir    Dir
		state      TCPState
	}{
		{"syn", tcp(cli, srv, SYN, 1, 0, 0), cli, ToServer, TCPSynSent},
		{"syn from the high side", tcp(srv, cli, SYN, 1, 0, 0), srv, ToServer, TCPSynSent},
		{"picked up at syn-ack", tcp(srv, cli, SYN|ACK, 1, 2, 0), cli, ToClient, TCPSynRecv},
		{"mid-stream from the server's port", tcp(srv, cli, ACK, 1, 2, 100), cli, ToClient, TCPMidstream},
		{"mid-stream from a service port", tcp(mysql, cli, ACK, 1, 2, 100), cli, ToClient, TCPMidstream},
		{"mid-stream to the server's port", tcp(cli, srv, ACK, 1, 2, 100), cli, ToServer, TCPMidstream},
		{"mid-stream between ephemeral ports", tcp(peer, cli, ACK, 1, 2, 100), peer, ToServer, TCPMidstream},
		{"mid-stream server-first payload", greeting, cli, ToClient, TCPMidstream},
		{"udp", pkt(cli, srv, 17, 0, 0, 0, 10), cli, ToServer, TCPNone},
		{"udp answer first", pkt(srv, cli, 17, 0, 0, 0, 10), cli, ToClient, TCPNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb, _ := newTable(t, Config{ServerFirst: func(b []byte) bool { return string(b) == "greeting" }})
			f, d := mustLookup(t, tb, tc.first, 0)
			if f.Client() != tc.wantClient || d != tc.wantDir || f.TCP != tc.state {
				t.Errorf("client %v dir %v state %v, want %v %v %v", f.Client(), d, f.TCP, tc.wantClient, tc.wantDir, tc.state)
			}
			if f.DirOf(tc.first.Dir) != d {
				t.Errorf("DirOf disagrees with Lookup")
			}
		})
	}
}

func TestMidstreamBecomesEstablished(t *testing.T) {
	tb, _ := newTable(t, Config{})
	f, _ := mustLookup(t, tb, tcp(cli, srv, ACK|PSH, 1000, 7000, 100), 0)
	if f.TCP != TCPMidstream || f.Flags&FlagMidstream == 0 || f.class != classEmbryonic {
		t.Fatalf("state %v flags %b class %d", f.TCP, f.Flags, f.class)
	}
	mustLookup(t, tb, tcp(srv, cli, ACK, 7000, 1100, 0), 0)
	if f.TCP != TCPEstablished || f.class != classEstablished {
		t.Fatalf("after the reply: state %v class %d", f.TCP, f.class)
	}
}

func TestRST(t *testing.T) {
	established := func(tb *Table[int]) *Flow[int] {
		mustLookup(t, tb, tcp(cli, srv, SYN, 100, 0, 0), 0)
		mustLookup(t, tb, tcp(srv, cli, SYN|ACK, 500, 101, 0), 0)
		f, _ := mustLookup(t, tb, tcp(cli, srv, ACK|PSH, 101, 501, 50), 0) // client next = 151
		return f
	}
	for _, tc := range []struct {
		name  string
		cfg   Config
		rst   *decode.Packet
		state TCPState
	}{
		{"client rst at its next seq", Config{}, tcp(cli, srv, RST, 151, 0, 0), TCPReset},
		{"server rst at the client's ack", Config{}, tcp(srv, cli, RST|ACK, 501, 151, 0), TCPReset},
		{"injected rst in window", Config{}, tcp(srv, cli, RST, 9000, 0, 0), TCPEstablished},
		{"injected rst off by one", Config{}, tcp(cli, srv, RST, 150, 0, 0), TCPEstablished},
		{"loose rst", Config{LooseRST: true}, tcp(srv, cli, RST, 9000, 0, 0), TCPReset},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb, _ := newTable(t, tc.cfg)
			f := established(tb)
			mustLookup(t, tb, tc.rst, sec)
			if f.TCP != tc.state {
				t.Fatalf("state %v, want %v", f.TCP, tc.state)
			}
			invalid := f.Flags&FlagInvalidRST != 0
			if invalid != (tc.state != TCPReset) || (tb.Stats().InvalidRST == 1) != invalid {
				t.Errorf("invalid flag %v, stats %+v", invalid, tb.Stats())
			}
		})
	}
	t.Run("rst answering a syn", func(t *testing.T) {
		tb, _ := newTable(t, Config{})
		f, _ := mustLookup(t, tb, tcp(cli, srv, SYN, 100, 0, 0), 0)
		mustLookup(t, tb, tcp(srv, cli, RST|ACK, 0, 101, 0), 0)
		if f.TCP != TCPReset || f.class != classLinger {
			t.Fatalf("state %v class %d", f.TCP, f.class)
		}
	})
}

func TestSYNReopensLingeringFlow(t *testing.T) {
	tb, rec := newTable(t, Config{})
	f, _ := mustLookup(t, tb, tcp(cli, srv, SYN, 100, 0, 0), 0)
	old := f.ID
	mustLookup(t, tb, tcp(srv, cli, RST|ACK, 0, 101, 0), 0)
	// a retransmitted RST or ACK stays on the lingering flow
	if f2, _ := mustLookup(t, tb, tcp(cli, srv, ACK, 101, 0, 0), sec); f2.ID != old {
		t.Fatal("an ACK reopened the flow")
	}
	f2, d := mustLookup(t, tb, tcp(cli, srv, SYN, 9000, 0, 0), 2*sec)
	if f2.ID == old || f2.TCP != TCPSynSent || d != ToServer {
		t.Fatalf("new flow id %d (old %d) state %v", f2.ID, old, f2.TCP)
	}
	if len(rec.ends) != 1 || rec.ends[0] != (ended{old, f2.Key, ReasonClosed}) {
		t.Fatalf("ends %+v", rec.ends)
	}
}

// A new connection on a tuple whose end we missed: the SYN alone changes
// nothing (it may be forged, or a late duplicate); the SYN-ACK answering it
// ends the old flow and starts the new one.
func TestSYNOnLiveFlow(t *testing.T) {
	tb, rec := newTable(t, Config{})
	old := established(t, tb, 40000, 0)
	oldID, c := old.ID, netip.AddrPortFrom(cli.Addr(), 40000)
	// a duplicate of the original SYN and of the SYN-ACK: nothing happens
	mustLookup(t, tb, tcp(c, srv, SYN, 1, 0, 0), sec)
	if f, _ := mustLookup(t, tb, tcp(srv, c, SYN|ACK, 1, 2, 0), sec); f.ID != oldID || f.TCP != TCPEstablished {
		t.Fatalf("duplicate handshake reopened the flow: id %d state %v", f.ID, f.TCP)
	}
	// a SYN with a new ISN, answered by a challenge ACK: still the old flow
	mustLookup(t, tb, tcp(c, srv, SYN, 90000, 0, 0), 2*sec)
	if f, _ := mustLookup(t, tb, tcp(srv, c, ACK, 2, 2, 0), 2*sec); f.ID != oldID || f.TCP != TCPEstablished {
		t.Fatalf("challenge ACK reopened the flow: id %d state %v", f.ID, f.TCP)
	}
	// a SYN-ACK for another ISN: still the old flow
	if f, _ := mustLookup(t, tb, tcp(srv, c, SYN|ACK, 500, 12345, 0), 2*sec); f.ID != oldID {
		t.Fatal("unrelated SYN-ACK reopened the flow")
	}
	// the SYN-ACK answering the new SYN: the server has no old connection
	f, d := mustLookup(t, tb, tcp(srv, c, SYN|ACK, 777, 90001, 0), 3*sec)
	if f.ID == oldID || f.TCP != TCPSynRecv || d != ToClient || f.Client() != c {
		t.Fatalf("new flow id %d state %v dir %v client %v", f.ID, f.TCP, d, f.Client())
	}
	if len(rec.ends) != 1 || rec.ends[0].id != oldID || rec.ends[0].reason != ReasonClosed {
		t.Fatalf("ends %+v", rec.ends)
	}
	if f, _ := mustLookup(t, tb, tcp(c, srv, ACK, 90001, 778, 0), 3*sec); f.TCP != TCPEstablished {
		t.Fatalf("new flow state %v", f.TCP)
	}
}

// Each state expires after its own timeout, not a moment earlier.
func TestIdleTimeoutPerState(t *testing.T) {
	to := Timeouts{
		TCPEmbryonic: 1 * time.Second, TCPEstablished: 2 * time.Second, TCPClosing: 3 * time.Second, Linger: 4 * time.Second,
		Unreplied: 5 * time.Second, UDP: 6 * time.Second, ICMP: 7 * time.Second, Other: 8 * time.Second,
	}
	icmpC := netip.AddrPortFrom(cli.Addr(), 7)
	icmpS := netip.AddrPortFrom(srv.Addr(), 7)
	for _, tc := range []struct {
		name    string
		packets []*decode.Packet
		timeout time.Duration
		reason  Reason
	}{
		{"embryonic", []*decode.Packet{tcp(cli, srv, SYN, 1, 0, 0)}, to.TCPEmbryonic, ReasonIdle},
		{"established", []*decode.Packet{tcp(cli, srv, SYN, 1, 0, 0), tcp(srv, cli, SYN|ACK, 1, 2, 0), tcp(cli, srv, ACK, 2, 2, 0)}, to.TCPEstablished, ReasonIdle},
		{"closing", []*decode.Packet{tcp(cli, srv, ACK, 1, 1, 0), tcp(srv, cli, ACK, 1, 1, 0), tcp(cli, srv, FIN|ACK, 1, 1, 0)}, to.TCPClosing, ReasonIdle},
		{"linger", []*decode.Packet{tcp(cli, srv, ACK, 1, 1, 0), tcp(cli, srv, RST, 1, 0, 0)}, to.Linger, ReasonClosed},
		{"unreplied udp", []*decode.Packet{pkt(cli, srv, 17, 0, 0, 0, 1)}, to.Unreplied, ReasonIdle},
		{"udp", []*decode.Packet{pkt(cli, srv, 17, 0, 0, 0, 1), pkt(srv, cli, 17, 0, 0, 0, 1)}, to.UDP, ReasonIdle},
		{"icmp", []*decode.Packet{pkt(icmpC, icmpS, 1, 0, 0, 0, 1), pkt(icmpS, icmpC, 1, 0, 0, 0, 1)}, to.ICMP, ReasonIdle},
		{"other", []*decode.Packet{pkt(cli, srv, 47, 0, 0, 0, 1), pkt(srv, cli, 47, 0, 0, 0, 1)}, to.Other, ReasonIdle},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb, rec := newTable(t, Config{Timeouts: to})
			for _, p := range tc.packets {
				mustLookup(t, tb, p, 0)
			}
			if n := tb.Expire(int64(tc.timeout) - 1); n != 0 {
				t.Fatalf("expired %d flows before the timeout", n)
			}
			if n := tb.Expire(int64(tc.timeout)); n != 1 || rec.ends[0].reason != tc.reason {
				t.Fatalf("expired %d, ends %+v, want one %v", n, rec.ends, tc.reason)
			}
		})
	}
}

func TestLookupReplacesExpiredFlow(t *testing.T) {
	tb, rec := newTable(t, Config{})
	p := pkt(cli, srv, 17, 0, 0, 0, 1)
	f, _ := mustLookup(t, tb, p, 0)
	old := f.ID
	f, _ = mustLookup(t, tb, p, int64(DefaultTimeouts.Unreplied))
	if f.ID == old || len(rec.ends) != 1 || rec.ends[0].reason != ReasonIdle || f.Packets[ToServer] != 1 {
		t.Fatalf("id %d old %d ends %+v packets %v", f.ID, old, rec.ends, f.Packets)
	}
}

func TestLifetime(t *testing.T) {
	tb, rec := newTable(t, Config{Lifetime: 10 * time.Second})
	a := pkt(cli, srv, 17, 0, 0, 0, 1)
	b := pkt(srv, cli, 17, 0, 0, 0, 1)
	for now := int64(0); now < 10*sec; now += sec {
		mustLookup(t, tb, a, now)
		mustLookup(t, tb, b, now)
		if tb.Expire(now) != 0 {
			t.Fatalf("expired at %v while active", time.Duration(now))
		}
	}
	if n := tb.Expire(10 * sec); n != 1 || rec.ends[0].reason != ReasonLifetime {
		t.Fatalf("expired %d, ends %+v", n, rec.ends)
	}
}

func TestExpireIsBounded(t *testing.T) {
	tb, rec := newTable(t, Config{ExpireBatch: 100})
	for i := range 1000 {
		mustLookup(t, tb, pkt(cli, netip.AddrPortFrom(srv.Addr(), uint16(i)), 17, 0, 0, 0, 1), 0)
	}
	now := int64(time.Hour)
	for i := range 10 {
		if n := tb.Expire(now); n != 100 {
			t.Fatalf("call %d expired %d, want 100", i, n)
		}
	}
	if tb.Expire(now) != 0 || tb.Len() != 0 || len(rec.ends) != 1000 {
		t.Fatalf("len %d ends %d", tb.Len(), len(rec.ends))
	}
}

// established makes a confirmed TCP flow from client port cport.
func established(tb testing.TB, t *Table[int], cport uint16, now int64) *Flow[int] {
	c := netip.AddrPortFrom(cli.Addr(), cport)
	mustLookup(tb, t, tcp(c, srv, SYN, 1, 0, 0), now)
	mustLookup(tb, t, tcp(srv, c, SYN|ACK, 1, 2, 0), now)
	f, _ := mustLookup(tb, t, tcp(c, srv, ACK, 2, 2, 0), now)
	return f
}

func TestEvictionOrder(t *testing.T) {
	tb, rec := newTable(t, Config{MaxFlows: 4, EvictIdle: 10 * time.Second})
	e1 := established(t, tb, 1, 0)
	e2 := established(t, tb, 2, 1*sec)
	syn := tcp(netip.AddrPortFrom(cli.Addr(), 3), srv, SYN, 1, 0, 0)
	mustLookup(t, tb, syn, 2*sec)
	closed, _ := mustLookup(t, tb, tcp(netip.AddrPortFrom(cli.Addr(), 4), srv, SYN, 1, 0, 0), 3*sec)
	mustLookup(t, tb, tcp(srv, netip.AddrPortFrom(cli.Addr(), 4), RST|ACK, 0, 2, 0), 3*sec)
	closedKey := closed.Key
	// 1: the lingering flow goes first, though it is the newest
	mustLookup(t, tb, tcp(netip.AddrPortFrom(cli.Addr(), 5), srv, SYN, 1, 0, 0), 4*sec)
	if got := rec.ends[len(rec.ends)-1]; got.key != closedKey || got.reason != ReasonEvicted {
		t.Fatalf("first eviction %+v, want the lingering flow", got)
	}
	// 2: then the oldest embryonic flow (port 3), not the older established ones
	mustLookup(t, tb, tcp(netip.AddrPortFrom(cli.Addr(), 6), srv, SYN, 1, 0, 0), 5*sec)
	if got := rec.ends[len(rec.ends)-1]; got.key != syn.Key {
		t.Fatalf("second eviction %+v, want the oldest embryonic flow", got)
	}
	mustLookup(t, tb, tcp(netip.AddrPortFrom(cli.Addr(), 7), srv, SYN, 1, 0, 0), 6*sec) // evicts port 5
	mustLookup(t, tb, tcp(netip.AddrPortFrom(cli.Addr(), 8), srv, SYN, 1, 0, 0), 7*sec) // evicts port 6
	if tb.Find(e1.Key) == nil || tb.Find(e2.Key) == nil {
		t.Fatal("an established flow was evicted while embryonic ones remained")
	}
	// 3: only confirmed flows left, none idle for EvictIdle: refuse
	tb2, rec2 := newTable(t, Config{MaxFlows: 2, EvictIdle: 10 * time.Second})
	aID := established(t, tb2, 1, 0).ID
	b := established(t, tb2, 2, 5*sec)
	newSyn := tcp(netip.AddrPortFrom(cli.Addr(), 9), srv, SYN, 1, 0, 0)
	if _, _, err := tb2.Lookup(newSyn, 9*sec); !errors.Is(err, ErrFull) {
		t.Fatalf("lookup in a full table of busy flows: %v, want ErrFull", err)
	}
	if tb2.Stats().Full != 1 {
		t.Errorf("stats %+v", tb2.Stats())
	}
	// once the least recently used one has idled long enough it gives way
	mustLookup(t, tb2, newSyn, 10*sec)
	if len(rec2.ends) != 1 || rec2.ends[0].id != aID || tb2.Find(b.Key) == nil {
		t.Fatalf("ends %+v, want the LRU established flow", rec2.ends)
	}
}

// A SYN flood never displaces established flows and never grows memory.
func TestSYNFlood(t *testing.T) {
	const maxFlows = 2048
	tb, _ := newTable(t, Config{MaxFlows: maxFlows})
	var keep []*Flow[int]
	ids := map[uint64]xdp.FlowKey{}
	for i := range 200 {
		f := established(t, tb, uint16(1000+i), 0)
		keep = append(keep, f)
		ids[f.ID] = f.Key
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var mem int
	for i := range 200_000 {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 19, byte(rng.IntN(256)), byte(rng.IntN(256))}), uint16(rng.IntN(65536)))
		if _, _, err := tb.Lookup(tcp(src, srv, SYN, rng.Uint32(), 0, 0), sec+int64(i)); err != nil {
			t.Fatalf("flood packet %d: %v", i, err)
		}
		if i == maxFlows {
			mem = tb.MemBytes()
		}
	}
	if tb.Len() != maxFlows || tb.MemBytes() != mem {
		t.Errorf("len %d mem %d, want %d and %d", tb.Len(), tb.MemBytes(), maxFlows, mem)
	}
	for _, f := range keep {
		if g := tb.Find(ids[f.ID]); g == nil || g.ID != f.ID {
			t.Fatalf("established flow %v evicted by the flood", ids[f.ID])
		}
	}
	t.Logf("flood: %d flows, %d bytes held, stats %+v", tb.Len(), tb.MemBytes(), tb.Stats())
}

// Random operations against a model: the index (with backward-shift
// deletion) and the lists always agree with the set of live flows.
func TestTableModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	tb, rec := newTable(t, Config{MaxFlows: 300, ExpireBatch: 7, Timeouts: Timeouts{Unreplied: 50, UDP: 80}, EvictIdle: 1})
	live := map[xdp.FlowKey]uint64{}
	now := int64(0)
	keyOf := func(i int) *decode.Packet {
		c := netip.AddrPortFrom(cli.Addr(), uint16(i))
		if rng.IntN(2) == 0 {
			return pkt(c, srv, 17, 0, 0, 0, 1)
		}
		return pkt(srv, c, 17, 0, 0, 0, 1)
	}
	for step := range 200_000 {
		now += int64(rng.IntN(3))
		before := len(rec.ends)
		var created *Flow[int]
		switch op := rng.IntN(10); {
		case op < 8:
			p := keyOf(rng.IntN(600))
			f, _, err := tb.Lookup(p, now)
			if err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
			created = f
		case op == 8:
			tb.Expire(now)
		default:
			if f := tb.Find(keyOf(rng.IntN(600)).Key); f != nil && !tb.Remove(f) {
				t.Fatalf("remove failed")
			}
		}
		for _, e := range rec.ends[before:] {
			if live[e.key] != e.id {
				t.Fatalf("step %d: ended %+v not live (live id %d)", step, e, live[e.key])
			}
			delete(live, e.key)
		}
		if created != nil {
			if id, ok := live[created.Key]; ok && id != created.ID {
				t.Fatalf("step %d: flow %v changed id %d -> %d without ending", step, created.Key, id, created.ID)
			}
			live[created.Key] = created.ID
		}
		if step%1000 == 0 || step > 199_000 {
			if tb.Len() != len(live) {
				t.Fatalf("step %d: len %d, model %d", step, tb.Len(), len(live))
			}
			for k, id := range live {
				if f := tb.Find(k); f == nil || f.ID != id {
					t.Fatalf("step %d: flow %v id %d not found", step, k, id)
				}
			}
			n := 0
			for c := range numClasses {
				for s := tb.lists[c].head; s >= 0; s = tb.at(s).link[classLink].next {
					if tb.at(s).class != uint8(c) {
						t.Fatalf("flow in list %d has class %d", c, tb.at(s).class)
					}
					n++
				}
			}
			if n != len(live) {
				t.Fatalf("step %d: lists hold %d flows, model %d", step, n, len(live))
			}
		}
	}
	tb.Flush()
	if tb.Len() != 0 || tb.Stats().Created != uint64(len(rec.ends)) {
		t.Fatalf("after flush: len %d created %d ended %d", tb.Len(), tb.Stats().Created, len(rec.ends))
	}
}

func TestReentrantCallback(t *testing.T) {
	var tb *Table[int]
	var got error
	tb, err := New(Config{}, func(f *Flow[int], r Reason) {
		_, _, got = tb.Lookup(pkt(cli, srv, 17, 0, 0, 0, 1), 0)
	})
	if err != nil {
		t.Fatal(err)
	}
	f, _, _ := tb.Lookup(pkt(cli, srv, 17, 0, 0, 0, 1), 0)
	tb.Remove(f)
	if !errors.Is(got, ErrReentrant) {
		t.Fatalf("lookup from the callback: %v", got)
	}
	if tb.Remove(f) {
		t.Fatal("removed an ended flow twice")
	}
}

func TestStateZeroedAfterEnd(t *testing.T) {
	var seen []int
	tb, err := New(Config{}, func(f *Flow[int], r Reason) { seen = append(seen, f.State) })
	if err != nil {
		t.Fatal(err)
	}
	f, _, _ := tb.Lookup(pkt(cli, srv, 17, 0, 0, 0, 1), 0)
	f.State = 42
	tb.Remove(f)
	g, _, _ := tb.Lookup(pkt(cli, srv, 17, 0, 0, 0, 1), 0)
	if len(seen) != 1 || seen[0] != 42 || g.State != 0 {
		t.Fatalf("callback saw %v, new flow state %d", seen, g.State)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{MaxFlows: -1}, {MaxFlows: MaxTableFlows + 1}, {ExpireBatch: -1}, {Timeouts: Timeouts{UDP: -1}},
	} {
		if _, err := New[int](cfg, nil); err == nil {
			t.Errorf("config %+v accepted", cfg)
		}
	}
}

func TestNoAllocs(t *testing.T) {
	tb, _ := newTable(t, Config{MaxFlows: 4096})
	pkts := make([]*decode.Packet, 8192)
	for i := range pkts {
		pkts[i] = tcp(netip.AddrPortFrom(cli.Addr(), uint16(i)), srv, SYN, 1, 0, 0)
	}
	for _, p := range pkts[:4096] {
		mustLookup(t, tb, p, 0)
	}
	hit := pkts[7]
	if n := testing.AllocsPerRun(1000, func() { _, _, _ = tb.Lookup(hit, 0) }); n != 0 {
		t.Errorf("lookup of an existing flow: %.2f allocs", n)
	}
	// churn: every lookup of a new key evicts an embryonic flow and reuses its entry
	i := 0
	if n := testing.AllocsPerRun(1000, func() { _, _, _ = tb.Lookup(pkts[i%len(pkts)], sec); i++ }); n != 0 {
		t.Errorf("create with eviction: %.2f allocs", n)
	}
	if n := testing.AllocsPerRun(100, func() { tb.Expire(sec) }); n != 0 {
		t.Errorf("expire: %.2f allocs", n)
	}
}

// Engine-like state, pointer-free as the flow doc recommends: two stream
// records, a protocol tag and an index into parser state.
type benchState struct {
	a, b   [40]byte
	app    uint8
	parser uint32
}

// BenchmarkLookup looks up existing flows in random order, the packet
// itself hot in cache as it is after decoding. "hot": each flow was seen
// within its requeue granularity (no list update); "requeue": every lookup
// moves the flow to the tail of its list (flows seen less than once a
// second).
func BenchmarkLookup(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		for _, mode := range []string{"hot", "requeue"} {
			b.Run(fmt.Sprintf("flows=%d/%s", n, mode), func(b *testing.B) {
				cfg := Config{MaxFlows: n, Lifetime: -1, Timeouts: Timeouts{TCPEmbryonic: 10000 * time.Hour}}
				tb, err := New[benchState](cfg, nil)
				if err != nil {
					b.Fatal(err)
				}
				keys := make([]xdp.FlowKey, n)
				dirs := make([]xdp.Direction, n)
				p := tcp(cli, srv, ACK, 1, 1, 0)
				for i := range keys {
					src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 16), byte(i >> 8)}), uint16(i))
					keys[i], dirs[i] = xdp.MakeFlowKey(src.Addr(), srv.Addr(), src.Port(), srv.Port(), 6)
					p.Key, p.Dir = keys[i], dirs[i]
					if _, _, err := tb.Lookup(p, 0); err != nil {
						b.Fatal(err)
					}
				}
				// Visit the flows in random order, reading the keys
				// sequentially. Passes alternate between two orders: with a
				// single one, requeueing would leave each flow's list
				// neighbour to be the next flow looked up, a prefetch that
				// real traffic does not give.
				rng := rand.New(rand.NewPCG(5, 6))
				type visit struct {
					key xdp.FlowKey
					dir xdp.Direction
				}
				var orders [2][]visit
				for o := range orders {
					orders[o] = make([]visit, n)
					for i, j := range rng.Perm(n) {
						orders[o][i] = visit{keys[j], dirs[j]}
					}
				}
				step := int64(0)
				if mode == "requeue" {
					step = sec
				}
				b.ReportAllocs()
				b.ResetTimer()
				i, pass, now := 0, 0, int64(0)
				for b.Loop() {
					v := &orders[pass&1][i]
					p.Key, p.Dir = v.key, v.dir
					now += step
					if _, _, err := tb.Lookup(p, now); err != nil {
						b.Fatal(err)
					}
					if i++; i == n {
						i, pass = 0, pass+1
					}
				}
				b.ReportMetric(float64(tb.EntryBytes()), "B/flow")
			})
		}
	}
}

// BenchmarkCreate measures creating a flow in a table that never fills
// (entries come from new chunks), so allocs/op is the amortised
// allocation per new flow.
func BenchmarkCreate(b *testing.B) {
	const n = 1 << 20
	pkts := make([]decode.Packet, n)
	for i := range pkts {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 16), byte(i >> 8)}), uint16(i))
		pkts[i] = *tcp(src, srv, SYN, 1, 0, 0)
	}
	b.ReportAllocs()
	var tb *Table[benchState]
	i := n
	for b.Loop() {
		if i == n {
			b.StopTimer()
			tb, _ = New[benchState](Config{MaxFlows: n}, nil)
			i = 0
			b.StartTimer()
		}
		if _, _, err := tb.Lookup(&pkts[i], 0); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkChurn: a full table where every packet is a new flow evicting an
// embryonic one (a SYN flood).
func BenchmarkChurn(b *testing.B) {
	const n = 100_000
	tb, _ := New[benchState](Config{MaxFlows: n}, nil)
	pkts := make([]decode.Packet, 4*n)
	for i := range pkts {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 16), byte(i >> 8)}), uint16(i))
		pkts[i] = *tcp(src, srv, SYN, 1, 0, 0)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, _, err := tb.Lookup(&pkts[i%len(pkts)], 0); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
