package dpi

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"unsafe"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dpi/decode"
	"github.com/deepwall/deepwall/dpi/defrag"
	"github.com/deepwall/deepwall/dpi/flow"
	"github.com/deepwall/deepwall/dpi/internal/hs"
	"github.com/deepwall/deepwall/dpi/internal/plan"
	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/dpi/proto/dns"
	"github.com/deepwall/deepwall/dpi/proto/http"
	"github.com/deepwall/deepwall/dpi/proto/sql"
	"github.com/deepwall/deepwall/dpi/reasm"
	"github.com/deepwall/deepwall/rules"
	"github.com/deepwall/deepwall/xdp"
)

// Final verdicts of a flow.
const (
	finalNone uint8 = iota
	finalAllow
	finalDrop
)

// Identification states of a flow.
const (
	identPending uint8 = iota
	identDone          // flowState.app is final (Unknown: identification gave up)
)

// ACL verdicts per key direction.
const (
	aclUnknown uint8 = iota
	aclAllow
	aclDeny
)

// flowState flags.
const (
	fInit      uint16 = 1 << iota // initialised by begin
	fAlerted                      // an alert event was emitted
	fBypassed                     // the verdict became a final ALLOW (the fast path carries the rest)
	fTransient                    // an in-flight frame of a parked flow: ends without an event
	fParking                      // moved to the parked records: ends without an event
	fResync                       // the rule set changed: re-plan at the next frame
	fDoneTS                       // the to-server direction ended (FIN, RST) or reached the depth
	fDoneTC                       // the to-client direction did
	fDepth                        // a direction reached the inspection depth
	fKernelEnd                    // ended by FlowEnded: the kernel's counters are merged
	fGRPC                         // an HTTP/2 flow carried a gRPC stream (app_proto shown as grpc)
	fIdentOnly                    // no rule applies: inspected only to name its protocol (Config.NoIdentify unset)
)

// flowState is the engine's per-flow state, kept in the flow table entry.
// It holds no pointers (the table is then never scanned by the garbage
// collector); what needs pointers — parsers, Hyperscan streams, rule hits
// — lives in a flowCtx of the worker, referenced by index, and only while
// the flow is inspected.
type flowState struct {
	dir   [2]reasm.Stream
	fid   uint64    // event flow_id
	start int64     // frame-clock time the flow started (kept across a pick-up after bypass)
	base  [2]uint64 // packets counted elsewhere (bypass, kernel), by Dir
	baseB [2]uint64 // bytes counted elsewhere, by Dir
	ctx   int32     // 1 + index of the flow's flowCtx in worker.ctxs; 0 = none
	rule  uint32    // rule that decided the final verdict
	flags uint16
	final uint8
	app   proto.Protocol
	ident uint8
	acl   [2]uint8 // by xdp.Direction
	// ingress is 1 + the port the client's frames arrive on (0: unknown).
	ingress uint8
	udpMiss uint8  // datagrams identification could not name
	dropEv  uint16 // drop reasons already reported for this flow (bit per dropReason)
}

func doneFlag(d flow.Dir) uint16 { return fDoneTS << d }

// parked remembers a flow the kernel carries after a final verdict, until
// FlowEnded or the flow lifetime ends it. It holds no pointers.
type parked struct {
	fid         uint64
	start, last int64
	pkts, bytes [2]uint64 // by Dir
	client      xdp.Direction
	tcp         flow.TCPState
	replied     bool
	final       uint8
	app         proto.Protocol
	ident       uint8
	flags       uint16
	rule        uint32
	gen         uint64 // rule set generation the verdict was given under
}

type parkEntry struct {
	key   xdp.FlowKey
	fid   uint64
	start int64
}

// result is what processing decided about the current frame.
type result struct {
	block  bool // the flow is blocked: drop, final, reset TCP
	allow  bool // the flow's verdict is a final ALLOW
	drop   bool // drop this frame only
	reset  bool
	reason string // drop reason for the counters
	// rewritten: the frame was rewritten in place (a blocked HTTP/2
	// stream) and is forwarded so.
	rewritten bool
}

// worker is one worker's state. Everything but mu is owned by the worker
// holding mu.
type worker struct {
	mu sync.Mutex
	e  *Engine
	id int

	rs      *ruleset
	scratch *hs.Scratch
	scanner *hs.Scanner

	dec    *decode.Decoder
	pkt    decode.Packet
	flows  *flow.Table[flowState]
	defrag *defrag.Table
	// datagram is the datagram the current frame completed, for
	// Engine.Inspect to judge once this worker's lock is released.
	datagram *defrag.Datagram
	ra       *reasm.Reassembler
	httpSc   *http.Scratch
	h2       h2Worker
	dnsUDP   *dns.Parser
	det      rules.Detector

	ctxs    []*flowCtx
	freeCtx []int32

	parked map[xdp.FlowKey]parked
	parkQ  []parkEntry
	parkQH int

	// the frame being judged
	now  int64
	cur  *flow.Flow[flowState]
	cst  *flowState
	cctx *flowCtx
	cdir flow.Dir
	res  result
	// reassembled: the frame being judged is a copy reassembled from IP
	// fragments; what is forwarded are the fragments, so rewriting the
	// copy changes nothing the receiver gets.
	reassembled bool
	// feedAt is the reassembly offset of the first byte of the chunk
	// being fed to a parser (noOffset: unknown).
	feedAt int64

	deliver [2]func([]byte)

	// matching
	mh      matcher
	chain   chainBufs
	blockCF confirmState
	pend    []pendHit
	arena   [maxPend][maskInput]byte
	hitBuf  []*rules.Rule
	joined  []byte
	fired   []bool      // per pattern of the group being scanned: a negated pattern matched the value
	quiet   *quietCache // short values known to draw no match (quiet.go)
	req     reqBufs
	msg     scope // DNS message or UDP datagram being inspected
	msgDNS  dnsInfo
	sqlq    sql.Query                         // the statements of the query being inspected (db.go)
	dgram   [plan.NumStreamKinds][]streamSlot // per-datagram payload streams

	lastExpire int64
	dropTok    [numDropReasons]dropBucket

	st workerStats
}

