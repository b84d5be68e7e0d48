package dpi

import (
	"slices"
	"unsafe"

	"github.com/deepwall/deepwall/dpi/flow"
	"github.com/deepwall/deepwall/dpi/internal/plan"
	"github.com/deepwall/deepwall/dpi/proto/http"
	"github.com/deepwall/deepwall/internal/ascii"
	"github.com/deepwall/deepwall/rules"
	"github.com/deepwall/deepwall/rules/transform"
)

// Bounds on matching work and memory.
const (
	// maxPend bounds the hits decided together (the rest still count
	// through their scope, without an event of their own).
	maxPend = 64
	// maskInput is the matched text kept per hit for the event (what Mask
	// reads at most).
	maskInput = 4 * MaxMatched
	// matchWindow is the text reported for a hit whose pattern gives no
	// start of match: the bytes before its end.
	matchWindow = 64
	// maxConfirmPatterns bounds the patterns whose hits one scan or stream
	// confirms (each with its own budget, Pattern.Attempts); hits of
	// further patterns that need confirming are dropped.
	maxConfirmPatterns = 32
)

// confirmState tracks, per pattern that needs confirming, how many
// confirmations were tried and whether one succeeded, over one scan or
// one stream.
type confirmState struct {
	n       int
	ids     [maxConfirmPatterns]uint32
	tries   [maxConfirmPatterns]uint16
	seen    [maxConfirmPatterns]bool
	dropped uint32
}

func (c *confirmState) reset() { c.n = 0 }

// entry returns the index of pattern id, adding it; -1 when full.
func (c *confirmState) entry(id uint32) int {
	for i := 0; i < c.n; i++ {
		if c.ids[i] == id {
			return i
		}
	}
	if c.n == maxConfirmPatterns {
		c.dropped++
		return -1
	}
	i := c.n
	c.n++
	c.ids[i], c.tries[i], c.seen[i] = id, 0, false
	return i
}

// maxChainMemo bounds the transformed forms of one value kept for the
// groups of its field (distinct effective prefixes; beyond it results go
// to two spare buffers and are not shared).
const maxChainMemo = 32

// chainStep is one transformed form of the current value: the result of
// the steps key[:n] that changed it (transform.Transform.Effect).
type chainStep struct {
	key [transform.MaxChainLen]transform.Transform
	n   int
	out []byte
	cls transform.ByteClasses // classes of out
}

// chainBufs holds the transformed forms of the value being scanned, so that
// groups whose chains act alike on it (a shared prefix, or steps that do
// nothing to this value) transform it once.
type chainBufs struct {
	memo  [maxChainMemo]chainStep
	bufs  [maxChainMemo][]byte // owned by memo[i]
	nm    int
	spare [2][]byte
	vcls  transform.ByteClasses // classes of the value
}

// transform applies gp's chain to value (first: value is new) and returns
// the result and its byte classes. Steps that cannot change their input
// (transform.Transform.Identity: url_decode without '%' or '+', lowercase
// without A-Z, ...) are skipped without a copy, and a form of the value
// already computed for an earlier group of the field is reused.
func (w *worker) transform(value []byte, gp *plan.Group, first bool) ([]byte, transform.ByteClasses) {
	cb := &w.chain
	if first {
		cb.nm = 0
		cb.vcls = transform.ClassesOf(value)
	}
	in, cls := value, cb.vcls
	var key [transform.MaxChainLen]transform.Transform
	n, spare := 0, -1 // spare: the spare buffer in holds, if any
	chain := gp.Chain[:min(len(gp.Chain), transform.MaxChainLen)]
steps:
	for _, tr := range chain {
		eff := tr.Effect(cls)
		if eff == 0 {
			continue
		}
		key[n] = eff
		n++
		for j := 0; j < cb.nm; j++ {
			if m := &cb.memo[j]; m.n == n && m.key == key {
				in, cls, spare = m.out, m.cls, -1
				continue steps
			}
		}
		var buf *[]byte
		if cb.nm < maxChainMemo {
			buf = &cb.bufs[cb.nm]
		} else {
			spare = (spare + 1) % 2 // never the buffer in holds
			buf = &cb.spare[spare]
		}
		if cap(*buf) < len(in) {
			*buf = make([]byte, 0, max(len(in)+len(in)/4, 512))
		}
		*buf = eff.Append((*buf)[:0], in)
		in, cls = *buf, transform.ClassesOf(*buf)
		if cb.nm < maxChainMemo {
			cb.memo[cb.nm] = chainStep{key: key, n: n, out: in, cls: cls}
			cb.nm++
		}
	}
	return in, cls
}

