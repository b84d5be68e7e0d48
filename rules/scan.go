package rules

import (
	"errors"
	"fmt"

	"github.com/flier/gohs/hyperscan"
)

// ScanBlockPatterns scans one transformed value with a block-mode group
// and calls fn with the id of each pattern whose hit is confirmed, once per
// pattern (for rules of several conditions or negated ones, a hit is only
// one condition). s must be valid for the group's database
// (Compiled.NewScratch).
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

// OpenStreamPatterns starts a stream; fn is called with the id of each
// pattern whose hit is confirmed, once per pattern. s must be valid for the
// group's database and must not be used concurrently while the stream
// scans.
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
