package reasm

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/deepwall/deepwall/dpi/decode"
)

const (
	SYN = decode.TCPSyn
	FIN = decode.TCPFin
	RST = decode.TCPRst
	ACK = decode.TCPAck
)

type sink struct {
	out   []byte
	calls int
}

func (k *sink) deliver(b []byte) {
	k.out = append(k.out, b...)
	k.calls++
}

// op is one step of a table test: a Push (or an Ack when ack is set).
type op struct {
	seq     uint32
	flags   decode.TCPFlags
	data    string
	ack     bool
	status  Status
	want    Flags // flags that must be set
	deliver int   // bytes expected to be delivered; -1: don't check
}

func push(seq uint32, flags decode.TCPFlags, data string, st Status, want Flags, n int) op {
	return op{seq: seq, flags: flags, data: data, status: st, want: want, deliver: n}
}

func ackOp(seq uint32) op { return op{seq: seq, ack: true} }

func TestPush(t *testing.T) {
	const isn = 1000
	syn := push(isn, SYN, "", StatusEmpty, 0, 0)
	wrap := uint32(0xfffffffd)
	for _, tc := range []struct {
		name string
		cfg  Config
		ops  []op
		out  string
	}{
		{"in order", Config{}, []op{syn,
			push(1001, ACK, "abc", StatusDelivered, 0, 3),
			push(1004, ACK, "def", StatusDelivered, 0, 3)}, "abcdef"},
		{"tcp fast open data in the syn", Config{}, []op{
			push(100, SYN, "hi", StatusDelivered, 0, 2),
			push(103, ACK, "!", StatusDelivered, 0, 1)}, "hi!"},
		{"reordered", Config{}, []op{syn,
			push(1004, ACK, "def", StatusBuffered, 0, 0),
			push(1007, ACK, "g", StatusBuffered, 0, 0),
			push(1001, ACK, "abc", StatusDelivered, 0, 7)}, "abcdefg"},
		{"exact retransmission", Config{}, []op{syn,
			push(1001, ACK, "abc", StatusDelivered, 0, 3),
			push(1001, ACK, "abc", StatusDuplicate, FlagOverlap, 0)}, "abc"},
		{"retransmission changing delivered bytes", Config{}, []op{syn,
			push(1001, ACK, "abc", StatusDelivered, 0, 3),
			push(1001, ACK, "xbc", StatusConflict, 0, 0),
			push(1004, ACK, "d", StatusDelivered, 0, 1)}, "abcd"},
		{"overlap same bytes plus new", Config{}, []op{syn,
			push(1001, ACK, "abc", StatusDelivered, 0, 3),
			push(1002, ACK, "bcde", StatusDelivered, FlagOverlap, 2)}, "abcde"},
		{"overlap changed old byte plus new rejects all", Config{}, []op{syn,
			push(1001, ACK, "abc", StatusDelivered, 0, 3),
			push(1002, ACK, "bXde", StatusConflict, 0, 0),
			push(1004, ACK, "de", StatusDelivered, 0, 2)}, "abcde"},
		{"out-of-order overlap, different bytes", Config{}, []op{syn,
			push(1004, ACK, "def", StatusBuffered, 0, 0),
			push(1004, ACK, "deX", StatusConflict, 0, 0),
			push(1001, ACK, "abc", StatusDelivered, 0, 6)}, "abcdef"},
		{"out-of-order overlap, same bytes, wider", Config{}, []op{syn,
			push(1005, ACK, "ef", StatusBuffered, 0, 0),
			push(1004, ACK, "defg", StatusBuffered, FlagOverlap, 0),
			push(1009, ACK, "i", StatusBuffered, 0, 0),
			push(1003, ACK, "cdefghi", StatusBuffered, FlagOverlap, 0),
			push(1001, ACK, "ab", StatusDelivered, 0, 9)}, "abcdefghi"},
		{"out-of-order duplicate", Config{}, []op{syn,
			push(1004, ACK, "def", StatusBuffered, 0, 0),
			push(1005, ACK, "ef", StatusDuplicate, FlagOverlap, 0),
			push(1001, ACK, "abc", StatusDelivered, 0, 6)}, "abcdef"},
		{"gap filler conflicting with buffered bytes", Config{}, []op{syn,
			push(1004, ACK, "def", StatusBuffered, 0, 0),
			push(1001, ACK, "abcdXf", StatusConflict, 0, 0),
			push(1001, ACK, "abc", StatusDelivered, 0, 6)}, "abcdef"},
		{"gap filler covering buffered bytes", Config{}, []op{syn,
			push(1004, ACK, "de", StatusBuffered, 0, 0),
			push(1008, ACK, "hij", StatusBuffered, 0, 0),
			push(1001, ACK, "abcdefghi", StatusDelivered, FlagOverlap, 10)}, "abcdefghij"},
		{"wraparound in order", Config{}, []op{
			push(wrap, SYN, "", StatusEmpty, 0, 0),
			push(wrap+1, ACK, "abc", StatusDelivered, 0, 3), // 0xfffffffe .. 0x00000000
			push(1, ACK, "def", StatusDelivered, 0, 3)}, "abcdef"},
		{"wraparound reordered", Config{}, []op{
			push(wrap, SYN, "", StatusEmpty, 0, 0),
			push(1, ACK, "def", StatusBuffered, 0, 0),
			push(wrap+1, ACK, "abc", StatusDelivered, 0, 6),
			push(wrap+2, ACK, "bcd", StatusDuplicate, FlagOverlap, 0)}, "abcdef"},
		{"mid-stream pick-up", Config{}, []op{
			push(5000, ACK, "abc", StatusDelivered, FlagMidstream, 3),
			push(4990, ACK, "0123456789", StatusDuplicate, FlagOld, 0),
			push(4998, ACK, "xxab", StatusDuplicate, FlagOld|FlagOverlap, 0),
			push(5003, ACK, "d", StatusDelivered, 0, 1)}, "abcd"},
		{"keep-alives and zero-window probe", Config{}, []op{syn,
			push(1001, ACK, "abc", StatusDelivered, 0, 3),
			push(1003, ACK, "", StatusEmpty, FlagKeepAlive, 0),
			push(1003, ACK, "Z", StatusDuplicate, FlagKeepAlive, 0),
			push(1004, ACK, "d", StatusDelivered, 0, 1),
			push(1004, ACK, "d", StatusDuplicate, 0, 0)}, "abcd"},
		{"acknowledged bytes are old", Config{}, []op{syn,
			push(1001, ACK, "abcdef", StatusDelivered, 0, 6),
			ackOp(1004),
			push(1001, ACK, "XYZ", StatusDuplicate, FlagOld, 0),
			push(1003, ACK, "Cde", StatusDuplicate, FlagOld|FlagOverlap, 0), // "C" acknowledged, "de" compared
			push(1004, ACK, "Xef", StatusConflict, 0, 0),
			ackOp(1007),
			push(1001, ACK, "XYZXYZ", StatusDuplicate, FlagOld, 0)}, "abcdef"},
		{"bytes past the history limit are unverifiable until acknowledged", Config{MaxHistory: 4}, []op{syn,
			push(1001, ACK, "abcdefgh", StatusDelivered, 0, 8),
			push(1001, ACK, "ABCD", StatusUnverified, FlagUnverified, 0),
			push(1005, ACK, "eXgh", StatusConflict, 0, 0),
			push(1003, ACK, "CDefghi", StatusUnverified, FlagUnverified, 0),
			ackOp(1005),
			push(1003, ACK, "CDefghi", StatusDelivered, FlagOld|FlagOverlap, 1)}, "abcdefghi"},
		{"no history", Config{MaxHistory: -1}, []op{syn,
			push(1001, ACK, "abc", StatusDelivered, 0, 3),
			push(1001, ACK, "xyz", StatusUnverified, FlagUnverified, 0),
			ackOp(1004),
			push(1001, ACK, "xyz", StatusDuplicate, FlagOld, 0)}, "abc"},
		{"fin in order", Config{}, []op{syn,
			push(1001, ACK|FIN, "abc", StatusDelivered, FlagFIN, 3),
			push(1001, ACK|FIN, "abc", StatusDuplicate, FlagOverlap, 0),
			push(1004, ACK, "d", StatusOutOfWindow, FlagAfterFIN, 0),
			push(1003, ACK|FIN, "", StatusOutOfWindow, FlagBadFIN, 0)}, "abc"},
		{"bare fin, then acks", Config{}, []op{syn,
			push(1001, ACK, "ab", StatusDelivered, 0, 2),
			push(1003, ACK|FIN, "", StatusEmpty, FlagFIN, 0),
			push(1004, ACK, "", StatusEmpty, 0, 0), // the last ACK: the FIN took seq 1003
			push(1003, ACK|FIN, "", StatusEmpty, 0, 0),
			push(1004, ACK, "x", StatusOutOfWindow, FlagAfterFIN, 0)}, "ab"},
		{"fin out of order", Config{}, []op{syn,
			push(1004, ACK|FIN, "def", StatusBuffered, 0, 0),
			push(1001, ACK, "abc", StatusDelivered, FlagFIN, 6)}, "abcdef"},
		{"second fin out of window", Config{MaxAhead: 1 << 16}, []op{syn,
			push(1001, ACK|FIN, "abc", StatusDelivered, FlagFIN, 3),
			// a FIN 245 MB ahead (seen in nDPI's KakaoTalk_chat.pcap):
			// the receiver discards it, it moves no FIN
			push(1001+245_387_053, ACK|FIN, "", StatusOutOfWindow, 0, 0),
			push(1003, ACK|FIN, "", StatusOutOfWindow, FlagBadFIN, 0)}, "abc"},
		{"fin before delivered data", Config{}, []op{syn,
			push(1001, ACK, "abcdef", StatusDelivered, 0, 6),
			push(1001, ACK|FIN, "abc", StatusOutOfWindow, FlagBadFIN, 0)}, "abcdef"},
		{"rst at the next sequence", Config{}, []op{syn,
			push(1001, ACK, "abc", StatusDelivered, 0, 3),
			push(1006, ACK, "f", StatusBuffered, 0, 0),
			push(1002, RST, "", StatusEmpty, FlagInvalidRST, 0),
			push(1004, RST, "", StatusReset, 0, 0),
			push(1004, ACK, "de", StatusClosed, 0, 0)}, "abc"},
		{"rst after fin", Config{}, []op{syn,
			push(1001, ACK|FIN, "a", StatusDelivered, FlagFIN, 1),
			push(1003, RST, "", StatusReset, 0, 0)}, "a"},
		{"syn retransmitted, then changed", Config{}, []op{syn,
			push(1000, SYN, "", StatusEmpty, 0, 0),
			push(1001, ACK, "a", StatusDelivered, 0, 1),
			push(7000, SYN, "", StatusEmpty, FlagBadSYN, 0),
			push(7000, SYN, "data", StatusOutOfWindow, FlagBadSYN, 0),
			push(1002, ACK, "b", StatusDelivered, 0, 1)}, "ab"},
		{"new isn before any data starts over", Config{}, []op{syn,
			push(7000, SYN, "", StatusEmpty, 0, 0),
			push(7001, ACK, "a", StatusDelivered, 0, 1)}, "a"},
		{"segment limit", Config{MaxSegments: 2}, []op{syn,
			push(1003, ACK, "c", StatusBuffered, 0, 0),
			push(1005, ACK, "e", StatusBuffered, 0, 0),
			push(1007, ACK, "g", StatusLimit, FlagLimitSegments, 0),
			push(1001, ACK, "ab", StatusDelivered, 0, 3),
			push(1007, ACK, "g", StatusBuffered, 0, 0)}, "abc"},
		{"byte limit", Config{MaxBufferedBytes: 5}, []op{syn,
			push(1003, ACK, "cde", StatusBuffered, 0, 0),
			push(1006, ACK, "fgh", StatusLimit, FlagLimitBytes, 0),
			push(1006, ACK, "fg", StatusBuffered, 0, 0),
			push(1001, ACK, "ab", StatusDelivered, 0, 7)}, "abcdefg"},
		{"pool limit", Config{PoolBytes: 2 * blockSize, MaxHistory: -1}, []op{syn,
			push(1101, ACK, string(bytes.Repeat([]byte("x"), 2*blockSize+1)), StatusLimit, FlagLimitPool, 0),
			push(1101, ACK, string(bytes.Repeat([]byte("x"), 2*blockSize)), StatusBuffered, 0, 0)}, ""},
		{"too far ahead", Config{MaxAhead: 100}, []op{syn,
			push(1001+98, ACK, "ab", StatusBuffered, 0, 0),
			push(1001+99, ACK, "bc", StatusOutOfWindow, 0, 0)}, ""},
		{"depth", Config{Depth: 5}, []op{syn,
			push(1001, ACK, "abc", StatusDelivered, 0, 3),
			push(1008, ACK, "hij", StatusDepth, 0, 0),
			push(1004, ACK, "defg", StatusDelivered, FlagDepthReached, 2),
			push(1008, ACK, "hij", StatusDepth, 0, 0)}, "abcde"},
		{"depth reached by buffered bytes", Config{Depth: 5}, []op{syn,
			push(1003, ACK, "cdefg", StatusBuffered, 0, 0),
			push(1001, ACK, "ab", StatusDelivered, FlagDepthReached, 5)}, "abcde"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			var s Stream
			var k sink
			for i, o := range tc.ops {
				if o.ack {
					r.Ack(&s, o.seq)
					continue
				}
				before := len(k.out)
				res := r.Push(&s, Segment{Seq: o.seq, Flags: o.flags, Payload: []byte(o.data)}, k.deliver)
				if res.Status != o.status || res.Flags&o.want != o.want || (o.deliver >= 0 && res.Delivered != o.deliver) {
					t.Fatalf("op %d (seq %d %q): %v, want %v with flags %#x delivering %d", i, o.seq, o.data, res, o.status, uint32(o.want), o.deliver)
				}
				if len(k.out)-before != res.Delivered {
					t.Fatalf("op %d: callback got %d bytes, result says %d", i, len(k.out)-before, res.Delivered)
				}
				if res.Status.Drop() != (o.status == StatusConflict || o.status == StatusOutOfWindow || o.status == StatusLimit || o.status == StatusUnverified) {
					t.Fatalf("op %d: Drop() wrong for %v", i, res.Status)
				}
			}
			if string(k.out) != tc.out {
				t.Errorf("stream %q, want %q", k.out, tc.out)
			}
			r.Release(&s)
			if r.pool.inUse != 0 {
				t.Errorf("%d pool blocks in use after release", r.pool.inUse)
			}
		})
	}
}