type workerStats struct {
	packets, bytes, forwarded, dropped uint64
	finalAllow, finalDrop              uint64
	events, alerts, blocks             uint64
	findings, scanErrors               uint64
	h2Streams, grpcStreams, h2Resets   uint64
	openStreams                        int
	drops                              map[string]uint64
	apps                               [proto.NumProtocols]uint64
	sigs                               map[uint32]uint64
}

func newWorker(e *Engine, id int, rs *ruleset) (*worker, error) {
	w := &worker{e: e, id: id, rs: rs, scratch: rs.Scratch[id], dec: decode.NewDecoder(),
		parked: map[xdp.FlowKey]parked{}, quiet: newQuietCache()}
	w.st.drops = map[string]uint64{}
	w.st.sigs = map[uint32]uint64{}
	w.feedAt = noOffset
	var err error
	if w.scanner, err = hs.NewScanner(0); err != nil {
		return nil, err
	}
	fc := e.cfg.Flow
	// The TCP state follows what the receiver accepts: the reassembler
	// knows which RST and FIN that is (tcp).
	fc.CallerEnds = true
	// A flow picked up mid-stream whose first bytes are a server's has
	// its sender for the server (identification then reads them so).
	fc.ServerFirst = proto.IsServerFirst
	if w.flows, err = flow.New(fc, w.onEnd); err != nil {
		w.scanner.Close()
		return nil, err
	}
	if w.ra, err = reasm.New(e.cfg.Reasm); err != nil {
		w.scanner.Close()
		return nil, err
	}
	w.defrag = defrag.New(e.cfg.Defrag)
	w.httpSc = http.NewScratch(e.cfg.HTTP)
	w.dnsUDP = dns.NewParser(w, dns.Config{})
	w.deliver = [2]func([]byte){
		func(b []byte) { w.onData(flow.ToServer, b) },
		func(b []byte) { w.onData(flow.ToClient, b) },
	}
	w.mh.w = w
	w.pend = make([]pendHit, 0, maxPend)
	w.e.switchMu.Lock()
	rs.users++
	w.e.switchMu.Unlock()
	return w, nil
}

// close frees the worker's C memory; the worker is unusable afterwards.
// The caller holds Engine.switchMu.
func (w *worker) close() {
	if w.scanner == nil {
		return
	}
	for _, ctx := range w.ctxs {
		if ctx.inUse {
			w.closeStreams(ctx)
		}
	}
	w.closeUDPStreams()
	w.scanner.Close()
	w.scanner = nil
	w.rs.users--
}

// stopped reports whether the current frame's flow got a final verdict:
// nothing more of it is inspected.
func (w *worker) stopped() bool { return w.res.block || w.res.allow }

// inspect judges one frame.
func (w *worker) inspect(fr *dataplane.Frame) dataplane.Verdict {
	now := fr.Timestamp
	w.now = now
	if now-w.lastExpire >= int64(w.e.cfg.ExpireInterval) || now < w.lastExpire {
		w.expire(now)
	}
	w.st.packets++
	w.st.bytes += uint64(len(fr.Data))
	p := &w.pkt
	if err := w.dec.Decode(fr.Data, p); err != nil {
		// Decode returns its *Error unwrapped; errors.As would move the
		// target to the heap on every malformed frame.
		reason := "decode"
		if de, ok := err.(*decode.Error); ok {
			reason = decodeReasons[de.Reason]
		}
		return w.dropStray(dropDecode, reason, fr)
	}
	if p.IPVersion == 0 || p.Flags&decode.FlagNDP != 0 {
		return w.forward()
	}
	if reason := w.badChecksum(fr); reason != "" {
		// The receiver drops it: it must change nothing here either (no
		// flow state, no reassembly), and it goes no further.
		return w.dropStray(dropChecksum, reason, fr)
	}
	if p.Flags&decode.FlagFragment != 0 {
		return w.fragment(fr)
	}
	f, d, err := w.flows.Lookup(p, now)
	if err != nil {
		return w.dropStray(dropTableFull, "flow_table_full", fr)
	}
	st := &f.State
	w.cur, w.cst, w.cdir, w.cctx, w.res = f, st, d, nil, result{}
	if st.flags&(fInit|fResync) != fInit {
		if v, done := w.begin(fr, f, d); done {
			return v
		}
	}
	if st.final != finalNone {
		if p.Proto == 6 && p.TCPFlags&(decode.TCPRst|decode.TCPFin) != 0 {
			// A decided flow is not reassembled any more: its end only
			// sets its timeout, so take it as seen.
			w.flows.AcceptEnd(f, d, p.TCPFlags, false)
		}
		v := w.finalVerdict(st, false)
		if w.e.cfg.Bypass {
			w.releaseCtx(st)
			w.park(f)
		}
		return v
	}
	if !w.res.allow {
		if st.acl[p.Dir] == aclDeny {
			w.dropOnce(dropACL, "acl", fr)
			w.res.drop, w.res.reason = true, "acl"
			return w.conclude()
		}
		if st.ctx != 0 {
			w.cctx = w.ctxs[st.ctx-1]
		}
		switch p.Proto {
		case 6:
			w.tcp(fr, f, d)
		case 17:
			w.udp(f, d)
		}
	}
	return w.conclude()
}

// ipEnd is where the IP packet of decoded frame b ends: its IP length,
// within the frame (a frame may carry Ethernet padding after it).
func ipEnd(b []byte, p *decode.Packet) int {
	ip := b[p.L3Off:]
	if p.IPVersion == 4 {
		return min(len(b), p.L3Off+int(binary.BigEndian.Uint16(ip[2:])))
	}
	return min(len(b), p.L3Off+40+int(binary.BigEndian.Uint16(ip[4:])))
}

