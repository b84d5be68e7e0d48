package rules

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"regexp/syntax"
	"strconv"
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

// regexPlan is how one rule's regex goes into Hyperscan.
type regexPlan struct {
	flags     hyperscan.CompileFlag // caseless, dotall, multiline, utf8
	prefilter bool                  // Hyperscan refuses the exact pattern: compile an approximation and confirm
	maxWidth  uint                  // longest match, math.MaxUint32 when unbounded
	empty     bool                  // matches the empty string (allowed for negated conditions only)
}

// regexError is a problem with a regex: off is the byte offset in the
// pattern it refers to, -1 when unknown.
type regexError struct {
	off   int
	msg   string
	cause error
}

func hsFlags(m *Match) hyperscan.CompileFlag {
	var f hyperscan.CompileFlag
	if m.Caseless {
		f |= hyperscan.Caseless
	}
	if m.DotAll {
		f |= hyperscan.DotAll
	}
	if m.Multiline {
		f |= hyperscan.MultiLine
	}
	if m.UTF8 {
		f |= hyperscan.Utf8Mode | hyperscan.UnicodeProperty
	}
	return f
}

var hsIndexRE = regexp.MustCompile(`at index (\d+)`)

// planRegex checks m.Regex with Hyperscan and decides how to compile it.
// needConfirm says whether hits will be confirmed in Go (validators do
// that when SOM is not available).
func planRegex(m *Match) (regexPlan, *regexError) {
	p := regexPlan{flags: hsFlags(m)}
	expr := m.Regex
	if expr == "" {
		return p, &regexError{off: -1, msg: "regex is empty"}
	}
	if len(expr) > MaxRegexLen {
		return p, &regexError{off: MaxRegexLen, msg: fmt.Sprintf("regex is longer than %d bytes", MaxRegexLen)}
	}
	if i := strings.IndexByte(expr, 0); i >= 0 {
		return p, &regexError{off: i, msg: `regex contains a NUL byte; write \x00`}
	}
	info, err := hyperscan.NewPattern(expr, p.flags).Info()
	if err != nil {
		// Hyperscan refuses it as written (back-references, lookaround,
		// atomic groups...): try prefilter mode, where Hyperscan matches a
		// superset that a backtracking engine then confirms.
		pinfo, perr := hyperscan.NewPattern(expr, p.flags|hyperscan.PrefilterMode).Info()
		if perr != nil {
			return p, hsRegexError(expr, err)
		}
		if _, cerr := newConfirmer(m); cerr != nil {
			re := hsRegexError(expr, err)
			re.msg += "; prefilter mode would need a confirming regex, but " + cerr.Error()
			return p, re
		}
		info, p.prefilter = pinfo, true
	}
	if info.MinWidth == 0 {
		if !m.Not {
			return p, &regexError{off: -1, msg: "regex can match the empty string, so it would hit on every input"}
		}
		// A negated condition holds for values the pattern misses:
		// matching the empty string is meaningful there.
		p.flags |= hyperscan.AllowEmpty
		p.empty = true
	}
	p.maxWidth = info.MaxWidth
	return p, nil
}

// hsRegexError turns Hyperscan's compile error into a regexError with the
// offset Hyperscan names ("at index N") or, failing that, the one Go's
// parser finds.
func hsRegexError(expr string, err error) *regexError {
	msg := err.Error()
	var ce *hyperscan.CompileError
	if errors.As(err, &ce) {
		msg = ce.Message
	}
	msg = strings.TrimSuffix(msg, ".")
	re := &regexError{off: -1, msg: "hyperscan: " + msg, cause: err}
	if sm := hsIndexRE.FindStringSubmatch(msg); sm != nil {
		if n, aerr := strconv.Atoi(sm[1]); aerr == nil && n <= len(expr) {
			re.off = n
			return re
		}
	}
	if _, gerr := syntax.Parse(expr, syntax.Perl); gerr != nil {
		var se *syntax.Error
		if errors.As(gerr, &se) && se.Expr != "" {
			if i := strings.Index(expr, se.Expr); i >= 0 {
				re.off = i
			}
		}
	}
	return re
}

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
	var opts regexp2.RegexOptions
	if m.Caseless {
		opts |= regexp2.IgnoreCase
	}
	if m.DotAll {
		opts |= regexp2.Singleline
	}
	if m.Multiline {
		opts |= regexp2.Multiline
	}
	re, err := regexp2.Compile(m.Regex, opts)
	if err != nil {
		return nil, fmt.Errorf("neither Go's regexp nor regexp2 accept it (%v)", err)
	}
	re.MatchTimeout = confirmTimeout
	return re2Confirmer{re}, nil
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

