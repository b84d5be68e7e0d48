package defrag

import (
	"encoding/binary"
	"slices"
	"time"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dpi/decode"
)

// Defaults of Config.
const (
	// DefaultTimeout is Linux's net.ipv4.ipfrag_time (and IPv6's).
	DefaultTimeout = 30 * time.Second
	// DefaultMaxBytes is Linux's net.ipv4.ipfrag_high_thresh, per table.
	DefaultMaxBytes = 4 << 20
	// DefaultMaxDatagrams bounds the datagrams in progress per table.
	DefaultMaxDatagrams = 1024
	// DefaultMaxPerPair bounds the datagrams in progress between two
	// addresses (either direction).
	DefaultMaxPerPair = 64
)

// MaxFragments is the most fragments a datagram may have: a 64 KiB
// datagram at the IPv6 minimum MTU of 1,280 bytes takes 52. A datagram cut
// finer is discarded (OutcomeTooMany); Linux has no such bound, so this is
// one place where the inspector refuses what the receiver would take, on
// purpose: thousands of 8-byte fragments are an attack, not traffic.
const MaxFragments = 64

// minBuf is the smallest frame copy: small fragments share sizes, so
// their buffers are reused.
const minBuf = 2048

// maxIPv4Datagram and maxIPv6Payload are what IP allows.
const (
	maxIPv4Datagram = 65535 // header included
	maxIPv6Payload  = 65535 // IPV6_MAXPLEN
)

// Config bounds a Table. Zero fields take the defaults.
type Config struct {
	Timeout      time.Duration
	MaxBytes     int
	MaxDatagrams int
	MaxPerPair   int
}

func (c Config) withDefaults() Config {
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxDatagrams <= 0 {
		c.MaxDatagrams = DefaultMaxDatagrams
	}
	if c.MaxPerPair <= 0 {
		c.MaxPerPair = DefaultMaxPerPair
	}
	return c
}

// Outcome is what Add did with a fragment.
type Outcome uint8

// Outcomes. Every one but OutcomeHeld and OutcomeComplete means the
// fragment must be dropped; the ones that name a datagram discarded it
// with every fragment held for it.
const (
	// OutcomeHeld: a copy of the fragment is kept; the datagram is not
	// complete yet. The caller drops the frame itself.
	OutcomeHeld Outcome = iota
	// OutcomeComplete: the fragment completed the datagram (Add returns
	// it).
	OutcomeComplete
	// OutcomeDuplicate: the fragment lies inside data held already; it is
	// ignored, the datagram kept.
	OutcomeDuplicate
	// OutcomeOverlap: the fragment overlapped data held; the datagram is
	// discarded.
	OutcomeOverlap
	// OutcomeMalformed: conflicting or impossible lengths (a second end,
	// data past the end, no data, more than IP allows); the datagram is
	// discarded.
	OutcomeMalformed
	// OutcomeBadFragment: the fragment is refused, the datagram kept: an
	// IPv6 non-last fragment whose length is not a multiple of 8, or an
	// IPv6 first fragment without the whole upper-layer header.
	OutcomeBadFragment
	// OutcomeTooMany: the datagram has more than MaxFragments fragments;
	// it is discarded.
	OutcomeTooMany
	// OutcomeFull: a table bound (MaxBytes, MaxDatagrams, MaxPerPair) is
	// reached; the fragment is refused.
	OutcomeFull
	numOutcomes
)

var outcomeNames = [numOutcomes]string{
	"frag.held", "frag.complete", "frag.duplicate", "frag.overlap", "frag.malformed",
	"frag.bad_fragment", "frag.too_many", "frag.table_full",
}

// String returns the outcome's counter name, "frag.overlap" for example.
func (o Outcome) String() string {
	if o < numOutcomes {
		return outcomeNames[o]
	}
	return "frag.unknown"
}

