// Package ruletest is the test support of the rule language: the default
// pack compiled once per test binary (DefaultPack), and a reference
// evaluation of a compiled set over whole field values (Eval, EvalValues),
// the way tests of the rule language and of the Core Rule Set translation
// check what a rule catches without running the DPI engine, which drives
// the groups per packet itself.
package ruletest

import (
	"errors"

	"github.com/flier/gohs/hyperscan"

	"github.com/deepwall/deepwall/rules"
	"github.com/deepwall/deepwall/rules/transform"
)

// Fields holds the inspected parts of one request/response, by field; a
// FieldHTTPHeader entry has the lower-case header name in Field.Name.
type Fields map[rules.Field][]byte

// Value is one value of a field; Name is the header, argument or cookie
// name it belongs to, where the field has names (except: reads it).
type Value struct {
	Name, Data []byte
}

// Values holds every value of each inspected field of one transaction.
type Values map[rules.Field][]Value

// Eval runs every group and detect rule of c over whole field values
// (stream fields in one piece), applying each group's transform chain,
// and returns the rules whose match hits, in c.L7 order. It ignores the
// rules' flow conditions (proto, addresses, ports, app_proto) and the
// threshold rules.
func Eval(c *rules.Compiled, fields Fields, s *hyperscan.Scratch) ([]*rules.Rule, error) {
	v := make(Values, len(fields))
	for f, b := range fields {
		v[f] = []Value{{Data: b}}
	}
	return EvalValues(c, v, s)
}

// EvalValues is Eval over fields with several values each: each value is
// matched on its own, count: conditions count them, and a rule of several
// conditions hits when every one held for some value.
func EvalValues(c *rules.Compiled, fields Values, s *hyperscan.Scratch) ([]*rules.Rule, error) {
	held := map[*rules.Rule]uint32{}
	hold := func(r *rules.Rule, cond int) { held[r] |= 1 << cond }
	var t transform.Transformer
	for _, g := range c.Groups {
		vals := fields[g.Field]
		if g.Stream {
			for _, v := range vals {
				st := transform.NewStream(g.Transforms)
				gs, err := g.OpenStreamPatterns(s, func(id int) { hold(g.Rules[id], g.Patterns[id].Cond) })
				if err != nil {
					return nil, err
				}
				werr := gs.Write(st.Write(v.Data))
				if werr == nil {
					werr = gs.Write(st.Close())
				}
				if err := errors.Join(werr, gs.Close()); err != nil {
					return nil, err
				}
			}
			continue
		}
		for _, v := range vals {
			fired := make([]bool, len(g.Rules))
			err := g.ScanBlockPatterns(t.Apply(g.Transforms, v.Data), s, func(id int) { fired[id] = true })
			if err != nil {
				return nil, err
			}
			for id, r := range g.Rules {
				p := &g.Patterns[id]
				if fired[id] == p.Not {
					continue
				}
				if v.Name != nil && g.Cond(id).Excluded(g.Field.Kind, v.Name) || !g.Cond(id).Selects(v.Name) {
					continue
				}
				hold(r, p.Cond)
			}
		}
	}
	var d rules.Detector
	for _, ref := range c.DetectConds {
		for _, v := range fields[ref.Field] {
			if v.Name != nil && ref.Match().Excluded(ref.Field.Kind, v.Name) || !ref.Match().Selects(v.Name) {
				continue
			}
			if h, _ := d.MatchField(ref.Match(), ref.Field, v.Data); h {
				hold(ref.Rule, ref.Cond)
				break
			}
		}
	}
	for _, ref := range c.CountConds {
		n := 0
		for _, v := range fields[ref.Field] {
			if ref.Field.Kind != rules.FieldHTTPHeaderValue || !ref.Match().Excluded(ref.Field.Kind, v.Name) {
				n++
			}
		}
		if ref.Match().Count.Holds(n) {
			hold(ref.Rule, ref.Cond)
		}
	}
	out := make([]*rules.Rule, 0, len(held))
	for _, r := range c.L7 {
		if n := len(r.Conditions()); n > 0 && held[r] == 1<<n-1 {
			out = append(out, r)
		}
	}
	return out, nil
}
