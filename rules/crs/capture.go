package crs

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/deepwall/deepwall/rules"
)

// A capture is a SecRule (or chain link) that captures a part of a value
// (`capture` + `@rx P`) and stores it in a transaction variable
// (`setvar:'tx.key=<pre>%{tx.N}<post>'`) which a later rule or link
// compares (`TX:key "@within LIST"`, `"!@rx R"`). deepwall has no
// transaction variables, so the comparison is folded back into the
// capturing pattern: the group N of P gets a lookahead that holds the
// comparison (`(?=...)`, or `(?!...)` when negated), and the condition
// inspects the capturing rule's variables with its transformations.
type capture struct {
	vars     string   // the capturing rule's variables
	op       string   // its operator (an @rx pattern)
	acts     []Action // its actions (transformations)
	group    int      // N of %{tx.N}
	pre, suf string   // what the setvar puts around the captured text
	whole    bool     // the whole value of vars copied (%{ARGS.name}), not a capture
	line     int
	file     string
}

// txSelector recognises a condition on one transaction variable,
// `TX:name` or `TX:/regex/`, and returns name (lower case) or /regex/.
func txSelector(vars string) (string, bool) {
	v := strings.TrimSpace(vars)
	if strings.Contains(v, "|") || len(v) < 4 || !strings.EqualFold(v[:3], "TX:") {
		return "", false
	}
	return strings.ToLower(v[3:]), true
}

// collectCapture records d when it captures into a tx variable.
func (t *translator) collectCapture(file string, d Directive, acts []Action) {
	if len(d.Args) < 3 {
		return
	}
	t.collectNamed(file, d, acts)
	if !hasAction(acts, "capture") {
		return
	}
	for _, a := range acts {
		if a.Name != "setvar" {
			continue
		}
		k, v, ok := strings.Cut(a.Value, "=")
		if !ok {
			continue
		}
		i := strings.Index(strings.ToLower(v), "%{tx.")
		if i < 0 {
			continue
		}
		j := strings.IndexByte(v[i:], '}')
		if j < 0 {
			continue
		}
		n, err := strconv.Atoi(v[i+5 : i+j])
		if err != nil || n < 0 || n > 9 {
			continue
		}
		key := strings.ToLower(k)
		// A key built with a macro (tx.header_name_920450_%{tx.0}) is
		// known by what precedes the macro.
		if m := strings.Index(key, "%{"); m >= 0 {
			key = key[:m]
		}
		key = strings.TrimPrefix(key, "tx.")
		c := &capture{vars: d.Args[0], op: d.Args[1], acts: acts, group: n, pre: v[:i], suf: v[i+j+1:], line: d.Line, file: file}
		if old, seen := t.captures[key]; seen && (old.vars != c.vars || old.op != c.op) {
			t.captures[key] = nil // set by two different rules: ambiguous
			continue
		}
		t.captures[key] = c
	}
}

// collectNamed records a setvar that copies one named argument into a
// tx variable (`setvar:'tx.922100_charset=|%{ARGS._charset_}|'`) as a
// capture of that argument's whole value: a later comparison of the
// variable is then folded into a condition on the argument (name:).
func (t *translator) collectNamed(file string, d Directive, acts []Action) {
	for _, a := range acts {
		if a.Name != "setvar" {
			continue
		}
		k, v, ok := strings.Cut(a.Value, "=")
		if !ok || strings.Contains(k, "%{") {
			continue
		}
		i := strings.Index(strings.ToLower(v), "%{args.")
		if i < 0 {
			continue
		}
		j := strings.IndexByte(v[i:], '}')
		if j < 0 || strings.Contains(v[i+j+1:], "%{") || strings.Contains(v[:i], "%{") {
			continue
		}
		arg := v[i+len("%{args.") : i+j]
		if arg == "" || strings.ContainsAny(arg, `|:/!&\"`) {
			continue
		}
		key := strings.TrimPrefix(strings.ToLower(k), "tx.")
		// Only the transformations apply to the copied value.
		var ts []Action
		for _, x := range acts {
			if x.Name == "t" {
				ts = append(ts, x)
			}
		}
		c := &capture{vars: "ARGS:" + arg, op: "@rx ^(.*)$", acts: ts, group: 1, pre: v[:i], suf: v[i+j+1:], whole: true, line: d.Line, file: file}
		if old, seen := t.captures[key]; seen && (old == nil || old.vars != c.vars || old.op != c.op) {
			t.captures[key] = nil // set by two different rules: ambiguous
			continue
		}
		t.captures[key] = c
	}
}