// Datagram is a reassembled datagram. It and its slices belong to the
// Table and are valid until the next Add or Expire; Clone makes a copy
// that is the caller's.
type Datagram struct {
	// Frame is the whole datagram as one frame: the first fragment's link
	// header and IP header (IPv4 with its options, IPv6 as a bare 40-byte
	// header whose next header is the upper-layer protocol), the length
	// fields and the IPv4 header checksum set, and the reassembled
	// payload. It is for inspection, never for the wire (it may be larger
	// than any MTU).
	Frame []byte
	// Held are the frames of the datagram's other fragments, in the order
	// they arrived, duplicates left out: the caller forwards them, then
	// the completing fragment, if the datagram is allowed.
	Held [][]byte
}

// Clone returns a copy of d in memory of its own (one buffer for all the
// frames).
func (d *Datagram) Clone() *Datagram {
	n := len(d.Frame)
	for _, h := range d.Held {
		n += len(h)
	}
	buf := make([]byte, 0, n)
	c := &Datagram{Held: make([][]byte, len(d.Held))}
	buf = append(buf, d.Frame...)
	c.Frame = buf[:len(d.Frame):len(d.Frame)]
	for i, h := range d.Held {
		start := len(buf)
		buf = append(buf, h...)
		c.Held[i] = buf[start:len(buf):len(buf)]
	}
	return c
}

// key identifies a datagram in progress, as Linux does (see the package
// doc), plus the ingress port.
type key struct {
	src, dst [16]byte
	id       uint32
	proto    uint8 // IPv4 only: IPv6 keys leave it 0
	v6       bool
	port     uint32
}

// pairKey is an unordered address pair.
type pairKey struct{ lo, hi [16]byte }

func pairOf(k *key) pairKey {
	if string(k.src[:]) < string(k.dst[:]) {
		return pairKey{k.src, k.dst}
	}
	return pairKey{k.dst, k.src}
}

// frag is one fragment held.
type frag struct {
	off, end int    // payload bytes [off, end) of the datagram
	frame    []byte // the frame's copy
	data     int    // where the fragment's data starts in frame
	l3       int    // where the IP header starts in frame
	seq      int    // arrival order
	runStart bool   // starts a run (see the package doc)
}

// datagram is a datagram in progress.
type datagram struct {
	k       key
	created int64
	frags   []frag // by offset, non-overlapping
	length  int    // payload length: known when lastIn, else the highest end
	meat    int    // payload bytes held
	bytes   int    // memory held by the frame copies
	proto   uint8  // upper-layer protocol (the first fragment's, for IPv6)
	firstIn bool
	lastIn  bool
}

// Stats count what a Table did.
type Stats struct {
	Outcomes  [numOutcomes]uint64
	TimedOut  uint64 // datagrams dropped by Expire
	Datagrams int    // datagrams in progress
	Bytes     int    // memory held
}

// Table reassembles the fragments of one worker.
type Table struct {
	cfg   Config
	m     map[key]*datagram
	pairs map[pairKey]int
	bytes int
	free  []*datagram
	bufs  [][]byte // free frame copies
	// done is the datagram handed out by the last Add, recycled at the
	// next one; out and held are its Datagram's buffers.
	done *datagram
	out  []byte
	held [][]byte
	dg   Datagram
	st   Stats
}

// New returns an empty table bounded by cfg.
func New(cfg Config) *Table {
	return &Table{cfg: cfg.withDefaults(), m: map[key]*datagram{}, pairs: map[pairKey]int{}}
}

// Stats returns the table's counters.
func (t *Table) Stats() Stats {
	s := t.st
	s.Datagrams, s.Bytes = len(t.m), t.bytes
	return s
}

// Add takes the fragment p decoded from frame (p.Flags has
// decode.FlagFragment) that arrived on port (any number the caller gives
// each ingress port) at time now (nanoseconds, any clock the caller keeps
// using). It copies what it keeps; frame is not retained. On
// OutcomeComplete the Datagram is returned.
func (t *Table) Add(now int64, port uint32, frame []byte, p *decode.Packet) (*Datagram, Outcome) {
	t.recycle()
	o, d := t.add(now, port, frame, p)
	t.st.Outcomes[o]++
	return d, o
}

