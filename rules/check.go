package rules

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/deepwall/deepwall/rules/transform"
)

// checkRule finds the problems of a rule that involve more than one key:
// contradictions, impossible combinations, and (with regex) the regex
// itself.
func checkRule(r *Rule, sink *errorSink, regex bool) {
	at := r.posOf
	if r.Action > ActionBlock {
		sink.errorf(at("action"), r, "invalid action %d", r.Action)
	}
	// Ports exist only for TCP, UDP and SCTP.
	if (len(r.SrcPorts) > 0 || len(r.DstPorts) > 0) && !hasPorts(r.Proto) {
		sink.errorf(at("proto"), r, "src_port/dst_port need proto tcp, udp or sctp, but proto is %s", ProtoString(r.Proto))
	}
	// A packet has one address family.
	if fam(r.Src) != 0 && fam(r.Dst) != 0 && fam(r.Src)&fam(r.Dst) == 0 {
		sink.errorf(at("dst"), r, "src and dst are of different IP families (IPv4 and IPv6), so the rule can never match")
	}
	for _, p := range r.AppProto {
		if slices.Contains(r.AppProtoNot, p) {
			sink.errorf(at("app_proto_not"), r, "app_proto and app_proto_not both list %q, so the rule can never match", p)
		}
	}
	if r.Proto != 0 {
		for _, p := range r.AppProto {
			if ts, ok := appTransport[p]; ok && !slices.Contains(ts, r.Proto) {
				sink.errorf(at("app_proto"), r, "app_proto %s runs over %s, but proto is %s", p, protoList(ts), ProtoString(r.Proto))
			}
		}
	}
	conds := r.Conditions()
	if len(conds) > MaxConds {
		sink.errorf(at("match"), r, "match has more than %d conditions", MaxConds)
	}
	for _, m := range conds {
		if m != nil {
			checkMatch(r, m, sink, regex)
		}
	}
	if r.Score > 0 {
		switch {
		case r.Score > MaxScore:
			sink.errorf(at("score"), r, "score %d is above %d", r.Score, MaxScore)
		case r.Action == ActionAllow:
			sink.errorf(at("score"), r, "an allow rule cannot add to the anomaly score; use action alert (the threshold rule decides) or block")
		case len(conds) == 0:
			sink.errorf(at("score"), r, "score needs a match: whose hits it counts")
		}
	}
	if r.Score < 0 {
		sink.errorf(at("score"), r, "score must not be negative")
	}
	if r.Paranoia < 0 || r.Paranoia > MaxParanoia {
		sink.errorf(at("paranoia"), r, "paranoia must be 1 to %d", MaxParanoia)
	}
	if len(r.Exempts) > 0 {
		checkExempts(r, sink)
	}
	if t := r.Anomaly; t != nil {
		switch {
		case len(conds) > 0:
			sink.errorf(at("anomaly"), r, "a threshold rule (anomaly:) has no match:; it hits when the transaction's score reaches the threshold")
		case r.Score > 0:
			sink.errorf(at("score"), r, "a threshold rule (anomaly:) has no score of its own")
		case r.Action == ActionAllow:
			sink.errorf(at("action"), r, "a threshold rule blocks or alerts; allow is not possible")
		}
		if t.Direction != Inbound && t.Direction != Outbound {
			sink.errorf(at("anomaly.direction"), r, "anomaly direction must be inbound or outbound")
		}
		if t.Score < 1 || t.Score > MaxScore {
			sink.errorf(at("anomaly.threshold"), r, "anomaly threshold must be 1 to %d", MaxScore)
		}
		for _, p := range r.AppProto {
			if p != "http" {
				sink.errorf(at("app_proto"), r, "anomaly scores are kept per HTTP transaction, but app_proto is %s", p)
			}
		}
	}
}

