package rules

import (
	"errors"
	"fmt"

	"github.com/flier/gohs/hyperscan"

	"github.com/deepwall/deepwall/rules/transform"
)

// ScanBlock scans one transformed value with a block-mode group and calls
// fn once for each rule whose hit is confirmed (for rules of several
// conditions or negated ones, a hit is only one condition: see
// ScanBlockPatterns). s must be valid for the group's database
// (Compiled.NewScratch).
func (g *Group) ScanBlock(data []byte, s *hyperscan.Scratch, fn func(*Rule)) error {
	var seen map[*Rule]bool
	return g.ScanBlockPatterns(data, s, func(id int) {
		r := g.Rules[id]
		if seen == nil {
			seen = map[*Rule]bool{}
		}
		if !seen[r] {
			seen[r] = true
			fn(r)
		}
	})
}

// ScanBlockPatterns is ScanBlock reporting the id of each pattern whose
// hit is confirmed, once per pattern.
func (g *Group) ScanBlockPatterns(data []byte, s *hyperscan.Scratch, fn func(id int)) error {
	if g.Block == nil {
		return errors.New("scan: group has no block database")
	}
	if len(data) == 0 {
		return nil // no pattern matches the empty string
	}
	var seen []bool
	var tries []int
	handler := func(id uint, from, to uint64, _ uint, _ any) error {
		if int(id) >= len(g.Rules) {
			return nil
		}
		if seen == nil {
			seen, tries = make([]bool, len(g.Rules)), make([]int, len(g.Rules))
		}
		if seen[id] {
			return nil
		}
		p := &g.Patterns[id]
		if p.NeedsConfirm() {
			if tries[id] >= p.Attempts() {
				return nil
			}
			tries[id]++
			start := p.ConfirmStart(from, to)
			if !p.SOM {
				start = 0 // the whole value is at hand
			}
			if to > uint64(len(data)) || start > to || !p.Confirm(data[start:to]) {
				return nil
			}
		}
		seen[id] = true
		fn(int(id))
		return nil
	}
	if err := g.Block.Scan(data, s, handler, nil); err != nil {
		return fmt.Errorf("scan %s: %w", groupKey(g.Field, g.Transforms), err)
	}
	return nil
}

// GroupStream scans one direction of one flow with a stream-mode group. It
// keeps the last bytes of the stream that confirmations need (up to the
// largest confirmation window of the group's patterns), so a pattern split
// over several writes is matched and confirmed.
type GroupStream struct {
	g      *Group
	st     hyperscan.Stream
	fn     func(id int)
	seen   []bool
	tries  []int  // confirmations tried per pattern
	hist   []byte // the stream's last len(hist) bytes before the current write
	keep   int    // history to keep
	off    uint64 // stream offset of the current write's first byte
	cur    []byte // the current write
	joined []byte
}

// OpenStream starts a stream; fn is called once per rule whose hit is
// confirmed. s must be valid for the group's database and must not be used
// concurrently while the stream scans.
func (g *Group) OpenStream(s *hyperscan.Scratch, fn func(*Rule)) (*GroupStream, error) {
	seen := map[*Rule]bool{}
	return g.OpenStreamPatterns(s, func(id int) {
		if r := g.Rules[id]; !seen[r] {
			seen[r] = true
			fn(r)
		}
	})
}

// OpenStreamPatterns is OpenStream reporting pattern ids, once per
// pattern.
func (g *Group) OpenStreamPatterns(s *hyperscan.Scratch, fn func(id int)) (*GroupStream, error) {
	if g.Streaming == nil {
		return nil, errors.New("scan: group has no stream database")
	}
	gs := &GroupStream{g: g, fn: fn, seen: make([]bool, len(g.Rules)), tries: make([]int, len(g.Rules))}
	for i := range g.Patterns {
		p := &g.Patterns[i]
		if p.NeedsConfirm() {
			gs.keep = max(gs.keep, p.Window())
		}
	}
	st, err := g.Streaming.Open(0, s, gs.handle, nil)
	if err != nil {
		return nil, fmt.Errorf("open stream for %s: %w", groupKey(g.Field, g.Transforms), err)
	}
	gs.st = st
	return gs, nil
}

func (gs *GroupStream) handle(id uint, from, to uint64, _ uint, _ any) error {
	if int(id) >= len(gs.g.Rules) || gs.seen[id] {
		return nil
	}
	p := &gs.g.Patterns[id]
	if p.NeedsConfirm() {
		if gs.tries[id] >= p.Attempts() {
			return nil
		}
		gs.tries[id]++
		text, ok := gs.text(p.ConfirmStart(from, to), to)
		if !ok || !p.Confirm(text) {
			return nil
		}
	}
	gs.seen[id] = true
	gs.fn(int(id))
	return nil
}