// badChecksum returns the drop reason of a frame whose IPv4 header
// checksum or TCP/UDP checksum the receiver would reject, or "". A
// TCP/UDP checksum that looks partial (the pseudo-header sum a sender
// with TX checksum offload leaves) passes unless the dataplane knows the
// checksum is complete: the AF_XDP dataplane completes such checksums on
// forwarding, so the receiver accepts those segments too.
func (w *worker) badChecksum(fr *dataplane.Frame) string {
	p := &w.pkt
	b := fr.Data
	ip := b[p.L3Off:]
	if p.IPVersion == 4 {
		// Offline, a zero header checksum is one never computed: the
		// capture was taken on the sending host, whose NIC fills it in
		// (macOS captures are full of them; Linux computes it itself).
		if !dataplane.IPv4HeaderChecksumOK(ip[:int(ip[0]&0x0f)*4]) && !(w.e.cfg.Offline && ip[10]|ip[11] == 0) {
			return "ip.bad_checksum"
		}
	}
	end := ipEnd(b, p)
	if p.Flags&(decode.FlagL4|decode.FlagFragment) != decode.FlagL4 || p.Proto != 6 && p.Proto != 17 {
		return ""
	}
	if p.Proto == 17 {
		end = min(end, p.L4Off+int(binary.BigEndian.Uint16(b[p.L4Off+4:])))
	}
	if end < p.L4Off {
		return ""
	}
	switch dataplane.VerifyL4Checksum(ip, p.IPVersion == 6, p.Proto, b[p.L4Off:end]) {
	case dataplane.ChecksumOK:
		return ""
	case dataplane.ChecksumPartial:
		if !fr.ChecksumComplete {
			return ""
		}
	}
	if p.Proto == 6 {
		return "tcp.bad_checksum"
	}
	return "udp.bad_checksum"
}

var decodeReasons = func() (t [16]string) {
	for r := range t {
		t[r] = "decode." + decode.Reason(r).String()
	}
	return t
}()

func (w *worker) forward() dataplane.Verdict {
	w.st.forwarded++
	return dataplane.Verdict{Action: dataplane.Forward}
}

// fragment handles an IP fragment. TCP and UDP fragments are held until
// their datagram is complete (dpi/defrag), which is then inspected whole
// (Engine.Inspect hands it to the worker of its flow) and, if allowed,
// released with its last fragment; nothing of a datagram reaches the
// receiver before all of it was inspected. An ACL rule that allows the
// address pair explicitly lets fragments pass as they come (fragments
// carry no ports). Fragments of other protocols pass under the ACL.
func (w *worker) fragment(fr *dataplane.Frame) dataplane.Verdict {
	p := &w.pkt
	src := netip.AddrPortFrom(netip.AddrFrom16(p.Src).Unmap(), 0)
	dst := netip.AddrPortFrom(netip.AddrFrom16(p.Dst).Unmap(), 0)
	c := w.rs.Compiled
	if p.Proto != 6 && p.Proto != 17 {
		if !w.e.cfg.KernelACL {
			if a, _ := c.ACLVerdict(p.Proto, src, dst); a == rules.ActionBlock {
				return w.dropStray(dropACL, "acl", fr)
			}
		}
		return w.forward()
	}
	if r := c.MatchACL(p.Proto, src, dst); r != nil && r.Action == rules.ActionAllow {
		return w.forward()
	}
	d, o := w.defrag.Add(w.now, uint32(fr.Ifindex)<<1|uint32(fr.Ingress), fr.Data, p)
	switch o {
	case defrag.OutcomeHeld:
		return dataplane.Verdict{Action: dataplane.Hold}
	case defrag.OutcomeComplete:
		w.datagram = d
		return dataplane.Verdict{Action: dataplane.Hold}
	}
	return w.dropStray(dropFragment, o.String(), fr)
}

// inspectDatagram judges a datagram that worker from reassembled, on the
// worker that owns its flow, and returns the verdict of its last fragment
// f: the datagram's verdict, with the other fragments released. No
// worker lock is held, so d is a copy (Datagram.Clone): port pairs that
// share the engine call Inspect for the same worker index concurrently,
// and the next one would recycle the table's memory under it.
func (e *Engine) inspectDatagram(from int, d *defrag.Datagram, f *dataplane.Frame) dataplane.Verdict {
	var pk dataplane.Packet
	w := e.workers[from]
	if dataplane.ParsePacket(d.Frame, &pk) == dataplane.KindIP && pk.Keyed {
		w = e.workers[pk.Key.Worker(len(e.workers))]
	}
	// The datagram's checksum was checked by no one: a partial-looking
	// one is wrong (fragmenting completes checksums), so the receiver
	// would drop it.
	fr := dataplane.Frame{Data: d.Frame, Ingress: f.Ingress, Key: pk.Key, Dir: pk.Dir,
		Timestamp: f.Timestamp, ChecksumComplete: true}
	w.mu.Lock()
	if rs := e.cur.Load(); rs != w.rs {
		w.switchRules()
	}
	w.reassembled = true
	v := w.inspect(&fr)
	w.reassembled = false
	w.mu.Unlock()
	// The fragments are not the flow's keyed packets: the kernel's flow
	// map is written by a later one, and resets go with those.
	v.Final, v.Reset, v.Release = false, false, d.Held
	return v
}

