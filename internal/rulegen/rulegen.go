// Package rulegen owns the generated rule sets of deepwall's benchmarks
// (rules compile time, engine throughput, the harness's scale scenario),
// so that every figure about "1,000 rules" or "10,000 rules" is about the
// same rules. It writes YAML text only and depends on nothing of
// deepwall's, so package rules' own tests can use it.
package rulegen

import (
	"fmt"
	"strings"
)

// Generate writes n block rules shaped like WAF signatures (keywords,
// classes, bounded repeats, alternations), spread over request fields,
// response body and raw payload with their usual transforms. Every pattern
// is distinct and none matches the benchmarks' generated traffic; seed shifts the
// numbers in the patterns, so sets with another seed are other sets (a
// reload of them is a real recompilation).
func Generate(n int, seed uint64) []byte {
	fields := []struct{ field, chain string }{
		{"http.args", "[url_decode, lowercase]"},
		{"http.uri", "[url_decode, lowercase]"},
		{"http.headers", "[lowercase]"},
		{"http.body", "[url_decode, lowercase]"},
		{"http.response_body", ""},
		{"payload", ""},
	}
	words := []string{"select", "union", "script", "alert", "passwd", "eval", "exec", "cmd", "jndi", "ldap", "admin",
		"token", "cookie", "shell", "wget", "curl", "system", "base64", "window", "document"}
	var b strings.Builder
	b.WriteString("rules:\n")
	for i := 0; i < n; i++ {
		f := fields[i%len(fields)]
		w1, w2 := words[i%len(words)], words[(i/len(words))%len(words)]
		k := uint64(i) + seed*uint64(n)
		var re string
		switch i % 4 {
		case 0:
			re = fmt.Sprintf(`%s[\s/*_-]+%s%d`, w1, w2, k)
		case 1:
			re = fmt.Sprintf(`(?:%s|%s)\(\s*[a-z0-9]{1,8}\s*,\s*%d\)`, w1, w2, k)
		case 2:
			re = fmt.Sprintf(`%s%d=[^&]{0,16}%s`, w1, k, w2)
		default:
			re = fmt.Sprintf(`\b%s\.%s\.v%d\b`, w1, w2, k)
		}
		chain := ""
		if f.chain != "" {
			chain = ", transforms: " + f.chain
		}
		fmt.Fprintf(&b, "  - {id: %d, action: block, match: {field: %s, regex: '%s'%s}}\n", i+1, f.field, re, chain)
	}
	return []byte(b.String())
}