// In-order segments are delivered without a copy: the callback gets the
// segment's own memory.
func TestZeroCopyInOrder(t *testing.T) {
	r, _ := New(Config{})
	var s Stream
	r.Push(&s, Segment{Seq: 9, Flags: SYN}, func([]byte) {})
	payload := []byte("hello")
	var got []byte
	r.Push(&s, Segment{Seq: 10, Flags: ACK, Payload: payload}, func(b []byte) { got = b })
	if &got[0] != &payload[0] {
		t.Fatal("in-order bytes were copied")
	}
}

func TestPushPermutations(t *testing.T) {
	// every order of 5 segments with overlaps and a duplicate delivers the
	// stream once, in order
	data := []byte("the quick brown fox jumps")
	segs := []struct{ off, n int }{{0, 6}, {4, 8}, {12, 5}, {17, 8}, {4, 8}}
	perm := []int{0, 1, 2, 3, 4}
	var permute func(int)
	count := 0
	permute = func(k int) {
		if k == len(perm) {
			count++
			r, _ := New(Config{})
			var s Stream
			var out sink
			r.Push(&s, Segment{Seq: 99, Flags: SYN}, out.deliver)
			for _, i := range perm {
				g := segs[i]
				res := r.Push(&s, Segment{Seq: 100 + uint32(g.off), Flags: ACK, Payload: data[g.off : g.off+g.n]}, out.deliver)
				if res.Status.Drop() {
					t.Fatalf("order %v: %v", perm, res)
				}
			}
			if !bytes.Equal(out.out, data) {
				t.Fatalf("order %v: %q", perm, out.out)
			}
			r.Release(&s)
			if r.pool.inUse != 0 {
				t.Fatalf("order %v: %d blocks leaked", perm, r.pool.inUse)
			}
			return
		}
		for i := k; i < len(perm); i++ {
			perm[k], perm[i] = perm[i], perm[k]
			permute(k + 1)
			perm[k], perm[i] = perm[i], perm[k]
		}
	}
	permute(0)
	if count != 120 {
		t.Fatalf("%d permutations", count)
	}
}

