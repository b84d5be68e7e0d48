package agent_test

import (
	"net/netip"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/ctl/eve"
	"github.com/deepwall/deepwall/internal/testctr"
	"github.com/deepwall/deepwall/internal/testnet"
)

// TestPrivilegedPodman protects real podman containers (runc, a CNI
// bridge network of their own) by name, id prefix, pid and netns name through
// podman's API service: each time under the container's podman name, an
// attack is blocked and a benign request answered, and unprotect leaves
// the host's wiring as it was. An unknown runtime and a container in
// network mode none are refused, saying why.
func TestPrivilegedPodman(t *testing.T) {
	pm := testctr.NewPodman(t)
	labels := map[string]string{"tier": "web", "app": "shop"}
	web := pm.Run(t, "web", testctr.Options{Labels: labels})
	waitBenign(t, pm.NS, web.IP)
	if !attack(pm.NS, web.IP) {
		t.Fatal("attack not answered before protection: the container does not serve")
	}
	before := testnet.WiringDump(t, pm.NS)
	host := &testnet.Host{NS: pm.NS}
	a := startHostAgent(t, host, t.TempDir(), "--podman-socket", pm.Socket)
	if code, out, _ := a.cli(t, "status"); code != 0 || strings.Contains(out, "ifindex") {
		t.Errorf("status of an agent with no ports shows ports:\n%s", out)
	}

	// By name, id prefix, pid, and podman's netns name (ip netns): each
	// time under the container's podman name.
	for _, target := range []string{"podman:" + web.Name, web.ID[:12], strconv.Itoa(web.PID), filepath.Base(web.Netns)} {
		t.Run(strings.SplitN(target, ":", 2)[0], func(t *testing.T) {
			if p := protectOnly(t, a, target); p.Name != web.Name || p.Runtime != "podman" || p.ContainerID != web.ID || p.Image != testctr.Image ||
				!reflect.DeepEqual(p.Labels, labels) {
				t.Errorf("port %+v: want the podman container %s (%s)", p, web.Name, web.ID)
			}
			checkInline(t, pm.NS, web.IP)
			unprotectRestores(t, a, web.Name, pm.NS, before)
			if !attack(pm.NS, web.IP) {
				t.Error("unprotected container unreachable")
			}
		})
	}

	waitAlertNaming(t, a, web, labels)

	none := pm.Run(t, "none", testctr.Options{Network: "none", Cmd: []string{"/bin/sleep", "3600"}})
	for _, tc := range []struct{ target, want string }{
		{"foo:" + web.Name, "unknown runtime \"foo\" (known: containerd, docker, podman)"},
		{"podman:" + none.Name, "network mode \"none\": the container has no network interface but lo (interfaces seen: lo)"},
		{"podman:absent-container", "no such container"},
	} {
		code, _, errOut := a.cli(t, "protect", tc.target)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("protect %s: exit %d, %q; want an error saying %q", tc.target, code, errOut, tc.want)
		}
	}
	if pl := portsOfAgent(t, a); len(pl.Ports) != 0 {
		t.Errorf("ports after refusals: %+v", pl)
	}
}