// pendHit is a hit waiting to be decided with the others of its moment.
type pendHit struct {
	r     *rules.Rule
	sc    *scope
	field rules.Field
	dir   flow.Dir
	sens  bool
	a     int // slot of the matched text in the worker's arena
	n     int // matched bytes
}

// matcher is the hs.Handler of the worker's scans: it confirms hits that
// need it and turns them into candidate rule hits.
type matcher struct {
	w    *worker
	gp   *plan.Group
	data []byte      // the scanned value (block) or the current write (stream)
	sl   *streamSlot // nil in block mode
	cf   *confirmState
	sc   *scope
	dir  flow.Dir
	name []byte // the value's header name (http.header_value except:)
	raw  int    // matches Hyperscan reported (the value is not quiet)
}

// Match implements hs.Handler.
func (m *matcher) Match(id uint, from, to uint64) {
	m.raw++
	gp := m.gp
	if int(id) >= len(gp.Group.Rules) {
		return
	}
	p := &gp.Group.Patterns[id]
	if gp.Exc && skipsName(gp.Group.Cond(int(id)), gp.Group.Field.Kind, m.name) {
		return
	}
	if gp.Multi && p.Not && m.sl == nil && m.w.fired[id] {
		return // already known to match this value
	}
	var text []byte
	if p.NeedsConfirm() {
		i := m.cf.entry(uint32(id))
		if i < 0 || m.cf.seen[i] || int(m.cf.tries[i]) >= p.Attempts() {
			return
		}
		m.cf.tries[i]++
		start := p.ConfirmStart(from, to)
		ok := true
		if m.sl == nil {
			if !p.SOM {
				// The whole value is at hand: one confirmation over all
				// of it decides the pattern for this value (a regex
				// either matches the value or not), so later hits of the
				// pattern are not confirmed again.
				if to > uint64(len(m.data)) {
					return
				}
				if !p.Confirm(m.data) {
					m.cf.tries[i] = uint16(min(p.Attempts(), 1<<16-1))
					return
				}
				m.cf.seen[i] = true
				m.confirmed(id, gp, p, tail(m.data[:to], matchWindow))
				return
			}
			if to > uint64(len(m.data)) || start > to {
				return
			}
			text = m.data[start:to]
		} else if text, ok = m.text(start, to); !ok {
			return
		}
		if !p.Confirm(text) {
			return
		}
		m.cf.seen[i] = true
		if !p.SOM {
			text = tail(text, matchWindow)
		}
	} else if m.sl == nil {
		if to <= uint64(len(m.data)) {
			text = tail(m.data[:to], matchWindow)
		}
	} else {
		start := uint64(0)
		if to > matchWindow {
			start = to - matchWindow
		}
		text, _ = m.text(max(start, m.sl.off-uint64(len(m.sl.hist))), to)
	}
	m.confirmed(id, gp, p, text)
}

// confirmed turns a confirmed hit of pattern id into a rule candidate or
// a condition that held.
func (m *matcher) confirmed(id uint, gp *plan.Group, p *rules.Pattern, text []byte) {
	if c := gp.Group.Cond(int(id)); c.Compare != nil && !m.w.compareHolds(c, m.data) {
		return // compare.go
	}
	if !gp.Multi {
		m.w.candidate(gp.Group.Rules[id], gp.Group.Field, text, gp.Sens[id], m.sc, m.dir)
		return
	}
	if p.Not {
		// A negated condition holds for the values its pattern misses:
		// decided after the scan.
		m.w.fired[id] = true
		return
	}
	m.w.condHit(gp.Group.Rules[id], p.Cond, gp.Group.Field, text, gp.Sens[id], m.sc, m.dir)
}

