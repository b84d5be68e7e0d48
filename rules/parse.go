package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/deepwall/deepwall/rules/transform"
)

// Keys of the rule language, by level.
var (
	topKeys     = []string{"rules", "include", "acl_default", "paranoia_level"}
	ruleKeys    = []string{"id", "name", "description", "action", "severity", "category", "enabled", "proto", "src", "dst", "src_port", "dst_port", "app_proto", "app_proto_not", "match", "score", "paranoia", "anomaly", "exempts"}
	matchKeys   = []string{"field", "fields", "regex", "phrases", "flags", "transforms", "multi_match", "validate", "detect", "not", "count", "except", "name", "name_regex", "compare"}
	compareKeys = []string{"group", "op", "field", "with_group", "not"}
	anomalyKeys = []string{"direction", "threshold"}
	flagNames   = []string{"caseless", "dotall", "multiline", "utf8"}
)

var categoryRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// ParseFile reads, validates and returns the rule set in path and the files
// it includes. A set that fails validation is never returned: the error
// is an ErrorList with every problem found (errors.Is(err, ErrInvalid)).
func ParseFile(path string) (*Set, error) {
	data, err := readOS(path)
	if err != nil {
		return nil, fmt.Errorf("load rules: %w", err)
	}
	return Parse(path, data)
}

// Parse validates the rule set in data; name is the file name used in
// errors and to resolve include: paths on the local file system.
//
// Includes are read from the local file system, so data from an untrusted
// source should go through ParseFS with a file system that holds only what
// it may include.
func Parse(name string, data []byte) (*Set, error) {
	l := newLoader(readOS, filepath.Join, filepath.Dir, filepath.Glob, filepath.IsAbs)
	return l.run(name, data)
}

// ParseFS is ParseFile for a file system: name and includes are slash
// paths in fsys, and nothing outside it is read.
func ParseFS(fsys fs.FS, name string) (*Set, error) {
	read := func(p string) ([]byte, error) {
		if fi, err := fs.Stat(fsys, p); err != nil {
			return nil, err
		} else if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%s is not a regular file", p)
		}
		return readLimited(func(p string) (io.ReadCloser, error) { return fsys.Open(p) }, p)
	}
	data, err := read(name)
	if err != nil {
		return nil, fmt.Errorf("load rules: %w", err)
	}
	glob := func(p string) ([]string, error) { return fs.Glob(fsys, p) }
	l := newLoader(read, path.Join, path.Dir, glob, func(string) bool { return false })
	l.abs = path.Clean
	return l.run(name, data)
}

// readOS reads a rule file from the local file system; devices, pipes and
// other special files are refused (opening a FIFO would block).
func readOS(p string) ([]byte, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", p)
	}
	return readLimited(os.Open, p)
}

func readLimited[F io.ReadCloser](open func(string) (F, error), p string) ([]byte, error) {
	f, err := open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", p, MaxFileSize)
	}
	return data, nil
}

// loader walks YAML nodes into a Set, collecting errors.
type loader struct {
	set   *Set
	errs  errorSink
	ids   map[uint32]*Rule
	stack []string            // include chain (absolute paths)
	seen  map[string]Position // files read, and the include that read them
	nodes int                 // YAML nodes visited in the current file
	full  bool                // too many rules: stop adding

	read  func(string) ([]byte, error)
	join  func(...string) string
	dir   func(string) string
	abs   func(string) string
	glob  func(string) ([]string, error)
	isAbs func(string) bool
}

func newLoader(read func(string) ([]byte, error), join func(...string) string, dir func(string) string,
	glob func(string) ([]string, error), isAbs func(string) bool) *loader {
	return &loader{
		set:  &Set{},
		ids:  map[uint32]*Rule{},
		seen: map[string]Position{},
		read: read, join: join, dir: dir, glob: glob, isAbs: isAbs,
		abs: func(p string) string {
			if a, err := filepath.Abs(p); err == nil {
				return a
			}
			return filepath.Clean(p)
		},
	}
}

func (l *loader) run(name string, data []byte) (*Set, error) {
	l.seen[l.abs(name)] = Position{}
	l.file(name, data, 0)
	for _, r := range l.set.Rules {
		for _, m := range r.Conditions() {
			m.src.src = nil // the file's bytes were needed only to place errors
		}
	}
	if err := l.errs.err(); err != nil {
		return nil, err
	}
	return l.set, nil
}

// fileCtx is one file being read.
type fileCtx struct {
	name  string
	src   []byte
	depth int
	rules int // rules seen so far, for "rule #N"
}

func (f *fileCtx) pos(n *yaml.Node) Position {
	return Position{File: f.name, Line: n.Line, Column: n.Column}
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlError places a yaml.v3 syntax error. yaml.v3 reports the line where
// the enclosing construct starts (or no line at all), so the problem's line
// is found as the shortest prefix of the file that fails the same way; the
// column is that line's first non-blank character.
func (l *loader) yamlError(f *fileCtx, err error) {
	msg := yamlMessage(err)
	line := 1
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
	}
	if n := yamlProblemLine(f.src, msg); n > 0 {
		line = n
	}
	pos := Position{File: f.name, Line: line, Column: firstColumn(f.src, line)}
	l.errs.add(&Error{Pos: pos, Msg: "yaml: " + msg, Err: err})
}

// yamlMessage is a yaml.v3 error without its "yaml: line N: " prefix.
func yamlMessage(err error) string {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		return m[2]
	}
	return strings.TrimPrefix(msg, "yaml: ")
}

