package http

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/deepwall/deepwall/dpi/proto"
)

func TestNormalizePath(t *testing.T) {
	tests := []struct {
		raw, want string
		kinds     []proto.FindingKind
	}{
		{"/a/b", "/a/b", nil},
		{"/", "/", nil},
		{"", "/", nil},
		{"a/b", "/a/b", nil},
		{"/a/b/", "/a/b/", nil},
		{"/a/./b", "/a/b", kinds(proto.HTTPURIDotSegment)},
		{"/a/../b", "/b", kinds(proto.HTTPURIDotSegment)},
		{"/a/.", "/a/", kinds(proto.HTTPURIDotSegment)},
		{"/a/..", "/", kinds(proto.HTTPURIDotSegment)},
		{"/.", "/", kinds(proto.HTTPURIDotSegment)},
		{"/..", "/", kinds(proto.HTTPURIDotSegment, proto.HTTPURIAboveRoot)},
		{"/../etc/passwd", "/etc/passwd", kinds(proto.HTTPURIDotSegment, proto.HTTPURIAboveRoot)},
		{"/a/b/../../../c", "/c", kinds(proto.HTTPURIDotSegment, proto.HTTPURIAboveRoot)},
		{"/a/.../b", "/a/.../b", nil},
		{"/a/..b/c", "/a/..b/c", nil},
		{"/a//b", "/a/b", kinds(proto.HTTPURIDuplicateSlash)},
		{"//a", "/a", kinds(proto.HTTPURIDuplicateSlash)},
		{"/a\\b", "/a/b", kinds(proto.HTTPURIBackslash)},
		{"\\..\\windows", "/windows", kinds(proto.HTTPURIBackslash, proto.HTTPURIDotSegment, proto.HTTPURIAboveRoot)},
		{"/a%2fb", "/a/b", kinds(proto.HTTPURIEncodedSlash)},
		{"/a%5cb", "/a/b", kinds(proto.HTTPURIEncodedSlash, proto.HTTPURIBackslash)},
		{"/%2e%2e/etc", "/etc", kinds(proto.HTTPURIEncodedDot, proto.HTTPURIDotSegment, proto.HTTPURIDotSegmentEscape, proto.HTTPURIAboveRoot)},
		{"/a/%2E%2e/b", "/b", kinds(proto.HTTPURIEncodedDot, proto.HTTPURIDotSegment, proto.HTTPURIDotSegmentEscape)},
		{"/a/.%2e/b", "/b", kinds(proto.HTTPURIEncodedDot, proto.HTTPURIDotSegment, proto.HTTPURIDotSegmentEscape)},
		{"/%2e/", "/", kinds(proto.HTTPURIEncodedDot, proto.HTTPURIDotSegment, proto.HTTPURIDotSegmentEscape)},
		{"/file%2etxt", "/file.txt", kinds(proto.HTTPURIEncodedDot)},
		{"/%c0%af", "/", kinds(proto.HTTPURIOverlongUTF8, proto.HTTPURIDuplicateSlash)},
		{"/..%c0%af..%c0%afetc/passwd", "/etc/passwd", kinds(proto.HTTPURIOverlongUTF8, proto.HTTPURIDotSegment, proto.HTTPURIAboveRoot)},
		{"/%c0%ae%c0%ae/x", "/x", kinds(proto.HTTPURIOverlongUTF8, proto.HTTPURIDotSegment, proto.HTTPURIAboveRoot)},
		{"/a%e0%80%afb", "/a/b", kinds(proto.HTTPURIOverlongUTF8)},
		{"/a%f0%80%80%afb", "/a/b", kinds(proto.HTTPURIOverlongUTF8)},
		{"/a%c1%9c..", "/", kinds(proto.HTTPURIOverlongUTF8, proto.HTTPURIBackslash, proto.HTTPURIDotSegment)},
		{"/a%c1%9cb", "/a/b", kinds(proto.HTTPURIOverlongUTF8, proto.HTTPURIBackslash)},
		{"/%c0%80", "/\x00", kinds(proto.HTTPURIOverlongUTF8, proto.HTTPURINullByte)},
		{"/caf%C3%A9", "/caf\u00e9", nil},
		{"/\u4e2d\u6587", "/\u4e2d\u6587", nil},
		{"/%ff", "/\xff", kinds(proto.HTTPURIInvalidUTF8)},
		{"/%c3", "/\xc3", kinds(proto.HTTPURIInvalidUTF8)},
		{"/%c3x", "/\xc3x", kinds(proto.HTTPURIInvalidUTF8)},
		{"/%ed%a0%80", "/\xed\xa0\x80", kinds(proto.HTTPURIInvalidUTF8)},
		{"/a%00.jpg", "/a\x00.jpg", kinds(proto.HTTPURINullByte)},
		{"/%zz", "/%zz", kinds(proto.HTTPURIInvalidEscape)},
		{"/%4", "/%4", kinds(proto.HTTPURIInvalidEscape)},
		{"/%", "/%", kinds(proto.HTTPURIInvalidEscape)},
		{"/%252e%252e/", "/%2e%2e/", kinds(proto.HTTPURIDoubleEncoding)},
		{"/%25u002e", "/%u002e", kinds(proto.HTTPURIDoubleEncoding)},
		{"/100%25", "/100%", nil},
		{"/%u002e%u002e/x", "/x", kinds(proto.HTTPURIUEncoding, proto.HTTPURIEncodedDot, proto.HTTPURIDotSegment, proto.HTTPURIDotSegmentEscape, proto.HTTPURIAboveRoot)},
		{"/%u4e2d", "/\u4e2d", kinds(proto.HTTPURIUEncoding)},
		{"/%u002f", "/", kinds(proto.HTTPURIUEncoding, proto.HTTPURIEncodedSlash, proto.HTTPURIDuplicateSlash)},
		{"/%u00zz", "/%u00zz", kinds(proto.HTTPURIInvalidEscape)},
		{"/a;jsessionid=1/..;/b", "/a;jsessionid=1/..;/b", kinds(proto.HTTPURIParameterInPath)},
		{"/a+b", "/a+b", nil},
	}
	for _, tc := range tests {
		var s proto.KindSet
		dst := make([]byte, 0, len(tc.raw)+1)
		got := NormalizePath(dst, []byte(tc.raw), &s)
		if string(got) != tc.want {
			t.Errorf("NormalizePath(%q) = %q, want %q", tc.raw, got, tc.want)
		}
		if gk := setKinds(&s); !slices.Equal(sortKinds(gk), sortKinds(tc.kinds)) {
			t.Errorf("NormalizePath(%q) findings %v, want %v", tc.raw, gk, tc.kinds)
		}
		if len(got) > len(tc.raw)+1 {
			t.Errorf("NormalizePath(%q) grew to %d bytes", tc.raw, len(got))
		}
		if len(tc.raw)+1 > 0 && &got[0] != &dst[:1][0] {
			t.Errorf("NormalizePath(%q) reallocated", tc.raw)
		}
	}
}

