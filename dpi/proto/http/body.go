package http

import (
	"bytes"
	"strings"
	"unicode/utf8"

	"github.com/deepwall/deepwall/dpi/proto"
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
)

// Bounds on body argument parsing.
const (
	MaxBoundary  = 70  // RFC 2046 bounds a boundary to 70 characters
	MaxJSONDepth = 64  // nesting followed in a JSON body; deeper values are skipped
	MaxBodyParts = 256 // multipart parts parsed
)

// BodyKindOf classifies a Content-Type value and returns the multipart
// boundary (a slice of ct) for BodyMultipart.
func BodyKindOf(ct []byte) (BodyKind, []byte) {
	mt := ct
	if i := bytes.IndexByte(mt, ';'); i >= 0 {
		mt = mt[:i]
	}
	mt = trimOWS(mt)
	switch {
	case equalFold(mt, "application/x-www-form-urlencoded"):
		return BodyForm, nil
	case equalFold(mt, "application/json"), len(mt) > 5 && equalFold(mt[len(mt)-5:], "+json"):
		return BodyJSON, nil
	case equalFold(mt, "multipart/form-data"):
		b := param(ct, "boundary")
		if len(b) == 0 || len(b) > MaxBoundary {
			return BodyNone, nil
		}
		return BodyMultipart, b
	}
	return BodyNone, nil
}

// param returns the value of parameter name of a header value such as
// `multipart/form-data; boundary="x"`, unquoted, or nil.
func param(v []byte, name string) []byte {
	for {
		i := bytes.IndexByte(v, ';')
		if i < 0 {
			return nil
		}
		v = v[i+1:]
		p := trimOWS(v)
		if j := bytes.IndexByte(p, ';'); j >= 0 {
			p = p[:j]
		}
		eq := bytes.IndexByte(p, '=')
		if eq < 0 || !equalFold(trimOWS(p[:eq]), name) {
			continue
		}
		val := trimOWS(p[eq+1:])
		if len(val) >= 2 && val[0] == '"' {
			if k := bytes.IndexByte(val[1:], '"'); k >= 0 {
				return val[1 : 1+k]
			}
		}
		return val
	}
}

// BodyArgs receives what ParseBody finds. Slices are valid only during the
// call.
type BodyArgs interface {
	// Arg is one argument: a form field, a JSON value (named by its key;
	// array members by the array's key), a multipart field that is not a
	// file.
	Arg(name, value []byte)
	// File is an uploaded file's field name and file name.
	File(field, filename []byte)
	// PartHeader is one header line of a multipart part, "Name: value".
	PartHeader(line []byte)
}

// ParseBody finds the arguments of a request body of kind k. buf is a
// scratch buffer for decoded text (reused and returned; with
// len(body) spare capacity nothing is allocated); decoding problems are
// added to found. At most maxArgs arguments are reported.
func ParseBody(k BodyKind, boundary, body, buf []byte, maxArgs int, sink BodyArgs, found *proto.KindSet) []byte {
	if cap(buf) < len(body) {
		buf = make([]byte, 0, len(body))
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
		j := jsonWalker{in: body, buf: buf, sink: sink, max: maxArgs}
		j.value(nil, 0)
		buf = j.buf
	case BodyMultipart:
		parseMultipart(body, boundary, maxArgs, sink)
	}
	return buf
}

// jsonWalker reports the scalar values of a JSON document, each named by
// the key of the member holding it (array members: the array's key).
// Malformed input ends the walk; what was reported stays reported.
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

func (j *jsonWalker) value(name []byte, depth int) {
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
			key := j.str()
			j.ws()
			if j.bad || j.pos >= len(j.in) || j.in[j.pos] != ':' {
				j.bad = true
				return
			}
			j.pos++
			j.value(key, depth+1)
			if !j.more('}') {
				return
			}
		}
	case '[':
		j.pos++
		for {
			j.ws()
			if j.pos < len(j.in) && j.in[j.pos] == ']' {
				j.pos++
				return
			}
			j.value(name, depth+1)
			if !j.more(']') {
				return
			}
		}
	case '"':
		v := j.str()
		j.emit(name, v)
	default:
		s := j.pos
		for j.pos < len(j.in) && strings.IndexByte(",]} \t\r\n", j.in[j.pos]) < 0 {
			j.pos++
		}
		if j.pos == s {
			j.bad = true
			return
		}
		j.emit(name, j.in[s:j.pos])
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
				v, h := unhex(j.in[j.pos+k])
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

// parseMultipart reports the parts of a multipart/form-data body.
func parseMultipart(body, boundary []byte, maxArgs int, sink BodyArgs) {
	var delim [2 + MaxBoundary]byte
	d := append(append(delim[:0], '-', '-'), boundary...)
	i := bytes.Index(body, d)
	for parts := 0; i >= 0 && parts < MaxBodyParts; parts++ {
		rest := body[i+len(d):]
		if bytes.HasPrefix(rest, []byte("--")) {
			return // closing delimiter
		}
		// The part's headers start on the next line.
		nl := bytes.IndexByte(rest, '\n')
		if nl < 0 {
			return
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
		var name, filename []byte
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
			if c := bytes.IndexByte(line, ':'); c > 0 && equalFold(trimOWS(line[:c]), "content-disposition") {
				v := line[c+1:]
				name = param(v, "name")
				if fn := param(v, "filename"); fn != nil || bytes.Contains(v, []byte("filename")) {
					filename, hasFile = fn, true
				}
			}
		}
		if hasFile {
			sink.File(name, filename)
			continue
		}
		if maxArgs > 0 {
			maxArgs--
			sink.Arg(name, part)
		}
	}
}
