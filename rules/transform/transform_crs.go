package transform

import (
	"unicode/utf8"
)

// The transforms below are those ModSecurity rule sets (the OWASP Core
// Rule Set) use beyond the common ones; they follow ModSecurity's and
// Coraza's definitions, with the differences noted on each.

// cssDecodeStep decodes CSS escapes (t:cssDecode): a backslash and 1-6
// hex digits is one code point (full-width ASCII folded to ASCII, written
// as UTF-8; a single whitespace after it is part of the escape), a
// backslash before a newline is dropped, a backslash before any other
// character keeps the character. A zero code point becomes a NUL byte
// (CSS says U+FFFD; a byte keeps the transform non-expanding).
func cssDecodeStep(dst, src []byte, _ *tstate, final bool) ([]byte, int) {
	return decodeEscapes(dst, src, final, false, cssEscape)
}

// cssEscape decodes one CSS escape (rest follows the backslash).
func cssEscape(dst, rest []byte, final bool) ([]byte, int) {
	n := hexRun(rest, 6)
	switch {
	case n > 0:
		// The escape may go on in the next chunk (more digits, or the
		// whitespace it swallows).
		if !final && n == len(rest) {
			return dst, -1
		}
		switch r := hexValue(rest[:n]); {
		case r == 0:
			dst = append(dst, 0)
		case r >= 0xff01 && r <= 0xff5e:
			dst = append(dst, byte(r-0xfee0))
		case r > utf8.MaxRune || r >= 0xd800 && r <= 0xdfff:
			dst = utf8.AppendRune(dst, utf8.RuneError)
		default:
			dst = utf8.AppendRune(dst, r)
		}
		if n < len(rest) && isSpace(rest[n]) {
			n++
		}
		return dst, n
	case rest[0] == '\n':
		return dst, 1
	}
	return append(dst, rest[0]), 1
}

// escapeSeqDecodeStep decodes ANSI C escapes (t:escapeSeqDecode): \a \b
// \f \n \r \t \v \\ \? \' \" , \xHH and up to three octal digits (the low
// byte of their value); a backslash before any other character keeps the
// character alone.
func escapeSeqDecodeStep(dst, src []byte, _ *tstate, final bool) ([]byte, int) {
	return decodeEscapes(dst, src, final, true, cEscapeSeq)
}

// cEscapeSeq decodes one ANSI C escape (rest follows the backslash).
func cEscapeSeq(dst, rest []byte, final bool) ([]byte, int) {
	e := rest[0]
	if c, ok := cEscape(e); ok {
		return append(dst, c), 1
	}
	if e == 'x' || e == 'X' {
		if b, n := xEscape(rest, final); n != 0 {
			if n > 0 {
				dst = append(dst, b)
			}
			return dst, n
		}
	}
	if e >= '0' && e <= '7' {
		n, v := 0, 0
		for n < 3 && n < len(rest) && rest[n] >= '0' && rest[n] <= '7' {
			v = v*8 + int(rest[n]-'0')
			n++
		}
		if !final && n == len(rest) && n < 3 {
			return dst, -1
		}
		return append(dst, byte(v)), n
	}
	return append(dst, e), 1
}

func cEscape(e byte) (byte, bool) {
	switch e {
	case 'a':
		return '\a', true
	case 'b':
		return '\b', true
	case 'f':
		return '\f', true
	case 'n':
		return '\n', true
	case 'r':
		return '\r', true
	case 't':
		return '\t', true
	case 'v':
		return '\v', true
	case '\\', '?', '\'', '"':
		return e, true
	}
	return 0, false
}

// removeCommentsCharStep drops the comment markers /* */ -- <!-- --> and
// # themselves (t:removeCommentsChar), leaving what they enclose.
func removeCommentsCharStep(dst, src []byte, _ *tstate, final bool) ([]byte, int) {
	i := 0
	for i < len(src) {
		c := src[i]
		rest := src[i:]
		// A marker may be split at the chunk's end: hold its start back.
		if !final && len(rest) < 4 && (c == '/' || c == '*' || c == '<' || c == '-') && markerPrefix(rest) {
			return dst, i
		}
		switch {
		case c == '/' && len(rest) > 1 && rest[1] == '*', c == '*' && len(rest) > 1 && rest[1] == '/':
			i += 2
		case c == '<' && len(rest) > 3 && rest[1] == '!' && rest[2] == '-' && rest[3] == '-':
			i += 4
		case c == '-' && len(rest) > 2 && rest[1] == '-' && rest[2] == '>':
			i += 3
		case c == '-' && len(rest) > 1 && rest[1] == '-':
			i += 2
		case c == '#':
			i++
		default:
			dst = append(dst, c)
			i++
		}
	}
	return dst, i
}

// markerPrefix reports whether b (shorter than the longest marker) is a
// proper prefix of a comment marker, so more input could complete it.
func markerPrefix(b []byte) bool {
	for _, m := range [...]string{"/*", "*/", "<!--", "-->", "--"} {
		if len(b) < len(m) && string(b) == m[:len(b)] {
			return true
		}
	}
	return false
}

// utf8ToUnicodeStep writes every non-ASCII character as %uHHHH (lower-case
// hex, at least four digits; invalid bytes as %ufffd), ModSecurity's
// t:utf8toUnicode. It is the one transform that lengthens its input (at
// most six bytes per input byte), so it is allowed on block fields only.
func utf8ToUnicodeStep(dst, src []byte, _ *tstate, final bool) ([]byte, int) {
	const hexd = "0123456789abcdef"
	i := 0
	for i < len(src) {
		c := src[i]
		if c < utf8.RuneSelf {
			j := i + 1
			for j < len(src) && src[j] < utf8.RuneSelf {
				j++
			}
			dst = append(dst, src[i:j]...)
			i = j
			continue
		}
		if !final && !utf8.FullRune(src[i:]) {
			return dst, i
		}
		r, n := utf8.DecodeRune(src[i:])
		dst = append(dst, '%', 'u')
		digits := 4
		for v := r >> 16; v > 0; v >>= 4 {
			digits++
		}
		for k := digits - 1; k >= 0; k-- {
			dst = append(dst, hexd[(r>>(4*k))&15])
		}
		i += n
	}
	return dst, i
}
