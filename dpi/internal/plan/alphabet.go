package plan

import (
	"regexp/syntax"

	"github.com/flier/gohs/hyperscan"

	"github.com/deepwall/deepwall/rules"
	"github.com/deepwall/deepwall/rules/transform"
)

// alphabetOrder lists the byte classes tried, in this order, for a group's
// alphabet: those of tokens first (cookie and header values, argument
// names). Whitespace, control and non-ASCII bytes are never part of an
// alphabet: regex dialects differ there (PCRE's \v and \s, UTF-8 mode)
// and the analysis below follows Go's syntax.
var alphabetOrder = [...]transform.ByteClasses{
	transform.ClassLower, transform.ClassDigit, transform.ClassUnderline, transform.ClassDash, transform.ClassDot,
	transform.ClassUpper, transform.ClassEquals, transform.ClassSlash, transform.ClassColon, transform.ClassPlus,
	transform.ClassPercent, transform.ClassComma, transform.ClassAt, transform.ClassQuestion, transform.ClassHash,
	transform.ClassStar, transform.ClassBang, transform.ClassSemicolon, transform.ClassAmp, transform.ClassParen,
	transform.ClassDollar, transform.ClassQuote, transform.ClassLT, transform.ClassGT, transform.ClassBacktick,
	transform.ClassBackslash,
}

// byteSet is a set of bytes.
type byteSet [4]uint64

func (s *byteSet) has(c rune) bool { return c >= 0 && c < 256 && s[c>>6]&(1<<(c&63)) != 0 }

func setOf(m transform.ByteClasses) byteSet {
	var s byteSet
	for _, c := range m.Bytes() {
		s[c>>6] |= 1 << (c & 63)
	}
	return s
}

// alphabetCache parses each expression once per rule set (the per-value
// fields repeat the same patterns in several groups).
type alphabetCache map[string]*syntax.Regexp

// groupAlphabet returns classes over which no pattern of g can match: a
// value (after g's transforms) whose bytes all lie in them cannot hit g,
// so the engine does not scan it. Built greedily in alphabetOrder; 0 when
// not even lower-case letters are safe. A pattern Go's parser does not
// accept (back-references, lookaround, PCRE-only escapes) may match
// anything; patterns of negated conditions must see every value, so
// groups with them get 0.
func groupAlphabet(g *rules.Group, cache alphabetCache) transform.ByteClasses {
	if len(g.Negated) > 0 || len(g.Patterns) == 0 {
		return 0
	}
	res := make([]*syntax.Regexp, len(g.Patterns))
	for i := range g.Patterns {
		p := &g.Patterns[i]
		flags := syntax.Perl
		if p.Flags&hyperscan.Caseless != 0 {
			flags |= syntax.FoldCase
		}
		if p.Flags&hyperscan.DotAll != 0 {
			flags |= syntax.DotNL
		}
		key := string(rune('0'+flags&0xff)) + string(rune('0'+flags>>8)) + p.Expression()
		re, ok := cache[key]
		if !ok {
			re, _ = syntax.Parse(p.Expression(), flags) // nil: unknown syntax, may match anything
			cache[key] = re
		}
		if re == nil {
			return 0
		}
		res[i] = re
	}
	var alpha transform.ByteClasses
	for _, c := range alphabetOrder {
		s := setOf(alpha | c)
		ok := true
		for _, re := range res {
			if canMatch(re, &s) {
				ok = false
				break
			}
		}
		if ok {
			alpha |= c
		}
	}
	return alpha
}

// canMatch reports whether re can match some string whose bytes are all in
// s (s holds ASCII bytes only). Assertions (^, $, \b) are taken as always
// satisfiable, so the answer errs towards true.
func canMatch(re *syntax.Regexp, s *byteSet) bool {
	switch re.Op {
	case syntax.OpNoMatch:
		return false
	case syntax.OpLiteral:
		for _, r := range re.Rune {
			if !s.has(r) && !(re.Flags&syntax.FoldCase != 0 && s.has(asciiOtherCase(r))) {
				return false
			}
		}
		return true
	case syntax.OpCharClass:
		for i := 0; i+1 < len(re.Rune); i += 2 {
			for r := re.Rune[i]; r <= re.Rune[i+1] && r < 128; r++ {
				if s.has(r) {
					return true
				}
			}
		}
		return false
	case syntax.OpAnyCharNotNL:
		for c := rune(0); c < 128; c++ {
			if c != '\n' && s.has(c) {
				return true
			}
		}
		return false
	case syntax.OpAnyChar:
		return *s != byteSet{}
	case syntax.OpCapture, syntax.OpPlus:
		return canMatch(re.Sub[0], s)
	case syntax.OpStar, syntax.OpQuest:
		return true
	case syntax.OpRepeat:
		return re.Min == 0 || canMatch(re.Sub[0], s)
	case syntax.OpConcat:
		for _, sub := range re.Sub {
			if !canMatch(sub, s) {
				return false
			}
		}
		return true
	case syntax.OpAlternate:
		for _, sub := range re.Sub {
			if canMatch(sub, s) {
				return true
			}
		}
		return false
	}
	// Empty match and assertions.
	return true
}

func asciiOtherCase(r rune) rune {
	switch {
	case r >= 'a' && r <= 'z':
		return r - 'a' + 'A'
	case r >= 'A' && r <= 'Z':
		return r - 'A' + 'a'
	}
	return -1
}