// checkExcept checks except:, the names of the values a condition on
// named values skips: header names for http.header_value, FIELD:NAME for
// another field of NamedFields the condition has.
func checkExcept(r *Rule, m *Match, fields []Field, sink *errorSink, at func(string) Position) {
	for _, e := range m.Except {
		k, n, qualified := splitExcept(e)
		if !qualified {
			k, n = FieldHTTPHeaderValue, e
		}
		if qualified && !m.exceptFields {
			// Written once: a set the engine runs is validated again
			// when the agent merges rules into it.
			m.exceptFields = true
		}
		switch {
		case !slices.Contains(fields, Field{Kind: k}):
			sink.errorf(at("except"), r, "except: %q skips values of %s, and the condition has no %s field (write FIELD:NAME for another named field: http.arg:password, http.cookie:_ga)", e, Field{Kind: k}, Field{Kind: k})
		case n == "":
			sink.errorf(at("except"), r, "except: %q names no value", e)
		case k == FieldHTTPHeaderValue && !validHeaderName(n):
			sink.errorf(at("except"), r, "except: %q is not a header name", n)
		case m.Count != nil && k != FieldHTTPHeaderValue:
			sink.errorf(at("except"), r, "except: %q with count: (only http.header_value values are left out of a count)", e)
		}
	}
}

// checkExempts checks a scoped exclusion on its own; Set.validate checks
// the ids against the set.
func checkExempts(r *Rule, sink *errorSink) {
	at := r.posOf("exempts")
	switch {
	case r.Action != ActionAllow:
		sink.errorf(at, r, "exempts: belongs to an allow rule (a scoped exclusion), but the action is %s", r.Action)
	case len(r.Conditions()) == 0:
		sink.errorf(at, r, "an allow rule with exempts: needs a match: saying when the rules are exempted (field: http.path, ...); to switch a rule off everywhere, give it enabled: false")
	}
	if len(r.Exempts) > MaxListLen {
		sink.errorf(at, r, "exempts has more than %d entries", MaxListLen)
	}
	for _, e := range r.Exempts {
		switch {
		case e.Lo == 0 || e.Lo > e.Hi:
			sink.errorf(at, r, "exempts: range %s is empty or holds id 0", e)
		case e.Contains(r.ID):
			sink.errorf(at, r, "exempts: %s holds the rule's own id", e)
		}
	}
}

// checkExemptIDs checks the ids of every scoped exclusion against the
// set ids (first rule of each id): a single id must name a block or
// alert rule of layer 7, a range must hold at least one rule.
func checkExemptIDs(rs []*Rule, ids map[uint32]*Rule, sink *errorSink) {
	for _, r := range rs {
		if r == nil {
			continue
		}
		for _, e := range r.Exempts {
			if e.Lo != e.Hi {
				if !slices.ContainsFunc(rs, func(x *Rule) bool { return x != nil && x != r && e.Contains(x.ID) }) {
					sink.errorf(r.posOf("exempts"), r, "exempts: no rule of the set has an id in %s", e)
				}
				continue
			}
			x := ids[e.Lo]
			switch {
			case x == nil:
				sink.errorf(r.posOf("exempts"), r, "exempts: no rule %d in the set", e.Lo)
			case x.Action == ActionAllow:
				sink.errorf(r.posOf("exempts"), r, "exempts: rule %d is an allow rule; only block and alert rules are exempted", e.Lo)
			case x.IsACL():
				sink.errorf(r.posOf("exempts"), r, "exempts: rule %d is an ACL rule (no layer-7 condition), decided before layer 7", e.Lo)
			}
		}
	}
}

// fam returns bit 1 for IPv4 and bit 2 for IPv6 prefixes in ps (0 = any).
func fam(ps []netip.Prefix) uint8 {
	var f uint8
	for _, p := range ps {
		if p.Addr().Is4() {
			f |= 1
		} else {
			f |= 2
		}
	}
	return f
}

func protoList(ps []uint8) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = ProtoString(p)
	}
	return strings.Join(s, " or ")
}

