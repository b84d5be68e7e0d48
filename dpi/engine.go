package dpi

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dpi/defrag"
	"github.com/deepwall/deepwall/dpi/flow"
	"github.com/deepwall/deepwall/dpi/internal/plan"
	"github.com/deepwall/deepwall/dpi/proto/http"
	"github.com/deepwall/deepwall/dpi/reasm"
	"github.com/deepwall/deepwall/rules"
	"github.com/deepwall/deepwall/xdp"

	"github.com/deepwall/deepwall/ctl/eve"
)

// Limits and defaults of the engine.
const (
	// MaxWorkers bounds Config.Workers.
	MaxWorkers = 256
	// DefaultExpireInterval is how often a worker ends idle flows between
	// packets.
	DefaultExpireInterval = 100 * time.Millisecond
	// DefaultDropEventsPerSecond bounds the drop events (malformed frames,
	// fragments, full tables) one worker emits per second per reason.
	DefaultDropEventsPerSecond = 10
	// DefaultHold is how long the bytes of a TCP direction whose protocol
	// is still undecided are held (Config.Hold).
	DefaultHold = time.Second
	// maxURL, maxUserAgent, maxHostname and maxMethod bound the HTTP
	// fields copied for events.
	maxURL       = 2048
	maxUserAgent = 512
	maxHostname  = 255
	maxMethod    = 32
)

// Errors.
var (
	// ErrNoRules: Config.Rules or SetRules got nil.
	ErrNoRules = errors.New("dpi: no rules")
	// ErrClosed: the engine was closed.
	ErrClosed = errors.New("dpi: engine closed")
)

// Config configures an Engine. Zero fields take defaults.
type Config struct {
	// Workers is the number of workers (the dataplane's worker count):
	// Inspect's worker argument is below it. Default 1.
	Workers int
	// Rules is the rule set; the engine owns it from now on and closes it
	// when a newer set replaces it (SetRules) or at Close.
	Rules *rules.Compiled
	// Flow configures each worker's flow table.
	Flow flow.Config
	// Reasm configures each worker's TCP reassembler. Reasm.Depth, if Depth
	// is 0, is the inspection depth.
	Reasm reasm.Config
	// Depth is the inspection depth of each direction of a TCP flow, in
	// bytes (0: none). A flow past it in both directions (or past it in
	// one and finished in the other) gets a final ALLOW.
	Depth int64
	// Defrag bounds each worker's IP reassembly.
	Defrag defrag.Config
	// HTTP bounds the HTTP parser.
	HTTP http.Limits
	// Emit receives every event. It is called from the workers,
	// concurrently for distinct workers, and the event is the receiver's
	// (the engine never touches it again). Nil discards events.
	Emit func(*eve.Event)
	// Offline: frame timestamps are wall-clock nanoseconds since the Unix
	// epoch (pcap time) and events carry them, in UTC. Otherwise frame
	// timestamps are CLOCK_MONOTONIC nanoseconds, as the dataplane gives
	// them, and events carry the wall-clock time they stand for.
	Offline bool
	// KernelACL: the XDP program enforces Rules.ACL, so the engine does not
	// evaluate it again. Without it (offline, NFQUEUE) the engine applies
	// the ACL to each direction of a flow, first match, as XDP would.
	KernelACL bool
	// Bypass: the dataplane carries flows whose verdict is final in the
	// kernel (XDP flow map, connmark). The engine then keeps only a small
	// record of them until FlowEnded (or the flow table's lifetime), instead
	// of a flow table entry that would expire while the kernel carries the
	// flow.
	Bypass bool
	// MaxParked bounds the bypassed flows a worker remembers
	// (Flow.MaxFlows when 0); past it the oldest are ended.
	MaxParked int
	// ExpireInterval is how often a worker ends idle flows between packets
	// (DefaultExpireInterval).
	ExpireInterval time.Duration
	// DropEventsPerSecond bounds per-packet drop events per worker and
	// reason (DefaultDropEventsPerSecond); negative means none.
	DropEventsPerSecond int
	// Now returns the current time on the frame clock, for FlowEnded and
	// Flush (CLOCK_MONOTONIC live; the last frame's time offline).
	Now func() int64
	// Hold is how long the engine holds the data of a TCP direction whose
	// application protocol identification has not decided yet
	// (DefaultHold; negative: no hold). Held segments are dropped — the
	// sender retransmits them, and the retransmission passes once the
	// protocol is known and its parser saw the bytes — so nothing reaches
	// the receiver before the rules for its protocol could see it. The
	// bytes are bounded by identification itself (proto.MaxIdentifyBytes
	// per direction: past them a direction is not identified and no
	// longer held). Past Hold the flow is taken as unidentified (the rules
	// for unknown traffic apply), with a tcp.hold_timeout drop event.
	Hold time.Duration
	// NoIdentify: only the flows some rule may apply to are identified.
	// By default every TCP and UDP flow is, whatever the rules need, so
	// that every flow event and the flow list name its protocol ("unknown"
	// when identification gave up): a flow no rule applies to is followed
	// until identification decides (a few packets), without being held
	// or having frames dropped, before its final ALLOW. NoIdentify gives
	// those flows their final ALLOW at their first packet, for speed.
	NoIdentify bool
	// ScoreEvents: alert rules with an anomaly score emit an event of
	// their own when they hit. Without it they are only named in the
	// event of the threshold rule they push over its threshold (one
	// event per blocked request, as the Core Rule Set logs).
	ScoreEvents bool
	// H2Block is what a blocking rule deciding on an HTTP/2 stream does:
	// reset the stream only (H2BlockStream, the default) or the
	// connection (H2BlockConnection).
	H2Block H2BlockPolicy
}

