// Package testnet owns the test fixtures that touch the network: the
// privilege gate, network namespaces, veth pairs, the client ↔ fw ↔ server
// topology, and crafted frames: FrameSpec for well-formed ones, raw header
// builders and IPv6 extension headers for what FrameSpec cannot express,
// and the seed frames every parser's fuzz target starts from.
//
// Every test that needs a namespace, a veth or a crafted frame uses this
// package instead of building its own, so that cleanup, naming and the
// safety rules of the tests (docs/development.md) are enforced in one place:
// addresses come from 198.18.0.0/15 (and 2001:2::/48 for IPv6), no veth end
// is ever created in the root namespace, and everything is removed with
// tb.Cleanup even when the test fails.
package testnet
