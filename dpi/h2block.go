package dpi

// Per-stream blocking of HTTP/2 (Config.H2Block): a blocking rule that
// decides on one stream resets that stream and lets the connection's
// other streams go on. The inline path forwards or drops whole segments
// and cannot insert bytes without shifting the peers' sequence numbers,
// so the frames that carry the stream in the current segment are
// rewritten in place, same length (http2.ResetStream), the TCP checksum
// recomputed, and the segment forwarded (Verdict.Rewritten). The
// rewrite is remembered by stream offset so that a retransmission of the
// segment, which the reassembler compares with the original bytes, is
// rewritten the same way until the receiver acknowledged it. When the
// frames cannot be rewritten (a frame begun in a segment already
// forwarded, no room, a decision not on the stream's own frame), the
// connection is reset as for HTTP/1.

import (
	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dpi/decode"
	"github.com/deepwall/deepwall/dpi/flow"
	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/dpi/proto/http2"
)

// H2BlockPolicy is what a blocking rule that decides on an HTTP/2 stream
// does to the connection.
type H2BlockPolicy uint8

// Block policies.
const (
	// H2BlockStream resets the stream only (both peers see RST_STREAM),
	// the connection and its other streams go on; when the stream's
	// frames cannot be rewritten, the connection is reset.
	H2BlockStream H2BlockPolicy = iota
	// H2BlockConnection resets the whole connection, as a block on
	// HTTP/1 does.
	H2BlockConnection
)

func (p H2BlockPolicy) String() string {
	if p == H2BlockConnection {
		return "connection"
	}
	return "stream"
}

// ParseH2BlockPolicy parses "stream" or "connection".
func ParseH2BlockPolicy(s string) (H2BlockPolicy, bool) {
	switch s {
	case "stream":
		return H2BlockStream, true
	case "connection":
		return H2BlockConnection, true
	}
	return 0, false
}

// Bounds on the rewrites a connection remembers for retransmissions.
const (
	// maxRewrites bounds the rewritten frame ranges a connection keeps
	// until their receiver acknowledges them; one more blocks the
	// connection instead.
	maxRewrites = 16
	// maxRewriteBytes bounds the bytes of those ranges over the
	// connection.
	maxRewriteBytes = 64 << 10
)

// h2Rewrite is a range of a TCP direction's stream rewritten in place:
// its stream offset and the bytes that replace the original ones.
type h2Rewrite struct {
	dir  flow.Dir
	from int64
	data []byte
}

// noOffset marks the reassembly offset of the bytes being fed as
// unknown.
const noOffset = -1

// blockScope blocks what a blocking rule (ruleID) decided on in scope
// sc: an HTTP/2 stream alone when blockStream can, else the connection.
func (w *worker) blockScope(sc *scope, ruleID uint32) {
	if t := sc.txn; t != nil && t.stream != 0 && w.blockStream(t.stream, ruleID) {
		return
	}
	w.blockFlow(ruleID, "rule")
}

// setFeedBase records, before the HTTP/2 parser is fed chunk bytes of
// direction d whose first byte is at reassembly offset w.feedAt, how the
// parser's offsets map to the reassembler's.
func (w *worker) setFeedBase(c *h2Conn, d flow.Dir) {
	if w.feedAt == noOffset {
		return
	}
	c.base[d] = w.feedAt - c.p.Offset(proto.Dir(d))
	c.baseOK[d] = true
}

// blockStream resets stream id instead of the connection, when the
// policy and the frames allow: the frames of the current segment the
// parser is reading (direction w.h2.feeding) must be the stream's, whole
// in this segment, and rewritable. It reports whether it did.
func (w *worker) blockStream(id uint32, ruleID uint32) bool {
	ctx := w.cctx
	c := &ctx.h2
	// A segment reassembled from IP fragments cannot be rewritten: the
	// fragments go out as they came. The connection is reset instead.
	if w.e.cfg.H2Block != H2BlockStream || id == 0 || !c.on || w.cur.Key.Proto != 6 || w.reassembled {
		return false
	}
	s := c.stream(id)
	if s != nil && s.blocked {
		return true // decided again (its message ended): reset already
	}
	d := w.h2.feeding
	if s == nil || !w.h2.inFeed || d != w.cdir || !c.baseOK[d] || len(c.rw) >= maxRewrites {
		return false
	}
	from, to, sid := c.p.Span(proto.Dir(d))
	if sid != id || to <= from {
		return false
	}
	from, to = from+c.base[d], to+c.base[d]
	pay := w.pkt.Payload // in place in the frame
	seg := w.cst.dir[d].Offset(w.pkt.Seq)
	if w.pkt.TCPFlags&decode.TCPSyn != 0 || from < seg || to > seg+int64(len(pay)) ||
		c.rwBytes+int(to-from) > maxRewriteBytes {
		return false
	}
	data := append([]byte(nil), pay[from-seg:to-seg]...)
	if http2.ResetStream(data, proto.Dir(d)) != nil {
		return false
	}
	c.rw = append(c.rw, h2Rewrite{dir: d, from: from, data: data})
	c.rwBytes += len(data)
	s.blocked = true
	w.st.blocks++
	w.st.h2Resets++
	w.cst.rule = ruleID
	return true
}

// applyRewrites rewrites the current segment of direction d where it
// carries ranges rewritten before (the segment that made the decision,
// or a retransmission of it), fixes its TCP checksum and marks the
// verdict, and forgets the ranges the receiver acknowledged.
func (w *worker) applyRewrites(fr *dataplane.Frame, d flow.Dir) {
	ctx := w.cctx
	if ctx == nil || len(ctx.h2.rw) == 0 {
		return
	}
	c := &ctx.h2
	pay := w.pkt.Payload // in place in fr
	seg := w.cst.dir[d].Offset(w.pkt.Seq)
	acked := [2]int64{w.cst.dir[0].Acked(), w.cst.dir[1].Acked()}
	keep := c.rw[:0]
	for _, r := range c.rw {
		end := r.from + int64(len(r.data))
		if end <= acked[r.dir] {
			c.rwBytes -= len(r.data)
			continue
		}
		keep = append(keep, r)
		if r.dir != d || len(pay) == 0 || end <= seg || r.from >= seg+int64(len(pay)) {
			continue
		}
		if w.reassembled {
			// A retransmission of rewritten bytes sent as IP fragments:
			// they would go out unrewritten, so they do not go out.
			w.dropOnce(dropProtocol, "http2.rewrite_fragmented", fr)
			w.res.drop, w.res.reason = true, "http2.rewrite_fragmented"
			continue
		}
		lo, hi := max(r.from, seg), min(end, seg+int64(len(pay)))
		copy(pay[lo-seg:hi-seg], r.data[lo-r.from:hi-r.from])
		w.res.rewritten = true
	}
	clear(c.rw[len(keep):])
	c.rw = keep
	if w.res.rewritten {
		p := &w.pkt
		dataplane.SetL4Checksum(fr.Data[p.L3Off:], p.IPVersion == 6, p.Proto, fr.Data[p.L4Off:p.PayloadOff+len(p.Payload)])
	}
}