// unbounded is Hyperscan's max width of a pattern without an upper bound.
const unbounded = math.MaxUint32

// Splitting patterns too large for Hyperscan. A regular expression's
// language is the union of the languages of the expressions made by
// keeping, in one of its alternations, only some of the alternatives —
// as long as nothing around that alternation repeats it (a quantifier
// with a maximum above one) and no alternative changes the options of
// the ones after it (PCRE's `(a(?i)b|c)` matches "C"). Given to Hyperscan
// with one id and HS_FLAG_SINGLEMATCH, such parts report once, exactly
// when the whole would. A pattern Hyperscan refuses as "too large" is a
// prefilter in its group's database: preferably an exact suffix of it
// (suffixFilter: on the CRS command-list rules 932230, 932235, 932250
// and 932260, the command list, which benign values rarely hold, where
// Hyperscan's own approximation hits nearly every value), else
// Hyperscan's approximation; hits are confirmed by a database of the
// pattern's parts (hsConfirmer) when it splits, else by Go's regexp. The
// parts of a CRS command-list rule are a product of a prefix list and a
// command list (each part repeats one of them): slow to build into every
// group of the rule, so they serve only as a confirmation, built once.
const (
	// maxSplitParts bounds the expressions one pattern becomes.
	maxSplitParts = 64
	// maxSplitBuilds bounds the trial builds spent splitting one pattern.
	maxSplitBuilds = 2 * maxSplitParts
	// maxSplitMemo bounds the remembered splits and too-large findings
	// (splitConfirmers).
	maxSplitMemo = 256
)

// reGroup is a group (or the whole expression) in a regex's text.
type reGroup struct {
	start, end int      // the content's byte range, between "(" (and its "?:"-like head) and ")"
	alts       [][2]int // byte ranges of its top-level alternatives
	open       int      // the "(" (-1 for the whole expression)
	opts       [][2]int // option items, (?i), at the group's top level
	parent     *reGroup // nil for the whole expression
	// ctxOK: the group is plain, capturing or option-scoped (not a
	// lookaround, atomic or branch-reset group) and not repeated, and so
	// is every group around it: keeping some of its alternatives keeps
	// a subset of the language.
	ctxOK bool
	// setsOpts: an alternative sets options at the group's top level,
	// (?i), which also apply to the alternatives after it.
	setsOpts bool
	// splittable: ctxOK, !setsOpts and at least two alternatives.
	splittable bool
}