// text returns the stream's bytes [start, end) from the slot's history
// and the current write, or false when they are no longer kept.
func (m *matcher) text(start, end uint64) ([]byte, bool) {
	sl := m.sl
	histStart := sl.off - uint64(len(sl.hist))
	curEnd := sl.off + uint64(len(m.data))
	if start < histStart || end > curEnd || start > end {
		return nil, false
	}
	if start >= sl.off {
		return m.data[start-sl.off : end-sl.off], true
	}
	if end <= sl.off {
		return sl.hist[start-histStart : end-histStart], true
	}
	j := append(append(m.w.joined[:0], sl.hist[start-histStart:]...), m.data[:end-sl.off]...)
	m.w.joined = j
	return j, true
}

// scanBlock inspects one value of a block field with every group and
// libinjection rule of fp; hits go to scope sc.
func (w *worker) scanBlock(fp *plan.Field, value []byte, sc *scope, d flow.Dir) {
	w.scanValue(fp, nil, value, sc, d)
}

// scanValue is scanBlock for one value of a multi-value field; name is
// the header (argument, cookie) name it belongs to, for except:.
//
// A short value found quiet (no pattern match, no detector hit) is
// remembered in the worker's quietCache and not inspected again under the
// same rules: only its negated conditions, which hold for a quiet value,
// are replayed. A value is remembered only when its result did not depend
// on name: no group or detector was skipped for it.
func (w *worker) scanValue(fp *plan.Field, name, value []byte, sc *scope, d flow.Dir) {
	if fp == nil {
		return
	}
	// quiet: the value is short enough to remember and nothing so far
	// hit or depended on name.
	quiet := len(value) > 0 && len(value) <= quietMaxLen && (len(fp.Groups) > 0 || len(fp.Detect) > 0)
	var qh uint64
	if quiet {
		qh = w.quiet.hash(value)
		if w.quiet.has(qh, w.rs.Gen, fp.ID, value) {
			w.replayQuiet(fp, name, sc, d)
			return
		}
	}
	if len(value) > 0 {
		first := true
	groups:
		for _, gp := range fp.Groups {
			if name != nil {
				for _, s := range gp.Skip {
					if ascii.EqualFold(name, s) {
						quiet = false
						continue groups // every pattern excludes this header
					}
				}
			}
			data, cls := w.transform(value, gp, first)
			first = false
			if !gp.Neg && cls&^gp.Alpha == 0 {
				// No pattern of the group can match bytes of these
				// classes only (an empty value matches none either).
				continue
			}
			w.blockCF.reset()
			w.mh = matcher{w: w, gp: gp, data: data, cf: &w.blockCF, sc: sc, dir: d, name: name}
			if gp.Neg {
				w.clearFired(gp)
			}
			if len(data) > 0 {
				if err := w.scanner.Scan(gp.DB, w.scratch, data, &w.mh); err != nil {
					w.st.scanErrors++
					quiet = false
				}
				quiet = quiet && w.mh.raw == 0
			}
			if gp.Neg {
				w.negated(gp, name, sc, d)
			}
			if w.stopped() {
				return
			}
		}
	} else {
		// An empty value matches only the patterns that match the empty
		// string: the other negated conditions hold.
		for _, gp := range fp.Groups {
			if gp.Neg {
				w.clearFired(gp)
				for _, id := range gp.Group.Negated {
					w.fired[id] = gp.Group.Patterns[id].Empty
				}
				w.negated(gp, name, sc, d)
			}
		}
	}
	for _, ref := range fp.Detect {
		m := ref.Match()
		if skipsName(m, fp.Field.Kind, name) {
			// The result depends on the name: a quiet verdict must not
			// be replayed for the same value under a name the
			// condition selects.
			quiet = false
			continue
		}
		if hit, fpr := w.det.MatchField(m, ref.Field, value); hit {
			quiet = false
			w.condHit(ref.Rule, ref.Cond, fp.Field, unsafe.Slice(unsafe.StringData(fpr), len(fpr)), plan.Sensitive(ref.Rule), sc, d)
		}
	}
	if quiet && !w.stopped() {
		w.quiet.add(qh, w.rs.Gen, fp.ID, value)
	}
}

