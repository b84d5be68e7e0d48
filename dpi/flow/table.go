package flow

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math/bits"
	"time"
	"unsafe"

	"github.com/deepwall/deepwall/dpi/decode"
	"github.com/deepwall/deepwall/xdp"
)

// Limits and defaults of a Table.
const (
	// DefaultMaxFlows is the flow count bound of one worker's table.
	DefaultMaxFlows = 1 << 16
	// MaxTableFlows is the largest MaxFlows accepted.
	MaxTableFlows = 1 << 28
	// DefaultExpireBatch is the most flows one Expire call ends.
	DefaultExpireBatch = 256
	// DefaultLifetime is the absolute lifetime of a flow.
	DefaultLifetime = 24 * time.Hour
	// DefaultEvictIdle is how long a confirmed flow must have been idle
	// before a new flow may evict it from a full table.
	DefaultEvictIdle = 60 * time.Second

	// A flow moves to the tail of its list at most once per granularity,
	// timeout/requeueDivisor capped at maxRequeueGranularity: busy flows
	// then cost no list updates, and expiry is late by at most the
	// granularity.
	requeueDivisor        = 16
	maxRequeueGranularity = time.Second

	// chunkShift sizes the chunks flow entries are allocated in (1024).
	chunkShift = 10
	chunkSize  = 1 << chunkShift
	chunkMask  = chunkSize - 1
)

// DefaultTimeouts are the idle timeouts used for zero fields of Timeouts.
var DefaultTimeouts = Timeouts{
	TCPEmbryonic:   30 * time.Second,
	TCPEstablished: 30 * time.Minute,
	TCPClosing:     2 * time.Minute,
	Linger:         10 * time.Second,
	Unreplied:      30 * time.Second,
	UDP:            2 * time.Minute,
	ICMP:           30 * time.Second,
	Other:          2 * time.Minute,
}

// Errors of Lookup.
var (
	// ErrFull: the table is full and no flow could be evicted; drop the
	// packet.
	ErrFull = errors.New("flow table full")
	// ErrReentrant: a Table method was called from the end callback.
	ErrReentrant = errors.New("flow table called from its end callback")
)

// Timeouts are the idle timeouts per flow state. Zero fields take the value
// of DefaultTimeouts.
type Timeouts struct {
	TCPEmbryonic   time.Duration // SYN sent, SYN-ACK sent, or mid-stream heard from one side
	TCPEstablished time.Duration
	TCPClosing     time.Duration // FIN from one side
	Linger         time.Duration // FIN from both sides or RST: time left for retransmissions
	Unreplied      time.Duration // UDP, ICMP and other protocols heard from one side only
	UDP            time.Duration // UDP heard from both sides
	ICMP           time.Duration // ICMP heard from both sides
	Other          time.Duration // other IP protocols heard from both sides
}

// Config sizes and tunes a Table. The zero value is usable: every zero
// field takes its default.
type Config struct {
	// MaxFlows bounds the number of flows (DefaultMaxFlows).
	MaxFlows int
	// Timeouts per state (DefaultTimeouts).
	Timeouts Timeouts
	// Lifetime ends flows this old whatever their activity
	// (DefaultLifetime); negative disables it.
	Lifetime time.Duration
	// EvictIdle is the idle time after which a confirmed flow may be evicted
	// to make room for a new one (DefaultEvictIdle); negative means never.
	EvictIdle time.Duration
	// ExpireBatch is the most flows one Expire call ends
	// (DefaultExpireBatch).
	ExpireBatch int
	// LooseRST accepts every RST instead of only those with the expected
	// sequence number.
	LooseRST bool
	// CallerEnds leaves RSTs and FINs to the caller: Lookup does not let
	// them change the TCP state, and the caller reports those the receiver
	// accepts with AcceptEnd (the engine does once reassembly placed them:
	// an RST at exactly the next expected sequence number, a FIN once
	// every byte before it arrived). LooseRST is then ignored.
	CallerEnds bool
	// ServerFirst reports whether payload, the data of the first packet
	// of a flow picked up mid-stream, is what only a server sends (a
	// response, a greeting, a ServerHello): its sender is then the server.
	// Nil leaves the guess to the ports (see serverSent).
	ServerFirst func(payload []byte) bool
}

// Stats counts what a table did.
type Stats struct {
	Flows   int    // flows in the table
	Created uint64 // flows created
	// Ended, by reason.
	Idle, Lifetime, Closed, Evicted, Removed, Flushed uint64
	// Full counts lookups refused with ErrFull.
	Full uint64
	// InvalidRST counts RSTs ignored for a wrong sequence number.
	InvalidRST uint64
}

