package rules

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/dlclark/regexp2"
	"github.com/flier/gohs/hyperscan"

	"github.com/deepwall/deepwall/internal/ascii"
)

// Bounds on confirming Hyperscan hits in Go.
const (
	// MaxConfirmWindow is the most bytes before a hit's end that a
	// confirmation looks at in stream mode (a longer match is missed).
	MaxConfirmWindow = 4096
	// MaxConfirmMatches bounds the candidate matches one confirmation
	// runs a validator on.
	MaxConfirmMatches = 64
	// MaxConfirmAttempts bounds the regex confirmations of one pattern in
	// one scanned value or stream: a flood of near misses must not turn
	// each into a regex run over the window. Past it the pattern's hits
	// are dropped for that value or stream.
	MaxConfirmAttempts = 64
	// MaxBacktrackAttempts is MaxConfirmAttempts for patterns confirmed
	// by the backtracking engine (back-references, lookaround), each run
	// bounded by confirmTimeout: at most 16 × 5 ms per value or stream.
	MaxBacktrackAttempts = 16
	// MaxValidateAttempts bounds the validator runs of one SOM pattern in
	// one value or stream (each costs the length of one match).
	MaxValidateAttempts = 4096
	// confirmTimeout bounds a backtracking (regexp2) confirmation.
	confirmTimeout = 5 * time.Millisecond
)

// confirmer finds the real matches of a pattern in bytes Hyperscan hit.
type confirmer interface {
	// find calls fn for successive matches in b (at most limit) until fn
	// returns true, and reports whether it did.
	find(b []byte, limit int, fn func(match []byte) bool) bool
}

// newConfirmer compiles m.Regex for confirmation: with Go's regexp (linear
// time) when it accepts the syntax, else with regexp2, a backtracking
// engine that has back-references and lookaround, bounded by
// confirmTimeout and the confirmation window.
func newConfirmer(m *Match) (confirmer, error) {
	if !m.UTF8 && hasHighByteEscape(m.Regex) {
		return nil, errors.New(`the Go confirmation engines read UTF-8 and cannot match byte escapes above \x7f without flags: [utf8]`)
	}
	var prefix strings.Builder
	if m.Caseless || m.DotAll || m.Multiline {
		prefix.WriteString("(?")
		if m.Caseless {
			prefix.WriteByte('i')
		}
		if m.DotAll {
			prefix.WriteByte('s')
		}
		if m.Multiline {
			prefix.WriteByte('m')
		}
		prefix.WriteByte(')')
	}
	if re, err := regexp.Compile(prefix.String() + m.Regex); err == nil {
		return goConfirmer{re}, nil
	}
	re, err := regexp2.Compile(m.Regex, modeFlags[regexp2.RegexOptions](m, regexp2.IgnoreCase, regexp2.Singleline, regexp2.Multiline))
	if err != nil {
		return nil, fmt.Errorf("neither Go's regexp nor regexp2 accept it (%v)", err)
	}
	re.MatchTimeout = confirmTimeout
	return re2Confirmer{re}, nil
}

// modeFlags gives m's caseless, dotall and multiline flags in an
// engine's own bits.
func modeFlags[F hyperscan.CompileFlag | regexp2.RegexOptions](m *Match, caseless, dotAll, multiline F) F {
	var f F
	if m.Caseless {
		f |= caseless
	}
	if m.DotAll {
		f |= dotAll
	}
	if m.Multiline {
		f |= multiline
	}
	return f
}

// hasHighByteEscape reports \xHH escapes above 0x7f and \x{...} escapes.
func hasHighByteEscape(expr string) bool {
	for i := 0; i+2 < len(expr); i++ {
		if expr[i] != '\\' {
			continue
		}
		if expr[i+1] == 'x' && expr[i+2] == '{' {
			return true
		}
		if expr[i+1] == 'x' && i+3 < len(expr) {
			if b, ok := ascii.UnhexPair(expr[i+2], expr[i+3]); ok && b >= 0x80 {
				return true
			}
		}
		i++ // skip the escaped character
	}
	return false
}

type goConfirmer struct{ re *regexp.Regexp }

func (c goConfirmer) find(b []byte, limit int, fn func([]byte) bool) bool {
	off := 0
	for n := 0; n < limit && off <= len(b); n++ {
		loc := c.re.FindIndex(b[off:])
		if loc == nil {
			return false
		}
		if fn(b[off+loc[0] : off+loc[1]]) {
			return true
		}
		if loc[1] == loc[0] {
			loc[1]++
		}
		off += loc[1]
	}
	return false
}

type re2Confirmer struct{ re *regexp2.Regexp }

func (c re2Confirmer) find(b []byte, limit int, fn func([]byte) bool) bool {
	// regexp2 works on runes; invalid UTF-8 bytes become U+FFFD.
	m, err := c.re.FindStringMatch(string(b))
	for n := 0; err == nil && m != nil && n < limit; n++ {
		if fn([]byte(m.String())) {
			return true
		}
		m, err = c.re.FindNextMatch(m)
	}
	return false // no match, or the timeout ran out: not confirmed
}

