package grpc

// Length-prefixed messages (gRPC over HTTP/2: a compressed-flag byte, a
// 4-byte big-endian length, the message) split from a stream side's DATA.

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"io"

	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/internal/ascii"
)

// Limits bound what gRPC inspection buffers, decodes and walks.
type Limits struct {
	// MaxMessage bounds a message reassembled from several DATA
	// chunks (a Reader's buffer); a longer message is skipped
	// (grpc.message_too_large). gRPC's own default receive limit is
	// 4 MiB; most messages are far smaller.
	MaxMessage int
	// MaxDecoded bounds a gzip message's decoded size (the Scratch's
	// buffer); the rest is not inspected (grpc.decode_limit).
	MaxDecoded int
	// MaxDepth bounds how deep Walk descends into nested messages, and
	// MaxFields the fields it visits in one message, nested ones
	// included (grpc.walk_limit).
	MaxDepth  int
	MaxFields int
}

// Default limits.
const (
	DefaultMaxMessage = 256 << 10
	DefaultMaxDecoded = 1 << 20
	DefaultMaxDepth   = 10
	DefaultMaxFields  = 4096
)

// withDefaults fills zero fields with the defaults.
func (l Limits) withDefaults() Limits {
	if l.MaxMessage <= 0 {
		l.MaxMessage = DefaultMaxMessage
	}
	if l.MaxDecoded <= 0 {
		l.MaxDecoded = DefaultMaxDecoded
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	if l.MaxDepth > maxDepth {
		l.MaxDepth = maxDepth
	}
	if l.MaxFields <= 0 {
		l.MaxFields = DefaultMaxFields
	}
	return l
}

// maxDepth is the deepest MaxDepth may be: the size of a Walker's path.
const maxDepth = 32

// Scratch holds what one worker's streams share: the gzip decoder and its
// output buffer, valid until the next message. Not safe for concurrent
// use.
type Scratch struct {
	lim Limits
	gz  *gzip.Reader
	src bytes.Reader
	out []byte
	// Walker walks the messages (Walk).
	Walker Walker
}

// NewScratch returns a Scratch with limits lim (zero fields take the
// defaults).
func NewScratch(lim Limits) *Scratch {
	lim = lim.withDefaults()
	return &Scratch{lim: lim, Walker: Walker{lim: lim}}
}

// Handler receives what a Reader finds.
type Handler interface {
	// Message gets each complete message, gunzipped when it was
	// compressed; valid only during the call.
	Message(msg []byte)
	Finding(k proto.FindingKind)
}

// Encoding is a stream's grpc-encoding.
type Encoding uint8

// Encodings.
const (
	EncodingIdentity Encoding = iota
	EncodingGzip
	EncodingOther
)

// ParseEncoding maps a grpc-encoding value (absent: identity).
func ParseEncoding(v []byte) Encoding {
	switch {
	case len(v) == 0, ascii.EqualFold(v, "identity"):
		return EncodingIdentity
	case ascii.EqualFold(v, "gzip"):
		return EncodingGzip
	}
	return EncodingOther
}

// Reader splits one stream side's DATA into messages. The zero Reader
// reads identity-encoded messages; Reset readies it for a stream.
type Reader struct {
	enc  Encoding
	hdr  [5]byte
	hn   int
	left int  // message bytes still to come
	skip bool // the message is over MaxMessage: dropped
	buf  []byte
}

// Reset readies r for a new stream side whose grpc-encoding is enc,
// keeping its buffer.
func (r *Reader) Reset(enc Encoding) {
	*r = Reader{enc: enc, buf: r.buf[:0]}
}

// Feed reads the next chunk of the side's DATA.
func (r *Reader) Feed(sc *Scratch, chunk []byte, h Handler) {
	for len(chunk) > 0 {
		if r.hn < len(r.hdr) {
			if r.hn == 0 && len(chunk) >= 5 {
				n := int(binary.BigEndian.Uint32(chunk[1:5]))
				if len(chunk)-5 >= n && n <= sc.lim.MaxMessage {
					// The whole message is here: no copy (the same
					// bound applies, so chunking changes nothing).
					r.message(sc, chunk[0], chunk[5:5+n], h)
					chunk = chunk[5+n:]
					continue
				}
			}
			n := copy(r.hdr[r.hn:], chunk)
			r.hn += n
			chunk = chunk[n:]
			if r.hn < len(r.hdr) {
				return
			}
			r.left = int(binary.BigEndian.Uint32(r.hdr[1:]))
			r.skip = r.left > sc.lim.MaxMessage
			if r.skip {
				h.Finding(proto.GRPCMessageTooLarge)
			}
			r.buf = r.buf[:0]
			if r.left == 0 {
				r.hn = 0
				r.message(sc, r.hdr[0], nil, h)
			}
			continue
		}
		n := min(r.left, len(chunk))
		if !r.skip {
			r.buf = append(r.buf, chunk[:n]...)
		}
		r.left -= n
		chunk = chunk[n:]
		if r.left == 0 {
			r.hn = 0
			if !r.skip {
				r.message(sc, r.hdr[0], r.buf, h)
			}
			r.skip = false
		}
	}
}

// Buffered returns the bytes of a message in progress that r holds
// (those of a message spanning chunks), so that a caller reading many
// streams can bound their sum.
func (r *Reader) Buffered() int {
	if r.hn == len(r.hdr) && !r.skip {
		return len(r.buf)
	}
	return 0
}

// End tells r that the side ended: a message cut short is
// grpc.truncated.
func (r *Reader) End(h Handler) {
	if r.hn > 0 {
		h.Finding(proto.GRPCTruncated)
	}
	r.hn, r.left, r.skip = 0, 0, false
}

// message delivers a complete message, decompressed if flag says so.
func (r *Reader) message(sc *Scratch, flag byte, msg []byte, h Handler) {
	if flag&0x80 != 0 {
		// gRPC-Web trailers frame: header text, not a message.
		return
	}
	if flag&1 == 0 {
		h.Message(msg)
		return
	}
	switch r.enc {
	case EncodingGzip:
		out, err := sc.gunzip(msg)
		switch {
		case err == errLimit:
			h.Finding(proto.GRPCDecodeLimit)
		case err != nil:
			h.Finding(proto.GRPCDecodeError)
			return
		}
		h.Message(out)
	default:
		h.Finding(proto.GRPCUnknownEncoding)
	}
}

type limitError struct{}

func (limitError) Error() string { return "decoded message over the limit" }

var errLimit error = limitError{}

// gunzip decodes msg into the Scratch's buffer, at most MaxDecoded bytes.
func (sc *Scratch) gunzip(msg []byte) ([]byte, error) {
	sc.src.Reset(msg)
	var err error
	if sc.gz == nil {
		sc.gz, err = gzip.NewReader(&sc.src)
	} else {
		err = sc.gz.Reset(&sc.src)
	}
	if err != nil {
		return nil, err
	}
	sc.gz.Multistream(false)
	lim := sc.lim.MaxDecoded
	if cap(sc.out) == 0 {
		sc.out = make([]byte, 0, min(lim, max(4096, 4*len(msg))))
	}
	out := sc.out[:0]
	for {
		if len(out) == cap(out) {
			if len(out) >= lim {
				// One more byte says whether the limit cut it.
				var one [1]byte
				if n, _ := sc.gz.Read(one[:]); n > 0 {
					sc.out = out
					return out, errLimit
				}
				break
			}
			out = append(out, 0)[:len(out)]
			out = out[:len(out):min(cap(out), lim)]
		}
		n, rerr := sc.gz.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			sc.out = out
			return out, rerr
		}
	}
	sc.out = out
	return out, nil
}
