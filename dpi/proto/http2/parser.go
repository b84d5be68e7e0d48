package http2

// The frame layer (RFC 9113 4, 6): each direction is a state machine over
// the frame header, a fixed prefix (padding length, priority, promised
// stream, a control frame's payload), the content (DATA text, a header
// block fragment, SETTINGS entries) and the bytes skipped (padding, GOAWAY
// debug data, unknown frames).

import (
	"encoding/base64"
	"encoding/binary"

	"golang.org/x/net/http2/hpack"

	"github.com/deepwall/deepwall/dpi/proto"
)

// Frame types (RFC 9113 6).
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	framePriority     = 0x2
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePushPromise  = 0x5
	framePing         = 0x6
	frameGoAway       = 0x7
	frameWindowUpdate = 0x8
	frameContinuation = 0x9
)

// Frame flags.
const (
	flagEndStream  = 0x1
	flagAck        = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20
)

// SETTINGS parameters the parser tracks or checks (RFC 9113 6.5.2).
const (
	settingHeaderTableSize = 0x1
	settingEnablePush      = 0x2
	settingInitialWindow   = 0x4
	settingMaxFrameSize    = 0x5
)

const (
	frameHeaderLen = 9
	// defaultMaxFrame and maxMaxFrame bound SETTINGS_MAX_FRAME_SIZE.
	defaultMaxFrame = 1 << 14
	maxMaxFrame     = 1<<24 - 1
	// defaultTableSize is the HPACK table both sides start with.
	defaultTableSize = 4096
)

// Preface is the client connection preface (RFC 9113 3.4).
const Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// phase is where a direction is in its frame.
type phase uint8

const (
	phPreface phase = iota // matching the client preface
	phHeader               // reading a frame header
	phPrefix               // reading the frame's fixed prefix
	phContent              // passing the frame's content on
	phSkip                 // skipping padding or ignored bytes
	phStopped              // a fatal finding, or Close
)

// settingsVals are the values of one SETTINGS frame the parser applies
// to the other side once it acknowledges them; -1 means absent.
type settingsVals struct{ tableSize, maxFrame int64 }

// dirState is one direction's position and connection state.
type dirState struct {
	dir    proto.Dir
	phase  phase
	offset int64 // stream offset of the next byte fed
	closed bool
	first  bool // no frame read yet: it must be SETTINGS

	hdr     [frameHeaderLen]byte
	hn      int
	typ     uint8
	flags   uint8
	sid     uint32
	length  int
	start   int64 // stream offset of the frame
	end     int64 // stream offset just past the frame
	pre     [8]byte
	pn      int
	preNeed int
	content int // content bytes left
	skip    int // bytes to skip after the content
	// ended: a DATA frame's END_STREAM was delivered with its last chunk.
	ended bool
	// set and sn hold a SETTINGS entry cut by a chunk boundary.
	set      [6]byte
	sn       int
	settings settingsVals // the SETTINGS frame being read

	// The header block being read: its stream, what it opens, its
	// CONTINUATION frames and encoded bytes so far. blk holds the
	// fragments when the block spans frames or chunks; direct is the
	// whole block in place in the input otherwise.
	inBlock    bool
	blkStream  uint32
	blkPromise uint32 // PUSH_PROMISE: the promised stream
	blkEnd     bool   // the HEADERS frame had END_STREAM
	blkStart   int64
	blkConts   int
	blkLen     int
	blk        []byte
	direct     []byte

	// maxFrame is the largest frame this side may send: the other
	// side's SETTINGS_MAX_FRAME_SIZE.
	maxFrame uint32
	// pending are this side's SETTINGS awaiting the other side's ACK.
	pending        [maxPendingSettings]settingsVals
	pHead, pLen    int
	unackedPings   int
	lastStream     uint32 // highest stream id this side opened
	dec            *hpack.Decoder
	found          proto.KindSet // connection-level findings reported
	decTableAllows uint32        // the dynamic table size dec allows
}

// Parser parses one HTTP/2 connection in both directions. Create it with
// NewParser (or Reset) and, when the connection was upgraded from
// HTTP/1.1, call Upgrade before the first Feed.
//
// A Parser keeps per-connection state only: the two HPACK decoders and
// their tables (at most Limits.MaxTableSize each), a header block that
// spans chunks (at most Limits.MaxHeaderBlock per direction, allocated on
// first need and kept across Reset), and up to Limits.MaxStreams streams.
type Parser struct {
	sink    Sink
	sc      *Scratch
	d       [2]dirState
	stopped bool
	streams []stream
	hint    int // index of the stream found last (lookup)
	reqSeq  int64
	found   proto.KindSet // connection-wide findings (rapid reset)
	// The rapid-reset window: start (SetTime's clock) and resets in it.
	now       int64
	winStart  int64
	winResets int
}

