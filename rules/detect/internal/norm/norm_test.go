package norm

import "testing"

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		keep     bool
	}{
		{"plain", "plain", false},
		{"%2e%2e%2f", "../", false},
		{"%252e%252e%252f", "../", false},
		{"%25%32%65", ".", false},
		{"%c0%ae%c0%ae%c0%af", "../", false},
		{"%e0%80%ae", ".", false},
		{"%uff0e%uff0e%u2215", "../", false},
		{"&#46;&#46;&#x2f;", "../", false},
		{`\u0024\x28id\x29`, "$(id)", false},
		{`..\boot.ini`, `..\boot.ini`, true},
		{"a+b", "a b", false},
	} {
		d := Decoder{KeepBackslash: tc.keep}
		if got := string(d.Decode([]byte(tc.in))); got != tc.want {
			t.Errorf("Decode(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{"%252e%252e", "&#x2f;", `\u002e`, "\xc0\xae"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var d Decoder
		if out := d.Decode(b); len(out) > len(b) {
			t.Fatalf("decoded %d bytes into %d", len(b), len(out))
		}
	})
}