// yamlProblemLine returns the smallest n such that the first n lines of src
// fail to parse with message msg, or 0.
func yamlProblemLine(src []byte, msg string) int {
	starts := []int{0}
	for i, c := range src {
		if c == '\n' && i+1 < len(src) {
			starts = append(starts, i+1)
		}
	}
	fails := func(n int) bool {
		end := len(src)
		if n < len(starts) {
			end = starts[n]
		}
		dec := yaml.NewDecoder(bytes.NewReader(src[:end]))
		for i := 0; i < 2; i++ {
			var doc yaml.Node
			err := dec.Decode(&doc)
			if err == nil {
				continue
			}
			return !errors.Is(err, io.EOF) && yamlMessage(err) == msg
		}
		return false
	}
	lo, hi := 1, len(starts)
	if !fails(hi) {
		return 0
	}
	for lo < hi {
		mid := (lo + hi) / 2
		if fails(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// firstColumn is the 1-based column of the first non-blank character of
// line n (1-based) in src.
func firstColumn(src []byte, n int) int {
	line := lineOf(src, n)
	col := 1
	for _, c := range line {
		if c != ' ' && c != '\t' {
			break
		}
		col++
	}
	if col > len(line) {
		return 1
	}
	return col
}

// lineOf returns line n (1-based) of src without its newline.
func lineOf(src []byte, n int) []byte {
	for i := 1; i < n; i++ {
		j := bytes.IndexByte(src, '\n')
		if j < 0 {
			return nil
		}
		src = src[j+1:]
	}
	if j := bytes.IndexByte(src, '\n'); j >= 0 {
		src = src[:j]
	}
	return bytes.TrimSuffix(src, []byte{'\r'})
}

func (l *loader) file(name string, data []byte, depth int) {
	f := &fileCtx{name: name, src: data, depth: depth}
	l.set.Files = append(l.set.Files, name)
	l.stack = append(l.stack, l.abs(name))
	defer func() { l.stack = l.stack[:len(l.stack)-1] }()
	l.nodes = 0

	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return // an empty file holds no rules
		}
		l.yamlError(f, err)
		return
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		l.errs.add(&Error{Pos: f.pos(&extra), Msg: "a rule file holds one YAML document; remove the second '---'"})
		return
	} else if !errors.Is(err, io.EOF) {
		l.yamlError(f, err)
		return
	}
	if len(doc.Content) == 0 {
		return
	}
	root := l.resolve(f, doc.Content[0])
	if root == nil {
		return
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return
	}
	if root.Kind != yaml.MappingNode {
		l.errs.errorf(f.pos(root), nil, "the top level of a rule file must be a mapping with rules:, include: and acl_default:")
		return
	}
	for _, kv := range l.pairs(f, root, nil, topKeys, "the top level") {
		switch kv.key {
		case "rules":
			seq := l.resolve(f, kv.val)
			if seq == nil {
				continue
			}
			if seq.Kind == yaml.ScalarNode && seq.Tag == "!!null" {
				continue
			}
			if seq.Kind != yaml.SequenceNode {
				l.errs.errorf(f.pos(seq), nil, "rules: must be a list of rules (each starting with '- ')")
				continue
			}
			for _, item := range seq.Content {
				if l.full || l.errs.saturated(f.name) || l.nodes >= maxYAMLNodes {
					break
				}
				l.rule(f, item)
			}
		case "include":
			for _, n := range l.list(f, kv.val, nil, "include") {
				l.include(f, n)
			}
		case "paranoia_level":
			if depth > 0 {
				l.errs.errorf(f.pos(kv.keyNode), nil, "paranoia_level may only be set in the top-level rule file")
				continue
			}
			if v, ok := l.smallInt(f, kv.val, nil, "paranoia_level", 1, MaxParanoia); ok {
				l.set.ParanoiaLevel = v
			}
		case "acl_default":
			if depth > 0 {
				l.errs.errorf(f.pos(kv.keyNode), nil, "acl_default may only be set in the top-level rule file")
				continue
			}
			v, ok := l.scalar(f, kv.val, nil, "acl_default")
			if !ok {
				continue
			}
			switch v {
			case "allow":
				l.set.ACLDefault = ActionAllow
			case "block":
				l.set.ACLDefault = ActionBlock
			default:
				l.errs.errorf(f.pos(kv.val), nil, "acl_default must be allow or block, not %q", v)
			}
		}
	}
}

func (l *loader) include(f *fileCtx, n *yaml.Node) {
	pat, ok := l.scalar(f, n, nil, "include")
	if !ok {
		return
	}
	if pat == "" {
		l.errs.errorf(f.pos(n), nil, "include: empty file name")
		return
	}
	p := pat
	if !l.isAbs(p) {
		p = l.join(l.dir(f.name), p)
	}
	paths := []string{p}
	if strings.ContainsAny(pat, "*?[") {
		var err error
		paths, err = l.glob(p)
		if err != nil {
			l.errs.errorf(f.pos(n), nil, "include %q: %v", pat, err)
			return
		}
		if len(paths) == 0 {
			l.errs.errorf(f.pos(n), nil, "include %q matches no file", pat)
			return
		}
		sort.Strings(paths)
	}
	for _, p := range paths {
		if f.depth+1 > MaxIncludeDepth {
			l.errs.errorf(f.pos(n), nil, "include %q: includes nest deeper than %d files", pat, MaxIncludeDepth)
			return
		}
		a := l.abs(p)
		for i, s := range l.stack {
			if s == a {
				chain := append(append([]string{}, l.stack[i:]...), a)
				for j := range chain {
					chain[j] = filepath.Base(chain[j])
				}
				l.errs.errorf(f.pos(n), nil, "include cycle: %s", strings.Join(chain, " -> "))
				return
			}
		}
		if prev, dup := l.seen[a]; dup {
			where := "as the top-level file"
			if prev.File != "" {
				where = "at " + prev.String()
			}
			l.errs.errorf(f.pos(n), nil, "include %q: file already included %s", pat, where)
			continue
		}
		if len(l.set.Files) >= MaxIncludes {
			l.errs.errorf(f.pos(n), nil, "include %q: more than %d files in one rule set", pat, MaxIncludes)
			return
		}
		l.seen[a] = f.pos(n)
		data, err := l.read(p)
		if err != nil {
			l.errs.errorf(f.pos(n), nil, "include %q: %v", pat, unwrapPathError(err))
			continue
		}
		l.file(p, data, f.depth+1)
	}
}

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// resolve follows aliases and counts visited nodes against maxYAMLNodes.
func (l *loader) resolve(f *fileCtx, n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 16; i++ {
		n = n.Alias
	}
	if n == nil || n.Kind == yaml.AliasNode {
		return nil
	}
	l.nodes++
	if l.nodes == maxYAMLNodes {
		l.errs.errorf(f.pos(n), nil, "file too complex (more than %d YAML nodes, aliases expanded)", maxYAMLNodes)
	}
	if l.nodes >= maxYAMLNodes {
		return nil
	}
	return n
}

type keyVal struct {
	key          string
	keyNode, val *yaml.Node
}

// pairs returns the entries of mapping n, reporting duplicate, merge and
// unknown keys (with the closest known key).
func (l *loader) pairs(f *fileCtx, n *yaml.Node, r *Rule, known []string, where string) []keyVal {
	out := make([]keyVal, 0, len(n.Content)/2)
	first := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := l.resolve(f, n.Content[i])
		if k == nil {
			continue
		}
		if k.Kind != yaml.ScalarNode {
			l.errs.errorf(f.pos(k), r, "keys in %s must be plain names", where)
			continue
		}
		if k.Tag == "!!merge" {
			l.errs.errorf(f.pos(k), r, "merge keys (<<) are not supported")
			continue
		}
		if prev, dup := first[k.Value]; dup {
			l.errs.errorf(f.pos(k), r, "duplicate key %q (first at line %d)", k.Value, prev.Line)
			continue
		}
		first[k.Value] = k
		if !slices.Contains(known, k.Value) {
			l.errs.errorf(f.pos(k), r, "%s", unknownKey(k.Value, known, where))
			continue
		}
		out = append(out, keyVal{key: k.Value, keyNode: k, val: n.Content[i+1]})
	}
	return out
}