// begin initialises a new flow (or re-plans one after a rule change): ACL,
// alerts on addresses and ports, and whether any layer-7 rule can apply.
// It reports true with the verdict when the frame is decided already.
func (w *worker) begin(fr *dataplane.Frame, f *flow.Flow[flowState], d flow.Dir) (dataplane.Verdict, bool) {
	st := &f.State
	p := &w.pkt
	fresh := st.flags&fInit == 0
	if fresh {
		st.flags |= fInit
		st.start = w.now
		st.fid = flowID(&f.Key, w.now)
		if len(w.parked) > 0 {
			if v, done := w.unpark(f, d); done {
				return v, true
			}
		}
	} else {
		// The rule set changed: final verdicts are re-evaluated, the ACL
		// too. A flow that was not inspected any more is picked up
		// mid-stream.
		st.flags &^= fResync
		st.acl = [2]uint8{}
		if st.final != finalNone {
			st.final, st.rule = finalNone, 0
			st.flags &^= fBypassed | fDoneTS | fDoneTC | fDepth
			for i := range st.dir {
				w.ra.Release(&st.dir[i])
				st.dir[i] = reasm.Stream{}
			}
			st.ident, st.app = identPending, proto.Unknown
		}
	}
	cs := uint8(fr.Ingress)
	if d == flow.ToClient {
		cs ^= 1
	}
	st.ingress = cs + 1
	rs := w.rs
	if !w.e.cfg.KernelACL {
		src := netip.AddrPortFrom(netip.AddrFrom16(p.Src).Unmap(), p.SrcPort)
		dst := netip.AddrPortFrom(netip.AddrFrom16(p.Dst).Unmap(), p.DstPort)
		a, id := rs.Compiled.ACLVerdict(p.Proto, src, dst)
		b, _ := rs.Compiled.ACLVerdict(p.Proto, dst, src)
		st.acl[p.Dir], st.acl[p.Dir^1] = aclOf(a), aclOf(b)
		if a == rules.ActionBlock {
			// The flow's opening frame is refused: nothing of it may pass.
			st.final, st.rule = finalDrop, id
			w.st.finalDrop++
			w.aclBlocked(f, d, id, fr)
			v := w.finalVerdict(st, true)
			if w.e.cfg.Bypass {
				w.park(f)
			}
			return v, true
		}
	}
	rf := rules.Flow{Proto: f.Key.Proto, Client: f.Client(), Server: f.Server()}
	if fresh {
		for _, r := range rs.AlertL4 {
			if r.MatchFlow(rf) {
				w.emitAlertRule(r, d, nil, "allowed")
			}
		}
	}
	keep := rs.MayApply(rf)
	if keep && st.ident == identDone {
		keep = rs.Needs(st.app, rf, false)
	}
	st.flags &^= fIdentOnly
	if !keep && st.acl[p.Dir^1] != aclDeny {
		if w.e.cfg.NoIdentify || st.ident == identDone || p.Proto != 6 && p.Proto != 17 {
			w.allowFinal(0)
		} else {
			// Every flow is named, whatever the rules need: it stays
			// until identification decides, without rules, hold or drops
			// (conclude).
			st.flags |= fIdentOnly
		}
	}
	return dataplane.Verdict{}, false
}

func aclOf(a rules.Action) uint8 {
	if a == rules.ActionBlock {
		return aclDeny
	}
	return aclAllow
}

// flowID is the event flow_id: a hash (FNV-1a) of the key and the start
// time, within 51 bits so JSON readers that use doubles keep it exact.
func flowID(k *xdp.FlowKey, start int64) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range unsafe.Slice((*byte)(unsafe.Pointer(k)), unsafe.Offsetof(k.Proto)+1) {
		h = (h ^ uint64(c)) * 1099511628211
	}
	for i := range 8 {
		h = (h ^ uint64(byte(start>>(8*i)))) * 1099511628211
	}
	return h & (1<<51 - 1)
}

// finalVerdict returns the verdict of a flow whose fate is settled; first
// is true for the frame that settled it.
func (w *worker) finalVerdict(st *flowState, first bool) dataplane.Verdict {
	if st.final == finalDrop {
		if !first {
			w.countDrop("flow_drop")
		}
		w.st.dropped++
		return dataplane.Verdict{Action: dataplane.Drop, Final: true}
	}
	w.st.forwarded++
	return dataplane.Verdict{Action: dataplane.Forward, Final: true}
}

// conclude turns the frame's result into a verdict, settling the flow's
// fate when it became final.
func (w *worker) conclude() dataplane.Verdict {
	f, st := w.cur, w.cst
	if st.flags&fIdentOnly != 0 && w.res.drop && !w.res.block {
		// Identification alone never costs a frame: one the engine would
		// refuse (an overlap conflict, data after a reset...) ends it
		// instead, and the flow is unknown.
		w.res.drop, w.res.allow = false, true
	}
	var v dataplane.Verdict
	switch {
	case w.res.block:
		st.final = finalDrop
		w.st.finalDrop++
		w.st.dropped++
		w.countDrop(w.res.reason)
		v = dataplane.Verdict{Action: dataplane.Drop, Final: true, Reset: w.res.reset}
	case w.res.drop:
		w.st.dropped++
		w.countDrop(w.res.reason)
		if w.res.allow {
			// Nothing more needs inspecting, but this frame carried bytes
			// the reassembler refused: drop it now, pass the flow from
			// the next frame on.
			st.final = finalAllow
			st.flags |= fBypassed
			w.st.finalAllow++
			w.releaseCtx(st)
		}
		return dataplane.Verdict{Action: dataplane.Drop}
	case w.res.allow:
		st.final = finalAllow
		st.flags |= fBypassed
		w.st.finalAllow++
		w.st.forwarded++
		v = dataplane.Verdict{Action: dataplane.Forward, Final: true, Rewritten: w.res.rewritten}
	default:
		w.st.forwarded++
		return dataplane.Verdict{Action: dataplane.Forward, Rewritten: w.res.rewritten}
	}
	w.releaseCtx(st)
	if w.e.cfg.Bypass {
		w.park(f)
	}
	w.cur, w.cst = nil, nil
	return v
}

// blockFlow blocks the current flow: this frame and every later one are
// dropped, and both TCP ends are reset.
func (w *worker) blockFlow(ruleID uint32, reason string) {
	if w.res.block {
		return
	}
	if w.cst.flags&fIdentOnly != 0 {
		// No rule applies: the normaliser's reasons to block (an overlap
		// conflict, urgent data) end identification instead (conclude).
		w.allowFinal(0)
		return
	}
	w.res.block, w.res.allow = true, false
	w.res.reset = w.cur.Key.Proto == 6
	w.res.reason = reason
	w.cst.rule = ruleID
	w.st.blocks++
}

