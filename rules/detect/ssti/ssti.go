// Package ssti is the server-side template injection detector (rule
// language: detect: ssti): a template expression of one of the common
// engines — {{ }} (Jinja2, Twig, Handlebars, Go), ${ } (Freemarker,
// Velocity, Mako, Thymeleaf, EL, JS template literals), #{ } (Ruby, EL,
// Pebble), *{ } (Thymeleaf), <%= %> and <% %> (ERB, EJS, JSP), {% %}
// (Jinja2, Twig, Liquid), @( ) (Razor), [[ ]] (Thymeleaf inline), plus
// Freemarker's <#assign> and Velocity's #set( — whose content is an
// expression: a call, arithmetic, a filter, an index, a dunder or an
// engine's object (self, config, request, T(...)). A plain placeholder
// ({{name}}, ${price}) is what template editors and documentation carry,
// and is not reported.
package ssti

import (
	"bytes"

	"github.com/deepwall/deepwall/rules/detect/internal/norm"
	"github.com/deepwall/deepwall/rules/transform"
)

// Named limits.
const (
	maxLen  = 4096 // bytes of a value read
	maxExpr = 1024 // bytes between an opener and its closer
)

// delims are the expression delimiters, opener and closer.
var delims = [...]struct{ open, close string }{
	{"{{", "}}"}, {"${", "}"}, {"#{", "}"}, {"*{", "}"}, {"@{", "}"}, {"<%=", "%>"}, {"<%", "%>"},
	{"{%", "%}"}, {"@(", ")"}, {"[[", "]]"}, {"{php}", "{/php}"},
}

// directives are engine statements that need no expression check.
var directives = [...]string{"<#assign", "<#list", "<#import", "<#include", "<#macro", "<#function", "<#if ", "#set(", "#foreach(", "#evaluate(", "#include(", "#parse(", "{$smarty.", "?new()", "{php}"}

// objects are the engine objects an expression reaches the runtime
// through.
var objects = [...]string{"self", "config", "request", "settings", "lipsum", "cycler", "joiner", "namespace", "url_for", "get_flashed_messages",
	"_self", "app", "env", "process", "global", "this", "constructor", "class", "runtime", "java.", "t(", "new ", "product", "smarty", "range"}

// Detector holds the reusable buffers of one worker. Not safe for
// concurrent use.
type Detector struct {
	dec norm.Decoder
	low []byte
}

// New returns a detector.
func New() *Detector { return &Detector{dec: norm.Decoder{KeepPlus: true}} }

// Match reports whether value holds a template expression.
func (d *Detector) Match(value []byte) (bool, string) {
	if len(value) > maxLen {
		value = value[:maxLen]
	}
	// Every opener and directive holds one of these (or, encoded, % & \);
	// not "(": a User-Agent has one, and no trigger needs it alone.
	if !bytes.ContainsAny(value, "{%#[&\\@?") {
		return false, ""
	}
	v := d.dec.Decode(value)
	d.low = transform.Lowercase.Append(d.low[:0], v)
	v = d.low
	for _, s := range directives {
		if bytes.Contains(v, []byte(s)) {
			return true, "template directive " + s
		}
	}
	for _, dl := range delims {
		for off := 0; off < len(v); {
			i := bytes.Index(v[off:], []byte(dl.open))
			if i < 0 {
				break
			}
			start := off + i + len(dl.open)
			end := bytes.Index(v[start:min(len(v), start+maxExpr)], []byte(dl.close))
			if end < 0 {
				// Unclosed: an expression cut off by the payload's end
				// ("{{7*7" in a truncated field) still runs in some
				// engines only closed; skip.
				break
			}
			if expression(v[start:start+end], dl.open) {
				return true, "template expression " + dl.open + dl.close
			}
			off = start
		}
	}
	return false, ""
}

// expression reports whether e, the content of a template delimiter, is
// more than a placeholder.
func expression(e []byte, open string) bool {
	e = bytes.TrimSpace(e)
	if len(e) == 0 {
		return false
	}
	if bytes.Contains(e, []byte("__")) || bytes.IndexByte(e, '(') >= 0 {
		return true // a call or a dunder: {{''.__class__}}, ${T(java.lang.Runtime)}
	}
	if open == "{%" {
		// Liquid and Twig tags in product texts ("{% $name|date_format %}"):
		// only statements that reach code.
		return bytes.HasPrefix(e, []byte("import")) || bytes.HasPrefix(e, []byte("include")) || bytes.HasPrefix(e, []byte("extends")) || arithmetic(e)
	}
	if open == "*{" || open == "@(" || open == "[[" {
		return arithmetic(e) // CSS's "*{margin:0}", Razor, inline: only sums
	}
	if bytes.IndexByte(e, '|') >= 0 || bytes.IndexByte(e, '[') >= 0 || arithmetic(e) {
		return true
	}
	for _, o := range objects {
		if bytes.HasPrefix(e, []byte(o)) && (len(e) == len(o) || !isIdent(e[len(o)])) {
			return true
		}
	}
	return false
}

// arithmetic reports an operator between two operands: 7*7, 7*'7', 3+3.
func arithmetic(e []byte) bool {
	for i := 1; i+1 < len(e); i++ {
		switch e[i] {
		case '*', '+', '-', '/', '%':
			l, r := lastNonSpace(e[:i]), firstNonSpace(e[i+1:])
			if operand(l) && operand(r) {
				return true
			}
		}
	}
	return false
}

func operand(c byte) bool { return c >= '0' && c <= '9' || c == '\'' || c == '"' }

func isIdent(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_'
}

func lastNonSpace(b []byte) byte {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] != ' ' {
			return b[i]
		}
	}
	return 0
}

func firstNonSpace(b []byte) byte {
	for _, c := range b {
		if c != ' ' {
			return c
		}
	}
	return 0
}