func unknownKey(k string, known []string, where string) string {
	msg := fmt.Sprintf("unknown key %q in %s", k, where)
	switch {
	case where == "a rule" && slices.Contains(matchKeys, k):
		return msg + fmt.Sprintf("; %q belongs under match:", k)
	case where == "match:" && slices.Contains(ruleKeys, k):
		return msg + fmt.Sprintf("; %q belongs to the rule, not under match:", k)
	}
	if s := closest(k, known); s != "" {
		return msg + fmt.Sprintf("; did you mean %q?", s)
	}
	return msg + "; known keys: " + strings.Join(known, ", ")
}

// closest returns the candidate nearest to s by edit distance, if it is
// near enough to be a likely typo.
func closest(s string, candidates []string) string {
	best, bestD := "", 1<<30
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(s), c); d < bestD {
			best, bestD = c, d
		}
	}
	if bestD <= 2 || (bestD <= 3 && len(s) >= 8) {
		return best
	}
	return ""
}

// editDistance is the optimal-string-alignment distance: insertions,
// deletions, substitutions and adjacent transpositions count one each.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30
	}
	pp, prev, cur := make([]int, len(b)+1), make([]int, len(b)+1), make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], pp[j-2]+1)
			}
		}
		pp, prev, cur = prev, cur, pp
	}
	return prev[len(b)]
}

// scalar returns the string value of a scalar node.
func (l *loader) scalar(f *fileCtx, n *yaml.Node, r *Rule, key string) (string, bool) {
	n = l.resolve(f, n)
	if n == nil {
		return "", false
	}
	if n.Kind != yaml.ScalarNode {
		l.errs.errorf(f.pos(n), r, "%s must be a single value, not a %s", key, kindName(n))
		return "", false
	}
	if n.Tag == "!!null" {
		l.errs.errorf(f.pos(n), r, "%s has no value", key)
		return "", false
	}
	return n.Value, true
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	}
	return "value"
}

// list returns the scalar items of a scalar-or-sequence value.
func (l *loader) list(f *fileCtx, n *yaml.Node, r *Rule, key string) []*yaml.Node {
	n = l.resolve(f, n)
	if n == nil {
		return nil
	}
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			l.errs.errorf(f.pos(n), r, "%s has no value", key)
			return nil
		}
		return []*yaml.Node{n}
	case yaml.SequenceNode:
		if len(n.Content) == 0 {
			l.errs.errorf(f.pos(n), r, "%s is an empty list; leave the key out to match anything", key)
			return nil
		}
		if len(n.Content) > MaxListLen {
			l.errs.errorf(f.pos(n), r, "%s has more than %d entries", key, MaxListLen)
			return nil
		}
		out := make([]*yaml.Node, 0, len(n.Content))
		for _, c := range n.Content {
			c = l.resolve(f, c)
			if c == nil {
				continue
			}
			if c.Kind != yaml.ScalarNode || c.Tag == "!!null" {
				l.errs.errorf(f.pos(c), r, "entries of %s must be single values", key)
				continue
			}
			out = append(out, c)
		}
		return out
	}
	l.errs.errorf(f.pos(n), r, "%s must be a value or a list of values, not a mapping", key)
	return nil
}

