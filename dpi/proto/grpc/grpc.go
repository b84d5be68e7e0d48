// Package grpc owns deepwall's view of gRPC over HTTP/2: recognising a
// gRPC stream (content-type application/grpc*), its service and method
// (:path), its status (grpc-status and grpc-message, in trailers or a
// trailers-only response), the length-prefixed messages of its DATA
// (reassembled across frames within a bound, gzip decoded within a
// bound), and a schema-less walk of protobuf wire format that yields the
// string and bytes fields of a message, nested messages included, for
// the rules to see.
//
// dpi/proto/http2 delivers the streams; the engine keeps a Reader per
// stream side and calls Walk on each message. Nothing here allocates per
// message except the gzip decoder's first use in a Scratch.
package grpc

import (
	"bytes"

	"github.com/deepwall/deepwall/dpi/proto/http"
	"github.com/deepwall/deepwall/internal/ascii"
)

// IsContentType reports whether a content-type names gRPC:
// "application/grpc", optionally followed by "+proto", "+json", other
// "+codec", or parameters (gRPC over HTTP/2, PROTOCOL-HTTP2.md). gRPC-Web
// ("application/grpc-web...") frames its messages the same way and is
// included; its trailer frames (flag 0x80) are skipped.
func IsContentType(ct []byte) bool {
	const prefix = "application/grpc"
	if len(ct) < len(prefix) || !ascii.EqualFold(ct[:len(prefix)], prefix) {
		return false
	}
	rest := ct[len(prefix):]
	return len(rest) == 0 || rest[0] == '+' || rest[0] == ';' || rest[0] == '-'
}

// SplitPath splits a gRPC :path, "/package.Service/Method", into its
// service ("package.Service") and method ("Method").
func SplitPath(path []byte) (service, method []byte, ok bool) {
	if len(path) < 4 || path[0] != '/' {
		return nil, nil, false
	}
	i := bytes.IndexByte(path[1:], '/')
	if i <= 0 || 1+i+1 == len(path) || bytes.IndexByte(path[i+2:], '/') >= 0 {
		return nil, nil, false
	}
	return path[1 : 1+i], path[i+2:], true
}

// Status returns grpc-status and the raw grpc-message of a header list: a
// trailer section, or the headers of a trailers-only response. ok is
// false when grpc-status is absent or not a decimal number.
func Status(hs []http.Header) (code int, message []byte, ok bool) {
	var status []byte
	for _, h := range hs {
		switch {
		case status == nil && ascii.EqualFold(h.Name, "grpc-status"):
			status = h.Value
		case message == nil && ascii.EqualFold(h.Name, "grpc-message"):
			message = h.Value
		}
	}
	if len(status) == 0 || len(status) > 9 {
		return 0, message, false
	}
	for _, c := range status {
		if c < '0' || c > '9' {
			return 0, message, false
		}
		code = code*10 + int(c-'0')
	}
	return code, message, true
}

// AppendMessage appends grpc-message raw, percent-decoded as gRPC
// encodes it, to dst.
func AppendMessage(dst, raw []byte) []byte {
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == '%' && i+2 < len(raw) {
			if h, l := unhex(raw[i+1]), unhex(raw[i+2]); h >= 0 && l >= 0 {
				dst = append(dst, byte(h<<4|l))
				i += 2
				continue
			}
		}
		dst = append(dst, c)
	}
	return dst
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