type list struct{ head, tail int32 }

// Table is a flow table owned by one worker. It is not safe for
// concurrent use.
type Table[S any] struct {
	cfg       Config
	timeout   [numClasses]int64
	gran      [numClasses]int64 // requeue granularity per class
	lifetime  int64
	evictIdle int64
	onEnd     func(*Flow[S], Reason)

	seed  maphash.Seed
	index []uint64 // open addressing, linear probing: tag<<32 | slot+1, 0 = empty
	mask  uint64

	chunks [][]Flow[S]
	used   int32 // slots handed out of the chunks so far
	free   int32 // free list head, linked through Flow.link[classLink].next
	n      int

	lists  [numClasses]list
	age    list
	rr     int // class Expire starts with
	lastID uint64
	busy   bool
	stats  Stats
}

// New returns an empty table. onEnd, if not nil, is called for every flow
// that ends, with the reason, before its entry is recycled; it must not call
// the table.
func New[S any](cfg Config, onEnd func(f *Flow[S], r Reason)) (*Table[S], error) {
	if cfg.MaxFlows == 0 {
		cfg.MaxFlows = DefaultMaxFlows
	}
	if cfg.MaxFlows < 0 || cfg.MaxFlows > MaxTableFlows {
		return nil, fmt.Errorf("new flow table: max flows %d out of range 1..%d", cfg.MaxFlows, MaxTableFlows)
	}
	if cfg.ExpireBatch == 0 {
		cfg.ExpireBatch = DefaultExpireBatch
	}
	if cfg.ExpireBatch < 0 {
		return nil, fmt.Errorf("new flow table: negative expire batch %d", cfg.ExpireBatch)
	}
	if cfg.Lifetime == 0 {
		cfg.Lifetime = DefaultLifetime
	}
	if cfg.EvictIdle == 0 {
		cfg.EvictIdle = DefaultEvictIdle
	}
	to := &cfg.Timeouts
	def := DefaultTimeouts
	// in class order, so classNames name them
	fields := [numClasses]*time.Duration{&to.Linger, &to.TCPEmbryonic, &to.Unreplied, &to.TCPClosing, &to.TCPEstablished, &to.UDP, &to.ICMP, &to.Other}
	defaults := [numClasses]time.Duration{def.Linger, def.TCPEmbryonic, def.Unreplied, def.TCPClosing, def.TCPEstablished, def.UDP, def.ICMP, def.Other}
	var timeout [numClasses]int64
	for c, p := range fields {
		if *p == 0 {
			*p = defaults[c]
		}
		if *p < 0 {
			return nil, fmt.Errorf("new flow table: negative %s timeout %v", classNames[c], *p)
		}
		timeout[c] = int64(*p)
	}
	t := &Table[S]{cfg: cfg, onEnd: onEnd, seed: maphash.MakeSeed(), free: -1}
	t.timeout = timeout
	for c, to := range timeout {
		t.gran[c] = min(to/requeueDivisor, int64(maxRequeueGranularity))
	}
	t.lifetime = int64(cfg.Lifetime)
	t.evictIdle = int64(cfg.EvictIdle)
	// Load factor at most 1/2 keeps linear probes short.
	size := uint64(1) << bits.Len64(uint64(2*cfg.MaxFlows-1))
	size = max(size, 64)
	t.index = make([]uint64, size)
	t.mask = size - 1
	for i := range t.lists {
		t.lists[i] = list{-1, -1}
	}
	t.age = list{-1, -1}
	return t, nil
}

// Config returns the configuration with defaults filled in.
func (t *Table[S]) Config() Config { return t.cfg }

// Len returns the number of flows.
func (t *Table[S]) Len() int { return t.n }

// Stats returns the counters.
func (t *Table[S]) Stats() Stats {
	s := t.stats
	s.Flows = t.n
	return s
}

// EntryBytes is the size of one flow entry plus its share of the index: the
// memory a flow costs, not counting what State points to.
func (t *Table[S]) EntryBytes() int {
	return int(unsafe.Sizeof(Flow[S]{})) + 8*len(t.index)/t.cfg.MaxFlows
}

// MemBytes is the memory the table holds now: the index plus the entries
// allocated so far (they are kept for reuse once allocated).
func (t *Table[S]) MemBytes() int {
	n := 0
	for _, c := range t.chunks {
		n += cap(c)
	}
	return 8*len(t.index) + n*int(unsafe.Sizeof(Flow[S]{}))
}