// replayQuiet gives a value known to be quiet the result scanValue gave
// it: no pattern matched, so the negated conditions of every group hold
// (as they did, save those except: excludes by name).
func (w *worker) replayQuiet(fp *plan.Field, name []byte, sc *scope, d flow.Dir) {
	for _, gp := range fp.Groups {
		if !gp.Neg {
			continue
		}
		w.clearFired(gp)
		w.negated(gp, name, sc, d)
		if w.stopped() {
			return
		}
	}
}

// clearFired prepares the negated patterns of gp for a new value.
func (w *worker) clearFired(gp *plan.Group) {
	if len(w.fired) < len(gp.Group.Rules) {
		w.fired = make([]bool, len(gp.Group.Rules))
	}
	for _, id := range gp.Group.Negated {
		w.fired[id] = false
	}
}

// negated holds the negated conditions of gp whose pattern missed the
// value just scanned.
func (w *worker) negated(gp *plan.Group, name []byte, sc *scope, d flow.Dir) {
	for _, id := range gp.Group.Negated {
		if w.fired[id] {
			continue
		}
		if gp.Exc && skipsName(gp.Group.Cond(id), gp.Group.Field.Kind, name) {
			continue
		}
		w.condHit(gp.Group.Rules[id], gp.Group.Patterns[id].Cond, gp.Group.Field, nil, gp.Sens[id], sc, d)
	}
}

// skipsName reports whether condition c does not apply to a value of
// field k named name (nil: a value without a name): except: leaves out
// the values of some names, name:/name_regex: keep only the values of
// some names.
func skipsName(c *rules.Match, k rules.FieldKind, name []byte) bool {
	if c.NameFilter() && !c.Selects(name) {
		return true
	}
	return name != nil && c.Excluded(k, name)
}

// counts evaluates the count: conditions of fp over n values (values of
// http.header_value excluded by a condition's except: are not counted:
// names are the headers whose names except: tests). A plain slice, not an
// iterator: a range-over-func body would move the count to the heap on
// every request.
func (w *worker) counts(fp *plan.Field, n int, names []http.Header, sc *scope, d flow.Dir) {
	if fp == nil {
		return
	}
	for _, ref := range fp.Count {
		m := ref.Match()
		k := n
		if len(m.Except) > 0 && names != nil {
			k = 0
			for i := range names {
				if !m.Excluded(fp.Field.Kind, names[i].Name) {
					k++
				}
			}
		}
		if m.Count.Holds(k) {
			w.condHit(ref.Rule, ref.Cond, fp.Field, nil, false, sc, d)
		}
	}
}

// condHit records that condition ci of r held in scope sc: a rule of one
// condition is a candidate at once, a rule of several once all held.
func (w *worker) condHit(r *rules.Rule, ci int, field rules.Field, text []byte, sens bool, sc *scope, d flow.Dir) {
	n := len(r.Conds)
	if n <= 1 {
		w.candidate(r, field, text, sens, sc, d)
		return
	}
	full := uint32(1)<<n - 1
	for i := range sc.conds {
		if c := &sc.conds[i]; c.r == r {
			if c.mask == full {
				return
			}
			c.mask |= 1 << ci
			if c.mask == full {
				w.candidate(r, field, text, sens, sc, d)
			}
			return
		}
	}
	if len(sc.conds) < maxCondRules {
		sc.conds = append(sc.conds, condHeld{r: r, mask: 1 << ci})
	}
}

