package dpi

// HTTP/2 in the engine: the parser (dpi/proto/http2) turns each stream
// into the http.Request and http.Response an HTTP/1 transaction gives,
// and the worker inspects them with the HTTP/1 code paths: every stream
// is a transaction (a scope of its own), so the http.* fields, the
// default pack, custom rules and imported CRS apply unchanged. What
// HTTP/1 keeps once per connection because its messages come one after
// another — the request being parsed, its Content-Type and query
// argument count, the body kept for libinjection and body arguments —
// HTTP/2 keeps per stream (h2Stream) and swaps into the flow context
// around each call. gRPC streams (content-type application/grpc*) add
// the grpc.* fields (grpc.go).

import (
	"github.com/deepwall/deepwall/dpi/flow"
	"github.com/deepwall/deepwall/dpi/internal/plan"
	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/dpi/proto/grpc"
	"github.com/deepwall/deepwall/dpi/proto/http"
	"github.com/deepwall/deepwall/dpi/proto/http2"
	"github.com/deepwall/deepwall/rules"
)

// Bounds on HTTP/2 inspection state.
const (
	// maxH2Body bounds the request-body bytes a connection keeps for
	// libinjection and body arguments over all its streams at once
	// (each stream keeps at most maxDetectBody, as an HTTP/1 request
	// does): a client opening many streams with bodies gets the rest of
	// them inspected by the stream fields only, as a body past
	// maxDetectBody is.
	maxH2Body = 4 * maxDetectBody
	// maxUpgradeSettings bounds the HTTP2-Settings value kept from an
	// h2c upgrade request until its 101 response.
	maxUpgradeSettings = 512
	// maxGRPCBuffered bounds the bytes of gRPC messages split across
	// DATA frames that a connection holds over all its streams at once
	// (each at most grpc.Limits.MaxMessage). More blocks the connection
	// (drop reason grpc.reassembly_limit): skipping a message would leave
	// it uninspected.
	maxGRPCBuffered = 4 << 20
)

// h2Worker is a worker's HTTP/2 and gRPC state: the parsers' shared
// buffers and the adapter the parsers call.
type h2Worker struct {
	// inFeed: the parser is being fed direction feeding (blockStream
	// rewrites that direction's frames).
	inFeed  bool
	feeding flow.Dir
	sink    h2Sink
	decoded h2Decoded
	sc      *http2.Scratch
	gsc     *grpc.Scratch
	gs      grpcSide
}

// h2Sink adapts the worker to http2.Sink, whose calls carry the stream
// (http.Sink's, which the worker implements, do not).
type h2Sink struct{ w *worker }

// h2Stream is what a flow keeps of one open HTTP/2 stream.
type h2Stream struct {
	id        uint32
	seq       int64 // transaction (the flow's request sequence)
	queryArgs int
	ct        []byte // request Content-Type, for the body arguments
	body      []byte // request body kept for inspection
	bodyFull  bool
	grpc      bool
	// blocked: a rule blocked the stream, its frames were rewritten so
	// that both peers reset it; the rest of it is not inspected.
	blocked bool
	gr      [2]grpc.Reader
	// dec decodes each side's Content-Encoding (inactive without one);
	// allocated once per slot, as a Decoder must not move while active.
	dec *[2]http.Decoder
}

// h2Conn is a flow context's HTTP/2 state.
type h2Conn struct {
	on      bool // the parser runs (prior knowledge, or after an h2c upgrade)
	p       *http2.Parser
	streams []h2Stream // slots; id 0 = free
	// seqBase is added to the parser's request numbers: after an h2c
	// upgrade the HTTP/1 requests came first.
	seqBase int64
	// bodyBytes is the request body kept over all streams (maxH2Body);
	// grpcBytes the gRPC messages in progress over all streams
	// (maxGRPCBuffered).
	bodyBytes, grpcBytes int
	// owner is the stream whose body the flow's Hyperscan streams of
	// http.body and http.response_body are in (0: none).
	owner [2]uint32
	// Upgrade: h2c seen in a request (settings its HTTP2-Settings, seq
	// the request), and accepted by a 101.
	upSettings []byte
	upSeq      int64
	upAsked    bool
	upgraded   bool
	// base maps the parser's offsets of each direction to the
	// reassembler's (baseOK once known); rw are the ranges rewritten for
	// blocked streams, kept for retransmissions (h2block.go).
	base    [2]int64
	baseOK  [2]bool
	rw      []h2Rewrite
	rwBytes int
}

