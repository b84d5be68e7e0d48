package rules

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/flier/gohs/hyperscan"

	"github.com/deepwall/deepwall/rules/transform"
)

// Compiled is a rule set ready for the data path.
type Compiled struct {
	Set        *Set
	ACL        []*Rule  // L3/L4-only allow/block rules, in file order (also compiled into XDP)
	L7         []*Rule  // every other active rule (enabled, within the paranoia level), in file order
	Groups     []*Group // one per (field, transform chain); all its regexes and phrases in one Hyperscan database
	Detect     []*Rule  // L7 rules with a detect: condition, evaluated with a Detector
	ACLDefault Action   // verdict when no ACL rule matches
	Key        [32]byte // identifies set + Hyperscan version + platform (see MarshalBinary)

	// DetectConds are the detect: conditions, one per (rule, condition,
	// field); CountConds the count: conditions, likewise.
	DetectConds []CondRef
	CountConds  []CondRef
	// Thresholds are the threshold rules (anomaly:), in L7 order.
	Thresholds []*Rule
	// Scored reports whether some rule has a score.
	Scored bool

	l7index map[*Rule]int
	// exempters lists, per layer-7 rule that some scoped exclusion
	// (an allow rule with exempts:) names, those allow rules.
	exempters map[*Rule][]*Rule
}

// CondRef names one condition of a rule on one of its fields.
type CondRef struct {
	Rule  *Rule
	Cond  int // index in Rule.Conditions()
	Field Field
}

// Match returns the condition.
func (c CondRef) Match() *Match { return c.Rule.Conditions()[c.Cond] }

// Group is the Hyperscan database of every regex and phrase on one field
// with one transform chain: the engine transforms each value of the field
// once and scans it once. Groups whose pattern lists are identical share
// one database.
type Group struct {
	Field      Field
	Transforms []transform.Transform
	Stream     bool                     // stream mode: bodies and raw payload
	Block      hyperscan.BlockDatabase  // set when !Stream
	Streaming  hyperscan.StreamDatabase // set when Stream
	Rules      []*Rule                  // Hyperscan pattern id i reports Rules[i]
	Patterns   []Pattern                // how pattern i was compiled, and which condition it serves
	// Negated lists the ids of patterns of negated (not:) conditions: the
	// condition holds for a scanned value such a pattern did not match.
	Negated []int
	// Multi reports whether a pattern serves a rule of several conditions,
	// or a negated one: its hits go through Compiled.Cond.
	Multi bool

	shared bool // the database belongs to an earlier group of the same Compiled
}

// Pattern says how one regex or phrase went into its group's database, how
// its hits are confirmed and which condition it serves.
type Pattern struct {
	Flags     hyperscan.CompileFlag // as given to Hyperscan
	SOM       bool                  // reports the leftmost start: confirm with the bytes from..to
	Prefilter bool                  // Hyperscan matches a superset: confirm with the bytes before to
	MaxWidth  uint32                // longest match (math.MaxUint32 = unbounded)
	Cond      int                   // the condition's index in the rule's Conditions()
	Phrase    int                   // index in the condition's Phrases, -1 for its regex
	Not       bool                  // the condition is negated
	// Empty: the pattern matches the empty string (negated conditions
	// only): an empty value does not hold the condition.
	Empty bool

	expr     string // the expression given to Hyperscan
	confirm  confirmer
	validate transform.Validator
}

// Expression is the pattern as given to Hyperscan (a regex, or a phrase
// escaped).
func (p *Pattern) Expression() string { return p.expr }

// NeedsConfirm reports whether the hit must pass Confirm before it counts.
func (p *Pattern) NeedsConfirm() bool { return p.SOM || p.confirm != nil }

// Window is how many bytes ending at a hit's end Confirm needs when the
// pattern has no SOM: its longest match, at most MaxConfirmWindow.
func (p *Pattern) Window() int {
	if p.MaxWidth == 0 || p.MaxWidth > MaxConfirmWindow {
		return MaxConfirmWindow
	}
	return int(p.MaxWidth)
}

// ConfirmStart is the stream or buffer offset where the text Confirm needs
// begins, for a hit reported as (from, to): from with SOM, else Window()
// bytes before to (never below 0). Block-mode callers may pass the whole
// buffer up to to instead.
func (p *Pattern) ConfirmStart(from, to uint64) uint64 {
	if p.SOM {
		return from
	}
	if w := uint64(p.Window()); to > w {
		return to - w
	}
	return 0
}

