package http

import (
	"bytes"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/internal/ascii"
)

// BodyKind is how a request body carries arguments, from its
// Content-Type.
type BodyKind uint8

// Body kinds.
const (
	BodyNone      BodyKind = iota // no arguments (or a type not parsed)
	BodyForm                      // application/x-www-form-urlencoded
	BodyJSON                      // application/json, */*+json
	BodyMultipart                 // multipart/form-data with a boundary
	BodyXML                       // application/xml, text/xml, application/soap+xml
)

// Bounds on body argument parsing.
const (
	MaxBoundary  = 70   // RFC 2046 bounds a boundary to 70 characters
	MaxJSONDepth = 64   // nesting followed in a JSON body; deeper values are skipped
	MaxBodyParts = 256  // multipart parts parsed
	MaxXMLValues = 4096 // XML text and attribute values reported from one body
)

// BodyKindOf classifies a Content-Type value and returns the multipart
// boundary (a slice of ct) for BodyMultipart.
func BodyKindOf(ct []byte) (BodyKind, []byte) {
	// Coraza's recommended set-up parses XML for a Content-Type matching
	// ^(?:application(?:/soap\+|/)|text/)xml in any case.
	for _, p := range [...]string{"application/xml", "application/soap+xml", "text/xml"} {
		if ascii.HasPrefixFold(ct, p) {
			return BodyXML, nil
		}
	}
	mt := ct
	if i := bytes.IndexByte(mt, ';'); i >= 0 {
		mt = mt[:i]
	}
	mt = trimOWS(mt)
	switch {
	case ascii.EqualFold(mt, "application/x-www-form-urlencoded"):
		return BodyForm, nil
	case ascii.EqualFold(mt, "application/json"), len(mt) > 5 && ascii.EqualFold(mt[len(mt)-5:], "+json"):
		return BodyJSON, nil
	case ascii.EqualFold(mt, "multipart/form-data"):
		b := param(ct, "boundary")
		if len(b) == 0 || len(b) > MaxBoundary {
			return BodyNone, nil
		}
		return BodyMultipart, b
	}
	return BodyNone, nil
}

// param returns the value of parameter name of a header value such as
// `multipart/form-data; boundary="x"` (a quoted value as sent, between
// its quotes, escapes kept), or nil. A ';' inside quotes does not end a
// parameter.
func param(v []byte, name string) []byte {
	val, _ := paramQuoted(v, name)
	return val
}

// paramQuoted is param, also reporting whether the value was quoted.
func paramQuoted(v []byte, name string) ([]byte, bool) {
	for i := 0; i < len(v); {
		// Skip to the next ';' outside quotes.
		for i < len(v) && v[i] != ';' {
			if v[i] == '"' {
				i = quotedEnd(v, i)
			}
			i++
		}
		if i >= len(v) {
			return nil, false
		}
		i++
		j := i
		for j < len(v) && v[j] != ';' && v[j] != '=' {
			j++
		}
		if j >= len(v) || v[j] != '=' || !ascii.EqualFold(trimOWS(v[i:j]), name) {
			continue
		}
		k := j + 1
		for k < len(v) && (v[k] == ' ' || v[k] == '\t') {
			k++
		}
		if k < len(v) && v[k] == '"' {
			e := quotedEnd(v, k)
			if e < len(v) {
				return v[k+1 : e], true
			}
			return v[k+1:], true
		}
		e := k
		for e < len(v) && v[e] != ';' {
			e++
		}
		return trimOWS(v[k:e]), false
	}
	return nil, false
}

// quotedEnd returns the index of the '"' closing the quoted string opened
// at v[i] (a backslash escapes the next byte), or len(v).
func quotedEnd(v []byte, i int) int {
	for j := i + 1; j < len(v); j++ {
		switch v[j] {
		case '\\':
			j++
		case '"':
			return j
		}
	}
	return len(v)
}

