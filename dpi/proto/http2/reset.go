package http2

// Per-stream blocking on an inline path that cannot insert bytes: the
// frames that carry a blocked stream's HEADERS or DATA are rewritten in
// place, keeping every length, so that both peers end the stream and the
// connection's other streams go on. See ResetStream.

import (
	"encoding/binary"
	"errors"

	"github.com/deepwall/deepwall/dpi/proto"
)

// Errors of ResetStream: the frames cannot be rewritten in their length;
// the caller resets the connection instead.
var (
	ErrNotFrames = errors.New("http2 reset: not a DATA frame or a whole header block")
	ErrNoRoom    = errors.New("http2 reset: no room to rewrite the frames in their length")
)

// Sizes of what a rewrite writes.
const (
	// maxTrailers is the longest trailers frame payload a DATA frame
	// becomes: the fields and at most maxPad octets of padding.
	maxTrailers = 1 + len(malformedFields) + maxPad
	// connectionName is the connection-specific field whose presence
	// makes a request malformed (RFC 9113 8.2.2), so the server resets the
	// stream (RST_STREAM PROTOCOL_ERROR) instead of serving it.
	connectionName = "connection"
	// minFill is the shortest literal of that field: 0x00, the name
	// length and name, the value length and "close".
	minFill = 2 + len(connectionName) + 1 + len("close")
	// maxPad is the most padding a frame carries (its Pad Length octet).
	maxPad = 255
)

// ResetStream rewrites in place, in the same length, frames of direction
// dir of a connection so that the stream they belong to ends for both
// peers while the connection goes on. b must be exactly either one DATA
// frame, or the frames of one header block (HEADERS and its CONTINUATION
// frames, END_HEADERS on the last), header and padding included; the
// block must be one the receiver's decoder accepts (the parser decoded
// it).
//
//   - A header block becomes a HEADERS frame (with the original
//     CONTINUATION layout) whose block keeps, byte for byte and in order,
//     every HPACK representation that changes the dynamic table (literals
//     with incremental indexing, table size updates), so the receiver's
//     decoder stays in step with the sender's encoder, followed by
//     malformedFields, a request's and a response's pseudo-headers: the
//     message is malformed (RFC 9113 8.3), the receiver resets the stream
//     (RST_STREAM PROTOCOL_ERROR to the sender) and never acts on it (a
//     server's handler never runs). Padding fills the rest, and past 255
//     octets a "connection" field, malformed too, whose value takes it.
//   - A DATA frame goes to an open stream: it becomes a trailers HEADERS
//     frame (END_STREAM) carrying malformedFields and padding, so the
//     receiver resets the stream as above, then, past 258 octets of
//     payload, a DATA frame for the stream of zeros, which the receiver
//     discards on the reset stream but counts for connection flow
//     control, so the connection's window is returned.
//
// (A WINDOW_UPDATE of increment 0, the shortest stream error of RFC 9113,
// is a connection error for nghttp2; a HEADERS frame that is valid
// trailers closes grpc-go's connection: the malformed fields are what
// x/net, grpc-go and nghttp2 all take as a stream error.)
//
// It returns ErrNoRoom when the rewrite does not fit (a DATA payload of
// 0 or 1 octets; a header block made (almost) only of insertions) and
// ErrNotFrames when b is not such frames; b is then unchanged.
func ResetStream(b []byte, dir proto.Dir) error {
	if len(b) < frameHeaderLen {
		return ErrNotFrames
	}
	length := int(b[0])<<16 | int(b[1])<<8 | int(b[2])
	typ, sid := b[3], streamBE(b[5:9])
	if sid == 0 {
		return ErrNotFrames
	}
	switch typ {
	case frameData:
		if frameHeaderLen+length != len(b) {
			return ErrNotFrames
		}
		return resetData(b, sid, length)
	case frameHeaders:
		return resetBlock(b, sid, dir)
	}
	return ErrNotFrames
}

func resetData(b []byte, sid uint32, length int) error {
	// The trailers' payload p: the two pseudo-headers, after a pad
	// length octet when longer; the rest, if any, a DATA frame of at
	// least its header.
	p := length
	if p > maxTrailers {
		p = maxTrailers
		if length-p < frameHeaderLen {
			p = length - frameHeaderLen
		}
	}
	if p < len(malformedFields) {
		return ErrNoRoom
	}
	flags := uint8(flagEndStream | flagEndHeaders)
	t := b[frameHeaderLen : frameHeaderLen+p]
	if p > len(malformedFields) {
		flags |= flagPadded
		t[0] = byte(p - 1 - len(malformedFields))
		t = t[1:]
	}
	putFrameHeader(b, p, frameHeaders, flags, sid)
	clear(t[copy(t, malformedFields):])
	if rest := b[frameHeaderLen+p:]; len(rest) > 0 {
		putFrameHeader(rest, len(rest)-frameHeaderLen, frameData, 0, sid)
		clear(rest[frameHeaderLen:])
	}
	return nil
}