func (l *loader) rule(f *fileCtx, item *yaml.Node) {
	f.rules++
	n := l.resolve(f, item)
	if n == nil {
		return
	}
	r := &Rule{Pos: f.pos(n), Severity: SeverityMedium, index: f.rules, at: map[string]Position{}}
	if n.Kind != yaml.MappingNode {
		l.errs.errorf(f.pos(n), r, "a rule must be a mapping of keys (id:, action:, ...)")
		return
	}
	// The id first, so every error below can name the rule.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; k.Kind == yaml.ScalarNode && k.Value == "id" {
			r.at["id"] = f.pos(n.Content[i+1])
			l.ruleID(f, n.Content[i+1], r)
			break
		}
	}
	for _, kv := range l.pairs(f, n, r, ruleKeys, "a rule") {
		r.at[kv.key] = f.pos(kv.val)
		l.ruleKey(f, kv, r)
	}
	if _, ok := r.at["id"]; !ok {
		l.errs.errorf(r.Pos, r, "rule has no id:")
	}
	if _, ok := r.at["action"]; !ok {
		l.errs.errorf(r.Pos, r, "rule has no action: (block, alert or allow)")
	}
	checkRule(r, &l.errs, true)
	if l.full {
		return
	}
	if len(l.set.Rules) >= MaxRules {
		l.full = true
		l.errs.errorf(r.Pos, r, "more than %d rules in one set", MaxRules)
		return
	}
	l.set.Rules = append(l.set.Rules, r)
}

// ruleKey reads the value of one key of ruleKeys into r.
func (l *loader) ruleKey(f *fileCtx, kv keyVal, r *Rule) {
	switch kv.key {
	case "id": // read first, by rule
	case "name":
		r.Name = l.text(f, kv, r, MaxNameLen)
	case "description":
		r.Description = l.text(f, kv, r, MaxTextLen)
	case "action":
		l.action(f, kv.val, r)
	case "severity":
		l.severity(f, kv.val, r)
	case "category":
		if v, ok := l.scalar(f, kv.val, r, "category"); ok {
			if !categoryRE.MatchString(v) {
				l.errs.errorf(f.pos(kv.val), r, "category %q must be 1-32 lower-case letters, digits, '_' or '-'", v)
			}
			r.Category = v
		}
	case "enabled":
		if b, ok := l.boolValue(f, kv.val, r, "enabled"); ok {
			r.Disabled = !b
		}
	case "proto":
		l.proto(f, kv.val, r)
	case "src":
		r.Src = l.prefixes(f, kv, r)
	case "dst":
		r.Dst = l.prefixes(f, kv, r)
	case "src_port":
		r.SrcPorts = l.ports(f, kv, r)
	case "dst_port":
		r.DstPorts = l.ports(f, kv, r)
	case "app_proto":
		r.AppProto = l.appProtos(f, kv, r)
	case "app_proto_not":
		r.AppProtoNot = l.appProtos(f, kv, r)
	case "match":
		l.matches(f, kv.val, r)
	case "score":
		if v, ok := l.smallInt(f, kv.val, r, "score", 1, MaxScore); ok {
			r.Score = v
		}
	case "paranoia":
		if v, ok := l.smallInt(f, kv.val, r, "paranoia", 1, MaxParanoia); ok {
			r.Paranoia = v
		}
	case "anomaly":
		r.Anomaly = l.anomaly(f, kv.val, r)
	case "exempts":
		r.Exempts = listOf(l, f, kv, r, func(a *yaml.Node) (IDRange, bool) { return l.idRange(f, a, r) })
	}
}

// idRange reads one entry of exempts:, a rule id (942100) or a range of
// them ("942000-942999").
func (l *loader) idRange(f *fileCtx, n *yaml.Node, r *Rule) (IDRange, bool) {
	a, b, ok := l.numRange(f, n, r, "exempts", parseRuleID)
	return IDRange{Lo: a, Hi: b}, ok
}

// parseRuleID reads a rule id as id: accepts it (0x1F, 942_100).
func parseRuleID(s string) (uint32, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("missing rule id (write 942100 or 942000-942999)")
	}
	v, err := strconv.ParseUint(strings.ReplaceAll(s, "_", ""), 0, 32)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("%q is not a rule id (1 to %d)", s, uint32(1<<32-1))
	}
	return uint32(v), nil
}

// text reads a string of at most max bytes (name:, description:).
func (l *loader) text(f *fileCtx, kv keyVal, r *Rule, max int) string {
	v, ok := l.scalar(f, kv.val, r, kv.key)
	if ok && len(v) > max {
		l.errs.errorf(f.pos(kv.val), r, "%s is longer than %d bytes", kv.key, max)
	}
	return v
}