var keyBytes = int(unsafe.Offsetof(xdp.FlowKey{}.Proto)) + 1

func (t *Table[S]) hash(k *xdp.FlowKey) uint64 {
	return maphash.Bytes(t.seed, unsafe.Slice((*byte)(unsafe.Pointer(k)), keyBytes))
}

func (t *Table[S]) at(slot int32) *Flow[S] {
	return &t.chunks[slot>>chunkShift][slot&chunkMask]
}

// find returns the flow of k and its index position, or nil and the
// position of the empty entry that ended the probe.
func (t *Table[S]) find(k *xdp.FlowKey, h uint64) (*Flow[S], uint64) {
	tag := uint32(h)
	for i := uint64(tag) & t.mask; ; i = (i + 1) & t.mask {
		e := t.index[i]
		if e == 0 {
			return nil, i
		}
		if uint32(e>>32) == tag {
			if f := t.at(int32(uint32(e)) - 1); f.Key == *k {
				return f, i
			}
		}
	}
}

// Find returns the flow of key without creating or touching it, or nil.
func (t *Table[S]) Find(key xdp.FlowKey) *Flow[S] {
	f, _ := t.find(&key, t.hash(&key))
	return f
}

// Lookup finds the flow of p or creates it, counts the packet, advances the
// TCP state machine and returns the flow with the packet's direction
// relative to the client. A flow met after its timeout or lifetime is ended
// (callback) and replaced by a new one. p must be a decoded IP packet;
// fragments and decode failures do not belong in the table. now is the
// caller's clock in nanoseconds.
func (t *Table[S]) Lookup(p *decode.Packet, now int64) (*Flow[S], Dir, error) {
	if t.busy {
		return nil, 0, ErrReentrant
	}
	h := t.hash(&p.Key)
	f, _ := t.find(&p.Key, h)
	if f != nil {
		if r := t.stale(f, p, now); r != 0 {
			t.end(f, r)
			f = nil
		}
	}
	if f == nil {
		var err error
		if f, err = t.create(p, h, now); err != nil {
			return nil, 0, err
		}
	}
	d := Dir(p.Dir ^ f.client)
	t.update(f, d, p, now)
	return f, d, nil
}

// serverSent reports whether the packet that creates a flow comes from
// its server. A SYN comes from the client and a SYN-ACK from the server.
// Any other first packet (a TCP flow picked up mid-stream after a restart
// or in a capture, a UDP flow seen from its answer) is judged by its
// payload (Config.ServerFirst), then by the ports: a server listens on a
// well-known port or a registered service port, a client on an ephemeral
// one. Without a difference the sender is the client.
func (t *Table[S]) serverSent(p *decode.Packet) bool {
	if p.Flags&decode.FlagL4 == 0 || p.Proto != 6 && p.Proto != 17 {
		return false
	}
	if p.Proto == 6 {
		switch p.TCPFlags & (decode.TCPSyn | decode.TCPAck) {
		case decode.TCPSyn:
			return false
		case decode.TCPSyn | decode.TCPAck:
			return true
		}
	}
	if t.cfg.ServerFirst != nil && len(p.Payload) > 0 && t.cfg.ServerFirst(p.Payload) {
		return true
	}
	return serverPortRank(p.SrcPort) > serverPortRank(p.DstPort)
}

// serverPorts are registered ports (≥ 1024) that servers commonly listen
// on; below 1024 every port counts as a server's.
var serverPorts = map[uint16]bool{
	1080: true, 1194: true, 1433: true, 1521: true, 1883: true, 2049: true, 2181: true, 2379: true,
	3128: true, 3306: true, 3389: true, 4222: true, 5060: true, 5061: true, 5222: true, 5353: true,
	5432: true, 5672: true, 5900: true, 6379: true, 6443: true, 8000: true, 8008: true, 8080: true,
	8081: true, 8443: true, 8883: true, 9000: true, 9042: true, 9092: true, 9200: true, 9418: true,
	11211: true, 27017: true,
}

// serverPortRank is how surely a port is a server's: 2 well-known, 1
// registered service, 0 otherwise (ephemeral).
func serverPortRank(port uint16) int {
	switch {
	case port < 1024 && port != 0:
		return 2
	case serverPorts[port]:
		return 1
	}
	return 0
}

func isTCP(p *decode.Packet) bool {
	return p.Proto == 6 && p.Flags&decode.FlagL4 != 0
}

