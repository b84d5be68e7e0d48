package dpi

import (
	"bytes"

	"github.com/deepwall/deepwall/dpi/flow"
	"github.com/deepwall/deepwall/dpi/internal/plan"
	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/dpi/proto/http"
	"github.com/deepwall/deepwall/internal/ascii"
	"github.com/deepwall/deepwall/rules"
)

// Bounds on the per-value fields.
const (
	// maxContentType bounds the request Content-Type kept until the body
	// ends (to parse its arguments).
	maxContentType = 256
	// maxBodyArgs bounds the arguments taken from one request body.
	maxBodyArgs = 1024
	// maxCookies bounds the cookies split from one request.
	maxCookies = 256
)

// reqBufs are the worker's buffers for fields it builds from a request
// or response (valid while the message is inspected).
type reqBufs struct {
	line   []byte // http.request_line
	fname  []byte // http.filename
	status [3]byte
	args   []byte // decoded body arguments
	sink   bodySink
	found  proto.KindSet
	// head is the request whose head is being inspected (set during
	// RequestHeaders only): the values compare: conditions read.
	head *http.Request
}

// bodySink receives a request body's arguments (http.BodyArgs) and scans
// them.
type bodySink struct {
	w                  *worker
	sc                 *scope
	args, files, parts int
}

// Arg implements http.BodyArgs.
func (b *bodySink) Arg(name, value []byte) {
	b.args++
	if !b.w.stopped() {
		b.w.scanNamed(rules.FieldHTTPArg, rules.FieldHTTPArgName, name, value, b.sc)
	}
}

// File implements http.BodyArgs.
func (b *bodySink) File(field, filename []byte) {
	b.files++
	if !b.w.stopped() {
		b.w.scanNamed(rules.FieldHTTPFile, rules.FieldHTTPFileField, field, filename, b.sc)
	}
}

// scanNamed scans one named value of a request: the value in field vk (the
// name given for except:), the name in field nk.
func (w *worker) scanNamed(vk, nk rules.FieldKind, name, value []byte, sc *scope) {
	if fp := w.rs.Block[vk]; fp.Matched() {
		w.scanValue(fp, name, value, sc, flow.ToServer)
	}
	if fp := w.rs.Block[nk]; fp.Matched() {
		w.scanValue(fp, nil, name, sc, flow.ToServer)
	}
}

// XMLText implements http.XMLValues.
func (b *bodySink) XMLText(v []byte) { b.scan(rules.FieldHTTPXMLText, v) }

// XMLAttr implements http.XMLValues.
func (b *bodySink) XMLAttr(v []byte) { b.scan(rules.FieldHTTPXMLAttr, v) }

// scan evaluates one unnamed value of the body's per-value field k.
func (b *bodySink) scan(k rules.FieldKind, v []byte) {
	if fp := b.w.rs.Block[k]; fp.Matched() && !b.w.stopped() {
		b.w.scanValue(fp, nil, v, b.sc, flow.ToServer)
	}
}

// PartHeader implements http.BodyArgs.
func (b *bodySink) PartHeader(line []byte) {
	b.parts++
	b.scan(rules.FieldHTTPPartHeader, line)
}

// single evaluates a single-valued block field: its groups over the value
// and its count: conditions (1 value when not empty).
func (w *worker) single(k rules.FieldKind, v []byte, sc *scope, d flow.Dir) {
	fp := w.rs.Block[k]
	if fp == nil || w.stopped() {
		return
	}
	if len(v) > 0 {
		w.scanValue(fp, nil, v, sc, d)
	}
	if len(fp.Count) > 0 {
		w.counts(fp, min(len(v), 1), nil, sc, d)
	}
}

