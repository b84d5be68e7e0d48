package rules

import (
	"bytes"
	"slices"
	"unicode/utf8"
	"unsafe"

	"github.com/corazawaf/libinjection-go"

	"github.com/deepwall/deepwall/internal/ascii"
	"github.com/deepwall/deepwall/rules/detect/cmdi"
	"github.com/deepwall/deepwall/rules/detect/ldapi"
	"github.com/deepwall/deepwall/rules/detect/nosqli"
	"github.com/deepwall/deepwall/rules/detect/ssti"
	"github.com/deepwall/deepwall/rules/detect/traversal"
	"github.com/deepwall/deepwall/rules/transform"
)

// Detectors of match.detect.
const (
	DetectSQLi               = "sqli"                 // libinjection's SQL injection tokenizer, harmless fingerprints ignored
	DetectSQLiAll            = "libinjection_sqli"    // libinjection's verdict as is (ModSecurity's @detectSQLi)
	DetectXSS                = "xss"                  // libinjection's HTML5 XSS detector
	DetectInvalidUTF8        = "invalid_utf8"         // the value is not valid UTF-8
	DetectInvalidURLEncoding = "invalid_url_encoding" // a '%' not followed by two hex digits
	DetectTraversal          = "traversal"            // path traversal, sensitive files, file-inclusion wrappers (rules/detect/traversal)
	DetectCmdi               = "cmdi"                 // shell command injection (rules/detect/cmdi)
	DetectNoSQLi             = "nosqli"               // MongoDB operators and $where JavaScript (rules/detect/nosqli)
	DetectLDAPi              = "ldapi"                // LDAP filter injection (rules/detect/ldapi)
	DetectSSTI               = "ssti"                 // server-side template expressions (rules/detect/ssti)
)

// Detectors lists the detector names match.detect accepts.
var Detectors = []string{DetectSQLi, DetectXSS, DetectInvalidUTF8, DetectInvalidURLEncoding,
	DetectTraversal, DetectCmdi, DetectNoSQLi, DetectLDAPi, DetectSSTI, DetectSQLiAll}

func knownDetector(s string) bool { return slices.Contains(Detectors, s) }

// Bounds on libinjection work per field value.
const (
	MaxDetectPieces = 256  // names and values tested in one field
	MaxDetectLen    = 8192 // bytes of one piece (longer pieces are cut)
)

// detectFields are the fields libinjection rules may inspect: request
// parts where a parameter is a meaningful unit.
var detectFields = map[FieldKind]bool{
	FieldHTTPURI: true, FieldHTTPPath: true, FieldHTTPArgs: true,
	FieldHTTPHeaders: true, FieldHTTPHeader: true, FieldHTTPBody: true,
	FieldHTTPArg: true, FieldHTTPArgName: true, FieldHTTPCookie: true, FieldHTTPCookieName: true,
	FieldHTTPHeaderValue: true, FieldHTTPHeaderName: true, FieldHTTPFilename: true,
	FieldHTTPBasename: true, FieldHTTPRequestLine: true, FieldHTTPQuery: true,
	FieldHTTPFile: true, FieldHTTPFileField: true, FieldHTTPPartHeader: true, FieldHTTPPlainBody: true,
	FieldHTTPXMLText: true, FieldHTTPXMLAttr: true,
	FieldGRPCString: true,
	// Whole queries: libinjection reads a query as it reads an injected
	// parameter, so it flags tautologies and comment tricks in them.
	FieldMySQLQuery: true, FieldPgSQLQuery: true,
}

// IsSQLi runs libinjection's SQL injection tokenizer over b and returns its
// verdict and fingerprint. It does not copy b.
func IsSQLi(b []byte) (bool, string) {
	if len(b) == 0 || plainToken(b) {
		return false, ""
	}
	return libinjection.IsSQLi(unsafe.String(&b[0], len(b)))
}

