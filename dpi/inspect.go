package dpi

import (
	"strconv"

	"github.com/deepwall/deepwall/dpi/flow"
	"github.com/deepwall/deepwall/dpi/internal/plan"
	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/dpi/proto/dns"
	"github.com/deepwall/deepwall/dpi/proto/http"
	"github.com/deepwall/deepwall/dpi/proto/http2"
	"github.com/deepwall/deepwall/dpi/proto/ssh"
	"github.com/deepwall/deepwall/dpi/proto/tls"
	"github.com/deepwall/deepwall/internal/ascii"
	"github.com/deepwall/deepwall/rules"

	"github.com/deepwall/deepwall/ctl/eve"
)

// onData receives the in-order bytes of direction d of the current TCP
// flow from the reassembler.
func (w *worker) onData(d flow.Dir, chunk []byte) {
	if w.stopped() || len(chunk) == 0 {
		return
	}
	ctx := w.ctxOf(w.cur)
	st := w.cst
	// deliver runs before the reassembler counts chunk as delivered.
	w.feedAt = st.dir[d].Delivered()
	defer func() { w.feedAt = noOffset }()
	if k := payloadKind(d); w.rs.Stream[k].Used() && st.flags&fIdentOnly == 0 {
		w.streamWrite(ctx, k, chunk, &ctx.flow, d)
		w.settle(&ctx.flow, d)
		if w.stopped() {
			return
		}
	}
	if st.ident == identDone {
		w.feed(ctx, d, chunk)
		return
	}
	p, s := ctx.ident.Feed(proto.Dir(d), chunk)
	switch s {
	case proto.NeedMore:
		return
	case proto.NotIdentified:
		w.identified(proto.Unknown, d)
		return
	}
	w.identified(p, d)
	at := w.feedAt
	if w.replayPending(ctx) {
		w.feedAt = at
		w.feed(ctx, d, chunk)
	}
}

// replayPending gives the flow's parser what identification held back, as
// parsers need each direction from its first byte (the caller then feeds
// the deciding chunk, if any). It reports whether a parser runs.
func (w *worker) replayPending(ctx *flowCtx) bool {
	if w.stopped() || ctx.parser == parserNone {
		return false
	}
	// What identification held of a direction ends where the
	// reassembler delivered it to (for the direction being delivered,
	// before the chunk that decided).
	for _, d := range [...]flow.Dir{flow.ToServer, flow.ToClient} {
		b := ctx.ident.Pending(proto.Dir(d))
		w.feedAt = w.cst.dir[d].Delivered() - int64(len(b))
		w.feed(ctx, d, b)
	}
	w.feedAt = noOffset
	return true
}

// holdExpired decides the flow when the hold of direction d's undecided
// bytes ran out (Config.Hold): as the protocol they still start like,
// its parser fed every byte so far (proto.Identifier.Expire), or as
// unidentified traffic.
func (w *worker) holdExpired(d flow.Dir) {
	ctx := w.ctxOf(w.cur)
	w.identified(ctx.ident.Expire(proto.Dir(d)), d)
	w.replayPending(ctx)
}