// NewParser returns a parser that reports to sink and parses into sc.
func NewParser(sink Sink, sc *Scratch) *Parser {
	p := &Parser{}
	p.Reset(sink, sc)
	return p
}

// Reset readies p for a new prior-knowledge connection, keeping its
// buffers and decoders.
func (p *Parser) Reset(sink Sink, sc *Scratch) {
	blk0, blk1 := p.d[0].blk[:0], p.d[1].blk[:0]
	dec0, dec1 := p.d[0].dec, p.d[1].dec
	streams := p.streams[:0]
	if cap(streams) > sc.lim.MaxStreams {
		streams = nil
	}
	*p = Parser{sink: sink, sc: sc, streams: streams}
	for i, dec := range [2]*hpack.Decoder{dec0, dec1} {
		if dec == nil {
			dec = hpack.NewDecoder(defaultTableSize, p.emit)
		} else {
			// Empty the table: shrinking it evicts every entry.
			dec.SetMaxDynamicTableSize(0)
			dec.SetMaxDynamicTableSize(defaultTableSize)
			// Drop a partial field left by the previous connection
			// (p.emit, bound to p, stays right).
			dec.Close()
			dec.Close()
		}
		dec.SetAllowedMaxDynamicTableSize(defaultTableSize)
		dec.SetMaxStringLength(sc.lim.MaxHeaderListSize)
		d := &p.d[i]
		d.dir = proto.Dir(i)
		d.dec = dec
		d.decTableAllows = defaultTableSize
		d.maxFrame = defaultMaxFrame
		d.first = true
		d.phase = phHeader
	}
	p.d[0].blk, p.d[1].blk = blk0, blk1
	p.d[proto.ToServer].phase = phPreface
}

// Upgrade starts p after an HTTP/1.1 request with "Upgrade: h2c" got its
// 101 response (RFC 7540 3.2): the client's request became stream 1,
// half-closed by the client, whose response comes in HTTP/2; the client
// direction still begins with the preface, the server's with SETTINGS.
// settings is the request's HTTP2-Settings value (base64url), applied as
// the client's acknowledged SETTINGS. Call it after NewParser or Reset,
// before Feed. It returns false if settings does not decode (the
// defaults stay in force).
func (p *Parser) Upgrade(settings []byte) bool {
	p.streams = append(p.streams, stream{id: 1, seq: 0, reqHead: true, reqEnd: true, cl: [2]int64{-1, -1}})
	p.reqSeq = 1
	p.d[proto.ToServer].lastStream = 1
	// A client sends a few settings; maxUpgradeSettings bounds what is
	// decoded (base64 makes 4 characters of 3 bytes).
	var buf [maxUpgradeSettings]byte
	settings = trimPad(settings)
	if len(settings) > len(buf)/3*4 {
		return false
	}
	n, err := base64.RawURLEncoding.Decode(buf[:], settings)
	if err != nil || n%6 != 0 {
		return false
	}
	server := &p.d[proto.ToClient]
	for b := buf[:n]; len(b) >= 6; b = b[6:] {
		id, v := binary.BigEndian.Uint16(b), binary.BigEndian.Uint32(b[2:])
		switch id {
		case settingHeaderTableSize:
			p.allowTable(server, int64(v))
		case settingMaxFrameSize:
			if v >= defaultMaxFrame && v <= maxMaxFrame {
				server.maxFrame = v
			}
		}
	}
	return true
}

// maxUpgradeSettings bounds the decoded HTTP2-Settings value: 42
// settings, more than RFC 9113 defines.
const maxUpgradeSettings = 252

// trimPad drops base64 padding, which some clients send.
func trimPad(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == '=' {
		b = b[:len(b)-1]
	}
	return b
}

// SetTime tells p the time of the bytes fed next (nanoseconds on any
// clock that does not go back, such as the packet timestamps): the
// rapid-reset window runs on it. Without it every reset counts in one
// window.
func (p *Parser) SetTime(ns int64) { p.now = ns }