// provider finds the capture a TX selector reads.
func (t *translator) provider(sel string) (*capture, error) {
	if strings.HasPrefix(sel, "/") {
		re := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSuffix(sel, "/"), "/"), "*")
		re = strings.TrimSuffix(strings.TrimPrefix(re, "^"), "_")
		for _, c := range re {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
				return nil, fmt.Errorf("variable TX:%s: selection by this regex is not supported", sel)
			}
		}
		var found *capture
		for k, c := range t.captures {
			if strings.HasPrefix(k, re) {
				if found != nil || c == nil {
					return nil, fmt.Errorf("variable TX:%s: set by several rules", sel)
				}
				found = c
			}
		}
		if found == nil {
			return nil, fmt.Errorf("variable TX:%s is computed by other rules (no capture to fold)", sel)
		}
		return found, nil
	}
	c, ok := t.captures[sel]
	if !ok {
		return nil, fmt.Errorf("variable TX:%s is computed by other rules (no capture to fold)", sel)
	}
	if c == nil {
		return nil, fmt.Errorf("variable TX:%s: set by several rules", sel)
	}
	return c, nil
}

// captured translates a comparison on a captured tx variable.
func (t *translator) captured(d *draft, sel, op, param string, not bool, acts []Action) (*rules.MatchSpec, error) {
	c, err := t.provider(sel)
	if err != nil {
		return nil, err
	}
	p := strings.TrimSpace(c.op)
	if strings.HasPrefix(p, "!") {
		return nil, fmt.Errorf("variable TX:%s: captured by a negated operator", sel)
	}
	if strings.HasPrefix(p, "@") {
		name, rest, _ := strings.Cut(p, " ")
		if !strings.EqualFold(name, "@rx") {
			return nil, fmt.Errorf("variable TX:%s: captured by %s, not @rx", sel, name)
		}
		p = strings.TrimSpace(rest)
	}
	pre, g, post, err := captureGroup(p, c.group)
	if err != nil {
		return nil, fmt.Errorf("variable TX:%s: %w", sel, err)
	}
	boundary, err := groupBoundary(g)
	if err != nil {
		return nil, fmt.Errorf("variable TX:%s: %w", sel, err)
	}
	lower := false
	for _, a := range acts {
		if a.Name != "t" {
			continue
		}
		switch tr := strings.ToLower(strings.TrimSpace(a.Value)); tr {
		case "none":
		case "lowercase":
			lower = true
		default:
			return nil, fmt.Errorf("variable TX:%s: t:%s on a captured value is not supported", sel, tr)
		}
	}
	param, err = t.expand(param)
	if err != nil {
		return nil, err
	}
	var inner string
	switch strings.ToLower(op) {
	case "@within":
		var alts []string
		for _, w := range strings.Fields(param) {
			x, ok1 := strings.CutPrefix(w, c.pre)
			x, ok2 := strings.CutSuffix(x, c.suf)
			if !ok1 || !ok2 || x == "" {
				continue
			}
			if lower {
				x = strings.ToLower(x)
			}
			alts = append(alts, quoteMeta(x))
		}
		if len(alts) == 0 {
			return nil, fmt.Errorf("variable TX:%s: @within list has no word of the captured form", sel)
		}
		inner = "(?:" + strings.Join(alts, "|") + ")"
		if c.whole {
			// The whole value copied (collectNamed): it is (not) one
			// of the words, a negation over the whole value.
			if lower {
				inner = "(?i:" + inner + ")"
			}
			op := "@rx "
			if not {
				op = "!@rx "
			}
			d.folded = c.line
			syn := Directive{Name: "SecRule", Line: c.line, Args: []string{c.vars, op + "^" + inner + "$", ""}}
			d.notes = append(d.notes, fmt.Sprintf("TX:%s @within folded into a condition on %s", sel, c.vars))
			m, err := t.condition(d, syn, c.acts, nil)
			if err != nil {
				return nil, fmt.Errorf("variable TX:%s (set at %s:%d): %w", sel, c.file, c.line, err)
			}
			return m, nil
		}
		if post == "" || not {
			// Where nothing follows the group, the lookahead ends the word
			// where the group's repetition would.
			inner += boundary
		}
		if lower {
			inner = "(?i:" + inner + ")"
		}
		if !not {
			// A word of the list, where the group was: no lookahead
			// needed (Hyperscan matches it as is).
			pattern := pre + inner + post
			d.folded = c.line
			syn := Directive{Name: "SecRule", Line: c.line, Args: []string{c.vars, "@rx " + pattern, ""}}
			d.notes = append(d.notes, fmt.Sprintf("TX:%s @within folded into the capturing pattern (one of the list's words)", sel))
			m, err := t.condition(d, syn, c.acts, nil)
			if err != nil {
				return nil, fmt.Errorf("variable TX:%s (captured at %s:%d): %w", sel, c.file, c.line, err)
			}
			return m, nil
		}
		d.notes = append(d.notes, fmt.Sprintf("TX:%s @within folded into the capturing pattern (one of the list's words)", sel))
	case "@rx":
		if c.pre != "" || c.suf != "" {
			return nil, fmt.Errorf("variable TX:%s: @rx on a decorated capture is not supported", sel)
		}
		if lower && !hasTransform(c.acts, "lowercase") {
			return nil, fmt.Errorf("variable TX:%s: t:lowercase on a capture of untransformed values is not supported", sel)
		}
		r, ok := strings.CutPrefix(param, "^")
		if !ok {
			return nil, fmt.Errorf("variable TX:%s: only an anchored (^) @rx is supported", sel)
		}
		if strings.HasSuffix(r, "$") && !strings.HasSuffix(r, `\$`) && post != "$" && post != "" {
			return nil, fmt.Errorf("variable TX:%s: $ inside a capture that does not end the value", sel)
		}
		inner = "(?:" + r + ")"
		d.notes = append(d.notes, fmt.Sprintf("TX:%s @rx folded into the capturing pattern", sel))
	default:
		return nil, fmt.Errorf("variable TX:%s: %s on a captured value is not supported", sel, op)
	}
	look := "(?="
	if not {
		look = "(?!"
	} else if strings.HasSuffix(g, "*") {
		// The lookahead needs at least one byte: say so, or the pattern
		// looks as if it matched the empty value.
		g = g[:len(g)-1] + "+"
	}
	// The prefix is atomic so that backtracking cannot move the group to
	// where the comparison holds (CRS compares the capture of the first
	// match), and the pattern runs to the end of the value so that a
	// prefilter hit is confirmed over all of it, lookahead included.
	if pre != "" {
		pre = "(?>" + pre + ")"
	}
	pattern := pre + look + inner + ")" + g + post
	if !strings.HasSuffix(post, "$") {
		pattern += `[\s\S]*$`
	}
	d.folded = c.line
	syn := Directive{Name: "SecRule", Line: c.line, Args: []string{c.vars, "@rx " + pattern, ""}}
	m, err := t.condition(d, syn, c.acts, nil)
	if err != nil {
		return nil, fmt.Errorf("variable TX:%s (captured at %s:%d): %w", sel, c.file, c.line, err)
	}
	return m, nil
}

