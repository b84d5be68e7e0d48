// Package http owns the incremental HTTP/1.x parser of deepwall's DPI: it
// turns the reassembled bytes of a connection's two directions into
// request and response events (method, target, normalised path, decoded
// arguments, headers, status, streamed bodies) for rule matching, and
// reports malformed input, request-smuggling signals and path-obfuscation
// tricks as findings.
//
// The parser is hand-written rather than built on fasthttp's header
// parser: fasthttp parses only a complete header block, stops at the first
// anomaly with an error (a DPI must name every anomaly and often keep
// going), and normalises names. It serves as a differential oracle in the
// tests instead; docs/protocols.md gives the measured comparison.
//
// Memory is bounded per connection (Limits) and steady-state parsing does
// not allocate: message data is handed to the Sink as slices into the
// input or into reused buffers, valid only during the callback.
package http

import (
	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/internal/ascii"
)

// Limits bound what the parser buffers and accepts. Exceeding one is a
// finding; the size limits are fatal (the parser stops the connection).
type Limits struct {
	// MaxRequestLine bounds the request line or status line, line end
	// included.
	MaxRequestLine int
	// MaxHeaderBytes bounds a header block (start line, fields, empty
	// line), and separately a chunked body's trailer section. It is also
	// the most a connection buffers per direction.
	MaxHeaderBytes int
	// MaxHeaderCount bounds the header fields of one message.
	MaxHeaderCount int
	// MaxChunkLine bounds a chunk-size line (size, extensions, line end).
	MaxChunkLine int
	// MaxArgs bounds the query arguments split into Request.Args; the
	// rest of the query stays in ArgsBuf unsplit (non-fatal finding).
	MaxArgs int
	// MaxDecodedBody bounds the decoded text of one content-coded body;
	// what follows is not inspected (non-fatal http.decode_limit).
	MaxDecodedBody int
	// MaxDecodeRatio bounds decoded/encoded bytes of a body once it
	// decoded past 256 KiB (fatal http.decompression_bomb).
	MaxDecodeRatio int
	// MaxDecoderMemory bounds the decoder memory reserved at once by
	// the connections sharing a Scratch (one worker): a decoder that
	// does not fit stops its connection (fatal http.decoder_memory).
	MaxDecoderMemory int
}

// Default limits, close to what common servers accept (nginx: 8 KiB
// request line; Apache: 8 KiB fields, 100 fields).
const (
	DefaultMaxRequestLine = 8 << 10
	DefaultMaxHeaderBytes = 32 << 10
	DefaultMaxHeaderCount = 128
	DefaultMaxChunkLine   = 1 << 10
	DefaultMaxArgs        = 256
)

// MaxPipelined bounds the requests that may await their responses on one
// connection; one more is a fatal finding (responses could no longer be
// matched to requests, and HEAD matters for framing).
const MaxPipelined = 64

// DefaultLimits returns the default limits.
func DefaultLimits() Limits {
	return Limits{
		MaxRequestLine: DefaultMaxRequestLine,
		MaxHeaderBytes: DefaultMaxHeaderBytes,
		MaxHeaderCount: DefaultMaxHeaderCount,
		MaxChunkLine:   DefaultMaxChunkLine,
		MaxArgs:        DefaultMaxArgs,

		MaxDecodedBody:   DefaultMaxDecodedBody,
		MaxDecodeRatio:   DefaultMaxDecodeRatio,
		MaxDecoderMemory: DefaultMaxDecoderMemory,
	}
}

// withDefaults fills zero fields with the defaults.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxRequestLine <= 0 {
		l.MaxRequestLine = d.MaxRequestLine
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = d.MaxHeaderBytes
	}
	if l.MaxHeaderCount <= 0 {
		l.MaxHeaderCount = d.MaxHeaderCount
	}
	if l.MaxChunkLine <= 0 {
		l.MaxChunkLine = d.MaxChunkLine
	}
	if l.MaxArgs <= 0 {
		l.MaxArgs = d.MaxArgs
	}
	if l.MaxDecodedBody <= 0 {
		l.MaxDecodedBody = d.MaxDecodedBody
	}
	if l.MaxDecodeRatio <= 0 {
		l.MaxDecodeRatio = d.MaxDecodeRatio
	}
	if l.MaxDecoderMemory <= 0 {
		l.MaxDecoderMemory = d.MaxDecoderMemory
	}
	return l
}

