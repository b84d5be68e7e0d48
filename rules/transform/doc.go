// Package transform owns the byte-level work the rule language names but
// does not parse: the field transforms (url_decode, html_entity_decode,
// the Core Rule Set's cssDecode and friends) applied to whole values or
// to streams split at any byte, the byte classes that tell when a
// transform cannot change a value, and the match validators (luhn, ssn,
// iban, jwt) that confirm a pattern hit. It uses the standard library
// only, so the DPI engine and the rule compiler share one definition.
//
// See docs/rules.md for each transform's exact semantics.
package transform