// streamWrite feeds the next chunk of stream field k to every group of
// it, opening the flow's streams on first use.
func (w *worker) streamWrite(ctx *flowCtx, k plan.StreamKind, chunk []byte, sc *scope, d flow.Dir) {
	fp := w.rs.Stream[k]
	if fp == nil || len(chunk) == 0 {
		return
	}
	slots := ctx.slots[k]
	for i, gp := range fp.Groups {
		if i >= len(slots) {
			break
		}
		sl := &slots[i]
		if !w.openSlot(sl, gp) {
			continue
		}
		data := chunk
		if sl.tr != nil {
			data = sl.tr.Write(chunk)
		}
		w.scanStream(sl, gp, data, sc, d)
		if w.stopped() {
			return
		}
	}
}

// openSlot opens the slot's stream if needed.
func (w *worker) openSlot(sl *streamSlot, gp *plan.Group) bool {
	if !sl.st.Open() {
		st, err := w.scanner.Open(gp.DB)
		if err != nil {
			w.st.scanErrors++
			return false
		}
		sl.st = st
		sl.off, sl.hist, sl.used = 0, sl.hist[:0], false
		sl.cf.reset()
		w.st.openStreams++
		if len(gp.Chain) > 0 && sl.tr == nil {
			sl.tr = transform.NewStream(gp.Chain)
		}
	}
	sl.used = true
	return true
}

// scanStream scans one write of a slot and keeps the history its
// confirmations need.
func (w *worker) scanStream(sl *streamSlot, gp *plan.Group, data []byte, sc *scope, d flow.Dir) {
	if len(data) == 0 {
		return
	}
	w.mh = matcher{w: w, gp: gp, data: data, sl: sl, cf: &sl.cf, sc: sc, dir: d}
	if err := w.scanner.ScanStream(sl.st, w.scratch, data, &w.mh); err != nil {
		w.st.scanErrors++
	}
	if keep := gp.Keep; keep > 0 {
		if cap(sl.hist) < keep {
			sl.hist = make([]byte, 0, keep)
		}
		if len(data) >= keep {
			sl.hist = append(sl.hist[:0], data[len(data)-keep:]...)
		} else {
			drop := max(0, len(sl.hist)+len(data)-keep)
			sl.hist = append(sl.hist[:copy(sl.hist, sl.hist[drop:])], data...)
		}
	}
	sl.off += uint64(len(data))
}

// endStreams ends the current message of stream field k: transformers
// flush what they held back, and patterns anchored at the end of data
// report. The streams stay open for the flow's next message.
func (w *worker) endStreams(ctx *flowCtx, k plan.StreamKind, sc *scope, d flow.Dir) {
	fp := w.rs.Stream[k]
	if fp == nil {
		return
	}
	slots := ctx.slots[k]
	for i, gp := range fp.Groups {
		if i >= len(slots) {
			break
		}
		w.endSlot(&slots[i], gp, sc, d)
		if w.stopped() {
			return
		}
	}
}

func (w *worker) endSlot(sl *streamSlot, gp *plan.Group, sc *scope, d flow.Dir) {
	if !sl.st.Open() || !sl.used {
		return
	}
	if sl.tr != nil {
		if rest := sl.tr.Close(); len(rest) > 0 {
			w.scanStream(sl, gp, rest, sc, d)
		}
	}
	w.mh = matcher{w: w, gp: gp, sl: sl, cf: &sl.cf, sc: sc, dir: d}
	if err := w.scanner.Reset(sl.st, w.scratch, &w.mh); err != nil {
		w.st.scanErrors++
	}
	sl.off, sl.hist, sl.used = 0, sl.hist[:0], false
	sl.cf.reset()
}

