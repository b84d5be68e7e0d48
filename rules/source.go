package rules

import (
	"bytes"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/deepwall/deepwall/internal/ascii"
)

// scalarSource remembers where a scalar (a regex) was written so that an
// error at a byte offset of its value can be placed on the exact line and
// column, whatever the quoting. It holds the file's bytes only while the
// file is being validated.
type scalarSource struct {
	file      string
	line, col int
	style     yaml.Style
	value     string
	src       []byte
}

func newScalarSource(f *fileCtx, n *yaml.Node) scalarSource {
	return scalarSource{file: f.name, line: n.Line, col: n.Column, style: n.Style, value: n.Value, src: f.src}
}

// pos maps a byte offset of the decoded value to a position in the file;
// when it cannot (folded scalars, offsets out of range) it returns the
// scalar's own position.
func (s scalarSource) pos(off int) Position {
	base := Position{File: s.file, Line: s.line, Column: s.col}
	if s.src == nil || off < 0 || off > len(s.value) {
		return base
	}
	start := lineStart(s.src, s.line)
	if start < 0 {
		return base
	}
	// Advance col-1 characters to the scalar's first byte.
	i := start
	for c := 1; c < s.col && i < len(s.src) && s.src[i] != '\n'; c++ {
		_, w := utf8.DecodeRune(s.src[i:])
		i += w
	}
	raw := s.src[i:]
	switch s.style {
	case 0, yaml.TaggedStyle:
		if !bytes.HasPrefix(raw, []byte(s.value)) {
			return base
		}
		base.Column += utf8.RuneCountInString(s.value[:off])
		return base
	case yaml.SingleQuotedStyle:
		return s.quoted(raw, off, base, false)
	case yaml.DoubleQuotedStyle:
		return s.quoted(raw, off, base, true)
	case yaml.LiteralStyle:
		return s.literal(off, base)
	}
	return base
}

// quoted walks a single-line quoted scalar, counting decoded bytes.
func (s scalarSource) quoted(raw []byte, off int, base Position, double bool) Position {
	if len(raw) == 0 {
		return base
	}
	i, d, col := 1, 0, base.Column+1
	for i < len(raw) && d < off {
		c := raw[i]
		switch {
		case c == '\n':
			return base
		case !double && c == '\'':
			if i+1 < len(raw) && raw[i+1] == '\'' {
				i, d, col = i+2, d+1, col+2
				continue
			}
			return base // closing quote before off
		case double && c == '"':
			return base
		case double && c == '\\':
			if i+1 >= len(raw) {
				return base
			}
			n, w := escapeLen(raw[i+1:])
			if d+n > off {
				return Position{File: base.File, Line: base.Line, Column: col}
			}
			i, d, col = i+1+w, d+n, col+1+w
			continue
		}
		_, w := utf8.DecodeRune(raw[i:])
		i, d, col = i+w, d+w, col+1
	}
	base.Column = col
	return base
}

// escapeLen returns the decoded byte length and source length (after the
// backslash) of a YAML double-quoted escape.
func escapeLen(b []byte) (decoded, width int) {
	hexRune := func(n int) (int, int) {
		if len(b) < 1+n {
			return 1, len(b)
		}
		var r rune
		for _, h := range b[1 : 1+n] {
			v, _ := ascii.Unhex(h)
			r = r<<4 | rune(v)
		}
		if l := utf8.RuneLen(r); l > 0 {
			return l, 1 + n
		}
		return 1, 1 + n
	}
	switch b[0] {
	case 'x':
		return 1, min(3, len(b))
	case 'u':
		return hexRune(4)
	case 'U':
		return hexRune(8)
	case 'N', '_':
		return 2, 1
	case 'L', 'P':
		return 3, 1
	}
	return 1, 1
}

// literal maps an offset in a '|' block scalar: each value line is a
// source line after the header, indented by the block's indentation.
func (s scalarSource) literal(off int, base Position) Position {
	k := strings.Count(s.value[:off], "\n")
	lineStartOff := strings.LastIndexByte(s.value[:off], '\n') + 1
	srcLine := s.line + 1 + k
	text := lineOf(s.src, srcLine)
	indent := 0
	for indent < len(text) && text[indent] == ' ' {
		indent++
	}
	return Position{File: s.file, Line: srcLine, Column: indent + 1 + utf8.RuneCountInString(s.value[lineStartOff:off])}
}

// lineStart returns the byte offset where line n (1-based) begins, or -1.
func lineStart(src []byte, n int) int {
	off := 0
	for i := 1; i < n; i++ {
		j := bytes.IndexByte(src[off:], '\n')
		if j < 0 {
			return -1
		}
		off += j + 1
	}
	return off
}
