package agent

import (
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/rules"
	"github.com/deepwall/deepwall/xdp"
)

const containerRules = `rules:
  - {id: 7, name: web console closed, action: block, proto: tcp, dst: container:web, dst_port: 9090}
`

func applyText(tb testing.TB, tm *testManager, text string) (api.ChangeResult, error) {
	tb.Helper()
	return tm.Apply(&api.RulesRequest{Main: "r.yaml", Files: map[string]string{"r.yaml": text}}, caller{})
}

// runsWebBlock reports whether the engine's set and the kernel ACL block
// tcp to ip:9090 by rule 7.
func runsWebBlock(tb testing.TB, tm *testManager, ip string) bool {
	tb.Helper()
	dst := netip.AddrPortFrom(netip.MustParseAddr(ip), 9090)
	src := netip.MustParseAddrPort("198.18.0.1:40000")
	act, id := tm.eng.current().ACLVerdict(6, src, dst)
	engine := act == rules.ActionBlock && id == 7
	kernel := false
	for _, r := range tm.kern.acl.Rules {
		if r.ID == 7 && r.Action == xdp.ACLDeny && slices.Contains(r.Dst, netip.PrefixFrom(dst.Addr(), 32)) {
			kernel = true
		}
	}
	if engine != kernel {
		tb.Errorf("engine blocks %s:9090: %v, kernel ACL: %v", ip, engine, kernel)
	}
	return engine
}

// Container selectors resolve to the protected container's address in
// what runs (not in what is stored), follow an address change, and a
// rolled-back change puts back the resolved set.
func TestContainerRulesResolved(t *testing.T) {
	tm := newTestManager(t, testRules)
	var web atomic.Pointer[[]netip.Addr] // the protected container web's addresses
	web.Store(&[]netip.Addr{netip.MustParseAddr("198.18.0.2")})
	tm.containers = func(name string) []netip.Addr {
		if name == "web" {
			return *web.Load()
		}
		return nil
	}
	if _, err := applyText(t, tm, containerRules); err != nil {
		t.Fatal(err)
	}
	if !runsWebBlock(t, tm, "198.18.0.2") {
		t.Fatal("rule 7 does not block web's address")
	}
	if set, _, _ := tm.store.Current(); len(set.Rule(7).DstContainers) != 1 || len(set.Rule(7).Dst) != 0 {
		t.Errorf("stored rule %+v: want the selector, no address", set.Rule(7))
	}

	// The address changes: recompile.
	web.Store(&[]netip.Addr{netip.MustParseAddr("198.18.0.5")})
	v := tm.current().version.Number
	if err := tm.recompileContainers(); err != nil {
		t.Fatal(err)
	}
	if runsWebBlock(t, tm, "198.18.0.2") || !runsWebBlock(t, tm, "198.18.0.5") {
		t.Error("the policy did not follow the address")
	}
	if tm.current().version.Number != v {
		t.Errorf("recompiling made version %d, want %d", tm.current().version.Number, v)
	}

	// A change whose audit entry cannot be written is rolled back: the
	// set put back must be the resolved one.
	tm.ruleManager.audit.Close()
	if _, err := applyText(t, tm, containerRules+"  - {id: 8, action: block, proto: tcp, dst_port: 8}\n"); err == nil {
		t.Fatal("a change with no audit log succeeded")
	}
	if tm.eng.current().Set.Rule(8) != nil || !runsWebBlock(t, tm, "198.18.0.5") {
		t.Error("after the rollback the container rule does not block web")
	}

	// No such container: the rule matches nothing.
	web.Store(&[]netip.Addr{})
	if err := tm.recompileContainers(); err != nil {
		t.Fatal(err)
	}
	if runsWebBlock(t, tm, "198.18.0.5") {
		t.Error("a container without address still matched")
	}
}