// checkMatch checks one condition of r (with regex, its regex too).
func checkMatch(r *Rule, m *Match, sink *errorSink, regex bool) {
	at := func(key string) Position { return m.posOf(r, key) }
	fields := m.AllFields()
	if len(fields) > MaxCondFields {
		sink.errorf(at("fields"), r, "fields lists more than %d fields", MaxCondFields)
	}
	stream := false
	for _, fld := range fields {
		stream = stream || fld.Stream()
		checkField(r, m, fld, sink)
	}
	checkOperator(r, m, fields, sink, at)
	checkModifiers(r, m, stream, sink, at)
	if m.Compare != nil {
		checkCompare(r, m, sink, regex)
	}
	if len(m.Except) > 0 {
		checkExcept(r, m, fields, sink, at)
	}
	if m.NameFilter() {
		checkNames(r, m, fields, sink, at)
	}
	checkPhrases(r, m, sink, at)
	checkTransforms(r, m, fields, stream, sink, at)
	if m.Validate != "" {
		if _, ok := transform.LookupValidator(m.Validate); !ok {
			sink.errorf(at("validate"), r, "unknown validator %q", m.Validate)
		}
	}
	if m.Regex != "" && regex {
		checkRegex(r, m, sink, at)
	}
}

// checkOperator checks that a condition has exactly one of regex:,
// phrases:, detect: and count:, and what validate: and detect: need.
func checkOperator(r *Rule, m *Match, fields []Field, sink *errorSink, at func(string) Position) {
	ops := 0
	for _, set := range []bool{m.Regex != "", len(m.Phrases) > 0, m.Detect != "", m.Count != nil} {
		if set {
			ops++
		}
	}
	_, regexKey := m.at["regex"]
	_, detectKey := m.at["detect"]
	_, phraseKey := m.at["phrases"]
	_, countKey := m.at["count"]
	switch {
	case regexKey && m.Regex == "":
		sink.errorf(at("regex"), r, "regex is empty")
	case ops == 0 && !detectKey && !phraseKey && !countKey:
		sink.errorf(at(""), r, "match needs regex:, phrases:, detect: or count:")
	case ops > 1:
		second := ""
		for _, k := range []string{"count", "detect", "phrases", "regex"} {
			if _, ok := m.at[k]; ok {
				second = k
				break
			}
		}
		sink.errorf(at(second), r, "match has more than one of regex:, phrases:, detect: and count:; use one per condition (a list of conditions for several)")
	}
	if m.Validate != "" && m.Regex == "" {
		sink.errorf(at("validate"), r, "validate needs a regex: whose matches it checks")
	}
	if m.Detect != "" {
		if !knownDetector(m.Detect) {
			sink.errorf(at("detect"), r, "unknown detector %q", m.Detect)
		}
		for _, fld := range fields {
			if fld.Kind != 0 && !detectFields[fld.Kind] {
				sink.errorf(at("field"), r, "detect: %s works on request fields other than http.method (http.uri, http.args, http.arg, http.header.<name>, http.body, ...), not %s", m.Detect, fld)
			}
		}
	}
}

// checkModifiers checks the options that change how a condition matches
// (flags:, not:, multi_match:) and the limits of count:.
func checkModifiers(r *Rule, m *Match, stream bool, sink *errorSink, at func(string) Position) {
	if (m.Caseless || m.DotAll || m.Multiline || m.UTF8) && m.Regex == "" && len(m.Phrases) == 0 && (m.Detect != "" || m.Count != nil) {
		sink.errorf(at("flags"), r, "flags apply to regex: and phrases:")
	}
	if (m.DotAll || m.Multiline) && len(m.Phrases) > 0 {
		sink.errorf(at("flags"), r, "phrases take only the caseless and utf8 flags")
	}
	if m.Not {
		switch {
		case m.Regex == "" && len(m.Phrases) == 0:
			sink.errorf(at("not"), r, "not: applies to regex: and phrases: (write the opposite comparison for count:)")
		case stream:
			sink.errorf(at("not"), r, "not: needs whole values; it cannot apply to stream fields (http.body, http.response_body, payload)")
		case m.Validate != "":
			sink.errorf(at("not"), r, "not: and validate: do not combine")
		}
	}
	if m.MultiMatch && (m.Regex == "" && len(m.Phrases) == 0 || len(m.Transforms) == 0) {
		sink.errorf(at("multi_match"), r, "multi_match needs a regex: or phrases: and transforms")
	}
	if m.Count != nil {
		if m.Count.Op < CountEQ || m.Count.Op > CountGE || m.Count.N < 0 {
			sink.errorf(at("count"), r, "invalid count %v", m.Count)
		}
		if stream {
			sink.errorf(at("count"), r, "count: counts the values of request and response fields; stream fields (bodies, payload) have no values to count")
		}
		if len(m.Transforms) > 0 {
			sink.errorf(at("transforms"), r, "count: counts values; transforms do not apply")
		}
	}
}