// TestPrivilegedContainerd protects a real containerd container (ctr,
// runc, in a namespace bridged on the host as CNI's bridge plugin would)
// by containerd:NAMESPACE/ID and by bare id, under its id: an attack is
// blocked, a benign request answered, and unprotect leaves the host's
// wiring as it was. Re-created under its id, it is protected again.
func TestPrivilegedContainerd(t *testing.T) {
	cd := testctr.NewContainerd(t)
	client := cd.Host.AddBridged(t, "client", netip.MustParseAddr("198.18.0.1"))
	web := cd.Run(t, "web", netip.MustParseAddr("198.18.0.2"))
	waitBenign(t, client.NS, web.IP)
	before := testnet.WiringDump(t, cd.Host.NS)
	a := startHostAgent(t, cd.Host, t.TempDir(), "--containerd-state", cd.State, "--containerd-socket", cd.Socket)
	for _, target := range []string{"containerd:" + cd.Namespace + "/" + web.ID, web.ID} {
		if p := protectOnly(t, a, target); p.Name != web.ID || p.Runtime != "containerd" || p.Labels[testctr.RoleLabel] != "web" {
			t.Fatalf("port %+v: want the containerd container %s with its labels", p, web.ID)
		}
		checkInline(t, client.NS, web.IP)
		unprotectRestores(t, a, web.ID, cd.Host.NS, before)
	}

	// Removed and run again under its id in a new namespace (CNI DEL and
	// ADD): protected again on containerd's task start event.
	if code, _, errOut := a.cli(t, "protect", web.ID); code != 0 {
		t.Fatalf("protect: %s", errOut)
	}
	old := waitPort(t, a, web.ID, func(p api.PortStatus) bool { return p.State == "running" })
	cd.Recreate(t, web)
	start := time.Now()
	p := waitPort(t, a, web.ID, func(p api.PortStatus) bool { return p.State == "running" && p.Inner != old.Inner })
	t.Logf("re-created: protected again %v after ctr run returned (inner %s -> %s)", time.Since(start).Round(time.Millisecond), old.Inner, p.Inner)
	// The new container has a new MAC: the client forgets the old one
	// (as it would after its probes failed, seconds later).
	if out, err := client.NS.Run(exec.Command("ip", "neigh", "flush", "all")); err != nil {
		t.Fatalf("ip neigh flush: %v: %s", err, out)
	}
	waitBenign(t, client.NS, web.IP)
	checkInline(t, client.NS, web.IP)
	if code, _, errOut := a.cli(t, "unprotect", web.ID); code != 0 {
		t.Fatalf("unprotect: %s", errOut)
	}
}

// protectOnly protects target (logging how long it took) and returns
// the agent's only port.
func protectOnly(tb testing.TB, a *agentProc, target string) api.PortStatus {
	tb.Helper()
	start := time.Now()
	code, out, errOut := a.cli(tb, "protect", target)
	if code != 0 {
		tb.Fatalf("protect %s: %s\n%s", target, errOut, a.Output())
	}
	tb.Logf("%s (%v)", strings.TrimSpace(out), time.Since(start).Round(time.Millisecond))
	pl := portsOfAgent(tb, a)
	if len(pl.Ports) != 1 {
		tb.Fatalf("ports: %+v", pl)
	}
	return pl.Ports[0]
}

// checkInline checks from client that ip's test server is protected: a
// SQL injection is not answered, a benign request is.
func checkInline(tb testing.TB, client *testnet.NS, ip netip.Addr) {
	tb.Helper()
	time.Sleep(300 * time.Millisecond) // the pair's first frames
	if attack(client, ip) {
		tb.Errorf("%s: attack answered while protected", ip)
	}
	if body := benign(client, ip); body != "ok\n" {
		tb.Errorf("%s: benign request while protected: %q", ip, body)
	}
}

// unprotectRestores unprotects name and checks that host's wiring is
// before's again.
func unprotectRestores(tb testing.TB, a *agentProc, name string, host *testnet.NS, before string) {
	tb.Helper()
	if code, _, errOut := a.cli(tb, "unprotect", name); code != 0 {
		tb.Fatalf("unprotect %s: %s", name, errOut)
	}
	if after := testnet.WiringDump(tb, host); after != before {
		tb.Errorf("host wiring differs after unprotect:\n--- before\n%s\n--- after\n%s", before, after)
	}
}

// benign fetches / from ip's test server from ns; "" when it fails.
func benign(ns *testnet.NS, ip netip.Addr) string { return fetch(ns, ip, "/") }