// Engine is the DPI engine: it decodes frames, tracks flows, reassembles
// TCP, identifies and parses application protocols, matches the rules and
// decides a verdict per frame. It implements dataplane.Inspector.
//
// Each worker has its own state (decoder, flow table, reassembler,
// Hyperscan scratch, parsers' buffers) and a mutex that Inspect takes,
// uncontended, so that Tick, Flows, FlowEnded and Stats can run from other
// goroutines.
type Engine struct {
	cfg     Config
	workers []*worker

	// The published rule set. Workers compare their own with cur at every
	// frame (one atomic load) and switch under switchMu.
	cur      atomic.Pointer[ruleset]
	switchMu sync.Mutex
	gen      uint64
	closed   bool

	// Mapping from the frame clock to wall time (live mode).
	wallBase time.Time
	monoBase int64
	ownClock bool // Config.Now was given
	reloads  atomic.Uint64
}

var _ dataplane.Inspector = (*Engine)(nil)

// New returns an engine for cfg.
func New(cfg Config) (*Engine, error) {
	if cfg.Rules == nil {
		return nil, ErrNoRules
	}
	if cfg.Workers == 0 {
		cfg.Workers = 1
	}
	if cfg.Workers < 0 || cfg.Workers > MaxWorkers {
		return nil, fmt.Errorf("new engine: workers %d out of range 1..%d", cfg.Workers, MaxWorkers)
	}
	if cfg.Depth < 0 {
		return nil, fmt.Errorf("new engine: negative depth %d", cfg.Depth)
	}
	if cfg.Depth > 0 {
		cfg.Reasm.Depth = cfg.Depth
	}
	if cfg.ExpireInterval <= 0 {
		cfg.ExpireInterval = DefaultExpireInterval
	}
	if cfg.DropEventsPerSecond == 0 {
		cfg.DropEventsPerSecond = DefaultDropEventsPerSecond
	}
	if cfg.Hold == 0 {
		cfg.Hold = DefaultHold
	}
	if cfg.MaxParked <= 0 {
		cfg.MaxParked = cfg.Flow.MaxFlows
		if cfg.MaxParked <= 0 {
			cfg.MaxParked = flow.DefaultMaxFlows
		}
	}
	e := &Engine{cfg: cfg, wallBase: time.Now(), monoBase: monotonic()}
	e.ownClock = cfg.Now != nil
	if e.cfg.Now == nil {
		e.cfg.Now = monotonic
	}
	set, err := plan.New(cfg.Rules, 1, cfg.Workers)
	if err != nil {
		return nil, fmt.Errorf("new engine: %w", err)
	}
	rs := &ruleset{Set: set}
	e.gen = 1
	e.cur.Store(rs)
	for i := 0; i < cfg.Workers; i++ {
		w, err := newWorker(e, i, rs)
		if err != nil {
			e.closeWorkers()
			rs.Release()
			return nil, fmt.Errorf("new engine: worker %d: %w", i, err)
		}
		e.workers = append(e.workers, w)
	}
	return e, nil
}