// closeKind closes the flow's streams of field k (no end-of-data reports:
// callers end them first when those matter).
func (w *worker) closeKind(ctx *flowCtx, k plan.StreamKind) {
	for i := range ctx.slots[k] {
		w.closeSlot(&ctx.slots[k][i])
	}
}

func (w *worker) closeSlot(sl *streamSlot) {
	if sl.st.Open() {
		_ = w.scanner.CloseStream(&sl.st, nil, nil)
		w.st.openStreams--
	}
	if sl.tr != nil {
		sl.tr.Reset()
	}
	sl.off, sl.hist, sl.used = 0, sl.hist[:0], false
}

// closeStreams closes every stream of a context.
func (w *worker) closeStreams(ctx *flowCtx) {
	for k := range ctx.slots {
		w.closeKind(ctx, plan.StreamKind(k))
	}
}

func (w *worker) closeUDPStreams() {
	for k := range w.dgram {
		for i := range w.dgram[k] {
			w.closeSlot(&w.dgram[k][i])
			w.dgram[k][i].tr = nil
		}
		w.dgram[k] = w.dgram[k][:0]
	}
}

// scanDatagram scans one UDP datagram with the stream groups of the raw
// payload field k, as a stream of its own (the worker's streams are reset
// after each datagram).
func (w *worker) scanDatagram(k plan.StreamKind, fp *plan.Field, payload []byte, d flow.Dir) {
	if len(w.dgram[k]) != len(fp.Groups) {
		for i := range w.dgram[k] {
			w.closeSlot(&w.dgram[k][i])
		}
		w.dgram[k] = make([]streamSlot, len(fp.Groups))
	}
	for i, gp := range fp.Groups {
		sl := &w.dgram[k][i]
		if !w.openSlot(sl, gp) {
			continue
		}
		data := payload
		if sl.tr != nil {
			data = sl.tr.Write(payload)
		}
		w.scanStream(sl, gp, data, &w.msg, d)
		w.endSlot(sl, gp, &w.msg, d)
		if w.stopped() {
			return
		}
	}
}

// checkScore lets the threshold rules of direction i (0 inbound, 1
// outbound) hit once sc's score reaches theirs.
func (w *worker) checkScore(sc *scope, i int, d flow.Dir) {
	if len(sc.contrib) > 0 && w.rs.Compiled.Exempts() && w.cctx != nil {
		w.dropExempted(sc)
	}
	if sc.score[i] == 0 || sc.over[i] {
		return
	}
	all := true
	for _, r := range w.rs.Thresholds[i] {
		if sc.score[i] >= r.Anomaly.Score {
			w.candidate(r, rules.Field{}, nil, false, sc, d)
		} else {
			all = false
		}
	}
	sc.over[i] = all
}

// dropExempted takes out of sc's anomaly scores the scored rules that
// hit before a scoped exclusion naming them (an allow rule with
// exempts:) hit in sc or on the flow; candidate keeps later hits of them
// out. Checked before each threshold test, so the fields of the
// exclusion and of the exempted rule may come in either order. A rule
// past the maxContrib contributors named per scope is not taken out.
func (w *worker) dropExempted(sc *scope) {
	keep := sc.contrib[:0]
	for _, r := range sc.contrib {
		if !w.exempted(sc, r) {
			keep = append(keep, r)
			continue
		}
		i := 0
		if r.Outbound() {
			i = 1
		}
		sc.score[i] -= r.Score
	}
	sc.contrib = keep
}

// exempted reports whether a scoped exclusion (an allow rule with
// exempts:) that hit in sc or on the flow takes r out.
func (w *worker) exempted(sc *scope, r *rules.Rule) bool {
	c := w.rs.Compiled
	return c.Exempts() && (c.Exempted(sc.hits, r) || c.Exempted(w.cctx.flow.hits, r))
}

