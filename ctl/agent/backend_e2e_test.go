package agent_test

import (
	"strings"
	"testing"

	"github.com/deepwall/deepwall/dataplane/probe"
	"github.com/deepwall/deepwall/internal/testnet"
)

// TestPrivilegedAgentModeAuto: --mode auto picks the eBPF backend (tcx on
// the ports, the default data path) on veth ports and
// NFQUEUE when XDP is hidden (DEEPWALL_HIDE_XDP=1), says why in status;
// the NFQUEUE agent leaves the user's iptables rules exactly as they
// were, both after a clean stop and, once the next agent has started and
// stopped, after a SIGKILL.
func TestPrivilegedAgentModeAuto(t *testing.T) {
	t.Run("xdp", func(t *testing.T) {
		topo := testnet.NewTopology(t, testnet.TopologyOptions{})
		a := startAgent(t, topo, t.TempDir())
		st := a.status(t)
		a.stop(t)
		if !strings.HasPrefix(st.Backend, "tc (tcx)") || !strings.HasPrefix(st.BackendReason, "auto: tcx on both ports") {
			t.Errorf("mode %q (%q)", st.Backend, st.BackendReason)
		}
	})
	t.Run("hidden xdp", func(t *testing.T) {
		t.Setenv(probe.HideXDPEnv, "1")
		topo := testnet.NewTopology(t, testnet.TopologyOptions{Bridge: true})
		for _, args := range [][]string{
			{"iptables", "-A", "FORWARD", "-p", "udp", "--dport", "9999", "-j", "ACCEPT"},
			{"iptables", "-N", "USERCHAIN"},
			{"iptables", "-I", "FORWARD", "1", "-j", "USERCHAIN"},
			{"ip6tables", "-A", "FORWARD", "-p", "tcp", "--dport", "9998", "-j", "DROP"},
		} {
			if out, err := topo.FW.Run(execCommand(args[0], args[1:]...)); err != nil {
				t.Fatalf("%v: %v %s", args, err, out)
			}
		}
		before := testnet.RulesSnapshot(t, topo.FW)
		server := testServer(t, topo)
		dir := t.TempDir()
		a := startAgent(t, topo, dir)
		st := a.status(t)
		if !strings.HasPrefix(st.Backend, "nfqueue") || !strings.Contains(st.BackendReason, probe.HideXDPEnv) {
			t.Errorf("mode %q (%q)", st.Backend, st.BackendReason)
		}
		code, out, _ := a.cli(t, "status")
		if code != 0 || !strings.Contains(out, "mode chosen") || !strings.Contains(out, "nfqueue") {
			t.Errorf("status: %s", out)
		}
		if res := rawRequest(t, topo, server, get("/x?id=1%20union%20select%20null")); !res.reset {
			t.Errorf("attack in nfqueue mode: %+v", res)
		}
		a.stop(t)
		if after := testnet.RulesSnapshot(t, topo.FW); after != before {
			t.Errorf("rules after a clean stop:\n%s---\n%s", before, after)
		}

		// Killed: its chains stay (and drop, fail-closed); the next agent
		// removes them first.
		a = startAgent(t, topo, dir, "--fail-closed")
		a.Kill(t)
		if after := testnet.RulesSnapshot(t, topo.FW); after == before || !strings.Contains(after, "DW-inner") {
			t.Fatalf("a killed agent left no rules behind")
		}
		b := startAgent(t, topo, dir)
		if res := rawRequest(t, topo, server, get("/alive")); res.status != 200 {
			t.Errorf("after the restart: %+v", res)
		}
		if !strings.Contains(b.Output(), "leftovers_removed=true") {
			t.Errorf("the second agent did not report removing leftovers:\n%s", b.Output())
		}
		b.stop(t)
		if after := testnet.RulesSnapshot(t, topo.FW); after != before {
			t.Errorf("rules after kill, restart and stop:\n%s---\n%s", before, after)
		}
	})
}
