package rules

import (
	_ "embed"
	"fmt"
)

// defaultPackYAML is the rule pack shipped with deepwall.
//
//go:embed packs/default.yaml
var defaultPackYAML []byte

// DefaultPackName is the file name errors and positions use for the
// default pack.
const DefaultPackName = "packs/default.yaml"

// DefaultPack returns the default rule pack: WAF rules for SQL injection,
// XSS, path traversal, command injection, Log4Shell/JNDI, SSRF to cloud
// metadata and scanners, and DLP rules for card numbers, SSNs, cloud keys,
// private keys and tokens. Every call returns a fresh Set the caller may
// change.
func DefaultPack() (*Set, error) {
	s, err := Parse(DefaultPackName, defaultPackYAML)
	if err != nil {
		return nil, fmt.Errorf("default rule pack: %w", err)
	}
	return s, nil
}

// DefaultPackYAML returns the default pack as shipped, comments included.
func DefaultPackYAML() []byte { return append([]byte(nil), defaultPackYAML...) }