// Attempts is how many hits of the pattern the engine should confirm per
// scanned value or stream before it drops the rest: MaxValidateAttempts
// with SOM (a validator over one match), MaxBacktrackAttempts for the
// backtracking engine, MaxConfirmAttempts for Go's regexp over the window.
func (p *Pattern) Attempts() int {
	switch p.confirm.(type) {
	case nil:
		return MaxValidateAttempts
	case re2Confirmer:
		return MaxBacktrackAttempts
	}
	return MaxConfirmAttempts
}

// Confirm reports whether a hit is real. text is the transformed field
// from ConfirmStart to the hit's end. With SOM the text is the match
// itself and only the validator runs; otherwise the confirming regex finds
// the matches in text (at most MaxConfirmMatches) and the validator, if
// any, must accept one.
func (p *Pattern) Confirm(text []byte) bool {
	if p.confirm == nil {
		if p.validate != nil {
			return p.validate(text)
		}
		return true
	}
	return p.confirm.find(text, MaxConfirmMatches, func(m []byte) bool {
		return p.validate == nil || p.validate(m)
	})
}

// Compile turns a validated set into Hyperscan databases. Enabled rules are
// split into the ordered ACL (no layer-7 condition, action allow or block)
// and the layer-7 rules; regexes are grouped by field and transform chain.
// On error nothing is returned but an ErrorList naming each rule.
func Compile(set *Set) (*Compiled, error) { return CompileFrom(set, nil) }

// CompileFrom is Compile reusing the databases of prev, a set compiled
// before (the running one): a group whose database would hold exactly
// the patterns of a group of prev (same expressions, flags and order,
// same mode) gets a private copy of prev's database, made with Hyperscan's
// serialisation in about a millisecond, instead of a new build (up to a
// second for the default pack's largest groups). A rule change then costs
// the build of the groups it touches only. prev may be nil; it is only
// read and may be closed once CompileFrom returns.
func CompileFrom(set *Set, prev *Compiled) (*Compiled, error) {
	if set == nil {
		return nil, errors.New("compile rules: nil set")
	}
	if err := set.validate(false); err != nil {
		// Report the regex problems too, as Parse would.
		return nil, set.validate(true)
	}
	c := layout(set)
	var sink errorSink
	cache := dbCache{}
	if prev != nil {
		for _, g := range prev.Groups {
			if g.database() != nil {
				cache.reuse(g.dbKey(), g)
			}
		}
	}
	for _, g := range c.Groups {
		g.build(&sink, cache)
	}
	if err := sink.err(); err != nil {
		c.Close()
		return nil, err
	}
	c.Key = cacheKey(set)
	return c, nil
}

// layout splits the active rules of set into ACL and layer-7 rules and
// gives every regex and phrase condition a pattern in the group of each
// (field, transform chain) it inspects, in first appearance order;
// databases are not built.
func layout(set *Set) *Compiled {
	c := &Compiled{Set: set, ACLDefault: set.ACLDefault, l7index: map[*Rule]int{}}
	byKey := map[string]*Group{}
	for _, r := range set.Rules {
		if !set.Active(r) {
			continue
		}
		if r.IsACL() {
			c.ACL = append(c.ACL, r)
			continue
		}
		c.l7index[r] = len(c.L7)
		c.L7 = append(c.L7, r)
		if r.Anomaly != nil {
			c.Thresholds = append(c.Thresholds, r)
		}
		c.Scored = c.Scored || r.Score > 0
		conds := r.Conditions()
		multi := len(conds) > 1
		hasDetect := false
		for ci, m := range conds {
			for _, f := range m.AllFields() {
				switch {
				case m.Detect != "":
					hasDetect = true
					c.DetectConds = append(c.DetectConds, CondRef{Rule: r, Cond: ci, Field: f})
				case m.Count != nil:
					c.CountConds = append(c.CountConds, CondRef{Rule: r, Cond: ci, Field: f})
				default:
					for _, chain := range m.Chains() {
						key := groupKey(f, chain)
						g := byKey[key]
						if g == nil {
							g = &Group{Field: f, Transforms: chain, Stream: f.Stream()}
							byKey[key] = g
							c.Groups = append(c.Groups, g)
						}
						g.add(r, ci, m, multi)
					}
				}
			}
		}
		if hasDetect {
			c.Detect = append(c.Detect, r)
		}
	}
	for _, a := range c.L7 {
		if len(a.Exempts) == 0 {
			continue
		}
		for _, r := range c.L7 {
			if r.Action != ActionAllow && slices.ContainsFunc(a.Exempts, func(e IDRange) bool { return e.Contains(r.ID) }) {
				if c.exempters == nil {
					c.exempters = map[*Rule][]*Rule{}
				}
				c.exempters[r] = append(c.exempters[r], a)
			}
		}
	}
	return c
}

