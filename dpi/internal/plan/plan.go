// Package plan prepares a compiled rule set for the DPI engine's packet
// path: per field, the Hyperscan groups and libinjection conditions that
// inspect it; per application protocol, which rules can still need a flow;
// and the facts that let a flow's verdict become final early. A Set is
// built once per rule change and shared read-only by the workers.
package plan

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

// StreamKind names the four stream-mode fields; a flow holds one
// Hyperscan stream per (stream kind, group) it feeds.
type StreamKind uint8

// The stream kinds.
const (
	StreamReqBody         StreamKind = iota // http.body
	StreamRespBody                          // http.response_body
	StreamPayload                           // payload (client to server)
	StreamPayloadToClient                   // payload.to_client
	NumStreamKinds
)

// numFieldKinds bounds rules.FieldKind values (the rules package numbers
// them from 1, FieldMQTTTopic last). TestFieldKinds fails when rules
// gains a kind past it; New refuses a field beyond it rather than leave it
// uninspected.
const numFieldKinds = int(rules.FieldMQTTTopic) + 1

// Group is one Hyperscan database with what the engine needs to drive
// it: the borrowed C database, the transform chain, and what lets the
// worker skip it.
type Group struct {
	Group *rules.Group
	DB    hs.DB
	Chain []transform.Transform
	Keep  int    // bytes of stream history confirmations need (stream fields)
	Sens  []bool // per pattern: a DLP rule or one with a validator (mask what it matched)
	// Multi: some pattern serves a rule of several conditions or a
	// negated one (hits go through the scope's condition state); Neg:
	// the group has negated patterns (a value they miss holds them).
	Multi, Neg bool
	// Exc: some pattern's condition skips or selects values by name
	// (except:, name:, name_regex:).
	Exc bool
	// Alpha: byte classes over which no pattern of the group can match
	// (groupAlphabet); a transformed value within them is not scanned.
	Alpha transform.ByteClasses
	// Skip: value names (lower case) every pattern's condition excludes
	// (except:): such values are neither transformed nor scanned.
	Skip []string
}

// Field is everything that inspects one field: its Hyperscan groups
// and its libinjection rules.
type Field struct {
	Field  rules.Field
	ID     uint32 // unique within the Set (the worker's quiet-value cache key)
	Groups []*Group
	Detect []rules.CondRef // detect: conditions on the field
	Count  []rules.CondRef // count: conditions on the field
}

// Used reports whether anything inspects the field.
func (f *Field) Used() bool {
	return f != nil && (len(f.Groups) > 0 || len(f.Detect) > 0 || len(f.Count) > 0)
}

// Matched reports whether values of the field are scanned (count
// conditions aside).
func (f *Field) Matched() bool { return f != nil && (len(f.Groups) > 0 || len(f.Detect) > 0) }

// App says which rules can still need a flow of one application
// protocol once it is identified: rules on that protocol's fields or on the
// raw payload whose app_proto conditions accept it.
type App struct {
	// Fields: some rule inspects a field of this protocol (the parser is
	// worth running).
	Fields bool
	// First is the lowest rules.Compiled.L7 index of a rule that can need
	// the flow: an allow rule at or above it that exempts the flow leaves
	// nothing to inspect.
	First int

	// any/anyCond: a rule without address or port conditions needs the
	// flow; else the rules with such conditions to check against it.
	any     bool
	anyCond []*rules.Rule
	// pay/payCond: the same, for raw payload rules only (what a TLS or SSH
	// flow still needs after its handshake).
	pay     bool
	payCond []*rules.Rule
}