func monotonic() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// Workers returns the number of workers.
func (e *Engine) Workers() int { return len(e.workers) }

// wall converts a frame-clock time to wall time for events.
func (e *Engine) wall(ts int64) time.Time {
	if e.cfg.Offline {
		return time.Unix(0, ts).UTC()
	}
	return e.wallBase.Add(time.Duration(ts - e.monoBase))
}

// Inspect judges one frame; see dataplane.Inspector. worker must be below
// Workers; frames of one flow must always go to the same worker
// (Key.Hash() % Workers, as the dataplane dispatches).
func (e *Engine) Inspect(worker int, f *dataplane.Frame) dataplane.Verdict {
	w := e.workers[worker]
	w.mu.Lock()
	if rs := e.cur.Load(); rs != w.rs {
		w.switchRules()
	}
	v := w.inspect(f)
	var d *defrag.Datagram
	if w.datagram != nil {
		d, w.datagram = w.datagram.Clone(), nil
	}
	w.mu.Unlock()
	if d != nil {
		// Judged on the worker of the datagram's flow, which may be
		// another one: fragments carry no ports, so the dataplane sent
		// them here by addresses alone.
		v = e.inspectDatagram(worker, d, f)
	}
	return v
}

// ruleset is a rule set prepared for the workers, with the count of
// workers using it (guarded by Engine.switchMu): it is released when the
// last one switches away from it.
type ruleset struct {
	*plan.Set
	users int
}

// SetRules replaces the rule set. It prepares the new set for every worker
// first (scratch spaces), then publishes it; each worker switches at its
// next frame (or Tick), so no frame is judged by parts of two sets. The
// engine owns c from now on; the previous set is closed once no worker
// uses it (on error the caller keeps c). Live flows are re-planned at
// their next frame: streams of the old set close, verdicts that were final
// are dropped and applicability is checked again (docs/engine.md, "Hot
// reload").
func (e *Engine) SetRules(c *rules.Compiled) error {
	if c == nil {
		return ErrNoRules
	}
	e.switchMu.Lock()
	defer e.switchMu.Unlock()
	if e.closed {
		return ErrClosed
	}
	set, err := plan.New(c, e.gen+1, len(e.workers))
	if err != nil {
		return fmt.Errorf("set rules: %w", err)
	}
	rs := &ruleset{Set: set}
	e.gen++
	prev := e.cur.Swap(rs)
	e.reloads.Add(1)
	if prev.users == 0 {
		prev.Release()
	}
	return nil
}

// Rules returns the rule set in force (the last one SetRules published).
func (e *Engine) Rules() *rules.Compiled { return e.cur.Load().Compiled }

// Tick lets idle workers catch up: each switches to the newest rule set
// and ends flows idle at now (frame clock). The agent calls it
// periodically; busy workers do the same between frames by themselves.
func (e *Engine) Tick(now int64) {
	for _, w := range e.workers {
		w.mu.Lock()
		if e.cur.Load() != w.rs {
			w.switchRules()
		}
		w.expire(now)
		w.mu.Unlock()
	}
}

// Flush ends every flow now (reason "shutdown"), bypassed ones included,
// emitting their flow events. Offline inspection calls it at the end of
// the capture.
func (e *Engine) Flush() {
	for _, w := range e.workers {
		w.mu.Lock()
		w.flush(e.now(w))
		w.mu.Unlock()
	}
}

// now is the frame clock for calls that come without a frame: Config.Now
// live, the worker's last frame time offline (unless Config.Now is set).
func (e *Engine) now(w *worker) int64 {
	if e.cfg.Offline && !e.ownClock {
		return w.now
	}
	return e.cfg.Now()
}

// Close flushes every flow and frees everything the engine holds,
// Hyperscan memory included. The engine must not be used afterwards.
func (e *Engine) Close() error {
	e.switchMu.Lock()
	closed := e.closed
	e.closed = true
	e.switchMu.Unlock()
	if closed {
		return nil
	}
	e.Flush()
	e.closeWorkers()
	e.switchMu.Lock()
	e.cur.Load().Release()
	e.switchMu.Unlock()
	return nil
}