// add appends the patterns of condition ci of r: its regex, or one per
// phrase.
func (g *Group) add(r *Rule, ci int, m *Match, multi bool) {
	g.Multi = g.Multi || multi || m.Not
	if m.Regex != "" {
		if m.Not {
			g.Negated = append(g.Negated, len(g.Rules))
		}
		g.Rules = append(g.Rules, r)
		g.Patterns = append(g.Patterns, Pattern{Cond: ci, Phrase: -1, Not: m.Not, expr: m.Regex})
		return
	}
	for pi, ph := range m.Phrases {
		if m.Not {
			g.Negated = append(g.Negated, len(g.Rules))
		}
		g.Rules = append(g.Rules, r)
		g.Patterns = append(g.Patterns, Pattern{Cond: ci, Phrase: pi, Not: m.Not, expr: escapePhrase(ph, m.UTF8)})
	}
}

// escapePhrase writes a phrase as a Hyperscan expression matching it
// literally: letters and digits as they are, every other byte (or, in
// UTF-8 mode, every other code point) as an escape.
func escapePhrase(p string, utf8Mode bool) string {
	var b strings.Builder
	b.Grow(len(p) * 2)
	const hexd = "0123456789abcdef"
	if utf8Mode {
		for _, c := range p {
			if c < 0x80 && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
				b.WriteRune(c)
				continue
			}
			fmt.Fprintf(&b, "\\x{%x}", c)
		}
		return b.String()
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			b.WriteByte(c)
			continue
		}
		b.WriteString("\\x")
		b.WriteByte(hexd[c>>4])
		b.WriteByte(hexd[c&15])
	}
	return b.String()
}

// Cond returns the condition pattern i serves.
func (g *Group) Cond(i int) *Match { return g.Rules[i].Conditions()[g.Patterns[i].Cond] }

func groupKey(f Field, chain []transform.Transform) string {
	var b strings.Builder
	b.WriteString(f.String())
	for _, t := range chain {
		b.WriteByte('|')
		b.WriteString(t.String())
	}
	return b.String()
}

// dbCache shares databases between groups of one Compile whose pattern
// lists are identical (the same rules on several fields with one chain),
// and offers those of an earlier Compiled (CompileFrom) for copying; keys
// are dbKey's.
type dbCache map[string]dbSource

// dbSource is a group whose database can serve another: own (same
// Compiled: shared) or earlier (another Compiled: copied).
type dbSource struct {
	g     *Group
	other bool
}

func (c dbCache) reuse(key string, g *Group) {
	if _, ok := c[key]; !ok {
		c[key] = dbSource{g: g, other: true}
	}
}

// dbKey identifies the database of a built group: its mode and every
// pattern's id, flags and expression.
func (g *Group) dbKey() string {
	var key strings.Builder
	som := false
	for i := range g.Patterns {
		som = som || g.Patterns[i].SOM
		fmt.Fprintf(&key, "%d:%d:%s\x00", i, g.Patterns[i].Flags, g.Patterns[i].expr)
	}
	return fmt.Sprintf("%d|%s", g.mode(som), key.String())
}

func (g *Group) mode(som bool) hyperscan.ModeFlag {
	mode := hyperscan.BlockMode
	if g.Stream {
		mode = hyperscan.StreamMode
		if som {
			mode |= hyperscan.SomHorizonSmallMode
		}
	}
	return mode
}

// copyDatabase gives g a private copy of src's database.
func (g *Group) copyDatabase(src *Group) error {
	raw, err := src.database().Marshal()
	if err != nil {
		return err
	}
	if g.Stream {
		g.Streaming, err = hyperscan.UnmarshalStreamDatabase(raw)
	} else {
		g.Block, err = hyperscan.UnmarshalBlockDatabase(raw)
	}
	return err
}