func putFrameHeader(b []byte, length int, typ, flags uint8, sid uint32) {
	b[0], b[1], b[2] = byte(length>>16), byte(length>>8), byte(length)
	b[3], b[4] = typ, flags
	binary.BigEndian.PutUint32(b[5:9], sid&(1<<31-1))
}

// maxBlockFrames bounds the frames of a header block ResetStream
// rewrites (the parser bounds CONTINUATIONs lower).
const maxBlockFrames = 64

// resetBlock rewrites a header block's frames.
func resetBlock(b []byte, sid uint32, dir proto.Dir) error {
	// The frames: their offsets and payload lengths, and the block's
	// fragments gathered.
	var at, size [maxBlockFrames]int
	n, room := 0, 0
	var block []byte
	var endStream bool
	for off := 0; off < len(b); n++ {
		if n == maxBlockFrames || len(b)-off < frameHeaderLen {
			return ErrNotFrames
		}
		h := b[off:]
		length := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
		typ, flags := h[3], h[4]
		if streamBE(h[5:9]) != sid || frameHeaderLen+length > len(h) ||
			(n == 0) != (typ == frameHeaders) || n > 0 && typ != frameContinuation {
			return ErrNotFrames
		}
		p := h[frameHeaderLen : frameHeaderLen+length]
		if n == 0 {
			endStream = flags&flagEndStream != 0
			if flags&flagPadded != 0 {
				if len(p) < 1 || int(p[0]) > len(p)-1 {
					return ErrNotFrames
				}
				p = p[1 : len(p)-int(p[0])]
			}
			if flags&flagPriority != 0 {
				if len(p) < 5 {
					return ErrNotFrames
				}
				p = p[5:]
			}
		}
		block = append(block, p...)
		at[n], size[n] = off, length
		room += length
		off += frameHeaderLen + length
		if flags&flagEndHeaders != 0 && off != len(b) {
			return ErrNotFrames
		}
		if flags&flagEndHeaders == 0 && off == len(b) {
			return ErrNotFrames
		}
	}
	kept, ok := tableUpdates(block)
	if !ok {
		return ErrNotFrames
	}
	if n > 1 && size[n-1] == 0 {
		// The malformed field would come before an empty CONTINUATION.
		return ErrNoRoom
	}
	nb, pad, ok := malformedBlock(kept, room, size[0])
	if !ok {
		return ErrNoRoom
	}
	// Write the frames: the first HEADERS (after the WINDOW_UPDATE for a
	// response) with pad length, its part of the block and the padding;
	// the CONTINUATIONs, same lengths, with the rest.
	flags := uint8(0)
	if pad >= 0 {
		flags |= flagPadded
	}
	if endStream {
		flags |= flagEndStream
	}
	if n == 1 {
		flags |= flagEndHeaders
	}
	h := b
	l0 := size[0]
	putFrameHeader(h, l0, frameHeaders, flags, sid)
	p := h[frameHeaderLen : frameHeaderLen+l0]
	if pad >= 0 {
		p[0] = byte(pad)
		clear(p[len(p)-pad:])
		p = p[1 : len(p)-pad]
	}
	nb = nb[copy(p, nb):]
	for i := 1; i < n; i++ {
		f := uint8(0)
		if i == n-1 {
			f = flagEndHeaders
		}
		h := b[at[i]:]
		putFrameHeader(h, size[i], frameContinuation, f, sid)
		nb = nb[copy(h[frameHeaderLen:frameHeaderLen+size[i]], nb):]
	}
	return nil
}

// malformedBlock returns the block that replaces a blocked one and its
// padding (-1: no PADDED flag), room octets in all: kept (the table
// insertions); when padding (a pad length octet and at most 255, all in
// the first frame of first octets) cannot fill the rest, a "connection"
// field whose value does (malformed too, RFC 9113 8.2.2); and last
// malformedFields, so in the block's last frame: x/net closes the
// connection when a CONTINUATION follows a field it found invalid.
func malformedBlock(kept []byte, room, first int) (nb []byte, pad int, ok bool) {
	fill := room - len(kept) - len(malformedFields)
	switch {
	case fill < 0:
		return nil, 0, false
	case fill == 0:
		pad = -1
	case fill-1 <= min(maxPad, first-1):
		pad = fill - 1
	default:
		var value int
		pad, value = fitFill(fill - 1)
		if value < 0 || pad > first-1 {
			return nil, 0, false
		}
		nb = make([]byte, 0, room-pad-1)
		nb = appendConnectionField(append(nb, kept...), value)
		return append(nb, malformedFields...), pad, true
	}
	nb = make([]byte, 0, len(kept)+len(malformedFields))
	return append(append(nb, kept...), malformedFields...), pad, true
}