func (c *h2Conn) reset() {
	c.release()
	c.streams = c.streams[:0]
	c.on, c.seqBase, c.bodyBytes, c.grpcBytes, c.owner = false, 0, 0, 0, [2]uint32{}
	c.upSettings, c.upSeq, c.upAsked, c.upgraded = c.upSettings[:0], -1, false, false
	clear(c.rw)
	c.base, c.baseOK, c.rw, c.rwBytes = [2]int64{}, [2]bool{}, c.rw[:0], 0
}

// release frees the streams still open (their body decoders park a
// goroutine each).
func (c *h2Conn) release() {
	for i := range c.streams {
		if s := &c.streams[i]; s.id != 0 {
			c.close(s)
		}
	}
}

// stream returns open stream id, or nil.
func (c *h2Conn) stream(id uint32) *h2Stream {
	for i := range c.streams {
		if c.streams[i].id == id {
			return &c.streams[i]
		}
	}
	return nil
}

// open returns a free slot for stream id. The parser bounds the streams
// open at once (http2.Limits.MaxStreams), so the slots are bounded too.
func (c *h2Conn) open(id uint32, seq int64) *h2Stream {
	s := c.stream(0)
	if s == nil {
		// Slots past len are earlier flows' (reset): their buffers and
		// decoders are reused.
		if len(c.streams) < cap(c.streams) {
			c.streams = c.streams[:len(c.streams)+1]
		} else {
			c.streams = append(c.streams, h2Stream{})
		}
		s = &c.streams[len(c.streams)-1]
	}
	*s = h2Stream{id: id, seq: seq, ct: s.ct[:0], body: s.body[:0], gr: s.gr, dec: s.dec}
	if s.dec == nil {
		s.dec = new([2]http.Decoder)
	}
	return s
}

// close frees stream s's slot, keeping its buffers.
func (c *h2Conn) close(s *h2Stream) {
	s.dec[0].Release()
	s.dec[1].Release()
	if s.grpc {
		// A reader's buffer grows to the longest split message (up to
		// grpc.Limits.MaxMessage): not kept in a pooled slot.
		c.grpcBytes -= s.gr[0].Buffered() + s.gr[1].Buffered()
		s.gr = [2]grpc.Reader{}
	}
	c.bodyBytes -= len(s.body)
	s.id, s.body = 0, s.body[:0]
	if cap(s.body) > maxDetectBody {
		s.body = nil
	}
}

// startH2 starts the flow's HTTP/2 parser.
func (w *worker) startH2(ctx *flowCtx) {
	if w.h2.sc == nil {
		w.h2.sink.w, w.h2.decoded.w = w, w
		w.h2.sc = http2.NewScratch(http2.Limits{}, w.httpSc)
		w.h2.gsc = grpc.NewScratch(grpc.Limits{})
	}
	if ctx.h2.p == nil {
		ctx.h2.p = http2.NewParser(&w.h2.sink, w.h2.sc)
	} else {
		ctx.h2.p.Reset(&w.h2.sink, w.h2.sc)
	}
	ctx.h2.on = true
}

// feedH2 gives an in-order chunk to the flow's HTTP/2 parser.
func (w *worker) feedH2(ctx *flowCtx, d flow.Dir, b []byte) {
	if !ctx.h2.on || ctx.h2.p.Stopped() {
		return
	}
	ctx.h2.p.SetTime(w.now)
	w.setFeedBase(&ctx.h2, d)
	w.h2.inFeed, w.h2.feeding = true, d
	ctx.h2.p.Feed(proto.Dir(d), b)
	w.h2.inFeed = false
}

// upgradeAsked notes an HTTP/1 request asking for h2c (its settings, for
// the parser if the server accepts).
func (w *worker) upgradeAsked(ctx *flowCtx, r *http.Request) {
	// HTTP2-Settings is required with Upgrade: h2c (RFC 7540 3.2.1);
	// the 101 response says whether the server switched.
	st := http2.UpgradeSettings(r)
	if st == nil {
		return
	}
	c := &ctx.h2
	c.upAsked, c.upSeq = true, r.Seq
	c.upSettings = appendBounded(c.upSettings[:0], st, maxUpgradeSettings)
}

