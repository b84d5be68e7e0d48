package decode

import (
	"errors"

	"github.com/gopacket/gopacket"
)

// Sentinel errors, one per Reason; an *Error unwraps to the one of its
// Reason, so errors.Is(err, decode.ErrTruncated) works.
var (
	ErrShort         = errors.New("frame shorter than an ethernet header")
	ErrTruncated     = errors.New("header or declared length runs past the end of the frame")
	ErrMalformed     = errors.New("malformed header")
	ErrVersion       = errors.New("ip version does not match the ethertype")
	ErrTooManyVLANs  = errors.New("too many vlan tags")
	ErrTooManyExt    = errors.New("too many ipv6 extension headers")
	ErrHopByHopOrder = errors.New("ipv6 hop-by-hop header not first")
	ErrMissingL4     = errors.New("ip packet ends before its transport header")
)

// Reason classifies why a frame could not be decoded.
type Reason uint8

// Reasons for decode errors.
const (
	ReasonShort         Reason = iota + 1 // ErrShort
	ReasonTruncated                       // ErrTruncated
	ReasonMalformed                       // ErrMalformed
	ReasonVersion                         // ErrVersion
	ReasonTooManyVLANs                    // ErrTooManyVLANs
	ReasonTooManyExt                      // ErrTooManyExt
	ReasonHopByHopOrder                   // ErrHopByHopOrder
	ReasonMissingL4                       // ErrMissingL4
)

var reasonErr = [...]error{
	ReasonShort:         ErrShort,
	ReasonTruncated:     ErrTruncated,
	ReasonMalformed:     ErrMalformed,
	ReasonVersion:       ErrVersion,
	ReasonTooManyVLANs:  ErrTooManyVLANs,
	ReasonTooManyExt:    ErrTooManyExt,
	ReasonHopByHopOrder: ErrHopByHopOrder,
	ReasonMissingL4:     ErrMissingL4,
}

var reasonName = [...]string{
	ReasonShort:         "short",
	ReasonTruncated:     "truncated",
	ReasonMalformed:     "malformed",
	ReasonVersion:       "version",
	ReasonTooManyVLANs:  "too-many-vlans",
	ReasonTooManyExt:    "too-many-ext",
	ReasonHopByHopOrder: "hop-by-hop-order",
	ReasonMissingL4:     "missing-l4",
}

// String returns a short stable name, suitable for a metric label.
func (r Reason) String() string {
	if int(r) < len(reasonName) && reasonName[r] != "" {
		return reasonName[r]
	}
	return "unknown"
}

// Error is a decode failure: which layer, why, and gopacket's own error
// when it produced one.
type Error struct {
	Reason Reason
	// Layer is the layer that failed (gopacket.LayerTypeZero when unknown).
	Layer gopacket.LayerType
	// Err is the underlying error from the layer, or the Reason's sentinel.
	Err error
}

func (e *Error) Error() string {
	msg := "decode " + e.Layer.String() + ": " + reasonErr[e.Reason].Error()
	if e.Err != nil && e.Err != reasonErr[e.Reason] {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the Reason's sentinel and the layer's error.
func (e *Error) Unwrap() []error {
	if e.Err == nil || e.Err == reasonErr[e.Reason] {
		return []error{reasonErr[e.Reason]}
	}
	return []error{reasonErr[e.Reason], e.Err}
}
