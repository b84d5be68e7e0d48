package http

import (
	"bytes"

	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/internal/ascii"
)

// appendRune appends the UTF-8 encoding of r (r < 0x110000).
func appendRune(dst []byte, r rune) []byte {
	switch {
	case r < 0x80:
		return append(dst, byte(r))
	case r < 0x800:
		return append(dst, 0xc0|byte(r>>6), 0x80|byte(r)&0x3f)
	case r < 0x10000:
		return append(dst, 0xe0|byte(r>>12), 0x80|byte(r>>6)&0x3f, 0x80|byte(r)&0x3f)
	}
	return append(dst, 0xf0|byte(r>>18), 0x80|byte(r>>12)&0x3f, 0x80|byte(r>>6)&0x3f, 0x80|byte(r)&0x3f)
}

// percentDecode appends the decoding of src to dst: %XX escapes, IIS
// %uXXXX escapes (as UTF-8), and with plus, '+' as a space. An invalid
// escape is kept as is. The output is never longer than src. In a path,
// escapes of '/', '\' and '.' are findings too.
func percentDecode(dst, src []byte, plus, path bool, found *proto.KindSet) []byte {
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch {
		case c == '+' && plus:
			dst = append(dst, ' ')
			continue
		case c == 0:
			found.Add(proto.HTTPURINullByte)
			dst = append(dst, c)
			continue
		case c != '%':
			dst = append(dst, c)
			continue
		}
		if i+2 < len(src) && (src[i+1] == 'u' || src[i+1] == 'U') && i+5 < len(src) &&
			ascii.IsHex(src[i+2]) && ascii.IsHex(src[i+3]) && ascii.IsHex(src[i+4]) && ascii.IsHex(src[i+5]) {
			var r rune
			for _, h := range src[i+2 : i+6] {
				v, _ := ascii.Unhex(h)
				r = r<<4 | rune(v)
			}
			found.Add(proto.HTTPURIUEncoding)
			if r == 0 {
				found.Add(proto.HTTPURINullByte)
			}
			if path && (r == '/' || r == '\\') {
				found.Add(proto.HTTPURIEncodedSlash)
			}
			if path && r == '.' {
				found.Add(proto.HTTPURIEncodedDot)
			}
			dst = appendRune(dst, r)
			i += 5
			continue
		}
		if i+2 >= len(src) {
			found.Add(proto.HTTPURIInvalidEscape)
			dst = append(dst, c)
			continue
		}
		v, ok := ascii.UnhexPair(src[i+1], src[i+2])
		if !ok {
			found.Add(proto.HTTPURIInvalidEscape)
			dst = append(dst, c)
			continue
		}
		switch v {
		case 0:
			found.Add(proto.HTTPURINullByte)
		case '%':
			// "%25" followed by what reads as another escape: the
			// classic double encoding (%252e%252e).
			if i+4 < len(src) && (ascii.IsHex(src[i+3]) && ascii.IsHex(src[i+4]) || src[i+3] == 'u' || src[i+3] == 'U') {
				found.Add(proto.HTTPURIDoubleEncoding)
			}
		case '/', '\\':
			if path {
				found.Add(proto.HTTPURIEncodedSlash)
			}
		case '.':
			if path {
				found.Add(proto.HTTPURIEncodedDot)
			}
		}
		dst = append(dst, v)
		i += 2
	}
	return dst
}

