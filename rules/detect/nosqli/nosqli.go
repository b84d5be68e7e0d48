// Package nosqli is the NoSQL (MongoDB-style) injection detector (rule
// language: detect: nosqli): query operators where a scalar was expected
// — in a parameter name (user[$ne]=, user.$gt), a value ({"$gt": ""},
// [$ne]=1, ', $or: [...]) or a JSON body's keys —, and the JavaScript a
// $where clause runs (this.password.match(...), ';return true, sleep(),
// db.collection.insert(...), || 1==1).
package nosqli

import (
	"bytes"

	"github.com/deepwall/deepwall/rules/detect/internal/norm"
	"github.com/deepwall/deepwall/rules/transform"
)

// maxLen bounds the bytes of a value read.
const maxLen = 4096

// operators are MongoDB's query and aggregation operators an injection
// uses to turn a comparison into a tautology, a regex scan or code.
var operators = [...]string{
	"ne", "eq", "gt", "gte", "lt", "lte", "in", "nin", "regex", "where", "exists", "or", "and", "not", "nor",
	"expr", "elemmatch", "function", "accumulator", "jsonschema", "text", "all", "size", "type", "mod", "comment",
	"options", "lookup", "search",
}

// Detector holds the reusable buffers of one worker. Not safe for
// concurrent use.
type Detector struct {
	dec norm.Decoder
	low []byte
}

// New returns a detector.
func New() *Detector { return &Detector{dec: norm.Decoder{KeepPlus: true}} }

// Match reports whether value (a parameter name or value, a JSON key or
// string, a cookie) carries a NoSQL operator or $where JavaScript.
func (d *Detector) Match(value []byte) (bool, string) {
	if len(value) > maxLen {
		value = value[:maxLen]
	}
	v := d.dec.Decode(value)
	d.low = transform.Lowercase.Append(d.low[:0], v)
	v = d.low
	if op := operator(v); op != "" {
		return true, "operator $" + op
	}
	if r := whereJS(v); r != "" {
		return true, r
	}
	return false, ""
}

// operator finds "$op" used as a key or a bracketed name: preceded by the
// value's start, '[', '{', ',', '.', a quote or a space, and followed by
// ']', ':', a quote, '=' or the value's end.
func operator(v []byte) string {
	for i := bytes.IndexByte(v, '$'); i >= 0; {
		rest := v[i+1:]
		if i == 0 || bytes.IndexByte([]byte("[{,.\"' \t\n"), v[i-1]) >= 0 {
			for _, op := range operators {
				if !bytes.HasPrefix(rest, []byte(op)) {
					continue
				}
				after := rest[len(op):]
				k := 0
				for k < len(after) && (after[k] == ' ' || after[k] == '"' || after[k] == '\'') {
					k++
				}
				if len(after) == 0 || k < len(after) && bytes.IndexByte([]byte("]:="), after[k]) >= 0 {
					return op
				}
			}
		}
		j := bytes.IndexByte(rest, '$')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return ""
}

// whereJS finds the JavaScript of a $where injection: a quote or ';'
// breaking out of a string into code.
func whereJS(v []byte) string {
	switch {
	case bytes.Contains(v, []byte("this.")) && (bytes.Contains(v, []byte(".match(")) || bytes.Contains(v, []byte("=="))):
		return "$where javascript: this.<field>"
	case bytes.Contains(v, []byte("db.")) && containsAny(v, ".insert(", ".find(", ".remove(", ".drop(", ".update(", ".mapreduce(", ".getcollection"):
		return "$where javascript: db.<collection> call"
	}
	// A quote or ';' followed by code: ';return true, ';sleep(5000),
	// ';it=new Date();do{...}while(...).
	for i, c := range v {
		if c != '\'' && c != '"' && c != ';' {
			continue
		}
		rest := bytes.TrimLeft(v[i+1:], " ;")
		if containsPrefix(rest, "return true", "return 1", "return '", "return \"", "return this", "return(", "sleep(", "while(", "do{", "it=new date") {
			return "$where javascript after a quote"
		}
	}
	// || 1==1, ' || 'a'=='a
	if i := bytes.Index(v, []byte("||")); i >= 0 && bytes.Contains(v[i:], []byte("==")) {
		return "$where javascript tautology"
	}
	return ""
}

func containsAny(v []byte, subs ...string) bool {
	for _, s := range subs {
		if bytes.Contains(v, []byte(s)) {
			return true
		}
	}
	return false
}

func containsPrefix(v []byte, prefixes ...string) bool {
	for _, p := range prefixes {
		if bytes.HasPrefix(v, []byte(p)) {
			return true
		}
	}
	return false
}
