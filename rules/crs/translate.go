package crs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/deepwall/deepwall/rules"
	"github.com/deepwall/deepwall/rules/transform"
)

// Default anomaly thresholds of the Core Rule Set (crs-setup.conf).
const (
	DefaultInboundThreshold  = 5
	DefaultOutboundThreshold = 4
)

// Ids of the threshold rules the import writes (those of CRS's blocking
// evaluation rules).
const (
	InboundThresholdID  = 949110
	OutboundThresholdID = 959100
)

// Options tune an import.
type Options struct {
	// ParanoiaLevel is written as the set's paranoia_level (0 = 1); rules
	// of every level are translated.
	ParanoiaLevel int
	// InboundThreshold and OutboundThreshold are the anomaly scores at
	// which a request or a response is blocked (0 = the CRS defaults, 5
	// and 4).
	InboundThreshold, OutboundThreshold int
	// NoCompile skips the Hyperscan compile check (rules are still
	// parsed and validated); rules Hyperscan would refuse to build stay
	// in the output.
	NoCompile bool
}

// Note names a rule (or a part of one) and what happened to it.
type Note struct {
	File   string
	Line   int
	ID     uint32
	Reason string
}

func (n Note) String() string {
	return fmt.Sprintf("%s:%d: rule %d: %s", n.File, n.Line, n.ID, n.Reason)
}

// Result is the outcome of an import.
type Result struct {
	// YAML is the deepwall rule file: a header comment, paranoia_level,
	// and the rules, each preceded by its origin.
	YAML []byte
	// Translated counts the rules written (threshold rules included).
	Translated int
	// Untranslated lists every SecRule that is not in YAML, with why.
	Untranslated []Note
	// Approximations lists translated rules that differ from their
	// SecLang meaning, with how.
	Approximations []Note
	// Files are the .conf files read, in order.
	Files []string
}

// Import translates every .conf file at the root of fsys (in name order),
// reading the .data files their @pmFromFile operators name from the same
// directory.
func Import(fsys fs.FS, opts Options) (*Result, error) {
	ents, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("import crs: %w", err)
	}
	var files []string
	for _, e := range ents {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".conf") {
			files = append(files, e.Name())
		}
	}
	sort.Strings(files)
	if len(files) == 0 {
		return nil, errors.New("import crs: no .conf files found")
	}
	t := &translator{fsys: fsys, opts: opts, tx: map[string]string{}, data: map[string][]string{}, captures: map[string]*capture{}}
	if t.opts.InboundThreshold <= 0 {
		t.opts.InboundThreshold = DefaultInboundThreshold
	}
	if t.opts.OutboundThreshold <= 0 {
		t.opts.OutboundThreshold = DefaultOutboundThreshold
	}
	parsed := make([][]Directive, len(files))
	for i, f := range files {
		b, err := readBounded(fsys, f)
		if err != nil {
			return nil, fmt.Errorf("import crs: %w", err)
		}
		if parsed[i], err = ParseSecLang(f, b); err != nil {
			return nil, fmt.Errorf("import crs: %w", err)
		}
		t.collectDefaults(f, parsed[i])
	}
	for i, f := range files {
		t.file(f, parsed[i])
	}
	res := &Result{Files: files}
	if err := t.validate(); err != nil {
		return nil, err
	}
	res.YAML, err = t.render()
	if err != nil {
		return nil, fmt.Errorf("import crs: %w", err)
	}
	res.Translated = len(t.out)
	res.Untranslated = t.skipped
	res.Approximations = t.approx
	return res, nil
}

func readBounded(fsys fs.FS, name string) ([]byte, error) {
	st, err := fs.Stat(fsys, name)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", name)
	}
	if st.Size() > MaxFileSize {
		return nil, fmt.Errorf("%s: %w: %d bytes (limit %d)", name, ErrTooLarge, st.Size(), MaxFileSize)
	}
	return fs.ReadFile(fsys, name)
}

// draft is a translated rule before validation.
type draft struct {
	file  string
	line  int
	rule  yRule
	notes []string // approximations
	// folded is the line of the capturing rule the last condition folded
	// a tx comparison into (0 = none).
	folded int
}

type translator struct {
	fsys fs.FS
	opts Options
	tx   map[string]string   // tx.* defaults set by the rule set itself (901 initialisation)
	data map[string][]string // .data files read
	// captures are the tx variables rules set from a capture (key without
	// "tx.", nil = set by several rules), see capture.go.
	captures map[string]*capture
	out      []*draft
	skipped  []Note
	approx   []Note
	// unless is a condition the next rule gets because a skip:1 rule
	// before it skips it when the negation holds (920539 on JSON bodies).
	unless *rules.MatchSpec
}

// collectDefaults records the tx variables the rule set initialises with
// a plain assignment (setvar:'tx.name=value'), first assignment winning,
// so that operators can expand %{tx.name}.
func (t *translator) collectDefaults(file string, ds []Directive) {
	for _, d := range ds {
		if !strings.EqualFold(d.Name, "SecRule") && !strings.EqualFold(d.Name, "SecAction") {
			continue
		}
		if len(d.Args) == 0 {
			continue
		}
		acts, err := ParseActions(last(d.Args))
		if err != nil {
			continue
		}
		t.collectCapture(file, d, acts)
		for _, a := range acts {
			if a.Name != "setvar" {
				continue
			}
			k, v, ok := strings.Cut(a.Value, "=")
			if !ok || strings.HasPrefix(v, "+") || strings.HasPrefix(v, "-") {
				continue
			}
			k = strings.ToLower(k)
			if !strings.HasPrefix(k, "tx.") {
				continue
			}
			if _, seen := t.tx[k]; !seen {
				t.tx[k] = v
			}
		}
	}
}