// unquote appends quoted-string content q to dst as Go's mime package
// reads it (what Coraza's multipart parser uses): a backslash before one
// of the tspecials ()<>@,;:\"/[]?= stands for that byte, any other
// backslash is kept.
func unquote(dst, q []byte) []byte {
	for i := 0; i < len(q); i++ {
		if q[i] == '\\' && i+1 < len(q) && strings.IndexByte(`()<>@,;:\"/[]?=`, q[i+1]) >= 0 {
			i++
		}
		dst = append(dst, q[i])
	}
	return dst
}

// dispParam returns parameter name of a Content-Disposition value,
// unquoted into buf when quoted with escapes (the value and buf).
func dispParam(v []byte, name string, buf []byte) ([]byte, []byte) {
	val, quoted := paramQuoted(v, name)
	if !quoted || bytes.IndexByte(val, '\\') < 0 {
		return val, buf
	}
	s := len(buf)
	buf = unquote(buf, val)
	return buf[s:len(buf):len(buf)], buf
}

// filenameStar decodes an RFC 2231/5987 extended value
// (charset'language'percent-encoded) into buf, as Coraza does for
// filename*= (the text after the second quote, %XX decoded, other bytes
// kept); ok is false when it has no two quotes.
func filenameStar(v, buf []byte) ([]byte, []byte, bool) {
	a := bytes.IndexByte(v, '\'')
	if a < 0 {
		return nil, buf, false
	}
	b := bytes.IndexByte(v[a+1:], '\'')
	if b < 0 {
		return nil, buf, false
	}
	v = v[a+1+b+1:]
	s := len(buf)
	buf = ascii.PercentDecode(buf, v)
	return buf[s:len(buf):len(buf)], buf, true
}

// BodyArgs receives what ParseBody finds. Slices are valid only during the
// call.
type BodyArgs interface {
	// Arg is one argument: a form field, a JSON value (named by its path
	// as Coraza names it, see jsonWalker), a multipart field that is not a
	// file.
	Arg(name, value []byte)
	// File is an uploaded file's field name and file name.
	File(field, filename []byte)
	// PartHeader is one header line of a multipart part, "Name: value".
	PartHeader(line []byte)
}

// XMLValues receives the values of an XML body, when the BodyArgs given
// to ParseBody implements it too. Slices are valid only during the call.
type XMLValues interface {
	// XMLText is the text between two tags (CDATA included), trimmed of
	// white space, when not empty (Coraza's XML:/*).
	XMLText(v []byte)
	// XMLAttr is an attribute value (XML://@*).
	XMLAttr(v []byte)
}

// jsonPathSlack is what a JSON argument's path and value can take beyond
// the body's own length: the "json" prefix and a root scalar's ".0", and
// one byte per array level (".0" is two bytes for the one of '[').
const jsonPathSlack = len("json.0") + MaxJSONDepth + 1

// ParseBody finds the arguments of a request body of kind k. buf is a
// scratch buffer for decoded text and JSON paths (reused and returned;
// with len(body)+jsonPathSlack spare capacity, which it allocates when
// short, nothing is allocated); decoding problems are added to found. At
// most maxArgs arguments are reported.
func ParseBody(k BodyKind, boundary, body, buf []byte, maxArgs int, sink BodyArgs, found *proto.KindSet) []byte {
	if cap(buf) < len(body)+jsonPathSlack {
		buf = make([]byte, 0, len(body)+jsonPathSlack)
	}
	buf = buf[:0]
	switch k {
	case BodyForm:
		n := 0
		for q := body; len(q) > 0 && n < maxArgs; {
			pair := q
			if i := bytes.IndexByte(q, '&'); i >= 0 {
				pair, q = q[:i], q[i+1:]
			} else {
				q = nil
			}
			if len(pair) == 0 {
				continue
			}
			name, value := pair, []byte(nil)
			if i := bytes.IndexByte(pair, '='); i >= 0 {
				name, value = pair[:i], pair[i+1:]
			}
			s := len(buf)
			buf = percentDecode(buf, name, true, false, found)
			m := len(buf)
			buf = percentDecode(buf, value, true, false, found)
			sink.Arg(buf[s:m:m], buf[m:])
			n++
		}
	case BodyJSON:
		j := jsonWalker{in: body, buf: append(buf, "json"...), sink: sink, max: maxArgs}
		j.root()
		buf = j.buf[:0]
	case BodyMultipart:
		buf = parseMultipart(body, boundary, buf, maxArgs, sink, found)
	case BodyXML:
		if xs, ok := sink.(XMLValues); ok {
			parseXML(body, xs)
		}
	}
	return buf
}