// action reads action:.
func (l *loader) action(f *fileCtx, n *yaml.Node, r *Rule) {
	v, ok := l.scalar(f, n, r, "action")
	if !ok {
		return
	}
	switch v {
	case "allow":
		r.Action = ActionAllow
	case "alert":
		r.Action = ActionAlert
	case "block":
		r.Action = ActionBlock
	default:
		l.errs.errorf(f.pos(n), r, "action must be block, alert or allow, not %q%s", v, didYouMean(v, []string{"block", "alert", "allow"}))
	}
}

// severity reads severity:.
func (l *loader) severity(f *fileCtx, n *yaml.Node, r *Rule) {
	v, ok := l.scalar(f, n, r, "severity")
	if !ok {
		return
	}
	for s := SeverityLow; s <= SeverityCritical; s++ {
		if s.String() == v {
			r.Severity = s
			return
		}
	}
	l.errs.errorf(f.pos(n), r, "severity must be low, medium, high or critical, not %q", v)
}

// prefixes reads src: or dst:, addresses, networks and container
// selectors (which containerRef records on r).
func (l *loader) prefixes(f *fileCtx, kv keyVal, r *Rule) []netip.Prefix {
	return listOf(l, f, kv, r, func(a *yaml.Node) (netip.Prefix, bool) {
		if l.containerRef(f, a, r, kv.key) {
			return netip.Prefix{}, false
		}
		return l.prefix(f, a, r, kv.key)
	})
}

// ports reads src_port: or dst_port:.
func (l *loader) ports(f *fileCtx, kv keyVal, r *Rule) []PortRange {
	return listOf(l, f, kv, r, func(a *yaml.Node) (PortRange, bool) { return l.portRange(f, a, r, kv.key) })
}

// listOf reads the list of kv with read, keeping the entries it accepts.
func listOf[T any](l *loader, f *fileCtx, kv keyVal, r *Rule, read func(*yaml.Node) (T, bool)) []T {
	var out []T
	for _, a := range l.list(f, kv.val, r, kv.key) {
		if v, ok := read(a); ok {
			out = append(out, v)
		}
	}
	return out
}

// appProtos reads app_proto: or app_proto_not:.
func (l *loader) appProtos(f *fileCtx, kv keyVal, r *Rule) []string {
	var out []string
	for _, a := range l.list(f, kv.val, r, kv.key) {
		v := strings.ToLower(a.Value)
		if !knownAppProto(v) {
			l.errs.errorf(f.pos(a), r, "unknown application protocol %q in %s%s; known: %s", a.Value, kv.key, didYouMean(v, AppProtocols), strings.Join(AppProtocols, ", "))
			continue
		}
		if slices.Contains(out, v) {
			l.errs.errorf(f.pos(a), r, "%s lists %q twice", kv.key, v)
			continue
		}
		out = append(out, v)
	}
	return out
}

func didYouMean(s string, known []string) string {
	if c := closest(s, known); c != "" {
		return fmt.Sprintf(" (did you mean %q?)", c)
	}
	return ""
}

func (l *loader) ruleID(f *fileCtx, n *yaml.Node, r *Rule) {
	n = l.resolve(f, n)
	if n == nil {
		return
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		l.errs.errorf(f.pos(n), r, "id must be a whole number from 1 to %d", uint32(1<<32-1))
		return
	}
	v, err := parseRuleID(n.Value)
	if err != nil {
		l.errs.errorf(f.pos(n), r, "id %s is out of range: ids are 1 to %d (0 means no rule)", n.Value, uint32(1<<32-1))
		return
	}
	r.ID = v
	if prev, dup := l.ids[r.ID]; dup {
		l.errs.errorf(f.pos(n), r, "duplicate id %d (first used at %s)", r.ID, prev.posOf("id"))
		return
	}
	l.ids[r.ID] = r
}

func (l *loader) proto(f *fileCtx, n *yaml.Node, r *Rule) {
	v, ok := l.scalar(f, n, r, "proto")
	if !ok {
		return
	}
	if p, ok := protoNames[strings.ToLower(v)]; ok {
		r.Proto = p
		return
	}
	if num, err := strconv.ParseUint(v, 10, 8); err == nil {
		r.Proto = uint8(num)
		return
	}
	names := make([]string, 0, len(protoNames))
	for k := range protoNames {
		names = append(names, k)
	}
	sort.Strings(names)
	l.errs.errorf(f.pos(n), r, "unknown proto %q%s: use %s or a number 0-255", v, didYouMean(v, names), strings.Join(names, ", "))
}

func (l *loader) prefix(f *fileCtx, n *yaml.Node, r *Rule, key string) (netip.Prefix, bool) {
	s := strings.TrimSpace(n.Value)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			l.errs.errorf(f.pos(n), r, "%s: %q is not a valid CIDR (%s)", key, s, cidrReason(err))
			return netip.Prefix{}, false
		}
		if p.Addr().Zone() != "" {
			l.errs.errorf(f.pos(n), r, "%s: %q has a zone; zones are not supported", key, s)
			return netip.Prefix{}, false
		}
		if m := p.Masked(); m != p {
			l.errs.errorf(f.pos(n), r, "%s: %q has host bits set; did you mean %s?", key, s, m)
			return netip.Prefix{}, false
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p, true
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		l.errs.errorf(f.pos(n), r, "%s: %q is not an IP address or CIDR", key, s)
		return netip.Prefix{}, false
	}
	if a.Zone() != "" {
		l.errs.errorf(f.pos(n), r, "%s: %q has a zone; zones are not supported", key, s)
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), true
}

func cidrReason(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		return msg[i+2:]
	}
	return msg
}