// file translates one file's directives.
func (t *translator) file(name string, ds []Directive) {
	level := 1
	for i := 0; i < len(ds); i++ {
		d := ds[i]
		if !strings.EqualFold(d.Name, "SecRule") {
			if strings.EqualFold(d.Name, "SecAction") {
				if acts, err := ParseActions(last(d.Args)); err == nil {
					if id := actionID(acts); id == ReportingID {
						t.reporting(name, d.Line, acts)
					} else if id != 0 {
						t.skip(name, d.Line, id, "SecAction: sets CRS variables only (deepwall scores without them)")
					}
				}
			}
			continue
		}
		if c, ok := bodyProcessorSkip(d); ok {
			t.unless = c
			if acts, err := ParseActions(last(d.Args)); err == nil {
				t.skip(name, d.Line, actionID(acts), "skip:1 on a JSON body processor: folded into the next rule as a condition on Content-Type")
			}
			continue
		}
		// A rule and its chain links.
		links := []Directive{d}
		for {
			acts, err := ParseActions(last(links[len(links)-1].Args))
			if err != nil || !hasAction(acts, "chain") || i+1 >= len(ds) || !strings.EqualFold(ds[i+1].Name, "SecRule") {
				break
			}
			i++
			links = append(links, ds[i])
		}
		if lv, ok := plGate(d); ok {
			level = lv
		}
		t.rule(name, links, level)
	}
}

func last(a []string) string {
	if len(a) == 0 {
		return ""
	}
	return a[len(a)-1]
}

// plGate recognises CRS's paranoia gate, SecRule
// TX:DETECTION_PARANOIA_LEVEL "@lt N" ... skipAfter: the rules after it
// are of level N.
func plGate(d Directive) (int, bool) {
	if len(d.Args) < 2 || !strings.EqualFold(d.Args[0], "TX:DETECTION_PARANOIA_LEVEL") {
		return 0, false
	}
	op := strings.TrimSpace(d.Args[1])
	if n, ok := strings.CutPrefix(op, "@lt "); ok {
		if v, err := strconv.Atoi(strings.TrimSpace(n)); err == nil && v >= 1 && v <= rules.MaxParanoia {
			return v, true
		}
	}
	return 0, false
}

func hasAction(acts []Action, name string) bool {
	for _, a := range acts {
		if strings.EqualFold(a.Name, name) {
			return true
		}
	}
	return false
}

func actionID(acts []Action) uint32 {
	for _, a := range acts {
		if a.Name == "id" {
			if v, err := strconv.ParseUint(strings.TrimSpace(a.Value), 10, 32); err == nil {
				return uint32(v)
			}
		}
	}
	return 0
}

func (t *translator) skip(file string, line int, id uint32, reason string) {
	t.skipped = append(t.skipped, Note{File: file, Line: line, ID: id, Reason: reason})
}

// Severities of CRS and the anomaly score each adds (crs-setup.conf
// defaults).
var (
	severityOf = map[string]string{"CRITICAL": "critical", "ERROR": "high", "WARNING": "medium", "NOTICE": "low",
		"0": "critical", "1": "critical", "2": "critical", "3": "high", "4": "medium", "5": "low"}
	scoreOf = map[string]int{"tx.critical_anomaly_score": 5, "tx.error_anomaly_score": 4,
		"tx.warning_anomaly_score": 3, "tx.notice_anomaly_score": 2}
)

var anomalySetvar = regexp.MustCompile(`(?i)^tx\.(inbound|outbound)_anomaly_score_pl(\d)=\+%\{(tx\.[a-z_]+)\}$`)

// rule translates one SecRule with its chain links.
func (t *translator) rule(file string, links []Directive, level int) {
	// A skip:1 before this rule applies to it, translated or not.
	unless := t.unless
	t.unless = nil
	head := links[0]
	if len(head.Args) < 2 {
		t.skip(file, head.Line, 0, "SecRule needs variables and an operator")
		return
	}
	var acts []Action
	for _, l := range links {
		a, err := ParseActions(last(l.Args))
		if err != nil || len(l.Args) < 3 && l.Line == head.Line {
			t.skip(file, l.Line, 0, fmt.Sprintf("action list: %v", err))
			return
		}
		if len(l.Args) >= 3 {
			acts = append(acts, a...)
		}
	}
	headActs, _ := ParseActions(last(head.Args))
	id := actionID(headActs)
	if id == 0 {
		t.skip(file, head.Line, 0, "rule has no id")
		return
	}
	if t.threshold(file, head, headActs, id) {
		return
	}
	d := &draft{file: file, line: head.Line, rule: yRule{yHead: ruleHead(id, headActs, level)}}
	r := &d.rule
	if !scoreAction(&r.yHead, acts) {
		t.skip(file, head.Line, id, "adds no anomaly score and does not deny: CRS bookkeeping (variables, skips, ctl)")
		return
	}
	if !t.conditions(d, links, id) {
		return
	}
	if unless != nil {
		r.Match = append(r.Match, unless)
		d.notes = append(d.notes, "REQBODY_PROCESSOR JSON (skip:1 of the rule before) taken as a JSON Content-Type header")
	}
	if len(r.Match) > rules.MaxConds {
		t.skip(file, head.Line, id, fmt.Sprintf("chain of %d rules (deepwall allows %d conditions)", len(r.Match), rules.MaxConds))
		return
	}
	t.out = append(t.out, d)
}

