package http

// Header fields (RFC 9110 5, RFC 9112 5): the byte classes of names and
// values, the field list and the normalised header block.

import (
	"bytes"
	"encoding/binary"
	"math/bits"

	"github.com/deepwall/deepwall/dpi/proto"
)

// ctlChars are the bytes not allowed in a field value (HT is).
var ctlChars = func() (t [256]bool) {
	for c := 0; c < 0x20; c++ {
		t[c] = c != '\t'
	}
	t[0x7f] = true
	return t
}()

func isToken(b []byte) bool {
	for _, c := range b {
		if !proto.IsTokenChar(c) {
			return false
		}
	}
	return len(b) > 0
}

func isOWS(c byte) bool { return c == ' ' || c == '\t' }

func indexOWS(b []byte) int {
	for i, c := range b {
		if isOWS(c) {
			return i
		}
	}
	return -1
}

func lastIndexOWS(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if isOWS(b[i]) {
			return i
		}
	}
	return -1
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && isOWS(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isOWS(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// fields parses the header fields of a block (after the start line) into
// the scratch header list and normalised block.
func (p *Parser) fields(d *dirState, b []byte, f *framing) ([]Header, []byte, bool) {
	sc := p.sc
	// The normalised block is at most twice the raw one (": " and CRLF
	// for a two-byte line); reserving it up front keeps the Header slices
	// stable while it grows.
	if need := 2 * len(b); cap(sc.norm) < need {
		sc.norm = make([]byte, 0, need)
	}
	fl := fieldList{norm: sc.norm[:0], hs: sc.headers[:0]}
	f.cl = -1
	for len(b) > 0 {
		// Fast path: a token name, ':', and a value scanned a word at
		// a time. Anything irregular takes the general path below.
		n := 0
		for n < len(b) && proto.IsTokenChar(b[n]) {
			n++
		}
		if n > 0 && n < len(b) && b[n] == ':' {
			v := n + 1
			for v < len(b) && isOWS(b[v]) {
				v++
			}
			end, flags := scanValue(b, v)
			value := b[v:end]
			if len(value) > 0 && value[len(value)-1] == '\r' {
				value = value[:len(value)-1]
			} else {
				p.report(d, proto.HTTPBareLF)
			}
			for len(value) > 0 && isOWS(value[len(value)-1]) {
				value = value[:len(value)-1]
			}
			if flags&flagBareCR != 0 {
				p.report(d, proto.HTTPBareCR)
			}
			if flags&flagCtl != 0 {
				p.report(d, proto.HTTPInvalidHeaderValue)
			}
			if !p.addField(d, f, &fl, b[:n], value) {
				return nil, nil, false
			}
			b = b[min(end+1, len(b)):]
			continue
		}
		lf := bytes.IndexByte(b, '\n')
		if lf < 0 {
			break
		}
		line := b[:lf]
		b = b[lf+1:]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		} else {
			p.report(d, proto.HTTPBareLF)
		}
		if len(line) == 0 {
			break
		}
		if isOWS(line[0]) {
			p.report(d, proto.HTTPObsFold)
			if len(fl.hs) == 0 {
				p.report(d, proto.HTTPInvalidHeaderName)
				continue
			}
			v := trimOWS(line)
			p.checkValue(d, v)
			if len(v) > 0 {
				fl.norm = append(fl.norm, ' ')
				fl.norm = append(fl.norm, v...)
				h := &fl.hs[len(fl.hs)-1]
				h.Value = fl.norm[fl.lastValue:len(fl.norm):len(fl.norm)]
				p.frame(d, f, h.Name, v, true)
			}
			continue
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			p.report(d, proto.HTTPHeaderNoColon)
			continue
		}
		name := line[:colon]
		if t := trimOWS(name); len(t) != len(name) {
			p.report(d, proto.HTTPInvalidHeaderName)
			name = t
		}
		if !isToken(name) {
			p.report(d, proto.HTTPInvalidHeaderName)
			if len(name) == 0 {
				continue
			}
		}
		value := trimOWS(line[colon+1:])
		p.checkValue(d, value)
		if !p.addField(d, f, &fl, name, value) {
			return nil, nil, false
		}
	}
	if len(fl.hs) > 0 {
		fl.norm = append(fl.norm, '\r', '\n')
	}
	sc.norm = fl.norm
	return fl.hs, fl.norm, true
}

// fieldList is the header list and normalised block being built.
type fieldList struct {
	norm      []byte
	hs        []Header
	lastValue int // offset of the last field's value in norm
}

// addField appends a field to fl and records what it says about framing.
func (p *Parser) addField(d *dirState, f *framing, fl *fieldList, name, value []byte) bool {
	if len(fl.hs) == p.sc.lim.MaxHeaderCount {
		p.fatal(d, proto.HTTPTooManyHeaders)
		return false
	}
	// fields reserved room for the whole block: write in place.
	norm := fl.norm
	at := len(norm)
	if len(fl.hs) > 0 {
		norm = norm[:at+2]
		norm[at], norm[at+1] = '\r', '\n'
		at += 2
	}
	ns := at
	ne := ns + len(name)
	vs := ne + 2
	ve := vs + len(value)
	norm = norm[:ve]
	copy(norm[ns:], name)
	norm[ne], norm[ne+1] = ':', ' '
	copy(norm[vs:], value)
	fl.norm, fl.lastValue = norm, vs
	fl.hs = append(fl.hs, Header{Name: norm[ns:ne:ne], Value: norm[vs:ve:ve]})
	p.frame(d, f, name, value, false)
	return true
}

// Flags scanValue returns.
const (
	flagBareCR = 1 << iota
	flagCtl
)

// scanValue finds the LF that ends the field value starting at b[i] and
// flags the control bytes on the way (HT is allowed; a CR before the LF
// belongs to the line end). It returns the LF's index, or len(b).
func scanValue(b []byte, i int) (int, uint8) {
	var flags uint8
	for {
		i = scanPlain(b, i)
		if i >= len(b) {
			return len(b), flags
		}
		switch b[i] {
		case '\n':
			return i, flags
		case '\t':
		case '\r':
			if i+1 < len(b) && b[i+1] == '\n' {
				return i + 1, flags
			}
			flags |= flagBareCR
		default:
			flags |= flagCtl
		}
		i++
	}
}

// scanPlain returns the index of the first byte from i on that is a
// control byte (below 0x20) or DEL, or len(b). It tests eight bytes at a
// time: a byte below 0x20 borrows in w-0x20.., DEL is zero in w^0x7f..;
// the lowest flagged byte of either test is exact.
func scanPlain(b []byte, i int) int {
	const (
		ones = 0x0101010101010101
		high = 0x8080808080808080
	)
	for i+8 <= len(b) {
		w := binary.LittleEndian.Uint64(b[i:])
		x := w ^ (0x7f * ones)
		t := ((w-0x20*ones)&^w | (x-ones)&^x) & high
		if t != 0 {
			return i + bits.TrailingZeros64(t)/8
		}
		i += 8
	}
	for i < len(b) && !ctlChars[b[i]] && b[i] != '\t' {
		i++
	}
	return i
}

// checkValue reports control bytes in a field value.
func (p *Parser) checkValue(d *dirState, v []byte) {
	for _, c := range v {
		if ctlChars[c] {
			if c == '\r' {
				p.report(d, proto.HTTPBareCR)
			} else {
				p.report(d, proto.HTTPInvalidHeaderValue)
			}
		}
	}
}
