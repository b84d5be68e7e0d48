package transform

import (
	"bytes"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/deepwall/deepwall/internal/ascii"
)

// Transform is a normalisation applied to a field before matching, to
// undo the encodings attackers use to hide a payload.
//
// Every transform but Utf8ToUnicode is non-expanding: its output is never
// longer than its input, so Append never allocates when dst has len(src)
// spare capacity. Utf8ToUnicode writes at most MaxExpansion bytes per input
// byte and is allowed on block fields only.
type Transform uint8

// MaxExpansion is the most bytes any transform writes per input byte.
const MaxExpansion = 6

// MaxChainLen is the most transforms in one chain.
const MaxChainLen = 8

// The transforms of the rule language.
const (
	URLDecode          Transform = iota + 1 // %XX, %uXXXX (IIS full-width and slash/dot look-alikes folded to ASCII), '+' → space
	Lowercase                               // ASCII A-Z → a-z
	HTMLEntityDecode                        // &#NN; &#xHH; and common named entities, ';' optional for numeric ones
	RemoveNulls                             // drop NUL bytes
	CompressWhitespace                      // runs of ASCII whitespace → one space
	RemoveWhitespace                        // drop ASCII whitespace
	NormalizePath                           // collapse //, resolve /./ and /../ (block fields only)
	NormalizePathWin                        // '\' → '/', then NormalizePath (block fields only)
	Base64Decode                            // standard and URL-safe alphabet; other bytes skipped
	HexDecode                               // pairs of hex digits → byte; other bytes kept
	JSDecode                                // \xHH \uHHHH \u{H..} \NNN \n \t \\ \" ... (JavaScript/JSON escapes; other \c kept as is)
	CmdLine                                 // shell de-obfuscation: drop \ " ' ^, ',;' → space, squeeze spaces, no space before / or (, lower case
	ReplaceComments                         // /* ... */ → space; MySQL /*!NNNNN ... */ keeps its content
	Trim                                    // drop leading and trailing whitespace (block fields only)
	CSSDecode                               // CSS escapes: \HHHHHH (and one whitespace after), \c → c
	EscapeSeqDecode                         // ANSI C escapes: \n \t ... \xHH \NNN
	RemoveCommentsChar                      // drop the markers /* */ -- <!-- --> # themselves
	Utf8ToUnicode                           // non-ASCII characters → %uHHHH (expanding; block fields only)
	numTransforms
)

// maxCarry bounds the bytes a streaming transform holds back at a chunk
// boundary because they may start an escape completed by the next chunk.
const maxCarry = 16

// tstate is a streaming transform's state between chunks.
type tstate struct {
	mode uint8
	acc  uint32
	n    uint8
}

type transformInfo struct {
	name      string
	blockOnly bool // needs the whole value at once
}

// Each transform's step function transforms src onto dst. With final false
// it may leave a tail of at most maxCarry bytes unconsumed (an escape that
// the next chunk may complete) and returns how much it consumed; with final
// true it consumes everything.
var transforms = [numTransforms]transformInfo{
	URLDecode:          {name: "url_decode"},
	Lowercase:          {name: "lowercase"},
	HTMLEntityDecode:   {name: "html_entity_decode"},
	RemoveNulls:        {name: "remove_nulls"},
	CompressWhitespace: {name: "compress_whitespace"},
	RemoveWhitespace:   {name: "remove_whitespace"},
	NormalizePath:      {name: "normalize_path", blockOnly: true},
	NormalizePathWin:   {name: "normalize_path_win", blockOnly: true},
	Base64Decode:       {name: "base64_decode"},
	HexDecode:          {name: "hex_decode"},
	JSDecode:           {name: "js_decode"},
	CmdLine:            {name: "cmd_line"},
	ReplaceComments:    {name: "replace_comments"},
	Trim:               {name: "trim", blockOnly: true},
	CSSDecode:          {name: "css_decode"},
	EscapeSeqDecode:    {name: "escape_seq_decode"},
	RemoveCommentsChar: {name: "remove_comments_char"},
	Utf8ToUnicode:      {name: "utf8_to_unicode", blockOnly: true},
}

// Valid reports whether t is a transform of the rule language.
func (t Transform) Valid() bool { return t > 0 && t < numTransforms }