// text returns the stream's bytes [start, end) from the history and the
// current write, or false when they are no longer kept.
func (gs *GroupStream) text(start, end uint64) ([]byte, bool) {
	histStart := gs.off - uint64(len(gs.hist))
	curEnd := gs.off + uint64(len(gs.cur))
	if start < histStart || end > curEnd || start > end {
		return nil, false
	}
	if start >= gs.off {
		return gs.cur[start-gs.off : end-gs.off], true
	}
	if end <= gs.off {
		return gs.hist[start-histStart : end-histStart], true
	}
	gs.joined = append(append(gs.joined[:0], gs.hist[start-histStart:]...), gs.cur[:end-gs.off]...)
	return gs.joined, true
}

// Write scans the next piece of the stream.
func (gs *GroupStream) Write(chunk []byte) error {
	if len(chunk) == 0 {
		return nil
	}
	gs.cur = chunk
	err := gs.st.Scan(chunk)
	gs.cur = nil
	if gs.keep > 0 {
		// Keep the last keep bytes of history+chunk.
		if len(chunk) >= gs.keep {
			gs.hist = append(gs.hist[:0], chunk[len(chunk)-gs.keep:]...)
		} else {
			drop := max(0, len(gs.hist)+len(chunk)-gs.keep)
			gs.hist = append(gs.hist[:copy(gs.hist, gs.hist[drop:])], chunk...)
		}
	}
	gs.off += uint64(len(chunk))
	if err != nil {
		return fmt.Errorf("scan %s: %w", groupKey(gs.g.Field, gs.g.Transforms), err)
	}
	return nil
}

// Close ends the stream (patterns anchored at the end of data report now).
func (gs *GroupStream) Close() error {
	if gs.st == nil {
		return nil
	}
	err := gs.st.Close()
	gs.st = nil
	if err != nil {
		return fmt.Errorf("close stream of %s: %w", groupKey(gs.g.Field, gs.g.Transforms), err)
	}
	return nil
}

// Fields holds the inspected parts of one request/response, by field; a
// FieldHTTPHeader entry has the lower-case header name in Field.Name.
type Fields map[Field][]byte

// Value is one value of a field; Name is the header, argument or cookie
// name it belongs to, where the field has names (except: reads it).
type Value struct {
	Name, Data []byte
}

// Values holds every value of each inspected field of one transaction.
type Values map[Field][]Value

// Eval runs every group and detect rule of c over whole field values
// (stream fields in one piece), applying each group's transform chain,
// and returns the rules whose match hits, in c.L7 order. It ignores the
// rules' flow conditions (proto, addresses, ports, app_proto) and the
// threshold rules (see AnomalyScore). It is meant for offline inspection
// and tests; the DPI engine drives the groups per packet itself.
func (c *Compiled) Eval(fields Fields, s *hyperscan.Scratch) ([]*Rule, error) {
	v := make(Values, len(fields))
	for f, b := range fields {
		v[f] = []Value{{Data: b}}
	}
	return c.EvalValues(v, s)
}

// EvalValues is Eval over fields with several values each: each value is
// matched on its own, count: conditions count them, and a rule of several
// conditions hits when every one held for some value.
func (c *Compiled) EvalValues(fields Values, s *hyperscan.Scratch) ([]*Rule, error) {
	held := map[*Rule]uint32{}
	hold := func(r *Rule, cond int) { held[r] |= 1 << cond }
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
				if g.Field.Kind == FieldHTTPHeaderValue && g.Cond(id).Excluded(v.Name) || !g.Cond(id).Selects(v.Name) {
					continue
				}
				hold(r, p.Cond)
			}
		}
	}
	var d Detector
	for _, ref := range c.DetectConds {
		for _, v := range fields[ref.Field] {
			if ref.Field.Kind == FieldHTTPHeaderValue && ref.Match().Excluded(v.Name) || !ref.Match().Selects(v.Name) {
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
			if ref.Field.Kind != FieldHTTPHeaderValue || !ref.Match().Excluded(v.Name) {
				n++
			}
		}
		if ref.Match().Count.Holds(n) {
			hold(ref.Rule, ref.Cond)
		}
	}
	out := make([]*Rule, 0, len(held))
	for _, r := range c.L7 {
		if n := len(r.Conditions()); n > 0 && held[r] == 1<<n-1 {
			out = append(out, r)
		}
	}
	return out, nil
}

// AnomalyScore sums the scores of the rules in hits that count toward
// direction d (Rule.Outbound), each rule once.
func AnomalyScore(hits []*Rule, d Direction) int {
	score := 0
	for i, r := range hits {
		if r.Score == 0 || r.Outbound() != (d == Outbound) {
			continue
		}
		dup := false
		for _, p := range hits[:i] {
			dup = dup || p == r
		}
		if !dup {
			score += r.Score
		}
	}
	return score
}
