package http2

// Header lists (RFC 9113 8.2, 8.3): validation, pseudo-headers mapped to
// their HTTP/1 meaning, crumbled cookies joined, and the http.Request and
// http.Response the Sink receives.

import (
	"bytes"
	"math/bits"

	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/dpi/proto/http"
)

// version is Request.Proto and Response.Proto for HTTP/2: what servers
// (nginx, Go) report to applications, and what CRS allows.
var version = []byte("HTTP/2.0")

// pseudo holds the pseudo-header fields of a list.
type pseudo struct {
	method, scheme, authority, path, protocol, status []byte
}

// slot returns where pseudo-header name goes, or nil if it is unknown.
func (ps *pseudo) slot(name string) *[]byte {
	switch name {
	case ":method":
		return &ps.method
	case ":scheme":
		return &ps.scheme
	case ":authority":
		return &ps.authority
	case ":path":
		return &ps.path
	case ":protocol":
		return &ps.protocol
	case ":status":
		return &ps.status
	}
	return nil
}

// fieldSet is a header list as the Sink sees it.
type fieldSet struct {
	hs        []http.Header
	block     []byte
	host, ua  []byte
	hosts     int
	cl        int64
	clInvalid bool
}

// fields checks the decoded list in the Scratch and builds the Sink's
// header list and block. Pseudo-headers go to ps (nil: none allowed, a
// trailer section). A request's cookie fields become one, joined with
// "; " where the first was (RFC 9113 8.2.3), and a request without Host
// gets "host: <:authority>" first, as HTTP/1 would have sent it.
func (p *Parser) fields(d *dirState, st *stream, ps *pseudo, req bool) fieldSet {
	sc := p.sc
	fs := fieldSet{cl: -1}
	regular := false
	cookies := 0
	cookie, pbuf := sc.cookie[:0], sc.pbuf[:0]
	need := 0
	for _, f := range sc.decoded {
		name, value := f.Name, f.Value
		if len(name) > 0 && name[0] == ':' {
			var slot *[]byte
			if ps != nil && !regular {
				slot = ps.slot(name)
			}
			if slot == nil || *slot != nil {
				// Unknown, repeated, after a regular field, or in
				// trailers.
				p.report(d, st, proto.HTTP2MalformedHeaders)
				continue
			}
			// Should pbuf grow, the slices taken before keep the old
			// array, whose bytes stay as they were.
			at := len(pbuf)
			pbuf = append(pbuf, value...)
			*slot = pbuf[at:len(pbuf):len(pbuf)]
			continue
		}
		regular = true
		p.checkField(d, st, name, value, &fs)
		if req && name == "cookie" {
			if cookies > 0 {
				cookie = append(cookie, "; "...)
			}
			cookie = append(cookie, value...)
			cookies++
			continue
		}
		need += len(name) + len(value) + 4
	}
	sc.cookie, sc.pbuf = cookie, pbuf
	addHost := req && fs.hosts == 0 && ps != nil && ps.authority != nil
	if addHost {
		need += len("host: \r\n") + len(ps.authority)
	}
	if cookies > 0 {
		need += len("cookie: \r\n") + len(cookie)
	}
	// Reserve the whole block so the Header slices stay put.
	if cap(sc.norm) < need {
		sc.norm = make([]byte, 0, max(need, 1024))
	}
	fs.block, fs.hs = sc.norm[:0], sc.headers[:0]
	if addHost {
		vs := fs.open("host")
		fs.block = append(fs.block, ps.authority...)
		fs.close(len("host"), vs)
		fs.host = fs.hs[0].Value
	}
	for _, f := range sc.decoded {
		name := f.Name
		switch {
		case len(name) > 0 && name[0] == ':':
		case req && name == "cookie":
			if cookies > 0 {
				vs := fs.open(name)
				fs.block = append(fs.block, cookie...)
				fs.close(len(name), vs)
				cookies = 0
			}
		default:
			vs := fs.open(name)
			fs.block = append(fs.block, f.Value...)
			fs.close(len(name), vs)
			v := fs.hs[len(fs.hs)-1].Value
			switch {
			case fs.host == nil && name == "host":
				fs.host = v
			case fs.ua == nil && name == "user-agent":
				fs.ua = v
			}
		}
	}
	sc.norm, sc.headers = fs.block, fs.hs
	return fs
}