// Offset is the stream offset of the next byte Feed takes in direction
// dir: offset 0 is the first byte fed (after an h2c upgrade, the first
// byte after the switch).
func (p *Parser) Offset(dir proto.Dir) int64 { return p.d[dir&1].offset }

// Span is, during a Sink call for a stream's frames, the stream offsets
// [from, to) of the frames of direction dir it comes from: a header
// block's HEADERS and CONTINUATION frames, or the DATA frame, padding
// included (ResetStream rewrites exactly those), and the stream they
// belong to.
func (p *Parser) Span(dir proto.Dir) (from, to int64, sid uint32) {
	d := &p.d[dir&1]
	return d.start, d.end, d.sid
}

// Stopped reports whether a fatal finding stopped the parser.
func (p *Parser) Stopped() bool { return p.stopped }

// Feed parses the next in-order chunk of direction dir (ToServer: the
// client's frames) and returns how many bytes it consumed: len(b), or
// fewer once the parser stopped. Sink calls happen during Feed; Feed must
// not be called from a Sink.
func (p *Parser) Feed(dir proto.Dir, b []byte) int {
	d := &p.d[dir&1]
	total := len(b)
	for len(b) > 0 && !p.stopped {
		var n int
		switch d.phase {
		case phPreface:
			n = p.preface(d, b)
		case phHeader:
			n = p.frameHeader(d, b)
		case phPrefix:
			n = copy(d.pre[d.pn:d.preNeed], b)
			d.pn += n
			if d.pn == d.preNeed {
				p.afterPrefix(d)
			}
		case phContent:
			n = p.content(d, b)
		case phSkip:
			n = min(d.skip, len(b))
			d.skip -= n
			if d.skip == 0 {
				p.frameEnd(d)
			}
		default:
			return total - len(b)
		}
		b = b[n:]
		d.offset += int64(n)
	}
	return total - len(b)
}

// Close tells p that direction dir ended (FIN or RST). A frame or header
// block cut short is http2.truncated; once both directions ended, the
// streams left get StreamClosed(EndConnection).
func (p *Parser) Close(dir proto.Dir) {
	d := &p.d[dir&1]
	if d.closed {
		return
	}
	d.closed = true
	if p.stopped {
		return
	}
	if d.phase == phPreface && d.offset > 0 || d.phase > phHeader && d.phase < phStopped || d.hn > 0 || d.inBlock {
		p.report(d, nil, proto.HTTP2Truncated)
	}
	d.phase = phStopped
	if p.d[0].closed && p.d[1].closed {
		for len(p.streams) > 0 {
			p.closeStream(len(p.streams)-1, EndConnection)
		}
	}
}

// preface matches the client connection preface.
func (p *Parser) preface(d *dirState, b []byte) int {
	at := int(d.offset)
	n := min(len(Preface)-at, len(b))
	if string(b[:n]) != Preface[at:at+n] {
		d.start = 0
		p.fatal(d, nil, proto.HTTP2InvalidPreface)
		return 0
	}
	if at+n == len(Preface) {
		d.phase = phHeader
	}
	return n
}

// frameHeader reads a frame header and starts the frame.
func (p *Parser) frameHeader(d *dirState, b []byte) int {
	if d.hn == 0 {
		d.start = d.offset
		if len(b) >= frameHeaderLen {
			p.begin(d, b[:frameHeaderLen])
			return frameHeaderLen
		}
	}
	n := min(frameHeaderLen-d.hn, len(b))
	copy(d.hdr[d.hn:], b[:n])
	d.hn += n
	if d.hn == frameHeaderLen {
		d.hn = 0
		p.begin(d, d.hdr[:])
	}
	return n
}