// Set is a rules.Compiled prepared for the packet path: per field the
// groups and detectors that inspect it, the rules evaluated when a flow
// starts or is identified, and the facts that let a flow's verdict become
// final early. It is shared read-only by the workers; each worker owns one
// scratch space of it.
type Set struct {
	Compiled *rules.Compiled
	Gen      uint64

	Block   [numFieldKinds]*Field // block-mode fields except http.header.<name>
	Headers []*Field              // http.header.<name>, one per name
	Stream  [NumStreamKinds]*Field

	// AlertL4 are layer-7 rules without a match or app_proto condition
	// (alerts on addresses and ports): evaluated when a flow starts.
	AlertL4 []*rules.Rule
	// AppOnly are rules without a match but with app_proto conditions:
	// evaluated when identification ends.
	AppOnly []*rules.Rule

	// Thresholds are the anomaly threshold rules per direction (0
	// inbound, 1 outbound).
	Thresholds [2][]*rules.Rule
	// BufBody: the request body is kept (bounded) for libinjection on
	// http.body or for the body arguments; BodyArgs: some rule inspects
	// body arguments (http.arg, http.arg_name, http.file, ...).
	BufBody, BodyArgs bool
	// ReqEnd: something is evaluated when a request is complete (body
	// arguments, counts, the inbound threshold).
	ReqEnd bool

	// Scratch holds one scratch space per worker (index = worker id).
	Scratch []*hs.Scratch

	// Rules that need a flow inspected (a match, or app_proto conditions),
	// split into those without address/port conditions — per transport
	// class, any tells whether one exists — and the others.
	any  [numTransports]bool
	cond []condRule

	apps [proto.NumProtocols]App

	nplans uint32 // field plans made so far (Field.ID)
	once   sync.Once
}

// condRule is a rule with address or port conditions, prepared for
// MayApply when a flow starts.
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
	case "http", "tls", "ssh", "mysql", "postgresql", "redis", "sql":
		return true, false
	}
	return true, true
}

func hasL4Cond(r *rules.Rule) bool {
	return r.Proto != 0 || len(r.Src) > 0 || len(r.Dst) > 0 || len(r.SrcPorts) > 0 || len(r.DstPorts) > 0
}

// HasAppCond reports whether r has app_proto conditions (which hold or
// fail only once the flow is identified).
func HasAppCond(r *rules.Rule) bool { return len(r.AppProto) > 0 || len(r.AppProtoNot) > 0 }

// appAccepts reports whether r's app_proto conditions hold for app.
func appAccepts(r *rules.Rule, app string) bool {
	if len(r.AppProto) > 0 && !slices.Contains(r.AppProto, app) {
		return false
	}
	return !slices.Contains(r.AppProtoNot, app)
}

// Sensitive reports rules whose matches are secrets: category dlp, or a
// validator (card numbers, SSNs, IBANs, JWTs).
func Sensitive(r *rules.Rule) bool {
	return r.Category == "dlp" || (r.Match != nil && r.Match.Validate != "")
}

// New prepares c for workers workers: borrows every database, plans
// fields and applicability, and allocates one scratch per worker. On
// error nothing is kept.
func New(c *rules.Compiled, gen uint64, workers int) (s *Set, err error) {
	if c == nil {
		return nil, errors.New("no compiled rules")
	}
	s = &Set{Compiled: c, Gen: gen}
	defer func() {
		if err != nil {
			s.freeScratch()
		}
	}()
	if err := s.planGroups(); err != nil {
		return nil, err
	}
	if err := s.planConds(); err != nil {
		return nil, err
	}
	s.planRequestEnd()
	s.sortChains()
	s.planApps()
	if err := s.newScratch(workers); err != nil {
		return nil, err
	}
	return s, nil
}

// field returns the plan of f, made on first use.
func (s *Set) field(f rules.Field) (*Field, error) {
	newField := func() *Field {
		s.nplans++
		return &Field{Field: f, ID: s.nplans}
	}
	if f.Kind == rules.FieldHTTPHeader {
		for _, h := range s.Headers {
			if h.Field == f {
				return h, nil
			}
		}
		h := newField()
		s.Headers = append(s.Headers, h)
		return h, nil
	}
	if f.Stream() {
		k := streamKindOf(f.Kind)
		if s.Stream[k] == nil {
			s.Stream[k] = newField()
		}
		return s.Stream[k], nil
	}
	if int(f.Kind) >= numFieldKinds {
		return nil, fmt.Errorf("field %s: kind %d beyond the engine's %d", f, f.Kind, numFieldKinds)
	}
	if s.Block[f.Kind] == nil {
		s.Block[f.Kind] = newField()
	}
	return s.Block[f.Kind], nil
}

// planGroups borrows each group's Hyperscan database and files the group
// under its field.
func (s *Set) planGroups() error {
	alphabets := alphabetCache{}
	for _, g := range s.Compiled.Groups {
		gp, err := newGroup(g, alphabets)
		if err != nil {
			return err
		}
		fp, err := s.field(g.Field)
		if err != nil {
			gp.DB.Release()
			return err
		}
		fp.Groups = append(fp.Groups, gp)
	}
	return nil
}