// checkPhrases checks phrases: (a Match built by hand is not bounded by
// the parser).
func checkPhrases(r *Rule, m *Match, sink *errorSink, at func(string) Position) {
	for _, p := range m.Phrases {
		if p == "" || len(p) > MaxPhraseLen {
			sink.errorf(at("phrases"), r, "phrases must be 1 to %d bytes", MaxPhraseLen)
			break
		}
		if !utf8.ValidString(p) {
			sink.errorf(at("phrases"), r, "phrase %q is not valid UTF-8 (use a regex with \\xHH escapes for bytes)", p)
			break
		}
	}
	if len(m.Phrases) > MaxPhrases {
		sink.errorf(at("phrases"), r, "phrases has more than %d entries", MaxPhrases)
	}
}

// checkTransforms checks the transform chain, on stream fields too.
func checkTransforms(r *Rule, m *Match, fields []Field, stream bool, sink *errorSink, at func(string) Position) {
	if len(m.Transforms) > transform.MaxChainLen {
		sink.errorf(at("transforms"), r, "more than %d transforms in one chain", transform.MaxChainLen)
	}
	for _, t := range m.Transforms {
		if !t.Valid() {
			sink.errorf(at("transforms"), r, "invalid transform %d", t)
		} else if t.BlockOnly() && stream {
			sink.errorf(at("transforms"), r, "transform %s needs the whole value and cannot run on stream field %s", t, streamField(fields))
		}
	}
}

// checkRegex checks that Hyperscan (or the confirmation engines) can
// build the regex, placing an error at its offset inside the regex.
func checkRegex(r *Rule, m *Match, sink *errorSink, at func(string) Position) {
	if _, rerr := planRegex(m); rerr != nil {
		pos := at("regex")
		if rerr.off >= 0 && m.src.src != nil {
			pos = m.src.pos(rerr.off)
		}
		where := ""
		if rerr.off >= 0 && !strings.Contains(rerr.msg, "at index") {
			where = fmt.Sprintf(" (at offset %d)", rerr.off)
		}
		sink.add(&Error{Pos: pos, RuleID: r.ID, Rule: r.index, Msg: "regex: " + rerr.msg + where, Err: rerr.cause})
	}
}

// checkNames checks a condition's name: and name_regex: (a Match built
// by hand gets its names lower-cased and its regex compiled here).
func checkNames(r *Rule, m *Match, fields []Field, sink *errorSink, at func(string) Position) {
	key := "name"
	if len(m.Names) == 0 {
		key = "name_regex"
	}
	for _, fld := range fields {
		if !slices.Contains(NamedFields, fld.Kind) {
			names := make([]string, len(NamedFields))
			for i, k := range NamedFields {
				names[i] = Field{Kind: k}.String()
			}
			sink.errorf(at(key), r, "%s: selects values by their name, which only %s have, not %s", key, strings.Join(names, ", "), fld)
			return
		}
	}
	if m.Count != nil {
		sink.errorf(at(key), r, "%s: does not combine with count: (counting the values of one name is not supported)", key)
	}
	if len(m.Names) > MaxNames {
		sink.errorf(at("name"), r, "name: lists more than %d names", MaxNames)
	}
	for i, n := range m.Names {
		if n == "" || len(n) > MaxValueNameLen {
			sink.errorf(at("name"), r, "name: entries must be 1 to %d bytes", MaxValueNameLen)
			break
		}
		if l := strings.ToLower(n); l != n {
			m.Names[i] = l // only when needed: the engine may be reading m
		}
	}
	if m.NameRegex != "" && m.nameRx == nil {
		re, err := compileNameRegex(m.NameRegex)
		if err != nil {
			sink.errorf(at("name_regex"), r, "%v", err)
			return
		}
		m.nameRx = re
	}
}