// stale says whether f must end before p is counted, and why.
func (t *Table[S]) stale(f *Flow[S], p *decode.Packet, now int64) Reason {
	if now-f.LastSeen >= t.timeout[f.class] {
		if f.class == classLinger {
			return ReasonClosed
		}
		return ReasonIdle
	}
	if t.lifetime > 0 && now-f.FirstSeen >= t.lifetime {
		return ReasonLifetime
	}
	if !isTCP(p) {
		return 0
	}
	switch p.TCPFlags & (decode.TCPSyn | decode.TCPAck | decode.TCPRst) {
	case decode.TCPSyn:
		if f.TCP == TCPClosed || f.TCP == TCPReset {
			return ReasonClosed // a new connection on the same 5-tuple
		}
	case decode.TCPSyn | decode.TCPAck:
		// A SYN with a new sequence number on a live connection is kept
		// aside (trackTCP); if the other side answers it with a SYN-ACK,
		// that side has no connection any more: we missed its end. The old
		// flow ends and the SYN-ACK starts the new one, as conntrack does.
		d := Dir(p.Dir ^ f.client)
		if f.Flags&synFlag(d^1) != 0 && p.Ack == f.synSeq+1 {
			return ReasonClosed
		}
	}
	return 0
}

func (t *Table[S]) create(p *decode.Packet, h uint64, now int64) (*Flow[S], error) {
	if t.n >= t.cfg.MaxFlows && !t.evict(now) {
		t.stats.Full++
		return nil, ErrFull
	}
	slot := t.alloc()
	f := t.at(slot)
	t.lastID++
	f.Key, f.ID, f.FirstSeen, f.LastSeen = p.Key, t.lastID, now, now
	f.tag, f.self, f.class = uint32(h), slot, noClass
	f.client = p.Dir
	if t.serverSent(p) {
		f.client = p.Dir ^ 1
	}
	// insert into the index (the probe from find may be stale after an
	// eviction shifted entries)
	_, pos := t.find(&p.Key, h)
	t.index[pos] = uint64(f.tag)<<32 | uint64(slot+1)
	t.push(&t.age, slot, ageLink)
	t.n++
	t.stats.Created++
	return f, nil
}

func (t *Table[S]) alloc() int32 {
	if t.free >= 0 {
		slot := t.free
		t.free = t.at(slot).link[classLink].next
		return slot
	}
	slot := t.used
	if int(slot)>>chunkShift == len(t.chunks) {
		n := min(chunkSize, t.cfg.MaxFlows-int(slot))
		t.chunks = append(t.chunks, make([]Flow[S], n))
	}
	t.used++
	return slot
}

func (t *Table[S]) update(f *Flow[S], d Dir, p *decode.Packet, now int64) {
	f.LastSeen = max(f.LastSeen, now) // keeps the lists ordered if the clock steps back
	f.Packets[d]++
	f.Bytes[d] += uint64(p.FrameLen)
	if f.Packets[ToServer] > 0 && f.Packets[ToClient] > 0 {
		f.Flags |= FlagReplied
	}
	if isTCP(p) {
		t.trackTCP(f, d, p)
	}
	c := f.classify()
	if c == f.class && now-f.queued < t.gran[c] {
		return
	}
	if f.class != noClass {
		t.unlink(&t.lists[f.class], f, classLink)
	}
	f.class, f.queued = c, now
	t.push(&t.lists[c], f.self, classLink)
}

