package http

// Message framing (RFC 9112 6): what Content-Length and Transfer-Encoding
// say about where a body ends.

import (
	"bytes"

	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/internal/ascii"
)

// framing collects what the header fields say about the body.
type framing struct {
	cl         int64 // Content-Length, -1 if absent
	clBad      bool  // a value is not a decimal number
	clConflict bool  // values differ
	clDup      bool  // several equal values
	te         bool  // Transfer-Encoding present
	chunked    bool  // the final coding is chunked
	teBad      bool  // chunked twice or not final, or an empty list
	teUnknown  bool  // a coding that is not registered
	hosts      int
	host, ua   []byte
	codings    codings // Content-Encoding
}

// frame records what a field says about framing. cont is true for an
// obs-fold continuation of the field.
func (p *Parser) frame(d *dirState, f *framing, name, value []byte, cont bool) {
	switch len(name) {
	case 4:
		if ascii.EqualFold(name, "host") && !cont {
			f.hosts++
			if f.hosts == 1 {
				f.host = value
			}
		}
	case 10:
		if ascii.EqualFold(name, "user-agent") && !cont && f.ua == nil {
			f.ua = value
		}
	case 14:
		if ascii.EqualFold(name, "content-length") {
			if cont {
				// A folded Content-Length reads differently in every
				// implementation that accepts it.
				f.clBad = true
				return
			}
			parseContentLength(f, value)
		}
	case 16:
		if ascii.EqualFold(name, "content-encoding") {
			f.codings.parse(value)
		}
	case 17:
		if ascii.EqualFold(name, "transfer-encoding") {
			f.te = true
			if cont {
				f.teBad = true
				return
			}
			parseTransferEncoding(f, value)
		}
	}
}

// maxCLDigits keeps Content-Length within int64 with room to add.
const maxCLDigits = 18

// parseContentLength parses a Content-Length value, which may be a list
// of equal values ("5, 5").
func parseContentLength(f *framing, v []byte) {
	if len(v) == 0 {
		f.clBad = true
		return
	}
	for len(v) > 0 {
		var elem []byte
		var comma bool
		if elem, v, comma = listElem(v); comma && len(v) == 0 {
			f.clBad = true
		}
		if len(elem) == 0 || len(elem) > maxCLDigits {
			f.clBad = true
			continue
		}
		var n int64
		for _, c := range elem {
			if c < '0' || c > '9' {
				f.clBad = true
				n = -1
				break
			}
			n = n*10 + int64(c-'0')
		}
		if n < 0 {
			continue
		}
		switch {
		case f.cl < 0:
			f.cl = n
		case f.cl != n:
			f.clConflict = true
		default:
			f.clDup = true
		}
	}
}

// listElem splits the first element off a comma-separated field value
// (RFC 9110 5.6.1), without its optional whitespace; comma reports
// whether a comma ended it.
func listElem(v []byte) (elem, rest []byte, comma bool) {
	if i := bytes.IndexByte(v, ','); i >= 0 {
		return trimOWS(v[:i]), v[i+1:], true
	}
	return trimOWS(v), nil, false
}

// knownCodings are the registered transfer codings other than chunked.
var knownCodings = [...]string{"gzip", "deflate", "compress", "x-gzip", "x-compress", "identity", "trailers"}

// parseTransferEncoding folds one Transfer-Encoding value into f: the
// codings of all fields form one list, and only a final "chunked" frames
// the body.
func parseTransferEncoding(f *framing, v []byte) {
	any := false
	for len(v) > 0 {
		var elem []byte
		if elem, v, _ = listElem(v); len(elem) == 0 {
			continue
		}
		any = true
		if ascii.EqualFold(elem, "chunked") {
			if f.chunked {
				f.teBad = true
			}
			f.chunked = true
			continue
		}
		if f.chunked {
			// chunked must be the final coding.
			f.teBad = true
		}
		f.chunked = false
		known := false
		for _, k := range knownCodings {
			if ascii.EqualFold(elem, k) {
				known = true
				break
			}
		}
		if !known {
			f.teUnknown = true
		}
	}
	if !any {
		f.teBad = true
	}
}

// requestFraming decides how a request's body ends (RFC 9112 6.3): after
// cl bytes, or chunked (cl is -1); a request without either has no body.
// ok is false when the framing is ambiguous enough to stop the parser.
func (p *Parser) requestFraming(d *dirState, f *framing, minor int) (cl int64, chunked, ok bool) {
	cl = -1
	switch {
	case f.te:
		p.reportTE(d, f, minor)
		if f.teBad || !f.chunked {
			p.fatal(d, proto.HTTPInvalidTransferEncoding)
			return -1, false, false
		}
		if f.teUnknown {
			p.report(d, proto.HTTPInvalidTransferEncoding)
		}
		chunked = true
	case f.clBad:
		p.fatal(d, proto.HTTPInvalidContentLength)
		return -1, false, false
	case f.clConflict:
		p.fatal(d, proto.HTTPContentLengthConflict)
		return -1, false, false
	default:
		cl = f.cl
	}
	if f.clDup {
		p.report(d, proto.HTTPDuplicateContentLength)
	}
	return cl, chunked, true
}

// responseFraming decides how a response's body ends (RFC 9112 6.3):
// after cl bytes, chunked (cl is -1), or when the connection closes.
// noBody is a response that has no body whatever its fields say (to HEAD,
// 1xx, 204, 304, or a tunnel's start). ok is false when the framing is
// ambiguous enough to stop the parser.
func (p *Parser) responseFraming(d *dirState, f *framing, minor int, noBody bool) (cl int64, chunked, untilClose, ok bool) {
	cl = f.cl
	if f.clDup {
		p.report(d, proto.HTTPDuplicateContentLength)
	}
	switch {
	case noBody:
		if f.clBad {
			p.report(d, proto.HTTPInvalidContentLength)
		}
		if f.clConflict {
			p.report(d, proto.HTTPContentLengthConflict)
		}
	case f.te:
		p.reportTE(d, f, minor)
		if f.teBad || f.teUnknown {
			p.report(d, proto.HTTPInvalidTransferEncoding)
		}
		cl = -1
		if f.chunked && !f.teBad {
			chunked = true
		} else {
			untilClose = true
		}
	case f.clBad:
		p.fatal(d, proto.HTTPInvalidContentLength)
		return cl, false, false, false
	case f.clConflict:
		p.fatal(d, proto.HTTPContentLengthConflict)
		return cl, false, false, false
	case f.cl < 0:
		untilClose = true
	}
	return cl, chunked, untilClose, true
}

// reportTE reports what is suspect beside a Transfer-Encoding field: a
// Content-Length too (the request-smuggling signal), Content-Lengths that
// disagree, and a transfer coding in HTTP/1.0, which has none.
func (p *Parser) reportTE(d *dirState, f *framing, minor int) {
	if f.cl >= 0 || f.clBad {
		p.report(d, proto.HTTPCLAndTE)
	}
	if f.clConflict {
		p.report(d, proto.HTTPContentLengthConflict)
	}
	if minor == 0 {
		p.report(d, proto.HTTPTransferEncodingHTTP10)
	}
}
