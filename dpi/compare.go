package dpi

import (
	"github.com/deepwall/deepwall/dpi/proto/http"
	"github.com/deepwall/deepwall/rules"
)

// compareHolds evaluates the compare: option of the condition a pattern
// hit serves (rules.Compare): the capture of the condition's regex in
// value (the transformed value just scanned) compared with the other
// field of the request whose head is being inspected, or with another
// group of the same match. Conditions without compare: hold. A compare
// with a field and no request head at hand (validation refuses compare:
// with a field on other fields) does not hold.
func (w *worker) compareHolds(m *rules.Match, value []byte) bool {
	c := m.Compare
	if c == nil {
		return true
	}
	r := w.req.head
	if c.WithGroup == 0 && r == nil {
		return false
	}
	capture, with, ok := c.Capture(m, value)
	if !ok {
		return false
	}
	if c.WithGroup == 0 {
		with = compareValue(r, c.With)
	}
	return c.Holds(capture, with)
}

// compareValue is the value of field f of request r a compare: reads:
// the first value of a header, the part of the request line.
func compareValue(r *http.Request, f rules.Field) []byte {
	switch f.Kind {
	case rules.FieldHTTPMethod:
		return r.Method
	case rules.FieldHTTPURI:
		return r.URI
	case rules.FieldHTTPPath:
		return r.Path
	case rules.FieldHTTPArgs:
		return r.ArgsBuf
	case rules.FieldHTTPProtocol:
		return r.Proto
	case rules.FieldHTTPQuery:
		return r.Query
	case rules.FieldHTTPHeader:
		return r.Header(f.Name)
	}
	return nil
}
