package http2

import (
	"bytes"

	"github.com/deepwall/deepwall/dpi/proto/http"
	"github.com/deepwall/deepwall/internal/ascii"
)

// IsUpgrade reports whether an HTTP/1 response switches its connection to
// HTTP/2 cleartext: a 101 with "Upgrade: h2c" (RFC 7540 3.2). After it,
// the engine calls Upgrade with UpgradeSettings of the request the
// response answers, and feeds both directions from where the HTTP/1
// parser stopped.
func IsUpgrade(r *http.Response) bool {
	return r.Status == 101 && ascii.EqualFold(bytes.TrimSpace(r.Header("Upgrade")), "h2c")
}

// UpgradeSettings returns the HTTP2-Settings value of an upgrade request
// (nil if absent), for Upgrade. The slice is the request's: copy it if it
// must outlive the RequestHeaders call.
func UpgradeSettings(r *http.Request) []byte { return r.Header("HTTP2-Settings") }