// build plans every pattern of the group and compiles its database. A
// pattern Hyperscan rejects at build time is reported against its rule and
// left out, so one build finds every bad pattern of the group. A pattern
// too large for Hyperscan to build exactly goes in in prefilter mode,
// confirmed in Go.
func (g *Group) build(sink *errorSink, cache dbCache) {
	ok := make([]bool, len(g.Rules))
	for i, r := range g.Rules {
		m := g.Cond(i)
		p := &g.Patterns[i]
		if p.Phrase >= 0 {
			p.Flags = hsFlags(m)&^(hyperscan.DotAll|hyperscan.MultiLine) | hyperscan.SingleMatch
			p.MaxWidth = uint32(len(m.Phrases[p.Phrase]))
			ok[i] = true
			continue
		}
		plan, err := planPattern(m)
		if err != nil {
			reportRegex(sink, r, m, err)
			continue
		}
		plan.Cond, plan.Phrase, plan.Not, plan.expr = p.Cond, p.Phrase, p.Not, p.expr
		*p, ok[i] = plan, true
		if !p.Prefilter && !p.SOM && splitConfirmers.tooLarge(g.mode(false), p.Flags, p.expr) {
			// Found too large before (on another field, or by an earlier
			// compile): skip the failing build.
			p.toPrefilter(m, g.mode(false))
		}
	}
	for attempt := 0; attempt <= len(g.Rules); attempt++ {
		var pats hyperscan.Patterns
		var idx []int
		som := false
		var key strings.Builder
		for i := range g.Rules {
			if !ok[i] {
				continue
			}
			pt := hyperscan.NewPattern(g.Patterns[i].expr, g.Patterns[i].Flags)
			pt.Id = i
			pats = append(pats, pt)
			idx = append(idx, i)
			som = som || g.Patterns[i].SOM
			fmt.Fprintf(&key, "%d:%d:%s\x00", i, g.Patterns[i].Flags, g.Patterns[i].expr)
		}
		if len(pats) == 0 {
			return
		}
		mode := g.mode(som)
		ck := fmt.Sprintf("%d|%s", mode, key.String())
		if src, ok := cache[ck]; ok && !src.other {
			g.Block, g.Streaming, g.shared = src.g.Block, src.g.Streaming, true
			return
		} else if ok && g.copyDatabase(src.g) == nil {
			cache[ck] = dbSource{g: g}
			return
		}
		db, err := (&hyperscan.DatabaseBuilder{Patterns: pats, Mode: mode}).Build()
		if err == nil {
			if g.Stream {
				g.Streaming = db.(hyperscan.StreamDatabase)
			} else {
				g.Block = db.(hyperscan.BlockDatabase)
			}
			if cache != nil {
				cache[ck] = dbSource{g: g}
			}
			return
		}
		var ce *hyperscan.CompileError
		if !errors.As(err, &ce) || ce.Expression < 0 || ce.Expression >= len(idx) {
			r := g.Rules[idx[0]]
			sink.add(&Error{Pos: g.Cond(idx[0]).posOf(r, "field"), RuleID: r.ID, Rule: r.index, Msg: fmt.Sprintf("hyperscan: cannot build the database of %s: %v", groupKey(g.Field, g.Transforms), err), Err: err})
			return
		}
		i := idx[ce.Expression]
		p := &g.Patterns[i]
		m := g.Cond(i)
		if p.SOM {
			// Start-of-match is too costly for this pattern: confirm from a
			// window before the hit's end instead.
			if cf, cerr := newConfirmer(m); cerr == nil {
				p.SOM, p.confirm = false, cf
				p.Flags &^= hyperscan.SomLeftMost
				continue
			}
		}
		if !p.Prefilter && p.Phrase < 0 {
			// Too large to build exactly ("Pattern is too large"): a
			// prefilter (an exact suffix of it, or Hyperscan's
			// approximation) whose hits are confirmed exactly.
			flags, expr := p.Flags, p.expr
			if p.toPrefilter(m, g.mode(false)) {
				splitConfirmers.markTooLarge(g.mode(false), flags, expr)
				continue
			}
		}
		r := g.Rules[i]
		sink.add(&Error{Pos: m.posOf(r, "regex"), RuleID: r.ID, Rule: r.index, Msg: "regex: hyperscan: " + strings.TrimSuffix(ce.Message, "."), Err: err})
		ok[i] = false
	}
}