// begin checks a frame header and sets up the frame's prefix, content
// and skip.
func (p *Parser) begin(d *dirState, h []byte) {
	d.length = int(h[0])<<16 | int(h[1])<<8 | int(h[2])
	d.typ, d.flags = h[3], h[4]
	d.sid = streamBE(h[5:])
	d.end = d.start + frameHeaderLen + int64(d.length)
	d.pn, d.preNeed, d.content, d.skip, d.ended = 0, 0, 0, 0, false
	if d.first {
		d.first = false
		if d.typ != frameSettings || d.flags&flagAck != 0 {
			p.fatal(d, nil, proto.HTTP2InvalidPreface)
			return
		}
	}
	if d.length > int(d.maxFrame) {
		p.report(d, nil, proto.HTTP2FrameTooLarge)
	}
	if d.inBlock != (d.typ == frameContinuation) || d.inBlock && d.sid != d.blkStream {
		// A header block must be followed by its CONTINUATION frames
		// and nothing else (RFC 9113 6.10).
		p.fatal(d, nil, proto.HTTP2MalformedFrame)
		return
	}
	padded := d.flags&flagPadded != 0
	ok := true
	switch d.typ {
	case frameData:
		ok = d.sid != 0
		if padded {
			d.preNeed = 1
		}
	case frameHeaders:
		ok = d.sid != 0
		if padded {
			d.preNeed = 1
		}
		if d.flags&flagPriority != 0 {
			d.preNeed += 5
		}
	case framePushPromise:
		ok = d.sid != 0 && d.dir == proto.ToClient
		d.preNeed = 4
		if padded {
			d.preNeed = 5
		}
	case frameContinuation:
		ok = d.sid != 0
	case framePriority:
		ok, d.preNeed = d.sid != 0 && d.length == 5, 5
	case frameRSTStream:
		ok, d.preNeed = d.sid != 0 && d.length == 4, 4
	case frameWindowUpdate:
		ok, d.preNeed = d.length == 4, 4
	case framePing:
		ok, d.preNeed = d.sid == 0 && d.length == 8, 8
	case frameGoAway:
		ok, d.preNeed = d.sid == 0 && d.length >= 8, 8
	case frameSettings:
		ok = d.sid == 0 && d.length%6 == 0 && (d.flags&flagAck == 0 || d.length == 0)
		d.settings = settingsVals{-1, -1}
		d.sn = 0
	}
	if !ok || d.preNeed > d.length {
		p.fatal(d, nil, proto.HTTP2MalformedFrame)
		return
	}
	if d.typ == frameContinuation {
		d.blkConts++
		if d.blkConts > p.sc.lim.MaxContinuations {
			p.fatal(d, nil, proto.HTTP2ContinuationFlood)
			return
		}
	}
	if d.preNeed > 0 {
		d.phase = phPrefix
		return
	}
	p.afterPrefix(d)
}

// afterPrefix acts on a frame's prefix and sets its content and skip.
func (p *Parser) afterPrefix(d *dirState) {
	rest := d.length - d.preNeed
	switch d.typ {
	case frameData, frameHeaders, framePushPromise:
		if d.flags&flagPadded != 0 {
			pad := int(d.pre[0])
			if pad > rest {
				p.fatal(d, nil, proto.HTTP2MalformedFrame)
				return
			}
			rest -= pad
			d.skip = pad
		}
		d.content = rest
		switch d.typ {
		case frameData:
			if !p.dataStart(d) {
				d.skip += d.content
				d.content = 0
			}
		case frameHeaders:
			p.startBlock(d, 0)
		case framePushPromise:
			at := d.preNeed - 4
			p.startBlock(d, streamBE(d.pre[at:]))
		}
	case frameContinuation, frameSettings:
		d.content = rest
	case frameGoAway:
		d.skip = rest
	default:
		d.skip = rest
	}
	if p.stopped {
		return
	}
	if isBlockFrame(d.typ) {
		if d.blkLen+d.content > p.sc.lim.MaxHeaderBlock {
			k := proto.HTTP2HeaderListTooLarge
			if d.typ == frameContinuation {
				k = proto.HTTP2ContinuationFlood
			}
			p.fatal(d, nil, k)
			return
		}
		d.blkLen += d.content
		if d.content == 0 {
			p.fragmentEnd(d)
		}
	}
	p.next(d)
}

func isBlockFrame(t uint8) bool {
	return t == frameHeaders || t == framePushPromise || t == frameContinuation
}

// next moves to the frame's next part, or ends it.
func (p *Parser) next(d *dirState) {
	switch {
	case p.stopped:
	case d.content > 0:
		d.phase = phContent
	case d.skip > 0:
		d.phase = phSkip
	default:
		p.frameEnd(d)
	}
}