// closeWorkers frees the workers. Locks are taken in the order Inspect
// takes them: the worker's, then switchMu.
func (e *Engine) closeWorkers() {
	for _, w := range e.workers {
		w.mu.Lock()
		e.switchMu.Lock()
		w.close()
		e.switchMu.Unlock()
		w.mu.Unlock()
	}
}

// FlowEnded tells the engine that the kernel reaped a flow it carried
// after a final verdict: pkts and bytes are the kernel's fast-path
// counters, indexed by xdp.Direction. The flow's event is emitted with the
// counters merged. It reports false for a flow the engine does not know.
func (e *Engine) FlowEnded(key xdp.FlowKey, pkts, bytes [2]uint64) bool {
	w := e.workers[key.Worker(len(e.workers))]
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.flowEnded(key, pkts, bytes, e.now(w))
}

// FlowInfo is a snapshot of one flow, for `deepwall flows`.
type FlowInfo struct {
	Key    xdp.FlowKey
	FlowID uint64
	Worker int
	// Client opened the flow; Server is the other side.
	Client, Server netip.AddrPort
	Proto          uint8
	// App is the identified application protocol ("" while undecided).
	App string
	// State is the TCP state ("established", ...) or "new"/"established"
	// for other protocols; "bypassed" for flows the kernel carries.
	State string
	// Packets and Bytes seen by the engine, indexed by direction
	// (0: to server, 1: to client).
	Packets, Bytes [2]uint64
	Start, Last    time.Time
	// Verdict is "pass" or "drop" once final, "" while inspected.
	Verdict  string
	RuleID   uint32
	Bypassed bool
	Alerted  bool
}

// Flows calls fn for every flow of every worker (inspected and bypassed)
// until fn returns false. Each worker is locked while its flows are
// listed; fn must not call the engine.
func (e *Engine) Flows(fn func(FlowInfo) bool) {
	for _, w := range e.workers {
		w.mu.Lock()
		ok := w.listFlows(fn)
		w.mu.Unlock()
		if !ok {
			return
		}
	}
}

// Stats are the engine's counters, summed over workers.
type Stats struct {
	Packets, Bytes     uint64
	Forwarded, Dropped uint64
	// Final verdicts given (flows moved to the fast path).
	FinalAllow, FinalDrop uint64
	// Flows in the tables, flows bypassed (parked), flows created.
	Flows, Parked int
	FlowsCreated  uint64
	// Events emitted, alert events among them, and blocked flows.
	Events, Alerts, Blocks uint64
	// OpenStreams is the number of Hyperscan streams open now.
	OpenStreams int
	// Drops counts dropped frames by reason ("decode.truncated",
	// "fragment", "rule", "acl", "tcp.overlap_conflict", ...).
	Drops map[string]uint64
	// Apps counts identified flows by application protocol.
	Apps map[string]uint64
	// Signatures counts alert events by rule id.
	Signatures map[uint32]uint64
	// Findings counts protocol anomalies the parsers reported.
	Findings uint64
	// ScanErrors counts Hyperscan errors (the scan is skipped).
	ScanErrors uint64
	// H2Streams counts the HTTP/2 streams inspected (closed), GRPCStreams
	// the gRPC ones among them.
	H2Streams, GRPCStreams uint64
	// H2StreamResets counts the HTTP/2 streams blocked alone (their
	// frames rewritten, the connection kept).
	H2StreamResets uint64
	// Reloads counts SetRules calls; RulesGen is the set in force.
	Reloads  uint64
	RulesGen uint64
	Flow     flow.Stats
	Reasm    reasm.Stats
	Defrag   defrag.Stats
}

// Stats returns the counters. It locks each worker briefly.
func (e *Engine) Stats() Stats {
	s := Stats{Drops: map[string]uint64{}, Apps: map[string]uint64{}, Signatures: map[uint32]uint64{}}
	for _, w := range e.workers {
		w.mu.Lock()
		w.addStats(&s)
		w.mu.Unlock()
	}
	s.Reloads = e.reloads.Load()
	s.RulesGen = e.cur.Load().Gen
	return s
}