// malformedFields are ":method: GET" and ":status: 200" indexed from
// the HPACK static table (indexes 2 and 8): a header list with both
// pseudo-headers of a request and of a response is malformed (RFC 9113
// 8.3) in any message, and they change no dynamic table. x/net's Framer
// (Go's servers and clients, grpc-go) reports a stream error for it
// before the peer acts on the frame; nghttp2 resets the stream on either
// field (an unknown pseudo-header for its message, or any in trailers).
const malformedFields = "\x82\x88"

// fitFill chooses the padding and the value length of the connection
// field that fill room bytes exactly: value -1 if none do.
func fitFill(room int) (pad, value int) {
	for pad = 0; pad <= maxPad && room-pad >= minFill; pad++ {
		need := room - pad - 2 - len(connectionName)
		// need = the value's length prefix + the value.
		for w := 1; w <= 4; w++ {
			if v := need - w; v >= len("close") && intLen7(v) == w {
				return pad, v
			}
		}
	}
	return 0, -1
}

// intLen7 is the length of an HPACK integer with a 7-bit prefix.
func intLen7(v int) int {
	n := 1
	if v < 127 {
		return n
	}
	for v -= 127; ; v >>= 7 {
		n++
		if v < 128 {
			return n
		}
	}
}

// appendConnectionField appends a literal without indexing, new name,
// "connection: close" with the value filled with 'x' to value bytes.
func appendConnectionField(b []byte, value int) []byte {
	b = append(b, 0x00, byte(len(connectionName)))
	b = append(b, connectionName...)
	b = appendInt(b, 7, 0, uint64(value))
	b = append(b, "close"...)
	for range value - len("close") {
		b = append(b, 'x')
	}
	return b
}

// appendInt appends an HPACK integer with an n-bit prefix, first the
// bits above the prefix.
func appendInt(b []byte, n uint, first byte, v uint64) []byte {
	max := uint64(1)<<n - 1
	if v < max {
		return append(b, first|byte(v))
	}
	b = append(b, first|byte(max))
	for v -= max; v >= 128; v >>= 7 {
		b = append(b, byte(v&0x7f|0x80))
	}
	return append(b, byte(v))
}

// tableUpdates returns the representations of an HPACK block that change
// the decoder's dynamic table, in order and byte for byte: literals with
// incremental indexing and dynamic table size updates (RFC 7541 6). It
// reports false if the block does not parse.
func tableUpdates(block []byte) ([]byte, bool) {
	var kept []byte
	for len(block) > 0 {
		c := block[0]
		var n int
		var ok, keep bool
		switch {
		case c&0x80 != 0: // indexed field
			n, ok = skipInt(block, 7)
		case c&0xc0 == 0x40: // literal with incremental indexing
			n, ok = skipLiteral(block, 6)
			keep = true
		case c&0xe0 == 0x20: // dynamic table size update
			n, ok = skipInt(block, 5)
			keep = true
		default: // literal without indexing or never indexed
			n, ok = skipLiteral(block, 4)
		}
		if !ok {
			return nil, false
		}
		if keep {
			kept = append(kept, block[:n]...)
		}
		block = block[n:]
	}
	return kept, true
}

// maxIntBytes bounds an HPACK integer's continuation octets (values
// past 2^35 are no header block's).
const maxIntBytes = 5

// readInt reads an HPACK integer with an n-bit prefix: its value and
// length.
func readInt(b []byte, n uint) (uint64, int, bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	max := uint64(1)<<n - 1
	v := uint64(b[0]) & max
	if v < max {
		return v, 1, true
	}
	for i := 1; i < len(b) && i <= maxIntBytes; i++ {
		v += uint64(b[i]&0x7f) << (7 * (i - 1))
		if b[i]&0x80 == 0 {
			return v, i + 1, true
		}
	}
	return 0, 0, false
}

func skipInt(b []byte, n uint) (int, bool) {
	_, l, ok := readInt(b, n)
	return l, ok
}

// skipLiteral returns the length of a literal field representation: its
// name index (n-bit prefix; 0: a name string follows) and value string.
func skipLiteral(b []byte, n uint) (int, bool) {
	idx, l, ok := readInt(b, n)
	if !ok {
		return 0, false
	}
	if idx == 0 {
		sl, ok := skipString(b[l:])
		if !ok {
			return 0, false
		}
		l += sl
	}
	sl, ok := skipString(b[l:])
	return l + sl, ok
}

// skipString returns the length of a string literal: its length (7-bit
// prefix after the Huffman bit) and octets.
func skipString(b []byte) (int, bool) {
	v, l, ok := readInt(b, 7)
	if !ok || v > uint64(len(b)-l) {
		return 0, false
	}
	return l + int(v), true
}
