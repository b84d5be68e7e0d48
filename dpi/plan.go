package dpi

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/deepwall/deepwall/dpi/internal/hs"
	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/rules"
	"github.com/deepwall/deepwall/rules/transform"
)

// streamKind names the four stream-mode fields; a flow holds one
// Hyperscan stream per (stream kind, group) it feeds.
type streamKind uint8

const (
	skReqBody         streamKind = iota // http.body
	skRespBody                          // http.response_body
	skPayload                           // payload (client to server)
	skPayloadToClient                   // payload.to_client
	numStreamKinds
)

// numFieldKinds bounds rules.FieldKind values (the rules package numbers
// them from 1).
const numFieldKinds = 40

// numProtos bounds proto.Protocol values.
const numProtos = 32

// groupPlan is one Hyperscan database with what the engine needs to drive
// it: the borrowed C database, the transform chain, and what lets the
// worker skip it.
type groupPlan struct {
	g     *rules.Group
	db    hs.DB
	chain []transform.Transform
	keep  int    // bytes of stream history confirmations need (stream fields)
	sens  []bool // per pattern: a DLP rule or one with a validator (mask what it matched)
	// multi: some pattern serves a rule of several conditions or a
	// negated one (hits go through the scope's condition state); neg:
	// the group has negated patterns (a value they miss holds them).
	multi, neg bool
	// exc: some pattern's condition skips header values by name (except:).
	exc bool
	// alpha: byte classes over which no pattern of the group can match
	// (groupAlphabet); a transformed value within them is not scanned.
	alpha transform.ByteClasses
	// skip: header names (lower case) every pattern's condition excludes
	// (http.header_value except:): such values are neither transformed
	// nor scanned.
	skip []string
}

// fieldPlan is everything that inspects one field: its Hyperscan groups
// and its libinjection rules.
type fieldPlan struct {
	field  rules.Field
	id     uint32 // unique within the ruleset (the worker's quiet-value cache key)
	groups []*groupPlan
	detect []rules.CondRef // detect: conditions on the field
	count  []rules.CondRef // count: conditions on the field
}

func (f *fieldPlan) used() bool {
	return f != nil && (len(f.groups) > 0 || len(f.detect) > 0 || len(f.count) > 0)
}

// matched reports whether values of the field are scanned (count
// conditions aside).
func (f *fieldPlan) matched() bool { return f != nil && (len(f.groups) > 0 || len(f.detect) > 0) }

// appPlan says which rules can still need a flow of one application
// protocol once it is identified: rules on that protocol's fields or on the
// raw payload whose app_proto conditions accept it.
type appPlan struct {
	// fields: some rule inspects a field of this protocol (the parser is
	// worth running).
	fields bool
	// any/anyCond: a rule without address or port conditions needs the
	// flow; else the rules with such conditions to check against it.
	any     bool
	anyCond []*rules.Rule
	// pay/payCond: the same, for raw payload rules only (what a TLS or SSH
	// flow still needs after its handshake).
	pay     bool
	payCond []*rules.Rule
	// first is the lowest rules.Compiled.L7 index of a rule that can need
	// the flow: an allow rule at or above it that exempts the flow leaves
	// nothing to inspect.
	first int
}

// ruleset is a rules.Compiled prepared for the packet path: per field the
// groups and detectors that inspect it, the rules evaluated when a flow
// starts or is identified, and the facts that let a flow's verdict become
// final early. It is shared read-only by the workers; each worker owns one
// scratch space of it.
type ruleset struct {
	c   *rules.Compiled
	gen uint64

	block   [numFieldKinds]*fieldPlan // block-mode fields except http.header.<name>
	headers []*fieldPlan              // http.header.<name>, one per name
	stream  [numStreamKinds]*fieldPlan

	// alertL4 are layer-7 rules without a match or app_proto condition
	// (alerts on addresses and ports): evaluated when a flow starts.
	alertL4 []*rules.Rule
	// appOnly are rules without a match but with app_proto conditions:
	// evaluated when identification ends.
	appOnly []*rules.Rule

	// Rules that need a flow inspected (a match, or app_proto conditions),
	// split into those without address/port conditions — per transport
	// class, any tells whether one exists — and the others.
	any  [numTransports]bool
	cond []condRule

	apps [numProtos]appPlan

	// thresholds are the anomaly threshold rules per direction (0
	// inbound, 1 outbound).
	thresholds [2][]*rules.Rule
	// bufBody: the request body is kept (bounded) for libinjection on
	// http.body or for the body arguments; bodyArgs: some rule inspects
	// body arguments (http.arg, http.arg_name, http.file, ...).
	bufBody, bodyArgs bool
	// reqEnd: something is evaluated when a request is complete (body
	// arguments, counts, the inbound threshold).
	reqEnd bool

	// scratch holds one scratch space per worker (index = worker id).
	scratch []*hs.Scratch

	// users counts the workers using the set; guarded by Engine.switchMu.
	users int
	once  sync.Once
}

