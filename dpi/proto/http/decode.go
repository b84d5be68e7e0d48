package http

// Content decoding (RFC 9110 8.4): a body sent with Content-Encoding gzip,
// x-gzip, deflate, br or zstd, or several of them stacked, is decoded
// before the Sink sees it, so that rules match what the application will
// read and not the compressed bytes.
//
// Go's decompressors pull their input (io.Reader) while the parser is fed
// pushes of a few hundred bytes at a time. A decoder therefore runs on its
// own goroutine and the two hand over strictly in turn: the parser passes
// a chunk and waits; the decoder reads it, hands decoded text to the Sink
// and parks again when it needs more input. Only one of them runs at any
// time, so the Sink is called as if from the parser's goroutine (the
// channel operations order every access), and a body costs two goroutine
// switches per chunk. Bodies without a content coding never reach this
// file: the hot path is one nil check.

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"io"
	"sync"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"

	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/internal/ascii"
)

// Bounds on content decoding. Exceeding MaxDecodedBody ends the body's
// inspection where it was (as the inspection depth of a plain body does);
// the others stop the parser, so that the engine blocks the flow: a body
// deepwall cannot decode within them is one it cannot vouch for. So does a
// request body that does not decode (decodeError).
const (
	// MaxEncodings bounds the content codings stacked on one body
	// ("gzip, br" is two). Nothing legitimate stacks more than two.
	MaxEncodings = 3
	// DefaultMaxDecodedBody is the default Limits.MaxDecodedBody.
	DefaultMaxDecodedBody = 1 << 20
	// DefaultMaxDecodeRatio is the default Limits.MaxDecodeRatio. Text
	// compresses 3 to 20 times, highly repetitive JSON up to ~100;
	// deflate bombs expand ~1000 times, brotli and zstd ones far more.
	DefaultMaxDecodeRatio = 200
	// decodeRatioFloor is how much a body decodes to before the ratio is
	// checked: a short body may legitimately be mostly repetition.
	decodeRatioFloor = 256 << 10
	// MaxBrotliWindowBits bounds a brotli stream's window (2^22 = 4 MiB,
	// the brotli library's default; the format allows 2^24).
	MaxBrotliWindowBits = 22
	// MaxZstdWindow bounds a zstd frame's window: 8 MiB, what RFC 8878
	// asks HTTP decoders to support at least (and browsers at most).
	MaxZstdWindow = 8 << 20
	// DefaultMaxDecoderMemory is the default Limits.MaxDecoderMemory.
	DefaultMaxDecoderMemory = 256 << 20
	// decodeChunk is the most decoded text handed to the Sink at once.
	decodeChunk = 16 << 10
	// flateMemory is what a gzip or deflate decoder holds (window, tables,
	// read buffer), reserved against Limits.MaxDecoderMemory.
	flateMemory = 64 << 10
)

// coding is a content coding deepwall decodes.
type coding uint8

const (
	codingGzip    coding = iota + 1 // gzip, x-gzip
	codingDeflate                   // deflate: zlib (RFC 1950), or raw deflate as browsers also accept
	codingBrotli                    // br
	codingZstd                      // zstd
)

// reserve is the decoder memory a coding is charged.
func (c coding) reserve() int {
	switch c {
	case codingBrotli:
		return 1<<MaxBrotliWindowBits + flateMemory
	case codingZstd:
		return MaxZstdWindow + flateMemory
	}
	return flateMemory
}

// codings is a message's Content-Encoding list, in the order applied.
type codings struct {
	c       [MaxEncodings]coding
	n       int
	over    bool // more than MaxEncodings codings
	unknown bool // a coding not decoded
}

// parseContentEncoding adds the codings of one Content-Encoding value.
func (cs *codings) parse(v []byte) {
	for len(v) > 0 {
		var elem []byte
		elem, v, _ = listElem(v)
		var c coding
		switch {
		case len(elem) == 0, ascii.EqualFold(elem, "identity"):
			continue
		case ascii.EqualFold(elem, "gzip"), ascii.EqualFold(elem, "x-gzip"):
			c = codingGzip
		case ascii.EqualFold(elem, "deflate"):
			c = codingDeflate
		case ascii.EqualFold(elem, "br"):
			c = codingBrotli
		case ascii.EqualFold(elem, "zstd"):
			c = codingZstd
		default:
			cs.unknown = true
			continue
		}
		if cs.n == MaxEncodings {
			cs.over = true
			continue
		}
		cs.c[cs.n] = c
		cs.n++
	}
}