// candidate records a confirmed match of rule r in field: it counts once
// the rule's flow conditions hold (rules with app_proto conditions wait
// for identification).
func (w *worker) candidate(r *rules.Rule, field rules.Field, text []byte, sens bool, sc *scope, d flow.Dir) {
	ctx := w.cctx
	if ctx == nil || w.res.block {
		return
	}
	if !r.MatchFlow(ctx.rflow) {
		if ctx.rflow.App == "" && plan.HasAppCond(r) {
			ctx.addUnresolved(r, field, text, sens, d)
		}
		return
	}
	if hasRule(sc.hits, r) || hasRule(ctx.flow.hits, r) {
		return
	}
	if w.exempted(sc, r) {
		return // a scoped exclusion already hit: no event, no block, no score
	}
	if len(sc.hits) < maxHits {
		sc.hits = append(sc.hits, r)
	}
	if r.Score > 0 {
		i := 0
		if r.Outbound() {
			i = 1
		}
		sc.score[i] += r.Score
		if len(sc.contrib) < maxContrib {
			sc.contrib = append(sc.contrib, r)
		}
	}
	if len(w.pend) < maxPend {
		i := len(w.pend)
		n := copy(w.arena[i][:], text)
		w.pend = append(w.pend, pendHit{r: r, sc: sc, field: field, dir: d, sens: sens, a: i, n: n})
	} else if r.Action == rules.ActionBlock {
		// No room for an event; the block must still happen.
		w.hitBuf = append(w.hitBuf[:0], r)
		if dec := w.rs.Compiled.Decide(append(w.hitBuf, w.scopeHits(sc)...)); dec.Block != nil {
			w.blockScope(sc, dec.Block.ID)
		}
	}
}

// scopeHits returns the hits that decide together with scope sc: the
// flow's and sc's.
func (w *worker) scopeHits(sc *scope) []*rules.Rule {
	hits := append(w.hitBuf[:0], w.cctx.flow.hits...)
	if sc != &w.cctx.flow {
		hits = append(hits, sc.hits...)
	}
	w.hitBuf = hits
	return hits
}

// settle decides the pending hits of scope sc: events for the hits that
// count, then the flow's fate (any block wins; an exempting allow may end
// the flow's inspection).
func (w *worker) settle(sc *scope, d flow.Dir) {
	if len(w.pend) == 0 || w.cctx == nil {
		w.pend = w.pend[:0]
		return
	}
	c := w.rs.Compiled
	dec := c.Decide(w.scopeHits(sc))
	// Events in rule order, whatever order the fields were scanned in.
	slices.SortStableFunc(w.pend, func(a, b pendHit) int { return c.Index(a.r) - c.Index(b.r) })
	for i := range w.pend {
		if ph := &w.pend[i]; ph.sens {
			ph.sc.mask |= maskOf(ph.field) | maskMatched
			w.cctx.flow.mask |= maskMatched // texts reported later on the flow are masked too
		}
	}
	for i := range w.pend {
		ph := &w.pend[i]
		r := ph.r
		if r.Action == rules.ActionAllow || !c.Counts(dec, r) || hasRule(ph.sc.emitted, r) {
			continue
		}
		if r.Score > 0 && r.Action == rules.ActionAlert && !w.e.cfg.ScoreEvents {
			continue // named by the threshold rule's event
		}
		ph.sc.emitted = append(ph.sc.emitted, r)
		action := "allowed"
		if r.Action == rules.ActionBlock && dec.Block != nil {
			action = "blocked"
		}
		w.emitAlertRule(r, ph.dir, ph, action)
	}
	w.pend = w.pend[:0]
	if dec.Block != nil {
		w.blockScope(sc, dec.Block.ID)
		return
	}
	if dec.Exempt == nil || w.cst.ident != identDone {
		return
	}
	// A flow-wide exemption that covers every rule the flow can still
	// meet ends its inspection.
	fdec := dec
	if sc != &w.cctx.flow {
		fdec = c.Decide(w.cctx.flow.hits)
	}
	if fdec.Exempt != nil && c.Index(fdec.Exempt) <= w.rs.App(w.cst.app).First {
		w.allowFinal(fdec.Exempt.ID)
	}
}
