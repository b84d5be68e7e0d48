package ascii

import "testing"

func TestEqualFold(t *testing.T) {
	for _, tc := range []struct {
		b, s string
		want bool
	}{
		{"Cookie", "cookie", true},
		{"COOKIE", "Cookie", true},
		{"cookie", "cookies", false},
		{"", "", true},
		{"\xc3\x89", "\xc3\xa9", false}, // É and é: not ASCII, not folded
		{"[", "{", false},               // 0x5b and 0x7b differ by 0x20 but are not letters
	} {
		if got := EqualFold([]byte(tc.b), tc.s); got != tc.want {
			t.Errorf("EqualFold(%q, %q) = %v, want %v", tc.b, tc.s, got, tc.want)
		}
	}
	if !HasPrefixFold([]byte("Content-Type: x"), "content-type") || HasPrefixFold([]byte("Con"), "content") {
		t.Error("HasPrefixFold")
	}
}

func TestUnhex(t *testing.T) {
	for c := 0; c < 256; c++ {
		v, ok := Unhex(byte(c))
		var want byte
		var wantOK bool
		switch {
		case '0' <= c && c <= '9':
			want, wantOK = byte(c-'0'), true
		case 'a' <= c && c <= 'f':
			want, wantOK = byte(c-'a'+10), true
		case 'A' <= c && c <= 'F':
			want, wantOK = byte(c-'A'+10), true
		}
		if v != want || ok != wantOK || IsHex(byte(c)) != wantOK {
			t.Errorf("Unhex(%#x) = %d, %v; want %d, %v", c, v, ok, want, wantOK)
		}
	}
	if b, ok := UnhexPair('4', 'f'); !ok || b != 'O' {
		t.Errorf("UnhexPair(4f) = %q, %v", b, ok)
	}
	if _, ok := UnhexPair('4', 'g'); ok {
		t.Error("UnhexPair(4g) ok")
	}
}

func TestPercentDecode(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"a%20b", "a b"},
		{"%4F%4b", "OK"},
		{"%zz%", "%zz%"},
		{"%2", "%2"},
		{"100%", "100%"},
		{"a+b", "a+b"},
	} {
		if got := string(PercentDecode(nil, []byte(tc.in))); got != tc.want {
			t.Errorf("PercentDecode(%q) = %q, want %q", tc.in, got, tc.want)
		}
		b := []byte(tc.in)
		if got := string(PercentDecode(b[:0], b)); got != tc.want {
			t.Errorf("in place PercentDecode(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzPercentDecode(f *testing.F) {
	f.Add([]byte("a%20b%zz%"))
	f.Fuzz(func(t *testing.T, b []byte) {
		out := PercentDecode(nil, b)
		if len(out) > len(b) {
			t.Fatalf("output %d bytes longer than input %d", len(out), len(b))
		}
	})
}
