package http

import (
	"bytes"
	"math/bits"

	"github.com/deepwall/deepwall/dpi/proto"
)

// State says what a direction of a connection carries.
type State uint8

const (
	// StateHTTP: the direction is parsed as HTTP/1.x.
	StateHTTP State = iota
	// StateTunnel: the direction switched protocols (a CONNECT answered
	// 2xx, or 101 Switching Protocols). Feed consumed what was HTTP; the
	// rest of the direction is another protocol, for the engine to
	// identify again or to pass through.
	StateTunnel
	// StateStopped: a fatal finding stopped the connection's parser.
	StateStopped
)

// String returns "http", "tunnel" or "stopped".
func (s State) String() string {
	switch s {
	case StateHTTP:
		return "http"
	case StateTunnel:
		return "tunnel"
	}
	return "stopped"
}

// phase is where a direction is in its current message.
type phase uint8

const (
	phStart        phase = iota // between messages: skipping empty lines
	phHead                      // in the header block
	phBody                      // Content-Length body: remaining bytes left
	phChunkSize                 // reading chunk-size hex digits
	phChunkExt                  // chunk extensions, up to the LF
	phChunkLF                   // saw the CR ending the size line
	phChunkData                 // remaining bytes of chunk data left
	phChunkDataCR               // the CR after chunk data
	phChunkDataLF               // the LF after chunk data
	phTrailerStart              // start of a trailer line, or the final empty line
	phTrailerName               // in a trailer field name
	phTrailerValue              // in a trailer field value
	phTrailerLF                 // saw the CR of the final empty line
	phUntilClose                // response body delimited by the connection's end
	phAwaitConnect              // request side: CONNECT sent, no response yet
	phTunnel                    // the direction is not HTTP any more
	phStopped                   // fatal finding, or the direction ended
)

// reqKind is what the response side needs to know of a pending request.
type reqKind uint8

const (
	reqOther reqKind = iota
	reqHead
	reqConnect
)

// dirState is one direction's position in its stream.
type dirState struct {
	phase    phase
	dir      proto.Dir
	head     []byte // header block being accumulated across chunks
	scan     int    // terminator search resumes here in head
	checked  int    // start-line bytes of head already validated
	offset   int64  // stream offset of the next byte fed
	msgStart int64  // stream offset of the current message
	// remaining is the Content-Length body or chunk data left, or the
	// chunk size being read.
	remaining int64
	digits    int  // hex digits of the chunk size read
	lineLen   int  // bytes of the current chunk-size line
	extSemi   bool // a ';' was seen in the chunk extensions
	lastCR    bool // the previous byte of a scanned line was CR
	trailer   int  // bytes of the trailer section read
	empties   int  // empty-line bytes before the current message
	// lineOK: the start line is complete and passed checkStart;
	// pastMethod: checkStart is past the method (or "HTTP/").
	lineOK, pastMethod bool
	found              proto.KindSet
	// dec decodes the current body's content coding, nil when it has
	// none (decode.go).
	dec *bodyDecoder
}

// Scratch holds the buffers a parser fills for each message head. Message
// data passed to a Sink lives here only until the callback returns, so one
// Scratch serves every connection of a worker (the callbacks of one worker
// never overlap). It also carries the limits. Not safe for concurrent use.
type Scratch struct {
	lim     Limits
	req     Request
	resp    Response
	norm    []byte
	headers []Header
	path    []byte
	args    []byte
	argList []Arg
	uriSet  proto.KindSet
	// decMem is the decoder memory reserved by the connections of this
	// Scratch (Limits.MaxDecoderMemory).
	decMem int
}

// NewScratch returns buffers for parsers with limits lim (zero fields take
// the defaults).
func NewScratch(lim Limits) *Scratch {
	lim = lim.withDefaults()
	return &Scratch{
		lim:     lim,
		headers: make([]Header, 0, lim.MaxHeaderCount),
		argList: make([]Arg, 0, lim.MaxArgs),
	}
}

// Limits returns the limits in force.
func (sc *Scratch) Limits() Limits { return sc.lim }

// Parser parses one connection's HTTP/1.x traffic in both directions. The
// connection's client-to-server bytes are requests, server-to-client bytes
// responses; responses are matched to requests in order (pipelining).
//
// A Parser keeps per-connection state only: the phase of each direction,
// a header block that spans chunks (at most Limits.MaxHeaderBytes per
// direction, allocated on first need and kept across Reset), and the
// methods of up to MaxPipelined pending requests.
type Parser struct {
	sink    Sink
	sc      *Scratch
	d       [2]dirState
	stopped bool
	pending [MaxPipelined]reqKind
	pHead   int
	pLen    int
	reqSeq  int64
}

// NewParser returns a parser that reports to sink and parses into sc.
func NewParser(sink Sink, sc *Scratch) *Parser {
	p := &Parser{}
	p.Reset(sink, sc)
	return p
}