// parseGroups finds the groups of expr (PCRE syntax), the whole
// expression first. It fails on constructs it does not follow (\Q...\E,
// comments, extended mode, verbs, conditionals, recursion), so that a
// split never misreads the pattern.
func parseGroups(expr string) ([]*reGroup, error) {
	top := &reGroup{open: -1, start: 0, end: len(expr), ctxOK: true}
	all := []*reGroup{top}
	stack := []*reGroup{top}
	altStart := []int{0}
	unsupported := func(i int, what string) ([]*reGroup, error) {
		return nil, fmt.Errorf("%s at %d", what, i)
	}
	for i := 0; i < len(expr); {
		cur := stack[len(stack)-1]
		switch c := expr[i]; c {
		case '\\':
			if i+1 >= len(expr) {
				return unsupported(i, "trailing backslash")
			}
			switch expr[i+1] {
			case 'Q', 'E':
				return unsupported(i, `\Q...\E`)
			case 'c':
				i += 3
				continue
			}
			if i+2 < len(expr) && expr[i+2] == '{' && strings.IndexByte("xpPogkN", expr[i+1]) >= 0 {
				j := strings.IndexByte(expr[i+2:], '}')
				if j < 0 {
					return unsupported(i, "unterminated escape")
				}
				i += 3 + j
				continue
			}
			i += 2
		case '[':
			j, err := classEnd(expr, i)
			if err != nil {
				return nil, err
			}
			i = j
		case '|':
			cur.alts = append(cur.alts, [2]int{altStart[len(altStart)-1], i})
			altStart[len(altStart)-1] = i + 1
			i++
		case '(':
			g := &reGroup{ctxOK: true, parent: cur}
			head := 1
			if i+1 < len(expr) && expr[i+1] == '*' {
				return unsupported(i, "verb")
			}
			if i+1 < len(expr) && expr[i+1] == '?' {
				n, kind := groupHead(expr[i+2:])
				switch kind {
				case headPlain, headCapture:
					head = 2 + n
				case headScoped:
					if strings.IndexByte(expr[i+2:i+2+n], 'x') >= 0 {
						return unsupported(i, "extended mode")
					}
					head = 2 + n
				case headOptions:
					// (?i) alone: options for the rest of the enclosing
					// group, across its later alternatives.
					if strings.IndexByte(expr[i+2:i+2+n], 'x') >= 0 {
						return unsupported(i, "extended mode")
					}
					cur.setsOpts = true
					cur.opts = append(cur.opts, [2]int{i, i + 2 + n})
					i += 2 + n
					continue
				case headOpaque:
					head = 2 + n
					g.ctxOK = false
				default:
					return unsupported(i, "group kind")
				}
			}
			g.open, g.start = i, i+head
			all = append(all, g)
			stack = append(stack, g)
			altStart = append(altStart, g.start)
			i += head
		case ')':
			if len(stack) == 1 {
				return unsupported(i, "unbalanced )")
			}
			cur.end = i
			cur.alts = append(cur.alts, [2]int{altStart[len(altStart)-1], i})
			stack, altStart = stack[:len(stack)-1], altStart[:len(altStart)-1]
			n, repeats := quantifier(expr[i+1:])
			if repeats {
				cur.ctxOK = false
			}
			i += 1 + n
		default:
			i++
		}
	}
	if len(stack) != 1 {
		return unsupported(len(expr), "unbalanced (")
	}
	top.alts = append(top.alts, [2]int{altStart[0], len(expr)})
	// A group repeated, or inside an opaque or repeated group, cannot be
	// split: pass each refusal down to the groups inside (all lists
	// parents before their children).
	for _, g := range all {
		if g.parent != nil {
			g.ctxOK = g.ctxOK && g.parent.ctxOK
		}
		g.splittable = g.ctxOK && !g.setsOpts && len(g.alts) > 1
	}
	return all, nil
}

// Group heads after "(?".
const (
	headPlain   = iota // (?:
	headCapture        // (?<name> (?P<name> (?'name'
	headScoped         // (?i: (?i-s:
	headOptions        // (?i)
	headOpaque         // lookaround, atomic, branch reset
	headUnknown
)

// groupHead classifies the text after "(?" and returns the length of the
// rest of the head.
func groupHead(s string) (int, int) {
	if s == "" {
		return 0, headUnknown
	}
	switch s[0] {
	case ':':
		return 1, headPlain
	case '=', '!', '>', '|':
		return 1, headOpaque
	case '<':
		if len(s) > 1 && (s[1] == '=' || s[1] == '!') {
			return 2, headOpaque
		}
		if j := strings.IndexByte(s, '>'); j > 1 && isName(s[1:j]) {
			return j + 1, headCapture
		}
		return 0, headUnknown
	case 'P':
		if len(s) > 1 && s[1] == '<' {
			if j := strings.IndexByte(s, '>'); j > 2 && isName(s[2:j]) {
				return j + 1, headCapture
			}
		}
		return 0, headUnknown
	case '\'':
		if j := strings.IndexByte(s[1:], '\''); j > 0 && isName(s[1:1+j]) {
			return j + 2, headCapture
		}
		return 0, headUnknown
	}
	for j := 0; j < len(s); j++ {
		switch c := s[j]; {
		case c == ':' && j > 0:
			return j + 1, headScoped
		case c == ')' && j > 0:
			return j + 1, headOptions
		case strings.IndexByte("imsxJUX-", c) >= 0:
		default:
			return 0, headUnknown
		}
	}
	return 0, headUnknown
}