// tunnelH2 is called when direction d of an HTTP/1 flow switched
// protocols with rest its first bytes after the switch: after an
// accepted h2c upgrade they are HTTP/2, for the HTTP/2 parser. It
// reports whether it took them.
func (w *worker) tunnelH2(ctx *flowCtx, d flow.Dir, rest []byte) bool {
	c := &ctx.h2
	if !c.upgraded {
		return false
	}
	if !c.on {
		w.startH2(ctx)
		c.seqBase = c.upSeq
		c.p.Upgrade(c.upSettings)
		c.open(1, c.upSeq)
		w.st.h2Streams++
		w.cst.app = proto.HTTP2
		ctx.rflow.App = proto.HTTP2.String()
	}
	w.feedH2(ctx, d, rest)
	return true
}

// enter makes stream s the flow's current HTTP message (the fields the
// HTTP/1 code reads from the flow context); leave puts them back.
func (c *flowCtx) enter(s *h2Stream) {
	c.h2.bodyBytes -= len(s.body)
	c.reqSeq, c.rspSeq, c.queryArgs = s.seq, s.seq, s.queryArgs
	c.reqCT, s.ct = s.ct, c.reqCT
	c.body, s.body = s.body, c.body
	c.bodyFull = s.bodyFull || c.h2.bodyBytes >= maxH2Body
}

func (c *flowCtx) leave(s *h2Stream) {
	s.queryArgs = c.queryArgs
	c.reqCT, s.ct = s.ct, c.reqCT
	c.body, s.body = s.body, c.body
	c.h2.bodyBytes += len(s.body)
	s.bodyFull = c.bodyFull
	c.body, c.bodyFull = c.body[:0], false
}

// RequestHeaders implements http2.Sink.
func (h *h2Sink) RequestHeaders(id uint32, r *http.Request) {
	w := h.w
	ctx := w.cctx
	if w.stopped() {
		return
	}
	s := ctx.h2.open(id, ctx.h2.seqBase+r.Seq)
	w.st.h2Streams++
	r.Seq = s.seq
	ctx.enter(s)
	w.request(ctx, r, id)
	ctx.leave(s)
	if s.blocked {
		return
	}
	if !w.stopped() {
		s.dec[0].Start(w.httpSc, proto.ToServer, r.Headers, &w.h2.decoded)
	}
	if grpc.IsContentType(r.Header("content-type")) && !w.stopped() {
		w.grpcRequest(ctx, s, r)
	}
}

// RequestBody implements http2.Sink.
func (h *h2Sink) RequestBody(id uint32, chunk []byte, end bool) {
	h.body(id, plan.StreamReqBody, flow.ToServer, chunk, end)
}

// ResponseHeaders implements http2.Sink.
func (h *h2Sink) ResponseHeaders(id uint32, r *http.Response) {
	w := h.w
	s := w.cctx.h2.stream(id)
	if s == nil || s.blocked || w.stopped() {
		return
	}
	r.Seq = s.seq
	w.response(r)
	if !r.Interim && !w.stopped() {
		s.dec[1].Start(w.httpSc, proto.ToClient, r.Headers, &w.h2.decoded)
	}
	if s.grpc && !r.Interim && !w.stopped() {
		w.grpcResponse(s, r)
	}
}

// ResponseBody implements http2.Sink.
func (h *h2Sink) ResponseBody(id uint32, chunk []byte, end bool) {
	h.body(id, plan.StreamRespBody, flow.ToClient, chunk, end)
}

// body passes a chunk of stream id's body of stream field k to the
// HTTP/1 body path. The flow's Hyperscan streams of a body field serve
// one message at a time: when another stream's body interleaves, the
// previous one's message is ended there (its matches are decided; a
// pattern split across the switch is not seen) and the new one starts.
func (h *h2Sink) body(id uint32, k plan.StreamKind, d flow.Dir, chunk []byte, end bool) {
	w := h.w
	ctx := w.cctx
	s := ctx.h2.stream(id)
	if s == nil || s.blocked || w.stopped() {
		return
	}
	w.ownBody(ctx, k, d, id)
	ctx.enter(s)
	if dc := &s.dec[k]; dc.Active() {
		// The decoded text reaches w.body through h2Decoded.
		w.h2.decoded = h2Decoded{w: w, k: k, seq: s.seq, d: d}
		dc.Write(chunk, end)
		if end && !w.stopped() {
			w.body(k, s.seq, d, nil, true)
		}
	} else {
		w.body(k, s.seq, d, chunk, end)
	}
	ctx.leave(s)
	if end {
		ctx.h2.owner[k] = 0
	}
	if s.grpc && !w.stopped() {
		w.grpcBody(s, d, chunk, end)
	}
}

