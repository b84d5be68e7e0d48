// Package ascii holds the byte-level helpers that protocol parsers and rule
// transforms share: case folding and hex digits, on ASCII only. Protocols
// compare names and decode escapes byte by byte, never by Unicode rules, so
// these never allocate and never look at more than ASCII.
package ascii

// Lower returns c in lower case when it is an ASCII capital letter.
func Lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// EqualFold reports whether b and s are equal under ASCII case folding.
func EqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		if Lower(b[i]) != Lower(s[i]) {
			return false
		}
	}
	return true
}

// HasPrefixFold reports whether b begins with s under ASCII case folding.
func HasPrefixFold(b []byte, s string) bool {
	return len(b) >= len(s) && EqualFold(b[:len(s)], s)
}

// Unhex returns the value of the hex digit c.
func Unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// IsHex reports whether c is a hex digit.
func IsHex(c byte) bool {
	_, ok := Unhex(c)
	return ok
}

// UnhexPair returns the byte that the two hex digits hi and lo spell, as in
// a %XX escape.
func UnhexPair(hi, lo byte) (byte, bool) {
	h, ok1 := Unhex(hi)
	l, ok2 := Unhex(lo)
	return h<<4 | l, ok1 && ok2
}

// PercentDecode appends src to dst with every valid %XX escape decoded; an
// invalid or cut escape is kept as it is. The output is never longer than
// src, so decoding in place (dst = src[:0]) is safe.
func PercentDecode(dst, src []byte) []byte {
	for i := 0; i < len(src); i++ {
		c := src[i]
		if c == '%' && i+2 < len(src) {
			if b, ok := UnhexPair(src[i+1], src[i+2]); ok {
				dst = append(dst, b)
				i += 2
				continue
			}
		}
		dst = append(dst, c)
	}
	return dst
}