func hasTransform(acts []Action, name string) bool {
	for _, a := range acts {
		if a.Name == "t" && strings.EqualFold(strings.TrimSpace(a.Value), name) {
			return true
		}
	}
	return false
}

// captureGroup splits pattern p around its capturing group n (n = 0: the
// whole match, with a leading ^ and a trailing $ kept outside).
func captureGroup(p string, n int) (pre, g, post string, err error) {
	if n == 0 {
		g = p
		if strings.HasPrefix(g, "^") {
			pre, g = "^", g[1:]
		}
		if strings.HasSuffix(g, "$") && !strings.HasSuffix(g, `\$`) {
			g, post = g[:len(g)-1], "$"
		}
		return pre, g, post, nil
	}
	count, start := 0, -1
	depth, startDepth := 0, 0
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '\\':
			i++
		case '[':
			e, ok := classEnd(p, i)
			if !ok {
				return "", "", "", errors.New("unterminated character class")
			}
			i = e
		case '(':
			depth++
			if i+1 < len(p) && p[i+1] == '?' {
				continue
			}
			count++
			if count == n {
				start, startDepth = i, depth
			}
		case ')':
			if start >= 0 && depth == startDepth {
				return p[:start], p[start+1 : i], p[i+1:], nil
			}
			depth--
		}
	}
	return "", "", "", fmt.Errorf("pattern has no capturing group %d", n)
}