// threshold translates CRS's blocking evaluation, the threshold rules,
// and reports whether head was one.
func (t *translator) threshold(file string, head Directive, headActs []Action, id uint32) bool {
	v := strings.ToUpper(head.Args[0])
	if id != InboundThresholdID && id != OutboundThresholdID ||
		v != "TX:BLOCKING_INBOUND_ANOMALY_SCORE" && v != "TX:BLOCKING_OUTBOUND_ANOMALY_SCORE" ||
		!strings.HasPrefix(strings.TrimSpace(head.Args[1]), "@ge") {
		return false
	}
	dir, thr := "inbound", t.opts.InboundThreshold
	if strings.Contains(v, "OUTBOUND") {
		dir, thr = "outbound", t.opts.OutboundThreshold
	}
	name := actionValue(headActs, "msg")
	t.out = append(t.out, &draft{file: file, line: head.Line, rule: yRule{yHead: yHead{ID: id, Name: bound(name, rules.MaxNameLen),
		Action: "block", Severity: "critical", Category: "anomaly", Anomaly: &yAnomaly{Direction: dir, Threshold: thr}}}})
	return true
}

// ruleHead reads a rule's name, severity, paranoia level and category
// from the actions of its first link; level is the paranoia level the
// rule's place in the file gives it.
func ruleHead(id uint32, headActs []Action, level int) yHead {
	h := yHead{ID: id, Name: bound(actionValue(headActs, "msg"), rules.MaxNameLen), Paranoia: level}
	if s, ok := severityOf[strings.ToUpper(actionValue(headActs, "severity"))]; ok {
		h.Severity = s
	}
	for _, a := range headActs {
		if a.Name != "tag" {
			continue
		}
		if n, ok := strings.CutPrefix(a.Value, "paranoia-level/"); ok {
			if v, err := strconv.Atoi(n); err == nil && v >= 1 && v <= rules.MaxParanoia {
				h.Paranoia = v
			}
		}
		if c, ok := strings.CutPrefix(a.Value, "attack-"); ok && h.Category == "" {
			h.Category = category(c)
		}
	}
	if h.Paranoia <= 1 {
		h.Paranoia = 0
	}
	return h
}

// scoreAction sets the anomaly score (any link may set it; it applies
// once the chain matched) and the action: alert for a scoring rule,
// block for one that denies. It reports false for a rule that does
// neither.
func scoreAction(h *yHead, acts []Action) bool {
	explicitDeny := false
	for _, a := range acts {
		switch strings.ToLower(a.Name) {
		case "setvar":
			if m := anomalySetvar.FindStringSubmatch(a.Value); m != nil {
				if s, ok := scoreOf[strings.ToLower(m[3])]; ok {
					h.Score = max(h.Score, s)
				}
			}
		case "deny", "drop":
			explicitDeny = true
		}
	}
	switch {
	case h.Score > 0:
		h.Action = "alert"
	case explicitDeny:
		h.Action = "block"
	default:
		return false
	}
	return true
}

// conditions translates the chain links into d's conditions; it reports
// false when a link cannot be translated (the rule is skipped).
func (t *translator) conditions(d *draft, links []Directive, id uint32) bool {
	r := &d.rule
	var prev *rules.MatchSpec
	for li, l := range links {
		if len(l.Args) < 2 {
			t.skip(d.file, l.Line, id, "chained SecRule needs variables and an operator")
			return false
		}
		la, _ := ParseActions(last(l.Args))
		if len(l.Args) < 3 {
			la = nil
		}
		if li > 0 {
			// TX:N compared with a request field, N captured by the
			// previous link: a compare: of that link's condition.
			ok, err := t.capturedCompare(l, la, links[li-1], prev)
			if err != nil {
				t.skip(d.file, l.Line, id, err.Error())
				return false
			}
			if ok {
				continue
			}
		}
		d.folded = 0
		m, err := t.condition(d, l, la, prev)
		if err != nil {
			t.skip(d.file, l.Line, id, err.Error())
			return false
		}
		if li > 0 && d.folded != 0 && d.folded == links[li-1].Line {
			// The comparison folded into the previous link's pattern,
			// which it implies: it replaces that link's condition.
			r.Match[len(r.Match)-1] = m
			prev = m
			continue
		}
		r.Match = append(r.Match, m)
		prev = m
	}
	return true
}

func actionValue(acts []Action, name string) string {
	for _, a := range acts {
		if a.Name == name {
			return a.Value
		}
	}
	return ""
}

func bound(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// category turns a CRS attack tag into a deepwall category.
func category(c string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(c) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-' {
			b.WriteRune(r)
		}
		if b.Len() == 32 {
			break
		}
	}
	return b.String()
}