func newGroup(g *rules.Group, alphabets alphabetCache) (*Group, error) {
	gp := &Group{Group: g, Chain: g.Transforms, Sens: make([]bool, len(g.Rules))}
	if !g.Stream {
		gp.Alpha = groupAlphabet(g, alphabets)
	}
	var err error
	switch {
	case g.Stream && g.Streaming != nil:
		gp.DB, err = hs.Stream(g.Streaming)
	case !g.Stream && g.Block != nil:
		gp.DB, err = hs.Block(g.Block)
	default:
		// Compile never returns such a group: the set was closed.
		return nil, fmt.Errorf("%s has no Hyperscan database (closed rule set?)", g.Field)
	}
	if err != nil {
		return nil, fmt.Errorf("prepare %s: %w", g.Field, err)
	}
	gp.Multi, gp.Neg = g.Multi, len(g.Negated) > 0
	for i := range g.Patterns {
		c := g.Cond(i)
		gp.Exc = gp.Exc || len(c.ExceptNames(g.Field.Kind)) > 0 || c.NameFilter()
	}
	if gp.Exc {
		gp.Skip = commonExcept(g)
	}
	for i := range g.Patterns {
		if p := &g.Patterns[i]; p.NeedsConfirm() {
			gp.Keep = max(gp.Keep, p.Window())
		}
		gp.Sens[i] = Sensitive(g.Rules[i])
	}
	return gp, nil
}

// planConds files the libinjection (detect:) and count: conditions under
// their fields.
func (s *Set) planConds() error {
	for _, ref := range s.Compiled.DetectConds {
		fp, err := s.field(ref.Field)
		if err != nil {
			return err
		}
		fp.Detect = append(fp.Detect, ref)
	}
	for _, ref := range s.Compiled.CountConds {
		fp, err := s.field(ref.Field)
		if err != nil {
			return err
		}
		fp.Count = append(fp.Count, ref)
	}
	return nil
}

// planRequestEnd decides what waits for a complete request: the kept
// body, body arguments, the anomaly thresholds.
func (s *Set) planRequestEnd() {
	for _, k := range bodyArgKinds {
		if s.Block[k].Used() {
			s.BodyArgs = true
		}
	}
	if fp := s.Stream[StreamReqBody]; fp != nil && len(fp.Detect) > 0 {
		s.BufBody = true
	}
	s.BufBody = s.BufBody || s.BodyArgs
	for _, r := range s.Compiled.Thresholds {
		i := 0
		if r.Anomaly.Direction == rules.Outbound {
			i = 1
		}
		s.Thresholds[i] = append(s.Thresholds[i], r)
	}
	s.ReqEnd = s.BufBody || len(s.Thresholds[0]) > 0
}

// sortChains sorts each block field's groups by chain (a stable scan
// order; the worker shares transformed forms of a value between groups
// whatever their order).
func (s *Set) sortChains() {
	sortChains := func(fp *Field) {
		if fp == nil || fp.Field.Stream() {
			return
		}
		slices.SortStableFunc(fp.Groups, func(a, b *Group) int { return slices.Compare(a.Chain, b.Chain) })
	}
	for _, fp := range s.Block {
		sortChains(fp)
	}
	for _, fp := range s.Headers {
		sortChains(fp)
	}
}

// planApps sorts the layer-7 rules by when they apply: when a flow
// starts (AlertL4), when identification ends (AppOnly), and, per
// transport and application protocol, whether some rule can still need
// the flow inspected.
func (s *Set) planApps() {
	c := s.Compiled
	for p := range s.apps {
		s.apps[p].First = len(c.L7)
	}
	for i, r := range c.L7 {
		if r.Anomaly != nil {
			// A threshold rule hits through the scores of the others;
			// it needs no inspection of its own.
			continue
		}
		if r.Match == nil && !HasAppCond(r) {
			s.AlertL4 = append(s.AlertL4, r)
			continue
		}
		if r.Match == nil {
			s.AppOnly = append(s.AppOnly, r)
		}
		tcp, udp := fieldTransports(r)
		if hasL4Cond(r) {
			s.cond = append(s.cond, condRule{r: r, app: witnessApp(r), on: [numTransports]bool{tpTCP: tcp, tpUDP: udp}})
		} else {
			s.any[tpTCP] = s.any[tpTCP] || tcp
			s.any[tpUDP] = s.any[tpUDP] || udp
		}
		if r.Match != nil {
			s.planAppsFor(i, r)
		}
	}
}