// String gives the transform's name in the rule language.
func (t Transform) String() string {
	if t.Valid() {
		return transforms[t].name
	}
	return fmt.Sprintf("transform(%d)", uint8(t))
}

// BlockOnly reports whether the transform needs the whole value at once and
// so cannot be used on stream fields (bodies, payload).
func (t Transform) BlockOnly() bool { return t.Valid() && transforms[t].blockOnly }

// Append appends the transform of src to dst and returns the extended
// slice. The output is never longer than src (Utf8ToUnicode: at most
// MaxExpansion times), so Append does not allocate when cap(dst)-len(dst)
// >= len(src) (MaxExpansion*len(src)). src and dst must not overlap.
func (t Transform) Append(dst, src []byte) []byte {
	if !t.Valid() {
		return append(dst, src...)
	}
	var st tstate
	out, _ := t.step(dst, src, &st, true)
	return out
}

// step dispatches statically: an indirect call through transforms[t].step
// would make st escape and cost an allocation per call.
func (t Transform) step(dst, src []byte, st *tstate, final bool) ([]byte, int) {
	switch t {
	case URLDecode:
		return urlDecodeStep(dst, src, st, final)
	case Lowercase:
		return lowercaseStep(dst, src, st, final)
	case HTMLEntityDecode:
		return htmlEntityStep(dst, src, st, final)
	case RemoveNulls:
		return removeNullsStep(dst, src, st, final)
	case CompressWhitespace:
		return compressWSStep(dst, src, st, final)
	case RemoveWhitespace:
		return removeWSStep(dst, src, st, final)
	case NormalizePath:
		return normalizePathStep(dst, src, st, final)
	case NormalizePathWin:
		return normalizePathWinStep(dst, src, st, final)
	case Base64Decode:
		return base64Step(dst, src, st, final)
	case HexDecode:
		return hexDecodeStep(dst, src, st, final)
	case JSDecode:
		return jsDecodeStep(dst, src, st, final)
	case CmdLine:
		return cmdLineStep(dst, src, st, final)
	case ReplaceComments:
		return replaceCommentsStep(dst, src, st, final)
	case Trim:
		return trimStep(dst, src, st, final)
	case CSSDecode:
		return cssDecodeStep(dst, src, st, final)
	case EscapeSeqDecode:
		return escapeSeqDecodeStep(dst, src, st, final)
	case RemoveCommentsChar:
		return removeCommentsCharStep(dst, src, st, final)
	case Utf8ToUnicode:
		return utf8ToUnicodeStep(dst, src, st, final)
	}
	return append(dst, src...), len(src)
}

// Parse reads a transform name.
func Parse(s string) (Transform, error) {
	for t := Transform(1); t < numTransforms; t++ {
		if transforms[t].name == s {
			return t, nil
		}
	}
	return 0, fmt.Errorf("unknown transform %q", s)
}

// Names lists the transform names of the rule language.
func Names() []string {
	out := make([]string, 0, numTransforms-1)
	for t := Transform(1); t < numTransforms; t++ {
		out = append(out, transforms[t].name)
	}
	return out
}

// Transformer applies a transform chain to whole values with two reusable
// buffers: after the buffers have grown to the largest input it does not
// allocate. Not safe for concurrent use; the DPI engine keeps one per worker.
type Transformer struct {
	a, b []byte
}

// Apply runs chain over src. The result may alias src (an empty chain, or
// no step changes the value) and is valid until the next call.
func (t *Transformer) Apply(chain []Transform, src []byte) []byte {
	in := src
	if len(chain) == 0 {
		return in
	}
	// Steps that cannot change the value (Identity) are skipped; known is
	// false once a step changed it and its classes must be taken again.
	m, known := ClassesOf(src), true
	n := 0 // steps applied: the next one writes to a if even, b if odd
	for _, tr := range chain {
		if !known {
			m, known = ClassesOf(in), true
		}
		if tr.Identity(m) {
			continue
		}
		buf := &t.a
		if n%2 == 1 {
			buf = &t.b
		}
		n++
		if cap(*buf) < len(in) {
			*buf = make([]byte, 0, len(in)+len(in)/4)
		}
		*buf = tr.Append((*buf)[:0], in)
		in, known = *buf, false
	}
	return in
}