// plainToken reports values libinjection's SQLi tokenizer reads as one
// token, whose fingerprint ("n", "k", "1", ...) is never SQLi: only
// digits, or a letter followed by letters, digits and '_'. Without quotes,
// comment markers, operators, '.', '`' or '@' there is no second token:
// every letter's parser (hex, binary, N, Q and U& strings) falls back to
// a word without a quote, a word runs to the first byte of
// " []{}<>:\?=@!#~+-*/&|^%(),';\t\n\v\f\r\"\240\0" and splits only at '.'
// or '`', and a run of digits is one number. libinjection's fingerprint
// list holds one single-token fingerprint, "X" (evil: comments, "{" and
// backticks),
// which needs bytes outside these. Tokens ("session", "ab_x8Kd9",
// "12345") are most cookie names and values; libinjection costs ~0.5-1 µs
// per call on them.
func plainToken(b []byte) bool {
	c := b[0]
	if c >= '0' && c <= '9' {
		for _, c := range b {
			if c < '0' || c > '9' {
				return false
			}
		}
		return true
	}
	if (c|0x20) < 'a' || (c|0x20) > 'z' {
		return false
	}
	return transform.ClassesOf(b)&^(transform.ClassLower|transform.ClassUpper|transform.ClassDigit|transform.ClassUnderline) == 0
}

// IsXSS runs libinjection's HTML5 XSS detector over b without copying it.
func IsXSS(b []byte) bool {
	// Without '<' libinjection's data-state pass produces text only, and
	// its four attribute-value passes (unquoted, ', ", `) report only a
	// value that follows a dangerous attribute name, which takes an '='
	// (its tag, comment and doctype tokens all start at a '<'). So a value
	// with neither byte is never XSS (TestXSSPrecheck).
	if len(b) == 0 || bytes.IndexByte(b, '<') < 0 && bytes.IndexByte(b, '=') < 0 {
		return false
	}
	return libinjection.IsXSS(unsafe.String(&b[0], len(b)))
}

// Detector evaluates match.detect rules. A field is split into the units an
// application sees (query and form parameters as names and values, JSON
// string literals, header values, cookies), each unit is run through the
// rule's transform chain and given to libinjection. Not safe for
// concurrent use; the engine keeps one per worker.
type Detector struct {
	t transform.Transformer
	// The semantic detectors, made on first use: each decodes the value
	// itself (every URL, HTML and JS layer) and keeps its own buffers.
	traversal *traversal.Detector
	cmdi      *cmdi.Detector
	nosqli    *nosqli.Detector
	ldapi     *ldapi.Detector
	ssti      *ssti.Detector
}

// semantic runs the semantic detector name over p; reason says what it
// found (the event's fingerprint).
func (d *Detector) semantic(name string, p []byte) (bool, string) {
	switch name {
	case DetectTraversal:
		if d.traversal == nil {
			d.traversal = traversal.New()
		}
		return d.traversal.Match(p)
	case DetectCmdi:
		if d.cmdi == nil {
			d.cmdi = cmdi.New()
		}
		return d.cmdi.Match(p)
	case DetectNoSQLi:
		if d.nosqli == nil {
			d.nosqli = nosqli.New()
		}
		return d.nosqli.Match(p)
	case DetectLDAPi:
		if d.ldapi == nil {
			d.ldapi = ldapi.New()
		}
		return d.ldapi.Match(p)
	case DetectSSTI:
		if d.ssti == nil {
			d.ssti = ssti.New()
		}
		return d.ssti.Match(p)
	}
	return false, ""
}

// Match reports whether a detect rule fires on value, the untransformed
// field the rule names; fingerprint is libinjection's SQLi fingerprint.
func (d *Detector) Match(m *Match, value []byte) (hit bool, fingerprint string) {
	if m == nil {
		return false, ""
	}
	return d.MatchField(m, m.Field, value)
}

// MatchField is Match for a condition with several fields: value is one
// value of field f.
func (d *Detector) MatchField(m *Match, f Field, value []byte) (hit bool, fingerprint string) {
	if m == nil || m.Detect == "" {
		return false, ""
	}
	pieces := 0
	visit := func(p []byte) bool {
		if len(p) == 0 || pieces >= MaxDetectPieces {
			return false
		}
		pieces++
		if len(p) > MaxDetectLen {
			p = p[:MaxDetectLen]
		}
		p = d.t.Apply(m.Transforms, p)
		switch m.Detect {
		case DetectSQLi, DetectSQLiAll:
			hit, fingerprint = IsSQLi(p)
			if hit && m.Detect == DetectSQLi && harmlessFingerprint(fingerprint) {
				hit, fingerprint = false, ""
			}
		case DetectXSS:
			hit = IsXSS(p)
		case DetectInvalidUTF8:
			hit = !utf8.Valid(p)
		case DetectInvalidURLEncoding:
			hit = invalidURLEncoding(p)
		default:
			hit, fingerprint = d.semantic(m.Detect, p)
		}
		return hit
	}
	splitField(f, value, visit)
	return hit, fingerprint
}