// Variables and the fields they become.
var varFields = map[string]string{
	"ARGS": "http.arg", "ARGS_GET": "http.arg", "ARGS_POST": "http.arg", "ARGS_COMBINED_SIZE": "",
	"ARGS_NAMES": "http.arg_name", "ARGS_GET_NAMES": "http.arg_name", "ARGS_POST_NAMES": "http.arg_name",
	"REQUEST_URI": "http.uri", "REQUEST_URI_RAW": "http.uri", "REQUEST_FILENAME": "http.filename",
	"REQUEST_BASENAME": "http.basename", "REQUEST_HEADERS": "http.header_value", "REQUEST_HEADERS_NAMES": "http.header_name",
	"REQUEST_COOKIES": "http.cookie", "REQUEST_COOKIES_NAMES": "http.cookie_name", "REQUEST_BODY": "http.plain_body",
	"REQUEST_LINE": "http.request_line", "REQUEST_METHOD": "http.method", "REQUEST_PROTOCOL": "http.protocol",
	"QUERY_STRING": "http.query", "RESPONSE_BODY": "http.response_body", "RESPONSE_HEADERS": "http.response_header_value",
	"RESPONSE_STATUS": "http.status", "FILES": "http.file", "FILES_NAMES": "http.file_field",
	"MULTIPART_PART_HEADERS": "http.part_header",
}

// namedVars are the collections whose selection by name (ARGS:x,
// REQUEST_COOKIES:/re/) becomes name: or name_regex:.
var namedVars = map[string]bool{"ARGS": true, "ARGS_GET": true, "ARGS_POST": true, "REQUEST_COOKIES": true, "FILES": true}

// approximate variables: translated to a broader field.
var varApprox = map[string]string{
	"ARGS_GET":       "ARGS_GET matched as ARGS (query and body arguments)",
	"ARGS_GET_NAMES": "ARGS_GET_NAMES matched as ARGS_NAMES",
	"ARGS_POST":      "ARGS_POST matched as ARGS",
	"REQUEST_URI":    "REQUEST_URI matched as sent (not decoded)",
}

// condition translates one SecRule (a chain link) into a condition: its
// variables become fields, its transformations a transform chain and its
// operator what the condition matches.
func (t *translator) condition(d *draft, l Directive, acts []Action, prev *rules.MatchSpec) (*rules.MatchSpec, error) {
	name, param, not := splitOperator(l.Args[1])
	if sel, ok := txSelector(l.Args[0]); ok {
		return t.captured(d, sel, name, param, not, acts)
	}
	m := &rules.MatchSpec{}
	v, err := variables(d, m, l.Args[0], prev)
	if err != nil {
		return nil, err
	}
	chain, tlength, err := transformations(d, acts, v, prev)
	if err != nil {
		return nil, err
	}
	m.Transforms = chain
	if hasAction(acts, "multiMatch") && len(chain) > 0 {
		m.MultiMatch = true
	}
	// Operator.
	param, err = t.expand(param)
	if err != nil {
		return nil, err
	}
	length := v.length || tlength
	if length && v.counting {
		return nil, errors.New("a length of a count is not supported")
	}
	if length {
		re, neg, err := lengthOf(name, param, not)
		if err != nil {
			return nil, err
		}
		m.Regex, m.Not, m.MultiMatch = re, neg, false
		return m, nil
	}
	if v.counting {
		c, err := countOf(name, param, not)
		if err != nil {
			return nil, err
		}
		m.Count, m.Transforms, m.MultiMatch = c, nil, false
		return m, nil
	}
	if err := t.operator(d, m, name, param, not); err != nil {
		return nil, err
	}
	if m.Detect != "" {
		m.Transforms, m.MultiMatch = chain, false
	}
	return m, nil
}

// splitOperator reads a SecRule's operator argument: "!@name param", the
// name @rx when it is left out.
func splitOperator(arg string) (name, param string, not bool) {
	op := strings.TrimSpace(arg)
	if strings.HasPrefix(op, "!") {
		not, op = true, strings.TrimSpace(op[1:])
	}
	name = op
	if !strings.HasPrefix(op, "@") {
		name, param = "@rx", op // the default operator
	} else if i := strings.IndexAny(op, " \t"); i >= 0 {
		name, param = op[:i], strings.TrimSpace(op[i+1:])
	}
	return name, param, not
}

// condVars is what a SecRule's variables say beyond the fields.
type condVars struct {
	fields      []string
	counting    bool // &VAR: the number of values
	matchedVars bool // MATCHED_VAR(S): the previous link's fields
	length      bool // REQUEST_BODY_LENGTH: compared through a pattern
}

