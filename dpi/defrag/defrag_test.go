package defrag_test

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/deepwall/deepwall/dpi/decode"
	"github.com/deepwall/deepwall/dpi/defrag"
	"github.com/deepwall/deepwall/internal/testnet"
)

// datagram builds a whole UDP frame of n payload bytes (byte i is 'a' +
// i%26, so every offset is told apart) from the client to the server.
func datagram(tb testing.TB, v6 bool, n int) []byte {
	tb.Helper()
	return datagramSpec(tb, v6, n, testnet.FrameSpec{})
}

// datagramSpec is datagram with spec's MACs and source port (when set).
func datagramSpec(tb testing.TB, v6 bool, n int, spec testnet.FrameSpec) []byte {
	tb.Helper()
	payload := make([]byte, n)
	for i := range payload {
		payload[i] = 'a' + byte(i%26)
	}
	src, dst := testnet.Client4, testnet.Server4
	if v6 {
		src, dst = testnet.Client6, testnet.Server6
	}
	if spec.Src.Port() != 0 {
		src = netip.AddrPortFrom(src.Addr(), spec.Src.Port())
	}
	return testnet.Frame(tb, testnet.FrameSpec{SrcMAC: spec.SrcMAC, DstMAC: spec.DstMAC, Src: src, Dst: dst, Proto: testnet.ProtoUDP, Payload: payload})
}

// piece is one fragment of a test: IP payload bytes [off, end), more,
// and, when fill is set, its bytes replaced (a conflicting copy).
type piece struct {
	off, end int
	more     bool
	fill     byte
	want     defrag.Outcome
}

// feed adds the pieces of whole (id 7) and returns the last Datagram.
func feed(tb testing.TB, tab *defrag.Table, whole []byte, pieces []piece) *defrag.Datagram {
	tb.Helper()
	dec := decode.NewDecoder()
	var p decode.Packet
	var last *defrag.Datagram
	for i, pc := range pieces {
		fr := testnet.Frag(whole, 7, pc.off, pc.end, pc.more)
		if pc.fill != 0 {
			hdr := len(fr) - (pc.end - pc.off)
			for j := hdr; j < len(fr); j++ {
				fr[j] = pc.fill
			}
		}
		if err := dec.Decode(fr, &p); err != nil {
			tb.Fatalf("piece %d: decode: %v", i, err)
		}
		if p.Flags&decode.FlagFragment == 0 {
			tb.Fatalf("piece %d: not a fragment: %s", i, p.String())
		}
		d, o := tab.Add(int64(i), 0, fr, &p)
		if o != pc.want {
			tb.Fatalf("piece %d [%d,%d) more %v: %v, want %v", i, pc.off, pc.end, pc.more, o, pc.want)
		}
		if (d != nil) != (o == defrag.OutcomeComplete) {
			tb.Fatalf("piece %d: datagram %v with %v", i, d != nil, o)
		}
		if d != nil {
			last = d
		}
	}
	return last
}

const (
	held = defrag.OutcomeHeld
	done = defrag.OutcomeComplete
)