// allowFinal gives the current flow a final ALLOW (unless it is blocked).
func (w *worker) allowFinal(ruleID uint32) {
	if w.res.block || w.res.allow {
		return
	}
	w.res.allow = true
	w.cst.rule = ruleID
}

// tcp inspects one TCP segment of flow f in direction d.
func (w *worker) tcp(fr *dataplane.Frame, f *flow.Flow[flowState], d flow.Dir) {
	p := &w.pkt
	st := &f.State
	if f.TCP == flow.TCPReset {
		// Both sockets are gone after an accepted RST: the receiver
		// answers any data with an RST of its own. Data is dropped, never
		// passed uninspected; a new handshake on the tuple starts a new
		// flow (flow.Table.Lookup), inspected from its first byte.
		if len(p.Payload) > 0 || p.TCPFlags&(decode.TCPSyn|decode.TCPFin) != 0 {
			w.dropOnce(dropReset, "tcp.after_reset", fr)
			w.res.drop, w.res.reason = true, "tcp.after_reset"
		}
		return
	}
	if p.TCPFlags&decode.TCPUrg != 0 {
		// Urgent data: without SO_OOBINLINE the receiver takes the byte
		// before the urgent pointer out of the stream (it may even lie in
		// a later segment); with it the byte stays. The stream the
		// application reads cannot be known, so the flow is blocked.
		w.dropOnce(dropProtocol, "tcp.urgent", fr)
		w.blockFlow(0, "tcp.urgent")
		return
	}
	if p.TCPFlags&decode.TCPAck != 0 && w.ackTrusted(fr, st, d) {
		w.ra.Ack(&st.dir[d^1], p.Ack)
	}
	res := w.ra.Push(&st.dir[d], reasm.Segment{Seq: p.Seq, Flags: p.TCPFlags, Payload: p.Payload}, w.deliver[d])
	switch res.Status {
	case reasm.StatusConflict:
		// Different bytes for a range already seen: the receiver could
		// assemble something the DPI did not inspect. Evasion: block.
		w.dropOnce(dropConflict, "tcp.overlap_conflict", fr)
		w.blockFlow(0, "tcp.overlap_conflict")
		return
	case reasm.StatusOutOfWindow:
		w.dropOnce(dropOutOfWindow, "tcp.out_of_window", fr)
		w.res.drop, w.res.reason = true, "tcp.out_of_window"
	case reasm.StatusLimit:
		w.dropOnce(dropLimit, "tcp.buffer_limit", fr)
		w.res.drop, w.res.reason = true, "tcp.buffer_limit"
	case reasm.StatusUnverified:
		// It overlaps bytes no longer kept that the receiver has not
		// acknowledged: they cannot be compared, so the segment does not
		// pass. A spurious retransmission passes once the receiver's ACK
		// makes those bytes old; one after a loss past the history stalls
		// the connection rather than carry uninspected bytes.
		w.dropOnce(dropUnverified, "tcp.unverified", fr)
		w.res.drop, w.res.reason = true, "tcp.unverified"
	}
	if w.stopped() {
		return
	}
	switch {
	case res.Status == reasm.StatusReset:
		w.flows.AcceptEnd(f, d, decode.TCPRst, false)
	case res.Flags&reasm.FlagInvalidRST != 0:
		// In the window but not the next sequence number: the receiver
		// answers with a challenge ACK and keeps the connection (RFC 5961
		// 3.2). The RST is forwarded, the flow goes on.
		w.flows.AcceptEnd(f, d, 0, true)
	case res.Flags&reasm.FlagFIN != 0:
		w.flows.AcceptEnd(f, d, decode.TCPFin, false)
	}
	if res.Flags&reasm.FlagFIN != 0 || res.Status == reasm.StatusReset {
		w.dirEnd(d, false)
	}
	if res.Flags&reasm.FlagDepthReached != 0 {
		w.dirEnd(d, true)
	}
	if w.res.drop && !w.stopped() {
		return
	}
	if res.Status == reasm.StatusDelivered || res.Status == reasm.StatusDuplicate {
		w.hold(fr, d)
	}
	if !w.res.drop && !w.res.block {
		w.applyRewrites(fr, d)
	}
	if st.flags&fDepth != 0 && st.flags&(fDoneTS|fDoneTC) == fDoneTS|fDoneTC {
		w.allowFinal(0)
	}
}

// hold drops a data segment of a TCP direction whose protocol is still
// undecided (Config.Hold): the receiver must not get bytes before the
// rules of their protocol could see them. Its bytes are in the
// reassembler already, so the sender's retransmission compares equal
// and passes once identification decided (or is refused if it differs).
// A client that sends its request in tiny segments gets it through: each
// new segment feeds identification, the one that decides passes, and the
// held ones come back as retransmissions.
//
// Only segments whose bytes the receiver could take now are held (in
// order, or retransmitted): one ahead of a gap is forwarded, the receiver
// can only buffer it until the gap filler, which is judged here. A flow
// picked up mid-stream is not held: its receiver had bytes long before.
func (w *worker) hold(fr *dataplane.Frame, d flow.Dir) {
	st := w.cst
	if st.ident == identDone || len(w.pkt.Payload) == 0 || w.stopped() || w.e.cfg.Hold < 0 ||
		w.cur.Flags&flow.FlagMidstream != 0 || st.flags&fIdentOnly != 0 {
		return
	}
	ctx := w.ctxOf(w.cur)
	if ctx.ident.GaveUp(proto.Dir(d)) { // its bytes are no longer held
		return
	}
	switch {
	case !ctx.holding:
		ctx.holding, ctx.holdSince = true, w.now
	case w.now-ctx.holdSince >= int64(w.e.cfg.Hold):
		// Past the bound: the flow is what its bytes still start like
		// (HTTP for "G"), else unidentified: the rules for unknown
		// traffic apply from here. This segment is still dropped (its
		// retransmission passes under that verdict).
		w.dropOnce(dropHold, "tcp.hold_timeout", fr)
		w.holdExpired(d)
		if !w.res.block {
			w.res.drop, w.res.reason = true, "tcp.hold_timeout"
		}
		return
	}
	w.res.drop, w.res.reason = true, "tcp.hold"
}

