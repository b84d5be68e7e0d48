package http

import (
	"bytes"
	"encoding/binary"
	"math/bits"

	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/internal/ascii"
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
		return
	}
	switch d.phase {
	case phUntilClose:
		p.body(d, nil, true)
	case phStart, phTunnel, phStopped, phAwaitConnect:
	default:
		p.report(d, proto.HTTPTruncated)
	}
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

func (p *Parser) body(d *dirState, chunk []byte, end bool) {
	if d.dir == proto.ToServer {
		p.sink.RequestBody(chunk, end)
	} else {
		p.sink.ResponseBody(chunk, end)
	}
}

// maxEmptyBytes is how many CR/LF bytes may precede a message before it is
// a finding: RFC 9112 2.2 asks servers to ignore at least one empty line.
const maxEmptyBytes = 2

// start skips empty lines before a message.
func (p *Parser) start(d *dirState, b []byte) int {
	i := 0
	for i < len(b) && (b[i] == '\r' || b[i] == '\n') {
		i++
	}
	d.empties += i
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
	if !tokenChars[c] {
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

// The tables below classify bytes for header parsing.
var (
	tokenChars = func() (t [256]bool) {
		for c := '0'; c <= '9'; c++ {
			t[c] = true
		}
		for c := 'a'; c <= 'z'; c++ {
			t[c], t[c-'a'+'A'] = true, true
		}
		for _, c := range "!#$%&'*+-.^_`|~" {
			t[c] = true
		}
		return t
	}()
	// ctlChars are the bytes not allowed in a field value (HT is).
	ctlChars = func() (t [256]bool) {
		for c := 0; c < 0x20; c++ {
			t[c] = c != '\t'
		}
		t[0x7f] = true
		return t
	}()
)

func isToken(b []byte) bool {
	for _, c := range b {
		if !tokenChars[c] {
			return false
		}
	}
	return len(b) > 0
}

func isOWS(c byte) bool { return c == ' ' || c == '\t' }

func indexOWS(b []byte) int {
	for i, c := range b {
		if isOWS(c) {
			return i
		}
	}
	return -1
}

func lastIndexOWS(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if isOWS(b[i]) {
			return i
		}
	}
	return -1
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && isOWS(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isOWS(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// framing collects what the header fields say about the body.
type framing struct {
	cl         int64 // Content-Length, -1 if absent
	clBad      bool  // a value is not a decimal number
	clConflict bool  // values differ
	clDup      bool  // several equal values
	te         bool  // Transfer-Encoding present
	chunked    bool  // the final coding is chunked
	teBad      bool  // chunked twice or not final, or an empty list
	teUnknown  bool  // a coding that is not registered
	hosts      int
	host, ua   []byte
}

// fields parses the header fields of a block (after the start line) into
// the scratch header list and normalised block.
func (p *Parser) fields(d *dirState, b []byte, f *framing) ([]Header, []byte, bool) {
	sc := p.sc
	// The normalised block is at most twice the raw one (": " and CRLF
	// for a two-byte line); reserving it up front keeps the Header slices
	// stable while it grows.
	if need := 2 * len(b); cap(sc.norm) < need {
		sc.norm = make([]byte, 0, need)
	}
	fl := fieldList{norm: sc.norm[:0], hs: sc.headers[:0]}
	f.cl = -1
	for len(b) > 0 {
		// Fast path: a token name, ':', and a value scanned a word at
		// a time. Anything irregular takes the general path below.
		n := 0
		for n < len(b) && tokenChars[b[n]] {
			n++
		}
		if n > 0 && n < len(b) && b[n] == ':' {
			v := n + 1
			for v < len(b) && isOWS(b[v]) {
				v++
			}
			end, flags := scanValue(b, v)
			value := b[v:end]
			if len(value) > 0 && value[len(value)-1] == '\r' {
				value = value[:len(value)-1]
			} else {
				p.report(d, proto.HTTPBareLF)
			}
			for len(value) > 0 && isOWS(value[len(value)-1]) {
				value = value[:len(value)-1]
			}
			if flags&flagBareCR != 0 {
				p.report(d, proto.HTTPBareCR)
			}
			if flags&flagCtl != 0 {
				p.report(d, proto.HTTPInvalidHeaderValue)
			}
			if !p.addField(d, f, &fl, b[:n], value) {
				return nil, nil, false
			}
			b = b[min(end+1, len(b)):]
			continue
		}
		lf := bytes.IndexByte(b, '\n')
		if lf < 0 {
			break
		}
		line := b[:lf]
		b = b[lf+1:]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		} else {
			p.report(d, proto.HTTPBareLF)
		}
		if len(line) == 0 {
			break
		}
		if isOWS(line[0]) {
			p.report(d, proto.HTTPObsFold)
			if len(fl.hs) == 0 {
				p.report(d, proto.HTTPInvalidHeaderName)
				continue
			}
			v := trimOWS(line)
			p.checkValue(d, v)
			if len(v) > 0 {
				fl.norm = append(fl.norm, ' ')
				fl.norm = append(fl.norm, v...)
				h := &fl.hs[len(fl.hs)-1]
				h.Value = fl.norm[fl.lastValue:len(fl.norm):len(fl.norm)]
				p.frame(d, f, h.Name, v, true)
			}
			continue
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			p.report(d, proto.HTTPHeaderNoColon)
			continue
		}
		name := line[:colon]
		if t := trimOWS(name); len(t) != len(name) {
			p.report(d, proto.HTTPInvalidHeaderName)
			name = t
		}
		if !isToken(name) {
			p.report(d, proto.HTTPInvalidHeaderName)
			if len(name) == 0 {
				continue
			}
		}
		value := trimOWS(line[colon+1:])
		p.checkValue(d, value)
		if !p.addField(d, f, &fl, name, value) {
			return nil, nil, false
		}
	}
	if len(fl.hs) > 0 {
		fl.norm = append(fl.norm, '\r', '\n')
	}
	sc.norm = fl.norm
	return fl.hs, fl.norm, true
}

// fieldList is the header list and normalised block being built.
type fieldList struct {
	norm      []byte
	hs        []Header
	lastValue int // offset of the last field's value in norm
}

// addField appends a field to fl and records what it says about framing.
func (p *Parser) addField(d *dirState, f *framing, fl *fieldList, name, value []byte) bool {
	if len(fl.hs) == p.sc.lim.MaxHeaderCount {
		p.fatal(d, proto.HTTPTooManyHeaders)
		return false
	}
	// fields reserved room for the whole block: write in place.
	norm := fl.norm
	at := len(norm)
	if len(fl.hs) > 0 {
		norm = norm[:at+2]
		norm[at], norm[at+1] = '\r', '\n'
		at += 2
	}
	ns := at
	ne := ns + len(name)
	vs := ne + 2
	ve := vs + len(value)
	norm = norm[:ve]
	copy(norm[ns:], name)
	norm[ne], norm[ne+1] = ':', ' '
	copy(norm[vs:], value)
	fl.norm, fl.lastValue = norm, vs
	fl.hs = append(fl.hs, Header{Name: norm[ns:ne:ne], Value: norm[vs:ve:ve]})
	p.frame(d, f, name, value, false)
	return true
}

// Flags scanValue returns.
const (
	flagBareCR = 1 << iota
	flagCtl
)

// scanValue finds the LF that ends the field value starting at b[i] and
// flags the control bytes on the way (HT is allowed; a CR before the LF
// belongs to the line end). It returns the LF's index, or len(b).
func scanValue(b []byte, i int) (int, uint8) {
	var flags uint8
	for {
		i = scanPlain(b, i)
		if i >= len(b) {
			return len(b), flags
		}
		switch b[i] {
		case '\n':
			return i, flags
		case '\t':
		case '\r':
			if i+1 < len(b) && b[i+1] == '\n' {
				return i + 1, flags
			}
			flags |= flagBareCR
		default:
			flags |= flagCtl
		}
		i++
	}
}

// scanPlain returns the index of the first byte from i on that is a
// control byte (below 0x20) or DEL, or len(b). It tests eight bytes at a
// time: a byte below 0x20 borrows in w-0x20.., DEL is zero in w^0x7f..;
// the lowest flagged byte of either test is exact.
func scanPlain(b []byte, i int) int {
	const (
		ones = 0x0101010101010101
		high = 0x8080808080808080
	)
	for i+8 <= len(b) {
		w := binary.LittleEndian.Uint64(b[i:])
		x := w ^ (0x7f * ones)
		t := ((w-0x20*ones)&^w | (x-ones)&^x) & high
		if t != 0 {
			return i + bits.TrailingZeros64(t)/8
		}
		i += 8
	}
	for i < len(b) && !ctlChars[b[i]] && b[i] != '\t' {
		i++
	}
	return i
}

// checkValue reports control bytes in a field value.
func (p *Parser) checkValue(d *dirState, v []byte) {
	for _, c := range v {
		if ctlChars[c] {
			if c == '\r' {
				p.report(d, proto.HTTPBareCR)
			} else {
				p.report(d, proto.HTTPInvalidHeaderValue)
			}
		}
	}
}

// frame records what a field says about framing. cont is true for an
// obs-fold continuation of the field.
func (p *Parser) frame(d *dirState, f *framing, name, value []byte, cont bool) {
	switch len(name) {
	case 4:
		if ascii.EqualFold(name, "host") && !cont {
			f.hosts++
			if f.hosts == 1 {
				f.host = value
			}
		}
	case 10:
		if ascii.EqualFold(name, "user-agent") && !cont && f.ua == nil {
			f.ua = value
		}
	case 14:
		if ascii.EqualFold(name, "content-length") {
			if cont {
				// A folded Content-Length reads differently in every
				// implementation that accepts it.
				f.clBad = true
				return
			}
			parseContentLength(f, value)
		}
	case 17:
		if ascii.EqualFold(name, "transfer-encoding") {
			f.te = true
			if cont {
				f.teBad = true
				return
			}
			parseTransferEncoding(f, value)
		}
	}
}

// maxCLDigits keeps Content-Length within int64 with room to add.
const maxCLDigits = 18

// parseContentLength parses a Content-Length value, which may be a list
// of equal values ("5, 5").
func parseContentLength(f *framing, v []byte) {
	if len(v) == 0 {
		f.clBad = true
		return
	}
	for len(v) > 0 {
		var elem []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			elem, v = trimOWS(v[:i]), v[i+1:]
			if len(v) == 0 {
				f.clBad = true
			}
		} else {
			elem, v = trimOWS(v), nil
		}
		if len(elem) == 0 || len(elem) > maxCLDigits {
			f.clBad = true
			continue
		}
		var n int64
		for _, c := range elem {
			if c < '0' || c > '9' {
				f.clBad = true
				n = -1
				break
			}
			n = n*10 + int64(c-'0')
		}
		if n < 0 {
			continue
		}
		switch {
		case f.cl < 0:
			f.cl = n
		case f.cl != n:
			f.clConflict = true
		default:
			f.clDup = true
		}
	}
}

// knownCodings are the registered transfer codings other than chunked.
var knownCodings = [...]string{"gzip", "deflate", "compress", "x-gzip", "x-compress", "identity", "trailers"}

// parseTransferEncoding folds one Transfer-Encoding value into f: the
// codings of all fields form one list, and only a final "chunked" frames
// the body.
func parseTransferEncoding(f *framing, v []byte) {
	any := false
	for len(v) > 0 {
		var elem []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			elem, v = trimOWS(v[:i]), v[i+1:]
		} else {
			elem, v = trimOWS(v), nil
		}
		if len(elem) == 0 {
			continue
		}
		any = true
		if ascii.EqualFold(elem, "chunked") {
			if f.chunked {
				f.teBad = true
			}
			f.chunked = true
			continue
		}
		if f.chunked {
			// chunked must be the final coding.
			f.teBad = true
		}
		f.chunked = false
		known := false
		for _, k := range knownCodings {
			if ascii.EqualFold(elem, k) {
				known = true
				break
			}
		}
		if !known {
			f.teUnknown = true
		}
	}
	if !any {
		f.teBad = true
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

// request parses a request head: its line, its fields, its target.
func (p *Parser) request(d *dirState, line, rest []byte) {
	sc := p.sc
	r := &sc.req
	// Method.
	sp := indexOWS(line)
	if sp <= 0 {
		if len(line) > 0 && isToken(line) {
			p.fatal(d, proto.HTTPInvalidRequestLine)
		} else {
			p.fatal(d, proto.HTTPInvalidMethod)
		}
		return
	}
	method := line[:sp]
	if !isToken(method) {
		p.fatal(d, proto.HTTPInvalidMethod)
		return
	}
	if line[sp] != ' ' || sp+1 < len(line) && isOWS(line[sp+1]) {
		p.report(d, proto.HTTPInvalidRequestLine)
	}
	if isOWS(line[len(line)-1]) {
		p.report(d, proto.HTTPInvalidRequestLine)
	}
	tail := trimOWS(line[sp:])
	// Version: after the last space.
	lsp := lastIndexOWS(tail)
	if lsp < 0 {
		if len(tail) == 0 {
			p.fatal(d, proto.HTTPInvalidRequestLine)
		} else {
			p.fatal(d, proto.HTTP09Request)
		}
		return
	}
	version := tail[lsp+1:]
	target := tail[:lsp]
	if t := trimOWS(target); len(t) != len(target) {
		p.report(d, proto.HTTPInvalidRequestLine)
		target = t
	}
	major, minor, ok := parseVersion(version)
	if !ok {
		if len(version) >= 5 && string(version[:5]) == "HTTP/" {
			p.fatal(d, proto.HTTPInvalidVersion)
		} else {
			// "GET /a b": no version, a target with a space.
			p.fatal(d, proto.HTTP09Request)
		}
		return
	}
	unknown := major != 1
	if unknown {
		// "HTTP/4.0", "HTTP/2.0" on an HTTP/1 request line: no such
		// version uses this syntax, but the line is well-formed, so the
		// head is parsed (as HTTP/1.1, HTTP/1.0 for "HTTP/0.x") and
		// given to the sink for inspection — Coraza's 920430 logs the
		// version — before the parser stops on it as before: what
		// follows cannot be framed with any confidence. Malformed
		// versions stop at once (above).
		minor = 1
		if major == 0 {
			minor = 0
		}
	} else if minor > 1 {
		p.report(d, proto.HTTPUnknownMinorVersion)
	}
	var f framing
	hs, norm, ok := p.fields(d, rest, &f)
	if !ok {
		return
	}
	kind := reqOther
	switch {
	case string(method) == "HEAD":
		kind = reqHead
	case string(method) == "CONNECT":
		kind = reqConnect
	}
	// Framing (RFC 9112 6.3).
	cl := int64(-1)
	chunked := false
	switch {
	case f.te:
		if f.cl >= 0 || f.clBad {
			p.report(d, proto.HTTPCLAndTE)
		}
		if f.clConflict {
			p.report(d, proto.HTTPContentLengthConflict)
		}
		if minor == 0 {
			p.report(d, proto.HTTPTransferEncodingHTTP10)
		}
		if f.teBad || !f.chunked {
			p.fatal(d, proto.HTTPInvalidTransferEncoding)
			return
		}
		if f.teUnknown {
			p.report(d, proto.HTTPInvalidTransferEncoding)
		}
		chunked = true
	case f.clBad:
		p.fatal(d, proto.HTTPInvalidContentLength)
		return
	case f.clConflict:
		p.fatal(d, proto.HTTPContentLengthConflict)
		return
	default:
		cl = f.cl
	}
	if f.clDup {
		p.report(d, proto.HTTPDuplicateContentLength)
	}
	if f.hosts > 1 {
		p.report(d, proto.HTTPDuplicateHost)
	}
	*r = Request{
		Method:        method,
		URI:           target,
		Proto:         version,
		Minor:         minor,
		Headers:       hs,
		HeaderBlock:   norm,
		Host:          f.host,
		UserAgent:     f.ua,
		ContentLength: cl,
		Chunked:       chunked,
		Seq:           p.reqSeq,
		Offset:        d.msgStart,
	}
	p.target(d, r, kind == reqConnect)
	if f.hosts == 0 && minor >= 1 {
		p.report(d, proto.HTTPMissingHost)
	}
	if p.pLen == MaxPipelined {
		p.fatal(d, proto.HTTPPipelineTooDeep)
		return
	}
	p.pending[(p.pHead+p.pLen)%MaxPipelined] = kind
	p.pLen++
	p.reqSeq++
	p.sink.RequestHeaders(r)
	if unknown {
		p.fatal(d, proto.HTTPInvalidVersion)
		return
	}
	switch {
	case kind == reqConnect:
		p.body(d, nil, true)
		d.phase = phAwaitConnect
	case chunked:
		p.startChunked(d)
	case cl > 0:
		d.phase, d.remaining = phBody, cl
	default:
		p.body(d, nil, true)
		d.phase = phStart
	}
}

// target splits and normalises the request-target into r.
func (p *Parser) target(d *dirState, r *Request, connect bool) {
	sc := p.sc
	t := r.URI
	for _, c := range t {
		switch {
		case c == 0:
			p.report(d, proto.HTTPURINullByte)
			p.report(d, proto.HTTPURIInvalidChar)
		case c <= ' ' || c == 0x7f:
			p.report(d, proto.HTTPURIInvalidChar)
		case c >= 0x80:
			p.report(d, proto.HTTPURINonASCIIPath)
		}
	}
	if i := bytes.IndexByte(t, '#'); i >= 0 {
		p.report(d, proto.HTTPURIFragment)
		t = t[:i]
	}
	r.Path, r.Query, r.Args, r.ArgsBuf = nil, nil, nil, nil
	if connect {
		// authority-form: no path.
		if r.Host == nil {
			r.Host = t
		}
		return
	}
	if len(t) == 1 && t[0] == '*' {
		r.Path = t
		return
	}
	path := t
	if len(t) > 0 && t[0] != '/' && t[0] != '\\' {
		if auth, rest, ok := splitAbsolute(t); ok {
			if r.Host == nil {
				r.Host = auth
			} else if !bytes.EqualFold(auth, r.Host) {
				p.report(d, proto.HTTPHostMismatch)
			}
			path = rest
		} else {
			p.report(d, proto.HTTPURIPathNotAbsolute)
		}
	}
	if i := bytes.IndexByte(path, '?'); i >= 0 {
		path, r.Query = path[:i], path[i+1:]
	}
	s := &sc.uriSet
	s.Clear()
	if pathIsNormal(path) {
		r.Path = path
	} else {
		if need := len(path) + 1; cap(sc.path) < need {
			sc.path = make([]byte, 0, max(need, 256))
		}
		r.Path = NormalizePath(sc.path[:0], path, s)
		sc.path = r.Path[:0]
	}
	if len(r.Query) > 0 {
		if cap(sc.args) < len(r.Query) {
			sc.args = make([]byte, 0, max(len(r.Query), 256))
		}
		r.ArgsBuf, r.Args = DecodeArgs(sc.args[:0], sc.argList[:0], r.Query, sc.lim.MaxArgs, s)
	}
	p.reportSet(d, s)
}

// splitAbsolute splits an absolute-form target "scheme://authority/path"
// into authority and path (which keeps its query).
func splitAbsolute(t []byte) (authority, rest []byte, ok bool) {
	i := 0
	for i < len(t) && (t[i] >= 'a' && t[i] <= 'z' || t[i] >= 'A' && t[i] <= 'Z' ||
		i > 0 && (t[i] >= '0' && t[i] <= '9' || t[i] == '+' || t[i] == '-' || t[i] == '.')) {
		i++
	}
	if i == 0 || !bytes.HasPrefix(t[i:], []byte("://")) {
		return nil, nil, false
	}
	t = t[i+3:]
	end := bytes.IndexAny(t, "/?\\")
	if end < 0 {
		return t, nil, true
	}
	if t[end] == '?' {
		// "http://host?q": the path is empty, keep the query.
		return t[:end], t[end:], true
	}
	return t[:end], t[end:], true
}

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
	cl := f.cl
	chunked := false
	untilClose := false
	if f.clDup {
		p.report(d, proto.HTTPDuplicateContentLength)
	}
	switch {
	case noBody || tunnel:
		if f.clBad {
			p.report(d, proto.HTTPInvalidContentLength)
		}
		if f.clConflict {
			p.report(d, proto.HTTPContentLengthConflict)
		}
	case f.te:
		if f.cl >= 0 || f.clBad {
			p.report(d, proto.HTTPCLAndTE)
		}
		if f.clConflict {
			p.report(d, proto.HTTPContentLengthConflict)
		}
		if minor == 0 {
			p.report(d, proto.HTTPTransferEncodingHTTP10)
		}
		if f.teBad || f.teUnknown {
			p.report(d, proto.HTTPInvalidTransferEncoding)
		}
		cl = -1
		if f.chunked && !f.teBad {
			chunked = true
		} else {
			untilClose = true
		}
	case f.clBad:
		p.fatal(d, proto.HTTPInvalidContentLength)
		return
	case f.clConflict:
		p.fatal(d, proto.HTTPContentLengthConflict)
		return
	case f.cl < 0:
		untilClose = true
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

func (p *Parser) startChunked(d *dirState) {
	d.phase = phChunkSize
	d.remaining, d.digits, d.lineLen, d.extSemi, d.lastCR = 0, 0, 0, false, false
}

// maxChunkDigits keeps a chunk size below 2^60.
const maxChunkDigits = 15

// chunked parses a chunked body (RFC 9112 7.1) byte by byte where it must
// and in bulk for chunk data.
func (p *Parser) chunked(d *dirState, b []byte) int {
	lim := p.sc.lim
	i := 0
	for i < len(b) && !p.stopped {
		c := b[i]
		switch d.phase {
		case phChunkSize:
			if v, ok := ascii.Unhex(c); ok {
				if d.digits == maxChunkDigits {
					p.fatal(d, proto.HTTPInvalidChunkSize)
					return i
				}
				d.remaining = d.remaining<<4 | int64(v)
				d.digits++
			} else {
				if d.digits == 0 {
					p.fatal(d, proto.HTTPInvalidChunkSize)
					return i
				}
				switch c {
				case '\r':
					d.phase = phChunkLF
				case '\n':
					p.report(d, proto.HTTPBareLF)
					p.chunkLineDone(d)
				case ';':
					d.phase, d.extSemi = phChunkExt, true
				case ' ', '\t':
					d.phase = phChunkExt
				default:
					p.fatal(d, proto.HTTPInvalidChunkSize)
					return i
				}
			}
			i++
			if d.lineLen++; d.lineLen > lim.MaxChunkLine {
				p.fatal(d, proto.HTTPChunkLineTooLong)
				return i
			}
		case phChunkExt:
			switch {
			case c == '\n':
				if !d.lastCR {
					p.report(d, proto.HTTPBareLF)
				}
				p.chunkLineDone(d)
			case d.lastCR:
				// CR not followed by LF.
				p.fatal(d, proto.HTTPInvalidChunkSize)
				return i
			case c == '\r':
			case c == ';':
				d.extSemi = true
			case isOWS(c):
			case !d.extSemi || ctlChars[c]:
				// Extensions start with ';' (after optional
				// whitespace) and hold no control bytes.
				p.fatal(d, proto.HTTPInvalidChunkSize)
				return i
			}
			d.lastCR = c == '\r'
			i++
			if d.phase == phChunkExt {
				if d.lineLen++; d.lineLen > lim.MaxChunkLine {
					p.fatal(d, proto.HTTPChunkLineTooLong)
					return i
				}
			}
		case phChunkLF:
			if c != '\n' {
				p.fatal(d, proto.HTTPInvalidChunkSize)
				return i
			}
			i++
			p.chunkLineDone(d)
		case phChunkData:
			n := int(min(d.remaining, int64(len(b)-i)))
			p.body(d, b[i:i+n], false)
			d.remaining -= int64(n)
			i += n
			if d.remaining == 0 {
				d.phase = phChunkDataCR
			}
		case phChunkDataCR:
			switch c {
			case '\r':
				d.phase = phChunkDataLF
			case '\n':
				p.report(d, proto.HTTPBareLF)
				p.startChunked(d)
			default:
				p.fatal(d, proto.HTTPInvalidChunkData)
				return i
			}
			i++
		case phChunkDataLF:
			if c != '\n' {
				p.fatal(d, proto.HTTPInvalidChunkData)
				return i
			}
			i++
			p.startChunked(d)
		case phTrailerStart:
			switch c {
			case '\r':
				d.phase = phTrailerLF
				i++
			case '\n':
				p.report(d, proto.HTTPBareLF)
				i++
				p.endMessage(d)
				return i
			default:
				d.phase = phTrailerName
			}
		case phTrailerName:
			switch {
			case c == ':':
				d.phase = phTrailerValue
			case c == '\n':
				// A trailer line without a colon.
				p.report(d, proto.HTTPInvalidTrailer)
				if !d.lastCR {
					p.report(d, proto.HTTPBareLF)
				}
				d.phase = phTrailerStart
			case c == '\r' || !tokenChars[c]:
				p.report(d, proto.HTTPInvalidTrailer)
			}
			d.lastCR = c == '\r'
			i++
			if d.trailer++; d.trailer > lim.MaxHeaderBytes {
				p.fatal(d, proto.HTTPTrailerTooLarge)
				return i
			}
		case phTrailerValue:
			switch {
			case c == '\n':
				if !d.lastCR {
					p.report(d, proto.HTTPBareLF)
				}
				d.phase = phTrailerStart
			case d.lastCR:
				p.report(d, proto.HTTPBareCR)
			case ctlChars[c] && c != '\r':
				p.report(d, proto.HTTPInvalidTrailer)
			}
			d.lastCR = c == '\r'
			i++
			if d.trailer++; d.trailer > lim.MaxHeaderBytes {
				p.fatal(d, proto.HTTPTrailerTooLarge)
				return i
			}
		case phTrailerLF:
			if c != '\n' {
				p.fatal(d, proto.HTTPInvalidTrailer)
				return i
			}
			i++
			p.endMessage(d)
			return i
		default:
			return i
		}
	}
	return i
}

// chunkLineDone ends a chunk-size line: data follows, or, after the last
// chunk, the trailer section.
func (p *Parser) chunkLineDone(d *dirState) {
	d.lineLen, d.digits, d.extSemi, d.lastCR = 0, 0, false, false
	if d.remaining == 0 {
		d.phase, d.trailer = phTrailerStart, 0
		return
	}
	d.phase = phChunkData
}

// endMessage ends a chunked message.
func (p *Parser) endMessage(d *dirState) {
	d.lastCR = false
	p.body(d, nil, true)
	d.phase = phStart
}
