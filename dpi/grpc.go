package dpi

// gRPC streams (HTTP/2 with content-type application/grpc*): the
// grpc.* fields. The service and method come from :path; each side's
// DATA is split into length-prefixed messages (gunzipped for
// grpc-encoding gzip) by a grpc.Reader per stream side, and each message
// is walked as protobuf wire format without a schema, its string and
// bytes values matched as grpc.string; grpc-status and grpc-message come
// from the response's trailers (or a trailers-only response's headers).

import (
	"strconv"

	"github.com/deepwall/deepwall/dpi/flow"
	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/dpi/proto/grpc"
	"github.com/deepwall/deepwall/dpi/proto/http"
	"github.com/deepwall/deepwall/rules"
)

// maxGRPCMessageText bounds grpc.message as kept for matching.
const maxGRPCMessageText = 1024

// grpcSide is the grpc.Handler of the stream side being read: the scope
// and direction its messages are matched in.
type grpcSide struct {
	w   *worker
	sc  *scope
	d   flow.Dir
	num [20]byte
	msg []byte // grpc.message, decoded
	// walk is the walker's callback, bound once (no closure per message).
	walk func(grpc.Field) bool
}

// Message implements grpc.Handler.
func (g *grpcSide) Message(m []byte) {
	w := g.w
	if w.stopped() {
		return
	}
	w.single(rules.FieldGRPCMessageLength, strconv.AppendInt(g.num[:0], int64(len(m)), 10), g.sc, g.d)
	if !w.rs.Block[rules.FieldGRPCString].Matched() || w.stopped() {
		return
	}
	found := w.h2.gsc.Walker.Walk(m, g.walk)
	if found != (proto.KindSet{}) {
		for _, k := range [...]proto.FindingKind{proto.GRPCMalformedMessage, proto.GRPCWalkLimit} {
			if found.Has(k) {
				g.Finding(k)
			}
		}
	}
}

func (g *grpcSide) value(f grpc.Field) bool {
	w := g.w
	w.scanValue(w.rs.Block[rules.FieldGRPCString], nil, f.Value, g.sc, g.d)
	return !w.stopped()
}

// Finding implements grpc.Handler: gRPC findings are counted and matched
// as http.finding.
func (g *grpcSide) Finding(k proto.FindingKind) {
	g.w.st.findings++
	if !g.w.stopped() {
		g.w.findingField(k, g.sc, g.d)
	}
}

// side readies the worker's handler for stream s's side d.
func (w *worker) grpcSide(s *h2Stream, d flow.Dir) *grpcSide {
	g := &w.h2.gs
	if g.walk == nil {
		g.w, g.walk = w, g.value
	}
	g.sc, g.d = &w.cctx.txnOf(s.seq).scope, d
	return g
}

// grpcRequest starts inspecting stream s as gRPC from its request head.
func (w *worker) grpcRequest(ctx *flowCtx, s *h2Stream, r *http.Request) {
	s.grpc = true
	w.cst.flags |= fGRPC
	w.st.grpcStreams++
	s.gr[0].Reset(grpc.ParseEncoding(r.Header("grpc-encoding")))
	s.gr[1].Reset(grpc.EncodingIdentity)
	sc := &ctx.txnOf(s.seq).scope
	svc, m, ok := grpc.SplitPath(r.Path)
	if !ok {
		// The method fields stay empty.
		w.st.findings++
		w.findingField(proto.GRPCInvalidPath, sc, flow.ToServer)
	}
	w.single(rules.FieldGRPCService, svc, sc, flow.ToServer)
	w.single(rules.FieldGRPCMethod, m, sc, flow.ToServer)
	w.settle(sc, flow.ToServer)
}

// grpcResponse reads a gRPC response head: its encoding, and the status
// of a trailers-only response.
func (w *worker) grpcResponse(s *h2Stream, r *http.Response) {
	s.gr[1].Reset(grpc.ParseEncoding(r.Header("grpc-encoding")))
	w.grpcStatus(s, r.Headers)
}

// grpcBody reads a chunk of stream s's side d.
func (w *worker) grpcBody(s *h2Stream, d flow.Dir, chunk []byte, end bool) {
	if !w.rs.App(proto.HTTP2).Fields {
		return
	}
	g := w.grpcSide(s, d)
	r := &s.gr[d&1]
	c := &w.cctx.h2
	c.grpcBytes -= r.Buffered()
	if len(chunk) > 0 {
		r.Feed(w.h2.gsc, chunk, g)
	}
	if end && !w.stopped() {
		r.End(g)
	}
	c.grpcBytes += r.Buffered()
	if c.grpcBytes > maxGRPCBuffered && !w.stopped() {
		const reason = "grpc.reassembly_limit"
		w.dropProto(reason, proto.Dir(d))
		w.blockFlow(0, reason)
		return
	}
	w.settle(g.sc, d)
}

// grpcStatus evaluates grpc.status and grpc.message of a response's
// trailers (or trailers-only headers).
func (w *worker) grpcStatus(s *h2Stream, hs []http.Header) {
	code, raw, ok := grpc.Status(hs)
	if !ok {
		return
	}
	g := w.grpcSide(s, flow.ToClient)
	w.single(rules.FieldGRPCStatus, strconv.AppendInt(g.num[:0], int64(code), 10), g.sc, g.d)
	g.msg = grpc.AppendMessage(g.msg[:0], raw)
	if len(g.msg) > maxGRPCMessageText {
		g.msg = g.msg[:maxGRPCMessageText]
	}
	w.single(rules.FieldGRPCMessage, g.msg, g.sc, g.d)
	w.checkScore(g.sc, 1, flow.ToClient)
	w.settle(g.sc, flow.ToClient)
}