// content passes a frame's content on.
func (p *Parser) content(d *dirState, b []byte) int {
	n := min(d.content, len(b))
	chunk := b[:n]
	d.content -= n
	switch d.typ {
	case frameData:
		p.data(d, chunk)
	case frameSettings:
		p.settingsBytes(d, chunk)
	default:
		// A header block fragment: decoded in place when it is the
		// whole block, else gathered (afterPrefix bounded it).
		if d.content == 0 && len(d.blk) == 0 && d.flags&flagEndHeaders != 0 {
			d.direct = chunk
		} else {
			if cap(d.blk) == 0 {
				d.blk = make([]byte, 0, min(p.sc.lim.MaxHeaderBlock, max(4096, d.length)))
			}
			d.blk = append(d.blk, chunk...)
		}
		if d.content == 0 {
			p.fragmentEnd(d)
		}
	}
	if d.content == 0 && !p.stopped {
		if d.skip > 0 {
			d.phase = phSkip
		} else {
			p.frameEnd(d)
		}
	}
	return n
}

// fragmentEnd: a header block fragment is complete; with END_HEADERS the
// block is, and is decoded now (direct points into this Feed's input).
func (p *Parser) fragmentEnd(d *dirState) {
	if d.flags&flagEndHeaders != 0 {
		p.endBlock(d)
	}
}

// frameEnd acts on a complete frame.
func (p *Parser) frameEnd(d *dirState) {
	d.phase = phHeader
	switch d.typ {
	case frameData:
		if d.flags&flagEndStream != 0 && !d.ended {
			p.dataEnd(d)
		}
	case frameRSTStream:
		p.rstStream(d)
	case frameWindowUpdate:
		if d.sid != 0 && p.idle(d.sid) {
			p.report(d, nil, proto.HTTP2StreamState)
		}
	case framePing:
		p.ping(d)
	case frameSettings:
		p.settingsEnd(d)
	}
}

// startBlock opens a header block (HEADERS or PUSH_PROMISE).
func (p *Parser) startBlock(d *dirState, promise uint32) {
	d.inBlock = true
	d.blkStream, d.blkPromise = d.sid, promise
	d.blkEnd = d.typ == frameHeaders && d.flags&flagEndStream != 0
	d.blkStart = d.start
	d.blkConts, d.blkLen = 0, 0
	d.blk, d.direct = d.blk[:0], nil
}

// endBlock decodes a complete header block and delivers it.
func (p *Parser) endBlock(d *dirState) {
	block := d.direct
	if block == nil {
		block = d.blk
	}
	d.inBlock = false
	ok := p.decode(d, block)
	d.direct, d.blk = nil, d.blk[:0]
	if !ok {
		return
	}
	start := d.start
	d.start = d.blkStart
	switch {
	case d.blkPromise != 0:
		p.pushPromise(d)
	case d.dir == proto.ToServer:
		p.requestBlock(d)
	default:
		p.responseBlock(d)
	}
	d.start = start
}

// decode runs a header block through the direction's HPACK decoder into
// the Scratch. Any error is fatal: the decoder's table may be out of step
// with the encoder's from here on.
func (p *Parser) decode(d *dirState, block []byte) bool {
	sc := p.sc
	sc.decoded, sc.size, sc.over = sc.decoded[:0], 0, false
	var err error
	if len(block) > 0 {
		_, err = d.dec.Write(block)
	}
	if cerr := d.dec.Close(); err == nil {
		err = cerr
	}
	bomb := sc.size > hpackBombFloor && sc.size > len(block)*sc.lim.MaxHPACKRatio
	switch {
	case bomb:
		p.fatal(d, nil, proto.HTTP2HPACKBomb)
	case sc.over || err == hpack.ErrStringLength:
		p.fatal(d, nil, proto.HTTP2HeaderListTooLarge)
	case err != nil:
		p.fatal(d, nil, proto.HTTP2HPACKError)
	default:
		return true
	}
	return false
}

// emit is the HPACK decoders' callback: it appends a field to the
// Scratch's list within the list bounds (the strings are not copied).
func (p *Parser) emit(f hpack.HeaderField) {
	sc := p.sc
	sc.size += len(f.Name) + len(f.Value) + 32
	if sc.over {
		return
	}
	if sc.size > sc.lim.MaxHeaderListSize || len(sc.decoded) == sc.lim.MaxHeaderCount {
		// Keep decoding, for the bomb ratio, without keeping fields.
		sc.over = true
		return
	}
	sc.decoded = append(sc.decoded, f)
}

// settingsBytes reads SETTINGS entries, which may be cut anywhere.
func (p *Parser) settingsBytes(d *dirState, b []byte) {
	for len(b) > 0 && !p.stopped {
		if d.sn == 0 && len(b) >= 6 {
			p.setting(d, b[:6])
			b = b[6:]
			continue
		}
		n := copy(d.set[d.sn:], b)
		d.sn += n
		b = b[n:]
		if d.sn == 6 {
			d.sn = 0
			p.setting(d, d.set[:])
		}
	}
}

