package bench

import (
	"fmt"
	"strings"

	"github.com/deepwall/deepwall/rules"
)

// GenRules writes n block rules shaped like WAF signatures (keywords,
// classes, bounded repeats, alternations), spread over request fields,
// response body and raw payload with their usual transforms. Every pattern
// is distinct and none matches the traffic of Traffic; seed shifts the
// numbers in the patterns, so sets with another seed are other sets (a
// reload of them is a real recompilation). It is the same shape as the
// generated sets of the rules and dpi package benchmarks.
func GenRules(n int, seed uint64) []byte {
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

// ClassifyRules is a rule set that makes the engine identify every flow's
// application protocol and nothing more: one alert rule conditioned on a
// protocol the traffic does not carry, so that once a flow is identified
// no rule applies and its verdict is final (what nDPI does: classify, then
// only count).
func ClassifyRules() []byte {
	return []byte("rules:\n  - {id: 1, name: classification only, action: alert, app_proto: ssh}\n")
}

// L4Rules is an L3/L4-only policy (deny telnet): no rule needs layer 7,
// so every flow gets a final ALLOW on its first packet and the kernel
// carries the rest (deepwall's fast path).
func L4Rules() []byte {
	return []byte("rules:\n  - {id: 1, name: deny telnet, action: block, proto: tcp, dst_port: 23}\n")
}

// PayloadRuleID is the id of the rule PayloadRules adds to the default
// pack.
const PayloadRuleID = 990001

// PayloadRules is the default pack plus one raw-payload rule. The default
// pack has no rule on the raw payload, so an unidentified flow (the UDP
// frames of the packet-rate scenario) is bypassed once identification
// gives up; the payload rule keeps every datagram in inspection. main is
// the file to load; it includes defaultName, which must hold
// rules.DefaultPackYAML().
func PayloadRules(defaultName string) []byte {
	return fmt.Appendf(nil, "include: %s\nrules:\n  - {id: %d, name: payload marker, action: alert, match: {field: payload, regex: 'deepwall-bench-marker-[0-9]{6}'}}\n",
		defaultName, PayloadRuleID)
}

// CompileYAML parses and compiles a rule file's content.
func CompileYAML(name string, data []byte) (*rules.Compiled, error) {
	set, err := rules.Parse(name, data)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", name, err)
	}
	c, err := rules.Compile(set)
	if err != nil {
		return nil, fmt.Errorf("compile %s: %w", name, err)
	}
	return c, nil
}