// addCases are fragment sequences with what Add does and what comes out;
// TestPrivilegedDifferentialDefrag sends them to a real kernel too.
var addCases = []struct {
	name   string
	v6     bool
	n      int // UDP payload bytes (the IP payload is 8 more)
	pieces []piece
	// want is the reassembled UDP payload, "" for no datagram; "whole"
	// for the datagram's own payload.
	want string
	// heldN is how many fragments Datagram.Held must have.
	heldN int
}{
	{"in order", false, 2992, []piece{{0, 1480, true, 0, held}, {1480, 2960, true, 0, held}, {2960, 3000, false, 0, done}}, "whole", 2},
	{"reverse", false, 2992, []piece{{2960, 3000, false, 0, held}, {1480, 2960, true, 0, held}, {0, 1480, true, 0, done}}, "whole", 2},
	{"ipv6 in order", true, 2992, []piece{{0, 1448, true, 0, held}, {1448, 2896, true, 0, held}, {2896, 3000, false, 0, done}}, "whole", 2},
	{"ipv6 reverse", true, 2992, []piece{{2896, 3000, false, 0, held}, {0, 1448, true, 0, held}, {1448, 2896, true, 0, done}}, "whole", 2},
	// A copy inside a run is ignored even with other bytes: the first
	// copy wins, as in Linux, and only it is released.
	{"duplicate inside run", false, 40, []piece{{0, 16, true, 0, held}, {16, 32, true, 0, held}, {8, 24, true, 'X', defrag.OutcomeDuplicate}, {32, 48, false, 0, done}}, "whole", 2},
	{"exact duplicate", false, 40, []piece{{0, 16, true, 0, held}, {0, 16, true, 'X', defrag.OutcomeDuplicate}, {16, 48, false, 0, done}}, "whole", 1},
	// Out of order, each fragment is a run of its own: a copy across
	// two of them is an overlap, and the datagram goes.
	{"across runs", false, 40, []piece{{16, 32, true, 0, held}, {0, 16, true, 0, held}, {8, 24, true, 0, defrag.OutcomeOverlap}}, "", 0},
	{"partial overlap", false, 40, []piece{{0, 24, true, 0, held}, {16, 48, false, 'X', defrag.OutcomeOverlap}}, "", 0},
	{"overlap then fresh", false, 40, []piece{{0, 24, true, 0, held}, {16, 48, false, 'X', defrag.OutcomeOverlap}, {0, 24, true, 0, held}, {24, 48, false, 0, done}}, "whole", 1},
	{"ipv6 overlap", true, 40, []piece{{0, 24, true, 0, held}, {16, 48, false, 0, defrag.OutcomeOverlap}}, "", 0},
	{"two ends", false, 40, []piece{{24, 48, false, 0, held}, {16, 40, false, 0, defrag.OutcomeMalformed}}, "", 0},
	{"end before data", false, 40, []piece{{16, 48, true, 0, held}, {8, 16, false, 0, defrag.OutcomeMalformed}}, "", 0},
	{"data past end", false, 40, []piece{{8, 16, false, 0, held}, {16, 48, true, 0, defrag.OutcomeMalformed}}, "", 0},
	// IPv4 cuts a non-last fragment to a multiple of 8 bytes, as Linux
	// does: the 5 bytes past the cut are ignored.
	{"ipv4 odd length cut", false, 40, []piece{{0, 21, true, 0, held}, {16, 48, false, 0, done}}, "whole", 1},
	{"ipv4 odd length short", false, 40, []piece{{0, 5, true, 0, defrag.OutcomeMalformed}}, "", 0},
	{"ipv6 odd length", true, 40, []piece{{0, 21, true, 0, defrag.OutcomeBadFragment}, {0, 16, true, 0, held}, {16, 48, false, 0, done}}, "whole", 1},
	{"single last fragment", false, 40, []piece{{16, 48, false, 0, held}, {0, 16, true, 0, done}}, "whole", 1},
}

func TestAdd(t *testing.T) {
	for _, tt := range addCases {
		t.Run(tt.name, func(t *testing.T) {
			whole := datagram(t, tt.v6, tt.n)
			tab := defrag.New(defrag.Config{})
			d := feed(t, tab, whole, tt.pieces)
			if tt.want == "" {
				if d != nil {
					t.Fatalf("a datagram came out")
				}
				return
			}
			if d == nil {
				t.Fatal("no datagram")
			}
			checkDatagram(t, d, whole)
			// A clone is the same datagram in memory of its own.
			c := d.Clone()
			checkDatagram(t, c, whole)
			for i := range d.Held {
				if !bytes.Equal(c.Held[i], d.Held[i]) || &c.Held[i][0] == &d.Held[i][0] {
					t.Fatalf("clone's held frame %d differs or is shared", i)
				}
			}
			if len(d.Held) != tt.heldN {
				t.Errorf("%d held frames, want %d", len(d.Held), tt.heldN)
			}
			if s := tab.Stats(); s.Datagrams != 0 {
				t.Errorf("%d datagrams left in the table", s.Datagrams)
			}
		})
	}
}

