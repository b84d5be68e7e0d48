package grpc

// A schema-less walk of protobuf wire format
// (protobuf.dev/programming-guides/encoding): every length-delimited
// field is either text, a nested message, or bytes, and without the
// schema the walk cannot know which. It yields a field whose content is
// text (valid UTF-8 without control bytes other than tab, CR, LF) or does
// not parse as a message, and descends into one that parses: a printable
// string that happens to parse as a message is both yielded whole and
// walked, so that no way of writing a string hides it from the rules.

import (
	"unicode/utf8"

	"github.com/deepwall/deepwall/dpi/proto"
)

// Wire types.
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

// maxFieldNumber is the largest protobuf field number.
const maxFieldNumber = 1<<29 - 1

// Field is a string or bytes field Walk yields. Path holds the field
// numbers from the top message down to this field ([2 1]: field 1 of the
// message in field 2); Value is the field's content. Both are valid only
// during the callback.
type Field struct {
	Path  []int32
	Value []byte
	// Text says Value is printable UTF-8 (a string field, or bytes that
	// read as text).
	Text bool
}

// Walker walks messages within its limits; its path buffer makes a walk
// allocation-free. The zero Walker has no limits: use Scratch.Walker, or
// NewWalker.
type Walker struct {
	lim    Limits
	path   [maxDepth + 1]int32
	fields int
	found  proto.KindSet
	stop   bool
	fn     func(Field) bool
}

// NewWalker returns a Walker with limits lim (zero fields take the
// defaults).
func NewWalker(lim Limits) *Walker { return &Walker{lim: lim.withDefaults()} }

// Walk calls fn for the string and bytes fields of msg, in wire order,
// depth first; fn returns false to stop. It returns the findings:
// grpc.malformed_message when msg itself is not wire format (fields
// before the fault are yielded), grpc.walk_limit when a bound stopped it.
func (w *Walker) Walk(msg []byte, fn func(Field) bool) proto.KindSet {
	w.fields, w.found, w.stop, w.fn = 0, proto.KindSet{}, false, fn
	if !w.walk(msg, 0) && !w.stop {
		w.found.Add(proto.GRPCMalformedMessage)
	}
	w.fn = nil
	return w.found
}

// walk walks one message at depth; false if it is not wire format from
// some point on.
func (w *Walker) walk(b []byte, depth int) bool {
	for len(b) > 0 && !w.stop {
		w.fields++
		if w.fields > w.lim.MaxFields {
			w.found.Add(proto.GRPCWalkLimit)
			w.stop = true
			return true
		}
		num, typ, v, rest, ok := field(b)
		if !ok {
			return false
		}
		b = rest
		if typ == wireBytes {
			w.path[depth] = int32(num)
			w.value(v, depth)
		}
	}
	return true
}

// value yields and/or descends into a length-delimited field.
func (w *Walker) value(v []byte, depth int) {
	text := printable(v)
	nested := len(v) > 0 && wellFormed(v)
	if text || !nested {
		if len(v) > 0 && !w.fn(Field{Path: w.path[:depth+1], Value: v, Text: text}) {
			w.stop = true
			return
		}
	}
	if nested {
		if depth+1 >= w.lim.MaxDepth {
			w.found.Add(proto.GRPCWalkLimit)
			return
		}
		w.walk(v, depth+1)
	}
}

// wellFormed reports whether b is a message at its own level: keys with
// valid field numbers and wire types, and lengths that fit exactly.
// Nested content is not checked (it may be bytes).
func wellFormed(b []byte) bool {
	for len(b) > 0 {
		var ok bool
		if _, _, _, b, ok = field(b); !ok {
			return false
		}
	}
	return true
}

// field reads one field of b: its number and wire type, the content of a
// length-delimited field, and the bytes after it. Groups (wire types 3
// and 4, proto2-only and absent from gRPC services in practice) read as
// not wire format.
func field(b []byte) (num, typ uint64, v, rest []byte, ok bool) {
	key, n := varint(b)
	num, typ = key>>3, key&7
	if n == 0 || num == 0 || num > maxFieldNumber {
		return 0, 0, nil, nil, false
	}
	b = b[n:]
	switch typ {
	case wireVarint:
		if _, n = varint(b); n == 0 {
			return 0, 0, nil, nil, false
		}
		return num, typ, nil, b[n:], true
	case wireFixed64, wireFixed32:
		size := 8
		if typ == wireFixed32 {
			size = 4
		}
		if len(b) < size {
			return 0, 0, nil, nil, false
		}
		return num, typ, nil, b[size:], true
	case wireBytes:
		l, n := varint(b)
		if n == 0 || l > uint64(len(b)-n) {
			return 0, 0, nil, nil, false
		}
		end := n + int(l)
		return num, typ, b[n:end], b[end:], true
	}
	return 0, 0, nil, nil, false
}

// varint decodes a base-128 varint: its value and length, 0 when b ends
// inside it or it is longer than 10 bytes.
func varint(b []byte) (uint64, int) {
	var v uint64
	for i := 0; i < len(b) && i < 10; i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i] < 0x80 {
			return v, i + 1
		}
	}
	return 0, 0
}

// printable reports whether b is non-empty valid UTF-8 without control
// bytes other than tab, CR and LF.
func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' || c == 0x7f {
			return false
		}
	}
	return len(b) > 0 && utf8.Valid(b)
}