// planAppsFor records, for every protocol whose flows rule r (index i of
// L7, with a match) can inspect, that the rule needs them.
func (s *Set) planAppsFor(i int, r *rules.Rule) {
	fieldApp := r.Match.Field.AppProto()
	payload := fieldApp == ""
	for p := range proto.NumProtocols {
		name := p.String()
		if !payload && !r.Match.Field.FilledBy(name) || !appAccepts(r, name) {
			continue
		}
		ap := &s.apps[p]
		ap.First = min(ap.First, i)
		if !payload {
			ap.Fields = true
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

// newScratch allocates one scratch space per worker.
func (s *Set) newScratch(workers int) error {
	sc, err := s.Compiled.NewScratch()
	if err != nil {
		return err
	}
	defer func() {
		if sc != nil { // nil: no group needs scratch
			_ = sc.Free()
		}
	}()
	s.Scratch = make([]*hs.Scratch, workers)
	for i := range s.Scratch {
		if s.Scratch[i], err = hs.CloneScratch(sc); err != nil {
			return fmt.Errorf("scratch for worker %d: %w", i, err)
		}
	}
	return nil
}

// bodyArgKinds are the block fields whose values come (also) from the
// request body's arguments.
var bodyArgKinds = [...]rules.FieldKind{rules.FieldHTTPArg, rules.FieldHTTPArgName,
	rules.FieldHTTPFile, rules.FieldHTTPFileField, rules.FieldHTTPPartHeader, rules.FieldHTTPPlainBody,
	rules.FieldHTTPXMLText, rules.FieldHTTPXMLAttr}

func streamKindOf(k rules.FieldKind) StreamKind {
	switch k {
	case rules.FieldHTTPBody:
		return StreamReqBody
	case rules.FieldHTTPResponseBody:
		return StreamRespBody
	case rules.FieldPayload:
		return StreamPayload
	}
	return StreamPayloadToClient
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

// MayApply reports whether some rule that needs inspection can apply to a
// new flow: its address and port conditions hold (app_proto conditions
// cannot be ruled out before identification) and its field exists over
// the flow's transport.
func (s *Set) MayApply(f rules.Flow) bool {
	tp := transportOf(f.Proto)
	if tp == tpOther {
		return false
	}
	if s.any[tp] {
		return true
	}
	for i := range s.cond {
		c := &s.cond[i]
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

// App returns the plan of flows identified as app (a value Identify does
// not return counts as Unknown).
func (s *Set) App(app proto.Protocol) *App {
	if app >= proto.NumProtocols {
		app = proto.Unknown
	}
	return &s.apps[app]
}

// Needs reports whether, once identified as app, the flow still needs
// inspecting: some rule on app's fields or on the raw payload applies to
// it (payloadOnly: only payload rules count).
func (s *Set) Needs(app proto.Protocol, f rules.Flow, payloadOnly bool) bool {
	if app >= proto.NumProtocols {
		app = proto.Unknown
	}
	ap := &s.apps[app]
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

func (s *Set) freeScratch() {
	for i, sc := range s.Scratch {
		sc.Free()
		s.Scratch[i] = nil
	}
}

// Release frees the set, once: scratch spaces, private database copies
// and the Hyperscan databases of the Compiled. The caller makes sure no
// worker uses it any more.
func (s *Set) Release() {
	s.once.Do(func() {
		s.freeScratch()
		for _, fps := range [][]*Field{s.Block[:], s.Headers, s.Stream[:]} {
			for _, fp := range fps {
				if fp == nil {
					continue
				}
				for _, gp := range fp.Groups {
					gp.DB.Release()
				}
			}
		}
		_ = s.Compiled.Close()
	})
}

// commonExcept returns the value names every pattern of g excludes.
func commonExcept(g *rules.Group) []string {
	var common []string
	for i := range g.Patterns {
		ex := g.Cond(i).ExceptNames(g.Field.Kind)
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
