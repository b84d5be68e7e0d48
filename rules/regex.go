package rules

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"time"

	"github.com/dlclark/regexp2"
	"github.com/flier/gohs/hyperscan"
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
		if expr[i+1] == 'x' && (expr[i+2] == '{' || (i+3 < len(expr) && isHex(expr[i+2]) && isHex(expr[i+3]) && unhex(expr[i+2]) >= 8)) {
			return true
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