// variables translates a SecRule's variables (list) into m's fields,
// except: and name: or name_regex:.
func variables(d *draft, m *rules.MatchSpec, list string, prev *rules.MatchSpec) (condVars, error) {
	var v condVars
	var names []string // named selections (ARGS:x): name: / name_regex:
	var excl []string  // !ARGS:x, !REQUEST_COOKIES:x as except: FIELD:NAME
	nameRx, named, vars := "", 0, 0
	for _, x := range strings.Split(list, "|") {
		x = strings.TrimSpace(x)
		if x == "" {
			continue
		}
		if strings.HasPrefix(x, "!") {
			base, sel, _ := strings.Cut(x[1:], ":")
			if sel != "" && !strings.HasPrefix(sel, "/") {
				switch strings.ToUpper(base) {
				case "REQUEST_HEADERS":
					m.Except = append(m.Except, strings.ToLower(sel))
					continue
				case "ARGS", "REQUEST_COOKIES":
					excl = append(excl, varFields[strings.ToUpper(base)]+":"+strings.ToLower(sel))
					continue
				}
			}
			d.notes = append(d.notes, "exclusion "+x+" ignored (the values it removes are matched too)")
			continue
		}
		if strings.HasPrefix(x, "&") {
			v.counting = true
			x = x[1:]
		}
		base, sel, hasSel := strings.Cut(x, ":")
		base = strings.ToUpper(base)
		vars++
		switch base {
		case "MATCHED_VAR", "MATCHED_VARS":
			if prev == nil {
				return v, fmt.Errorf("variable %s outside a chain", base)
			}
			v.fields = append(v.fields, allFields(prev)...)
			v.matchedVars = true
			d.notes = append(d.notes, base+" matched as the fields of the previous condition")
			continue
		case "XML":
			// Coraza's XML body processor: XML:/* the texts, XML://@*
			// the attribute values.
			xf := map[string]string{"/*": "http.xml_text", "//@*": "http.xml_attr"}[sel]
			if xf == "" {
				d.notes = append(d.notes, x+" not matched (only XML:/* and XML://@* are)")
				continue
			}
			if !slices.Contains(v.fields, xf) {
				v.fields = append(v.fields, xf)
			}
			continue
		case "REQUEST_BODY_LENGTH":
			// The body's length: compared through a pattern on the body.
			v.length = true
			if !slices.Contains(v.fields, "http.plain_body") {
				v.fields = append(v.fields, "http.plain_body")
			}
			continue
		}
		f, ok := varFields[base]
		if !ok || f == "" {
			return v, fmt.Errorf("variable %s is not supported", x)
		}
		if hasSel {
			switch {
			case base == "REQUEST_HEADERS" && !strings.HasPrefix(sel, "/"):
				f = "http.header." + strings.ToLower(sel)
			case base == "REQUEST_HEADERS":
				return v, fmt.Errorf("variable %s: header selection by regex is not supported", x)
			case v.counting && base == "ARGS" || v.counting && base == "REQUEST_COOKIES" || v.counting && base == "FILES":
				return v, fmt.Errorf("variable &%s: counting one named value is not supported", x)
			case namedVars[base] && !v.counting:
				// ARGS:x, REQUEST_COOKIES:/re/...: the values of those
				// names only (Coraza's collections: case-insensitive).
				if rx, ok := strings.CutPrefix(sel, "/"); ok {
					rx = strings.TrimSuffix(rx, "/")
					if nameRx != "" && nameRx != rx {
						return v, fmt.Errorf("variable %s: two name regexes in one condition", x)
					}
					nameRx = rx
				} else if !slices.Contains(names, strings.ToLower(sel)) {
					names = append(names, strings.ToLower(sel))
				}
				named++
			default:
				d.notes = append(d.notes, fmt.Sprintf("%s matched as every value of %s", x, base))
			}
		}
		if a, ok := varApprox[base]; ok {
			d.notes = append(d.notes, a)
		}
		if !slices.Contains(v.fields, f) {
			v.fields = append(v.fields, f)
		}
	}
	if len(v.fields) == 0 {
		return v, fmt.Errorf("no variable deepwall can inspect in %q", list)
	}
	switch {
	case named == 0:
	case named == vars:
		m.Names, m.NameRegex = names, nameRx
	default:
		// Named and whole variables together (ARGS:x|REQUEST_HEADERS):
		// one condition cannot select names on some fields only.
		d.notes = append(d.notes, fmt.Sprintf("named variables of %q matched as every value", list))
	}
	for _, e := range excl {
		// An exclusion of a collection the condition does not inspect (or
		// counts) removes nothing deepwall can leave out.
		if f, _, _ := strings.Cut(e, ":"); slices.Contains(v.fields, f) && !v.counting && !slices.Contains(m.Except, e) {
			m.Except = append(m.Except, e)
		}
	}
	if len(v.fields) > rules.MaxCondFields {
		return v, fmt.Errorf("%d fields (limit %d)", len(v.fields), rules.MaxCondFields)
	}
	setFields(m, v.fields)
	return v, nil
}

// transformations translates a chain link's own t: list into a transform
// chain; length reports t:length (the value's length, compared through a
// pattern on the transformed value).
func transformations(d *draft, acts []Action, v condVars, prev *rules.MatchSpec) (chain []string, length bool, err error) {
	for _, a := range acts {
		if a.Name != "t" {
			continue
		}
		tr := strings.ToLower(strings.TrimSpace(a.Value))
		if length {
			return nil, false, fmt.Errorf("transformation t:%s after t:length is not supported", a.Value)
		}
		if tr == "none" {
			chain = chain[:0]
			continue
		}
		if tr == "length" {
			length = true
			continue
		}
		x, ok := transformOf[tr]
		if !ok {
			return nil, false, fmt.Errorf("transformation t:%s is not supported", a.Value)
		}
		if x == "" {
			continue // no effect on matching (t:length is handled by the operator check below)
		}
		chain = append(chain, x)
	}
	if v.matchedVars {
		// MATCHED_VARS holds the values as the previous link transformed
		// them; this link's own transformations apply on top.
		chain = append(slices.Clone(prev.Transforms), chain...)
	}
	if len(chain) > transform.MaxChainLen {
		return nil, false, fmt.Errorf("%d transformations (limit %d)", len(chain), transform.MaxChainLen)
	}
	stream := false
	for _, f := range v.fields {
		if ff, err := rules.ParseField(f); err == nil && ff.Stream() {
			stream = true
		}
	}
	if stream {
		// Block-only transforms cannot run on a body stream.
		kept := chain[:0:0]
		for _, x := range chain {
			if tr, err := transform.Parse(x); err == nil && tr.BlockOnly() {
				d.notes = append(d.notes, "t:"+x+" not applied to the body stream")
				continue
			}
			kept = append(kept, x)
		}
		chain = kept
	}
	return chain, length, nil
}