// checkDatagram checks that d's frame decodes to whole's datagram with
// valid checksums.
func checkDatagram(tb testing.TB, d *defrag.Datagram, whole []byte) {
	tb.Helper()
	dec := decode.NewDecoder()
	var got, want decode.Packet
	if err := dec.Decode(d.Frame, &got); err != nil {
		tb.Fatalf("decode the datagram: %v", err)
	}
	gotPayload := bytes.Clone(got.Payload)
	if err := dec.Decode(whole, &want); err != nil {
		tb.Fatal(err)
	}
	if got.Flags&decode.FlagFragment != 0 || got.Proto != want.Proto || got.Key != want.Key {
		tb.Fatalf("datagram %s, want %s", got.String(), want.String())
	}
	if !bytes.Equal(gotPayload, want.Payload) {
		tb.Fatalf("payload %q, want %q", gotPayload, want.Payload)
	}
	if got.IPVersion == 4 {
		ip := d.Frame[got.L3Off:got.L4Off]
		var sum uint32
		for i := 0; i < len(ip); i += 2 {
			sum += uint32(ip[i])<<8 | uint32(ip[i+1])
		}
		for sum > 0xffff {
			sum = sum>>16 + sum&0xffff
		}
		if sum != 0xffff {
			tb.Errorf("IPv4 header checksum wrong")
		}
	}
	// The UDP checksum of the whole datagram carried over intact.
	if !bytes.Equal(d.Frame[got.L4Off:got.L4Off+8], whole[want.L4Off:want.L4Off+8]) {
		tb.Errorf("UDP header %x, want %x", d.Frame[got.L4Off:got.L4Off+8], whole[want.L4Off:want.L4Off+8])
	}
}

