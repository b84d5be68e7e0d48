// Package testutil owns the small helpers that tests and benchmarks of
// several packages share and that do not touch the network: the
// benchmark knobs read from the environment (DEEPWALL_BENCH_DURATION,
// DEEPWALL_BENCH_ROUNDS), polling for a condition, golden files, and
// HTTP bodies in content codings and chunked framing.
//
// Fixtures that need namespaces, sockets or crafted frames live in
// internal/testnet; building and running the deepwall binary lives in
// internal/agenttest.
package testutil
