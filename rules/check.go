package rules

import (
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"
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
		if contains(r.AppProtoNot, p) {
			sink.errorf(at("app_proto_not"), r, "app_proto and app_proto_not both list %q, so the rule can never match", p)
		}
	}
	if r.Proto != 0 {
		for _, p := range r.AppProto {
			if ts, ok := appTransport[p]; ok && !containsProto(ts, r.Proto) {
				sink.errorf(at("app_proto"), r, "app_proto %s runs over %s, but proto is %s", p, protoList(ts), ProtoString(r.Proto))
			}
		}
	}
	if r.Match != nil {
		checkMatch(r, sink, regex)
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

func containsProto(ps []uint8, p uint8) bool {
	for _, v := range ps {
		if v == p {
			return true
		}
	}
	return false
}

func protoList(ps []uint8) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = ProtoString(p)
	}
	return strings.Join(s, " or ")
}

func checkMatch(r *Rule, sink *errorSink, regex bool) {
	m := r.Match
	at := r.posOf
	// The field's protocol against the rule's other conditions (a field of
	// kind 0 was reported by the loader as unknown or missing).
	if app := m.Field.AppProto(); m.Field.Kind == 0 {
	} else if app != "" {
		if len(r.AppProto) > 0 && !contains(r.AppProto, app) {
			sink.errorf(at("app_proto"), r, "field %s belongs to %s, but app_proto is %s, so the rule can never match", m.Field, app, strings.Join(r.AppProto, ", "))
		}
		if contains(r.AppProtoNot, app) {
			sink.errorf(at("app_proto_not"), r, "field %s belongs to %s, but app_proto_not excludes %s, so the rule can never match", m.Field, app, app)
		}
		if r.Proto != 0 {
			if ts := appTransport[app]; !containsProto(ts, r.Proto) {
				sink.errorf(at("proto"), r, "field %s needs %s, but proto is %s", m.Field, protoList(ts), ProtoString(r.Proto))
			}
		}
	} else if r.Proto != 0 && r.Proto != ProtoTCP && r.Proto != ProtoUDP {
		sink.errorf(at("proto"), r, "field %s needs TCP or UDP payload, but proto is %s", m.Field, ProtoString(r.Proto))
	}
	_, regexKey := r.at["match.regex"]
	_, detectKey := r.at["match.detect"]
	switch {
	case regexKey && m.Regex == "":
		sink.errorf(at("match.regex"), r, "regex is empty")
	case m.Regex == "" && m.Detect == "" && !detectKey:
		sink.errorf(at("match"), r, "match needs regex: or detect:")
	case m.Regex != "" && m.Detect != "":
		sink.errorf(at("match.detect"), r, "match has both regex: and detect:; use one per rule")
	}
	if m.Validate != "" && m.Regex == "" {
		sink.errorf(at("match.validate"), r, "validate needs a regex: whose matches it checks")
	}
	if m.Detect != "" && m.Field.Kind != 0 && !detectFields[m.Field.Kind] {
		sink.errorf(at("match.field"), r, "detect: %s works on http.uri, http.path, http.args, http.headers, http.header.<name> and http.body, not %s", m.Detect, m.Field)
	}
	if (m.Caseless || m.DotAll || m.Multiline || m.UTF8) && m.Regex == "" && m.Detect != "" {
		sink.errorf(at("match.flags"), r, "flags apply to regex:, and this match uses detect:")
	}
	if len(m.Transforms) > MaxChainLen {
		sink.errorf(at("match.transforms"), r, "more than %d transforms in one chain", MaxChainLen)
	}
	for _, t := range m.Transforms {
		if !t.valid() {
			sink.errorf(at("match.transforms"), r, "invalid transform %d", t)
		} else if t.BlockOnly() && m.Field.Stream() {
			sink.errorf(at("match.transforms"), r, "transform %s needs the whole value and cannot run on stream field %s", t, m.Field)
		}
	}
	if m.Validate != "" {
		if _, ok := LookupValidator(m.Validate); !ok {
			sink.errorf(at("match.validate"), r, "unknown validator %q", m.Validate)
		}
	}
	if m.Regex != "" && regex {
		if _, rerr := planRegex(m); rerr != nil {
			pos := at("match.regex")
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
			(r.Match != nil && !utf8.ValidString(r.Match.Regex)) {
			sink.errorf(r.Pos, r, "name, description, category and regex must be valid UTF-8 (write bytes as \\xHH in a regex)")
		}
		if r.Match != nil {
			if r.Match.Field.Kind == 0 || r.Match.Field.info().name == "" {
				sink.errorf(r.Pos, r, "match has no valid field")
			}
			if r.Match.Detect != "" && r.Match.Detect != DetectSQLi && r.Match.Detect != DetectXSS {
				sink.errorf(r.Pos, r, "unknown detector %q", r.Match.Detect)
			}
		}
		checkRule(r, &sink, regex)
	}
	return sink.err()
}