// Stream applies a transform chain to a stream that arrives in
// chunks: concatenating its outputs gives the same bytes as applying the
// chain to the whole stream at once, including escapes split between
// chunks. Block-only transforms (normalize_path, normalize_path_win, trim)
// are not allowed on stream fields and are applied per chunk here.
type Stream struct {
	chain  []Transform
	stages [MaxChainLen]stage
	a, b   []byte
	in     []byte
}

type stage struct {
	st     tstate
	carry  [maxCarry]byte
	ncarry int
}

// NewStream returns a transformer for chain (at most MaxChainLen
// transforms are used).
func NewStream(chain []Transform) *Stream {
	if len(chain) > MaxChainLen {
		chain = chain[:MaxChainLen]
	}
	return &Stream{chain: chain}
}

// Reset prepares the transformer for a new stream with the same chain.
func (s *Stream) Reset() {
	for i := range s.stages {
		s.stages[i] = stage{}
	}
}

// Write transforms the next chunk; the result is valid until the next call.
func (s *Stream) Write(chunk []byte) []byte { return s.run(chunk, false) }

// Close flushes the bytes held back at the end of the stream and resets
// the transformer; the result is valid until the next call.
func (s *Stream) Close() []byte {
	out := s.run(nil, true)
	for i := range s.stages {
		s.stages[i] = stage{}
	}
	return out
}