// A TCP-like sender over a hostile network: random segmentation,
// reordering, duplication (with re-segmented retransmissions), ACKs; a
// segment the reassembler refuses (limits) is sent again later, as TCP
// would after the drop. Whatever happens, the receiver side delivers
// exactly the original bytes, once, in order.
func TestPropertyDeliversOriginalOnce(t *testing.T) {
	var total Stats
	defer func() {
		t.Logf("segments %d: buffered %d, duplicates %d, limits %d, out of window %d, unverified %d, history lost %d",
			total.Segments, total.Buffered, total.Duplicates, total.Limits, total.OutOfWindow, total.Unverified, total.HistoryLost)
		if total.Buffered == 0 || total.Duplicates == 0 || total.Limits == 0 {
			t.Error("the property test did not exercise buffering, duplicates and limits")
		}
	}()
	for seed := range uint64(1000) {
		rng := rand.New(rand.NewPCG(seed, 99))
		n := 1 + rng.IntN(30000)
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		isn := rng.Uint32()
		if seed%3 == 0 {
			isn = 0xffffffff - uint32(rng.IntN(n+2)) // wrap inside the stream
		}
		cfg := Config{}
		if seed%2 == 1 { // tight limits: refusals and retransmissions
			cfg = Config{MaxBufferedBytes: 1 + rng.IntN(4000), MaxSegments: 1 + rng.IntN(8), MaxHistory: rng.IntN(3000) - 500, PoolBytes: blockSize * (2 + rng.IntN(40))}
		}
		r, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		var s Stream
		var out sink
		type seg struct{ off, n int }
		var queue []seg
		for off := 0; off < n; {
			l := min(1+rng.IntN(1500), n-off)
			queue = append(queue, seg{off, l})
			off += l
		}
		r.Push(&s, Segment{Seq: isn, Flags: SYN}, out.deliver)
		for steps := 0; len(queue) > 0; steps++ {
			if steps > 1_000_000 {
				t.Fatalf("seed %d: no progress, %d delivered of %d", seed, len(out.out), n)
			}
			// take a segment from near the front (bounded reordering)
			i := rng.IntN(min(len(queue), 8))
			g := queue[i]
			queue = append(queue[:i], queue[i+1:]...)
			switch rng.IntN(10) {
			case 0: // duplicate it for later
				queue = append(queue, g)
			case 1: // a retransmission covering it and its neighbours
				a := max(0, g.off-rng.IntN(700))
				b := min(n, g.off+g.n+rng.IntN(700))
				queue = append(queue, seg{a, b - a})
			}
			fl := ACK
			if g.off+g.n == n {
				fl |= FIN
			}
			res := r.Push(&s, Segment{Seq: isn + 1 + uint32(g.off), Flags: fl, Payload: data[g.off : g.off+g.n]}, out.deliver)
			if res.Status == StatusConflict {
				t.Fatalf("seed %d: conflict on identical bytes: %v", seed, res)
			}
			if res.Status.Drop() {
				queue = append(queue, g) // TCP retransmits it
			}
			if !bytes.Equal(out.out, data[:len(out.out)]) {
				t.Fatalf("seed %d: delivered bytes differ from the original", seed)
			}
			if rng.IntN(4) == 0 { // the receiver acknowledges part of what it has
				r.Ack(&s, isn+1+uint32(rng.IntN(len(out.out)+1)))
			}
			if s.Buffered() > r.cfg.MaxBufferedBytes || int(s.oooSegs) > r.cfg.MaxSegments || r.pool.inUse > r.pool.max {
				t.Fatalf("seed %d: limits exceeded: %d bytes %d segs %d blocks", seed, s.Buffered(), s.oooSegs, r.pool.inUse)
			}
			if len(out.out) == n && s.Done() {
				break
			}
		}
		if !bytes.Equal(out.out, data) || !s.Done() {
			t.Fatalf("seed %d: delivered %d of %d bytes, done %v", seed, len(out.out), n, s.Done())
		}
		r.Release(&s)
		if r.pool.inUse != 0 {
			t.Fatalf("seed %d: %d blocks leaked", seed, r.pool.inUse)
		}
		st := r.Stats()
		total.Segments += st.Segments
		total.Buffered += st.Buffered
		total.Duplicates += st.Duplicates
		total.Limits += st.Limits
		total.OutOfWindow += st.OutOfWindow
		total.Unverified += st.Unverified
		total.HistoryLost += st.HistoryLost
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{MaxBufferedBytes: -1}, {MaxSegments: 1 << 16}, {MaxAhead: MaxMaxAhead + 1}, {PoolBytes: 10}, {Depth: -5},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("config %+v accepted", cfg)
		}
	}
}