// operator translates a SecRule operator (name and its expanded param)
// into what m matches: a regex, phrases or a detector.
func (t *translator) operator(d *draft, m *rules.MatchSpec, name, param string, not bool) error {
	switch strings.ToLower(name) {
	case "@rx":
		if param == "" {
			return errors.New("@rx with an empty pattern")
		}
		m.Regex = param
		// Coraza compiles @rx with (?s), as ModSecurity with
		// PCRE_DOTALL: '.' matches a newline.
		m.Flags = []string{"dotall"}
		if param == "^$" {
			// "The value is empty": no byte at all.
			m.Regex, not = `[\s\S]`, !not
		}
	case "@pm", "@pmf", "@pmfromfile":
		var ph []string
		if strings.ToLower(name) == "@pm" {
			ph = strings.Fields(param)
		} else {
			for _, f := range strings.Fields(param) {
				p, err := t.dataFile(f)
				if err != nil {
					return err
				}
				ph = append(ph, p...)
			}
		}
		if len(ph) == 0 {
			return fmt.Errorf("%s with no phrases", name)
		}
		m.Phrases = dedupe(ph)
		m.Flags = []string{"caseless"}
		if not && len(m.Phrases) <= maxNegatedPhrases {
			// "None of the phrases": one pattern, so that the negation
			// is over the whole list (a negated phrase list holds for a
			// value some phrase misses).
			m.Regex, m.Phrases = "(?:"+quoteAlternatives(m.Phrases)+")", nil
		}
	case "@detectsqli":
		m.Detect = rules.DetectSQLiAll
	case "@detectxss":
		m.Detect = "xss"
	case "@validateurlencoding":
		m.Detect = "invalid_url_encoding"
	case "@validateutf8encoding":
		m.Detect = "invalid_utf8"
	case "@streq":
		m.Regex = "^" + quoteMeta(param) + "$"
	case "@contains":
		m.Regex = quoteMeta(param)
	case "@beginswith":
		m.Regex = "^" + quoteMeta(param)
	case "@endswith":
		m.Regex = quoteMeta(param) + "$"
	case "@within":
		toks := strings.Fields(param)
		if len(toks) == 0 {
			return errors.New("@within with an empty list")
		}
		m.Regex = "^(?:" + quoteAlternatives(toks) + ")$"
		d.notes = append(d.notes, "@within matched as one of the list's words (not any substring of the list)")
	case "@validatebyterange":
		if not {
			return errors.New("!@validateByteRange is not supported")
		}
		cls, err := byteClass(param)
		if err != nil {
			return err
		}
		m.Regex = cls
	default:
		return fmt.Errorf("operator %s is not supported", name)
	}
	if (m.Regex != "" && strings.Contains(m.Regex, "\x00")) || m.Regex != "" && !utf8.ValidString(m.Regex) {
		return errors.New("pattern holds a NUL byte or invalid UTF-8")
	}
	if m.Regex == "" && m.Phrases == nil && m.Detect == "" {
		return fmt.Errorf("operator %s gave no condition", name)
	}
	if not {
		if m.Detect != "" {
			return fmt.Errorf("negated %s is not supported", name)
		}
		m.Not = true
	}
	return nil
}

// quoteAlternatives is the words as literal alternatives of a regex.
func quoteAlternatives(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = quoteMeta(w)
	}
	return strings.Join(q, "|")
}

// maxNegatedPhrases bounds the phrases of a negated @pm written as one
// alternation.
const maxNegatedPhrases = 256

// transformOf maps ModSecurity transformations to deepwall transforms; ""
// means the transformation does not change what is matched.
var transformOf = map[string]string{
	"urldecodeuni": "url_decode", "urldecode": "url_decode", "lowercase": "lowercase",
	"htmlentitydecode": "html_entity_decode", "jsdecode": "js_decode", "cssdecode": "css_decode",
	"removenulls": "remove_nulls", "replacenulls": "remove_nulls", "compresswhitespace": "compress_whitespace",
	"removewhitespace": "remove_whitespace", "cmdline": "cmd_line", "normalizepath": "normalize_path",
	"normalisepath": "normalize_path", "normalizepathwin": "normalize_path_win", "normalisepathwin": "normalize_path_win",
	"replacecomments": "replace_comments", "removecomments": "replace_comments", "removecommentschar": "remove_comments_char",
	"base64decode": "base64_decode", "base64decodeext": "base64_decode", "hexdecode": "hex_decode",
	"sqlhexdecode": "hex_decode", "escapeseqdecode": "escape_seq_decode", "utf8tounicode": "utf8_to_unicode",
	"trim": "trim", "trimleft": "trim", "trimright": "trim",
}

