package reasm

import (
	"fmt"

	"github.com/deepwall/deepwall/dpi/decode"
)

// Limits and defaults.
const (
	// DefaultMaxBufferedBytes bounds the out-of-order bytes one direction
	// holds.
	DefaultMaxBufferedBytes = 256 << 10
	// DefaultMaxSegments bounds the out-of-order ranges one direction holds.
	DefaultMaxSegments = 128
	// DefaultMaxHistory bounds the delivered, not yet acknowledged bytes
	// one direction keeps to check retransmissions against.
	DefaultMaxHistory = 64 << 10
	// DefaultMaxAhead is how far past the next expected byte a segment may
	// end.
	DefaultMaxAhead = 1 << 20
	// MaxMaxAhead keeps every offset within serial-number range.
	MaxMaxAhead = 1 << 30
	// DefaultPoolBytes is a worker's buffer budget, shared by its streams.
	DefaultPoolBytes = 64 << 20
	// NoDepth, given to SetDepth, inspects a stream without a depth limit.
	NoDepth = -1
)

// Config sets the limits of a Reassembler. Zero fields take the defaults.
type Config struct {
	// MaxBufferedBytes and MaxSegments bound each direction's out-of-order
	// buffer (DefaultMaxBufferedBytes, DefaultMaxSegments).
	MaxBufferedBytes int
	MaxSegments      int
	// MaxHistory bounds each direction's record of delivered bytes not yet
	// acknowledged (DefaultMaxHistory); negative keeps none, and then
	// retransmissions are never compared (every overlap is Unverified).
	MaxHistory int
	// MaxAhead is how far past the next expected byte a segment may end
	// (DefaultMaxAhead, at most MaxMaxAhead).
	MaxAhead int
	// Depth is the inspection depth of each direction in bytes; 0 means
	// none. Stream.SetDepth overrides it per stream.
	Depth int64
	// PoolBytes is the worker's budget for all buffers of all its streams
	// (DefaultPoolBytes).
	PoolBytes int
}

// Segment is one TCP segment of a direction.
type Segment struct {
	Seq     uint32
	Flags   decode.TCPFlags
	Payload []byte
}

// Status says what happened to a segment; the engine's forward/drop
// decision for the packet follows from it (see the package doc).
type Status uint8

// Push statuses.
const (
	// StatusEmpty: no payload (pure ACK, bare FIN, keep-alive, SYN).
	StatusEmpty Status = iota
	// StatusDelivered: Result.Delivered bytes went to the callback: the
	// segment's new bytes and the buffered ones it made contiguous.
	StatusDelivered
	// StatusBuffered: out of order; its new bytes are held until the gap
	// before them fills.
	StatusBuffered
	// StatusDuplicate: nothing new; every byte compared equal to what was
	// seen, or was too old to compare (Flags tell).
	StatusDuplicate
	// StatusConflict: the segment changes bytes already seen (delivered or
	// buffered): an evasion attempt. Nothing of it was used.
	StatusConflict
	// StatusOutOfWindow: too far ahead, data after the FIN, or data in a
	// SYN that contradicts the stream. Nothing of it was used.
	StatusOutOfWindow
	// StatusLimit: holding it would exceed a buffer limit (Flags say which).
	// Nothing of it was used.
	StatusLimit
	// StatusDepth: the stream is past its inspection depth (or the segment
	// lies entirely beyond it).
	StatusDepth
	// StatusReset: an RST with the expected sequence number; the stream is
	// closed and its buffers freed.
	StatusReset
	// StatusClosed: the stream was reset earlier; the segment is ignored.
	StatusClosed
	// StatusUnverified: the segment overlaps delivered bytes that are
	// neither kept any more (MaxHistory, or the pool: FlagHistoryLost) nor
	// acknowledged by the receiver, so they cannot be compared with what
	// the receiver may take (FlagUnverified). Nothing of it was used.
	StatusUnverified
)

var statusNames = [...]string{"empty", "delivered", "buffered", "duplicate", "conflict", "out-of-window", "limit", "depth", "reset", "closed", "unverified"}

func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("status-%d", s)
}

// Drop reports whether the inline engine should drop the packet that
// carried the segment: it carries bytes the DPI did not accept, and TCP
// will retransmit it (or it was an attack).
func (s Status) Drop() bool {
	return s == StatusConflict || s == StatusOutOfWindow || s == StatusLimit || s == StatusUnverified
}

// Flags qualify a Result.
type Flags uint32