func TestNoAllocs(t *testing.T) {
	r, _ := New(Config{})
	var s Stream
	var total int
	deliver := func(b []byte) { total += len(b) }
	r.Push(&s, Segment{Seq: 0, Flags: SYN}, deliver)
	payload := make([]byte, 1448)
	seq := uint32(1)
	// warm the pool up
	for range 200 {
		r.Push(&s, Segment{Seq: seq + 1448, Flags: ACK, Payload: payload}, deliver)
		r.Push(&s, Segment{Seq: seq, Flags: ACK, Payload: payload}, deliver)
		seq += 2 * 1448
		r.Ack(&s, seq)
	}
	if n := testing.AllocsPerRun(500, func() {
		r.Push(&s, Segment{Seq: seq + 1448, Flags: ACK, Payload: payload}, deliver) // buffered
		r.Push(&s, Segment{Seq: seq, Flags: ACK, Payload: payload}, deliver)        // fills the gap
		r.Push(&s, Segment{Seq: seq, Flags: ACK, Payload: payload}, deliver)        // duplicate
		seq += 2 * 1448
		r.Ack(&s, seq)
	}); n != 0 {
		t.Errorf("%.1f allocations per round", n)
	}
}

func FuzzReassembly(f *testing.F) {
	f.Add([]byte{0, 0, 0, 10, 0, 0, 0, 5, 10, 0})
	f.Add([]byte{1, 0x80, 0, 0, 20, 1, 0, 0, 20, 1, 0, 3, 4, 0, 0, 40, 8, 2, 0, 10, 30})
	f.Add(bytes.Repeat([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 200, 17}, 20))
	ref := make([]byte, 1<<16)
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range ref {
		ref[i] = byte(rng.Uint32())
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 2 {
			return
		}
		// the first bytes choose the limits and the initial sequence number
		cfg := Config{
			MaxBufferedBytes: 1 + int(in[0])*64, MaxSegments: 1 + int(in[0]%16),
			MaxHistory: int(in[1])*32 - 1024, MaxAhead: 1 << 14, PoolBytes: blockSize * (1 + int(in[1]%32)),
			Depth: int64(in[0]&0xf0) * 128,
		}
		corrupt := in[1]&1 == 1
		isn := uint32(0xffffff00) + uint32(in[1])
		in = in[2:]
		r, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		var s Stream
		var out []byte
		deliver := func(b []byte) { out = append(out, b...) }
		if len(in) > 0 && in[0]&1 == 0 {
			r.Push(&s, Segment{Seq: isn - 1, Flags: SYN}, deliver)
		}
		for len(in) >= 5 {
			off := int(in[0])<<8 | int(in[1])
			n := int(in[2]) * 8
			kind := in[3]
			arg := in[4]
			in = in[5:]
			if off+n > len(ref) {
				n = len(ref) - off
			}
			switch kind % 8 {
			case 7:
				r.Ack(&s, isn+uint32(off))
				continue
			}
			payload := ref[off : off+n]
			if kind%8 == 5 { // a SYN's data starts one after its seq
				payload = ref[min(off+1, len(ref)):min(off+1+n, len(ref))]
			}
			if corrupt && kind%8 == 6 && n > 0 {
				payload = append([]byte(nil), payload...)
				payload[int(arg)%n] ^= 0xff
			}
			var fl decode.TCPFlags
			switch kind % 8 {
			case 3:
				fl = FIN
			case 4:
				fl = RST
			case 5:
				fl = SYN
			}
			before := len(out)
			res := r.Push(&s, Segment{Seq: isn + uint32(off), Flags: fl | ACK, Payload: payload}, deliver)
			if !corrupt && res.Status == StatusConflict && fl&FIN == 0 {
				t.Fatalf("conflict without any changed byte: %v", res)
			}
			if len(out)-before != res.Delivered || (res.Delivered > 0) != (res.Status == StatusDelivered) {
				t.Fatalf("result %v but %d bytes delivered", res, len(out)-before)
			}
			if int64(len(out)) != s.Delivered() && s.flags&stMidstream == 0 && s.flags&stReset == 0 {
				t.Fatalf("stream says %d delivered, callback got %d", s.Delivered(), len(out))
			}
			if s.Buffered() > cfg.MaxBufferedBytes || int(s.oooSegs) > cfg.MaxSegments || r.pool.inUse > r.pool.max {
				t.Fatalf("limits exceeded: %d bytes %d segs %d blocks", s.Buffered(), s.oooSegs, r.pool.inUse)
			}
			if cfg.Depth > 0 && s.Delivered() > cfg.Depth {
				t.Fatalf("delivered %d past depth %d", s.Delivered(), cfg.Depth)
			}
		}
		// without corruption the stream delivers the reference bytes from
		// where it started, and nothing else
		if first := int(int32(s.base - isn)); !corrupt && s.Started() && first >= 0 && first+len(out) <= len(ref) &&
			!bytes.Equal(out, ref[first:first+len(out)]) {
			t.Fatalf("delivered bytes differ from the reference")
		}
		r.Release(&s)
		if r.pool.inUse != 0 {
			t.Fatalf("%d blocks leaked", r.pool.inUse)
		}
		live := 0
		for id := r.pool.freeNode; id != 0; id = r.pool.nodes[id].next {
			live++
		}
		if live != len(r.pool.nodes)-1 {
			t.Fatalf("%d of %d nodes not freed", len(r.pool.nodes)-1-live, len(r.pool.nodes)-1)
		}
	})
}