func (t *Table[S]) trackTCP(f *Flow[S], d Dir, p *decode.Packet) {
	fl := p.TCPFlags
	if fl&decode.TCPRst != 0 {
		if t.cfg.CallerEnds {
			return
		}
		if t.cfg.LooseRST || f.validRST(d, p.Seq) {
			f.TCP = TCPReset
		} else {
			f.Flags |= FlagInvalidRST
			t.stats.InvalidRST++
		}
		return
	}
	end := p.Seq + uint32(len(p.Payload))
	if fl&decode.TCPSyn != 0 {
		end++
	}
	if fl&decode.TCPFin != 0 {
		end++
	}
	if f.Flags&seqFlag(d) == 0 || seqAfter(end, f.seq[d]) {
		f.seq[d] = end
		f.Flags |= seqFlag(d)
	}
	if fl&decode.TCPAck != 0 {
		f.ack[d] = p.Ack
		f.Flags |= ackFlag(d)
	}
	synack := fl & (decode.TCPSyn | decode.TCPAck)
	switch {
	case synack == decode.TCPSyn && d == ToServer && (f.TCP == TCPNone || f.TCP == TCPSynSent):
		f.isn = p.Seq
		f.Flags |= flagISN
	case synack == decode.TCPSyn|decode.TCPAck && f.TCP == TCPNone:
		f.isn = p.Ack - 1
		f.Flags |= flagISN
	case synack == decode.TCPSyn && !(d == ToServer && f.Flags&flagISN != 0 && p.Seq == f.isn):
		// not a retransmission of the SYN that opened the flow: keep it
		// aside, see stale
		f.synSeq = p.Seq
		f.Flags = f.Flags&^(flagSynToServer|flagSynToClient) | synFlag(d)
	}
	switch f.TCP {
	case TCPNone:
		switch synack {
		case decode.TCPSyn:
			f.TCP = TCPSynSent
		case decode.TCPSyn | decode.TCPAck:
			f.TCP = TCPSynRecv
		default:
			f.TCP = TCPMidstream
			f.Flags |= FlagMidstream
		}
	case TCPSynSent:
		if d == ToClient && synack == decode.TCPSyn|decode.TCPAck {
			f.TCP = TCPSynRecv
		}
	case TCPSynRecv:
		if d == ToServer && synack == decode.TCPAck {
			f.TCP = TCPEstablished
		}
	case TCPMidstream:
		if f.Flags&FlagReplied != 0 {
			f.TCP = TCPEstablished
		}
	}
	if fl&decode.TCPFin != 0 && !t.cfg.CallerEnds {
		f.Flags |= finFlag(d)
	}
	t.closing(f)
}

// closing moves f on to closing or closed after FINs.
func (t *Table[S]) closing(f *Flow[S]) {
	if fins := f.Flags & (FlagFinToServer | FlagFinToClient); fins != 0 && f.TCP < TCPClosing {
		f.TCP = TCPClosing
	}
	if f.Flags&(FlagFinToServer|FlagFinToClient) == FlagFinToServer|FlagFinToClient && f.TCP == TCPClosing {
		f.TCP = TCPClosed
	}
}

// AcceptEnd applies an RST or FIN of direction d that the caller accepted
// (Config.CallerEnds): the flow moves on to reset, closing or closed, and
// to the timeout of that state. An RST the caller refused is counted
// with AcceptEnd(f, d, 0, true) (Stats.InvalidRST, FlagInvalidRST).
func (t *Table[S]) AcceptEnd(f *Flow[S], d Dir, fl decode.TCPFlags, invalidRST bool) {
	if f.Key.Proto != 6 {
		return
	}
	switch {
	case invalidRST:
		f.Flags |= FlagInvalidRST
		t.stats.InvalidRST++
		return
	case fl&decode.TCPRst != 0:
		f.TCP = TCPReset
	case fl&decode.TCPFin != 0:
		f.Flags |= finFlag(d)
		t.closing(f)
	default:
		return
	}
	if c := f.classify(); c != f.class {
		if f.class != noClass {
			t.unlink(&t.lists[f.class], f, classLink)
		}
		f.class, f.queued = c, f.LastSeen
		t.push(&t.lists[c], f.self, classLink)
	}
}

// validRST applies RFC 5961's rule: an RST counts when its sequence number
// is exactly what the receiver expects next. Without any sequence knowledge
// (the RST answers a SYN, or the flow was just picked up) it counts too.
func (f *Flow[S]) validRST(d Dir, seq uint32) bool {
	o := d ^ 1
	known := false
	if f.Flags&seqFlag(d) != 0 {
		known = true
		if seq == f.seq[d] {
			return true
		}
	}
	if f.Flags&ackFlag(o) != 0 {
		known = true
		if seq == f.ack[o] {
			return true
		}
	}
	return !known
}

// Expire ends the flows idle past their timeout or older than the
// lifetime, at most Config.ExpireBatch of them, and returns how many it
// ended. Call it between packet batches.
func (t *Table[S]) Expire(now int64) int {
	if t.busy {
		return 0
	}
	budget := t.cfg.ExpireBatch
	n := 0
	for k := 0; k < numClasses && n < budget; k++ {
		c := (t.rr + k) % numClasses
		r := ReasonIdle
		if c == classLinger {
			r = ReasonClosed
		}
		for n < budget {
			h := t.lists[c].head
			if h < 0 {
				break
			}
			// The list is in queued-time order and LastSeen-queued is below
			// the granularity, so a live head means every flow behind it
			// expires less than a granularity from now: stop.
			f := t.at(h)
			if now-f.LastSeen < t.timeout[c] {
				break
			}
			t.end(f, r)
			n++
		}
	}
	t.rr = (t.rr + 1) % numClasses
	for t.lifetime > 0 && n < budget && t.age.head >= 0 {
		f := t.at(t.age.head)
		if now-f.FirstSeen < t.lifetime {
			break
		}
		t.end(f, ReasonLifetime)
		n++
	}
	return n
}

