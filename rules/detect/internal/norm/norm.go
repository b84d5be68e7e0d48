// Package norm undoes the encodings an attacker stacks on a value before a
// semantic detector (rules/detect/...) reads it: URL (%XX, %uXXXX, '+'),
// HTML character references, JavaScript/JSON escapes (\xXX, \uXXXX, \/)
// and overlong UTF-8 forms of '.', '/' and '\', repeated until a pass
// changes nothing, as an application that decodes more than once would.
package norm

import (
	"bytes"

	"github.com/deepwall/deepwall/rules/transform"
)

// maxLayers bounds the decoding passes per value: dotdotpwn's deepest
// payloads stack three layers (%25%32%65); a fourth pass that still
// changes the value stops there.
const maxLayers = 4

var (
	withJS = []transform.Transform{transform.URLDecode, transform.HTMLEntityDecode, transform.JSDecode}
	noJS   = withJS[:2]
)

// Decoder decodes values with reusable buffers; after they have grown to
// the largest value it does not allocate. Not safe for concurrent use.
type Decoder struct {
	// KeepBackslash leaves JavaScript escapes alone: a Windows path's
	// "\boot.ini" or "\temp" must not become a backspace or a tab.
	KeepBackslash bool
	// KeepPlus leaves '+' alone: it is a space only in a query or form
	// value the engine has already decoded, and an operator (7+7) in a
	// template or filter.
	KeepPlus bool
	plus     []byte
	t        transform.Transformer
	out      [2][]byte // alternate: one holds the current layer, the other the next
}

// Decode returns src with every layer of encoding undone. The result is
// valid until the next call and may alias src.
func (d *Decoder) Decode(src []byte) []byte {
	cur := src
	for layer := range maxLayers {
		if !encoded(cur, d.KeepPlus) {
			break
		}
		chain := withJS
		if d.KeepBackslash {
			chain = noJS
		}
		in := cur
		if d.KeepPlus && bytes.IndexByte(cur, '+') >= 0 {
			d.plus = d.plus[:0]
			for _, c := range cur {
				if c == '+' {
					d.plus = append(d.plus, "%2B"...)
				} else {
					d.plus = append(d.plus, c)
				}
			}
			in = d.plus
		}
		next := d.t.Apply(chain, in) // may alias in
		buf := &d.out[layer%2]       // never cur's memory: that is src or the other buffer
		*buf = foldOverlong(append((*buf)[:0], next...))
		if bytes.Equal(*buf, cur) {
			break
		}
		cur = *buf
	}
	return cur
}

// encoded reports whether b holds a byte that starts an escape ('&' only
// before '#' or a letter, '+' only when it is decoded).
func encoded(b []byte, keepPlus bool) bool {
	for i, c := range b {
		switch c {
		case '%', '\\', 0xc0, 0xc1, 0xe0:
			return true
		case '+':
			if !keepPlus {
				return true
			}
		case '&':
			if i+1 < len(b) && (b[i+1] == '#' || b[i+1]|0x20 >= 'a' && b[i+1]|0x20 <= 'z') {
				return true
			}
		}
	}
	return false
}

// foldOverlong rewrites in place the overlong UTF-8 encodings of '.', '/'
// and '\' that old IIS, Tomcat and Java decoders accepted (C0 AE, C0 AF,
// C1 9C, C1 1C, E0 80 AE, E0 80 AF) and returns the shortened slice.
func foldOverlong(b []byte) []byte {
	if bytes.IndexByte(b, 0xc0) < 0 && bytes.IndexByte(b, 0xc1) < 0 && bytes.IndexByte(b, 0xe0) < 0 {
		return b
	}
	w := 0
	for i := 0; i < len(b); i++ {
		c := b[i]
		if i+1 < len(b) && (c == 0xc0 || c == 0xc1) {
			if r := overlong2(c, b[i+1]); r != 0 {
				b[w] = r
				w++
				i++
				continue
			}
		}
		if c == 0xe0 && i+2 < len(b) && b[i+1] == 0x80 && (b[i+2] == 0xae || b[i+2] == 0xaf) {
			b[w] = b[i+2] - 0x80
			w++
			i += 2
			continue
		}
		b[w] = c
		w++
	}
	return b[:w]
}

// overlong2 is the ASCII byte of a two-byte overlong sequence of '.', '/'
// or '\' (and the lenient decoders' C0 2F, C1 1C readings), else 0.
func overlong2(c0, c1 byte) byte {
	switch {
	case c0 == 0xc0 && (c1 == 0xae || c1 == 0x2e):
		return '.'
	case c0 == 0xc0 && (c1 == 0xaf || c1 == 0x2f):
		return '/'
	case c0 == 0xc1 && (c1 == 0x9c || c1 == 0x1c || c1 == 0x5c):
		return '\\'
	}
	return 0
}