func (t *Table) add(now int64, port uint32, frame []byte, p *decode.Packet) (Outcome, *Datagram) {
	v6 := p.IPVersion == 6
	k := key{src: p.Src, dst: p.Dst, id: p.Frag.ID, v6: v6, port: port}
	if !v6 {
		k.proto = p.Proto
	}
	off := int(p.Frag.Offset)
	n := len(p.Payload)
	end := off + n
	first := off == 0
	if v6 {
		if p.Frag.More && n&7 != 0 {
			return OutcomeBadFragment, nil
		}
		if first && n < upperHeaderLen(p.Proto) {
			return OutcomeBadFragment, nil
		}
	} else if p.Frag.More {
		end &^= 7 // Linux cuts it; the bytes past the cut are ignored
	}
	d := t.m[k]
	if d != nil && t.expired(d, now) {
		t.discard(d)
		t.st.TimedOut++
		d = nil
	}
	if d == nil {
		pk := pairOf(&k)
		if len(t.m) >= t.cfg.MaxDatagrams || t.pairs[pk] >= t.cfg.MaxPerPair {
			return OutcomeFull, nil
		}
		d = t.newDatagram(k, now)
		t.m[k] = d
		t.pairs[pk]++
	}
	// Lengths, as ip_frag_queue and ip6_frag_queue check them; they take
	// effect once the fragment is held.
	length, lastIn := d.length, d.lastIn
	if !p.Frag.More {
		if end < length || lastIn && end != length {
			return t.fail(d, OutcomeMalformed)
		}
		lastIn, length = true, end
	} else if end > length {
		if lastIn {
			return t.fail(d, OutcomeMalformed)
		}
		length = end
	}
	if end <= off {
		return t.fail(d, OutcomeMalformed)
	}
	limit := maxIPv6Payload
	if !v6 {
		limit = maxIPv4Datagram - (p.PayloadOff - p.L3Off)
	}
	if length > limit {
		return t.fail(d, OutcomeMalformed)
	}
	i, o := d.place(off, end)
	switch {
	case o == OutcomeDuplicate:
		return o, nil
	case o != OutcomeHeld:
		return t.fail(d, o)
	case len(d.frags) >= MaxFragments:
		return t.fail(d, OutcomeTooMany)
	}
	size := max(len(frame), minBuf)
	if t.bytes+size > t.cfg.MaxBytes {
		if len(d.frags) == 0 {
			t.discard(d)
		}
		return OutcomeFull, nil
	}
	buf := append(t.buf(size), frame...)
	t.bytes += cap(buf)
	d.bytes += cap(buf)
	f := frag{off: off, end: end, frame: buf, data: p.PayloadOff, l3: p.L3Off, seq: len(d.frags), runStart: true}
	if i > 0 && i == len(d.frags) && d.frags[i-1].end == off {
		// Appended in order after the tail: the tail's run grows.
		f.runStart = false
	}
	d.frags = slices.Insert(d.frags, i, f)
	d.meat += end - off
	d.length, d.lastIn = length, lastIn
	if first {
		d.firstIn = true
		d.proto = p.Proto
	}
	if !d.firstIn || !d.lastIn || d.meat != d.length {
		return OutcomeHeld, nil
	}
	return OutcomeComplete, t.complete(d)
}

// upperHeaderLen is how much of the upper-layer header an IPv6 first
// fragment must hold (ipv6frag_thdr_truncated).
func upperHeaderLen(proto uint8) int {
	switch proto {
	case 6:
		return 20
	case 17, 58:
		return 8
	}
	return 1
}

// place finds where [off, end) goes in d.frags, as inet_frag_queue_insert
// decides: OutcomeHeld with the index, OutcomeDuplicate when it lies
// inside one run, OutcomeOverlap when it overlaps otherwise.
func (d *datagram) place(off, end int) (int, Outcome) {
	i := 0
	for r := 0; r < len(d.frags); {
		// The run starting at r.
		e := r + 1
		for e < len(d.frags) && !d.frags[e].runStart {
			e++
		}
		rOff, rEnd := d.frags[r].off, d.frags[e-1].end
		switch {
		case end <= rOff:
			return i, OutcomeHeld
		case off >= rEnd:
			i = e
		case off >= rOff && end <= rEnd:
			return 0, OutcomeDuplicate
		default:
			return 0, OutcomeOverlap
		}
		r = e
	}
	return i, OutcomeHeld
}

