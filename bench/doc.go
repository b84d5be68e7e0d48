// Package bench is deepwall's benchmark harness. It answers the question a
// user asks first — what does deepwall cost my traffic? — with figures
// measured side by side in one run on the machine at hand, against what the
// user would run instead: the Linux bridge, a plain in-kernel XDP redirect
// (bench/refxdp), Hyperscan alone, Go's regexp, Coraza with the OWASP Core
// Rule Set, and nDPI.
//
// Every scenario runs the compared systems in the same run, interleaved
// round by round, and keeps every sample; the report gives the median and
// the spread. The scenarios run as Go benchmarks (harness_test.go, `make
// bench`); this package holds what they share: traffic generation, the
// results model and its JSON/Markdown/PNG output, statistics, CPU
// accounting and the description of the machine.
package bench
