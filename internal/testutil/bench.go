package testutil

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"
)

// The benchmark knobs, shared by the harness in bench/ and the
// benchmarks of single packages so that one setting means the same
// everywhere.
const (
	envBenchDuration = "DEEPWALL_BENCH_DURATION"
	envBenchRounds   = "DEEPWALL_BENCH_ROUNDS"
)

// Defaults of a package benchmark; the harness in bench/ has its own per
// mode.
const (
	defaultBenchDuration = 5 * time.Second
	defaultBenchRounds   = 3
)

// Limits of the knobs. A measurement runs whole seconds because the
// iperf3-driven ones pass it to iperf3 -t, which takes seconds and reads
// 0 as its own default of 10.
const (
	minBenchDuration = time.Second
	maxBenchRounds   = 20
)

// LookupBenchDuration reads DEEPWALL_BENCH_DURATION, how long one measurement
// runs: def when it is unset, an error naming the variable and its value
// when it is not a Go duration of at least one second.
func LookupBenchDuration(def time.Duration) (time.Duration, error) {
	s := os.Getenv(envBenchDuration)
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < minBenchDuration {
		return 0, fmt.Errorf("%s=%q: want a Go duration of at least %v", envBenchDuration, s, minBenchDuration)
	}
	return d, nil
}

// LookupBenchRounds reads DEEPWALL_BENCH_ROUNDS, how many times each
// measurement repeats: def when it is unset, an error naming the variable
// and its value when it is not a number from 1 to 20.
func LookupBenchRounds(def int) (int, error) {
	s := os.Getenv(envBenchRounds)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxBenchRounds {
		return 0, fmt.Errorf("%s=%q: want a number from 1 to %d", envBenchRounds, s, maxBenchRounds)
	}
	return n, nil
}

// BenchDuration is how long one measurement of a package benchmark runs:
// DEEPWALL_BENCH_DURATION, or 5s. A bad value fails tb.
func BenchDuration(tb testing.TB) time.Duration {
	tb.Helper()
	d, err := LookupBenchDuration(defaultBenchDuration)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// BenchRounds is how many times a package benchmark repeats its
// measurements: DEEPWALL_BENCH_ROUNDS, or 3. A bad value
// fails tb.
func BenchRounds(tb testing.TB) int {
	tb.Helper()
	n, err := LookupBenchRounds(defaultBenchRounds)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}