// identified records the flow's application protocol, evaluates the rules
// that waited for it, and decides whether the flow still needs
// inspecting; if so it starts the protocol's parser when a rule uses its
// fields.
func (w *worker) identified(p proto.Protocol, d flow.Dir) {
	st := w.cst
	ctx := w.cctx
	st.ident, st.app = identDone, p
	if p < proto.NumProtocols {
		w.st.apps[p]++
	}
	ctx.rflow.App = p.String()
	rs := w.rs
	for _, r := range rs.AppOnly {
		if r.MatchFlow(ctx.rflow) {
			w.candidate(r, rules.Field{}, nil, false, &ctx.flow, d)
		}
	}
	for i := range ctx.unresolved {
		u := &ctx.unresolved[i]
		if u.r.MatchFlow(ctx.rflow) {
			w.candidate(u.r, u.field, u.text[:u.n], u.sens, &ctx.flow, u.dir)
		}
	}
	ctx.unresolved = ctx.unresolved[:0]
	w.settle(&ctx.flow, d)
	if w.stopped() {
		return
	}
	if !rs.Needs(p, ctx.rflow, false) {
		w.allowFinal(0)
		return
	}
	if ctx.rflow.Proto != 6 || !rs.App(p).Fields && p != proto.SSH {
		// Raw payload rules only (SSH banners are parsed for events), or
		// a datagram flow (DNS datagrams use the worker's parser).
		return
	}
	// A flow context's parsers outlive the flow (Reset keeps their
	// buffers); a new one is the zero Parser reset.
	switch p {
	case proto.HTTP1:
		ctx.http = orNew(ctx.http)
		ctx.http.Reset(w, w.httpSc)
		ctx.parser = parserHTTP
	case proto.TLS:
		ctx.tls = orNew(ctx.tls)
		ctx.tls.Reset(w)
		ctx.parser = parserTLS
	case proto.DNS:
		ctx.dns = orNew(ctx.dns)
		ctx.dns.Reset(w, dns.Config{})
		ctx.parser = parserDNS
	case proto.SSH:
		ctx.ssh = orNew(ctx.ssh)
		ctx.ssh.Reset(w)
		ctx.parser = parserSSH
	case proto.HTTP2:
		w.startH2(ctx)
		ctx.parser = parserHTTP2
	default:
		if isDB(p) {
			w.startDB(ctx, p)
		}
	}
}

// orNew returns p, or a new T when p is nil.
func orNew[T any](p *T) *T {
	if p == nil {
		return new(T)
	}
	return p
}

// feed gives an in-order chunk to the flow's parser.
func (w *worker) feed(ctx *flowCtx, d flow.Dir, b []byte) {
	if len(b) == 0 || w.stopped() {
		return
	}
	switch ctx.parser {
	case parserHTTP:
		if ctx.tunnel[d] {
			w.feedH2(ctx, d, b)
			return
		}
		n := ctx.http.Feed(proto.Dir(d), b)
		if n < len(b) && ctx.http.State(proto.Dir(d)) == http.StateTunnel {
			// CONNECT or Upgrade: the rest is another protocol, HTTP/2
			// after an h2c upgrade, else left to the raw payload rules.
			ctx.tunnel[d] = true
			if w.feedAt != noOffset {
				w.feedAt += int64(n)
			}
			if w.tunnelH2(ctx, d, b[n:]) {
				return
			}
			if ctx.tunnel[d^1] && !w.rs.Needs(proto.Unknown, ctx.rflow, true) {
				w.allowFinal(0)
			}
		}
	case parserTLS:
		done := ctx.tls.Feed(proto.Dir(d), b)
		if (done || ctx.helloSeen) && !w.stopped() && !w.rs.Needs(proto.TLS, ctx.rflow, true) {
			// The ClientHello was inspected; the rest is encrypted.
			w.allowFinal(0)
		}
	case parserSSH:
		if ctx.ssh.Feed(proto.Dir(d), b) && !w.rs.Needs(proto.SSH, ctx.rflow, true) {
			w.allowFinal(0)
		}
	case parserDNS:
		ctx.dns.Feed(proto.Dir(d), b)
	case parserHTTP2:
		w.feedH2(ctx, d, b)
	case parserDB:
		w.feedDB(ctx, d, b)
	}
}

// RequestHeaders implements http.Sink.
func (w *worker) RequestHeaders(r *http.Request) {
	if w.stopped() {
		return
	}
	ctx := w.cctx
	ctx.reqSeq = r.Seq
	w.upgradeAsked(ctx, r)
	w.request(ctx, r, 0)
}

// request inspects a request head: of an HTTP/1 message, or of HTTP/2
// stream (0 for HTTP/1) whose state the caller entered in ctx.
func (w *worker) request(ctx *flowCtx, r *http.Request, stream uint32) {
	t := ctx.txnFor(r.Seq)
	t.start(r.Seq, r)
	t.stream = stream
	sc := &t.scope
	rs := w.rs
	const d = flow.ToServer
	w.req.head = r // for compare: conditions (compare.go)
	w.scanBlock(rs.Block[rules.FieldHTTPMethod], r.Method, sc, d)
	w.scanBlock(rs.Block[rules.FieldHTTPURI], r.URI, sc, d)
	w.scanBlock(rs.Block[rules.FieldHTTPPath], r.Path, sc, d)
	w.scanBlock(rs.Block[rules.FieldHTTPArgs], r.ArgsBuf, sc, d)
	w.scanBlock(rs.Block[rules.FieldHTTPHeaders], r.HeaderBlock, sc, d)
	w.requestFields(ctx, r, sc)
	w.req.head = nil
	w.settle(sc, d)
}

