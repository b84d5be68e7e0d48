package rules

import (
	"fmt"
	"strconv"
	"strings"
)

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
