package testutil

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLookupBenchDuration(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want time.Duration
		bad  bool
	}{
		{"", 7 * time.Second, false},
		{"1s", time.Second, false},
		{"2m", 2 * time.Minute, false},
		{"500ms", 0, true},
		{"5", 0, true},
		{"-3s", 0, true},
		{"soon", 0, true},
	} {
		t.Setenv(envBenchDuration, tc.env)
		d, err := LookupBenchDuration(7 * time.Second)
		if tc.bad {
			if err == nil || !strings.Contains(err.Error(), envBenchDuration) || !strings.Contains(err.Error(), tc.env) {
				t.Errorf("%q: error %v, want one naming the variable and the value", tc.env, err)
			}
			continue
		}
		if err != nil || d != tc.want {
			t.Errorf("%q: %v, %v; want %v", tc.env, d, err, tc.want)
		}
	}
}

func TestLookupBenchRounds(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want int
		bad  bool
	}{
		{"", 4, false},
		{"1", 1, false},
		{"20", 20, false},
		{"0", 0, true},
		{"21", 0, true},
		{"three", 0, true},
	} {
		t.Setenv(envBenchRounds, tc.env)
		n, err := LookupBenchRounds(4)
		if tc.bad {
			if err == nil || !strings.Contains(err.Error(), envBenchRounds) || !strings.Contains(err.Error(), tc.env) {
				t.Errorf("%q: error %v, want one naming the variable and the value", tc.env, err)
			}
			continue
		}
		if err != nil || n != tc.want {
			t.Errorf("%q: %v, %v; want %v", tc.env, n, err, tc.want)
		}
	}
}

func TestWaitFor(t *testing.T) {
	n := 0
	if !WaitFor(time.Second, func() bool { n++; return n == 3 }) {
		t.Fatal("condition that becomes true: not seen")
	}
	start := time.Now()
	if WaitFor(50*time.Millisecond, func() bool { return false }) {
		t.Fatal("condition never true: reported true")
	}
	if el := time.Since(start); el < 50*time.Millisecond {
		t.Fatalf("gave up after %v, before the timeout", el)
	}
}

func TestGolden(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "x.golden")
	Golden(t, path, []byte("a\nb\n"), true)
	Golden(t, path, []byte("a\nb\n"), false)
	if d := diffLines("a\nb\n", "a\nc\n"); d != "- b\n+ c\n" {
		t.Errorf("diffLines = %q", d)
	}
}