// ackTrusted reports whether an ACK may trim the other direction's
// retransmission history: it must come from the port that side lives on
// (a spoofed ACK from the other port could otherwise make the DPI forget
// bytes the receiver has not acknowledged).
func (w *worker) ackTrusted(fr *dataplane.Frame, st *flowState, d flow.Dir) bool {
	if w.e.cfg.Offline || st.ingress == 0 {
		return true
	}
	client := st.ingress - 1
	return (d == flow.ToServer) == (uint8(fr.Ingress) == client)
}

// udp inspects one datagram of flow f in direction d.
func (w *worker) udp(f *flow.Flow[flowState], d flow.Dir) {
	payload := w.pkt.Payload
	if len(payload) == 0 {
		return
	}
	st := &f.State
	w.ctxOf(f)
	rs := w.rs
	if st.ident != identDone {
		p, s := proto.IdentifyDatagram(proto.Dir(d), payload)
		switch {
		case s == proto.Identified:
			w.identified(p, d)
		case st.udpMiss >= 1:
			w.identified(proto.Unknown, d)
		default:
			st.udpMiss++
		}
		if w.stopped() {
			return
		}
	}
	w.msg.reset(nil, nil)
	if st.ident == identDone && st.app == proto.DNS && rs.App(proto.DNS).Fields {
		w.dnsUDP.Datagram(proto.Dir(d), payload)
		if w.stopped() {
			return
		}
	}
	k := payloadKind(d)
	if fp := rs.Stream[k]; fp.Used() && st.flags&fIdentOnly == 0 {
		w.scanDatagram(k, fp, payload, d)
	}
	w.settle(&w.msg, d)
}

// dirEnd handles the end of a direction: FIN or RST (the parser and the
// raw-payload stream see the end of data) or the inspection depth.
func (w *worker) dirEnd(d flow.Dir, depth bool) {
	st := w.cst
	if depth {
		st.flags |= fDepth
	}
	if st.flags&doneFlag(d) != 0 {
		return
	}
	st.flags |= doneFlag(d)
	ctx := w.cctx
	if ctx == nil {
		return
	}
	switch ctx.parser {
	case parserHTTP:
		ctx.http.Close(proto.Dir(d))
	case parserTLS:
		ctx.tls.Close(proto.Dir(d))
	case parserSSH:
		ctx.ssh.Close(proto.Dir(d))
	case parserDB:
		ctx.dbCur.Close(proto.Dir(d))
	}
	if ctx.h2.on {
		ctx.h2.p.Close(proto.Dir(d))
	}
	if w.stopped() {
		return
	}
	k := payloadKind(d)
	w.endStreams(ctx, k, &ctx.flow, d)
	w.closeKind(ctx, k)
	w.settle(&ctx.flow, d)
}

func payloadKind(d flow.Dir) plan.StreamKind {
	if d == flow.ToClient {
		return plan.StreamPayloadToClient
	}
	return plan.StreamPayload
}

// ctxOf returns the flow's inspection context, creating it.
func (w *worker) ctxOf(f *flow.Flow[flowState]) *flowCtx {
	st := &f.State
	if st.ctx != 0 {
		w.cctx = w.ctxs[st.ctx-1]
		return w.cctx
	}
	var ctx *flowCtx
	if n := len(w.freeCtx); n > 0 {
		ctx = w.ctxs[w.freeCtx[n-1]]
		w.freeCtx = w.freeCtx[:n-1]
	} else {
		ctx = &flowCtx{idx: int32(len(w.ctxs))}
		w.ctxs = append(w.ctxs, ctx)
	}
	ctx.start(w, f)
	st.ctx = ctx.idx + 1
	w.cctx = ctx
	return ctx
}

// releaseCtx closes the flow's streams and returns its context to the
// pool.
func (w *worker) releaseCtx(st *flowState) {
	if st.ctx == 0 {
		return
	}
	ctx := w.ctxs[st.ctx-1]
	w.closeStreams(ctx)
	ctx.stop()
	w.freeCtx = append(w.freeCtx, ctx.idx)
	st.ctx = 0
	if w.cctx == ctx {
		w.cctx = nil
	}
}

// onEnd is the flow table's end callback.
func (w *worker) onEnd(f *flow.Flow[flowState], r flow.Reason) {
	st := &f.State
	w.releaseCtx(st)
	w.ra.Release(&st.dir[0])
	w.ra.Release(&st.dir[1])
	if st.flags&(fTransient|fParking) != 0 || st.flags&fInit == 0 {
		return
	}
	reason := endReason(r)
	if st.flags&fKernelEnd != 0 {
		reason = "kernel"
	}
	pk := w.record(f)
	w.emitFlow(&f.Key, &pk, stateName(f), reason, f.LastSeen)
}

// record is what a flow's end event and its parked record need of it,
// counters merged.
func (w *worker) record(f *flow.Flow[flowState]) parked {
	st := &f.State
	pk := parked{
		fid: st.fid, start: st.start, last: f.LastSeen, client: f.ClientSide(), tcp: f.TCP,
		replied: f.Flags&flow.FlagReplied != 0, final: st.final, app: st.app, ident: st.ident,
		flags: st.flags, rule: st.rule, gen: w.rs.Gen,
	}
	for i := range 2 {
		pk.pkts[i] = f.Packets[i] + st.base[i]
		pk.bytes[i] = f.Bytes[i] + st.baseB[i]
	}
	return pk
}