// open appends "name: " to the block (reserved by fields) and returns
// where the value starts; the caller appends the value and calls close.
func (fs *fieldSet) open(name string) int {
	fs.block = append(append(fs.block, name...), ':', ' ')
	return len(fs.block)
}

// close ends the field whose value started at vs and adds it to the list.
func (fs *fieldSet) close(nameLen, vs int) {
	ve := len(fs.block)
	fs.block = append(fs.block, '\r', '\n')
	b, ne := fs.block, vs-2
	fs.hs = append(fs.hs, http.Header{Name: b[ne-nameLen : ne : ne], Value: b[vs:ve:ve]})
}

// checkField checks a regular field (RFC 9113 8.2.1, 8.2.2) and notes
// Host and Content-Length.
func (p *Parser) checkField(d *dirState, st *stream, name, value string, fs *fieldSet) {
	if !lowerToken(name) || !validValue(value) {
		p.report(d, st, proto.HTTP2MalformedHeaders)
	}
	switch name {
	case "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade":
		p.report(d, st, proto.HTTP2ConnectionHeader)
	case "te":
		if value != "trailers" {
			p.report(d, st, proto.HTTP2ConnectionHeader)
		}
	case "host":
		fs.hosts++
	case "content-length":
		n, ok := parseCL(value)
		switch {
		case !ok:
			fs.clInvalid = true
			p.report(d, st, proto.HTTPInvalidContentLength)
		case fs.cl >= 0 && fs.cl != n:
			p.report(d, st, proto.HTTPContentLengthConflict)
		case fs.cl < 0:
			fs.cl = n
		}
	}
}

func isOWS(c byte) bool { return c == ' ' || c == '\t' }

// nameChars are the bytes of HTTP/2 field names: token characters other
// than uppercase letters (RFC 9113 8.2.1).
var nameChars = func() (t [256]bool) {
	for c := range t {
		t[c] = proto.IsTokenChar(byte(c)) && (c < 'A' || c > 'Z')
	}
	return t
}()

// lowerToken reports whether name is a non-empty token without
// uppercase letters, as HTTP/2 field names must be.
func lowerToken(name string) bool {
	for i := range len(name) {
		if !nameChars[name[i]] {
			return false
		}
	}
	return len(name) > 0
}

// validValue reports whether a field value is free of NUL, CR and LF and
// of whitespace at its ends (RFC 9113 8.2.1): CR and LF are what a CRLF
// injection through an HTTP/1 downgrade needs.
func validValue(v string) bool {
	if len(v) > 0 && (isOWS(v[0]) || isOWS(v[len(v)-1])) {
		return false
	}
	// Eight bytes at a time: a byte of w equal to c is a zero byte of
	// w^c..c, and a zero byte borrows in x-0x01..01 (the lowest flagged
	// byte is exact, and any flag means a match somewhere).
	const (
		ones = 0x0101010101010101
		high = 0x8080808080808080
	)
	i := 0
	for ; i+8 <= len(v); i += 8 {
		w := le64(v[i : i+8])
		cr, lf := w^('\r'*ones), w^('\n'*ones)
		if ((w-ones)&^w|(cr-ones)&^cr|(lf-ones)&^lf)&high != 0 {
			return false
		}
	}
	for ; i < len(v); i++ {
		if c := v[i]; c == 0 || c == '\r' || c == '\n' {
			return false
		}
	}
	return true
}

