// Package http2 owns the incremental HTTP/2 parser of deepwall's DPI
// (RFC 9113, cleartext: prior knowledge or Upgrade: h2c). It turns the
// reassembled bytes of a connection's two directions into per-stream
// request and response events — the same http.Request and http.Response
// the HTTP/1 parser (dpi/proto/http) fills, pseudo-headers mapped to their
// HTTP/1 meaning — and reports malformed frames and HTTP/2 attacks (rapid
// reset, CONTINUATION flood, HPACK bomb, SETTINGS and PING floods,
// stream-id misuse) as findings.
//
// Frames are parsed as they arrive, a chunk at a time: DATA is handed on
// as slices of the input, control frames are read through a few fixed
// bytes, and only a header block that spans chunks or CONTINUATION frames
// is buffered (at most Limits.MaxHeaderBlock per direction). Header blocks
// are decoded with golang.org/x/net/http2/hpack, one decoder (and dynamic
// table, at most Limits.MaxTableSize) per direction. Per-message buffers
// live in a Scratch shared by the connections of a worker, as in
// dpi/proto/http.
package http2

import (
	"time"

	"golang.org/x/net/http2/hpack"

	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/dpi/proto/http"
)

// Limits bound what a parser tracks, buffers and accepts. Exceeding a
// size bound is a fatal finding; the flood and reset bounds are findings
// that rules may block on.
type Limits struct {
	// MaxStreams bounds the streams tracked at once on a connection
	// (open or half-closed). Servers advertise 100 to 250 in
	// SETTINGS_MAX_CONCURRENT_STREAMS; one more is fatal
	// (http2.too_many_streams).
	MaxStreams int
	// MaxHeaderBlock bounds the encoded bytes of one header block,
	// HEADERS or PUSH_PROMISE and its CONTINUATION frames. It is the
	// most a connection buffers per direction.
	MaxHeaderBlock int
	// MaxContinuations bounds the CONTINUATION frames of one header
	// block: senders split a block only when it outgrows a frame, so
	// many small ones are the CONTINUATION flood.
	MaxContinuations int
	// MaxHeaderListSize bounds a decoded header list, counted as RFC
	// 9113 6.5.2 does (name + value + 32 per field).
	MaxHeaderListSize int
	// MaxHeaderCount bounds the fields of one header list.
	MaxHeaderCount int
	// MaxTableSize bounds each HPACK dynamic table: a peer may announce
	// more in SETTINGS_HEADER_TABLE_SIZE, but an encoder that uses more
	// is a fatal http2.hpack_error.
	MaxTableSize int
	// MaxHPACKRatio bounds decoded/encoded size of a header block once
	// its list passes hpackBombFloor (fatal http2.hpack_bomb).
	MaxHPACKRatio int
	// MaxRapidResets bounds the streams the client resets before their
	// response ended within RapidResetWindow of SetTime's clock
	// (http2.rapid_reset, CVE-2023-44487).
	MaxRapidResets   int
	RapidResetWindow time.Duration
	// MaxUnackedPings and MaxUnackedSettings bound the PING and SETTINGS
	// frames one side sends before the other acknowledges them: a peer
	// flooding control frames faster than it reads the ACKs
	// (CVE-2019-9512, CVE-2019-9515). MaxUnackedSettings is at most
	// maxPendingSettings.
	MaxUnackedPings    int
	MaxUnackedSettings int
}

// Default limits.
const (
	DefaultMaxStreams         = 256
	DefaultMaxHeaderBlock     = 64 << 10
	DefaultMaxContinuations   = 32
	DefaultMaxHeaderListSize  = 64 << 10
	DefaultMaxHeaderCount     = 128
	DefaultMaxTableSize       = 64 << 10
	DefaultMaxHPACKRatio      = 100
	DefaultMaxRapidResets     = 100
	DefaultRapidResetWindow   = time.Second
	DefaultMaxUnackedPings    = 32
	DefaultMaxUnackedSettings = 8
)

// hpackBombFloor is the decoded header-list size from which the
// decoded/encoded ratio counts: below it a high ratio is ordinary (a
// 4 KiB cookie sent again as a one-byte table index).
const hpackBombFloor = 32 << 10

// maxPendingSettings bounds the SETTINGS frames of one side whose values
// wait for the other side's ACK.
const maxPendingSettings = 16

// DefaultLimits returns the default limits.
func DefaultLimits() Limits {
	return Limits{
		MaxStreams:         DefaultMaxStreams,
		MaxHeaderBlock:     DefaultMaxHeaderBlock,
		MaxContinuations:   DefaultMaxContinuations,
		MaxHeaderListSize:  DefaultMaxHeaderListSize,
		MaxHeaderCount:     DefaultMaxHeaderCount,
		MaxTableSize:       DefaultMaxTableSize,
		MaxHPACKRatio:      DefaultMaxHPACKRatio,
		MaxRapidResets:     DefaultMaxRapidResets,
		RapidResetWindow:   DefaultRapidResetWindow,
		MaxUnackedPings:    DefaultMaxUnackedPings,
		MaxUnackedSettings: DefaultMaxUnackedSettings,
	}
}

