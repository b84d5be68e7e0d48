package http

// Requests: the request line and the request-target.

import (
	"bytes"

	"github.com/deepwall/deepwall/dpi/proto"
)

// request parses a request head: its line, its fields, its target.
func (p *Parser) request(d *dirState, line, rest []byte) {
	sc := p.sc
	r := &sc.req
	// Method.
	sp := indexOWS(line)
	if sp <= 0 {
		if len(line) > 0 && isToken(line) {
			p.fatal(d, proto.HTTPInvalidRequestLine)
		} else {
			p.fatal(d, proto.HTTPInvalidMethod)
		}
		return
	}
	method := line[:sp]
	if !isToken(method) {
		p.fatal(d, proto.HTTPInvalidMethod)
		return
	}
	if line[sp] != ' ' || sp+1 < len(line) && isOWS(line[sp+1]) {
		p.report(d, proto.HTTPInvalidRequestLine)
	}
	if isOWS(line[len(line)-1]) {
		p.report(d, proto.HTTPInvalidRequestLine)
	}
	tail := trimOWS(line[sp:])
	// Version: after the last space.
	lsp := lastIndexOWS(tail)
	if lsp < 0 {
		if len(tail) == 0 {
			p.fatal(d, proto.HTTPInvalidRequestLine)
		} else {
			p.fatal(d, proto.HTTP09Request)
		}
		return
	}
	version := tail[lsp+1:]
	target := tail[:lsp]
	if t := trimOWS(target); len(t) != len(target) {
		p.report(d, proto.HTTPInvalidRequestLine)
		target = t
	}
	major, minor, ok := parseVersion(version)
	if !ok {
		if len(version) >= 5 && string(version[:5]) == "HTTP/" {
			p.fatal(d, proto.HTTPInvalidVersion)
		} else {
			// "GET /a b": no version, a target with a space.
			p.fatal(d, proto.HTTP09Request)
		}
		return
	}
	unknown := major != 1
	if unknown {
		// "HTTP/4.0", "HTTP/2.0" on an HTTP/1 request line: no such
		// version uses this syntax, but the line is well-formed, so the
		// head is parsed (as HTTP/1.1, HTTP/1.0 for "HTTP/0.x") and
		// given to the sink for inspection — Coraza's 920430 logs the
		// version — before the parser stops on it as before: what
		// follows cannot be framed with any confidence. Malformed
		// versions stop at once (above).
		minor = 1
		if major == 0 {
			minor = 0
		}
	} else if minor > 1 {
		p.report(d, proto.HTTPUnknownMinorVersion)
	}
	var f framing
	hs, norm, ok := p.fields(d, rest, &f)
	if !ok {
		return
	}
	kind := reqOther
	switch {
	case string(method) == "HEAD":
		kind = reqHead
	case string(method) == "CONNECT":
		kind = reqConnect
	}
	cl, chunked, ok := p.requestFraming(d, &f, minor)
	if !ok {
		return
	}
	if f.hosts > 1 {
		p.report(d, proto.HTTPDuplicateHost)
	}
	*r = Request{
		Method:        method,
		URI:           target,
		Proto:         version,
		Minor:         minor,
		Headers:       hs,
		HeaderBlock:   norm,
		Host:          f.host,
		UserAgent:     f.ua,
		ContentLength: cl,
		Chunked:       chunked,
		Seq:           p.reqSeq,
		Offset:        d.msgStart,
	}
	p.target(d, r, kind == reqConnect)
	if f.hosts == 0 && minor >= 1 {
		p.report(d, proto.HTTPMissingHost)
	}
	if p.pLen == MaxPipelined {
		p.fatal(d, proto.HTTPPipelineTooDeep)
		return
	}
	p.pending[(p.pHead+p.pLen)%MaxPipelined] = kind
	p.pLen++
	p.reqSeq++
	p.sink.RequestHeaders(r)
	if unknown {
		p.fatal(d, proto.HTTPInvalidVersion)
		return
	}
	switch {
	case kind == reqConnect:
		p.body(d, nil, true)
		d.phase = phAwaitConnect
	case chunked:
		if p.startDecode(d, &f) {
			p.startChunked(d)
		}
	case cl > 0:
		if p.startDecode(d, &f) {
			d.phase, d.remaining = phBody, cl
		}
	default:
		p.body(d, nil, true)
		d.phase = phStart
	}
}

// target splits and normalises the request-target into r.
func (p *Parser) target(d *dirState, r *Request, connect bool) {
	sc := p.sc
	t := r.URI
	for _, c := range t {
		switch {
		case c == 0:
			p.report(d, proto.HTTPURINullByte)
			p.report(d, proto.HTTPURIInvalidChar)
		case c <= ' ' || c == 0x7f:
			p.report(d, proto.HTTPURIInvalidChar)
		case c >= 0x80:
			p.report(d, proto.HTTPURINonASCIIPath)
		}
	}
	if i := bytes.IndexByte(t, '#'); i >= 0 {
		p.report(d, proto.HTTPURIFragment)
		t = t[:i]
	}
	r.Path, r.Query, r.Args, r.ArgsBuf = nil, nil, nil, nil
	if connect {
		// authority-form: no path.
		if r.Host == nil {
			r.Host = t
		}
		return
	}
	if len(t) == 1 && t[0] == '*' {
		r.Path = t
		return
	}
	path := t
	if len(t) > 0 && t[0] != '/' && t[0] != '\\' {
		if auth, rest, ok := splitAbsolute(t); ok {
			if r.Host == nil {
				r.Host = auth
			} else if !bytes.EqualFold(auth, r.Host) {
				p.report(d, proto.HTTPHostMismatch)
			}
			path = rest
		} else {
			p.report(d, proto.HTTPURIPathNotAbsolute)
		}
	}
	s := &sc.uriSet
	s.Clear()
	sc.SplitPath(r, path, s)
	p.reportSet(d, s)
}

// splitAbsolute splits an absolute-form target "scheme://authority/path"
// into authority and path (which keeps its query).
func splitAbsolute(t []byte) (authority, rest []byte, ok bool) {
	i := 0
	for i < len(t) && (t[i] >= 'a' && t[i] <= 'z' || t[i] >= 'A' && t[i] <= 'Z' ||
		i > 0 && (t[i] >= '0' && t[i] <= '9' || t[i] == '+' || t[i] == '-' || t[i] == '.')) {
		i++
	}
	if i == 0 || !bytes.HasPrefix(t[i:], []byte("://")) {
		return nil, nil, false
	}
	t = t[i+3:]
	end := bytes.IndexAny(t, "/?\\")
	if end < 0 {
		return t, nil, true
	}
	if t[end] == '?' {
		// "http://host?q": the path is empty, keep the query.
		return t[:end], t[end:], true
	}
	return t[:end], t[end:], true
}