func BenchmarkInOrder(b *testing.B) {
	for _, bc := range []struct {
		name string
		cfg  Config
		ack  bool
	}{
		{"history", Config{}, true},
		{"no-history", Config{MaxHistory: -1}, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r, _ := New(bc.cfg)
			var s Stream
			var total int
			deliver := func(p []byte) { total += len(p) }
			r.Push(&s, Segment{Seq: 0, Flags: SYN}, deliver)
			payload := make([]byte, 1448)
			seq := uint32(1)
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				r.Push(&s, Segment{Seq: seq, Flags: ACK, Payload: payload}, deliver)
				seq += uint32(len(payload))
				if bc.ack {
					r.Ack(&s, seq)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/segment")
			b.ReportMetric(float64(total)*8/b.Elapsed().Seconds()/1e9, "Gbit/s")
		})
	}
}

// BenchmarkReordered swaps every pair of segments: half are buffered (one
// copy into the pool), half fill the gap and release them.
func BenchmarkReordered(b *testing.B) {
	r, _ := New(Config{})
	var s Stream
	var total int
	deliver := func(p []byte) { total += len(p) }
	r.Push(&s, Segment{Seq: 0, Flags: SYN}, deliver)
	payload := make([]byte, 1448)
	seq := uint32(1)
	b.SetBytes(int64(2 * len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		r.Push(&s, Segment{Seq: seq + 1448, Flags: ACK, Payload: payload}, deliver)
		r.Push(&s, Segment{Seq: seq, Flags: ACK, Payload: payload}, deliver)
		seq += 2 * 1448
		r.Ack(&s, seq)
	}
	b.ReportMetric(float64(total)*8/b.Elapsed().Seconds()/1e9, "Gbit/s")
}

func ExampleReassembler_Push() {
	r, _ := New(Config{})
	var s Stream
	print := func(b []byte) { fmt.Printf("%q ", b) }
	fmt.Println(r.Push(&s, Segment{Seq: 99, Flags: SYN}, print).Status)
	fmt.Println(r.Push(&s, Segment{Seq: 103, Flags: ACK, Payload: []byte("lo")}, print).Status)
	fmt.Println(r.Push(&s, Segment{Seq: 100, Flags: ACK, Payload: []byte("hel")}, print).Status)
	fmt.Println(r.Push(&s, Segment{Seq: 100, Flags: ACK, Payload: []byte("HEL")}, print).Status)
	// Output:
	// empty
	// buffered
	// "hel" "lo" delivered
	// conflict
}