// checkCompare checks a condition's compare: its regex, the fields it
// captures from and the field it compares with.
func checkCompare(r *Rule, m *Match, sink *errorSink, regex bool) {
	c := m.Compare
	at := func(key string) Position {
		if p, ok := c.at[key]; ok {
			return p
		}
		return m.posOf(r, "compare")
	}
	switch {
	case m.Regex == "":
		sink.errorf(at(""), r, "compare needs a regex: whose capture it compares (not phrases:, detect: or count:)")
	case m.Not:
		sink.errorf(m.posOf(r, "not"), r, "not: and compare: do not combine; negate the comparison with compare: {not: true}")
	case m.Validate != "":
		sink.errorf(m.posOf(r, "validate"), r, "validate: and compare: do not combine")
	}
	for _, fld := range m.AllFields() {
		switch {
		case fld.Kind == 0:
		case fld.Stream():
			sink.errorf(m.posOf(r, "field"), r, "compare: needs whole values; it cannot apply to stream fields (%s)", fld)
		case c.WithGroup == 0 && (fld.Body() || fld.Response() || fld.AppProto() != "http"):
			// The other field is read from the request head being
			// inspected.
			sink.errorf(m.posOf(r, "field"), r, "compare: with a field captures from request-head fields (headers, cookies, the request line and its parts), not %s", fld)
		}
	}
	// A compare: read from a file without op: or field: was reported by
	// the loader; one built in Go (no positions) is reported here.
	built := c.at == nil
	if (c.Op != 0 || built) && (c.Op < CompareEquals || c.Op > CompareGE) {
		sink.errorf(at("op"), r, "compare op must be one of %s", strings.Join(compareOpNames[1:], ", "))
	}
	if c.Group < 0 || c.Group > MaxCompareGroup {
		sink.errorf(at("group"), r, "compare group must be 0 to %d", MaxCompareGroup)
	}
	if c.WithGroup < 0 || c.WithGroup > MaxCompareGroup {
		sink.errorf(at("with_group"), r, "compare with_group must be 1 to %d", MaxCompareGroup)
	}
	switch {
	case c.With.Kind != 0 && c.WithGroup != 0 && built:
		sink.errorf(at("field"), r, "compare has both a field and a group to compare with")
	case c.With.Kind == 0 && c.WithGroup == 0 && built:
		sink.errorf(at("field"), r, "compare has no field (or with_group)")
	case c.With.Kind != 0 && !compareWith(c.With):
		sink.errorf(at("field"), r, "compare field %s: compare: compares with one of %s", c.With, strings.Join(CompareFields, ", "))
	}
	if regex && m.Regex != "" && c.Group >= 0 && c.Group <= MaxCompareGroup {
		if err := c.prepare(m); err != nil {
			sink.errorf(at("group"), r, "compare: %v", err)
		}
	}
}

func streamField(fs []Field) Field {
	for _, f := range fs {
		if f.Stream() {
			return f
		}
	}
	return Field{}
}

// checkField checks one field of a condition against the rule's other
// conditions: its protocol, transport and app_proto.
func checkField(r *Rule, m *Match, fld Field, sink *errorSink) {
	at := func(key string) Position {
		if key == "app_proto" || key == "app_proto_not" || key == "proto" {
			return r.posOf(key)
		}
		return m.posOf(r, key)
	}
	// A field of kind 0 was reported by the loader as unknown or missing.
	if app := fld.AppProto(); fld.Kind == 0 {
	} else if app != "" {
		if len(r.AppProto) > 0 && !slices.ContainsFunc(r.AppProto, fld.FilledBy) {
			sink.errorf(at("app_proto"), r, "field %s belongs to %s, but app_proto is %s, so the rule can never match", fld, app, strings.Join(r.AppProto, ", "))
		}
		if slices.Contains(r.AppProtoNot, app) && (app != "http" || slices.Contains(r.AppProtoNot, "http2")) {
			sink.errorf(at("app_proto_not"), r, "field %s belongs to %s, but app_proto_not excludes %s, so the rule can never match", fld, app, app)
		}
		if r.Proto != 0 {
			if ts := appTransport[app]; !slices.Contains(ts, r.Proto) {
				sink.errorf(at("proto"), r, "field %s needs %s, but proto is %s", fld, protoList(ts), ProtoString(r.Proto))
			}
		}
	} else if r.Proto != 0 && r.Proto != ProtoTCP && r.Proto != ProtoUDP {
		sink.errorf(at("proto"), r, "field %s needs TCP or UDP payload, but proto is %s", fld, ProtoString(r.Proto))
	}
}