// Result flags.
const (
	// FlagDepthReached: this push delivered the stream up to its depth; the
	// engine can make the flow's verdict final.
	FlagDepthReached Flags = 1 << iota
	// FlagFIN: the stream is complete, every byte up to the FIN delivered.
	FlagFIN
	// FlagMidstream: the stream started without a SYN, at this segment.
	FlagMidstream
	// FlagKeepAlive: a keep-alive or zero-window probe (one below the next
	// expected byte); its byte is not compared.
	FlagKeepAlive
	// FlagOverlap: part of the segment was already seen and compared equal.
	FlagOverlap
	// FlagOld: part of the segment was already acknowledged by the receiver
	// and ignored.
	FlagOld
	// FlagUnverified: part of the segment overlapped delivered bytes that
	// are no longer kept (history limit or pool) and not acknowledged, so
	// it could not be compared (StatusUnverified).
	FlagUnverified
	// FlagHistoryLost: the pool could not hold this stream's history; it
	// was dropped and later retransmissions of these bytes are Unverified.
	FlagHistoryLost
	// FlagLimitBytes, FlagLimitSegments, FlagLimitPool: which limit a
	// StatusLimit hit.
	FlagLimitBytes
	FlagLimitSegments
	FlagLimitPool
	// FlagAfterFIN: data past the FIN (StatusOutOfWindow); FlagBadFIN: a
	// FIN at another place than an earlier one, or before bytes already
	// delivered (StatusOutOfWindow: dropped, the stream goes on).
	FlagAfterFIN
	FlagBadFIN
	// FlagBadSYN: a SYN with another initial sequence number once data was
	// seen: ignored (StatusEmpty), or StatusOutOfWindow if it carries data.
	FlagBadSYN
	// FlagInvalidRST: an RST with an unexpected sequence number, ignored.
	FlagInvalidRST
)

// Result describes what Push did with one segment.
type Result struct {
	Status Status
	Flags  Flags
	// Delivered is the number of bytes passed to the callback.
	Delivered int
}

func (r Result) String() string {
	return fmt.Sprintf("%s delivered %d flags %#x", r.Status, r.Delivered, uint32(r.Flags))
}

// Stats counts what a Reassembler did, over all its streams.
type Stats struct {
	Segments, DeliveredBytes                uint64
	Buffered, Duplicates, Conflicts         uint64
	OutOfWindow, Limits, Resets, Unverified uint64
	HistoryLost                             uint64
	// PoolBytes is the buffer memory in use, PoolMaxBytes its high-water
	// mark, PoolBudget the limit.
	PoolBytes, PoolMaxBytes, PoolBudget int
}

// Reassembler reassembles the TCP streams of one worker. It owns the
// worker's buffer pool and is not safe for concurrent use.
type Reassembler struct {
	cfg   Config
	pool  pool
	stats Stats
}

// New returns a Reassembler with cfg's limits.
func New(cfg Config) (*Reassembler, error) {
	if cfg.MaxBufferedBytes == 0 {
		cfg.MaxBufferedBytes = DefaultMaxBufferedBytes
	}
	if cfg.MaxSegments == 0 {
		cfg.MaxSegments = DefaultMaxSegments
	}
	if cfg.MaxHistory == 0 {
		cfg.MaxHistory = DefaultMaxHistory
	}
	if cfg.MaxAhead == 0 {
		cfg.MaxAhead = DefaultMaxAhead
	}
	if cfg.PoolBytes == 0 {
		cfg.PoolBytes = DefaultPoolBytes
	}
	switch {
	case cfg.MaxBufferedBytes < 0 || cfg.MaxBufferedBytes > MaxMaxAhead:
		return nil, fmt.Errorf("new reassembler: max buffered bytes %d out of range", cfg.MaxBufferedBytes)
	case cfg.MaxSegments < 0 || cfg.MaxSegments > 1<<15:
		return nil, fmt.Errorf("new reassembler: max segments %d out of range", cfg.MaxSegments)
	case cfg.MaxAhead < 0 || cfg.MaxAhead > MaxMaxAhead:
		return nil, fmt.Errorf("new reassembler: max ahead %d out of range 1..%d", cfg.MaxAhead, MaxMaxAhead)
	case cfg.MaxHistory > MaxMaxAhead:
		return nil, fmt.Errorf("new reassembler: max history %d out of range", cfg.MaxHistory)
	case cfg.PoolBytes < blockSize:
		return nil, fmt.Errorf("new reassembler: pool of %d bytes is smaller than a block (%d)", cfg.PoolBytes, blockSize)
	case cfg.Depth < 0:
		return nil, fmt.Errorf("new reassembler: negative depth %d", cfg.Depth)
	}
	return &Reassembler{cfg: cfg, pool: newPool(cfg.PoolBytes)}, nil
}