// setting checks one SETTINGS entry and keeps the values tracked.
func (p *Parser) setting(d *dirState, e []byte) {
	id, v := binary.BigEndian.Uint16(e), binary.BigEndian.Uint32(e[2:])
	switch id {
	case settingHeaderTableSize:
		d.settings.tableSize = int64(v)
	case settingMaxFrameSize:
		if v < defaultMaxFrame || v > maxMaxFrame {
			p.fatal(d, nil, proto.HTTP2MalformedFrame)
		}
		d.settings.maxFrame = int64(v)
	case settingEnablePush:
		if v > 1 {
			p.fatal(d, nil, proto.HTTP2MalformedFrame)
		}
	case settingInitialWindow:
		if v > 1<<31-1 {
			p.fatal(d, nil, proto.HTTP2MalformedFrame)
		}
	}
}

// settingsEnd queues a SETTINGS frame's values until the other side
// acknowledges them, or applies the values an ACK acknowledges. An
// increase is allowed at once: the other side may use it as soon as it
// read the frame, before its ACK.
func (p *Parser) settingsEnd(d *dirState) {
	o := &p.d[d.dir^1]
	if d.flags&flagAck != 0 {
		// d acknowledges o's oldest SETTINGS: from here d's encoder and
		// frames follow its values.
		if o.pLen == 0 {
			return
		}
		v := o.pending[o.pHead]
		o.pHead = (o.pHead + 1) % maxPendingSettings
		o.pLen--
		if v.tableSize >= 0 {
			p.allowTable(d, v.tableSize)
		}
		if v.maxFrame >= 0 {
			d.maxFrame = uint32(v.maxFrame)
		}
		return
	}
	v := d.settings
	if v.tableSize > int64(o.decTableAllows) {
		p.allowTable(o, v.tableSize)
	}
	if v.maxFrame > int64(o.maxFrame) {
		o.maxFrame = uint32(v.maxFrame)
	}
	if d.pLen == p.sc.lim.MaxUnackedSettings {
		p.report(d, nil, proto.HTTP2SettingsFlood)
		// Fold into the newest: the ACKs to come apply the latest
		// values no later than the peer could.
		last := &d.pending[(d.pHead+d.pLen-1)%maxPendingSettings]
		if v.tableSize >= 0 {
			last.tableSize = v.tableSize
		}
		if v.maxFrame >= 0 {
			last.maxFrame = v.maxFrame
		}
		return
	}
	d.pending[(d.pHead+d.pLen)%maxPendingSettings] = v
	d.pLen++
}

// allowTable sets the dynamic table size d's encoder may use, within
// Limits.MaxTableSize.
func (p *Parser) allowTable(d *dirState, size int64) {
	v := uint32(min(size, int64(p.sc.lim.MaxTableSize)))
	d.decTableAllows = v
	d.dec.SetAllowedMaxDynamicTableSize(v)
}

// ping counts PINGs awaiting their ACK.
func (p *Parser) ping(d *dirState) {
	if d.flags&flagAck != 0 {
		if o := &p.d[d.dir^1]; o.unackedPings > 0 {
			o.unackedPings--
		}
		return
	}
	d.unackedPings++
	if d.unackedPings > p.sc.lim.MaxUnackedPings {
		p.report(d, nil, proto.HTTP2PingFlood)
	}
}

// report sends a non-fatal finding, once per kind per stream (st) or per
// direction of the connection (st nil).
func (p *Parser) report(d *dirState, st *stream, k proto.FindingKind) {
	if p.stopped {
		return
	}
	set, id := &d.found, uint32(0)
	if st != nil {
		set, id = &st.found[d.dir], st.id
	}
	if set.Add(k) {
		p.sink.Finding(id, proto.Finding{Kind: k, Dir: d.dir, Offset: d.start})
	}
}

// fatal sends a fatal finding and stops the parser.
func (p *Parser) fatal(d *dirState, st *stream, k proto.FindingKind) {
	if p.stopped {
		return
	}
	var id uint32
	if st != nil {
		id = st.id
	}
	p.sink.Finding(id, proto.Finding{Kind: k, Dir: d.dir, Fatal: true, Offset: d.start})
	p.stopped = true
	p.d[0].phase, p.d[1].phase = phStopped, phStopped
}