// stateName is the flow's state for events and listings: the TCP state,
// or "new"/"established" for other protocols.
func stateName(f *flow.Flow[flowState]) string {
	if f.Key.Proto == 6 {
		return f.TCP.String()
	}
	if f.Flags&flow.FlagReplied != 0 {
		return "established"
	}
	return "new"
}

func endReason(r flow.Reason) string {
	switch r {
	case flow.ReasonIdle:
		return "timeout"
	case flow.ReasonFlush:
		return "shutdown"
	}
	return r.String()
}

// park moves a flow with a final verdict out of the flow table into the
// parked records: the kernel carries it now, and its table entry would
// only expire for lack of frames.
func (w *worker) park(f *flow.Flow[flowState]) {
	pk := w.record(f)
	for len(w.parked) >= w.e.cfg.MaxParked && w.popParked(w.now, true) {
	}
	w.parked[f.Key] = pk
	if len(w.parkQ)-w.parkQH >= 2*w.e.cfg.MaxParked {
		// Flows ended by FlowEnded leave their queue entries behind:
		// drop them so the queue stays within twice the records.
		q := w.parkQ[:0]
		for _, e := range w.parkQ[w.parkQH:] {
			if pk, ok := w.parked[e.key]; ok && pk.fid == e.fid {
				q = append(q, e)
			}
		}
		w.parkQ, w.parkQH = q, 0
	}
	w.parkQ = append(w.parkQ, parkEntry{key: f.Key, fid: pk.fid, start: pk.start})
	f.State.flags |= fParking
	w.flows.Remove(f)
}

// popParked ends the oldest parked flow if force or if it outlived the
// flow lifetime; it reports whether the queue had an entry to look at.
func (w *worker) popParked(now int64, force bool) bool {
	for w.parkQH < len(w.parkQ) {
		e := w.parkQ[w.parkQH]
		pk, ok := w.parked[e.key]
		if !ok || pk.fid != e.fid {
			w.parkQH++ // ended already
			continue
		}
		life := int64(w.flows.Config().Lifetime)
		if !force && (life <= 0 || now-e.start < life) {
			return false
		}
		w.parkQH++
		delete(w.parked, e.key)
		reason := "lifetime"
		if force {
			reason = "evicted"
		}
		w.emitParked(&e.key, &pk, reason, now)
		w.compactParkQ()
		return true
	}
	w.compactParkQ()
	return false
}

func (w *worker) compactParkQ() {
	if w.parkQH > 64 && w.parkQH*2 > len(w.parkQ) {
		n := copy(w.parkQ, w.parkQ[w.parkQH:])
		w.parkQ = w.parkQ[:n]
		w.parkQH = 0
	}
}

// unpark handles a frame of a parked flow reaching the engine: an
// in-flight frame (same rule set: same final verdict), or, after a rule
// change revoked the kernel's verdict, the flow coming back for
// inspection, which continues under its old flow id and counters.
func (w *worker) unpark(f *flow.Flow[flowState], d flow.Dir) (dataplane.Verdict, bool) {
	pk, ok := w.parked[f.Key]
	if !ok {
		return dataplane.Verdict{}, false
	}
	st := &f.State
	if p := &w.pkt; p.Proto == 6 && p.TCPFlags&(decode.TCPSyn|decode.TCPAck) == decode.TCPSyn {
		// A new connection on the tuple: the kernel already forgot the
		// old one (its FlowEnded is on its way). End the record; the SYN
		// starts a flow of its own.
		delete(w.parked, f.Key)
		w.emitParked(&f.Key, &pk, "closed", pk.last)
		return dataplane.Verdict{}, false
	}
	// Counters of the parked record are by its client; this entry's
	// client may be the other side.
	swap := f.ClientSide() != pk.client
	if pk.gen == w.rs.Gen {
		cd := d
		if swap {
			cd ^= 1
		}
		pk.pkts[cd]++
		pk.bytes[cd] += uint64(w.pkt.FrameLen)
		pk.last = w.now
		w.parked[f.Key] = pk
		st.flags |= fTransient
		st.final = pk.final
		v := w.finalVerdict(st, false)
		w.flows.Remove(f)
		return v, true
	}
	delete(w.parked, f.Key)
	st.fid, st.start = pk.fid, pk.start
	st.flags |= pk.flags & fAlerted
	for i := range 2 {
		j := i
		if swap {
			j ^= 1
		}
		st.base[i], st.baseB[i] = pk.pkts[j], pk.bytes[j]
	}
	return dataplane.Verdict{}, false
}

// expire ends idle flows and parked flows past the lifetime.
func (w *worker) expire(now int64) {
	w.lastExpire = now
	w.now = now
	w.flows.Expire(now)
	for w.popParked(now, false) {
	}
	w.defrag.Expire(now)
}

// flush ends every flow.
func (w *worker) flush(now int64) {
	w.now = now
	w.flows.Flush()
	for w.parkQH < len(w.parkQ) {
		e := w.parkQ[w.parkQH]
		w.parkQH++
		if pk, ok := w.parked[e.key]; ok && pk.fid == e.fid {
			delete(w.parked, e.key)
			w.emitParked(&e.key, &pk, "shutdown", now)
		}
	}
	w.parkQ, w.parkQH = w.parkQ[:0], 0
	clear(w.parked)
	w.closeUDPStreams()
}

// flowEnded merges the kernel's counters into a bypassed flow and ends it.
func (w *worker) flowEnded(key xdp.FlowKey, pkts, bytes [2]uint64, now int64) bool {
	w.now = now
	if pk, ok := w.parked[key]; ok {
		delete(w.parked, key)
		for kd := range 2 {
			d := kd ^ int(pk.client) // xdp.Direction → Dir
			pk.pkts[d] += pkts[kd]
			pk.bytes[d] += bytes[kd]
		}
		pk.last = max(pk.last, now)
		w.emitParked(&key, &pk, "kernel", now)
		return true
	}
	f := w.flows.Find(key)
	if f == nil {
		return false
	}
	st := &f.State
	for kd := range 2 {
		d := kd ^ int(f.ClientSide())
		st.base[d] += pkts[kd]
		st.baseB[d] += bytes[kd]
	}
	st.flags |= fKernelEnd
	w.flows.Remove(f)
	return true
}

