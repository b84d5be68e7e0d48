// Package ldapi is the LDAP filter injection detector (rule language:
// detect: ldapi): RFC 4515 filter syntax a value closes and reopens —
// ")(" before an item or a composition ("*)(uid=*))(|(uid=*"), a
// composition of items ("(|(mail=*))", "(&(...)"), a wildcard closing a
// filter ("admin*)", "*))\x00") —, which a name, an e-mail address or a
// sentence with parentheses does not write —, and the XPath predicate
// break-outs the same lists carry (' or name()='x', ' or count(/*)).
package ldapi

import (
	"bytes"

	"github.com/deepwall/deepwall/rules/detect/internal/norm"
)

// maxLen bounds the bytes of a value read.
const maxLen = 4096

// Detector holds the reusable buffers of one worker. Not safe for
// concurrent use.
type Detector struct {
	dec norm.Decoder
}

// New returns a detector.
func New() *Detector { return &Detector{dec: norm.Decoder{KeepPlus: true}} }

// Match reports whether value carries LDAP filter syntax.
func (d *Detector) Match(value []byte) (bool, string) {
	if len(value) > maxLen {
		value = value[:maxLen]
	}
	v := d.dec.Decode(value)
	if bytes.IndexByte(v, '(') < 0 && bytes.IndexByte(v, ')') < 0 {
		return false, ""
	}
	if xpath(v) {
		return true, "xpath predicate"
	}
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '(':
			// "(|(", "(&(", "(!(": a composition of filters.
			if j := skipSpace(v, i+1); j+1 < len(v) && isComposition(v[j]) && v[skipSpace(v, j+1)] == '(' {
				return true, "filter composition"
			}
			// ")(" before an item or a composition.
			if i > 0 && v[i-1] == ')' && item(v[i+1:]) {
				return true, "filter closed and reopened"
			}
			// "*(|(" and "*()|" (not a password's "*()_+"): a wildcard value, then filter syntax.
			if i > 0 && v[i-1] == '*' && i+1 < len(v) && (isComposition(v[i+1]) || i+2 < len(v) && v[i+1] == ')' && isComposition(v[i+2])) {
				return true, "wildcard then filter syntax"
			}
		case ')':
			// "*)" closing the item: "admin*)(", "*))\x00".
			if i > 0 && v[i-1] == '*' && i+1 < len(v) && (v[i+1] == ')' || v[i+1] == '(' || v[i+1] == 0) {
				return true, "wildcard closing the filter"
			}
		}
	}
	return false, ""
}

func isComposition(c byte) bool { return c == '|' || c == '&' || c == '!' }

func skipSpace(v []byte, i int) int {
	for i < len(v) && v[i] == ' ' {
		i++
	}
	if i >= len(v) {
		return len(v) - 1
	}
	return i
}

// item reports whether v starts with an LDAP filter item "attr=",
// "attr~=", "attr>=", "attr<=", "attr:=" or a composition.
func item(v []byte) bool {
	if len(v) == 0 {
		return false
	}
	if isComposition(v[0]) {
		return true
	}
	i := 0
	for i < len(v) && i < 64 && (v[i] >= 'a' && v[i] <= 'z' || v[i] >= 'A' && v[i] <= 'Z' || v[i] >= '0' && v[i] <= '9' || v[i] == '-' || v[i] == '.' || v[i] == ';') {
		i++
	}
	if i == 0 || i >= len(v) {
		return false
	}
	if v[i] == '=' {
		return true
	}
	return i+1 < len(v) && (v[i] == '~' || v[i] == '>' || v[i] == '<' || v[i] == ':') && v[i+1] == '='
}

// xpathFuncs are XPath 1.0 functions an injection probes the document
// with.
var xpathFuncs = [...]string{"name()", "local-name()", "count(", "string-length(", "substring(", "position()", "last()", "text()"}

// xpath reports a quote closing a string literal followed by or/and and an
// XPath function: "x' or name()='username' or 'x'='y".
func xpath(v []byte) bool {
	for i, c := range v {
		if c != '\'' && c != '"' {
			continue
		}
		rest := bytes.TrimLeft(v[i+1:], " ")
		var ok bool
		for _, op := range [...]string{"or ", "and ", "OR ", "AND ", "|"} {
			if r, found := bytes.CutPrefix(rest, []byte(op)); found {
				rest, ok = bytes.TrimLeft(r, " "), true
				break
			}
		}
		if !ok {
			continue
		}
		for _, f := range xpathFuncs {
			if bytes.HasPrefix(rest, []byte(f)) {
				return true
			}
		}
	}
	return false
}
