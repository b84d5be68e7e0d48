package rules

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"

	"github.com/flier/gohs/hyperscan"
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
	f := modeFlags(m, hyperscan.Caseless, hyperscan.DotAll, hyperscan.MultiLine)
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

// unbounded is Hyperscan's max width of a pattern without an upper bound.
const unbounded = math.MaxUint32
