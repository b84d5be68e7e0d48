package http

// The chunked transfer coding (RFC 9112 7.1): chunk sizes, extensions,
// data and the trailer section.

import (
	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/internal/ascii"
)

func (p *Parser) startChunked(d *dirState) {
	d.phase = phChunkSize
	d.remaining, d.digits, d.lineLen, d.extSemi, d.lastCR = 0, 0, 0, false, false
}

// maxChunkDigits keeps a chunk size below 2^60.
const maxChunkDigits = 15

// chunked parses a chunked body (RFC 9112 7.1) byte by byte where it must
// and in bulk for chunk data.
func (p *Parser) chunked(d *dirState, b []byte) int {
	i := 0
	for i < len(b) && !p.stopped {
		c := b[i]
		switch d.phase {
		case phChunkSize:
			if v, ok := ascii.Unhex(c); ok {
				if d.digits == maxChunkDigits {
					p.fatal(d, proto.HTTPInvalidChunkSize)
					return i
				}
				d.remaining = d.remaining<<4 | int64(v)
				d.digits++
			} else {
				if d.digits == 0 {
					p.fatal(d, proto.HTTPInvalidChunkSize)
					return i
				}
				switch c {
				case '\r':
					d.phase = phChunkLF
				case '\n':
					p.report(d, proto.HTTPBareLF)
					p.chunkLineDone(d)
				case ';':
					d.phase, d.extSemi = phChunkExt, true
				case ' ', '\t':
					d.phase = phChunkExt
				default:
					p.fatal(d, proto.HTTPInvalidChunkSize)
					return i
				}
			}
			i++
			if !p.chunkLineByte(d) {
				return i
			}
		case phChunkExt:
			switch {
			case c == '\n':
				if !d.lastCR {
					p.report(d, proto.HTTPBareLF)
				}
				p.chunkLineDone(d)
			case d.lastCR:
				// CR not followed by LF.
				p.fatal(d, proto.HTTPInvalidChunkSize)
				return i
			case c == '\r':
			case c == ';':
				d.extSemi = true
			case isOWS(c):
			case !d.extSemi || ctlChars[c]:
				// Extensions start with ';' (after optional
				// whitespace) and hold no control bytes.
				p.fatal(d, proto.HTTPInvalidChunkSize)
				return i
			}
			d.lastCR = c == '\r'
			i++
			if d.phase == phChunkExt && !p.chunkLineByte(d) {
				return i
			}
		case phChunkLF:
			if c != '\n' {
				p.fatal(d, proto.HTTPInvalidChunkSize)
				return i
			}
			i++
			p.chunkLineDone(d)
		case phChunkData:
			n := int(min(d.remaining, int64(len(b)-i)))
			p.body(d, b[i:i+n], false)
			d.remaining -= int64(n)
			i += n
			if d.remaining == 0 {
				d.phase = phChunkDataCR
			}
		case phChunkDataCR:
			switch c {
			case '\r':
				d.phase = phChunkDataLF
			case '\n':
				p.report(d, proto.HTTPBareLF)
				p.startChunked(d)
			default:
				p.fatal(d, proto.HTTPInvalidChunkData)
				return i
			}
			i++
		case phChunkDataLF:
			if c != '\n' {
				p.fatal(d, proto.HTTPInvalidChunkData)
				return i
			}
			i++
			p.startChunked(d)
		case phTrailerStart:
			switch c {
			case '\r':
				d.phase = phTrailerLF
				i++
			case '\n':
				p.report(d, proto.HTTPBareLF)
				i++
				p.endMessage(d)
				return i
			default:
				d.phase = phTrailerName
			}
		case phTrailerName:
			switch {
			case c == ':':
				d.phase = phTrailerValue
			case c == '\n':
				// A trailer line without a colon.
				p.report(d, proto.HTTPInvalidTrailer)
				if !d.lastCR {
					p.report(d, proto.HTTPBareLF)
				}
				d.phase = phTrailerStart
			case c == '\r' || !proto.IsTokenChar(c):
				p.report(d, proto.HTTPInvalidTrailer)
			}
			i++
			if !p.trailerByte(d, c) {
				return i
			}
		case phTrailerValue:
			switch {
			case c == '\n':
				if !d.lastCR {
					p.report(d, proto.HTTPBareLF)
				}
				d.phase = phTrailerStart
			case d.lastCR:
				p.report(d, proto.HTTPBareCR)
			case ctlChars[c] && c != '\r':
				p.report(d, proto.HTTPInvalidTrailer)
			}
			i++
			if !p.trailerByte(d, c) {
				return i
			}
		case phTrailerLF:
			if c != '\n' {
				p.fatal(d, proto.HTTPInvalidTrailer)
				return i
			}
			i++
			p.endMessage(d)
			return i
		default:
			return i
		}
	}
	return i
}

// chunkLineByte counts a byte of a chunk-size line; false when the line
// outgrew MaxChunkLine (a fatal finding).
func (p *Parser) chunkLineByte(d *dirState) bool {
	if d.lineLen++; d.lineLen > p.sc.lim.MaxChunkLine {
		p.fatal(d, proto.HTTPChunkLineTooLong)
		return false
	}
	return true
}

// trailerByte counts byte c of the trailer section; false when the
// section outgrew MaxHeaderBytes (a fatal finding).
func (p *Parser) trailerByte(d *dirState, c byte) bool {
	d.lastCR = c == '\r'
	if d.trailer++; d.trailer > p.sc.lim.MaxHeaderBytes {
		p.fatal(d, proto.HTTPTrailerTooLarge)
		return false
	}
	return true
}

// chunkLineDone ends a chunk-size line: data follows, or, after the last
// chunk, the trailer section.
func (p *Parser) chunkLineDone(d *dirState) {
	d.lineLen, d.digits, d.extSemi, d.lastCR = 0, 0, false, false
	if d.remaining == 0 {
		d.phase, d.trailer = phTrailerStart, 0
		return
	}
	d.phase = phChunkData
}

// endMessage ends a chunked message.
func (p *Parser) endMessage(d *dirState) {
	d.lastCR = false
	p.body(d, nil, true)
	d.phase = phStart
}