// startDecode readies direction d to decode the body of the message whose
// header fields gave f, and reports false when it stopped the parser.
func (p *Parser) startDecode(d *dirState, f *framing) bool {
	z, k, fatal := p.sc.newDecoder(&f.codings)
	switch {
	case fatal:
		p.fatal(d, k)
		return false
	case k != 0:
		p.report(d, k)
	}
	if z != nil {
		z.p, z.d = p, d
		d.dec = z
	}
	return true
}

// newDecoder returns a decoder of codings cs, or nil when the body is
// inspected as sent (no coding, or one not decoded: finding k) or cannot
// be (a fatal finding k).
func (sc *Scratch) newDecoder(cs *codings) (z *bodyDecoder, k proto.FindingKind, fatal bool) {
	if cs.over {
		return nil, proto.HTTPTooManyEncodings, true
	}
	if cs.unknown {
		// Inspected as sent: whatever the receiver makes of it, these
		// are the bytes that travel.
		return nil, proto.HTTPUnknownEncoding, false
	}
	if cs.n == 0 {
		return nil, 0, false
	}
	need := 0
	for _, c := range cs.c[:cs.n] {
		need += c.reserve()
	}
	if sc.decMem+need > sc.lim.MaxDecoderMemory {
		return nil, proto.HTTPDecoderMemory, true
	}
	sc.decMem += need
	z = decoderPool.Get().(*bodyDecoder)
	*z = bodyDecoder{sc: sc, cs: *cs, mem: need, wake: z.wake, yield: z.yield, buf: z.buf}
	if z.wake == nil {
		z.wake, z.yield = make(chan feedMsg), make(chan struct{})
		z.buf = make([]byte, decodeChunk)
	}
	return z, 0, false
}

// decode passes a body chunk to direction d's decoder; at the body's end
// the decoder is released and the Sink gets its end call.
func (p *Parser) decode(d *dirState, chunk []byte, end bool) {
	d.dec.feed(chunk, end)
	if end && !p.stopped {
		p.releaseDecoder(d)
		p.sinkBody(d, nil, true)
	}
}

// feed passes a chunk of the body to the decoder.
func (z *bodyDecoder) feed(chunk []byte, end bool) {
	if !z.done && (z.started || len(chunk) > 0) {
		// An empty body decodes to nothing, not to a truncated stream.
		z.write(chunk, end)
	} else if z.eof && len(chunk) > 0 && !z.trailing {
		// Bytes after the end of the compressed stream: no decoder
		// reads them, say so.
		z.trailing = true
		z.decodeError()
	}
}

// releaseDecoder ends direction d's decoder, if any, and returns it.
func (p *Parser) releaseDecoder(d *dirState) {
	z := d.dec
	if z == nil {
		return
	}
	d.dec = nil
	z.release()
}

// release ends the decoder and returns it to the pool.
func (z *bodyDecoder) release() {
	if z.started && !z.done {
		z.wake <- feedMsg{abort: true}
		<-z.yield
	}
	z.sc.decMem -= z.mem
	z.p, z.d, z.ext, z.sc, z.cur = nil, nil, nil, nil, nil
	decoderPool.Put(z)
}

// Release ends the body decoders of the connection (the goroutines they
// park on and the memory they reserve). Reset and the end of a message do
// it; a connection dropped without either must call Release.
func (p *Parser) Release() {
	p.releaseDecoder(&p.d[0])
	p.releaseDecoder(&p.d[1])
}

var decoderPool = sync.Pool{New: func() any { return new(bodyDecoder) }}

// feedMsg is a chunk of encoded body for the decoder's goroutine.
type feedMsg struct {
	b          []byte
	end, abort bool
}

