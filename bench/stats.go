package bench

import (
	"math"
	"slices"
	"time"
)

// summary is the median and spread of a series of samples.
type summary struct {
	N                int
	Median, Min, Max float64
}

// summarize returns the median, minimum and maximum of samples (zero
// summary for none). The median of an even count is the mean of the two
// middle samples.
func summarize(samples []float64) summary {
	if len(samples) == 0 {
		return summary{}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return summary{N: len(s), Median: m, Min: s[0], Max: s[len(s)-1]}
}

// percentile returns the p-th percentile (0 < p ≤ 100) of sorted samples by
// the nearest-rank method: the smallest sample such that at least p % of
// the samples are at or below it.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// rotate returns the order in which round r runs n systems: each round
// starts one system later, so that no system always runs first (on a warm
// or a cold machine) or always follows the same other one.
func rotate(n, r int) []int {
	order := make([]int, n)
	for i := range order {
		order[i] = (i + r) % n
	}
	return order
}
