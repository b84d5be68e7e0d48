package http2

import "testing"

// TestValidValue checks the word-at-a-time scan against the plain rule
// at every position and length.
func TestValidValue(t *testing.T) {
	for n := 0; n < 20; n++ {
		for at := 0; at < n; at++ {
			for _, c := range []byte{0, '\r', '\n', '\t', 'x', 0x80, 0xff, 0x0c, 0x0e, 0x01} {
				v := make([]byte, n)
				for i := range v {
					v[i] = 'a'
				}
				v[at] = c
				want := c != 0 && c != '\r' && c != '\n' && !(c == '\t' && (at == 0 || at == n-1))
				if got := validValue(string(v)); got != want {
					t.Errorf("validValue(%q) = %v", v, got)
				}
			}
		}
	}
}