// bodyDecoder decodes one body. Fields are shared by the parser's and the
// decoder's goroutines, which never run at the same time (see the file
// comment).
type bodyDecoder struct {
	sc *Scratch
	// The decoder's owner: a Parser's direction (p, d), or a Decoder
	// (ext).
	p     *Parser
	d     *dirState
	ext   *Decoder
	cs    codings
	mem   int
	wake  chan feedMsg
	yield chan struct{}
	buf   []byte
	cur   []byte // encoded bytes not read yet
	// in counts the encoded bytes read, out the decoded bytes passed on.
	in, out int64
	// started: the goroutine runs; done: it finished; eof: the encoded
	// stream ended before the body; trailing: bytes followed it.
	started, done, eof, trailing bool
	end, abort                   bool
	inSink                       bool // the goroutine is in a Sink call
}

// write hands b to the decoder's goroutine and waits until it has read
// all of it (or finished).
func (z *bodyDecoder) write(b []byte, end bool) {
	if !z.started {
		z.started = true
		z.cur, z.end = b, end
		go z.run()
	} else {
		z.wake <- feedMsg{b: b, end: end}
	}
	<-z.yield
}

// Read implements io.Reader for the innermost decoder: it parks the
// goroutine until the parser has more.
func (z *bodyDecoder) Read(b []byte) (int, error) {
	if err := z.more(); err != nil {
		return 0, err
	}
	n := copy(b, z.cur)
	z.cur = z.cur[n:]
	z.in += int64(n)
	return n, nil
}

// ReadByte implements io.ByteReader, so that flate reads no further ahead
// than it needs (no bufio between).
func (z *bodyDecoder) ReadByte() (byte, error) {
	if err := z.more(); err != nil {
		return 0, err
	}
	c := z.cur[0]
	z.cur = z.cur[1:]
	z.in++
	return c, nil
}

var errAborted = errors.New("decode body: aborted")

// more waits for input.
func (z *bodyDecoder) more() error {
	for len(z.cur) == 0 {
		switch {
		case z.abort:
			return errAborted
		case z.end:
			return io.EOF
		}
		z.yield <- struct{}{}
		m := <-z.wake
		z.cur, z.end, z.abort = m.b, m.end, m.abort
	}
	return nil
}

// run is the decoder's goroutine.
func (z *bodyDecoder) run() {
	defer func() {
		if v := recover(); v != nil {
			if z.inSink {
				panic(v) // the Sink's bug, not the input's
			}
			// A decoder library's bug on hostile input is a body not
			// decoded, not a crashed engine.
			if !z.abort {
				z.decodeError()
			}
		}
		z.done = true
		z.yield <- struct{}{}
	}()
	var r io.Reader = z
	var put [MaxEncodings]func()
	defer func() {
		for _, f := range put {
			if f != nil {
				f()
			}
		}
	}()
	for i := z.cs.n - 1; i >= 0; i-- {
		var err error
		r, put[i], err = open(z.cs.c[i], r)
		if err != nil {
			z.fail(err)
			return
		}
	}
	lim := &z.sc.lim
	for {
		n, err := r.Read(z.buf)
		if z.abort {
			// Released: the Sink may have closed the message's state,
			// it gets nothing more.
			return
		}
		if n > 0 {
			if z.out+int64(n) > int64(lim.MaxDecodedBody) {
				n = int(int64(lim.MaxDecodedBody) - z.out)
				z.emit(z.buf[:n])
				z.finding(proto.HTTPDecodeLimit, false)
				return
			}
			z.emit(z.buf[:n])
			if z.out > decodeRatioFloor && z.out > z.in*int64(lim.MaxDecodeRatio) {
				z.finding(proto.HTTPDecompressionBomb, true)
				return
			}
			if z.stopped() {
				return
			}
		}
		if err == io.EOF {
			// Later chunks of the body are checked by decode.
			z.eof = true
			if len(z.cur) > 0 {
				z.trailing = true
				z.decodeError()
			}
			return
		}
		if err != nil {
			z.fail(err)
			return
		}
	}
}

func (z *bodyDecoder) emit(b []byte) {
	if len(b) == 0 {
		return
	}
	z.out += int64(len(b))
	z.inSink = true
	if z.ext != nil {
		z.ext.sink.DecodedBody(b)
	} else {
		z.p.sinkBody(z.d, b, false)
	}
	z.inSink = false
}

// fail reports why decoding stopped early.
func (z *bodyDecoder) fail(err error) {
	switch {
	case z.abort:
	case errors.Is(err, errWindow), errors.Is(err, zstd.ErrWindowSizeExceeded):
		z.finding(proto.HTTPDecoderMemory, true)
	default:
		z.decodeError()
	}
}