// Config returns the configuration with defaults filled in.
func (r *Reassembler) Config() Config { return r.cfg }

// Stats returns the counters.
func (r *Reassembler) Stats() Stats {
	s := r.stats
	s.PoolBytes = int(r.pool.inUse) * blockSize
	s.PoolMaxBytes = int(r.pool.maxUsed) * blockSize
	s.PoolBudget = int(r.pool.max) * blockSize
	return s
}

// Stream is the reassembly state of one direction of a TCP connection.
// Its zero value is a stream that has seen nothing; it holds no pointers
// (buffers are named by pool ids), so it can live inside the flow table's
// per-flow state. Release it with Reassembler.Release when the flow ends.
type Stream struct {
	base     uint32 // sequence number of offset 0
	flags    uint16
	oooSegs  uint16
	next     int64 // offset of the next byte to deliver
	acked    int64 // offset the receiver acknowledged (≤ next)
	fin      int64 // offset just past the last byte, when stFIN
	depth    int64 // 0: the Reassembler's default; NoDepth: none
	oooBytes int32
	ooo      int32 // first out-of-order node
	hist     queue // delivered bytes [next-hist.n, next)
}

// Stream state bits.
const (
	stStarted uint16 = 1 << iota
	stSYN
	stMidstream
	stFIN     // FIN offset known
	stFINDone // delivered up to the FIN
	stReset   // RST accepted
	stDepth   // depth reached
	stNoHistory
)

// SetDepth sets the stream's inspection depth in bytes (NoDepth for none,
// 0 for the Reassembler's default). Set it before the first Push.
func (s *Stream) SetDepth(d int64) { s.depth = d }

// Delivered is the number of bytes delivered so far.
func (s *Stream) Delivered() int64 { return s.next }

// Buffered is the number of out-of-order bytes held.
func (s *Stream) Buffered() int { return int(s.oooBytes) }

// Started reports whether the stream has seen a segment.
func (s *Stream) Started() bool { return s.flags&stStarted != 0 }

// Midstream reports whether the stream started without a SYN.
func (s *Stream) Midstream() bool { return s.flags&stMidstream != 0 }

// Done reports whether the stream will deliver nothing more: FIN
// delivered, reset, or depth reached.
func (s *Stream) Done() bool { return s.flags&(stFINDone|stReset|stDepth) != 0 }

// Acked is the offset up to which the receiver acknowledged the stream.
func (s *Stream) Acked() int64 { return s.acked }

// Offset is the stream offset of sequence number seq (serial-number
// arithmetic around the next byte expected). Meaningful once Started.
func (s *Stream) Offset(seq uint32) int64 { return s.offset(seq) }

// NextSeq is the sequence number of the next byte the stream expects.
func (s *Stream) NextSeq() uint32 { return s.base + uint32(s.next) }

// offset converts a sequence number to a stream offset, relative to next
// with serial-number arithmetic, so sequence wraparound is invisible.
func (s *Stream) offset(seq uint32) int64 {
	return s.next + int64(int32(seq-s.NextSeq()))
}

func (r *Reassembler) depthOf(s *Stream) int64 {
	switch {
	case s.depth > 0:
		return s.depth
	case s.depth < 0 || r.cfg.Depth == 0:
		return 1 << 62
	}
	return r.cfg.Depth
}

// Release frees the stream's buffers and resets it to its zero value.
// Call it when the flow ends (the flow table's end callback).
func (r *Reassembler) Release(s *Stream) {
	r.dropBuffers(s)
	*s = Stream{}
}

func (r *Reassembler) dropBuffers(s *Stream) {
	s.hist.reset(&r.pool)
	for id := s.ooo; id != 0; {
		next := r.pool.nodes[id].next
		r.pool.putNode(id)
		id = next
	}
	s.ooo, s.oooBytes, s.oooSegs = 0, 0, 0
}

// Ack tells the stream what the receiver acknowledged (the ACK field of a
// segment of the other direction): delivered bytes below it need no longer
// be kept for comparison.
func (r *Reassembler) Ack(s *Stream, ack uint32) {
	if s.flags&stStarted == 0 {
		return
	}
	off := min(s.offset(ack), s.next)
	if off <= s.acked {
		return
	}
	s.acked = off
	if keep := s.next - off; keep < int64(s.hist.n) {
		s.hist.drop(&r.pool, int(int64(s.hist.n)-keep))
	}
}