func (s *Stream) run(chunk []byte, final bool) []byte {
	in := chunk
	for i, tr := range s.chain {
		stg := &s.stages[i]
		src := in
		if stg.ncarry > 0 {
			// Join the held-back tail with the new input.
			need := stg.ncarry + len(in)
			if cap(s.in) < need {
				s.in = make([]byte, 0, need+need/4)
			}
			s.in = append(append(s.in[:0], stg.carry[:stg.ncarry]...), in...)
			src = s.in
		}
		buf := &s.a
		if i%2 == 1 {
			buf = &s.b
		}
		if cap(*buf) < len(src) {
			*buf = make([]byte, 0, len(src)+len(src)/4)
		}
		var n int
		*buf, n = tr.step((*buf)[:0], src, &stg.st, final)
		rest := src[n:]
		if len(rest) > maxCarry { // a step broke its contract: never lose data
			*buf = append(*buf, rest...)
			rest = nil
		}
		stg.ncarry = copy(stg.carry[:], rest)
		in = *buf
	}
	return in
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// hexRun counts hex digits at the start of b, up to max.
func hexRun(b []byte, max int) int {
	n := 0
	for n < len(b) && n < max && ascii.IsHex(b[n]) {
		n++
	}
	return n
}

// hexValue returns the value of the hex digits b (at most eight).
func hexValue(b []byte) rune {
	var r rune
	for _, h := range b {
		v, _ := ascii.Unhex(h)
		r = r<<4 | rune(v)
	}
	return r
}

// plainLen returns the length of src before its first esc (all of it
// when there is none): the run a decoder copies as it is before its next
// escape.
func plainLen(src []byte, esc byte) int {
	if n := bytes.IndexByte(src, esc); n >= 0 {
		return n
	}
	return len(src)
}

// appendRune appends r as UTF-8. With fold it maps full-width ASCII
// (U+FF01..U+FF5E) and the slash and dot look-alikes IIS's best-fit mapping
// turns into path separators (U+2215, U+2216, U+2024, U+FE52) to ASCII.
// Invalid runes are not appended and ok is false.
func appendRune(dst []byte, r rune, fold bool) ([]byte, bool) {
	if fold {
		switch {
		case r >= 0xff01 && r <= 0xff5e:
			r -= 0xfee0
		case r == 0x2215:
			r = '/'
		case r == 0x2216:
			r = '\\'
		case r == 0x2024 || r == 0xfe52:
			r = '.'
		}
	}
	if r < 0 || r > utf8.MaxRune || (r >= 0xd800 && r <= 0xdfff) {
		return dst, false
	}
	return utf8.AppendRune(dst, r), true
}

func urlDecodeStep(dst, src []byte, _ *tstate, final bool) ([]byte, int) {
	i := 0
	for i < len(src) {
		// Copy the run up to the next '%' or '+' in one go.
		j := i
		for j < len(src) && src[j] != '%' && src[j] != '+' {
			j++
		}
		dst = append(dst, src[i:j]...)
		if i = j; i >= len(src) {
			break
		}
		if src[i] == '+' {
			dst = append(dst, ' ')
			i++
			continue
		}
		rest := src[i+1:]
		if len(rest) >= 2 {
			if b, ok := ascii.UnhexPair(rest[0], rest[1]); ok {
				dst = append(dst, b)
				i += 3
				continue
			}
		}
		if len(rest) >= 5 && (rest[0] == 'u' || rest[0] == 'U') && hexRun(rest[1:], 4) == 4 {
			var ok bool
			if dst, ok = appendRune(dst, hexValue(rest[1:5]), true); ok {
				i += 6
				continue
			}
		}
		if !final && urlEscapePrefix(rest) {
			return dst, i // may complete with the next chunk
		}
		dst = append(dst, '%')
		i++
	}
	return dst, i
}

// urlEscapePrefix reports whether rest (what follows a '%' at the end of a
// chunk) could still become a complete escape.
func urlEscapePrefix(rest []byte) bool {
	switch {
	case len(rest) == 0:
		return true
	case len(rest) == 1:
		return ascii.IsHex(rest[0]) || rest[0] == 'u' || rest[0] == 'U'
	case rest[0] == 'u' || rest[0] == 'U':
		return len(rest) < 5 && hexRun(rest[1:], 4) == len(rest)-1
	}
	return false
}

var lowerTable = func() (t [256]byte) {
	for i := range t {
		t[i] = byte(i)
		if i >= 'A' && i <= 'Z' {
			t[i] += 'a' - 'A'
		}
	}
	return t
}()

func lowercaseStep(dst, src []byte, _ *tstate, _ bool) ([]byte, int) {
	n := len(dst)
	dst = slices.Grow(dst, len(src))[:n+len(src)]
	out := dst[n:]
	for i, c := range src {
		out[i] = lowerTable[c]
	}
	return dst, len(src)
}

func removeNullsStep(dst, src []byte, _ *tstate, _ bool) ([]byte, int) {
	for rest := src; len(rest) > 0; {
		i := bytes.IndexByte(rest, 0)
		if i < 0 {
			dst = append(dst, rest...)
			break
		}
		dst = append(dst, rest[:i]...)
		rest = rest[i+1:]
	}
	return dst, len(src)
}

func removeWSStep(dst, src []byte, _ *tstate, _ bool) ([]byte, int) {
	for _, c := range src {
		if !isSpace(c) {
			dst = append(dst, c)
		}
	}
	return dst, len(src)
}

// compressWSStep: st.mode 1 means the last byte emitted was the space of a
// whitespace run, so a run continuing into the next chunk emits nothing.
func compressWSStep(dst, src []byte, st *tstate, _ bool) ([]byte, int) {
	for _, c := range src {
		if isSpace(c) {
			if st.mode == 0 {
				dst = append(dst, ' ')
				st.mode = 1
			}
			continue
		}
		st.mode = 0
		dst = append(dst, c)
	}
	return dst, len(src)
}

func trimStep(dst, src []byte, _ *tstate, _ bool) ([]byte, int) {
	lo, hi := 0, len(src)
	for lo < hi && isSpace(src[lo]) {
		lo++
	}
	for hi > lo && isSpace(src[hi-1]) {
		hi--
	}
	return append(dst, src[lo:hi]...), len(src)
}

// cmdLineStep follows ModSecurity's t:cmdLine. st.mode 1 means a space is
// pending: it is emitted before the next byte unless that byte is '/' or '('.
func cmdLineStep(dst, src []byte, st *tstate, final bool) ([]byte, int) {
	for _, c := range src {
		switch {
		case c == '\\' || c == '"' || c == '\'' || c == '^':
			continue
		case c == ',' || c == ';' || isSpace(c):
			st.mode = 1
			continue
		}
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if st.mode == 1 && c != '/' && c != '(' {
			dst = append(dst, ' ')
		}
		st.mode = 0
		dst = append(dst, c)
	}
	if final && st.mode == 1 {
		dst = append(dst, ' ')
		st.mode = 0
	}
	return dst, len(src)
}

// hexDecodeStep decodes pairs of hex digits; st.mode 1 holds a pending
// first digit in st.acc.
func hexDecodeStep(dst, src []byte, st *tstate, final bool) ([]byte, int) {
	for _, c := range src {
		if v, ok := ascii.Unhex(c); ok {
			if st.mode == 1 {
				dst = append(dst, byte(st.acc)<<4|v)
				st.mode = 0
			} else {
				st.acc, st.mode = uint32(v), 1
				st.n = c
			}
			continue
		}
		if st.mode == 1 {
			dst = append(dst, st.n)
			st.mode = 0
		}
		dst = append(dst, c)
	}
	if final && st.mode == 1 {
		dst = append(dst, st.n)
		st.mode = 0
	}
	return dst, len(src)
}

func b64val(c byte) (byte, bool) {
	switch {
	case c >= 'A' && c <= 'Z':
		return c - 'A', true
	case c >= 'a' && c <= 'z':
		return c - 'a' + 26, true
	case c >= '0' && c <= '9':
		return c - '0' + 52, true
	case c == '+' || c == '-':
		return 62, true
	case c == '/' || c == '_':
		return 63, true
	}
	return 0, false
}

// base64Step accumulates sextets in st.acc (st.n of them); '=' ends a
// quantum, bytes outside both alphabets are skipped.
func base64Step(dst, src []byte, st *tstate, final bool) ([]byte, int) {
	for _, c := range src {
		if c == '=' {
			dst = b64flush(dst, st)
			continue
		}
		v, ok := b64val(c)
		if !ok {
			continue
		}
		st.acc = st.acc<<6 | uint32(v)
		st.n++
		if st.n == 4 {
			dst = append(dst, byte(st.acc>>16), byte(st.acc>>8), byte(st.acc))
			st.acc, st.n = 0, 0
		}
	}
	if final {
		dst = b64flush(dst, st)
	}
	return dst, len(src)
}

func b64flush(dst []byte, st *tstate) []byte {
	switch st.n {
	case 2:
		dst = append(dst, byte(st.acc>>4))
	case 3:
		dst = append(dst, byte(st.acc>>10), byte(st.acc>>2))
	}
	st.acc, st.n = 0, 0
	return dst
}

// jsDecodeStep decodes JavaScript string escapes.
func jsDecodeStep(dst, src []byte, _ *tstate, final bool) ([]byte, int) {
	return decodeEscapes(dst, src, final, true, jsEscape)
}

// jsEscape decodes one JavaScript escape (rest follows the backslash).
func jsEscape(dst, rest []byte, final bool) ([]byte, int) {
	switch e := rest[0]; {
	case e == 'x':
		if b, n := xEscape(rest, final); n > 0 {
			return append(dst, b), n
		} else if n < 0 {
			return dst, n
		}
	case e == 'u':
		if len(rest) >= 5 && hexRun(rest[1:], 4) == 4 {
			if out, ok := appendRune(dst, hexValue(rest[1:5]), false); ok {
				return out, 5
			}
		} else if len(rest) >= 2 && rest[1] == '{' {
			n := hexRun(rest[2:], 6)
			if n > 0 && len(rest) > 2+n && rest[2+n] == '}' {
				if out, ok := appendRune(dst, hexValue(rest[2:2+n]), false); ok {
					return out, 3 + n
				}
			} else if !final && len(rest) == 2+n && n <= 6 {
				return dst, -1
			}
		} else if !final && len(rest) < 5 && (len(rest) == 1 || hexRun(rest[1:], 4) == len(rest)-1 || (len(rest) == 2 && rest[1] == '{')) {
			return dst, -1
		}
	case e >= '0' && e <= '7':
		// Up to three octal digits, value at most 0377.
		n, v := 0, 0
		for n < 3 && n < len(rest) && rest[n] >= '0' && rest[n] <= '7' && v*8+int(rest[n]-'0') <= 0377 {
			v = v*8 + int(rest[n]-'0')
			n++
		}
		if !final && n == len(rest) && n < 3 && v*8 <= 0377 {
			return dst, -1 // more digits may follow
		}
		return append(dst, byte(v)), n
	default:
		switch e {
		case 'n':
			dst = append(dst, '\n')
		case 't':
			dst = append(dst, '\t')
		case 'r':
			dst = append(dst, '\r')
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'v':
			dst = append(dst, '\v')
		case '\\', '"', '\'', '/', '`':
			dst = append(dst, e)
		default:
			// Not a JavaScript escape we decode: keep both bytes, so
			// Windows paths (..\win.ini) survive for detection.
			dst = append(dst, '\\', e)
		}
		return dst, 1
	}
	return dst, 0 // not a valid escape: the backslash is kept
}

// decodeEscapes runs a backslash-escape decoder over src: the bytes
// between escapes are copied as they are, and esc decodes each escape from
// what follows its backslash, returning how many of those bytes it used.
// 0 means no escape (the backslash is kept as a byte), -1 an escape the
// next chunk may complete (only when not final). A backslash at the very
// end of the value is kept when keepTrailing.
func decodeEscapes(dst, src []byte, final, keepTrailing bool, esc func(dst, rest []byte, final bool) ([]byte, int)) ([]byte, int) {
	i := 0
	for i < len(src) {
		if src[i] != '\\' {
			n := plainLen(src[i:], '\\')
			dst = append(dst, src[i:i+n]...)
			i += n
			continue
		}
		rest := src[i+1:]
		if len(rest) == 0 {
			if !final {
				return dst, i
			}
			if keepTrailing {
				dst = append(dst, '\\')
			}
			i++
			continue
		}
		var n int
		switch dst, n = esc(dst, rest, final); {
		case n < 0:
			return dst, i
		case n == 0:
			dst = append(dst, '\\')
			i++
		default:
			i += 1 + n
		}
	}
	return dst, i
}

// xEscape reads the xHH of a \xHH escape (rest starts at the x): n is 3
// when it decoded b, -1 when the next chunk may complete the digits (only
// when not final) and 0 when there is no escape.
func xEscape(rest []byte, final bool) (b byte, n int) {
	if len(rest) >= 3 {
		if b, ok := ascii.UnhexPair(rest[1], rest[2]); ok {
			return b, 3
		}
	}
	if !final && len(rest) < 3 && hexRun(rest[1:], 2) == len(rest)-1 {
		return 0, -1
	}
	return 0, 0
}

// replaceCommentsStep: st.mode 0 outside comments, 1 inside /* */, 2 after
// /*! skipping its version digits, 3 inside the executed body of /*! */.
func replaceCommentsStep(dst, src []byte, st *tstate, final bool) ([]byte, int) {
	i := 0
	for i < len(src) {
		c := src[i]
		switch st.mode {
		case 0, 3:
			if c == '/' {
				if i+1 >= len(src) || (src[i+1] == '*' && i+2 >= len(src)) {
					if !final {
						return dst, i
					}
				}
				if i+1 < len(src) && src[i+1] == '*' {
					dst = append(dst, ' ')
					if i+2 < len(src) && src[i+2] == '!' {
						st.mode = 2
						i += 3
					} else {
						st.mode = 1
						i += 2
					}
					continue
				}
			}
			if st.mode == 3 && c == '*' {
				if i+1 >= len(src) && !final {
					return dst, i
				}
				if i+1 < len(src) && src[i+1] == '/' {
					dst = append(dst, ' ')
					st.mode = 0
					i += 2
					continue
				}
			}
			dst = append(dst, c)
			i++
		case 1:
			if c == '*' {
				if i+1 >= len(src) && !final {
					return dst, i
				}
				if i+1 < len(src) && src[i+1] == '/' {
					st.mode = 0
					i += 2
					continue
				}
			}
			i++
		case 2:
			if c >= '0' && c <= '9' {
				i++
				continue
			}
			st.mode = 3
		default:
			st.mode = 0
		}
	}
	if final {
		st.mode = 0
	}
	return dst, i
}

func normalizePathStep(dst, src []byte, _ *tstate, _ bool) ([]byte, int) {
	start := len(dst)
	dst = append(dst, src...)
	n := normalizeInPlace(dst[start:])
	return dst[:start+n], len(src)
}

func normalizePathWinStep(dst, src []byte, _ *tstate, _ bool) ([]byte, int) {
	start := len(dst)
	for _, c := range src {
		if c == '\\' {
			c = '/'
		}
		dst = append(dst, c)
	}
	n := normalizeInPlace(dst[start:])
	return dst[:start+n], len(src)
}

// normalizeInPlace collapses repeated slashes and resolves "." and ".."
// segments of b in place and returns the new length. A leading '/' and a
// trailing '/' are kept; ".." that climbs above a relative start is kept,
// above the root it is dropped (as a server resolves it).
func normalizeInPlace(b []byte) int {
	if len(b) == 0 {
		return 0
	}
	abs := b[0] == '/'
	w := 0    // write index
	base := 0 // segments before base cannot be popped (leading ".." of relative paths)
	if abs {
		w, base = 1, 1
	}
	r := w
	trailing := false
	for r < len(b) {
		// Skip slashes.
		for r < len(b) && b[r] == '/' {
			r++
		}
		if r >= len(b) {
			trailing = true
			break
		}
		segStart := r
		for r < len(b) && b[r] != '/' {
			r++
		}
		seg := b[segStart:r]
		trailing = r < len(b)
		switch {
		case len(seg) == 1 && seg[0] == '.':
			trailing = true
			continue
		case len(seg) == 2 && seg[0] == '.' && seg[1] == '.':
			trailing = true
			if w > base {
				// Pop the last segment and the slash before it.
				j := w
				for j > base && b[j-1] != '/' {
					j--
				}
				if j > base {
					j--
				}
				w = j
				continue
			}
			if abs {
				continue // above the root
			}
			if w > 0 && b[w-1] != '/' {
				b[w] = '/'
				w++
			}
			b[w], b[w+1] = '.', '.'
			w += 2
			base = w
			continue
		}
		if w > 0 && b[w-1] != '/' {
			b[w] = '/'
			w++
		}
		w += copy(b[w:], seg)
	}
	if trailing && w > 0 && w < len(b) && b[w-1] != '/' {
		b[w] = '/'
		w++
	}
	return w
}

// htmlEntityStep decodes numeric character references and the named ones
// in htmlEntities.
//
// Leading zeros make a numeric reference as long as an attacker likes
// (&#0000000000000060; is '<' to a browser), longer than the maxCarry
// bytes a stream step may hold back. So in a stream a reference's leading
// zeros are consumed into st (the prefix in st.mode, their count in
// st.acc) and the reference is judged once its significant digits arrive,
// exactly as decodeEntity judges the whole value.
func htmlEntityStep(dst, src []byte, st *tstate, final bool) ([]byte, int) {
	i := 0
	for i < len(src) || (final && st.mode != 0) {
		if st.mode != 0 {
			var n int
			var done bool
			if dst, n, done = resumeEntity(dst, src[i:], st, final); !done {
				return dst, i + n // waiting for more digits (n bytes kept as zeros)
			}
			i += n
			continue
		}
		if src[i] != '&' {
			n := plainLen(src[i:], '&')
			dst = append(dst, src[i:i+n]...)
			i += n
			continue
		}
		var used int
		var more bool
		if dst, used, more = decodeEntity(dst, src[i:], final); used > 0 {
			i += used
			continue
		}
		if more && !final {
			if len(src)-i <= maxCarry {
				return dst, i
			}
			if p := entityZeros(src[i:]); p > 0 {
				// &#[x]000…: keep the prefix and the zeros in st.
				st.mode, st.acc = src[i+p-1], 0
				if src[i+2] == 'x' || src[i+2] == 'X' {
					st.mode = src[i+2]
				}
				i += p
				for i < len(src) && src[i] == '0' && st.acc < 1<<31 {
					st.acc++
					i++
				}
				continue
			}
		}
		dst = append(dst, '&')
		i++
	}
	return dst, i
}

// entityZeros returns the length of the "&#" or "&#x" prefix of b when a
// zero follows it, else 0.
func entityZeros(b []byte) int {
	p := 2
	if len(b) > p && (b[p] == 'x' || b[p] == 'X') {
		p++
	}
	if len(b) > p && b[1] == '#' && b[p] == '0' {
		return p
	}
	return 0
}

// resumeEntity continues a numeric reference whose prefix and leading
// zeros htmlEntityStep kept in st: it skips further zeros, then judges
// "&#[x]0" + what follows as decodeEntity would the whole reference, and
// writes the reference out as text when it is none. It returns the bytes
// of src it consumed, and done false when src ended among the zeros or
// the digits (the caller carries what was not consumed).
func resumeEntity(dst, src []byte, st *tstate, final bool) (_ []byte, n int, done bool) {
	for n < len(src) && src[n] == '0' {
		if st.acc < 1<<31 {
			st.acc++
		}
		n++
	}
	// One zero stands for all of them: the value is the same.
	var buf [4 + maxCarry]byte
	b := append(buf[:0], '&', '#')
	if st.mode != '#' {
		b = append(b, st.mode)
	}
	b = append(b, '0')
	p := len(b)
	rest := src[n:]
	b = append(b, rest[:min(len(rest), maxCarry)]...)
	whole := final && len(rest) <= maxCarry
	out, used, more := decodeEntity(dst, b, whole)
	switch {
	case used > 0:
		st.mode, st.acc = 0, 0
		return out, n + used - p, true
	case more && !whole:
		return dst, n, false // more digits may follow: carry them
	}
	// Not a reference: the prefix and every zero are text.
	dst = append(dst, b[:p-1]...)
	for range st.acc {
		dst = append(dst, '0')
	}
	st.mode, st.acc = 0, 0
	return dst, n, true
}

// decodeEntity decodes the reference at the start of b ("&...") onto dst
// (at most 4 bytes, never more than it consumed) and returns how many
// bytes it consumed, or used == 0 when b does not start with a reference;
// more reports that b ends inside what could still become one.
// At the end of the input (final) a reference without ';' is decoded as
// browsers do.
func decodeEntity(dst, b []byte, final bool) (_ []byte, used int, more bool) {
	if len(b) < 2 {
		return dst, 0, true
	}
	if b[1] == '#' {
		j := 2
		hexa := false
		if j < len(b) && (b[j] == 'x' || b[j] == 'X') {
			hexa = true
			j++
		}
		digits := j
		var v rune
	scan:
		for ; j < len(b); j++ {
			d := b[j]
			switch {
			case hexa && ascii.IsHex(d):
				h, _ := ascii.Unhex(d)
				v = v<<4 | rune(h)
			case !hexa && d >= '0' && d <= '9':
				v = v*10 + rune(d-'0')
			default:
				break scan
			}
			if v > utf8.MaxRune {
				return dst, 0, false
			}
		}
		if j == len(b) && !final {
			return dst, 0, true // more digits or the ';' may follow
		}
		if j == digits || v == 0 || (v >= 0xd800 && v <= 0xdfff) {
			return dst, 0, false
		}
		if j < len(b) && b[j] == ';' {
			j++
		}
		return utf8.AppendRune(dst, v), j, false
	}
	// Named reference: letters, then ';' (optional for legacy names).
	j := 1
	for j < len(b) && j <= maxEntityName && (b[j] >= 'a' && b[j] <= 'z' || b[j] >= 'A' && b[j] <= 'Z') {
		j++
	}
	if j == len(b) && !final {
		return dst, 0, j <= maxEntityName
	}
	name := b[1:j]
	semi := j < len(b) && b[j] == ';'
	for _, e := range htmlEntities {
		if e.name == string(name) && (semi || e.legacy) {
			if semi {
				j++
			}
			return append(dst, e.val...), j, false
		}
	}
	return dst, 0, false
}

const maxEntityName = 12

// htmlEntities are the named references attackers use to hide markup and
// script syntax; legacy ones also decode without ';' as browsers do.
var htmlEntities = []struct {
	name   string
	val    string
	legacy bool
}{
	{"lt", "<", true}, {"LT", "<", true}, {"gt", ">", true}, {"GT", ">", true},
	{"amp", "&", true}, {"AMP", "&", true}, {"quot", "\"", true}, {"QUOT", "\"", true},
	{"apos", "'", false}, {"nbsp", "\u00a0", true}, {"Tab", "\t", false}, {"NewLine", "\n", false},
	{"colon", ":", false}, {"semi", ";", false}, {"lpar", "(", false}, {"rpar", ")", false},
	{"sol", "/", false}, {"bsol", "\\", false}, {"excl", "!", false}, {"num", "#", false},
	{"dollar", "$", false}, {"percnt", "%", false}, {"plus", "+", false}, {"comma", ",", false},
	{"period", ".", false}, {"equals", "=", false}, {"quest", "?", false}, {"commat", "@", false},
	{"lsqb", "[", false}, {"rsqb", "]", false}, {"lbrack", "[", false}, {"rbrack", "]", false},
	{"lcub", "{", false}, {"rcub", "}", false}, {"lbrace", "{", false}, {"rbrace", "}", false},
	{"grave", "`", false}, {"Hat", "^", false}, {"verbar", "|", false}, {"vert", "|", false},
	{"VerticalLine", "|", false}, {"ast", "*", false}, {"midast", "*", false}, {"lowbar", "_", false},
	{"UnderBar", "_", false}, {"hyphen", "-", false}, {"dash", "-", false},
}