// Reset readies p for a new connection, keeping its buffers.
func (p *Parser) Reset(sink Sink, sc *Scratch) {
	p.Release()
	h0, h1 := p.d[0].head[:0], p.d[1].head[:0]
	*p = Parser{sink: sink, sc: sc}
	p.d[0] = dirState{dir: proto.ToServer, head: h0}
	p.d[1] = dirState{dir: proto.ToClient, head: h1}
}

// State returns what direction dir carries now.
func (p *Parser) State(dir proto.Dir) State {
	switch {
	case p.stopped:
		return StateStopped
	case p.d[dir&1].phase == phTunnel:
		return StateTunnel
	}
	return StateHTTP
}

// Feed parses the next in-order chunk of direction dir (ToServer:
// requests, ToClient: responses) and returns how many bytes were HTTP.
// Fewer than len(b) means the direction left HTTP in this chunk: see
// State (a tunnel starts at b[n], or the parser stopped). Sink calls
// happen during Feed; Feed must not be called from a Sink.
func (p *Parser) Feed(dir proto.Dir, b []byte) int {
	d := &p.d[dir&1]
	total := len(b)
	for len(b) > 0 && !p.stopped {
		var n int
		switch d.phase {
		case phStart:
			n = p.start(d, b)
		case phHead:
			n = p.head(d, b)
		case phBody:
			n = int(min(d.remaining, int64(len(b))))
			d.remaining -= int64(n)
			end := d.remaining == 0
			p.body(d, b[:n], end)
			if end {
				d.phase = phStart
			}
		case phUntilClose:
			n = len(b)
			p.body(d, b, false)
		case phAwaitConnect:
			// Bytes before the CONNECT response: an optimistic client
			// already talks through the tunnel.
			d.phase = phTunnel
		case phTunnel, phStopped:
			return total - len(b)
		default:
			n = p.chunked(d, b)
		}
		b = b[n:]
		d.offset += int64(n)
	}
	return total - len(b)
}

// Close tells p that direction dir ended (FIN or RST). A response
// delimited by the connection's end completes; a message cut short is
// reported as HTTPTruncated.
func (p *Parser) Close(dir proto.Dir) {
	d := &p.d[dir&1]
	if p.stopped {
		p.releaseDecoder(d)
		return
	}
	switch d.phase {
	case phUntilClose:
		p.body(d, nil, true)
	case phStart, phTunnel, phStopped, phAwaitConnect:
	default:
		p.report(d, proto.HTTPTruncated)
	}
	p.releaseDecoder(d)
	if d.phase != phTunnel {
		d.phase = phStopped
	}
}

// report sends a non-fatal finding, once per kind per message.
func (p *Parser) report(d *dirState, k proto.FindingKind) {
	if d.found.Add(k) {
		p.sink.Finding(proto.Finding{Kind: k, Dir: d.dir, Offset: d.msgStart})
	}
}

// reportSet reports every kind in s.
func (p *Parser) reportSet(d *dirState, s *proto.KindSet) {
	for w, word := range s {
		for word != 0 {
			k := proto.FindingKind(w*64 + bits.TrailingZeros64(word))
			word &= word - 1
			p.report(d, k)
		}
	}
}

// fatal sends a fatal finding and stops the connection's parser.
func (p *Parser) fatal(d *dirState, k proto.FindingKind) {
	d.found.Add(k)
	p.sink.Finding(proto.Finding{Kind: k, Dir: d.dir, Fatal: true, Offset: d.msgStart})
	p.stopped = true
	p.d[0].phase, p.d[1].phase = phStopped, phStopped
}

// body passes a chunk of the current message's body on, through its
// content decoder when it has one.
func (p *Parser) body(d *dirState, chunk []byte, end bool) {
	if d.dec != nil {
		p.decode(d, chunk, end)
		return
	}
	p.sinkBody(d, chunk, end)
}

// sinkBody hands body text to the Sink.
func (p *Parser) sinkBody(d *dirState, chunk []byte, end bool) {
	if d.dir == proto.ToServer {
		p.sink.RequestBody(chunk, end)
	} else {
		p.sink.ResponseBody(chunk, end)
	}
}

// maxEmptyBytes is how many CR/LF bytes may precede a message before it is
// a finding: RFC 9112 2.2 asks servers to ignore at least one empty line.
const maxEmptyBytes = 2

// start skips empty lines before a message, as servers do (RFC 9112 2.2),
// up to proto.MaxEmptyLineBytes: a longer run stops the parser, since a
// server that skips any number would act on a request that could be
// pushed past what the engine holds for identification.
func (p *Parser) start(d *dirState, b []byte) int {
	i := 0
	for i < len(b) && (b[i] == '\r' || b[i] == '\n') {
		i++
	}
	d.empties += i
	if d.empties > proto.MaxEmptyLineBytes {
		d.msgStart = d.offset
		p.fatal(d, proto.HTTPTooManyEmptyLines)
		return i
	}
	if i == len(b) {
		return i
	}
	d.found.Clear()
	d.msgStart = d.offset + int64(i)
	if d.empties > maxEmptyBytes {
		p.report(d, proto.HTTPLeadingEmptyLines)
	}
	d.empties = 0
	d.phase = phHead
	d.head = d.head[:0]
	d.scan, d.checked = 0, 0
	d.lineOK, d.pastMethod = false, false
	return i
}