func TestBounds(t *testing.T) {
	whole := datagram(t, false, 2000)
	dec := decode.NewDecoder()
	var p decode.Packet
	add := func(tab *defrag.Table, fr []byte, now int64) defrag.Outcome {
		t.Helper()
		if err := dec.Decode(fr, &p); err != nil {
			t.Fatal(err)
		}
		_, o := tab.Add(now, 0, fr, &p)
		return o
	}
	t.Run("too many fragments", func(t *testing.T) {
		tab := defrag.New(defrag.Config{})
		var o defrag.Outcome
		for i := 0; i <= defrag.MaxFragments && o != defrag.OutcomeTooMany; i++ {
			o = add(tab, testnet.Frag(whole, 1, i*8, i*8+8, true), 0)
		}
		if o != defrag.OutcomeTooMany {
			t.Fatalf("%d fragments: %v", defrag.MaxFragments+1, o)
		}
		if s := tab.Stats(); s.Datagrams != 0 || s.Bytes != 0 {
			t.Errorf("left %+v", s)
		}
	})
	t.Run("oversize", func(t *testing.T) {
		tab := defrag.New(defrag.Config{})
		fr := testnet.Frag(whole, 1, 0, 16, true)
		// Offset 65528 with 16 bytes ends past 65,535.
		fr[14+6], fr[14+7] = 0x3f, 0xff
		testnet.FixIPv4Checksum(fr)
		if o := add(tab, fr, 0); o != defrag.OutcomeMalformed {
			t.Fatalf("%v", o)
		}
	})
	t.Run("memory", func(t *testing.T) {
		tab := defrag.New(defrag.Config{MaxBytes: 8 << 10})
		var o defrag.Outcome
		n := 0
		for ; n < 100 && o != defrag.OutcomeFull; n++ {
			o = add(tab, testnet.Frag(whole, uint32(n), 0, 8, true), 0)
		}
		if o != defrag.OutcomeFull || n > 8 {
			t.Fatalf("after %d: %v", n, o)
		}
		if s := tab.Stats(); s.Bytes > 8<<10 || s.Datagrams != n-1 {
			t.Fatalf("%+v after %d", s, n)
		}
		// Expiry gives it all back, and room for new fragments.
		if got := tab.Expire(int64(defrag.DefaultTimeout)); got != n-1 {
			t.Fatalf("expired %d, want %d", got, n-1)
		}
		if s := tab.Stats(); s.Bytes != 0 || s.Datagrams != 0 || s.TimedOut != uint64(n-1) {
			t.Fatalf("after expiry %+v", s)
		}
		if o := add(tab, testnet.Frag(whole, 1000, 0, 8, true), int64(defrag.DefaultTimeout)); o != held {
			t.Fatalf("after expiry: %v", o)
		}
	})
	t.Run("per pair", func(t *testing.T) {
		tab := defrag.New(defrag.Config{MaxPerPair: 3})
		for i := range 3 {
			if o := add(tab, testnet.Frag(whole, uint32(i), 0, 8, true), 0); o != held {
				t.Fatalf("%d: %v", i, o)
			}
		}
		if o := add(tab, testnet.Frag(whole, 3, 0, 8, true), 0); o != defrag.OutcomeFull {
			t.Fatalf("fourth: %v", o)
		}
		other := datagram(t, true, 100)
		if o := add(tab, testnet.Frag(other, 3, 0, 16, true), 0); o != held {
			t.Fatalf("another pair: %v", o)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		tab := defrag.New(defrag.Config{Timeout: time.Second})
		if o := add(tab, testnet.Frag(whole, 1, 0, 1000, true), 0); o != held {
			t.Fatal(o)
		}
		// The rest, too late: the first fragment is gone, so nothing
		// completes.
		if o := add(tab, testnet.Frag(whole, 1, 1000, 2008, false), int64(time.Second)); o != held {
			t.Fatal(o)
		}
		if s := tab.Stats(); s.TimedOut != 1 || s.Datagrams != 1 {
			t.Fatalf("%+v", s)
		}
	})
}

// TestSeparateDatagrams: identification, protocol (IPv4) and side keep
// datagrams apart.
func TestSeparateDatagrams(t *testing.T) {
	whole := datagram(t, false, 40)
	dec := decode.NewDecoder()
	var p decode.Packet
	tab := defrag.New(defrag.Config{})
	for i, side := range []uint8{0, 1} {
		for id := uint32(1); id <= 2; id++ {
			fr := testnet.Frag(whole, id, 0, 24, true)
			if err := dec.Decode(fr, &p); err != nil {
				t.Fatal(err)
			}
			if _, o := tab.Add(int64(i), uint32(side), fr, &p); o != held {
				t.Fatalf("side %d id %d: %v", side, id, o)
			}
		}
	}
	if s := tab.Stats(); s.Datagrams != 4 {
		t.Fatalf("%d datagrams, want 4", s.Datagrams)
	}
	fr := testnet.Frag(whole, 2, 24, 48, false)
	if err := dec.Decode(fr, &p); err != nil {
		t.Fatal(err)
	}
	d, o := tab.Add(9, 1, fr, &p)
	if o != done {
		t.Fatal(o)
	}
	checkDatagram(t, d, whole)
}

// TestIPv6HeaderSplit: RFC 7112, an IPv6 first fragment must hold the
// whole upper-layer header (20 bytes of TCP); IPv4 has no such rule.
func TestIPv6HeaderSplit(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		src, dst := testnet.Client4, testnet.Server4
		if v6 {
			src, dst = testnet.Client6, testnet.Server6
		}
		whole := testnet.Frame(t, testnet.FrameSpec{Src: src, Dst: dst, Proto: testnet.ProtoTCP, Flags: testnet.ACK, Payload: []byte("GET / HTTP/1.1\r\n\r\n")})
		want := held
		if v6 {
			want = defrag.OutcomeBadFragment
		}
		tab := defrag.New(defrag.Config{})
		feed(t, tab, whole, []piece{{0, 16, true, 0, want}})
	}
}