// jsonWalker reports the scalar values of a JSON document named by their
// path, as Coraza's JSON body processor fills ARGS_POST, so that
// ARGS_NAMES rules see the same names: "json", then ".key" for an object
// member (the key unescaped, dots in it kept) and ".N" for the N-th array
// element from 0 ({"a":{"b":[1]}} gives json.a.b.0=1). Like Coraza it adds
// one argument per non-empty array, named by the array's path, whose
// value is its length (json.a.b=1), reports null as an empty value and
// numbers and booleans as written, and takes a scalar document as a
// one-element array (json.0, json=1). Malformed input ends the walk; what
// was reported stays reported (Coraza also keeps what it read), but the
// length of an array not closed is not reported.
//
// buf holds the path of the current value, a stack grown on the way down
// and cut back on the way up; a leaf's decoded value goes after it for the
// call to Arg only.
type jsonWalker struct {
	in   []byte
	pos  int
	buf  []byte
	sink BodyArgs
	n    int
	max  int
	bad  bool
}

func (j *jsonWalker) ws() {
	for j.pos < len(j.in) {
		switch j.in[j.pos] {
		case ' ', '\t', '\r', '\n':
			j.pos++
		default:
			return
		}
	}
}

// root walks the document.
func (j *jsonWalker) root() {
	j.ws()
	if j.pos < len(j.in) && (j.in[j.pos] == '{' || j.in[j.pos] == '[') {
		j.value(0)
		return
	}
	j.element(0, 0)
	j.length(1)
}

// element walks the i-th element of an array, at depth.
func (j *jsonWalker) element(i, depth int) {
	pl := len(j.buf)
	j.buf = strconv.AppendInt(append(j.buf, '.'), int64(i), 10)
	j.value(depth)
	j.buf = j.buf[:pl]
}

// length reports the length of the array whose path is buf.
func (j *jsonWalker) length(n int) {
	if n == 0 || j.bad {
		return
	}
	pl := len(j.buf)
	j.buf = strconv.AppendInt(j.buf, int64(n), 10)
	j.emit(j.buf[:pl:pl], j.buf[pl:])
	j.buf = j.buf[:pl]
}

// value walks the value at pos, whose path is buf.
func (j *jsonWalker) value(depth int) {
	j.ws()
	if j.bad || j.pos >= len(j.in) || depth > MaxJSONDepth {
		j.bad = true
		return
	}
	switch c := j.in[j.pos]; c {
	case '{':
		j.pos++
		for {
			j.ws()
			if j.pos < len(j.in) && j.in[j.pos] == '}' {
				j.pos++
				return
			}
			if j.pos >= len(j.in) || j.in[j.pos] != '"' {
				j.bad = true
				return
			}
			pl := len(j.buf)
			j.buf = append(j.buf, '.')
			j.str()
			j.ws()
			if j.bad || j.pos >= len(j.in) || j.in[j.pos] != ':' {
				j.bad = true
				return
			}
			j.pos++
			j.value(depth + 1)
			j.buf = j.buf[:pl]
			if !j.more('}') {
				return
			}
		}
	case '[':
		j.pos++
		for n := 0; ; n++ {
			j.ws()
			if j.pos < len(j.in) && j.in[j.pos] == ']' {
				j.pos++
				j.length(n)
				return
			}
			j.element(n, depth+1)
			if !j.more(']') {
				j.length(n + 1)
				return
			}
		}
	case '"':
		pl := len(j.buf)
		v := j.str()
		j.emit(j.buf[:pl:pl], v)
		j.buf = j.buf[:pl]
	default:
		s := j.pos
		for j.pos < len(j.in) && strings.IndexByte(",]} \t\r\n", j.in[j.pos]) < 0 {
			j.pos++
		}
		if j.pos == s {
			j.bad = true
			return
		}
		v := j.in[s:j.pos]
		if string(v) == "null" {
			v = v[:0]
		}
		j.emit(j.buf[:len(j.buf):len(j.buf)], v)
	}
}

