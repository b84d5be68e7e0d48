package http

// Responses: the status line and which responses have a body.

import (
	"bytes"

	"github.com/deepwall/deepwall/dpi/proto"
)

// response parses a response head.
func (p *Parser) response(d *dirState, line, rest []byte) {
	sc := p.sc
	// "HTTP/1.1 200 OK"
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		p.fatal(d, proto.HTTPInvalidStatusLine)
		return
	}
	version := line[:sp]
	major, minor, ok := parseVersion(version)
	if !ok {
		p.fatal(d, proto.HTTPInvalidStatusLine)
		return
	}
	if major != 1 {
		p.fatal(d, proto.HTTPInvalidVersion)
		return
	}
	if minor > 1 {
		p.report(d, proto.HTTPUnknownMinorVersion)
	}
	s := line[sp+1:]
	if len(s) > 0 && s[0] == ' ' {
		p.report(d, proto.HTTPInvalidStatusLine)
		s = trimOWS(s)
	}
	if len(s) < 3 || s[0] < '1' || s[0] > '9' || s[1] < '0' || s[1] > '9' || s[2] < '0' || s[2] > '9' ||
		len(s) > 3 && s[3] != ' ' {
		p.fatal(d, proto.HTTPInvalidStatusLine)
		return
	}
	status := int(s[0]-'0')*100 + int(s[1]-'0')*10 + int(s[2]-'0')
	var reason []byte
	if len(s) > 4 {
		reason = s[4:]
	}
	var f framing
	hs, norm, ok := p.fields(d, rest, &f)
	if !ok {
		return
	}
	interim := status < 200 && status != 101
	kind := reqOther
	seq := int64(-1)
	if !interim {
		if p.pLen > 0 {
			kind = p.pending[p.pHead]
			seq = p.reqSeq - int64(p.pLen)
			p.pHead = (p.pHead + 1) % MaxPipelined
			p.pLen--
		} else {
			p.report(d, proto.HTTPUnsolicitedResponse)
		}
	} else if p.pLen > 0 {
		seq = p.reqSeq - int64(p.pLen)
	}
	// Framing (RFC 9112 6.3).
	noBody := kind == reqHead || status < 200 || status == 204 || status == 304
	tunnel := status == 101 || kind == reqConnect && status/100 == 2
	cl, chunked, untilClose, ok := p.responseFraming(d, &f, minor, noBody || tunnel)
	if !ok {
		return
	}
	if f.hosts > 1 {
		p.report(d, proto.HTTPDuplicateHost)
	}
	r := &sc.resp
	*r = Response{
		Proto:         version,
		Minor:         minor,
		Status:        status,
		Reason:        reason,
		Headers:       hs,
		HeaderBlock:   norm,
		ContentLength: cl,
		Chunked:       chunked,
		Seq:           seq,
		Interim:       interim,
		Offset:        d.msgStart,
	}
	p.sink.ResponseHeaders(r)
	req := &p.d[proto.ToServer]
	switch {
	case interim:
		d.phase = phStart
	case tunnel:
		p.body(d, nil, true)
		d.phase = phTunnel
		if req.phase == phAwaitConnect || status == 101 {
			req.phase = phTunnel
		}
	case noBody:
		p.body(d, nil, true)
		d.phase = phStart
	case !p.startDecode(d, &f):
	case chunked:
		p.startChunked(d)
	case untilClose:
		d.phase = phUntilClose
	case cl > 0:
		d.phase, d.remaining = phBody, cl
	default:
		p.body(d, nil, true)
		d.phase = phStart
	}
	if kind == reqConnect && !tunnel && req.phase == phAwaitConnect {
		// Refused CONNECT: the client may go on with HTTP.
		req.phase = phStart
	}
}
