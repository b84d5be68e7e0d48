package grpc

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/deepwall/deepwall/dpi/proto"
)

// Wire-format builders (protobuf.dev encoding), so that the tests need no
// generated code.
func pbVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func pbBytes(b []byte, num int, v []byte) []byte {
	b = pbVarint(b, uint64(num)<<3|wireBytes)
	b = pbVarint(b, uint64(len(v)))
	return append(b, v...)
}

func pbString(b []byte, num int, v string) []byte { return pbBytes(b, num, []byte(v)) }

func pbInt(b []byte, num int, v uint64) []byte {
	return pbVarint(pbVarint(b, uint64(num)<<3|wireVarint), v)
}

// walkLog walks msg and lists what it yields.
func walkLog(w *Walker, msg []byte) (string, proto.KindSet) {
	var out []string
	found := w.Walk(msg, func(f Field) bool {
		out = append(out, fmt.Sprintf("%v %q text=%v", f.Path, f.Value, f.Text))
		return true
	})
	return strings.Join(out, "; "), found
}

func TestWalk(t *testing.T) {
	inner := pbString(nil, 1, "1 UNION SELECT password")
	deep := pbString(nil, 1, "bottom")
	for range 12 {
		deep = pbBytes(nil, 2, deep)
	}
	var many []byte
	for range 50 {
		many = pbInt(many, 1, 7)
	}
	tests := []struct {
		name  string
		lim   Limits
		msg   []byte
		want  string
		finds []proto.FindingKind
	}{
		{name: "strings and a nested message",
			msg:  pbInt(pbBytes(pbString(nil, 1, "widget"), 2, inner), 3, 42),
			want: `[1] "widget" text=true; [2 1] "1 UNION SELECT password" text=true`},
		{name: "fixed fields skipped",
			msg:  append(append(pbString(nil, 4, "a"), 0x29, 1, 2, 3, 4, 5, 6, 7, 8), 0x35, 1, 2, 3, 4),
			want: `[4] "a" text=true`},
		{name: "bytes that are not a message",
			msg:  pbBytes(nil, 5, []byte{0xff, 0x00, 0x01}),
			want: `[5] "\xff\x00\x01" text=false`},
		{name: "packed varints yielded as bytes",
			msg:  pbBytes(nil, 6, []byte{1, 2, 3}),
			want: `[6] "\x01\x02\x03" text=false`},
		{name: "printable text that parses as a message: yielded and walked",
			// '\n' is the key of field 1 (bytes), ' ' a length of 32.
			msg:  pbString(nil, 7, "\n "+strings.Repeat("x", 32)),
			want: `[7] "\n ` + strings.Repeat("x", 32) + `" text=true; [7 1] "` + strings.Repeat("x", 32) + `" text=true`},
		{name: "empty strings skipped", msg: pbString(pbString(nil, 1, ""), 2, "x"), want: `[2] "x" text=true`},
		{name: "too deep", lim: Limits{MaxDepth: 5}, msg: deep, finds: []proto.FindingKind{proto.GRPCWalkLimit}},
		{name: "deep within the limit", lim: Limits{MaxDepth: 20}, msg: deep, want: `[2 2 2 2 2 2 2 2 2 2 2 2 1] "bottom" text=true`},
		{name: "too many fields", lim: Limits{MaxFields: 10}, msg: many, finds: []proto.FindingKind{proto.GRPCWalkLimit}},
		{name: "malformed after a field",
			msg:  append(pbString(nil, 1, "seen"), 0x0a, 0x10, 'x'),
			want: `[1] "seen" text=true`, finds: []proto.FindingKind{proto.GRPCMalformedMessage}},
		{name: "field number 0", msg: []byte{0x02, 0x01, 'a'}, finds: []proto.FindingKind{proto.GRPCMalformedMessage}},
		{name: "group", msg: []byte{0x0b, 0x0c}, finds: []proto.FindingKind{proto.GRPCMalformedMessage}},
		{name: "overlong varint", msg: append([]byte{0x08}, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), finds: []proto.FindingKind{proto.GRPCMalformedMessage}},
		{name: "length past the end", msg: []byte{0x0a, 0x7f, 'a'}, finds: []proto.FindingKind{proto.GRPCMalformedMessage}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, found := walkLog(NewWalker(tc.lim), tc.msg)
			var kinds []proto.FindingKind
			for _, k := range proto.FindingKinds() {
				if found.Has(k) {
					kinds = append(kinds, k)
				}
			}
			if got != tc.want || !slices.Equal(kinds, tc.finds) {
				t.Errorf("got %s %v\nwant %s %v", got, kinds, tc.want, tc.finds)
			}
		})
	}
}

// TestWalkStops: fn returning false ends the walk.
func TestWalkStops(t *testing.T) {
	msg := pbString(pbString(nil, 1, "a"), 2, "b")
	n := 0
	NewWalker(Limits{}).Walk(msg, func(Field) bool { n++; return false })
	if n != 1 {
		t.Errorf("%d calls after false", n)
	}
}

func TestWalkAllocs(t *testing.T) {
	w := NewWalker(Limits{})
	msg := pbInt(pbBytes(pbString(nil, 1, "widget"), 2, pbString(nil, 1, "nested")), 3, 42)
	n := 0
	fn := func(Field) bool { n++; return true }
	if a := testing.AllocsPerRun(100, func() { w.Walk(msg, fn) }); a != 0 {
		t.Errorf("%.0f allocations per walk", a)
	}
}