// planPattern decides the Hyperscan flags and confirmation of one regex:
//   - plain patterns report once per scan or stream (HS_FLAG_SINGLEMATCH);
//   - patterns with a validator report every match with its leftmost start
//     (HS_FLAG_SOM_LEFTMOST), and the validator checks the matched bytes;
//   - patterns Hyperscan cannot run exactly are compiled in prefilter mode,
//     every hit is reported and confirmed with a Go regex (regexp, or
//     regexp2 for back-references and lookaround).
func planPattern(m *Match) (Pattern, *regexError) {
	plan, rerr := planRegex(m)
	if rerr != nil {
		return Pattern{}, rerr
	}
	p := Pattern{Flags: plan.flags, MaxWidth: uint32(min(plan.maxWidth, unbounded)), Phrase: -1, expr: m.Regex, Empty: plan.empty}
	if m.Validate != "" {
		p.validate, _ = transform.LookupValidator(m.Validate)
	}
	switch {
	case plan.prefilter:
		cf, err := newConfirmer(m)
		if err != nil {
			return Pattern{}, &regexError{off: -1, msg: err.Error()}
		}
		p.Prefilter, p.confirm = true, cf
		p.Flags |= hyperscan.PrefilterMode
	case p.validate != nil:
		p.SOM = true
		p.Flags |= hyperscan.SomLeftMost
	default:
		p.Flags |= hyperscan.SingleMatch
	}
	return p, nil
}

func reportRegex(sink *errorSink, r *Rule, m *Match, rerr *regexError) {
	sink.add(&Error{Pos: m.posOf(r, "regex"), RuleID: r.ID, Rule: r.index, Msg: "regex: " + rerr.msg, Err: rerr.cause})
}

// Close frees the Hyperscan databases.
func (c *Compiled) Close() error {
	var errs []error
	for _, g := range c.Groups {
		g.releaseConfirmers()
		if g.shared {
			g.Block, g.Streaming = nil, nil // freed with the group that owns it
			continue
		}
	}
	for _, g := range c.Groups {
		if g.Block != nil {
			errs = append(errs, g.Block.Close())
			g.Block = nil
		}
		if g.Streaming != nil {
			errs = append(errs, g.Streaming.Close())
			g.Streaming = nil
		}
	}
	return errors.Join(errs...)
}

// database returns the group's database, whichever the mode.
func (g *Group) database() hyperscan.Database {
	if g.Streaming != nil {
		return g.Streaming
	}
	if g.Block != nil {
		return g.Block
	}
	return nil
}

// NewScratch allocates one Hyperscan scratch space valid for every
// database of c, or returns nil when c has no database (no regex rules). A
// scratch serves one scan at a time: the engine needs one per worker
// (Scratch.Clone).
func (c *Compiled) NewScratch() (*hyperscan.Scratch, error) {
	var s *hyperscan.Scratch
	for _, g := range c.Groups {
		db := g.database()
		if db == nil {
			continue
		}
		if s == nil {
			var err error
			if s, err = hyperscan.NewScratch(db); err != nil {
				return nil, fmt.Errorf("allocate hyperscan scratch: %w", err)
			}
			continue
		}
		if err := s.Realloc(db); err != nil {
			_ = s.Free()
			return nil, fmt.Errorf("grow hyperscan scratch for %s: %w", groupKey(g.Field, g.Transforms), err)
		}
	}
	return s, nil
}

// MatchACL evaluates the ACL rules first-match in Go, as XDP does in the
// kernel: proto 0 in a rule matches any protocol, empty lists match
// anything, port conditions match only TCP, UDP and SCTP packets. src is
// the packet's source. It returns nil when no rule matches (ACLDefault
// applies).
func (c *Compiled) MatchACL(proto uint8, src, dst netip.AddrPort) *Rule {
	sa, da := src.Addr().Unmap(), dst.Addr().Unmap()
	for _, r := range c.ACL {
		if r.matchL4(proto, sa, src.Port(), da, dst.Port()) {
			return r
		}
	}
	return nil
}

// ACLVerdict is MatchACL reduced to an action and the deciding rule's id
// (0 when the default decided).
func (c *Compiled) ACLVerdict(proto uint8, src, dst netip.AddrPort) (Action, uint32) {
	if r := c.MatchACL(proto, src, dst); r != nil {
		return r.Action, r.ID
	}
	return c.ACLDefault, 0
}