// toPrefilter turns p, which Hyperscan cannot build exactly (too large),
// into a prefilter: an exact suffix of it (suffixFilter) confirmed by Go's
// regexp or regexp2, else Hyperscan's approximation confirmed by an exact
// Hyperscan database of p split in parts (hsConfirmer) or by Go. It
// reports false, changing nothing, when none works.
func (p *Pattern) toPrefilter(m *Match, mode hyperscan.ModeFlag) bool {
	flags := p.Flags &^ (hyperscan.SingleMatch | hyperscan.SomLeftMost)
	if f := suffixFilter(p.expr, flags, mode); f != "" && p.validate == nil {
		// A suffix of the pattern, built exactly: its matches end where
		// the pattern's do, so a confirmation over the bytes before each
		// hit finds every match, and it hits far less often than
		// Hyperscan's own approximation (on the CRS command lists: only
		// values holding a command name, not every value).
		cf, err := newConfirmer(m)
		if err != nil {
			return false
		}
		p.Prefilter, p.confirm, p.SOM, p.Flags, p.expr = true, cf, false, flags, f
		return true // MaxWidth stays the pattern's: the window a confirmation needs
	}
	info, err := hyperscan.NewPattern(p.expr, flags|hyperscan.PrefilterMode).Info()
	if err != nil || info.MinWidth == 0 {
		return false
	}
	cf, err := prefilterConfirmer(m)
	if err != nil {
		return false
	}
	p.Prefilter, p.confirm = true, cf
	p.Flags = flags | hyperscan.PrefilterMode
	p.SOM = false
	p.MaxWidth = uint32(min(info.MaxWidth, unbounded))
	return true
}

// suffixFilter returns a suffix of expr's top-level concatenation, from
// its widest group on, with the options set before it, when Hyperscan
// builds it exactly in mode (memoised), else "". A match of expr ends
// with a match of the suffix at the same offset, so the suffix is an
// exact prefilter whose hits end where expr's matches can.
func suffixFilter(expr string, flags hyperscan.CompileFlag, mode hyperscan.ModeFlag) string {
	groups, err := parseGroups(expr)
	if err != nil || len(groups[0].alts) != 1 {
		return ""
	}
	top := groups[0]
	var widest *reGroup
	for _, g := range groups[1:] {
		if g.parent == top && (widest == nil || g.end-g.start > widest.end-widest.start) {
			widest = g
		}
	}
	if widest == nil || widest.open == 0 {
		return "" // nothing to cut
	}
	var f strings.Builder
	for _, o := range top.opts {
		if o[0] < widest.open {
			f.WriteString(expr[o[0]:o[1]])
		}
	}
	f.WriteString(expr[widest.open:])
	suffix := f.String()
	key := fmt.Sprintf("%d|%d|%s", mode, flags, suffix)
	if ok, known := splitConfirmers.suffixBuilds(key); known {
		if ok {
			return suffix
		}
		return ""
	}
	ok := false
	if info, err := hyperscan.NewPattern(suffix, flags).Info(); err == nil && info.MinWidth > 0 {
		db, err := (&hyperscan.DatabaseBuilder{Patterns: hyperscan.Patterns{hyperscan.NewPattern(suffix, flags)}, Mode: mode}).Build()
		if ok = err == nil; ok {
			db.Close()
		}
	}
	splitConfirmers.setSuffixBuilds(key, ok)
	if ok {
		return suffix
	}
	return ""
}

// prefilterConfirmer returns the confirmer of a prefilter pattern: the
// database of its parts when Hyperscan accepts its syntax (so it is a
// prefilter for its size) and no validator needs the match itself, else
// Go's regexp or regexp2. UnmarshalCompiled uses it too.
func prefilterConfirmer(m *Match) (confirmer, error) {
	if m.Validate == "" {
		if _, err := hyperscan.NewPattern(m.Regex, hsFlags(m)).Info(); err == nil {
			if hc := splitConfirmers.acquire(m.Regex, hsFlags(m)); hc != nil {
				return hc, nil
			}
		}
	}
	return newConfirmer(m)
}

// releaseConfirmers gives back the group's Hyperscan confirmers.
func (g *Group) releaseConfirmers() {
	for i := range g.Patterns {
		if hc, ok := g.Patterns[i].confirm.(*hsConfirmer); ok {
			splitConfirmers.release(hc)
			g.Patterns[i].confirm = nil
		}
	}
}