// more consumes the ',' or the closing byte after a member or element and
// reports whether another one follows; anything else makes the walk bad.
func (j *jsonWalker) more(closing byte) bool {
	j.ws()
	if !j.bad && j.pos < len(j.in) {
		switch j.in[j.pos] {
		case ',':
			j.pos++
			return true
		case closing:
			j.pos++
			return false
		}
	}
	j.bad = true
	return false
}

func (j *jsonWalker) emit(name, value []byte) {
	if j.bad || j.n >= j.max {
		return
	}
	j.n++
	j.sink.Arg(name, value)
}

// str reads a string literal at pos (which holds '"') and returns it
// unescaped, in buf.
func (j *jsonWalker) str() []byte {
	j.pos++
	s := len(j.buf)
	for j.pos < len(j.in) {
		c := j.in[j.pos]
		switch {
		case c == '"':
			j.pos++
			return j.buf[s:len(j.buf):len(j.buf)]
		case c != '\\':
			j.buf = append(j.buf, c)
			j.pos++
			continue
		}
		if j.pos+1 >= len(j.in) {
			break
		}
		e := j.in[j.pos+1]
		j.pos += 2
		switch e {
		case 'n':
			j.buf = append(j.buf, '\n')
		case 't':
			j.buf = append(j.buf, '\t')
		case 'r':
			j.buf = append(j.buf, '\r')
		case 'b':
			j.buf = append(j.buf, '\b')
		case 'f':
			j.buf = append(j.buf, '\f')
		case 'u':
			r := rune(0)
			ok := j.pos+4 <= len(j.in)
			for k := 0; ok && k < 4; k++ {
				v, h := ascii.Unhex(j.in[j.pos+k])
				ok = h
				r = r<<4 | rune(v)
			}
			if !ok {
				j.buf = append(j.buf, '\\', 'u')
				continue
			}
			j.pos += 4
			// An escape writes at most 3 bytes of UTF-8 for its 6 bytes.
			j.buf = utf8.AppendRune(j.buf, r)
		default:
			j.buf = append(j.buf, e)
		}
	}
	j.bad = true
	return j.buf[s:len(j.buf):len(j.buf)]
}

// parseMultipart reports the parts of a multipart/form-data body. A
// field's value sent with Content-Transfer-Encoding base64 or
// quoted-printable is reported decoded (decodePart).
func parseMultipart(body, boundary, buf []byte, maxArgs int, sink BodyArgs, found *proto.KindSet) []byte {
	var delim [2 + MaxBoundary]byte
	d := append(append(delim[:0], '-', '-'), boundary...)
	i := bytes.Index(body, d)
	for parts := 0; i >= 0 && parts < MaxBodyParts; parts++ {
		rest := body[i+len(d):]
		if bytes.HasPrefix(rest, []byte("--")) {
			return buf // closing delimiter
		}
		// The part's headers start on the next line.
		nl := bytes.IndexByte(rest, '\n')
		if nl < 0 {
			return buf
		}
		rest = rest[nl+1:]
		end := bytes.Index(rest, d)
		part := rest
		if end >= 0 {
			part = rest[:end]
			i = i + len(d) + nl + 1 + end
		} else {
			i = -1
		}
		part = bytes.TrimSuffix(bytes.TrimSuffix(part, []byte("\n")), []byte("\r"))
		var name, filename, plain []byte // plain: filename= beside a different filename*=
		var cte []byte
		hasFile := false
		for {
			ln := bytes.IndexByte(part, '\n')
			if ln < 0 {
				part = nil
				break
			}
			line := bytes.TrimSuffix(part[:ln], []byte("\r"))
			part = part[ln+1:]
			if len(line) == 0 {
				break
			}
			sink.PartHeader(line)
			c := bytes.IndexByte(line, ':')
			if c <= 0 {
				continue
			}
			if field := trimOWS(line[:c]); ascii.EqualFold(field, "content-transfer-encoding") {
				cte = trimOWS(line[c+1:])
			} else if ascii.EqualFold(field, "content-disposition") {
				// Names and file names as Coraza reads them (Go's mime
				// quoting; filename*= decoded and preferred).
				v := line[c+1:]
				name, buf = dispParam(v, "name", buf)
				var fn []byte
				fn, buf = dispParam(v, "filename", buf)
				plain = nil
				star, _ := paramQuoted(v, "filename*")
				if dec, b, ok := filenameStar(star, buf); ok {
					// A backend that ignores filename* (or refuses its
					// charset) takes filename=: both are files.
					if fn != nil && !bytes.Equal(fn, dec) {
						plain = fn
					}
					fn, buf = dec, b
				}
				if fn != nil || bytes.Contains(v, []byte("filename")) {
					filename, hasFile = fn, true
				}
			}
		}
		if hasFile {
			sink.File(name, filename)
			if plain != nil {
				sink.File(name, plain)
			}
			continue
		}
		if maxArgs > 0 {
			maxArgs--
			part, buf = decodePart(cte, part, buf, found)
			sink.Arg(name, part)
		}
	}
	return buf
}