func TestDecodeArgs(t *testing.T) {
	tests := []struct {
		query   string
		max     int
		args    []string // name=value, or name alone when it has no '='
		buf     string
		kinds   []proto.FindingKind
		noValue []bool
	}{
		{"a=1&b=2", 8, []string{"a=1", "b=2"}, "a=1&b=2", nil, nil},
		{"q=deep+wall&x=%41%42", 8, []string{"q=deep wall", "x=AB"}, "q=deep wall&x=AB", nil, nil},
		{"a&b=", 8, []string{"a", "b="}, "a&b=", nil, nil},
		{"a=1&&b=2&", 8, []string{"a=1", "b=2"}, "a=1&b=2", nil, nil},
		{"=v", 8, []string{"=v"}, "=v", nil, nil},
		{"x=%zz", 8, []string{"x=%zz"}, "x=%zz", kinds(proto.HTTPURIInvalidEscape), nil},
		{"x=%00", 8, []string{"x=\x00"}, "x=\x00", kinds(proto.HTTPURINullByte), nil},
		{"x=%u0041", 8, []string{"x=A"}, "x=A", kinds(proto.HTTPURIUEncoding), nil},
		{"x=%2527", 8, []string{"x=%27"}, "x=%27", kinds(proto.HTTPURIDoubleEncoding), nil},
		{"x=%2f..%2f", 8, []string{"x=/../"}, "x=/../", nil, nil},
		{"id=1%27%20OR%201=1--", 8, []string{"id=1' OR 1=1--"}, "id=1' OR 1=1--", nil, nil},
		{"a%3db=c%26d", 8, []string{"a=b=c&d"}, "a=b=c&d", nil, nil},
		{"a=1&b=2&c=3&d=4", 2, []string{"a=1", "b=2"}, "a=1&b=2&c=3&d=4", kinds(proto.HTTPURITooManyArgs), nil},
		{"a=1&b=2&&c=%41", 2, []string{"a=1", "b=2"}, "a=1&b=2&c=A", kinds(proto.HTTPURITooManyArgs), nil},
	}
	for _, tc := range tests {
		var s proto.KindSet
		buf, args := DecodeArgs(make([]byte, 0, len(tc.query)), make([]Arg, 0, tc.max), []byte(tc.query), tc.max, &s)
		var got []string
		for _, a := range args {
			if a.Value == nil {
				got = append(got, string(a.Name))
			} else {
				got = append(got, string(a.Name)+"="+string(a.Value))
			}
		}
		if !slices.Equal(got, tc.args) || string(buf) != tc.buf {
			t.Errorf("DecodeArgs(%q) = %q, %q; want %q, %q", tc.query, got, buf, tc.args, tc.buf)
		}
		if gk := setKinds(&s); !slices.Equal(sortKinds(gk), sortKinds(tc.kinds)) {
			t.Errorf("DecodeArgs(%q) findings %v, want %v", tc.query, gk, tc.kinds)
		}
	}
}

// TestPathIsNormal checks that the fast path agrees with NormalizePath.
func TestPathIsNormal(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const alphabet = "/./a%2e\\;b\x00\xc3"
	buf := make([]byte, 12)
	for n := 0; n < 200000; n++ {
		size := rng.IntN(len(buf) + 1)
		for i := range size {
			buf[i] = alphabet[rng.IntN(len(alphabet))]
		}
		raw := buf[:size]
		if !pathIsNormal(raw) {
			continue
		}
		var s proto.KindSet
		got := NormalizePath(nil, raw, &s)
		if string(got) != string(raw) || s != (proto.KindSet{}) {
			t.Fatalf("pathIsNormal(%q) but NormalizePath gives %q, %v", raw, got, setKinds(&s))
		}
	}
}