// findEnd looks for the empty line that ends a header block, from offset
// from. It returns the offset just past it, or -1 and where to resume.
func findEnd(b []byte, from int) (end, resume int) {
	for i := from; i < len(b); {
		lf := bytes.IndexByte(b[i:], '\n')
		if lf < 0 {
			return -1, len(b)
		}
		i += lf
		switch {
		case i+1 == len(b):
			return -1, i
		case b[i+1] == '\n':
			return i + 2, 0
		case b[i+1] == '\r':
			if i+2 == len(b) {
				return -1, i
			}
			if b[i+2] == '\n' {
				return i + 3, 0
			}
		}
		i++
	}
	return -1, len(b)
}

// head accumulates a header block until its end and parses it.
func (p *Parser) head(d *dirState, b []byte) int {
	lim := p.sc.lim.MaxHeaderBytes
	if len(d.head) == 0 {
		// Fast path: the whole block is in b, parse it in place.
		end, resume := findEnd(b[:min(len(b), lim)], 0)
		if end > 0 {
			p.complete(d, b[:end])
			return end
		}
		if !p.checkStart(d, b[:min(len(b), lim)]) {
			return 0
		}
		if len(b) >= lim {
			p.fatal(d, proto.HTTPHeadersTooLarge)
			return 0
		}
		if cap(d.head) == 0 {
			d.head = make([]byte, 0, min(lim, max(4096, 2*len(b))))
		}
		d.head = append(d.head, b...)
		d.scan = resume
		return len(b)
	}
	old := len(d.head)
	take := min(len(b), lim-old)
	d.head = append(d.head, b[:take]...)
	end, resume := findEnd(d.head, d.scan)
	if end > 0 {
		p.complete(d, d.head[:end])
		d.head = d.head[:0]
		return end - old
	}
	if !p.checkStart(d, d.head) {
		return 0
	}
	if len(d.head) >= lim {
		p.fatal(d, proto.HTTPHeadersTooLarge)
		return 0
	}
	d.scan = resume
	return take
}

// checkStart validates what is there of a start line, so that garbage
// and over-long lines stop the parser without waiting for a whole header
// block. It resumes where the previous call stopped, so byte-sized chunks
// cost linear time. complete applies the same checks first, so the
// findings do not depend on chunking.
func (p *Parser) checkStart(d *dirState, b []byte) bool {
	if d.lineOK {
		return true
	}
	lim := p.sc.lim.MaxRequestLine
	i := d.checked
	for ; i < len(b) && !d.pastMethod; i++ {
		c := b[i]
		if i >= lim {
			p.fatal(d, proto.HTTPRequestLineTooLong)
			return false
		}
		if c == '\n' {
			d.lineOK = true
			return true
		}
		if k := startByteError(d, i, c); k != proto.FindingNone {
			p.fatal(d, k)
			return false
		}
	}
	if i < len(b) {
		if lf := bytes.IndexByte(b[i:], '\n'); lf >= 0 {
			if i+lf >= lim {
				p.fatal(d, proto.HTTPRequestLineTooLong)
				return false
			}
			d.lineOK = true
			return true
		}
		i = len(b)
	}
	if i >= lim {
		p.fatal(d, proto.HTTPRequestLineTooLong)
		return false
	}
	d.checked = i
	return true
}

// startByteError checks byte i of a start line: a request begins with a
// token method, a response with "HTTP/".
func startByteError(d *dirState, i int, c byte) proto.FindingKind {
	if d.pastMethod {
		return proto.FindingNone
	}
	if d.dir == proto.ToClient {
		const v = "HTTP/"
		if c != v[i] {
			return proto.HTTPInvalidStatusLine
		}
		d.pastMethod = i == len(v)-1
		return proto.FindingNone
	}
	if c == ' ' || c == '\t' || c == '\r' {
		// The method ends; a CR here ends the line and request
		// reports it.
		d.pastMethod = true
		return proto.FindingNone
	}
	if !proto.IsTokenChar(c) {
		return proto.HTTPInvalidMethod
	}
	return proto.FindingNone
}

// complete parses a whole header block (terminator included).
func (p *Parser) complete(d *dirState, block []byte) {
	lf := bytes.IndexByte(block, '\n')
	line := block[:lf]
	if !d.lineOK {
		// The same checks as on a partial block, from where they
		// stopped.
		if !p.checkStart(d, block[:lf+1]) {
			return
		}
	}
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	} else {
		p.report(d, proto.HTTPBareLF)
	}
	if d.dir == proto.ToServer {
		p.request(d, line, block[lf+1:])
	} else {
		p.response(d, line, block[lf+1:])
	}
}

// parseVersion parses "HTTP/x.y".
func parseVersion(v []byte) (major, minor int, ok bool) {
	if len(v) != 8 || string(v[:5]) != "HTTP/" || v[6] != '.' ||
		v[5] < '0' || v[5] > '9' || v[7] < '0' || v[7] > '9' {
		return 0, 0, false
	}
	return int(v[5] - '0'), int(v[7] - '0'), true
}