// le64 reads 8 bytes of a string little-endian (the compiler makes it
// one load).
func le64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// parseCL parses a content-length value: decimal digits, at most 18.
func parseCL(v string) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for i := range len(v) {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// request maps a request header list (a stream's HEADERS, or a
// PUSH_PROMISE) to an http.Request in the Scratch.
func (p *Parser) request(d *dirState, st *stream) *http.Request {
	sc := p.sc
	var ps pseudo
	fs := p.fields(d, st, &ps, true)
	r := &sc.req
	*r = http.Request{
		Method:        ps.method,
		URI:           ps.path,
		Proto:         version,
		Headers:       fs.hs,
		HeaderBlock:   fs.block,
		Host:          fs.host,
		UserAgent:     fs.ua,
		ContentLength: fs.cl,
		Seq:           st.seq,
		Offset:        d.start,
	}
	connect := string(ps.method) == "CONNECT"
	plainConnect := connect && ps.protocol == nil
	switch {
	case ps.method == nil, ps.status != nil,
		ps.protocol != nil && !connect,
		plainConnect && (ps.scheme != nil || ps.path != nil || ps.authority == nil),
		!plainConnect && (ps.scheme == nil || len(ps.path) == 0):
		p.report(d, st, proto.HTTP2MalformedHeaders)
	}
	if fs.hosts > 1 {
		p.report(d, st, proto.HTTPDuplicateHost)
	}
	if fs.hosts == 0 && ps.authority == nil {
		p.report(d, st, proto.HTTPMissingHost)
	}
	if ps.authority != nil && fs.hosts > 0 && !bytes.EqualFold(ps.authority, fs.host) {
		p.report(d, st, proto.HTTPHostMismatch)
	}
	if plainConnect {
		if r.Host == nil {
			r.Host = ps.authority
		}
		return r
	}
	p.target(d, st, r)
	return r
}

// target checks :path as HTTP/1 checks a request-target and splits it
// into Path, Query and Args.
func (p *Parser) target(d *dirState, st *stream, r *http.Request) {
	t := r.URI
	for _, c := range t {
		switch {
		case c == 0:
			p.report(d, st, proto.HTTPURINullByte)
			p.report(d, st, proto.HTTPURIInvalidChar)
		case c <= ' ' || c == 0x7f:
			p.report(d, st, proto.HTTPURIInvalidChar)
		case c >= 0x80:
			p.report(d, st, proto.HTTPURINonASCIIPath)
		}
	}
	if i := bytes.IndexByte(t, '#'); i >= 0 {
		p.report(d, st, proto.HTTPURIFragment)
		t = t[:i]
	}
	if len(t) == 1 && t[0] == '*' {
		r.Path = t
		return
	}
	if len(t) > 0 && t[0] != '/' {
		p.report(d, st, proto.HTTPURIPathNotAbsolute)
	}
	s := &p.sc.uriSet
	s.Clear()
	p.sc.hs.SplitPath(r, t, s)
	for w, word := range s {
		for word != 0 {
			p.report(d, st, proto.FindingKind(w*64+bits.TrailingZeros64(word)))
			word &= word - 1
		}
	}
}

// response maps a response header list to an http.Response in the
// Scratch.
func (p *Parser) response(d *dirState, st *stream) *http.Response {
	sc := p.sc
	var ps pseudo
	fs := p.fields(d, st, &ps, false)
	status, ok := parseStatus(ps.status)
	if !ok || status == 101 || ps.method != nil || ps.scheme != nil || ps.authority != nil || ps.path != nil || ps.protocol != nil {
		// 101 has no meaning in HTTP/2 (RFC 9113 8.6).
		p.report(d, st, proto.HTTP2MalformedHeaders)
	}
	r := &sc.resp
	*r = http.Response{
		Proto:         version,
		Status:        status,
		Headers:       fs.hs,
		HeaderBlock:   fs.block,
		ContentLength: fs.cl,
		Seq:           st.seq,
		Interim:       status >= 100 && status < 200,
		Offset:        d.start,
	}
	return r
}

// parseStatus parses a three-digit :status.
func parseStatus(v []byte) (int, bool) {
	if len(v) != 3 || v[0] < '1' || v[0] > '9' || v[1] < '0' || v[1] > '9' || v[2] < '0' || v[2] > '9' {
		return 0, false
	}
	return int(v[0]-'0')*100 + int(v[1]-'0')*10 + int(v[2]-'0'), true
}

// trailerFields builds a trailer section, in which pseudo-headers are
// malformed.
func (p *Parser) trailerFields(d *dirState, st *stream) ([]http.Header, []byte) {
	fs := p.fields(d, st, nil, false)
	return fs.hs, fs.block
}