func (l *loader) portRange(f *fileCtx, n *yaml.Node, r *Rule, key string) (PortRange, bool) {
	a, b, ok := l.numRange(f, n, r, key, parsePort)
	return PortRange{Lo: uint16(a), Hi: uint16(b)}, ok
}

// numRange reads "N" or "LO-HI" with parse reading each number.
func (l *loader) numRange(f *fileCtx, n *yaml.Node, r *Rule, key string, parse func(string) (uint32, error)) (uint32, uint32, bool) {
	s := strings.TrimSpace(n.Value)
	lo, hi, isRange := strings.Cut(s, "-")
	if !isRange {
		hi = lo
	}
	a, errA := parse(lo)
	b, errB := parse(hi)
	switch {
	case errA != nil:
		l.errs.errorf(f.pos(n), r, "%s: %q: %v", key, s, errA)
	case errB != nil:
		l.errs.errorf(f.pos(n), r, "%s: %q: %v", key, s, errB)
	case a > b:
		l.errs.errorf(f.pos(n), r, "%s: range %q is empty: %d is above %d", key, s, a, b)
	default:
		return a, b, true
	}
	return 0, 0, false
}

func parsePort(s string) (uint32, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("missing port number (write 80 or 8000-8080)")
	}
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a port number", s)
	}
	if v > 65535 {
		return 0, fmt.Errorf("port %d is above 65535", v)
	}
	return uint32(v), nil
}

// smallInt reads a whole number in [lo, hi].
func (l *loader) smallInt(f *fileCtx, n *yaml.Node, r *Rule, key string, lo, hi int) (int, bool) {
	n = l.resolve(f, n)
	if n == nil {
		return 0, false
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		l.errs.errorf(f.pos(n), r, "%s must be a whole number from %d to %d", key, lo, hi)
		return 0, false
	}
	v, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 32)
	if err != nil || v < int64(lo) || v > int64(hi) {
		l.errs.errorf(f.pos(n), r, "%s %s is out of range %d to %d", key, n.Value, lo, hi)
		return 0, false
	}
	return int(v), true
}

// anomaly reads a threshold rule's anomaly: mapping.
func (l *loader) anomaly(f *fileCtx, n *yaml.Node, r *Rule) *Threshold {
	n = l.resolve(f, n)
	if n == nil {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		l.errs.errorf(f.pos(n), r, "anomaly must be a mapping with direction: and threshold:")
		return nil
	}
	t := &Threshold{}
	for _, kv := range l.pairs(f, n, r, anomalyKeys, "anomaly:") {
		r.at["anomaly."+kv.key] = f.pos(kv.val)
		switch kv.key {
		case "direction":
			v, ok := l.scalar(f, kv.val, r, "direction")
			if !ok {
				continue
			}
			switch v {
			case "inbound":
				t.Direction = Inbound
			case "outbound":
				t.Direction = Outbound
			default:
				l.errs.errorf(f.pos(kv.val), r, "anomaly direction must be inbound or outbound, not %q", v)
			}
		case "threshold":
			if v, ok := l.smallInt(f, kv.val, r, "threshold", 1, MaxScore); ok {
				t.Score = v
			}
		}
	}
	if _, ok := r.at["anomaly.direction"]; !ok {
		l.errs.errorf(f.pos(n), r, "anomaly has no direction: (inbound or outbound)")
	}
	if _, ok := r.at["anomaly.threshold"]; !ok {
		l.errs.errorf(f.pos(n), r, "anomaly has no threshold:")
	}
	return t
}

// matches reads match:, one condition (a mapping) or a list of conditions
// that must all hold.
func (l *loader) matches(f *fileCtx, n *yaml.Node, r *Rule) {
	n = l.resolve(f, n)
	if n == nil {
		return
	}
	if n.Kind != yaml.SequenceNode {
		r.Match = l.match(f, n, r, 0)
		return
	}
	switch {
	case len(n.Content) == 0:
		l.errs.errorf(f.pos(n), r, "match is an empty list; give at least one condition")
		return
	case len(n.Content) > MaxConds:
		l.errs.errorf(f.pos(n), r, "match has more than %d conditions", MaxConds)
		return
	}
	for i, c := range n.Content {
		if m := l.match(f, c, r, i); m != nil {
			r.Conds = append(r.Conds, m)
		}
	}
	if len(r.Conds) > 0 {
		r.Match = r.Conds[0]
	}
	if len(r.Conds) == 1 {
		r.Conds = nil
	}
}

// parseFieldName reads one field name, reporting unknown ones.
func (l *loader) parseFieldName(f *fileCtx, n *yaml.Node, r *Rule) (Field, bool) {
	fld, err := ParseField(n.Value)
	if err != nil {
		v := n.Value
		msg := err.Error() + didYouMean(v, FieldNames())
		if !strings.HasPrefix(v, "http.header.") {
			msg += "; known: " + strings.Join(FieldNames(), ", ")
		}
		l.errs.errorf(f.pos(n), r, "%s", msg)
		return Field{}, false
	}
	return fld, true
}

// boolValue reads true or false.
func (l *loader) boolValue(f *fileCtx, n *yaml.Node, r *Rule, key string) (bool, bool) {
	n = l.resolve(f, n)
	if n == nil {
		return false, false
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		l.errs.errorf(f.pos(n), r, "%s must be true or false", key)
		return false, false
	}
	b, _ := strconv.ParseBool(n.Value)
	return b, true
}

