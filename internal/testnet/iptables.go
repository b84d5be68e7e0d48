package testnet

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

var saveCounters = regexp.MustCompile(`\[\d+:\d+\]`)

// RulesSnapshot is iptables-save and ip6tables-save of ns without
// comment lines and with every counter zeroed: what a test compares
// before and after to see that rules are left as they were.
func RulesSnapshot(tb testing.TB, ns *NS) string {
	tb.Helper()
	var b strings.Builder
	for _, tool := range []string{"iptables-save", "ip6tables-save"} {
		out, err := ns.Run(exec.Command(tool))
		if err != nil {
			tb.Fatalf("%s: %v %s", tool, err, out)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			b.WriteString(saveCounters.ReplaceAllString(l, "[0:0]") + "\n")
		}
	}
	return b.String()
}