// evict ends one flow to make room, following the tiers of the package
// doc, and reports whether it found one.
func (t *Table[S]) evict(now int64) bool {
	for tier := uint8(0); tier <= 2; tier++ {
		var victim *Flow[S]
		for c := range numClasses {
			if classTier[c] != tier || t.lists[c].head < 0 {
				continue
			}
			if f := t.at(t.lists[c].head); victim == nil || f.LastSeen < victim.LastSeen {
				victim = f
			}
		}
		if victim == nil {
			continue
		}
		if tier == 2 && (t.evictIdle < 0 || now-victim.LastSeen < t.evictIdle) {
			return false
		}
		t.end(victim, ReasonEvicted)
		return true
	}
	return false
}

// Remove ends f now with ReasonRemoved (for example once its verdict is
// final and the kernel carries it). It reports false for a flow that
// already ended.
func (t *Table[S]) Remove(f *Flow[S]) bool {
	if t.busy || f == nil || f.ID == 0 || f.self < 0 || f.self >= t.used || t.at(f.self) != f {
		return false
	}
	t.end(f, ReasonRemoved)
	return true
}

// Flush ends every flow with ReasonFlush (shutdown).
func (t *Table[S]) Flush() {
	if t.busy {
		return
	}
	for t.age.head >= 0 {
		t.end(t.at(t.age.head), ReasonFlush)
	}
}

// Range calls fn for each flow, oldest first, until fn returns false. fn
// must not call the table.
func (t *Table[S]) Range(fn func(f *Flow[S]) bool) {
	t.busy = true
	defer func() { t.busy = false }()
	for s := t.age.head; s >= 0; {
		f := t.at(s)
		s = f.link[ageLink].next
		if !fn(f) {
			return
		}
	}
}

func (t *Table[S]) end(f *Flow[S], r Reason) {
	if t.onEnd != nil {
		t.busy = true
		t.onEnd(f, r)
		t.busy = false
	}
	switch r {
	case ReasonIdle:
		t.stats.Idle++
	case ReasonLifetime:
		t.stats.Lifetime++
	case ReasonClosed:
		t.stats.Closed++
	case ReasonEvicted:
		t.stats.Evicted++
	case ReasonRemoved:
		t.stats.Removed++
	case ReasonFlush:
		t.stats.Flushed++
	}
	t.deleteIndex(f)
	if f.class != noClass {
		t.unlink(&t.lists[f.class], f, classLink)
	}
	t.unlink(&t.age, f, ageLink)
	slot := f.self
	*f = Flow[S]{}
	f.self, f.link[classLink].next = slot, t.free
	t.free = slot
	t.n--
}

// deleteIndex removes f's index entry with backward-shift deletion, which
// leaves no tombstones: probe lengths stay as if f had never been there.
func (t *Table[S]) deleteIndex(f *Flow[S]) {
	want := uint64(f.tag)<<32 | uint64(f.self+1)
	i := uint64(f.tag) & t.mask
	for t.index[i] != want {
		i = (i + 1) & t.mask
	}
	for j := i; ; {
		j = (j + 1) & t.mask
		e := t.index[j]
		if e == 0 {
			break
		}
		home := uint64(uint32(e>>32)) & t.mask
		// e may move back to i unless its home lies cyclically in (i, j].
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			t.index[i] = e
			i = j
		}
	}
	t.index[i] = 0
}

// push appends slot to l, which is the list of kind k (classLink, ageLink).
func (t *Table[S]) push(l *list, slot int32, k int) {
	t.at(slot).link[k] = link{prev: l.tail, next: -1}
	if l.tail >= 0 {
		t.at(l.tail).link[k].next = slot
	} else {
		l.head = slot
	}
	l.tail = slot
}

// unlink removes f from l, which is the list of kind k.
func (t *Table[S]) unlink(l *list, f *Flow[S], k int) {
	lk := f.link[k]
	if lk.prev >= 0 {
		t.at(lk.prev).link[k].next = lk.next
	} else {
		l.head = lk.next
	}
	if lk.next >= 0 {
		t.at(lk.next).link[k].prev = lk.prev
	} else {
		l.tail = lk.prev
	}
}