// match reads one condition; i is its index in the rule's list.
func (l *loader) match(f *fileCtx, n *yaml.Node, r *Rule, i int) *Match {
	n = l.resolve(f, n)
	if n == nil {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		l.errs.errorf(f.pos(n), r, "match must be a mapping with field: and regex: (or phrases:, detect:, count:), or a list of them")
		return nil
	}
	c := &condReader{l: l, f: f, r: r, m: &Match{at: map[string]Position{"": f.pos(n)}}}
	for _, kv := range l.pairs(f, n, r, matchKeys, "match:") {
		c.m.at[kv.key] = f.pos(kv.val)
		if i == 0 {
			r.at["match."+kv.key] = f.pos(kv.val)
		}
		c.key(kv)
	}
	if !c.haveField {
		l.errs.errorf(f.pos(n), r, "match has no field:")
	}
	return c.m
}

// condReader reads the keys of one condition into m.
type condReader struct {
	l         *loader
	f         *fileCtx
	r         *Rule
	m         *Match
	haveField bool // a field: or fields: was given, valid or not
}

func (c *condReader) errorf(n *yaml.Node, format string, args ...any) {
	c.l.errs.errorf(c.f.pos(n), c.r, format, args...)
}

// key reads the value of one key of matchKeys.
func (c *condReader) key(kv keyVal) {
	l, f, r, m := c.l, c.f, c.r, c.m
	switch kv.key {
	case "field":
		c.field(kv)
	case "fields":
		c.fields(kv)
	case "phrases":
		c.phrases(kv.val)
	case "not":
		if b, ok := l.boolValue(f, kv.val, r, "not"); ok {
			m.Not = b
		}
	case "multi_match":
		if b, ok := l.boolValue(f, kv.val, r, "multi_match"); ok {
			m.MultiMatch = b
		}
	case "count":
		if v, ok := l.scalar(f, kv.val, r, "count"); ok {
			cnt, err := ParseCount(v)
			if err != nil {
				c.errorf(kv.val, "%v", err)
				return
			}
			m.Count = cnt
		}
	case "compare":
		m.Compare = l.compare(f, kv.val, r)
	case "except":
		m.Except = c.nameList(kv, m.Except)
	case "name":
		c.names(kv)
	case "name_regex":
		if v, ok := l.scalar(f, kv.val, r, "name_regex"); ok {
			re, err := compileNameRegex(v)
			if err != nil {
				c.errorf(kv.val, "%v", err)
				return
			}
			m.NameRegex, m.nameRx = v, re
		}
	case "regex":
		v := l.resolve(f, kv.val)
		if v == nil {
			return
		}
		if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
			c.errorf(v, "regex must be a string (quote it with single quotes)")
			return
		}
		m.Regex = v.Value
		m.src = newScalarSource(f, v)
	case "flags":
		c.flags(kv)
	case "transforms":
		c.transforms(kv)
	case "validate":
		if v, ok := l.scalar(f, kv.val, r, "validate"); ok {
			if _, known := transform.LookupValidator(v); !known {
				c.errorf(kv.val, "unknown validator %q%s; known: %s", v, didYouMean(v, transform.ValidatorNames()), strings.Join(transform.ValidatorNames(), ", "))
				return
			}
			m.Validate = v
		}
	case "detect":
		if v, ok := l.scalar(f, kv.val, r, "detect"); ok {
			if !knownDetector(v) {
				c.errorf(kv.val, "unknown detector %q%s: detect is one of %s", v, didYouMean(v, Detectors), strings.Join(Detectors, ", "))
				return
			}
			m.Detect = v
		}
	}
}

// field reads field:, one field name.
func (c *condReader) field(kv keyVal) {
	v := c.l.resolve(c.f, kv.val)
	if v == nil {
		return
	}
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
		c.errorf(v, "field must be a single field name (use fields: for a list)")
		return
	}
	c.haveField = true
	if fld, ok := c.l.parseFieldName(c.f, v, c.r); ok {
		if len(c.m.Fields) > 0 {
			c.errorf(kv.keyNode, "match has both field: and fields:; use one")
			return
		}
		c.m.Field = fld
	}
}

// fields reads fields:, a list of field names.
func (c *condReader) fields(kv keyVal) {
	m := c.m
	items := c.l.list(c.f, kv.val, c.r, "fields")
	c.haveField = c.haveField || len(items) > 0
	if len(items) > MaxCondFields {
		c.errorf(kv.val, "fields lists more than %d fields", MaxCondFields)
		return
	}
	if _, dup := m.at["field"]; dup {
		c.errorf(kv.keyNode, "match has both field: and fields:; use one")
		return
	}
	for _, a := range items {
		fld, ok := c.l.parseFieldName(c.f, a, c.r)
		if !ok {
			continue
		}
		if slices.Contains(m.Fields, fld) {
			c.errorf(a, "fields lists %s twice", fld)
			continue
		}
		m.Fields = append(m.Fields, fld)
	}
	if len(m.Fields) > 0 {
		m.Field = m.Fields[0]
	}
}