// fixUTF8 rewrites overlong UTF-8 sequences in p (in place) to the code
// point they encode, in shortest form: %c0%af becomes '/', the trick that
// walked IIS out of its web root. Other invalid UTF-8 is kept and reported.
func fixUTF8(p []byte, found *proto.KindSet) []byte {
	w := 0
	for r := 0; r < len(p); {
		c := p[r]
		if c < 0x80 {
			p[w] = c
			w++
			r++
			continue
		}
		var need int
		var cp rune
		var minCP rune
		switch {
		case c >= 0xc0 && c <= 0xdf:
			need, cp, minCP = 1, rune(c&0x1f), 0x80
		case c >= 0xe0 && c <= 0xef:
			need, cp, minCP = 2, rune(c&0x0f), 0x800
		case c >= 0xf0 && c <= 0xf7:
			need, cp, minCP = 3, rune(c&0x07), 0x10000
		default:
			found.Add(proto.HTTPURIInvalidUTF8)
			p[w] = c
			w++
			r++
			continue
		}
		if r+need >= len(p) {
			found.Add(proto.HTTPURIInvalidUTF8)
			p[w] = c
			w++
			r++
			continue
		}
		ok := true
		for k := 1; k <= need; k++ {
			cc := p[r+k]
			if cc&0xc0 != 0x80 {
				ok = false
				break
			}
			cp = cp<<6 | rune(cc&0x3f)
		}
		if !ok {
			found.Add(proto.HTTPURIInvalidUTF8)
			p[w] = c
			w++
			r++
			continue
		}
		switch {
		case cp < minCP:
			found.Add(proto.HTTPURIOverlongUTF8)
			if cp == 0 {
				found.Add(proto.HTTPURINullByte)
			}
			// The shortest form is never longer than what it replaces,
			// so the in-place write stays behind the read position.
			n := len(appendRune(p[w:w], cp))
			r += need + 1
			w += n
			continue
		case cp > 0x10ffff || cp >= 0xd800 && cp <= 0xdfff:
			found.Add(proto.HTTPURIInvalidUTF8)
		}
		copy(p[w:], p[r:r+need+1])
		w += need + 1
		r += need + 1
	}
	return p[:w]
}

// pathSpecial marks the bytes that make a path need NormalizePath.
var pathSpecial = func() (t [256]bool) {
	for c := 0; c < 0x20; c++ {
		t[c] = true
	}
	for c := 0x7f; c < 0x100; c++ {
		t[c] = true
	}
	t['%'], t['\\'], t[';'] = true, true, true
	return t
}()

// pathIsNormal reports whether NormalizePath would return raw unchanged
// and find nothing: it starts with '/', and has no escapes, backslashes,
// path parameters, control or non-ASCII bytes, dot segments or empty
// segments. Most paths are, and skip the copy.
func pathIsNormal(raw []byte) bool {
	if len(raw) == 0 || raw[0] != '/' {
		return false
	}
	for i, c := range raw {
		if pathSpecial[c] {
			return false
		}
		if c == '/' && i+1 < len(raw) && (raw[i+1] == '/' || raw[i+1] == '.') {
			return false
		}
	}
	return true
}

// NormalizePath appends to dst the normalised form of a raw request path
// (the target up to '?'): percent-decoded once (%XX, %uXXXX), overlong
// UTF-8 folded to its shortest form, '\' read as '/', runs of '/'
// collapsed, and "." and ".." segments removed as RFC 3986 5.2.4 does,
// never climbing above "/". A path that does not start with '/' gets one.
// Every transformation that changes the path is recorded in found, as is
// every decoding anomaly. The result is at most len(raw)+1 bytes; when dst
// has that much spare capacity, nothing is allocated.
func NormalizePath(dst, raw []byte, found *proto.KindSet) []byte {
	start := len(dst)
	if len(raw) == 0 || raw[0] != '/' && raw[0] != '\\' {
		dst = append(dst, '/')
	}
	dst = percentDecode(dst, raw, false, true, found)
	p := fixUTF8(dst[start:], found)
	p = removeDotSegments(p, found)
	return dst[:start+len(p)]
}