// condRule is a rule with address or port conditions, prepared for
// mayApply when a flow starts.
type condRule struct {
	r   *rules.Rule
	app string              // witnessApp(r)
	on  [numTransports]bool // the transports its field exists over (fieldTransports)
}

// Transport classes for rule applicability.
const (
	tpTCP = iota
	tpUDP
	tpOther
	numTransports
)

func transportOf(p uint8) int {
	switch p {
	case 6:
		return tpTCP
	case 17:
		return tpUDP
	}
	return tpOther
}

// fieldTransports says which transports a rule's match can see: HTTP and
// TLS fields only exist over TCP, DNS and the raw payload over both; rules
// without a match (app_proto only) need identification, which only TCP
// and UDP flows get.
func fieldTransports(r *rules.Rule) (tcp, udp bool) {
	if r.Match == nil {
		return true, true
	}
	switch r.Match.Field.AppProto() {
	case "http", "tls", "ssh":
		return true, false
	}
	return true, true
}

func hasL4Cond(r *rules.Rule) bool {
	return r.Proto != 0 || len(r.Src) > 0 || len(r.Dst) > 0 || len(r.SrcPorts) > 0 || len(r.DstPorts) > 0
}

func hasAppCond(r *rules.Rule) bool { return len(r.AppProto) > 0 || len(r.AppProtoNot) > 0 }

// appAccepts reports whether r's app_proto conditions hold for app.
func appAccepts(r *rules.Rule, app string) bool {
	if len(r.AppProto) > 0 && !slices.Contains(r.AppProto, app) {
		return false
	}
	return !slices.Contains(r.AppProtoNot, app)
}

// isSensitive reports rules whose matches are secrets: category dlp, or a
// validator (card numbers, SSNs, IBANs, JWTs).
func isSensitive(r *rules.Rule) bool {
	return r.Category == "dlp" || (r.Match != nil && r.Match.Validate != "")
}

