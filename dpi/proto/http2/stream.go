package http2

// Streams (RFC 9113 5.1): the bounded table of open streams, their ids,
// bodies, resets and ends.

import (
	"encoding/binary"

	"github.com/deepwall/deepwall/dpi/proto"
)

// stream is a tracked stream: index 0 of the arrays is the client's
// side (ToServer), 1 the server's.
type stream struct {
	id  uint32
	seq int64
	// reqHead, respHead: the side's head was delivered (another HEADERS
	// is a trailer section); reqEnd, respEnd: the side ended the stream.
	reqHead, reqEnd, respHead, respEnd bool
	// cl is each side's content-length (-1: none), data its DATA bytes.
	cl    [2]int64
	data  [2]int64
	found [2]proto.KindSet
}

// lookup returns the index of stream id, or -1. The frames of a stream
// tend to follow each other (HEADERS, DATA...), so the last index found
// is tried first.
func (p *Parser) lookup(id uint32) int {
	if h := p.hint; h < len(p.streams) && p.streams[h].id == id {
		return h
	}
	for i := range p.streams {
		if p.streams[i].id == id {
			p.hint = i
			return i
		}
	}
	return -1
}

// open adds stream id; at Limits.MaxStreams it stops the parser.
func (p *Parser) open(d *dirState, id uint32) *stream {
	if len(p.streams) == p.sc.lim.MaxStreams {
		p.fatal(d, nil, proto.HTTP2TooManyStreams)
		return nil
	}
	p.streams = append(p.streams, stream{id: id, seq: p.reqSeq, cl: [2]int64{-1, -1}})
	p.reqSeq++
	return &p.streams[len(p.streams)-1]
}

// closeStream tells the sink that stream i ended and forgets it.
func (p *Parser) closeStream(i int, how End) {
	id := p.streams[i].id
	last := len(p.streams) - 1
	p.streams[i] = p.streams[last]
	p.streams = p.streams[:last]
	p.sink.StreamClosed(id, how)
}

// idle reports whether stream id was never opened: above the last id of
// the side that opens streams of its parity (odd: the client).
func (p *Parser) idle(id uint32) bool {
	opener := proto.ToServer
	if id%2 == 0 {
		opener = proto.ToClient
	}
	return id > p.d[opener].lastStream
}

// unknown handles a frame of dir on a stream that is not tracked: a
// finding if the stream is idle; nothing if it was closed (frames in
// flight after a reset are normal).
func (p *Parser) unknown(d *dirState, id uint32) {
	if p.idle(id) {
		p.report(d, nil, proto.HTTP2StreamState)
	}
}

// dataStart checks the stream of a DATA frame: false drops its content.
func (p *Parser) dataStart(d *dirState) bool {
	i := p.lookup(d.sid)
	if i < 0 {
		p.unknown(d, d.sid)
		return false
	}
	st := &p.streams[i]
	side := d.dir & 1
	head, end := st.reqHead, st.reqEnd
	if side == proto.ToClient {
		head, end = st.respHead, st.respEnd
	}
	if !head || end {
		p.report(d, st, proto.HTTP2StreamState)
		return false
	}
	return true
}

// data passes DATA content to the stream's body. The last chunk of a
// frame with END_STREAM and no padding carries end itself.
func (p *Parser) data(d *dirState, chunk []byte) {
	i := p.lookup(d.sid)
	if i < 0 {
		return
	}
	st := &p.streams[i]
	side := d.dir & 1
	st.data[side] += int64(len(chunk))
	if cl := st.cl[side]; cl >= 0 && st.data[side] > cl {
		p.report(d, st, proto.HTTP2ContentLength)
	}
	if d.content == 0 && d.skip == 0 && d.flags&flagEndStream != 0 {
		d.ended = true
		p.body(d, chunk, true)
		p.sideEnd(d, i)
		return
	}
	if len(chunk) > 0 {
		p.body(d, chunk, false)
	}
}

// dataEnd ends the stream of a DATA frame with END_STREAM whose end was
// not delivered with its content (padding followed, or it was empty).
func (p *Parser) dataEnd(d *dirState) {
	i := p.lookup(d.sid)
	if i < 0 {
		return
	}
	st := &p.streams[i]
	if d.dir == proto.ToServer && (st.reqEnd || !st.reqHead) || d.dir == proto.ToClient && (st.respEnd || !st.respHead) {
		return
	}
	p.body(d, nil, true)
	p.sideEnd(d, i)
}

func (p *Parser) body(d *dirState, chunk []byte, end bool) {
	if d.dir == proto.ToServer {
		p.sink.RequestBody(d.sid, chunk, end)
	} else {
		p.sink.ResponseBody(d.sid, chunk, end)
	}
}