// RequestBody implements http.Sink.
func (w *worker) RequestBody(chunk []byte, end bool) {
	w.body(plan.StreamReqBody, w.cctx.reqSeq, flow.ToServer, chunk, end)
}

// ResponseHeaders implements http.Sink.
func (w *worker) ResponseHeaders(r *http.Response) {
	if w.stopped() {
		return
	}
	if w.cctx.h2.upAsked && http2.IsUpgrade(r) {
		w.cctx.h2.upgraded = true
	}
	w.response(r)
}

// response inspects a response head (HTTP/1, or an HTTP/2 stream's).
func (w *worker) response(r *http.Response) {
	ctx := w.cctx
	t := ctx.txnOf(r.Seq)
	if !r.Interim {
		t.status = r.Status
		ctx.rspSeq = r.Seq
	}
	w.scanBlock(w.rs.Block[rules.FieldHTTPResponseHeaders], r.HeaderBlock, &t.scope, flow.ToClient)
	w.responseFields(r, &t.scope)
	w.checkScore(&t.scope, 1, flow.ToClient)
	w.settle(&t.scope, flow.ToClient)
}

// ResponseBody implements http.Sink.
func (w *worker) ResponseBody(chunk []byte, end bool) {
	w.body(plan.StreamRespBody, w.cctx.rspSeq, flow.ToClient, chunk, end)
}

func (w *worker) body(k plan.StreamKind, seq int64, d flow.Dir, chunk []byte, end bool) {
	rs := w.rs
	used := rs.Stream[k].Used()
	reqEnd := k == plan.StreamReqBody && rs.ReqEnd
	if w.stopped() || !used && !reqEnd && (k != plan.StreamRespBody || len(rs.Thresholds[1]) == 0) {
		return
	}
	ctx := w.cctx
	sc := &ctx.txnOf(seq).scope
	if used {
		w.streamWrite(ctx, k, chunk, sc, d)
		if end && !w.stopped() {
			w.endStreams(ctx, k, sc, d)
		}
	}
	if reqEnd {
		if rs.BufBody && !ctx.bodyFull && len(chunk) > 0 {
			room := maxDetectBody - len(ctx.body)
			if len(chunk) > room {
				chunk, ctx.bodyFull = chunk[:room], true
			}
			ctx.body = append(ctx.body, chunk...)
		}
		if end {
			w.requestEnd(ctx, sc)
		}
	}
	if k == plan.StreamRespBody && !w.stopped() {
		w.checkScore(sc, 1, d)
	}
	w.settle(sc, d)
}

// Finding implements the parsers' sinks. A fatal HTTP finding stops the
// parser for the whole connection: its later requests could not be
// inspected, so the flow is blocked (smuggling attempts and oversized or
// broken heads alike). A flow picked up mid-stream is the exception: its
// first bytes may sit inside a message, so a parse failure there says
// nothing about the peers; HTTP inspection just ends for it. Other
// findings are counted.
func (w *worker) Finding(f proto.Finding) {
	w.st.findings++
	if w.stopped() || w.cctx == nil || w.cctx.parser != parserHTTP && w.cctx.parser != parserHTTP2 {
		return
	}
	if !f.Fatal {
		w.findingField(f.Kind, &w.cctx.flow, flow.Dir(f.Dir&1))
		return
	}
	if w.cur.Flags&flow.FlagMidstream != 0 || w.cst.dir[f.Dir&1].Midstream() {
		w.cctx.parser = parserNone
		if !w.rs.Needs(proto.Unknown, w.cctx.rflow, true) {
			w.allowFinal(0)
		}
		return
	}
	reason := f.Kind.String()
	w.dropProtoLimit(reason, w.limitOf(f.Kind), f.Dir)
	w.blockFlow(0, reason)
}