// expand replaces %{tx.name} macros with the rule set's defaults.
func (t *translator) expand(s string) (string, error) {
	for {
		i := strings.Index(s, "%{")
		if i < 0 {
			return s, nil
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return "", errors.New("unterminated %{ macro")
		}
		name := strings.ToLower(s[i+2 : i+j])
		v, ok := t.tx[name]
		if !ok {
			return "", fmt.Errorf("macro %%{%s} has no static value", s[i+2:i+j])
		}
		s = s[:i] + v + s[i+j+1:]
	}
}

func (t *translator) dataFile(name string) ([]string, error) {
	if p, ok := t.data[name]; ok {
		return p, nil
	}
	clean := path.Clean(name)
	if !fs.ValidPath(clean) {
		return nil, fmt.Errorf("@pmFromFile %s: not a file of the rule set's directory", name)
	}
	b, err := readBounded(t.fsys, clean)
	if err != nil {
		return nil, fmt.Errorf("@pmFromFile: %w", err)
	}
	var out []string
	for _, ln := range strings.Split(string(b), "\n") {
		ln = strings.TrimSpace(strings.TrimRight(ln, "\r"))
		if ln == "" || ln[0] == '#' {
			continue
		}
		if len(ln) > rules.MaxPhraseLen || !utf8.ValidString(ln) {
			continue
		}
		out = append(out, ln)
	}
	t.data[name] = out
	return out, nil
}

func dedupe(ph []string) []string {
	seen := map[string]bool{}
	out := ph[:0:0]
	for _, p := range ph {
		k := strings.ToLower(p)
		if !seen[k] {
			seen[k] = true
			out = append(out, p)
		}
	}
	return out
}

// quoteMeta escapes a literal for a Hyperscan regex (bytes that are not
// letters or digits as \xHH, which also keeps NUL out of the pattern).
func quoteMeta(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == ' ' || c == '_' || c == '-' || c == '/' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "\\x%02x", c)
	}
	return b.String()
}

// countOf translates a comparison on a counted variable.
func countOf(op, param string, not bool) (string, error) {
	ops := map[string]string{"@eq": "==", "@ne": "!=", "@lt": "<", "@le": "<=", "@gt": ">", "@ge": ">="}
	neg := map[string]string{"==": "!=", "!=": "==", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}
	o, ok := ops[strings.ToLower(op)]
	if !ok {
		return "", fmt.Errorf("operator %s on a count is not supported", op)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(param), 10, 31)
	if err != nil {
		return "", fmt.Errorf("count compared with %q, not a whole number", param)
	}
	if not {
		o = neg[o]
	}
	return o + " " + strconv.FormatUint(n, 10), nil
}

// maxLengthCompared bounds the lengths a comparison on t:length or
// REQUEST_BODY_LENGTH may name (the pattern repeats a byte that often).
const maxLengthCompared = 4096

// lengthOf translates a comparison of a value's length with a number
// into a pattern on the value: "at least n bytes" is ^[\s\S]{n}, and
// the other comparisons are it or its negation (a value has a length
// of exactly n when it has n bytes and not n+1).
func lengthOf(op, param string, not bool) (string, bool, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(param), 10, 31)
	if err != nil {
		return "", false, fmt.Errorf("length compared with %q, not a whole number", param)
	}
	if n >= maxLengthCompared {
		return "", false, fmt.Errorf("length compared with %d (limit %d)", n, maxLengthCompared-1)
	}
	atLeast := func(k uint64) string {
		if k == 1 {
			return `[\s\S]`
		}
		return `^[\s\S]{` + strconv.FormatUint(k, 10) + `}`
	}
	var re string
	var neg bool
	switch strings.ToLower(op) {
	case "@gt": // >= n+1
		re = atLeast(n + 1)
	case "@ge":
		if n == 0 {
			return "", false, errors.New("length @ge 0 always holds")
		}
		re = atLeast(n)
	case "@lt": // not >= n
		if n == 0 {
			return "", false, errors.New("length @lt 0 never holds")
		}
		re, neg = atLeast(n), true
	case "@le": // not >= n+1
		re, neg = atLeast(n+1), true
	case "@eq":
		if n != 0 {
			return "", false, errors.New("length @eq N (N > 0) is not supported")
		}
		re, neg = atLeast(1), true
	default:
		return "", false, fmt.Errorf("operator %s on a length is not supported", op)
	}
	if not {
		neg = !neg
	}
	return re, neg, nil
}

// byteClass turns @validateByteRange's allowed ranges ("1-255", "9,10,13,32-126")
// into a regex matching any byte outside them.
func byteClass(param string) (string, error) {
	var allowed [256]bool
	for _, part := range strings.Split(param, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 8)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.ParseUint(strings.TrimSpace(hi), 10, 8)
		}
		if err1 != nil || err2 != nil || b < a {
			return "", fmt.Errorf("@validateByteRange %q: bad range %q", param, part)
		}
		for c := a; c <= b; c++ {
			allowed[c] = true
		}
	}
	var b strings.Builder
	b.WriteByte('[')
	n := 0
	for c := 0; c < 256; {
		if allowed[c] {
			c++
			continue
		}
		e := c
		for e+1 < 256 && !allowed[e+1] {
			e++
		}
		fmt.Fprintf(&b, "\\x%02x", c)
		if e > c {
			fmt.Fprintf(&b, "-\\x%02x", e)
		}
		n++
		c = e + 1
	}
	if n == 0 {
		return "", fmt.Errorf("@validateByteRange %q allows every byte", param)
	}
	b.WriteByte(']')
	return b.String(), nil
}