// finding reports k to the decoder's owner.
func (z *bodyDecoder) finding(k proto.FindingKind, fatal bool) {
	switch {
	case z.ext != nil:
		z.ext.finding(k, fatal)
	case fatal:
		z.p.fatal(z.d, k)
	default:
		z.p.report(z.d, k)
	}
}

// decodeError reports a body that does not decode (see Parser.decodeError).
func (z *bodyDecoder) decodeError() {
	if z.ext != nil {
		z.ext.finding(proto.HTTPDecodeError, z.ext.dir == proto.ToServer)
		return
	}
	z.p.decodeError(z.d)
}

// stopped reports whether the owner wants no more.
func (z *bodyDecoder) stopped() bool {
	if z.ext != nil {
		return z.ext.stopped
	}
	return z.p.stopped
}

// Decoder decodes the content coding of one body outside a Parser: the
// body of an HTTP/2 stream, framed by HTTP/2 but coded as in HTTP/1. It
// is this file's decoder, with the limits and the decoder memory of the
// Scratch it starts with, and the same findings: fatal ones (a request
// body that does not decode, a bomb, too many codings, no decoder memory)
// mean the body cannot be vouched for. The zero Decoder is inactive.
type Decoder struct {
	z       *bodyDecoder
	sink    DecodeSink
	dir     proto.Dir
	stopped bool
}

// DecodeSink receives what a Decoder decodes and finds. Its calls come
// from inside Start, Write and Release.
type DecodeSink interface {
	DecodedBody(chunk []byte)
	DecodeFinding(f proto.Finding)
}

// Start readies dc for a body in direction dir whose message has header
// fields hs (every Content-Encoding field counts), with sc's limits. It
// reports whether the body must go through Write; false when it is
// inspected as sent (no coding, or one not decoded) and when a fatal
// finding went to sink.
func (dc *Decoder) Start(sc *Scratch, dir proto.Dir, hs []Header, sink DecodeSink) bool {
	dc.Release()
	*dc = Decoder{sink: sink, dir: dir}
	var cs codings
	for i := range hs {
		if ascii.EqualFold(hs[i].Name, "content-encoding") {
			cs.parse(hs[i].Value)
		}
	}
	z, k, fatal := sc.newDecoder(&cs)
	if k != 0 {
		dc.finding(k, fatal)
	}
	if z == nil {
		return false
	}
	z.ext = dc
	dc.z = z
	return true
}

// Active reports whether dc decodes a body.
func (dc *Decoder) Active() bool { return dc.z != nil }

// Write passes the next chunk of the coded body; end says it is the
// last. Decoded text goes to the sink before Write returns; at the end
// the decoder is released.
func (dc *Decoder) Write(chunk []byte, end bool) {
	if dc.z == nil || dc.stopped {
		return
	}
	dc.z.feed(chunk, end)
	if end {
		dc.Release()
	}
}

// Release ends the decoder (its goroutine and reserved memory); a body
// cut short (a reset stream, a closed connection) must be released.
func (dc *Decoder) Release() {
	if z := dc.z; z != nil {
		dc.z = nil
		z.release()
	}
}

func (dc *Decoder) finding(k proto.FindingKind, fatal bool) {
	if dc.stopped {
		return
	}
	dc.stopped = fatal
	dc.sink.DecodeFinding(proto.Finding{Kind: k, Dir: dc.dir, Fatal: fatal})
}

// decodeError reports a body that does not decode. In a request it is
// fatal: the application's decoder may read past where deepwall's stopped
// (decoders differ on what they forgive), and no legitimate client sends
// a corrupt body. In a response it is not: what decoded was inspected,
// and response rules only alert.
func (p *Parser) decodeError(d *dirState) {
	if d.dir == proto.ToServer {
		p.fatal(d, proto.HTTPDecodeError)
		return
	}
	p.report(d, proto.HTTPDecodeError)
}

var errWindow = errors.New("decode body: window too large")