// classEnd returns the index of the ] closing the class opened at i.
func classEnd(p string, i int) (int, bool) {
	j := i + 1
	if j < len(p) && p[j] == '^' {
		j++
	}
	if j < len(p) && p[j] == ']' {
		j++
	}
	for ; j < len(p); j++ {
		switch p[j] {
		case '\\':
			j++
		case ']':
			return j, true
		}
	}
	return 0, false
}

// groupBoundary returns the lookahead that ends a match of g where g's
// greedy repetition would end: g must be C+ or C* with C a single
// character class (`.`, `[...]`, `\S`, `\w`, `\d`).
func groupBoundary(g string) (string, error) {
	if len(g) < 2 || (g[len(g)-1] != '+' && g[len(g)-1] != '*') || strings.HasSuffix(g, `\+`) || strings.HasSuffix(g, `\*`) {
		return "", fmt.Errorf("captured group %q is not a repeated character class", g)
	}
	c := g[:len(g)-1]
	switch {
	case c == ".", len(c) == 2 && c[0] == '\\' && strings.IndexByte("SsWwDd", c[1]) >= 0:
	case strings.HasPrefix(c, "["):
		if e, ok := classEnd(c, 0); !ok || e != len(c)-1 {
			return "", fmt.Errorf("captured group %q is not a repeated character class", g)
		}
	default:
		return "", fmt.Errorf("captured group %q is not a repeated character class", g)
	}
	return "(?!" + c + ")", nil
}

// compareOps are the SecLang operators a captured value may be compared
// with a request field by, and their compare: op.
var compareOps = map[string]string{"@streq": "equals", "@beginswith": "begins_with", "@endswith": "ends_with", "@contains": "contains",
	"@lt": "lt", "@le": "le", "@gt": "gt", "@ge": "ge"}

// macroFields are the macros naming a request field a compare: can read
// (request_headers.<name> aside).
var macroFields = map[string]string{"request_method": "http.method", "request_uri": "http.uri", "request_uri_raw": "http.uri",
	"request_protocol": "http.protocol", "query_string": "http.query"}

