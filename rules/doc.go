// Package rules owns deepwall's rule language: the YAML format, its
// validation with exact positions, compilation into Hyperscan databases
// (one per field and transform chain), the layer-3/4 ACL evaluated in Go
// where XDP is absent, and the embedded default rule pack. The field
// transforms and match validators live in rules/transform, the versioned
// rule store the agent keeps on disk in rules/store.
//
// A rule set is read with Parse or ParseFile, which either returns a fully
// valid Set or every error found (bounded), each naming file, line, column
// and rule. Compile turns a Set into a Compiled: ordered ACL rules, layer-7
// rules, and Groups holding the Hyperscan databases. docs/rules.md is the
// language reference.
package rules