// waitBenign waits until ip's test server answers (it starts with its
// container, not before).
func waitBenign(tb testing.TB, ns *testnet.NS, ip netip.Addr) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for benign(ns, ip) != "ok\n" {
		if time.Now().After(deadline) {
			tb.Fatalf("%s does not answer", ip)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPrivilegedPodmanLifecycle: a podman container protected by name
// stays protected across restart, stop + start, rm + run under the same
// name, network disconnect + connect (failed, with the reason, while it
// has no eth0), and a restart while no agent runs: each time the agent protects
// the new namespace again (start events, or its periodic pass), an
// attack is blocked and a benign request answered; while the container
// is stopped ports shows the protection pending, with the reason.
// The time from the runtime's command returning to protected is logged.
func TestPrivilegedPodmanLifecycle(t *testing.T) {
	pm := testctr.NewPodman(t)
	web := pm.Run(t, "web", testctr.Options{})
	waitBenign(t, pm.NS, web.IP)
	host := &testnet.Host{NS: pm.NS}
	dir := t.TempDir()
	args := []string{"--podman-socket", pm.Socket}
	a := startHostAgent(t, host, dir, args...)
	if code, _, errOut := a.cli(t, "protect", "podman:"+web.Name); code != 0 {
		t.Fatalf("protect: %s", errOut)
	}
	checkInline(t, pm.NS, web.IP)

	outer := t // the agent started again outlives the subtest
	for _, ev := range []struct {
		name string
		do   func(t *testing.T)
	}{
		{"restart", func(t *testing.T) { pm.Command(t, "restart", "-t", "0", web.Name) }},
		{"stop-start", func(t *testing.T) {
			pm.Command(t, "stop", "-t", "0", web.Name)
			p := waitPort(t, a, web.Name, func(p api.PortStatus) bool { return p.State == "pending" })
			if !p.Follows || !strings.Contains(p.Reason, web.Name) {
				t.Errorf("pending protection: %+v", p)
			}
			code, out, _ := a.cli(t, "ports")
			if code != 0 || !strings.Contains(out, web.Name+": pending: ") {
				t.Errorf("ports does not say why %s is pending:\n%s", web.Name, out)
			}
			pm.Command(t, "start", web.Name)
		}},
		{"rm-run", func(t *testing.T) { pm.Recreate(t, web) }},
		{"network-disconnect-connect", func(t *testing.T) {
			pm.Command(t, "network", "disconnect", web.Network, web.Name)
			// Running without eth0: the protection fails, saying why,
			// until the container has it again.
			p := waitPort(t, a, web.Name, func(p api.PortStatus) bool { return p.State == "failed" })
			if !strings.Contains(p.Reason, "interfaces in the container: lo") {
				t.Errorf("failed protection: %+v", p)
			}
			pm.Command(t, "network", "connect", web.Network, web.Name)
		}},
		{"restart-without-agent", func(t *testing.T) {
			a.stop(t)
			pm.Command(t, "restart", "-t", "0", web.Name)
			a = startHostAgent(outer, host, dir, args...)
		}},
	} {
		t.Run(ev.name, func(t *testing.T) {
			old := waitPort(t, a, web.Name, func(p api.PortStatus) bool { return p.State == "running" })
			ev.do(t)
			start := time.Now()
			pm.Inspect(t, web)
			p := waitPort(t, a, web.Name, func(p api.PortStatus) bool { return p.State == "running" && p.Inner != old.Inner })
			t.Logf("protected again %v after the command returned (inner %s -> %s, id %.12s)",
				time.Since(start).Round(time.Millisecond), old.Inner, p.Inner, p.ContainerID)
			if p.ContainerID != web.ID || p.Name != web.Name {
				t.Errorf("protected %+v, want %s (%s)", p, web.Name, web.ID)
			}
			waitBenign(t, pm.NS, web.IP)
			checkInline(t, pm.NS, web.IP)
		})
	}

	waitAlertNaming(t, a, web, nil) // the last id: the container re-created
	if code, _, errOut := a.cli(t, "unprotect", web.Name); code != 0 {
		t.Fatalf("unprotect: %s", errOut)
	}
	if pl := portsOfAgent(t, a); len(pl.Ports) != 0 {
		t.Errorf("ports after unprotect: %+v", pl)
	}
	pm.Command(t, "restart", "-t", "0", web.Name) // not followed any more
	pm.Inspect(t, web)
	waitBenign(t, pm.NS, web.IP)
	time.Sleep(1500 * time.Millisecond) // more than a periodic pass
	if pl := portsOfAgent(t, a); len(pl.Ports) != 0 {
		t.Errorf("unprotected container protected again: %+v", pl)
	}
	if !attack(pm.NS, web.IP) {
		t.Error("unprotected container's server does not answer")
	}
}

// waitAlertNaming waits for a blocked alert in the verdict log whose
// container object is c (name, podman, id, image, labels).
func waitAlertNaming(tb testing.TB, a *agentProc, c *testctr.Container, labels map[string]string) {
	tb.Helper()
	a.waitEvents(tb, "a blocked alert naming "+c.Name, func(evs []eve.Event) bool {
		for _, ev := range evs {
			if ev.Alert != nil && ev.Alert.Action == "blocked" && ev.Container != nil && reflect.DeepEqual(*ev.Container,
				eve.Container{Name: c.Name, Runtime: "podman", ID: c.ID, Image: testctr.Image, Labels: labels}) {
				return true
			}
		}
		return false
	})
}

// waitPort waits until the agent lists name in a state ok accepts.
func waitPort(tb testing.TB, a *agentProc, name string, ok func(api.PortStatus) bool) api.PortStatus {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pl := portsOfAgent(tb, a)
		for _, p := range pl.Ports {
			if p.Name == name && ok(p) {
				return p
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s not in the state wanted: %+v\n%s", name, pl, a.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPrivilegedPodmanSelector: protect --selector protects the running
// podman containers it matches (not the others), one started afterwards
// (timed), and a member restarted; the policy survives an agent
// restart; a member cannot be unprotected alone; unprotect --selector
// takes them all out.
func TestPrivilegedPodmanSelector(t *testing.T) {
	pm := testctr.NewPodman(t)
	web1 := pm.Run(t, "web", testctr.Options{Labels: map[string]string{"tier": "web"}})
	db := pm.Run(t, "db", testctr.Options{Labels: map[string]string{"tier": "db"}})
	waitBenign(t, pm.NS, web1.IP)
	waitBenign(t, pm.NS, db.IP)
	host, dir := &testnet.Host{NS: pm.NS}, t.TempDir()
	a := startHostAgent(t, host, dir, "--podman-socket", pm.Socket)
	const sel = "label:tier=web,runtime:podman"
	code, out, errOut := a.cli(t, "protect", "--selector", sel)
	if code != 0 || !strings.Contains(out, "protects 1 container: "+web1.Name) {
		t.Fatalf("protect --selector: %d %s %s\n%s", code, out, errOut, a.Output())
	}
	t.Log(strings.TrimSpace(out))
	waitPort(t, a, web1.Name, func(p api.PortStatus) bool { return p.State == "running" && p.Policy == sel })
	checkInline(t, pm.NS, web1.IP)
	if !attack(pm.NS, db.IP) {
		t.Error("a container the selector does not match is protected")
	}

	// Started afterwards: protected by the selector.
	start := time.Now()
	web2 := pm.Run(t, "web", testctr.Options{Labels: map[string]string{"tier": "web"}})
	waitPort(t, a, web2.Name, func(p api.PortStatus) bool { return p.State == "running" && p.Policy == sel })
	t.Logf("a matching container started: protected %v after podman run returned", time.Since(start).Round(time.Millisecond))
	waitBenign(t, pm.NS, web2.IP)
	checkInline(t, pm.NS, web2.IP)

	// A member restarted: released, then protected again by the selector.
	old := waitPort(t, a, web1.Name, func(p api.PortStatus) bool { return p.State == "running" })
	pm.Command(t, "restart", "-t", "0", web1.Name)
	start = time.Now()
	pm.Inspect(t, web1)
	waitPort(t, a, web1.Name, func(p api.PortStatus) bool { return p.State == "running" && p.Inner != old.Inner })
	t.Logf("a member restarted: protected again %v after podman restart returned", time.Since(start).Round(time.Millisecond))
	waitBenign(t, pm.NS, web1.IP)
	checkInline(t, pm.NS, web1.IP)

	// The agent restarted: the policy and its members are still there.
	a.stop(t)
	a = startHostAgent(t, host, dir, "--podman-socket", pm.Socket)
	waitPort(t, a, web2.Name, func(p api.PortStatus) bool { return p.State == "running" && p.Policy == sel })
	checkInline(t, pm.NS, web2.IP)

	if code, _, errOut := a.cli(t, "unprotect", web1.Name); code == 0 || !strings.Contains(errOut, "protected by selector:"+sel) {
		t.Errorf("unprotect of a member: exit %d, %q", code, errOut)
	}
	pl := portsOfAgent(t, a)
	var policy *api.PortStatus
	for i := range pl.Ports {
		if pl.Ports[i].Kind == "selector" {
			policy = &pl.Ports[i]
		}
	}
	if policy == nil || policy.Name != "selector:"+sel || policy.State != "policy" || len(policy.Members) != 2 {
		t.Errorf("policy in ports: %+v", policy)
	}
	if code, _, errOut := a.cli(t, "unprotect", "--selector", sel); code != 0 {
		t.Fatalf("unprotect --selector: %s", errOut)
	}
	if pl := portsOfAgent(t, a); len(pl.Ports) != 0 {
		t.Errorf("ports after unprotect --selector: %+v", pl)
	}
	if !attack(pm.NS, web1.IP) || !attack(pm.NS, web2.IP) {
		t.Error("a container is still protected after unprotect --selector")
	}
}

// TestPrivilegedPodmanNFQueue: an agent in NFQUEUE mode protects a podman
// container by name through a joint bridge, and again after a restart;
// unprotect leaves none of deepwall's links.
func TestPrivilegedPodmanNFQueue(t *testing.T) {
	pm := testctr.NewPodman(t)
	web := pm.Run(t, "web", testctr.Options{})
	waitBenign(t, pm.NS, web.IP)
	a := startHostAgent(t, &testnet.Host{NS: pm.NS}, t.TempDir(), "--mode", "nfqueue", "--podman-socket", pm.Socket)
	if p := protectOnly(t, a, "podman:"+web.Name); p.Dataplane != "nfqueue" || p.Name != web.Name {
		t.Fatalf("port %+v: want %s through nfqueue", p, web.Name)
	}
	checkInline(t, pm.NS, web.IP)
	old := waitPort(t, a, web.Name, func(p api.PortStatus) bool { return p.State == "running" })
	pm.Command(t, "restart", "-t", "0", web.Name)
	pm.Inspect(t, web)
	waitPort(t, a, web.Name, func(p api.PortStatus) bool { return p.State == "running" && p.Inner != old.Inner })
	waitBenign(t, pm.NS, web.IP)
	checkInline(t, pm.NS, web.IP)
	if code, _, errOut := a.cli(t, "unprotect", web.Name); code != 0 {
		t.Fatalf("unprotect: %s", errOut)
	}
	links, err := pm.NS.Netlink(t).LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if n := l.Attrs().Name; strings.HasPrefix(n, "dwo") || strings.HasPrefix(n, "dwp") || strings.HasPrefix(n, "dwb") {
			t.Errorf("%s left behind", n)
		}
	}
	if !attack(pm.NS, web.IP) {
		t.Error("unprotected container's server does not answer")
	}
}
