package rules

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"net/netip"
	"strconv"

	"gopkg.in/yaml.v3"
)

// Canonical renders the set as normalised YAML: includes expanded, every
// rule with its keys in one order, defaults written out, addresses and
// names in canonical form, comments dropped. Parsing it gives back an
// equal set, and two files that mean the same rules give the same bytes.
func (s *Set) Canonical() []byte {
	root := &yaml.Node{Kind: yaml.MappingNode}
	def := "allow"
	if s.ACLDefault == ActionBlock {
		def = "block"
	}
	addKV(root, "acl_default", str(def))
	if s.Level() > 1 {
		addKV(root, "paranoia_level", intNode(s.Level()))
	}
	rules := &yaml.Node{Kind: yaml.SequenceNode}
	for _, r := range s.Rules {
		rules.Content = append(rules.Content, canonicalRule(r))
	}
	if len(s.Rules) == 0 {
		rules.Style = yaml.FlowStyle
	}
	addKV(root, "rules", rules)
	doc := &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{root}}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		// yaml.v3 encodes any tree of scalars; an error here is a bug.
		panic("rules: canonical yaml: " + err.Error())
	}
	_ = enc.Close()
	return b.Bytes()
}

// Hash is the SHA-256 of the canonical form: it identifies what the rules
// say, not how the file was written.
func (s *Set) Hash() [32]byte { return sha256.Sum256(s.Canonical()) }

func canonicalRule(r *Rule) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode}
	addKV(n, "id", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatUint(uint64(r.ID), 10)})
	if r.Name != "" {
		addKV(n, "name", str(r.Name))
	}
	if r.Description != "" {
		addKV(n, "description", str(r.Description))
	}
	addKV(n, "action", str(r.Action.String()))
	sev := r.Severity
	if sev == 0 {
		sev = SeverityMedium
	}
	addKV(n, "severity", str(sev.String()))
	if r.Category != "" {
		addKV(n, "category", str(r.Category))
	}
	if r.Disabled {
		addKV(n, "enabled", boolNode(false))
	}
	if r.Proto != 0 {
		addKV(n, "proto", str(ProtoString(r.Proto)))
	}
	addPrefixes(n, "src", r.Src, r.SrcContainers)
	addPrefixes(n, "dst", r.Dst, r.DstContainers)
	addPorts(n, "src_port", r.SrcPorts)
	addPorts(n, "dst_port", r.DstPorts)
	addStrings(n, "app_proto", r.AppProto)
	addStrings(n, "app_proto_not", r.AppProtoNot)
	if r.Score > 0 {
		addKV(n, "score", intNode(r.Score))
	}
	if r.Paranoia > 1 {
		addKV(n, "paranoia", intNode(r.Paranoia))
	}
	if t := r.Anomaly; t != nil {
		an := &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
		addKV(an, "direction", str(t.Direction.String()))
		addKV(an, "threshold", intNode(t.Score))
		addKV(n, "anomaly", an)
	}
	addRanges(n, "exempts", r.Exempts, func(e IDRange) bool { return e.Lo == e.Hi })
	switch conds := r.Conditions(); len(conds) {
	case 0:
	case 1:
		addKV(n, "match", canonicalMatch(conds[0]))
	default:
		seq := &yaml.Node{Kind: yaml.SequenceNode}
		for _, m := range conds {
			seq.Content = append(seq.Content, canonicalMatch(m))
		}
		addKV(n, "match", seq)
	}
	return n
}

func canonicalMatch(m *Match) *yaml.Node {
	mn := &yaml.Node{Kind: yaml.MappingNode}
	if fs := m.AllFields(); len(fs) > 1 {
		names := make([]string, len(fs))
		for i, f := range fs {
			names[i] = f.String()
		}
		addStrings(mn, "fields", names)
	} else {
		addKV(mn, "field", str(m.Field.String()))
	}
	if m.Regex != "" {
		addKV(mn, "regex", str(m.Regex))
	}
	if len(m.Phrases) > 0 {
		seq := &yaml.Node{Kind: yaml.SequenceNode}
		for _, p := range m.Phrases {
			seq.Content = append(seq.Content, str(p))
		}
		addKV(mn, "phrases", seq)
	}
	if m.Detect != "" {
		addKV(mn, "detect", str(m.Detect))
	}
	if m.Count != nil {
		addKV(mn, "count", str(m.Count.String()))
	}
	if m.Not {
		addKV(mn, "not", boolNode(true))
	}
	var flags []string
	if m.Caseless {
		flags = append(flags, "caseless")
	}
	if m.DotAll {
		flags = append(flags, "dotall")
	}
	if m.Multiline {
		flags = append(flags, "multiline")
	}
	if m.UTF8 {
		flags = append(flags, "utf8")
	}
	addStrings(mn, "flags", flags)
	ts := make([]string, len(m.Transforms))
	for i, t := range m.Transforms {
		ts[i] = t.String()
	}
	addStrings(mn, "transforms", ts)
	if m.MultiMatch {
		addKV(mn, "multi_match", boolNode(true))
	}
	if m.Validate != "" {
		addKV(mn, "validate", str(m.Validate))
	}
	addStrings(mn, "except", m.Except)
	addStrings(mn, "name", m.Names)
	if m.NameRegex != "" {
		addKV(mn, "name_regex", str(m.NameRegex))
	}
	if c := m.Compare; c != nil {
		cn := &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
		addKV(cn, "group", intNode(c.Group))
		addKV(cn, "op", str(c.Op.String()))
		if c.WithGroup != 0 {
			addKV(cn, "with_group", intNode(c.WithGroup))
		} else {
			addKV(cn, "field", str(c.With.String()))
		}
		if c.Not {
			addKV(cn, "not", boolNode(true))
		}
		addKV(mn, "compare", cn)
	}
	return mn
}

func intNode(v int) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(v)}
}

func boolNode(v bool) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(v)}
}

func str(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }

func addKV(m *yaml.Node, k string, v *yaml.Node) {
	m.Content = append(m.Content, str(k), v)
}

func addStrings(m *yaml.Node, k string, vs []string) {
	if len(vs) == 0 {
		return
	}
	seq := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
	for _, v := range vs {
		seq.Content = append(seq.Content, str(v))
	}
	addKV(m, k, seq)
}

func addPrefixes(m *yaml.Node, k string, ps []netip.Prefix, containers []string) {
	vs := make([]string, len(ps), len(ps)+len(containers))
	for i, p := range ps {
		if p.IsSingleIP() {
			vs[i] = p.Addr().String()
		} else {
			vs[i] = p.String()
		}
	}
	addStrings(m, k, append(vs, selectorStrings(containers)...))
}

func addPorts(m *yaml.Node, k string, ps []PortRange) {
	addRanges(m, k, ps, func(p PortRange) bool { return p.Lo == p.Hi })
}

// addRanges writes a flow list of ranges, single values as numbers and
// ranges as "lo-hi" strings.
func addRanges[R fmt.Stringer](m *yaml.Node, k string, rs []R, single func(R) bool) {
	if len(rs) == 0 {
		return
	}
	seq := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
	for _, r := range rs {
		n := str(r.String())
		if single(r) {
			n.Tag = "!!int"
		}
		seq.Content = append(seq.Content, n)
	}
	addKV(m, k, seq)
}