// hsConfirmer confirms the prefilter hits of a pattern too large for
// Hyperscan with an exact block database of its parts (splitRegex), all
// with one id and HS_FLAG_SINGLEMATCH: a scan of the value costs
// microseconds where Go's regexp of a CRS command list costs
// milliseconds. Shared by every pattern with the same expression and
// flags (splitConfirmers).
type hsConfirmer struct {
	key  string
	db   hyperscan.BlockDatabase
	free chan *hyperscan.Scratch // scratches not in use, at most maxConfirmScratch
	refs int                     // patterns holding it; guarded by splitConfirmers.mu
}

// maxConfirmScratch bounds the idle scratches an hsConfirmer keeps (one
// per worker confirming at the same time).
const maxConfirmScratch = 16

func (c *hsConfirmer) find(b []byte, _ int, fn func([]byte) bool) bool {
	if len(b) == 0 {
		return false // the parts never match the empty string (prefilters must not)
	}
	var s *hyperscan.Scratch
	select {
	case s = <-c.free:
	default:
		var err error
		if s, err = hyperscan.NewScratch(c.db); err != nil {
			return false
		}
	}
	end := -1
	err := c.db.Scan(b, s, func(_ uint, _, to uint64, _ uint, _ any) error {
		end = int(to)
		return nil
	}, nil)
	select {
	case c.free <- s:
	default:
		s.Free()
	}
	return err == nil && end >= 0 && end <= len(b) && fn(b[:end])
}

func (c *hsConfirmer) close() {
	for {
		select {
		case s := <-c.free:
			s.Free()
		default:
			c.db.Close()
			return
		}
	}
}

// splitConfirmers holds the hsConfirmers in use, and remembers which
// expressions Hyperscan found too large and how they split, so that the
// same CRS rule on several fields, or compiled again after a rule change,
// costs one split (trial builds take seconds) and one database.
var splitConfirmers = &confirmRegistry{
	live:     map[string]*hsConfirmer{},
	parts:    map[string][]string{},
	large:    map[string]bool{},
	suffixes: map[string]bool{},
}

type confirmRegistry struct {
	mu    sync.Mutex
	live  map[string]*hsConfirmer
	parts map[string][]string // by flags and expression; nil: does not split (bounded by maxSplitMemo)
	large map[string]bool     // by mode, flags and expression (bounded by maxSplitMemo)
	// suffixes: whether suffixFilter's suffix builds, by mode, flags and
	// suffix (bounded by maxSplitMemo).
	suffixes map[string]bool
}

func (r *confirmRegistry) suffixBuilds(key string) (ok, known bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ok, known = r.suffixes[key]
	return ok, known
}

func (r *confirmRegistry) setSuffixBuilds(key string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.suffixes) >= maxSplitMemo {
		clear(r.suffixes)
	}
	r.suffixes[key] = ok
}

func (r *confirmRegistry) markTooLarge(mode hyperscan.ModeFlag, flags hyperscan.CompileFlag, expr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.large) >= maxSplitMemo {
		clear(r.large)
	}
	r.large[fmt.Sprintf("%d|%d|%s", mode, flags, expr)] = true
}

func (r *confirmRegistry) tooLarge(mode hyperscan.ModeFlag, flags hyperscan.CompileFlag, expr string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.large[fmt.Sprintf("%d|%d|%s", mode, flags, expr)]
}

// acquire returns the confirmer of expr with the given flags (caseless,
// dotall, multiline, utf8), building it if no pattern holds it, or nil
// when expr does not split into parts Hyperscan builds. The lock is held
// while splitting: compiles of the same expression wait for the first.
func (r *confirmRegistry) acquire(expr string, flags hyperscan.CompileFlag) *hsConfirmer {
	flags = flags&(hyperscan.Caseless|hyperscan.DotAll|hyperscan.MultiLine|hyperscan.Utf8Mode|hyperscan.UnicodeProperty) | hyperscan.SingleMatch
	key := fmt.Sprintf("%d|%s", flags, expr)
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.live[key]; c != nil {
		c.refs++
		return c
	}
	parts, known := r.parts[key]
	if !known {
		parts = splitRegex(expr, func(e string) bool {
			db, err := hyperscan.NewBlockDatabase(hyperscan.NewPattern(e, flags))
			if err != nil {
				return false
			}
			db.Close()
			return true
		})
		if len(r.parts) >= maxSplitMemo {
			clear(r.parts)
		}
		r.parts[key] = parts
	}
	if parts == nil {
		return nil
	}
	pats := make(hyperscan.Patterns, len(parts))
	for i, e := range parts {
		pats[i] = hyperscan.NewPattern(e, flags)
	}
	db, err := hyperscan.NewBlockDatabase(pats...)
	if err != nil {
		return nil
	}
	c := &hsConfirmer{key: key, db: db, free: make(chan *hyperscan.Scratch, maxConfirmScratch), refs: 1}
	r.live[key] = c
	return c
}

// release drops one hold on c, closing it with the last.
func (r *confirmRegistry) release(c *hsConfirmer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c.refs--; c.refs > 0 {
		return
	}
	if r.live[c.key] == c {
		delete(r.live, c.key)
	}
	c.close()
}