// withDefaults fills zero (or negative) fields with the defaults.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	def := func(v *int, dv int) {
		if *v <= 0 {
			*v = dv
		}
	}
	def(&l.MaxStreams, d.MaxStreams)
	def(&l.MaxHeaderBlock, d.MaxHeaderBlock)
	def(&l.MaxContinuations, d.MaxContinuations)
	def(&l.MaxHeaderListSize, d.MaxHeaderListSize)
	def(&l.MaxHeaderCount, d.MaxHeaderCount)
	def(&l.MaxTableSize, d.MaxTableSize)
	def(&l.MaxHPACKRatio, d.MaxHPACKRatio)
	def(&l.MaxRapidResets, d.MaxRapidResets)
	def(&l.MaxUnackedPings, d.MaxUnackedPings)
	def(&l.MaxUnackedSettings, d.MaxUnackedSettings)
	l.MaxUnackedSettings = min(l.MaxUnackedSettings, maxPendingSettings)
	if l.RapidResetWindow <= 0 {
		l.RapidResetWindow = d.RapidResetWindow
	}
	return l
}

// End says how a stream ended (Sink.StreamClosed).
type End uint8

const (
	// EndComplete: both sides ended the stream (END_STREAM).
	EndComplete End = iota
	// EndResetByClient, EndResetByServer: RST_STREAM from that side.
	EndResetByClient
	EndResetByServer
	// EndConnection: the connection ended first (Close of both
	// directions).
	EndConnection
)

var endNames = [...]string{"complete", "reset_by_client", "reset_by_server", "connection"}

// String returns "complete", "reset_by_client", "reset_by_server" or
// "connection".
func (e End) String() string {
	if int(e) < len(endNames) {
		return endNames[e]
	}
	return "unknown"
}

// Sink receives a connection's events. Calls for one stream come in the
// order of the stream's frames; streams interleave as their frames do.
// Slices passed to it are valid only during the call.
//
// Per stream and direction: a headers call first (RequestHeaders,
// ResponseHeaders; 1xx responses before the final one come as
// ResponseHeaders with Interim set and no body), then body calls with end
// false, at most one Trailers call, and one body call with end true (its
// chunk may be empty) when the side ends the stream. StreamClosed comes
// once for every stream that had RequestHeaders (or stream 1 after
// Upgrade), after its last other call; a stream reset or cut by the
// connection's end gets no end-true call for the unfinished side. After a
// fatal Finding nothing more is called: the engine drops the connection's
// stream state. Finding's stream is 0 for connection-level findings.
//
// Request.Seq numbers a connection's requests from 0 in the order of
// their HEADERS (Response.Seq is its request's); Proto is "HTTP/2.0".
type Sink interface {
	RequestHeaders(stream uint32, r *http.Request)
	RequestBody(stream uint32, chunk []byte, end bool)
	ResponseHeaders(stream uint32, r *http.Response)
	ResponseBody(stream uint32, chunk []byte, end bool)
	// Trailers delivers a trailer section (HEADERS ending a stream that
	// had its head already), in the Header/HeaderBlock form of
	// http.Request.
	Trailers(stream uint32, dir proto.Dir, hs []http.Header, block []byte)
	StreamClosed(stream uint32, how End)
	Finding(stream uint32, f proto.Finding)
}

// Scratch holds the buffers a parser decodes each header block into. Data
// passed to a Sink lives here only until the callback returns, so one
// Scratch serves every connection of a worker (the callbacks of one worker
// never overlap). Not safe for concurrent use.
type Scratch struct {
	lim Limits
	// hs splits :path as HTTP/1 splits a request-target and holds the
	// Request and Response handed to the Sink.
	hs   *http.Scratch
	req  http.Request
	resp http.Response
	// decoded is the decoded header list, its strings x/net/hpack's
	// (shared with its table); pbuf holds the pseudo-header values the
	// Request fields need as bytes.
	decoded []hpack.HeaderField
	pbuf    []byte
	// size is the list's RFC 9113 size; over says a bound stopped it.
	size int
	over bool
	// The Sink's view: norm is the "name: value\r\n" block that headers
	// point into; cookie joins crumbled cookies.
	norm    []byte
	headers []http.Header
	cookie  []byte
	uriSet  proto.KindSet
}

// NewScratch returns buffers for parsers with limits lim (zero fields take
// the defaults). hs is the worker's HTTP/1 Scratch, whose limits
// (MaxArgs) and path buffers :path uses; nil makes one with the HTTP/1
// defaults.
func NewScratch(lim Limits, hs *http.Scratch) *Scratch {
	lim = lim.withDefaults()
	if hs == nil {
		hs = http.NewScratch(http.Limits{})
	}
	return &Scratch{
		lim:     lim,
		hs:      hs,
		decoded: make([]hpack.HeaderField, 0, lim.MaxHeaderCount),
		headers: make([]http.Header, 0, lim.MaxHeaderCount+1),
	}
}

// Limits returns the limits in force.
func (sc *Scratch) Limits() Limits { return sc.lim }