// limitOf names the configured HTTP limit behind a limit finding and its
// value, so that the drop event says what to raise ("" for others).
func (w *worker) limitOf(k proto.FindingKind) string {
	l := w.e.cfg.HTTP
	var name string
	var v, def int // the configured value; the parser's default when unset
	switch k {
	case proto.HTTPRequestLineTooLong:
		name, v, def = "http.max_request_line", l.MaxRequestLine, http.DefaultMaxRequestLine
	case proto.HTTPHeadersTooLarge, proto.HTTPTrailerTooLarge:
		name, v, def = "http.max_header_bytes", l.MaxHeaderBytes, http.DefaultMaxHeaderBytes
	case proto.HTTPTooManyHeaders:
		name, v, def = "http.max_header_count", l.MaxHeaderCount, http.DefaultMaxHeaderCount
	case proto.HTTPChunkLineTooLong:
		name, v, def = "http.max_chunk_line", l.MaxChunkLine, http.DefaultMaxChunkLine
	case proto.HTTPPipelineTooDeep:
		name, v, def = "http.max_pipelined", http.MaxPipelined, http.MaxPipelined
	default:
		return ""
	}
	if v <= 0 {
		v = def
	}
	return name + "=" + strconv.Itoa(v)
}

// dropProto reports a flow blocked by a protocol violation.
func (w *worker) dropProto(reason string, d proto.Dir) { w.dropProtoLimit(reason, "", d) }

// dropProtoLimit is dropProto for a violation of a named limit.
func (w *worker) dropProtoLimit(reason, limit string, d proto.Dir) {
	st := w.cst
	if st.dropEv&(1<<dropProtocol) != 0 || !w.dropAllowed(dropProtocol) {
		return
	}
	st.dropEv |= 1 << dropProtocol
	ev := w.newEvent(eve.EventDrop, flow.Dir(d))
	ev.Drop = &eve.Drop{Reason: reason, Len: len(w.pkt.Payload), DropExtra: eve.DropExtra{Limit: limit}}
	if w.cctx != nil && w.cctx.reqSeq >= 0 {
		w.addSections(ev, &w.cctx.txnOf(w.cctx.reqSeq).scope)
	}
	w.emit(ev)
}

// ClientHello implements tls.Sink.
func (w *worker) ClientHello(h *tls.ClientHello) {
	if w.stopped() {
		return
	}
	ctx := w.cctx
	ctx.helloSeen = true
	ctx.sni = appendBounded(ctx.sni[:0], h.SNI, maxHostname)
	ctx.tlsVersion = h.Version
	w.scanBlock(w.rs.Block[rules.FieldTLSSNI], h.SNI, &ctx.flow, flow.ToServer)
	w.settle(&ctx.flow, flow.ToServer)
}

// ServerHello implements tls.Sink.
func (w *worker) ServerHello(h *tls.ServerHello) {
	if !h.HelloRetry {
		w.cctx.tlsVersion = h.Version
	}
}

// Message implements dns.Sink, for UDP datagrams and TCP streams.
func (w *worker) Message(dir proto.Dir, m *dns.Message) {
	if w.stopped() {
		return
	}
	ctx := w.cctx
	sc, info := &w.msg, &w.msgDNS
	if ctx.parser == parserDNS {
		sc, info = &ctx.msg, &ctx.dnsMsg
		sc.reset(nil, info)
	} else {
		sc.dns = info
	}
	info.query = !m.Response
	info.rrname, info.rrtype = info.rrname[:0], 0
	if len(m.Questions) > 0 {
		q := &m.Questions[0]
		info.rrtype = q.Type
		// dns.query is matched lower case (names are case-insensitive).
		for _, c := range q.Name {
			info.rrname = append(info.rrname, ascii.Lower(c))
		}
	}
	if info.query && len(info.rrname) > 0 {
		w.scanBlock(w.rs.Block[rules.FieldDNSQuery], info.rrname, sc, flow.Dir(dir))
	}
	if ctx.parser == parserDNS {
		w.settle(sc, flow.Dir(dir))
	}
}

// Banner implements ssh.Sink.
func (w *worker) Banner(dir proto.Dir, b *ssh.Banner) {
	ctx := w.cctx
	d := dir & 1
	ctx.sshSW[d] = appendBounded(ctx.sshSW[d][:0], b.Software, 64)
	ctx.sshProto[d] = appendBounded(ctx.sshProto[d][:0], b.ProtoVersion, 16)
}
