package agent

import (
	"fmt"
	"strings"
	"testing"

	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/ctl/audit"
	"github.com/deepwall/deepwall/rules/store"
)

// TestAuditLargeChange: a change of more ids than audit.MaxRuleIDs is
// one bounded entry naming them by count and digest, and the version's
// comment in the store is the same bounded text.
func TestAuditLargeChange(t *testing.T) {
	h := newAPIHarness(t, testRules, authorizer{})
	const n = 300 // ACL rules: no Hyperscan compile, under xdp.MaxACLRules
	var b strings.Builder
	b.WriteString("rules:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - {id: %d, action: block, proto: tcp, dst_port: %d}\n", 4_000_000_000+i, 10000+i)
	}
	code, body := h.call(t, "POST", "/v1/rules", api.RulesRequest{Main: "many.yaml", Files: map[string]string{"many.yaml": b.String()}})
	if code != 200 {
		t.Fatalf("add %d rules: %d %s", n, code, body)
	}
	entries := readAudit(t, h.audit)
	e := entries[len(entries)-1]
	if !e.OK || e.Op != "add" || !strings.HasPrefix(e.Detail, "rules [4000000000 4000000001 ") ||
		!strings.Contains(e.Detail, fmt.Sprintf("and %d more (%d ids, sha256 ", n-audit.MaxRuleIDs, n)) {
		t.Fatalf("entry: %+v", e)
	}
	hist, err := h.ruleManager.History()
	if err != nil {
		t.Fatal(err)
	}
	if c := hist[0].Comment; !strings.HasPrefix(c, "add [4000000000 ") || len(c) > store.MaxComment {
		t.Errorf("stored comment (%d bytes): %.120q", len(c), c)
	}
	if res, err := audit.Verify(h.audit, h.ruleManager.audit.Head()); err != nil || res.Broken != nil {
		t.Fatalf("verify: %+v %v", res, err)
	}
}