// parseXML reports the text and attribute values of an XML body the way
// Coraza's lenient XML reader sees them: text between tags trimmed of
// white space (CDATA sections are text), attribute values quoted with "
// or ' (or unquoted), processing instructions, comments and declarations
// skipped. Entities are not decoded. At most MaxXMLValues values; a
// malformed document ends the walk.
func parseXML(body []byte, sink XMLValues) {
	n := 0
	text := func(v []byte) {
		if v = bytes.TrimSpace(v); len(v) > 0 && n < MaxXMLValues {
			n++
			sink.XMLText(v)
		}
	}
	for i := 0; i < len(body) && n < MaxXMLValues; {
		lt := bytes.IndexByte(body[i:], '<')
		if lt < 0 {
			text(body[i:])
			return
		}
		text(body[i : i+lt])
		i += lt
		rest := body[i:]
		switch {
		case bytes.HasPrefix(rest, []byte("<!--")):
			e := bytes.Index(rest[4:], []byte("-->"))
			if e < 0 {
				return
			}
			i += 4 + e + 3
		case bytes.HasPrefix(rest, []byte("<![CDATA[")):
			e := bytes.Index(rest[9:], []byte("]]>"))
			if e < 0 {
				text(rest[9:])
				return
			}
			text(rest[9 : 9+e])
			i += 9 + e + 3
		case bytes.HasPrefix(rest, []byte("<?")):
			e := bytes.Index(rest[2:], []byte("?>"))
			if e < 0 {
				return
			}
			i += 2 + e + 2
		case bytes.HasPrefix(rest, []byte("<!")), bytes.HasPrefix(rest, []byte("</")):
			e := bytes.IndexByte(rest, '>')
			if e < 0 {
				return
			}
			i += e + 1
		default:
			e, ok := xmlTag(rest, sink, &n)
			if !ok {
				return
			}
			i += e
		}
	}
}