func isName(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return s != ""
}

// classEnd returns the index after the character class opening at i.
func classEnd(expr string, i int) (int, error) {
	j := i + 1
	if j < len(expr) && expr[j] == '^' {
		j++
	}
	if j < len(expr) && expr[j] == ']' {
		j++ // a leading ] is literal
	}
	for j < len(expr) {
		switch expr[j] {
		case '\\':
			if j+1 < len(expr) && (expr[j+1] == 'Q' || expr[j+1] == 'E') {
				return 0, fmt.Errorf(`\Q...\E at %d`, j)
			}
			if j+2 < len(expr) && expr[j+2] == '{' && strings.IndexByte("xpPoN", expr[j+1]) >= 0 {
				k := strings.IndexByte(expr[j+2:], '}')
				if k < 0 {
					return 0, fmt.Errorf("unterminated escape at %d", j)
				}
				j += 3 + k
				continue
			}
			j += 2
		case '[':
			if j+1 < len(expr) && strings.IndexByte(":.=", expr[j+1]) >= 0 {
				if k := strings.Index(expr[j+2:], string(expr[j+1])+"]"); k >= 0 {
					j += 2 + k + 2
					continue
				}
			}
			j++
		case ']':
			return j + 1, nil
		default:
			j++
		}
	}
	return 0, fmt.Errorf("unterminated class at %d", i)
}

// quantifier reads a quantifier at the start of s (after a group): its
// length and whether it allows more than one repetition. A "{" that is
// not a well-formed quantifier is taken as one that repeats, which only
// forgoes a split.
func quantifier(s string) (int, bool) {
	if s == "" {
		return 0, false
	}
	n, repeats := 0, false
	switch s[0] {
	case '?':
		n = 1
	case '*', '+':
		n, repeats = 1, true
	case '{':
		j := strings.IndexByte(s, '}')
		if j < 0 {
			return 0, true
		}
		lo, hi, ok := strings.Cut(s[1:j], ",")
		a, aerr := strconv.Atoi(lo)
		if !ok {
			hi = lo
		}
		b, berr := strconv.Atoi(hi)
		n, repeats = j+1, aerr != nil || berr != nil || a > 1 || b > 1
	default:
		return 0, false
	}
	if n < len(s) && (s[n] == '?' || s[n] == '+') {
		n++ // lazy or possessive: the same language
	}
	return n, repeats
}

// splitRegex splits expr into parts that each satisfy fits, whose
// languages' union is expr's, splitting the widest splittable alternation
// in halves until every part fits. It returns nil when expr cannot be
// split that way within maxSplitParts parts and maxSplitBuilds calls of
// fits.
func splitRegex(expr string, fits func(string) bool) []string {
	var parts []string
	work := []string{expr}
	for builds := 0; len(work) > 0; {
		e := work[len(work)-1]
		work = work[:len(work)-1]
		if e != expr {
			if builds++; builds > maxSplitBuilds {
				return nil
			}
			if fits(e) {
				if parts = append(parts, e); len(parts) > maxSplitParts {
					return nil
				}
				continue
			}
		}
		a, b, ok := halve(e)
		if !ok {
			return nil
		}
		work = append(work, b, a)
	}
	return parts
}

// halve splits the widest splittable alternation of e into two parts.
func halve(e string) (string, string, bool) {
	groups, err := parseGroups(e)
	if err != nil {
		return "", "", false
	}
	var best *reGroup
	for _, g := range groups {
		if g.splittable && (best == nil || g.end-g.start > best.end-best.start) {
			best = g
		}
	}
	if best == nil {
		return "", "", false
	}
	// Halve by length so both parts shrink alike.
	total, k := best.end-best.start, 1
	for acc := best.alts[0][1] - best.alts[0][0]; k < len(best.alts)-1 && 2*acc < total; k++ {
		acc += best.alts[k][1] - best.alts[k][0] + 1
	}
	head, tail := e[:best.start], e[best.end:]
	first := head + e[best.alts[0][0]:best.alts[k-1][1]] + tail
	second := head + e[best.alts[k][0]:best.alts[len(best.alts)-1][1]] + tail
	return first, second, true
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