// removeDotSegments normalises a path that starts with '/' or '\', in
// place.
func removeDotSegments(p []byte, found *proto.KindSet) []byte {
	w, r, n := 0, 0, len(p)
	dots := false
	for r < n {
		s := r
		for r < n && (p[r] == '/' || p[r] == '\\') {
			if p[r] == '\\' {
				found.Add(proto.HTTPURIBackslash)
			}
			r++
		}
		if r-s > 1 {
			found.Add(proto.HTTPURIDuplicateSlash)
		}
		seg := r
		for r < n && p[r] != '/' && p[r] != '\\' {
			if p[r] == ';' {
				found.Add(proto.HTTPURIParameterInPath)
			}
			r++
		}
		switch r - seg {
		case 1:
			if p[seg] == '.' {
				dots = true
				if r == n {
					p[w] = '/'
					w++
				}
				continue
			}
		case 2:
			if p[seg] == '.' && p[seg+1] == '.' {
				dots = true
				if w == 0 {
					found.Add(proto.HTTPURIAboveRoot)
				}
				for w > 0 {
					w--
					if p[w] == '/' {
						break
					}
				}
				if r == n {
					p[w] = '/'
					w++
				}
				continue
			}
		}
		p[w] = '/'
		w++
		w += copy(p[w:], p[seg:r])
	}
	if dots {
		found.Add(proto.HTTPURIDotSegment)
		if found.Has(proto.HTTPURIEncodedDot) {
			found.Add(proto.HTTPURIDotSegmentEscape)
		}
	}
	if w == 0 {
		p[0] = '/'
		w = 1
	}
	return p[:w]
}

// plainQuery reports whether a query needs no decoding and has no empty
// pairs, so that it is its own decoded form.
func plainQuery(q []byte) bool {
	if len(q) == 0 || q[0] == '&' || q[len(q)-1] == '&' {
		return false
	}
	prev := byte(0)
	for _, c := range q {
		if c == '%' || c == '+' || c == 0 || c == '&' && prev == '&' {
			return false
		}
		prev = c
	}
	return true
}

// DecodeArgs splits a raw query into name=value pairs separated by '&',
// percent-decodes each ('+' is a space), and appends them to dst joined
// as "name=value&name=value". It appends at most maxArgs pairs to args
// (pointing into the returned buffer); the rest of the query is decoded
// into the buffer as is (HTTPURITooManyArgs). Empty pairs ("a=1&&b=2")
// are skipped. When the query needs no decoding, the buffer returned is
// query itself and args point into it. When dst has len(query) spare
// capacity and args maxArgs, nothing is allocated.
func DecodeArgs(dst []byte, args []Arg, query []byte, maxArgs int, found *proto.KindSet) ([]byte, []Arg) {
	if plainQuery(query) {
		for q := query; len(q) > 0; {
			pair := q
			if i := bytes.IndexByte(q, '&'); i >= 0 {
				pair, q = q[:i], q[i+1:]
			} else {
				q = nil
			}
			if len(args) == maxArgs {
				found.Add(proto.HTTPURITooManyArgs)
				break
			}
			a := Arg{Name: pair[:len(pair):len(pair)]}
			if i := bytes.IndexByte(pair, '='); i >= 0 {
				a.Name, a.Value = pair[:i:i], pair[i+1:len(pair):len(pair)]
			}
			args = append(args, a)
		}
		return query, args
	}
	if cap(dst)-len(dst) < len(query) {
		// Args point into dst: it must not move while they are built.
		dst = append(make([]byte, 0, len(dst)+len(query)), dst...)
	}
	for len(query) > 0 {
		var pair []byte
		if i := bytes.IndexByte(query, '&'); i >= 0 {
			pair, query = query[:i], query[i+1:]
		} else {
			pair, query = query, nil
		}
		if len(pair) == 0 {
			continue
		}
		if len(args) == maxArgs {
			found.Add(proto.HTTPURITooManyArgs)
			if len(dst) > 0 {
				dst = append(dst, '&')
			}
			dst = percentDecode(dst, pair, true, false, found)
			if len(query) > 0 {
				dst = append(dst, '&')
				dst = percentDecode(dst, query, true, false, found)
			}
			break
		}
		if len(args) > 0 {
			dst = append(dst, '&')
		}
		name, value := pair, []byte(nil)
		hasValue := false
		if i := bytes.IndexByte(pair, '='); i >= 0 {
			name, value, hasValue = pair[:i], pair[i+1:], true
		}
		ns := len(dst)
		dst = percentDecode(dst, name, true, false, found)
		ne := len(dst)
		var a Arg
		a.Name = dst[ns:ne:ne]
		if hasValue {
			dst = append(dst, '=')
			vs := len(dst)
			dst = percentDecode(dst, value, true, false, found)
			a.Value = dst[vs:len(dst):len(dst)]
		}
		args = append(args, a)
	}
	return dst, args
}