// Validate checks a set built or changed in Go (ParseFile and Parse
// already validate): every rule's values, contradictions and regex, and
// duplicate ids.
func (s *Set) Validate() error { return s.validate(true) }

func (s *Set) validate(regex bool) error {
	var sink errorSink
	ids := map[uint32]*Rule{}
	if s.ACLDefault != ActionAllow && s.ACLDefault != ActionBlock {
		sink.errorf(Position{}, nil, "acl_default must be allow or block")
	}
	if len(s.Rules) > MaxRules {
		sink.errorf(Position{}, nil, "more than %d rules in one set", MaxRules)
	}
	if s.ParanoiaLevel < 0 || s.ParanoiaLevel > MaxParanoia {
		sink.errorf(Position{}, nil, "paranoia_level must be 1 to %d", MaxParanoia)
	}
	for _, r := range s.Rules {
		if r == nil {
			sink.errorf(Position{}, nil, "nil rule")
			continue
		}
		if r.ID == 0 {
			sink.errorf(r.Pos, r, "rule has no id (ids are 1 to 4294967295)")
		} else if prev, dup := ids[r.ID]; dup {
			sink.errorf(r.posOf("id"), r, "duplicate id %d (first used at %s)", r.ID, prev.posOf("id"))
		} else {
			ids[r.ID] = r
		}
		if len(r.Src) > MaxListLen || len(r.Dst) > MaxListLen || len(r.SrcPorts) > MaxListLen || len(r.DstPorts) > MaxListLen {
			sink.errorf(r.Pos, r, "a list has more than %d entries", MaxListLen)
		}
		for _, pr := range append(append([]PortRange{}, r.SrcPorts...), r.DstPorts...) {
			if pr.Lo > pr.Hi {
				sink.errorf(r.Pos, r, "port range %d-%d is empty", pr.Lo, pr.Hi)
			}
		}
		for _, p := range append(append([]string{}, r.AppProto...), r.AppProtoNot...) {
			if !knownAppProto(p) {
				sink.errorf(r.Pos, r, "unknown application protocol %q", p)
			}
		}
		if !utf8.ValidString(r.Name) || !utf8.ValidString(r.Description) || !utf8.ValidString(r.Category) ||
			!condsUTF8(r) {
			sink.errorf(r.Pos, r, "name, description, category and regex must be valid UTF-8 (write bytes as \\xHH in a regex)")
		}
		for i, m := range r.Conditions() {
			if m == nil {
				sink.errorf(r.Pos, r, "condition %d is nil", i+1)
				continue
			}
			if i == 0 && len(r.Conds) > 0 && m != r.Match {
				sink.errorf(r.Pos, r, "Conds[0] must be Match")
			}
			for _, fld := range m.AllFields() {
				if fld.Kind == 0 || fld.info().name == "" {
					sink.errorf(r.Pos, r, "match has no valid field")
				}
			}
			if len(m.Fields) > 0 && m.Fields[0] != m.Field {
				sink.errorf(r.Pos, r, "Match.Fields[0] must be Match.Field")
			}
		}
		checkRule(r, &sink, regex)
	}
	checkExemptIDs(s.Rules, ids, &sink)
	return sink.err()
}

// condsUTF8 reports whether every regex and phrase of r is valid UTF-8.
func condsUTF8(r *Rule) bool {
	for _, m := range r.Conditions() {
		if m == nil {
			continue
		}
		if !utf8.ValidString(m.Regex) {
			return false
		}
		for _, p := range m.Phrases {
			if !utf8.ValidString(p) {
				return false
			}
		}
	}
	return true
}