// ownBody gives the Hyperscan streams of body field k to stream id,
// ending the message of the stream that had them.
func (w *worker) ownBody(ctx *flowCtx, k plan.StreamKind, d flow.Dir, id uint32) {
	c := &ctx.h2
	if prev := c.owner[k]; prev != id {
		if ps := c.stream(prev); prev != 0 && ps != nil && w.rs.Stream[k].Used() {
			sc := &ctx.txnOf(ps.seq).scope
			w.endStreams(ctx, k, sc, d)
			w.settle(sc, d)
		}
		c.owner[k] = id
	}
}

// h2Decoded passes the decoded text of a stream body (http.Decoder) to
// the HTTP/1 body path, as the HTTP/1 parser passes it.
type h2Decoded struct {
	w   *worker
	k   plan.StreamKind
	seq int64
	d   flow.Dir
}

// DecodedBody implements http.DecodeSink.
func (h *h2Decoded) DecodedBody(chunk []byte) { h.w.body(h.k, h.seq, h.d, chunk, false) }

// DecodeFinding implements http.DecodeSink: a fatal one (a request body
// that does not decode, a bomb) blocks the connection as in HTTP/1.
func (h *h2Decoded) DecodeFinding(f proto.Finding) { h.w.Finding(f) }

// Trailers implements http2.Sink: trailer fields are not inspected (no
// HTTP/1 field holds them) but gRPC's status comes in them.
func (h *h2Sink) Trailers(id uint32, dir proto.Dir, hs []http.Header, _ []byte) {
	w := h.w
	if s := w.cctx.h2.stream(id); s != nil && s.grpc && !s.blocked && dir == proto.ToClient && !w.stopped() {
		w.grpcStatus(s, hs)
	}
}

// StreamClosed implements http2.Sink.
func (h *h2Sink) StreamClosed(id uint32, _ http2.End) {
	w := h.w
	ctx := w.cctx
	s := ctx.h2.stream(id)
	if s == nil {
		return
	}
	for k, d := range [...]flow.Dir{plan.StreamReqBody: flow.ToServer, plan.StreamRespBody: flow.ToClient} {
		if ctx.h2.owner[k] == id {
			if !w.stopped() && w.rs.Stream[k].Used() {
				sc := &ctx.txnOf(s.seq).scope
				w.endStreams(ctx, plan.StreamKind(k), sc, d)
				w.settle(sc, d)
			}
			ctx.h2.owner[k] = 0
		}
	}
	ctx.h2.close(s)
}

// Finding implements http2.Sink: as an HTTP/1 finding, a fatal one
// blocks the connection; another is matched as http.finding in its
// stream's transaction (the flow's for connection-level ones).
func (h *h2Sink) Finding(id uint32, f proto.Finding) {
	w := h.w
	if s := w.cctx.h2.stream(id); id != 0 && s != nil && !f.Fatal {
		w.st.findings++
		if !w.stopped() && !s.blocked {
			w.findingField(f.Kind, &w.cctx.txnOf(s.seq).scope, flow.Dir(f.Dir&1))
		}
		return
	}
	w.Finding(f)
}

// findingField matches a finding's name as http.finding in scope sc.
func (w *worker) findingField(k proto.FindingKind, sc *scope, d flow.Dir) {
	if fp := w.rs.Block[rules.FieldHTTPFinding]; fp.Matched() {
		w.scanValue(fp, nil, []byte(k.String()), sc, d)
		w.settle(sc, d)
	}
}

// appName is a flow's application protocol as events and listings show
// it: grpc for an HTTP/2 flow that carried gRPC.
func appName(p proto.Protocol, flags uint16) string {
	if p == proto.HTTP2 && flags&fGRPC != 0 {
		return "grpc"
	}
	return p.String()
}