// requestFields evaluates the request fields beyond the classic ones:
// every header of a name, every argument, cookie and header value and
// name, the file name, the request line. Body arguments come at the end
// of the body (requestEnd).
func (w *worker) requestFields(ctx *flowCtx, r *http.Request, sc *scope) {
	rs := w.rs
	const d = flow.ToServer
	for _, fp := range rs.Headers {
		n := 0
		for i := range r.Headers {
			if h := &r.Headers[i]; ascii.EqualFold(h.Name, fp.Field.Name) {
				n++
				w.scanValue(fp, nil, h.Value, sc, d)
			}
		}
		w.counts(fp, n, nil, sc, d)
	}
	if fp := rs.Block[rules.FieldHTTPArg]; fp.Matched() {
		for i := range r.Args {
			w.scanValue(fp, r.Args[i].Name, r.Args[i].Value, sc, d)
		}
	}
	if fp := rs.Block[rules.FieldHTTPArgName]; fp.Matched() {
		for i := range r.Args {
			w.scanValue(fp, nil, r.Args[i].Name, sc, d)
		}
	}
	ctx.queryArgs = len(r.Args)
	if rs.BodyArgs {
		ctx.reqCT = appendBounded(ctx.reqCT[:0], r.Header("content-type"), maxContentType)
	}
	if fc, fn := rs.Block[rules.FieldHTTPCookie], rs.Block[rules.FieldHTTPCookieName]; fc.Used() || fn.Used() {
		n := 0
		for i := range r.Headers {
			h := &r.Headers[i]
			if !ascii.EqualFold(h.Name, "cookie") {
				continue
			}
			for v := h.Value; len(v) > 0 && n < maxCookies; {
				c := v
				if j := bytes.IndexByte(v, ';'); j >= 0 {
					c, v = v[:j], v[j+1:]
				} else {
					v = nil
				}
				c = bytes.TrimSpace(c)
				if len(c) == 0 {
					continue
				}
				n++
				name, val := c, []byte(nil)
				if j := bytes.IndexByte(c, '='); j >= 0 {
					name, val = c[:j], c[j+1:]
				}
				w.scanNamed(rules.FieldHTTPCookie, rules.FieldHTTPCookieName, name, val, sc)
			}
		}
		w.counts(fc, n, nil, sc, d)
		w.counts(fn, n, nil, sc, d)
	}
	if fp := rs.Block[rules.FieldHTTPHeaderValue]; fp.Used() {
		for i := range r.Headers {
			w.scanValue(fp, r.Headers[i].Name, r.Headers[i].Value, sc, d)
		}
		w.counts(fp, len(r.Headers), r.Headers, sc, d)
	}
	if fp := rs.Block[rules.FieldHTTPHeaderName]; fp.Used() {
		for i := range r.Headers {
			w.scanValue(fp, nil, r.Headers[i].Name, sc, d)
		}
		w.counts(fp, len(r.Headers), nil, sc, d)
	}
	if rs.Block[rules.FieldHTTPFilename] != nil || rs.Block[rules.FieldHTTPBasename] != nil {
		w.req.fname = ascii.PercentDecode(w.req.fname[:0], targetPath(r))
		w.single(rules.FieldHTTPFilename, w.req.fname, sc, d)
		base := w.req.fname
		if i := bytes.LastIndexByte(base, '/'); i >= 0 {
			base = base[i+1:]
		}
		w.single(rules.FieldHTTPBasename, base, sc, d)
	}
	if rs.Block[rules.FieldHTTPRequestLine] != nil {
		l := append(w.req.line[:0], r.Method...)
		l = append(append(l, ' '), r.URI...)
		l = append(append(l, ' '), r.Proto...)
		w.req.line = l
		w.single(rules.FieldHTTPRequestLine, l, sc, d)
	}
	w.single(rules.FieldHTTPProtocol, r.Proto, sc, d)
	w.single(rules.FieldHTTPVersion, r.Proto, sc, d)
	w.single(rules.FieldHTTPQuery, r.Query, sc, d)
	// Counts of the classic single-valued fields (scanned by the caller).
	for _, f := range [...]struct {
		k rules.FieldKind
		v []byte
	}{
		{rules.FieldHTTPMethod, r.Method}, {rules.FieldHTTPURI, r.URI}, {rules.FieldHTTPPath, r.Path},
		{rules.FieldHTTPArgs, r.ArgsBuf}, {rules.FieldHTTPHeaders, r.HeaderBlock},
	} {
		if fp := rs.Block[f.k]; fp != nil && len(fp.Count) > 0 {
			w.counts(fp, min(len(f.v), 1), nil, sc, d)
		}
	}
}