// newRuleset prepares c for workers workers: borrows every database,
// plans fields and applicability, and allocates one scratch per worker. On
// error nothing is kept.
func newRuleset(c *rules.Compiled, gen uint64, workers int) (rs *ruleset, err error) {
	if c == nil {
		return nil, errors.New("no compiled rules")
	}
	rs = &ruleset{c: c, gen: gen}
	defer func() {
		if err != nil {
			rs.freeScratch()
		}
	}()
	nplans := uint32(0)
	newPlan := func(f rules.Field) *fieldPlan {
		nplans++
		return &fieldPlan{field: f, id: nplans}
	}
	plan := func(f rules.Field) *fieldPlan {
		if f.Kind == rules.FieldHTTPHeader {
			for _, h := range rs.headers {
				if h.field == f {
					return h
				}
			}
			h := newPlan(f)
			rs.headers = append(rs.headers, h)
			return h
		}
		if f.Stream() {
			k := streamKindOf(f.Kind)
			if rs.stream[k] == nil {
				rs.stream[k] = newPlan(f)
			}
			return rs.stream[k]
		}
		if int(f.Kind) >= numFieldKinds {
			return nil
		}
		if rs.block[f.Kind] == nil {
			rs.block[f.Kind] = newPlan(f)
		}
		return rs.block[f.Kind]
	}
	alphabets := alphabetCache{}
	for _, g := range c.Groups {
		gp := &groupPlan{g: g, chain: g.Transforms, sens: make([]bool, len(g.Rules))}
		if !g.Stream {
			gp.alpha = groupAlphabet(g, alphabets)
		}
		switch {
		case g.Stream && g.Streaming != nil:
			gp.db, err = hs.Stream(g.Streaming)
		case !g.Stream && g.Block != nil:
			gp.db, err = hs.Block(g.Block)
		default:
			// Compile never returns such a group: the set was closed.
			return nil, fmt.Errorf("%s has no Hyperscan database (closed rule set?)", g.Field)
		}
		if err != nil {
			return nil, fmt.Errorf("prepare %s: %w", g.Field, err)
		}
		gp.multi, gp.neg = g.Multi, len(g.Negated) > 0
		for i := range g.Patterns {
			c := g.Cond(i)
			gp.exc = gp.exc || g.Field.Kind == rules.FieldHTTPHeaderValue && len(c.Except) > 0 || c.NameFilter()
		}
		if gp.exc && g.Field.Kind == rules.FieldHTTPHeaderValue {
			gp.skip = commonExcept(g)
		}
		for i := range g.Patterns {
			if p := &g.Patterns[i]; p.NeedsConfirm() {
				gp.keep = max(gp.keep, p.Window())
			}
			gp.sens[i] = isSensitive(g.Rules[i])
		}
		fp := plan(g.Field)
		if fp == nil {
			continue
		}
		fp.groups = append(fp.groups, gp)
	}
	for _, ref := range c.DetectConds {
		if fp := plan(ref.Field); fp != nil {
			fp.detect = append(fp.detect, ref)
		}
	}
	for _, ref := range c.CountConds {
		if fp := plan(ref.Field); fp != nil {
			fp.count = append(fp.count, ref)
		}
	}
	for _, k := range bodyArgKinds {
		if rs.block[k].used() {
			rs.bodyArgs = true
		}
	}
	if fp := rs.stream[skReqBody]; fp != nil && len(fp.detect) > 0 {
		rs.bufBody = true
	}
	rs.bufBody = rs.bufBody || rs.bodyArgs
	for _, r := range c.Thresholds {
		i := 0
		if r.Anomaly.Direction == rules.Outbound {
			i = 1
		}
		rs.thresholds[i] = append(rs.thresholds[i], r)
	}
	rs.reqEnd = rs.bufBody || len(rs.thresholds[0]) > 0
	// Sort each block field's groups by chain (a stable scan order; the
	// worker shares transformed forms of a value between groups whatever
	// their order, see worker.transform).
	sortChains := func(fp *fieldPlan) {
		if fp == nil || fp.field.Stream() {
			return
		}
		slices.SortStableFunc(fp.groups, func(a, b *groupPlan) int { return slices.Compare(a.chain, b.chain) })
	}
	for _, fp := range rs.block {
		sortChains(fp)
	}
	for _, fp := range rs.headers {
		sortChains(fp)
	}

	for p := range rs.apps {
		rs.apps[p].first = len(c.L7)
	}
	for i, r := range c.L7 {
		if r.Anomaly != nil {
			// A threshold rule hits through the scores of the others;
			// it needs no inspection of its own.
			continue
		}
		if r.Match == nil && !hasAppCond(r) {
			rs.alertL4 = append(rs.alertL4, r)
			continue
		}
		if r.Match == nil {
			rs.appOnly = append(rs.appOnly, r)
		}
		tcp, udp := fieldTransports(r)
		if hasL4Cond(r) {
			rs.cond = append(rs.cond, condRule{r: r, app: witnessApp(r), on: [numTransports]bool{tpTCP: tcp, tpUDP: udp}})
		} else {
			rs.any[tpTCP] = rs.any[tpTCP] || tcp
			rs.any[tpUDP] = rs.any[tpUDP] || udp
		}
		if r.Match == nil {
			continue
		}
		fieldApp := r.Match.Field.AppProto()
		payload := fieldApp == ""
		for p := proto.Protocol(0); int(p) < numProtos; p++ {
			name := p.String()
			if p != proto.Unknown && name == "unknown" {
				continue // not a protocol Identify names
			}
			if !payload && fieldApp != name || !appAccepts(r, name) {
				continue
			}
			ap := &rs.apps[p]
			ap.first = min(ap.first, i)
			if !payload {
				ap.fields = true
			}
			if hasL4Cond(r) {
				ap.anyCond = append(ap.anyCond, r)
				if payload {
					ap.payCond = append(ap.payCond, r)
				}
			} else {
				ap.any = true
				ap.pay = ap.pay || payload
			}
		}
	}

	sc, err := c.NewScratch()
	if err != nil {
		return nil, err
	}
	defer func() {
		if sc != nil {
			_ = sc.Free()
		}
	}()
	rs.scratch = make([]*hs.Scratch, workers)
	for i := range rs.scratch {
		if rs.scratch[i], err = hs.CloneScratch(sc); err != nil {
			return nil, fmt.Errorf("scratch for worker %d: %w", i, err)
		}
	}
	return rs, nil
}

