package dpi

import (
	"strings"
	"testing"
)

func TestMask(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"4111111111111111", "4111********1111"},
		{"4111 1111 1111 1111", "4111 **** **** 1111"},
		{"4111-1111-1111-1111", "4111-****-****-1111"},
		{"078-05-1120", "***-**-**20"}, // SSN: last two digits only
		{"AKIAIOSFODNN7EXAMPLE", "AKIA************MPLE"},
		{"secret", "se**et"},
		{"abc", "a**"},
		{"", ""},
	} {
		if got := Mask([]byte(tc.in)); got != tc.want {
			t.Errorf("Mask(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	long := Mask([]byte(strings.Repeat("x", 1000)))
	if len(long) > MaxMatched {
		t.Errorf("Mask of 1000 bytes is %d bytes, want ≤ %d", len(long), MaxMatched)
	}
}

func FuzzMask(f *testing.F) {
	f.Add([]byte("4111 1111 1111 1111"))
	f.Add([]byte("AKIAIOSFODNN7EXAMPLE"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m := Mask(b)
		if len(m) > MaxMatched {
			t.Fatalf("len %d > %d", len(m), MaxMatched)
		}
		// A masked secret never contains the secret itself (inputs that
		// already hold the mask character prove nothing).
		if len(b) >= 8 && !strings.Contains(string(b), "*") && strings.Contains(m, string(b)) {
			t.Fatalf("Mask(%q) = %q leaks the input", b, m)
		}
	})
}