// capturedCompare recognises link l as a comparison of TX:N, which the
// previous link (prevLink, translated as prev) captured with `capture`
// and @rx, with a macro naming a request field (`TX:1 "!@endsWith
// %{request_headers.host}"`, 943110) or another group of the same
// capture (`TX:2 "@lt %{tx.1}"`, 920190), and turns it into a compare:
// of prev. It reports false for any other link.
func (t *translator) capturedCompare(l Directive, acts []Action, prevLink Directive, prev *rules.MatchSpec) (bool, error) {
	sel, ok := txSelector(l.Args[0])
	if !ok || len(sel) != 1 || sel[0] < '0' || sel[0] > '9' {
		return false, nil
	}
	op := strings.TrimSpace(l.Args[1])
	not := strings.HasPrefix(op, "!")
	op = strings.TrimSpace(strings.TrimPrefix(op, "!"))
	name, param, _ := strings.Cut(op, " ")
	cop, ok := compareOps[strings.ToLower(name)]
	param = strings.TrimSpace(param)
	if !ok || !strings.HasPrefix(param, "%{") || !strings.HasSuffix(param, "}") || strings.Count(param, "%{") != 1 {
		return false, nil
	}
	macro := strings.ToLower(param[2 : len(param)-1])
	withGroup := 0
	if g, isTx := strings.CutPrefix(macro, "tx."); isTx && len(g) == 1 && g[0] >= '1' && g[0] <= '9' {
		withGroup = int(g[0] - '0')
	}
	field, ok := macroFields[macro]
	if withGroup > 0 {
		field, ok = "", true
	}
	if h, isHeader := strings.CutPrefix(macro, "request_headers."); isHeader && h != "" {
		field, ok = "http.header."+h, true
	}
	if !ok {
		return false, fmt.Errorf("TX:%s compared with %s: only request_headers.<name>, request_method, request_uri, request_protocol and query_string can be compared with a capture", sel, param)
	}
	pa, err := ParseActions(last(prevLink.Args))
	if err != nil || len(prevLink.Args) < 3 || !hasAction(pa, "capture") || prev == nil {
		return false, fmt.Errorf("TX:%s is not captured by the previous link of the chain", sel)
	}
	if p := strings.TrimSpace(prevLink.Args[1]); strings.HasPrefix(p, "!") || strings.HasPrefix(p, "@") && !strings.HasPrefix(strings.ToLower(p), "@rx ") {
		return false, fmt.Errorf("TX:%s is captured by %q, not @rx", sel, p)
	}
	if prev.Regex == "" || prev.Not || prev.Compare != nil {
		return false, fmt.Errorf("TX:%s: the capturing condition is not a plain regex", sel)
	}
	for _, a := range acts {
		if a.Name == "t" && !strings.EqualFold(strings.TrimSpace(a.Value), "none") {
			return false, fmt.Errorf("TX:%s: t:%s on a captured value is not supported", sel, a.Value)
		}
	}
	prev.Compare = &rules.CompareSpec{Group: int(sel[0] - '0'), Op: cop, Field: field, WithGroup: withGroup, Not: not}
	return true, nil
}

// ReportingID is CRS's reporting rule (980170, a SecAction of phase 5
// that logs the scores of every transaction that scored).
const ReportingID = 980170

// reporting translates CRS's reporting SecAction: it logs every
// transaction whose anomaly score is above 0, which deepwall's threshold
// rule of 1 does (inbound only: a transaction whose only scores are
// outbound is not reported).
func (t *translator) reporting(file string, line int, acts []Action) {
	name := actionValue(acts, "msg")
	if i := strings.IndexByte(name, '('); i > 0 {
		name = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(name[:i]), ":"))
	}
	t.out = append(t.out, &draft{file: file, line: line, notes: []string{"reports transactions with an inbound score only"},
		rule: yRule{yHead: yHead{ID: ReportingID, Name: bound(name, rules.MaxNameLen), Action: "alert", Severity: "low",
			Category: "anomaly", Anomaly: &yAnomaly{Direction: "inbound", Threshold: 1}}}})
}

// jsonContentType is the Content-Type header line that makes Coraza's
// recommended set-up parse a body as JSON (rules 200001 and 200006), on
// http.headers (caseless, multiline).
const jsonContentType = `^content-type:[ \t]*application/(?:json|[a-z0-9.-]+\+json)`

// bodyProcessorSkip recognises `SecRule REQBODY_PROCESSOR "@streq JSON"
// ... skip:1` (920539) and returns the condition the next rule gets: no
// JSON Content-Type header.
func bodyProcessorSkip(d Directive) (*rules.MatchSpec, bool) {
	if len(d.Args) < 3 || !strings.EqualFold(strings.TrimSpace(d.Args[0]), "REQBODY_PROCESSOR") {
		return nil, false
	}
	acts, err := ParseActions(last(d.Args))
	if err != nil || actionValue(acts, "skip") != "1" || hasAction(acts, "chain") {
		return nil, false
	}
	op := strings.Fields(d.Args[1])
	if len(op) != 2 || !strings.EqualFold(op[0], "@streq") || op[1] != "JSON" {
		return nil, false
	}
	return &rules.MatchSpec{Field: "http.headers", Regex: jsonContentType, Flags: []string{"caseless", "multiline"}, Not: true}, true
}