// xmlTag reads the start tag at the beginning of t (t[0] == '<'),
// reporting its attribute values, and returns its length.
func xmlTag(t []byte, sink XMLValues, n *int) (int, bool) {
	i := 1
	for i < len(t) && !xmlSpace(t[i]) && t[i] != '>' && t[i] != '/' {
		i++
	}
	for i < len(t) {
		for i < len(t) && (xmlSpace(t[i]) || t[i] == '/') {
			i++
		}
		if i >= len(t) {
			return 0, false
		}
		if t[i] == '>' {
			return i + 1, true
		}
		// An attribute name, then = and a value.
		for i < len(t) && !xmlSpace(t[i]) && t[i] != '=' && t[i] != '>' && t[i] != '/' {
			i++
		}
		for i < len(t) && xmlSpace(t[i]) {
			i++
		}
		if i >= len(t) || t[i] != '=' {
			continue
		}
		i++
		for i < len(t) && xmlSpace(t[i]) {
			i++
		}
		if i >= len(t) {
			return 0, false
		}
		var v []byte
		if q := t[i]; q == '"' || q == '\'' {
			e := bytes.IndexByte(t[i+1:], q)
			if e < 0 {
				return 0, false
			}
			v = t[i+1 : i+1+e]
			i += e + 2
		} else {
			s := i
			for i < len(t) && !xmlSpace(t[i]) && t[i] != '>' && t[i] != '/' {
				i++
			}
			v = t[s:i]
		}
		if *n < MaxXMLValues {
			*n++
			sink.XMLAttr(v)
		}
	}
	return 0, false
}

func xmlSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// decodePart decodes a multipart part's content sent with
// Content-Transfer-Encoding cte into buf (the decoded value and buf):
// base64 (RFC 2045 6.8: bytes outside the alphabet skipped, as decoders
// do; both alphabets) or quoted-printable (6.7, as Go's multipart reader
// decodes it for Coraza and Go back ends). Other encodings, 7bit, 8bit
// and binary among them, are the part as sent. Decoding only shrinks, so
// the value is at most the part's length. Bytes that do not decode
// cleanly add HTTPPartEncoding to found.
func decodePart(cte, part, buf []byte, found *proto.KindSet) ([]byte, []byte) {
	s := len(buf)
	switch {
	case ascii.EqualFold(cte, "base64"):
		var acc uint32
		n := 0
		// tail writes the bytes of a last, partial quantum.
		tail := func() {
			switch n {
			case 2:
				buf = append(buf, byte(acc>>4))
			case 3:
				buf = append(buf, byte(acc>>10), byte(acc>>2))
			case 1:
				found.Add(proto.HTTPPartEncoding)
			}
		}
		padded := false
		for _, c := range part {
			v := b64Value[c]
			switch {
			case v == b64Space:
				continue
			case v == b64Bad, padded && v != b64Pad:
				// Data after the padding: decoders stop at it.
				found.Add(proto.HTTPPartEncoding)
				continue
			case v == b64Pad:
				if !padded {
					tail()
					padded = true
				}
				continue
			}
			acc = acc<<6 | uint32(v)
			if n++; n == 4 {
				buf = append(buf, byte(acc>>16), byte(acc>>8), byte(acc))
				acc, n = 0, 0
			}
		}
		if !padded {
			tail()
		}
	case ascii.EqualFold(cte, "quoted-printable"):
		for i := 0; i < len(part); i++ {
			c := part[i]
			if c != '=' {
				buf = append(buf, c)
				continue
			}
			switch {
			case i+2 < len(part) && part[i+1] == '\r' && part[i+2] == '\n':
				i += 2 // soft line break
			case i+1 < len(part) && part[i+1] == '\n':
				i++
			case i+2 < len(part):
				b, ok := ascii.UnhexPair(part[i+1], part[i+2])
				if !ok {
					found.Add(proto.HTTPPartEncoding)
					buf = append(buf, c)
					continue
				}
				buf = append(buf, b)
				i += 2
			default:
				found.Add(proto.HTTPPartEncoding)
				buf = append(buf, c)
			}
		}
	default:
		return part, buf
	}
	return buf[s:len(buf):len(buf)], buf
}

// Special values of b64Value.
const (
	b64Bad   = 0xff
	b64Space = 0xfe
	b64Pad   = 0xfd
)

// b64Value maps a byte to its value in the standard and URL base64
// alphabets.
var b64Value = func() (t [256]byte) {
	for i := range t {
		t[i] = b64Bad
	}
	const std = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := range len(std) {
		t[std[i]] = byte(i)
	}
	t['-'], t['_'] = 62, 63
	for _, c := range " \t\r\n" {
		t[c] = b64Space
	}
	t['='] = b64Pad
	return t
}()
