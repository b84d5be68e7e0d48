package bench

import (
	"fmt"

	"github.com/deepwall/deepwall/rules"
)

// classifyRules is a rule set that makes the engine identify every flow's
// application protocol and nothing more: one alert rule conditioned on a
// protocol the traffic does not carry, so that once a flow is identified
// no rule applies and its verdict is final (what nDPI does: classify, then
// only count).
func classifyRules() []byte {
	return []byte("rules:\n  - {id: 1, name: classification only, action: alert, app_proto: ssh}\n")
}

// l4Rules is an L3/L4-only policy (deny telnet): no rule needs layer 7,
// so every flow gets a final ALLOW on its first packet and the kernel
// carries the rest (deepwall's fast path).
func l4Rules() []byte {
	return []byte("rules:\n  - {id: 1, name: deny telnet, action: block, proto: tcp, dst_port: 23}\n")
}

// payloadRuleID is the id of the rule payloadRules adds to the default
// pack.
const payloadRuleID = 990001

// payloadRules is the default pack plus one raw-payload rule. The default
// pack has no rule on the raw payload, so an unidentified flow (the UDP
// frames of the packet-rate scenario) is bypassed once identification
// gives up; the payload rule keeps every datagram in inspection. main is
// the file to load; it includes defaultName, which must hold
// rules.DefaultPackYAML().
func payloadRules(defaultName string) []byte {
	return fmt.Appendf(nil, "include: %s\nrules:\n  - {id: %d, name: payload marker, action: alert, match: {field: payload, regex: 'deepwall-bench-marker-[0-9]{6}'}}\n",
		defaultName, payloadRuleID)
}

// compileYAML parses and compiles a rule file's content.
func compileYAML(name string, data []byte) (*rules.Compiled, error) {
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