func (w *worker) emitParked(key *xdp.FlowKey, pk *parked, reason string, now int64) {
	state := "bypassed"
	if pk.final == finalDrop {
		state = "dropped"
	}
	w.emitFlow(key, pk, state, reason, max(pk.last, 0))
}

// switchRules moves the worker to the published rule set. Streams of the
// old set are closed (their patterns restart from here under the new
// set), hits are forgotten, and every flow is re-planned at its next
// frame: final verdicts are dropped and the ACL is evaluated again.
func (w *worker) switchRules() {
	e := w.e
	e.switchMu.Lock()
	defer e.switchMu.Unlock()
	rs := e.cur.Load()
	old := w.rs
	if rs == old {
		return
	}
	for _, ctx := range w.ctxs {
		if ctx.inUse {
			w.closeStreams(ctx)
			ctx.forget()
			ctx.size(rs)
		}
	}
	w.closeUDPStreams()
	w.flows.Range(func(f *flow.Flow[flowState]) bool {
		f.State.flags |= fResync
		return true
	})
	w.rs, w.scratch = rs, rs.Scratch[w.id]
	rs.users++
	old.users--
	if old.users == 0 {
		old.Release()
	}
}

// listFlows calls fn for the worker's flows, parked ones included.
func (w *worker) listFlows(fn func(FlowInfo) bool) bool {
	ok := true
	w.flows.Range(func(f *flow.Flow[flowState]) bool {
		st := &f.State
		pk := w.record(f)
		fi := FlowInfo{
			Key: f.Key, FlowID: st.fid, Worker: w.id, Client: f.Client(), Server: f.Server(), Proto: f.Key.Proto,
			Start: w.e.wall(st.start), Last: w.e.wall(f.LastSeen), RuleID: st.rule,
			Bypassed: st.flags&fBypassed != 0, Alerted: st.flags&fAlerted != 0,
			Verdict: verdictName(st.final), State: stateName(f), Packets: pk.pkts, Bytes: pk.bytes,
		}
		if st.ident == identDone {
			fi.App = appName(st.app, st.flags)
		}
		ok = fn(fi)
		return ok
	})
	if !ok {
		return false
	}
	for key, pk := range w.parked {
		fi := FlowInfo{
			Key: key, FlowID: pk.fid, Worker: w.id, Proto: key.Proto, State: "bypassed",
			Start: w.e.wall(pk.start), Last: w.e.wall(pk.last), RuleID: pk.rule,
			Bypassed: pk.final == finalAllow, Alerted: pk.flags&fAlerted != 0,
			Verdict: verdictName(pk.final), Packets: pk.pkts, Bytes: pk.bytes,
		}
		fi.Client, fi.Server = key.Lo(), key.Hi()
		if pk.client == xdp.FromHi {
			fi.Client, fi.Server = fi.Server, fi.Client
		}
		if pk.ident == identDone {
			fi.App = appName(pk.app, pk.flags)
		}
		if !fn(fi) {
			return false
		}
	}
	return true
}

func verdictName(final uint8) string {
	switch final {
	case finalAllow:
		return "pass"
	case finalDrop:
		return "drop"
	}
	return ""
}

func (w *worker) addStats(s *Stats) {
	t := &w.st
	s.Packets += t.packets
	s.Bytes += t.bytes
	s.Forwarded += t.forwarded
	s.Dropped += t.dropped
	s.FinalAllow += t.finalAllow
	s.FinalDrop += t.finalDrop
	s.Events += t.events
	s.Alerts += t.alerts
	s.Blocks += t.blocks
	s.Findings += t.findings
	s.ScanErrors += t.scanErrors
	s.H2Streams += t.h2Streams
	s.H2StreamResets += t.h2Resets
	s.GRPCStreams += t.grpcStreams
	s.OpenStreams += t.openStreams
	s.Flows += w.flows.Len()
	s.Parked += len(w.parked)
	fs := w.flows.Stats()
	s.FlowsCreated += fs.Created
	s.Flow.Flows += fs.Flows
	s.Flow.Created += fs.Created
	s.Flow.Idle += fs.Idle
	s.Flow.Lifetime += fs.Lifetime
	s.Flow.Closed += fs.Closed
	s.Flow.Evicted += fs.Evicted
	s.Flow.Removed += fs.Removed
	s.Flow.Flushed += fs.Flushed
	s.Flow.Full += fs.Full
	s.Flow.InvalidRST += fs.InvalidRST
	ds := w.defrag.Stats()
	for i, n := range ds.Outcomes {
		s.Defrag.Outcomes[i] += n
	}
	s.Defrag.TimedOut += ds.TimedOut
	s.Defrag.Datagrams += ds.Datagrams
	s.Defrag.Bytes += ds.Bytes
	rst := w.ra.Stats()
	r := &s.Reasm
	r.Segments += rst.Segments
	r.DeliveredBytes += rst.DeliveredBytes
	r.Buffered += rst.Buffered
	r.Duplicates += rst.Duplicates
	r.Conflicts += rst.Conflicts
	r.OutOfWindow += rst.OutOfWindow
	r.Limits += rst.Limits
	r.Resets += rst.Resets
	r.Unverified += rst.Unverified
	r.HistoryLost += rst.HistoryLost
	r.PoolBytes += rst.PoolBytes
	r.PoolMaxBytes += rst.PoolMaxBytes
	r.PoolBudget += rst.PoolBudget
	for k, v := range t.drops {
		s.Drops[k] += v
	}
	for p, n := range t.apps {
		if n > 0 {
			s.Apps[proto.Protocol(p).String()] += n
		}
	}
	for k, v := range t.sigs {
		s.Signatures[k] += v
	}
}