// Header is one header field, its value trimmed of surrounding whitespace
// and unfolded.
type Header struct {
	Name, Value []byte
}

// Arg is one query argument, percent-decoded ('+' is a space).
type Arg struct {
	Name, Value []byte
}

// Request is a parsed request head. Every slice is valid only during the
// Sink call that receives the Request.
type Request struct {
	// Method is the method as sent ("GET").
	Method []byte
	// URI is the raw request-target ("/a/../b?x=%41").
	URI []byte
	// Path is the target's path, percent-decoded and normalised (see
	// NormalizePath): "/b". For an absolute-form target it is the path
	// part; for CONNECT's authority-form it is empty; for "*" it is "*".
	Path []byte
	// Query is the raw query, after '?' and before any '#'.
	Query []byte
	// Args are the decoded query arguments, at most Limits.MaxArgs.
	Args []Arg
	// ArgsBuf is the decoded query as one buffer, "name=value&name=value"
	// (what the http.args rule field matches). Args point into it.
	ArgsBuf []byte
	// Proto is the version as sent ("HTTP/1.1"), Minor its minor number.
	Proto []byte
	Minor int
	// Headers are the header fields in order.
	Headers []Header
	// HeaderBlock is every field as "Name: value\r\n", in order (what the
	// http.headers rule field matches). Headers point into it.
	HeaderBlock []byte
	// Host and UserAgent are the first Host and User-Agent values (Host
	// from the target when it is absolute-form and Host is absent).
	Host, UserAgent []byte
	// ContentLength is the body length, or -1 when not given or when the
	// body is chunked.
	ContentLength int64
	// Chunked says the body uses chunked transfer coding.
	Chunked bool
	// Seq numbers the requests of a connection from 0.
	Seq int64
	// Offset is the stream offset of the request's first byte.
	Offset int64
}

// Header returns the value of the first field named name (ASCII
// case-insensitive), or nil.
func (r *Request) Header(name string) []byte { return lookup(r.Headers, name) }

// Response is a parsed response head. Every slice is valid only during the
// Sink call that receives the Response.
type Response struct {
	// Proto is the version as sent ("HTTP/1.1"), Minor its minor number.
	Proto []byte
	Minor int
	// Status is the three-digit status code, Reason the reason phrase.
	Status int
	Reason []byte
	// Headers and HeaderBlock are as in Request.
	Headers     []Header
	HeaderBlock []byte
	// ContentLength is the Content-Length value, or -1 when absent or
	// when the body is chunked. A response that has no body by rule
	// (to HEAD, 1xx, 204, 304, a CONNECT's 2xx) may still carry one;
	// the parser then reads no body.
	ContentLength int64
	Chunked       bool
	// Seq is the Seq of the request this response answers, or -1 when
	// there was none (HTTPUnsolicitedResponse).
	Seq int64
	// Interim is true for 1xx responses other than 101: the final
	// response to the same request follows.
	Interim bool
	// Offset is the stream offset of the response's first byte.
	Offset int64
}

// Header returns the value of the first field named name (ASCII
// case-insensitive), or nil.
func (r *Response) Header(name string) []byte { return lookup(r.Headers, name) }

func lookup(hs []Header, name string) []byte {
	for i := range hs {
		if ascii.EqualFold(hs[i].Name, name) {
			return hs[i].Value
		}
	}
	return nil
}

// Sink receives a connection's events, in stream order per direction.
// Slices passed to it are valid only during the call: copy what must
// outlive it.
//
// For every message (request or response), the headers call comes first,
// then zero or more body calls with end false and exactly one with end
// true (its chunk may be empty), unless the parser stops (a fatal Finding)
// or the connection ends inside the message (Close reports
// HTTPTruncated). A message without a body gets a single empty call with
// end true, so the engine can open and close per-message stream state
// uniformly. Interim (1xx) responses get no body calls.
type Sink interface {
	RequestHeaders(r *Request)
	RequestBody(chunk []byte, end bool)
	ResponseHeaders(r *Response)
	ResponseBody(chunk []byte, end bool)
	Finding(f proto.Finding)
}