// bodyArgKinds are the block fields whose values come (also) from the
// request body's arguments.
var bodyArgKinds = [...]rules.FieldKind{rules.FieldHTTPArg, rules.FieldHTTPArgName,
	rules.FieldHTTPFile, rules.FieldHTTPFileField, rules.FieldHTTPPartHeader, rules.FieldHTTPPlainBody,
	rules.FieldHTTPXMLText, rules.FieldHTTPXMLAttr}

func streamKindOf(k rules.FieldKind) streamKind {
	switch k {
	case rules.FieldHTTPBody:
		return skReqBody
	case rules.FieldHTTPResponseBody:
		return skRespBody
	case rules.FieldPayload:
		return skPayload
	}
	return skPayloadToClient
}

// witnessApp returns an application protocol that satisfies r's app_proto
// conditions, so that MatchFlow with it tests only the address and port
// conditions.
func witnessApp(r *rules.Rule) string {
	if len(r.AppProto) > 0 {
		return r.AppProto[0]
	}
	for _, a := range rules.AppProtocols {
		if !slices.Contains(r.AppProtoNot, a) {
			return a
		}
	}
	return "unknown"
}

// mayApply reports whether some rule that needs inspection can apply to a
// new flow: its address and port conditions hold (app_proto conditions
// cannot be ruled out before identification) and its field exists over
// the flow's transport.
func (rs *ruleset) mayApply(f rules.Flow) bool {
	tp := transportOf(f.Proto)
	if tp == tpOther {
		return false
	}
	if rs.any[tp] {
		return true
	}
	for i := range rs.cond {
		c := &rs.cond[i]
		if !c.on[tp] {
			continue
		}
		f.App = c.app
		if c.r.MatchFlow(f) {
			return true
		}
	}
	return false
}

// needs reports whether, once identified as app, the flow still needs
// inspecting: some rule on app's fields or on the raw payload applies to
// it (payloadOnly: only payload rules count).
func (rs *ruleset) needs(app proto.Protocol, f rules.Flow, payloadOnly bool) bool {
	if int(app) >= numProtos {
		app = proto.Unknown
	}
	ap := &rs.apps[app]
	any, cond := ap.any, ap.anyCond
	if payloadOnly {
		any, cond = ap.pay, ap.payCond
	}
	if any {
		return true
	}
	f.App = app.String()
	for _, r := range cond {
		if r.MatchFlow(f) {
			return true
		}
	}
	return false
}

func (rs *ruleset) freeScratch() {
	for i, s := range rs.scratch {
		s.Free()
		rs.scratch[i] = nil
	}
}

// release frees the set once no worker uses it: scratch spaces, private
// database copies and the Hyperscan databases of the Compiled.
func (rs *ruleset) release() {
	rs.once.Do(func() {
		rs.freeScratch()
		for _, fps := range [][]*fieldPlan{rs.block[:], rs.headers, rs.stream[:]} {
			for _, fp := range fps {
				if fp == nil {
					continue
				}
				for _, gp := range fp.groups {
					gp.db.Release()
				}
			}
		}
		_ = rs.c.Close()
	})
}

// commonExcept returns the header names every pattern of g excludes.
func commonExcept(g *rules.Group) []string {
	var common []string
	for i := range g.Patterns {
		ex := g.Cond(i).Except
		if i == 0 {
			common = slices.Clone(ex)
		} else {
			common = slices.DeleteFunc(common, func(s string) bool { return !slices.Contains(ex, s) })
		}
		if len(common) == 0 {
			return nil
		}
	}
	return common
}