// complete builds the datagram's frame and hands it out; the datagram
// leaves the table (its memory is recycled at the next Add or Expire).
func (t *Table) complete(d *datagram) *Datagram {
	t.remove(d)
	t.done = d
	hf := &d.frags[0] // offset 0: firstIn
	var hdr []byte
	if d.k.v6 {
		hdr = hf.frame[:hf.l3+40]
	} else {
		hdr = hf.frame[:hf.data]
	}
	out := append(t.out[:0], hdr...)
	for i := range d.frags {
		f := &d.frags[i]
		out = append(out, f.frame[f.data:f.data+f.end-f.off]...)
	}
	ip := out[hf.l3:]
	if d.k.v6 {
		binary.BigEndian.PutUint16(ip[4:], uint16(d.length))
		ip[6] = d.proto
	} else {
		binary.BigEndian.PutUint16(ip[2:], uint16(len(hdr)-hf.l3+d.length))
		binary.BigEndian.PutUint16(ip[6:], 0) // flags and offset: a whole datagram
		binary.BigEndian.PutUint16(ip[10:], 0)
		binary.BigEndian.PutUint16(ip[10:], dataplane.IPv4HeaderChecksum(ip[:len(hdr)-hf.l3]))
	}
	t.out = out
	// The other fragments in arrival order; the completing one is the
	// last to have arrived.
	n := len(d.frags)
	order := slices.Grow(t.held[:0], n)[:n]
	for i := range d.frags {
		order[d.frags[i].seq] = d.frags[i].frame
	}
	t.held = order
	t.dg = Datagram{Frame: out, Held: order[:n-1]}
	return &t.dg
}

func (t *Table) expired(d *datagram, now int64) bool {
	return now-d.created >= int64(t.cfg.Timeout) || now < d.created
}

// Expire drops the datagrams not completed within the timeout and returns
// how many.
func (t *Table) Expire(now int64) int {
	t.recycle()
	n := 0
	for _, d := range t.m {
		if t.expired(d, now) {
			t.discard(d)
			n++
		}
	}
	t.st.TimedOut += uint64(n)
	return n
}

// fail discards d and returns o.
func (t *Table) fail(d *datagram, o Outcome) (Outcome, *Datagram) {
	t.discard(d)
	return o, nil
}

// discard removes d from the table and frees its memory.
func (t *Table) discard(d *datagram) {
	t.remove(d)
	t.release(d)
}

func (t *Table) remove(d *datagram) {
	delete(t.m, d.k)
	pk := pairOf(&d.k)
	if t.pairs[pk] <= 1 {
		delete(t.pairs, pk)
	} else {
		t.pairs[pk]--
	}
}

// release gives d's frame copies and record back.
func (t *Table) release(d *datagram) {
	for i := range d.frags {
		t.bufs = append(t.bufs, d.frags[i].frame[:0])
		d.frags[i] = frag{}
	}
	t.bytes -= d.bytes
	d.frags = d.frags[:0]
	t.free = append(t.free, d)
}

// recycle releases the datagram handed out last.
func (t *Table) recycle() {
	if t.done != nil {
		t.release(t.done)
		t.done = nil
		clear(t.held)
	}
}

func (t *Table) newDatagram(k key, now int64) *datagram {
	var d *datagram
	if n := len(t.free); n > 0 {
		d, t.free = t.free[n-1], t.free[:n-1]
	} else {
		d = &datagram{}
	}
	frags := d.frags[:0]
	*d = datagram{k: k, created: now, frags: frags}
	return d
}

// buf returns an empty buffer for a frame copy of size bytes. Free
// buffers are kept while the table holds fragments, at most as many as
// MaxBytes allows.
func (t *Table) buf(size int) []byte {
	for n := len(t.bufs); n > 0; n-- {
		b := t.bufs[n-1]
		t.bufs = t.bufs[:n-1]
		if cap(b) >= size {
			return b
		}
	}
	return make([]byte, 0, size)
}