func (r *Rule) matchL4(proto uint8, sa netip.Addr, sp uint16, da netip.Addr, dp uint16) bool {
	if r.Proto != 0 && r.Proto != proto {
		return false
	}
	if !matchList(r.Src, sa) || !matchList(r.Dst, da) {
		return false
	}
	if len(r.SrcPorts) > 0 || len(r.DstPorts) > 0 {
		if !hasPorts(proto) || proto == 0 {
			return false
		}
		if !matchList(r.SrcPorts, sp) || !matchList(r.DstPorts, dp) {
			return false
		}
	}
	return true
}

// matchList reports whether one of xs contains v; an empty list (no
// src:, no dst_port: ...) holds every value.
func matchList[T interface{ Contains(V) bool }, V any](xs []T, v V) bool {
	if len(xs) == 0 {
		return true
	}
	for _, x := range xs {
		if x.Contains(v) {
			return true
		}
	}
	return false
}

// Flow describes a connection for the layer-7 rules' other conditions.
// Client is the side that opened the connection; a rule's src/src_port
// name the client and dst/dst_port the server, whichever way the
// inspected bytes travel.
type Flow struct {
	Proto          uint8
	Client, Server netip.AddrPort
	App            string // identified application protocol; "" while identification is not final
}

// MatchFlow reports whether the rule's conditions other than its match
// hold for the flow. Rules with app_proto or app_proto_not do not match
// while f.App is "" (the engine asks again once the protocol is known).
func (r *Rule) MatchFlow(f Flow) bool {
	if !r.matchL4(f.Proto, f.Client.Addr().Unmap(), f.Client.Port(), f.Server.Addr().Unmap(), f.Server.Port()) {
		return false
	}
	if len(r.AppProto) > 0 || len(r.AppProtoNot) > 0 {
		if f.App == "" {
			return false
		}
		if len(r.AppProto) > 0 && !slices.Contains(r.AppProto, f.App) {
			return false
		}
		if slices.Contains(r.AppProtoNot, f.App) {
			return false
		}
	}
	return true
}

// Decision is the outcome of the layer-7 rules for a flow.
type Decision struct {
	Block  *Rule // first block rule that hit above any exemption; nil = do not block
	Exempt *Rule // allow rule that exempted the flow from the rules below it, or nil

	hits []*Rule // as given to Decide, for the scoped exclusions
}

// Decide applies the layer-7 semantics to the rules that hit a flow (any
// order, repeats allowed): in file order, an allow rule that hit exempts
// the flow from every rule below it; an allow rule with exempts: that
// hit exempts only the rules it names, wherever they are; any other block
// rule that hit above the cut blocks (the first one is reported); alerts
// never block. The decision refers to hits: Counts needs them unchanged.
func (c *Compiled) Decide(hits []*Rule) Decision {
	d := Decision{hits: hits}
	cut := len(c.L7)
	for _, r := range hits {
		if i, ok := c.l7index[r]; ok && r.Action == ActionAllow && len(r.Exempts) == 0 && i < cut {
			cut, d.Exempt = i, r
		}
	}
	best := cut
	for _, r := range hits {
		if i, ok := c.l7index[r]; ok && r.Action == ActionBlock && i < best && !c.Exempted(hits, r) {
			best, d.Block = i, r
		}
	}
	return d
}

// Counts reports whether a hit of r is to be logged under decision d: it
// is above the exempting allow rule (or nothing exempted the flow), and
// no scoped exclusion among the decided hits names it.
func (c *Compiled) Counts(d Decision, r *Rule) bool {
	i, ok := c.l7index[r]
	if !ok || c.Exempted(d.hits, r) {
		return false
	}
	if d.Exempt == nil {
		return true
	}
	return i <= c.l7index[d.Exempt]
}

// Exempts reports whether some allow rule with exempts: names a rule of
// the set (the engine checks Exempted only then).
func (c *Compiled) Exempts() bool { return len(c.exempters) > 0 }

// Exempted reports whether an allow rule among hits exempts r by its
// exempts: list.
func (c *Compiled) Exempted(hits []*Rule, r *Rule) bool {
	for _, a := range c.exempters[r] {
		if slices.Contains(hits, a) {
			return true
		}
	}
	return false
}

// Index returns r's position in c.L7, or -1.
func (c *Compiled) Index(r *Rule) int {
	if i, ok := c.l7index[r]; ok {
		return i
	}
	return -1
}