// yRule is a rule as the rule file writes it.
type yRule struct {
	yHead `yaml:",inline"`
	Match []*rules.MatchSpec `yaml:"match,omitempty"`
}

// yOne is a rule of one condition, written as a mapping.
type yOne struct {
	yHead `yaml:",inline"`
	Match *rules.MatchSpec `yaml:"match"`
}

type yHead struct {
	ID       uint32    `yaml:"id"`
	Name     string    `yaml:"name,omitempty"`
	Action   string    `yaml:"action"`
	Severity string    `yaml:"severity,omitempty"`
	Category string    `yaml:"category,omitempty"`
	Score    int       `yaml:"score,omitempty"`
	Paranoia int       `yaml:"paranoia,omitempty"`
	Anomaly  *yAnomaly `yaml:"anomaly,omitempty"`
}

type yAnomaly struct {
	Direction string `yaml:"direction"`
	Threshold int    `yaml:"threshold"`
}

// setFields writes fs as field: when there is one, fields: otherwise.
func setFields(m *rules.MatchSpec, fs []string) {
	if len(fs) == 1 {
		m.Field, m.Fields = fs[0], nil
		return
	}
	m.Field, m.Fields = "", fs
}

// allFields returns the fields of m's field: or fields:.
func allFields(m *rules.MatchSpec) []string {
	if m.Field != "" {
		return []string{m.Field}
	}
	return m.Fields
}

// render writes the rule file.
func (t *translator) render() ([]byte, error) {
	var seq yaml.Node
	seq.Kind = yaml.SequenceNode
	for _, d := range t.out {
		var n yaml.Node
		r := d.rule
		var v any = r
		if len(r.Match) == 1 {
			// A single condition is written as a mapping.
			v = yOne{yHead: r.yHead, Match: r.Match[0]}
		}
		if err := n.Encode(v); err != nil {
			return nil, fmt.Errorf("rule %d: %w", r.ID, err)
		}
		n.HeadComment = fmt.Sprintf("%s:%d", d.file, d.line)
		seq.Content = append(seq.Content, &n)
	}
	doc := &yaml.Node{Kind: yaml.MappingNode}
	pl := max(t.opts.ParanoiaLevel, 1)
	doc.Content = append(doc.Content,
		&yaml.Node{Kind: yaml.ScalarNode, Value: "paranoia_level"}, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(pl)},
		&yaml.Node{Kind: yaml.ScalarNode, Value: "rules"}, &seq)
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Generated by deepwall rules import-crs from %d files: %d rules translated, %d not translated\n",
		len(t.fileSet()), len(t.out), len(t.skipped))
	b.WriteString("# (listed at the end of this file). Do not edit: re-run the import.\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	if len(t.skipped) > 0 {
		b.WriteString("# Not translated:\n")
		for _, s := range t.skipped {
			b.WriteString("#   " + strings.ReplaceAll(s.String(), "\n", " ") + "\n")
		}
	}
	return b.Bytes(), nil
}

func (t *translator) fileSet() map[string]bool {
	m := map[string]bool{}
	for _, d := range t.out {
		m[d.file] = true
	}
	for _, s := range t.skipped {
		m[s.File] = true
	}
	return m
}

// maxRounds bounds the validate-and-drop passes.
const maxRounds = 64

// validate parses (and unless NoCompile, compiles at the highest
// paranoia level) the translated rules, moving every rule deepwall
// refuses to the untranslated list with its error, until the rest is
// valid. Approximations of the rules kept are recorded.
func (t *translator) validate() error {
	for round := 0; ; round++ {
		if round == maxRounds {
			return errors.New("import crs: translated rules still invalid after many passes")
		}
		y, err := t.render()
		if err != nil {
			return fmt.Errorf("import crs: %w", err)
		}
		set, err := rules.Parse("crs.yaml", y)
		if err == nil && !t.opts.NoCompile {
			set.ParanoiaLevel = rules.MaxParanoia
			var c *rules.Compiled
			if c, err = rules.Compile(set); err == nil {
				_ = c.Close()
			}
		}
		if err == nil {
			break
		}
		var el rules.ErrorList
		if !errors.As(err, &el) {
			return fmt.Errorf("import crs: %w", err)
		}
		bad := map[uint32]string{}
		for _, e := range el {
			id := e.RuleID
			if id == 0 && e.Rule > 0 && e.Rule <= len(t.out) {
				id = t.out[e.Rule-1].rule.ID
			}
			if id == 0 {
				return fmt.Errorf("import crs: %w", err)
			}
			if _, ok := bad[id]; !ok {
				bad[id] = e.Msg
			}
		}
		kept := t.out[:0]
		for _, d := range t.out {
			if msg, ok := bad[d.rule.ID]; ok {
				t.skip(d.file, d.line, d.rule.ID, "deepwall refuses the translation: "+msg)
				continue
			}
			kept = append(kept, d)
		}
		t.out = kept
	}
	for _, d := range t.out {
		for _, n := range d.notes {
			t.approx = append(t.approx, Note{File: d.file, Line: d.line, ID: d.rule.ID, Reason: n})
		}
	}
	sort.SliceStable(t.skipped, func(i, j int) bool {
		a, b := t.skipped[i], t.skipped[j]
		if a.File != b.File {
			return a.File < b.File
		}
		return a.Line < b.Line
	})
	return nil
}