// phrases reads phrases:, a non-empty list of strings.
func (c *condReader) phrases(n *yaml.Node) {
	v := c.l.resolve(c.f, n)
	if v == nil {
		return
	}
	if v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
		c.errorf(v, "phrases must be a non-empty list of strings")
		return
	}
	if len(v.Content) > MaxPhrases {
		c.errorf(v, "phrases has more than %d entries", MaxPhrases)
		return
	}
	for _, p := range v.Content {
		p = c.l.resolve(c.f, p)
		if p == nil {
			continue
		}
		switch {
		case p.Kind != yaml.ScalarNode || p.Tag == "!!null":
			c.errorf(p, "entries of phrases must be strings")
		case p.Value == "":
			c.errorf(p, "a phrase is empty, so it would match every value")
		case len(p.Value) > MaxPhraseLen:
			c.errorf(p, "a phrase is longer than %d bytes", MaxPhraseLen)
		default:
			c.m.Phrases = append(c.m.Phrases, p.Value)
		}
	}
}

// names reads name:, the value names a condition selects.
func (c *condReader) names(kv keyVal) { c.m.Names = c.nameList(kv, c.m.Names) }

// nameList reads the value names of name: or except: (lower case) onto
// out.
func (c *condReader) nameList(kv keyVal, out []string) []string {
	items := c.l.list(c.f, kv.val, c.r, kv.key)
	if len(items) > MaxNames {
		c.errorf(kv.val, "%s: lists more than %d names", kv.key, MaxNames)
		return out
	}
	for _, a := range items {
		switch {
		case a.Value == "" && kv.key == "except":
			c.errorf(a, "except: an empty name excludes nothing")
		case a.Value == "":
			c.errorf(a, "name: an empty name selects nothing")
		case len(a.Value) > MaxValueNameLen:
			c.errorf(a, "%s: an entry is longer than %d bytes", kv.key, MaxValueNameLen)
		case slices.Contains(out, strings.ToLower(a.Value)):
			c.errorf(a, "%s: %q is listed twice (names are case-insensitive)", kv.key, a.Value)
		default:
			out = append(out, strings.ToLower(a.Value))
		}
	}
	return out
}

// flags reads flags:, the regex options.
func (c *condReader) flags(kv keyVal) {
	for _, a := range c.l.list(c.f, kv.val, c.r, "flags") {
		switch a.Value {
		case "caseless":
			c.m.Caseless = true
		case "dotall":
			c.m.DotAll = true
		case "multiline":
			c.m.Multiline = true
		case "utf8":
			c.m.UTF8 = true
		default:
			c.errorf(a, "unknown flag %q%s; known: %s", a.Value, didYouMean(a.Value, flagNames), strings.Join(flagNames, ", "))
		}
	}
}

// transforms reads transforms:, the chain applied before matching.
func (c *condReader) transforms(kv keyVal) {
	items := c.l.list(c.f, kv.val, c.r, "transforms")
	if len(items) > transform.MaxChainLen {
		c.errorf(kv.val, "more than %d transforms in one chain", transform.MaxChainLen)
		return
	}
	for _, a := range items {
		t, err := transform.Parse(a.Value)
		if err != nil {
			c.errorf(a, "%v%s; known: %s", err, didYouMean(a.Value, transform.Names()), strings.Join(transform.Names(), ", "))
			continue
		}
		c.m.Transforms = append(c.m.Transforms, t)
	}
}

// compare reads a condition's compare: mapping (group, op, field, not).
func (l *loader) compare(f *fileCtx, n *yaml.Node, r *Rule) *Compare {
	n = l.resolve(f, n)
	if n == nil {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		l.errs.errorf(f.pos(n), r, "compare must be a mapping with group:, op:, field: or with_group: (and not:)")
		return nil
	}
	c := &Compare{at: map[string]Position{"": f.pos(n)}}
	for _, kv := range l.pairs(f, n, r, compareKeys, "compare:") {
		c.at[kv.key] = f.pos(kv.val)
		switch kv.key {
		case "group":
			if v, ok := l.smallInt(f, kv.val, r, "compare group", 0, MaxCompareGroup); ok {
				c.Group = v
			}
		case "op":
			if v, ok := l.scalar(f, kv.val, r, "compare op"); ok {
				op, err := ParseCompareOp(v)
				if err != nil {
					l.errs.errorf(f.pos(kv.val), r, "compare op: %v", err)
					continue
				}
				c.Op = op
			}
		case "field":
			v := l.resolve(f, kv.val)
			if v == nil {
				continue
			}
			if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
				l.errs.errorf(f.pos(v), r, "compare field must be a single field name")
				continue
			}
			if fld, ok := l.parseFieldName(f, v, r); ok {
				c.With = fld
			}
		case "with_group":
			if v, ok := l.smallInt(f, kv.val, r, "compare with_group", 1, MaxCompareGroup); ok {
				c.WithGroup = v
			}
		case "not":
			if b, ok := l.boolValue(f, kv.val, r, "compare not"); ok {
				c.Not = b
			}
		}
	}
	for _, k := range []string{"group", "op"} {
		if _, ok := c.at[k]; !ok {
			l.errs.errorf(f.pos(n), r, "compare has no %s:", k)
		}
	}
	_, hasField := c.at["field"]
	_, hasGroup := c.at["with_group"]
	switch {
	case hasField && hasGroup:
		l.errs.errorf(c.at["with_group"], r, "compare has both field: and with_group:; use one")
	case !hasField && !hasGroup:
		l.errs.errorf(f.pos(n), r, "compare has no field: (or with_group:)")
	}
	return c
}

// posOf returns the position recorded for a key of the condition, or the
// condition's own (the rule's for conditions built in Go).
func (m *Match) posOf(r *Rule, key string) Position {
	if p, ok := m.at[key]; ok {
		return p
	}
	if p, ok := m.at[""]; ok {
		return p
	}
	return r.posOf("match")
}
