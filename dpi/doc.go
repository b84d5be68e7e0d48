// Package dpi owns deep packet inspection: decoding frames, tracking flows,
// reassembling TCP streams, identifying and parsing application protocols,
// matching rules, and deciding a verdict for every packet the kernel could
// not decide by itself. Verdict events use Suricata's EVE JSON field names.
//
// The packet and stream layers live in subpackages (decode, flow, reasm)
// and the protocol parsers in proto/...; this package joins them with the
// compiled rules of package rules into the Engine.
package dpi