// invalidURLEncoding reports a '%' that is not followed by two hex digits.
func invalidURLEncoding(b []byte) bool {
	for i := bytes.IndexByte(b, '%'); i >= 0; {
		if i+2 >= len(b) || !ascii.IsHex(b[i+1]) || !ascii.IsHex(b[i+2]) {
			return true
		}
		j := bytes.IndexByte(b[i+3:], '%')
		if j < 0 {
			return false
		}
		i += 3 + j
	}
	return false
}

// harmlessFingerprint reports libinjection fingerprints that cannot change
// a query: a number or word followed by a comment ("5/5 -- great" in a
// review is "1c"; "id=1--" alone does nothing), a quoted word beside a
// word or string ("sos": `"LIKE" STAMP`, `"NOT" STUFFER`, `"*"`) and two
// numbers joined by and/or ("1&1": "35% cotton and 65% polyester"):
// product titles and searches (libinjection's own false-positive list),
// while the injections of these shapes (' or 'a'='a) carry a comparison
// the pack's regex rules (942120, 942131) see. Imported CRS rules use
// DetectSQLiAll instead: their 942100 is ModSecurity's, and CRS relies on
// it for these shapes.
func harmlessFingerprint(fp string) bool {
	return fp == "1c" || fp == "nc" || fp == "sos" || fp == "1&1"
}

// splitField calls visit for each unit of value until visit returns true.
func splitField(f Field, value []byte, visit func([]byte) bool) {
	switch f.Kind {
	case FieldHTTPArgs:
		splitPairs(value, '&', visit)
	case FieldHTTPURI:
		path, query, found := bytes.Cut(value, []byte{'?'})
		if visit(path) || !found {
			return
		}
		splitPairs(query, '&', visit)
	case FieldHTTPBody, FieldHTTPPlainBody:
		v := bytes.TrimLeft(value, " \t\r\n")
		if len(v) > 0 && (v[0] == '{' || v[0] == '[') {
			splitJSONStrings(v, visit)
			return
		}
		if bytes.IndexByte(v, '=') >= 0 && bytes.IndexByte(v, '<') < 0 {
			splitPairs(v, '&', visit)
			return
		}
		visit(v)
	case FieldHTTPHeaders:
		for len(value) > 0 {
			var line []byte
			line, value, _ = bytes.Cut(value, []byte{'\n'})
			_, v, ok := bytes.Cut(line, []byte{':'})
			if !ok {
				continue
			}
			if visit(bytes.TrimSpace(v)) {
				return
			}
		}
	case FieldHTTPHeader:
		if f.Name == "cookie" {
			splitPairs(value, ';', visit)
			return
		}
		visit(value)
	default:
		visit(value)
	}
}

// splitPairs visits the names and values of "a=1&b=2" (sep '&') or
// "a=1; b=2" (sep ';'). The values of password parameters are skipped:
// random punctuation in passwords is libinjection's most common false
// positive, and the regex rules still see the whole field.
func splitPairs(b []byte, sep byte, visit func([]byte) bool) {
	for len(b) > 0 {
		var pair []byte
		if i := bytes.IndexByte(b, sep); i >= 0 {
			pair, b = b[:i], b[i+1:]
		} else {
			pair, b = b, nil
		}
		pair = bytes.TrimLeft(pair, " ")
		name, val, _ := bytes.Cut(pair, []byte{'='})
		if visit(name) {
			return
		}
		if isSecretName(name) {
			continue
		}
		if visit(val) {
			return
		}
	}
}

// isSecretName reports parameter names that hold passwords.
func isSecretName(name []byte) bool {
	if len(name) > 64 {
		return false
	}
	var buf [64]byte
	n := copy(buf[:], name)
	low := buf[:n]
	for i, c := range low {
		if c >= 'A' && c <= 'Z' {
			low[i] = c + 'a' - 'A'
		}
	}
	for _, s := range [...]string{"pass", "pwd", "secret"} {
		if bytes.Contains(low, []byte(s)) {
			return true
		}
	}
	return false
}

// splitJSONStrings visits the raw contents of the string literals in a JSON
// text (keys and values; escapes are left for js_decode).
func splitJSONStrings(b []byte, visit func([]byte) bool) {
	for i := 0; i < len(b); i++ {
		if b[i] != '"' {
			continue
		}
		j := i + 1
		for j < len(b) && b[j] != '"' {
			if b[j] == '\\' {
				j++
			}
			j++
		}
		if j > len(b) {
			j = len(b)
		}
		if visit(b[i+1 : j]) {
			return
		}
		i = j
	}
}