// open returns a decoder of coding c reading r, and what returns it to
// its pool.
func open(c coding, r io.Reader) (io.Reader, func(), error) {
	switch c {
	case codingGzip:
		g, _ := gzipPool.Get().(*gzip.Reader)
		if g == nil {
			g = new(gzip.Reader)
		}
		if err := g.Reset(r); err != nil {
			gzipPool.Put(g)
			return nil, nil, err
		}
		return g, func() { gzipPool.Put(g) }, nil
	case codingDeflate:
		return openDeflate(r)
	case codingBrotli:
		var hdr [1]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return nil, nil, err
		}
		if brotliWindowBits(hdr[0]) > MaxBrotliWindowBits {
			return nil, nil, errWindow
		}
		r = io.MultiReader(bytes.NewReader(hdr[:]), r)
		b, _ := brotliPool.Get().(*brotli.Reader)
		if b == nil {
			b = brotli.NewReader(r)
		} else if err := b.Reset(r); err != nil {
			return nil, nil, err
		}
		return b, func() { brotliPool.Put(b) }, nil
	case codingZstd:
		d, _ := zstdPool.Get().(*zstd.Decoder)
		if d == nil {
			var err error
			d, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
				zstd.WithDecoderMaxWindow(MaxZstdWindow))
			if err != nil {
				return nil, nil, err
			}
		}
		if err := d.Reset(r); err != nil {
			zstdPool.Put(d)
			return nil, nil, err
		}
		return d, func() { zstdPool.Put(d) }, nil
	}
	return nil, nil, errors.New("decode body: unknown coding")
}

// openDeflate reads "deflate" as browsers do: a zlib stream (RFC 9110
// says so) or, when the first two bytes are not a zlib header, a raw
// deflate stream (what some servers send).
func openDeflate(r io.Reader) (io.Reader, func(), error) {
	var hdr [2]byte
	n, err := io.ReadFull(r, hdr[:])
	if err != nil && n == 0 {
		return nil, nil, err
	}
	// flate reads byte by byte from an io.ByteReader, and no further
	// than the stream's end: bytes after it stay for decode to see.
	br := &prefixReader{hdr: hdr, n: n, r: r}
	br.br, _ = r.(io.ByteReader)
	if n == 2 && hdr[0]&0x0f == 8 && hdr[0]>>4 <= 7 && (uint16(hdr[0])<<8|uint16(hdr[1]))%31 == 0 {
		z, _ := zlibPool.Get().(io.ReadCloser)
		if z == nil {
			var err error
			if z, err = zlib.NewReader(br); err != nil {
				return nil, nil, err
			}
		} else if err := z.(zlib.Resetter).Reset(br, nil); err != nil {
			zlibPool.Put(z)
			return nil, nil, err
		}
		return z, func() { zlibPool.Put(z) }, nil
	}
	f, _ := flatePool.Get().(io.ReadCloser)
	if f == nil {
		f = flate.NewReader(br)
	} else if err := f.(flate.Resetter).Reset(br, nil); err != nil {
		return nil, nil, err
	}
	return f, func() { flatePool.Put(f) }, nil
}

// prefixReader reads the n bytes of hdr already read from r, then r, as
// an io.ByteReader.
type prefixReader struct {
	hdr  [2]byte
	i, n int
	r    io.Reader
	br   io.ByteReader // r, when it is one
	one  [1]byte
}

func (p *prefixReader) Read(b []byte) (int, error) {
	if p.i < p.n {
		k := copy(b, p.hdr[p.i:p.n])
		p.i += k
		return k, nil
	}
	return p.r.Read(b)
}

func (p *prefixReader) ReadByte() (byte, error) {
	if p.i < p.n {
		p.i++
		return p.hdr[p.i-1], nil
	}
	if p.br != nil {
		return p.br.ReadByte()
	}
	for {
		n, err := p.r.Read(p.one[:])
		if n == 1 {
			return p.one[0], nil
		}
		if err != nil {
			return 0, err
		}
	}
}

// brotliWindowBits reads WBITS from a brotli stream's first byte (RFC
// 7932 9.1); the invalid and large-window codes read as too large.
func brotliWindowBits(b byte) int {
	if b&1 == 0 {
		return 16
	}
	if n := b >> 1 & 7; n != 0 {
		return 17 + int(n)
	}
	switch n := b >> 4 & 7; n {
	case 0:
		return 17
	case 1:
		return 1 << 5
	default:
		return 8 + int(n)
	}
}

var gzipPool, zlibPool, flatePool, brotliPool, zstdPool sync.Pool