// sideEnd records that d's side ended stream i (its end-true body call
// made), checks content-length, and closes the stream once both sides
// ended.
func (p *Parser) sideEnd(d *dirState, i int) {
	st := &p.streams[i]
	side := d.dir & 1
	if cl := st.cl[side]; cl >= 0 && st.data[side] != cl {
		p.report(d, st, proto.HTTP2ContentLength)
	}
	if side == proto.ToServer {
		st.reqEnd = true
	} else {
		st.respEnd = true
	}
	if st.reqEnd && st.respEnd {
		p.closeStream(i, EndComplete)
	}
}

// rstStream closes a stream; a client reset of a stream whose response
// has not ended counts towards rapid reset.
func (p *Parser) rstStream(d *dirState) {
	i := p.lookup(d.sid)
	if i < 0 {
		p.unknown(d, d.sid)
		return
	}
	how := EndResetByServer
	if d.dir == proto.ToServer {
		how = EndResetByClient
		if !p.streams[i].respEnd {
			p.countReset(d)
		}
	}
	p.closeStream(i, how)
}

// countReset counts a client reset in the rapid-reset window.
func (p *Parser) countReset(d *dirState) {
	if p.now-p.winStart >= int64(p.sc.lim.RapidResetWindow) {
		p.winStart, p.winResets = p.now, 0
	}
	p.winResets++
	if p.winResets > p.sc.lim.MaxRapidResets && p.found.Add(proto.HTTP2RapidReset) {
		p.sink.Finding(0, proto.Finding{Kind: proto.HTTP2RapidReset, Dir: d.dir, Offset: d.start})
	}
}

// newStreamID checks the id of a stream a side opens: its parity, and
// that it is above the side's last one (RFC 9113 5.1.1).
func (p *Parser) newStreamID(d *dirState, id uint32) {
	odd := d.dir == proto.ToServer
	if id%2 == 1 != odd || id <= d.lastStream {
		p.report(d, nil, proto.HTTP2StreamID)
	}
	d.lastStream = max(d.lastStream, id)
}

// requestBlock delivers a client header block: a new stream's request,
// or a trailer section.
func (p *Parser) requestBlock(d *dirState) {
	id := d.blkStream
	i := p.lookup(id)
	if i < 0 {
		// A new stream. One with a misused id is still inspected: a
		// lenient server might serve it.
		p.newStreamID(d, id)
		st := p.open(d, id)
		if st == nil {
			return
		}
		st.reqHead = true
		r := p.request(d, st)
		st.cl[proto.ToServer] = r.ContentLength
		p.sink.RequestHeaders(id, r)
		if d.blkEnd {
			p.sink.RequestBody(id, nil, true)
			p.sideEnd(d, len(p.streams)-1)
		}
		return
	}
	p.trailers(d, i)
}

// trailers delivers a trailer section of stream i, which must end the
// side's stream.
func (p *Parser) trailers(d *dirState, i int) {
	st := &p.streams[i]
	if d.dir == proto.ToServer && st.reqEnd || d.dir == proto.ToClient && st.respEnd {
		p.report(d, st, proto.HTTP2StreamState)
		return
	}
	if !d.blkEnd {
		p.report(d, st, proto.HTTP2MalformedHeaders)
	}
	hs, block := p.trailerFields(d, st)
	p.sink.Trailers(st.id, d.dir, hs, block)
	if d.blkEnd {
		p.body(d, nil, true)
		p.sideEnd(d, i)
	}
}

// responseBlock delivers a server header block: an interim or final
// response head, or a trailer section.
func (p *Parser) responseBlock(d *dirState) {
	id := d.blkStream
	i := p.lookup(id)
	if i < 0 {
		p.unknown(d, id)
		return
	}
	st := &p.streams[i]
	if st.respHead {
		p.trailers(d, i)
		return
	}
	r := p.response(d, st)
	if r.Interim {
		if d.blkEnd {
			p.report(d, st, proto.HTTP2MalformedHeaders)
		}
		p.sink.ResponseHeaders(id, r)
		return
	}
	st.respHead = true
	st.cl[proto.ToClient] = r.ContentLength
	p.sink.ResponseHeaders(id, r)
	if d.blkEnd {
		p.body(d, nil, true)
		p.sideEnd(d, i)
	}
}

// pushPromise delivers a pushed request: the promised stream opens with
// its request complete (RFC 9113 8.4).
func (p *Parser) pushPromise(d *dirState) {
	if p.lookup(d.blkStream) < 0 {
		p.unknown(d, d.blkStream)
	}
	id := d.blkPromise
	if p.lookup(id) >= 0 {
		p.report(d, nil, proto.HTTP2StreamID)
		return
	}
	p.newStreamID(d, id)
	st := p.open(d, id)
	if st == nil {
		return
	}
	st.reqHead, st.reqEnd = true, true
	r := p.request(d, st)
	p.sink.RequestHeaders(id, r)
	p.sink.RequestBody(id, nil, true)
}

// streamBE reads a 31-bit stream id.
func streamBE(b []byte) uint32 { return binary.BigEndian.Uint32(b) & (1<<31 - 1) }