// requestEnd evaluates what needs the whole request: libinjection on the
// body, the body's arguments, the counts of fields that include them, and
// the inbound anomaly threshold.
func (w *worker) requestEnd(ctx *flowCtx, sc *scope) {
	rs := w.rs
	const d = flow.ToServer
	if rs.BufBody && !w.stopped() {
		if fp := rs.Stream[plan.StreamReqBody]; fp != nil && len(ctx.body) > 0 {
			for _, ref := range fp.Detect {
				if hit, fpr := w.det.MatchField(ref.Match(), ref.Field, ctx.body); hit {
					w.condHit(ref.Rule, ref.Cond, fp.Field, []byte(fpr), plan.Sensitive(ref.Rule), sc, d)
				}
			}
		}
		bs := &w.req.sink
		*bs = bodySink{w: w, sc: sc}
		k, boundary := http.BodyKindOf(ctx.reqCT)
		if rs.BodyArgs && len(ctx.body) > 0 && !w.stopped() {
			w.req.found = proto.KindSet{}
			w.req.args = http.ParseBody(k, boundary, ctx.body, w.req.args, maxBodyArgs, bs, &w.req.found)
		}
		if isPlainBody(k) {
			w.single(rules.FieldHTTPPlainBody, ctx.body, sc, d)
		}
		if !w.stopped() {
			n := ctx.queryArgs + bs.args
			w.counts(rs.Block[rules.FieldHTTPArg], n, nil, sc, d)
			w.counts(rs.Block[rules.FieldHTTPArgName], n, nil, sc, d)
			w.counts(rs.Block[rules.FieldHTTPFile], bs.files, nil, sc, d)
			w.counts(rs.Block[rules.FieldHTTPFileField], bs.files, nil, sc, d)
			w.counts(rs.Block[rules.FieldHTTPPartHeader], bs.parts, nil, sc, d)
		}
	}
	ctx.body, ctx.bodyFull = ctx.body[:0], false
	if !w.stopped() {
		w.checkScore(sc, 0, d)
	}
}

// isPlainBody reports whether a request body of kind k (from its first
// Content-Type) is http.plain_body: a body that is not parsed into arguments as
// XML, JSON or multipart. That is Coraza's REQUEST_BODY under CRS's
// set-up (rule 901340 forces the URLENCODED processor on every type no
// other processor takes). It is decided by http.BodyKindOf, the function
// that decides the parsing, so that every body is seen either as
// arguments or whole: a type Coraza would parse by its looser prefixes
// (application/jsonx, a multipart body without a usable boundary) and
// deepwall does not parse is plain here.
func isPlainBody(k http.BodyKind) bool {
	switch k {
	case http.BodyXML, http.BodyJSON, http.BodyMultipart:
		return false
	}
	return true
}

// responseFields evaluates the response fields beyond the header block:
// the status and every header value.
func (w *worker) responseFields(r *http.Response, sc *scope) {
	rs := w.rs
	const d = flow.ToClient
	if rs.Block[rules.FieldHTTPStatus] != nil && r.Status >= 0 && r.Status <= 999 {
		s := &w.req.status
		s[0], s[1], s[2] = byte('0'+r.Status/100), byte('0'+r.Status/10%10), byte('0'+r.Status%10)
		w.single(rules.FieldHTTPStatus, s[:], sc, d)
	}
	if fp := rs.Block[rules.FieldHTTPResponseHeaderValue]; fp.Used() {
		for i := range r.Headers {
			w.scanValue(fp, r.Headers[i].Name, r.Headers[i].Value, sc, d)
		}
		w.counts(fp, len(r.Headers), nil, sc, d)
	}
}

// targetPath returns the path part of a request target as sent: up to
// '?' or '#', without the scheme and authority of an absolute-form
// target.
func targetPath(r *http.Request) []byte {
	t := r.URI
	if len(t) > 0 && t[0] != '/' {
		if i := bytes.Index(t, []byte("://")); i >= 0 {
			t = t[i+3:]
			if j := bytes.IndexByte(t, '/'); j >= 0 {
				t = t[j:]
			} else {
				t = nil
			}
		} else {
			return r.Path
		}
	}
	if i := bytes.IndexAny(t, "?#"); i >= 0 {
		t = t[:i]
	}
	return t
}
