package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/deepwall/deepwall/ctl/agent"
	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/ctl/eve"
	"github.com/deepwall/deepwall/internal/testctr"
	"github.com/deepwall/deepwall/internal/testnet"
)

// TestPrivilegedCNI runs podman (CNI backend) with deepwall-cni chained
// after the bridge plugin of a network: the container's entrypoint sends
// an attack as its very first connection, to a server on the host, and
// it is blocked (the entrypoint records that its request got no answer,
// the agent's alert exists); the container is protected under its podman
// name, CHECK-able, and `podman rm` (CNI DEL) releases it, leaving the
// host's wiring as it was. Installed with `deepwall-cni install`.
func TestPrivilegedCNI(t *testing.T) {
	pm := testctr.NewPodman(t)
	if backend := pm.Command(t, "info", "--format", "{{.Host.NetworkBackend}}"); backend != "cni" {
		if os.Getenv(testnet.RequireEnv) == "1" {
			t.Fatalf("podman's network backend is %s, not cni", backend)
		}
		t.Skipf("podman's network backend is %s, not cni", backend)
	}
	a := startHostAgent(t, &testnet.Host{NS: pm.NS}, t.TempDir(), "--podman-socket", pm.Socket)
	plugins := installCNIPlugin(t, a.Socket)
	// podman finds its CNI plugins in containers.conf's cni_plugin_dirs:
	// this test's copy first, Debian's bridge and host-local after.
	conf := filepath.Join(t.TempDir(), "containers.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("[network]\ncni_plugin_dirs = [%q, \"/usr/lib/cni\"]\n", plugins)), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CONTAINERS_CONF", conf)

	// A network of the test's with deepwall-cni chained last.
	octet := 248 + os.Getpid()%8
	gw := netip.MustParseAddr(fmt.Sprintf("198.19.%d.1", octet))
	network := fmt.Sprintf("dwt-%d-cni", os.Getpid())
	pm.Command(t, "network", "create", "--subnet", fmt.Sprintf("198.19.%d.0/24", octet), network)
	t.Cleanup(func() {
		_, _ = exec.Command("podman", "network", "rm", "-f", network).CombinedOutput()
		_ = os.RemoveAll(filepath.Join("/var/lib/cni/networks", network))
	})
	chainPlugin(t, filepath.Join("/etc/cni/net.d", network+".conflist"),
		map[string]any{"type": "deepwall-cni", "socket": a.Socket, "failClosed": true})
	webServer(t, pm.NS, netip.IPv4Unspecified())
	before := testnet.WiringDump(t, pm.NS)

	start := time.Now()
	web := pm.Run(t, "web", testctr.Options{Network: network, Cmd: []string{"/bin/sh", "-c", firstRequestEntry(gw)}})
	t.Logf("podman run with deepwall-cni: %v", time.Since(start).Round(time.Millisecond))
	p := waitPort(t, a, web.Name, func(p api.PortStatus) bool { return p.State == "running" })
	if p.Iface != "eth0" || !p.FailClosed || p.Kind != "cni" || p.ContainerID != web.ID {
		t.Errorf("port %+v: want eth0, fail-closed, kind cni, container id %s", p, web.ID)
	}
	checkFirstRequests(t, pm.NS, web.IP)
	waitFirstBlocked(t, a, gw, web.Name, web.ID, web.IP)
	// Once it runs, the agent names it after its runtime (runtime,
	// image) in ports and events; it stays the CNI's (not followed).
	start = time.Now()
	p = waitPort(t, a, web.Name, func(p api.PortStatus) bool { return p.Runtime == "podman" })
	t.Logf("identified as podman's %v after the port ran", time.Since(start).Round(time.Millisecond))
	if p.Image != testctr.Image || p.Kind != "cni" || p.Follows || p.ContainerID != web.ID {
		t.Errorf("port %+v: want podman's image %s, kind cni, not followed", p, testctr.Image)
	}
	checkInline(t, pm.NS, web.IP)
	_, ports, _ := a.cli(t, "ports")
	t.Logf("deepwall ports:\n%s", ports)

	// CHECK: inline; not after an unprotect by hand. podman restart (CNI DEL, which
	// finds nothing to release, then ADD) protects it again.
	if err := cniCheck(t, pm.NS, network, plugins, a.Socket, web); err != nil {
		t.Errorf("CNI CHECK of a protected container: %v", err)
	}
	if code, _, errOut := a.cli(t, "unprotect", web.Name); code != 0 {
		t.Fatalf("unprotect: %s", errOut)
	}
	if err := cniCheck(t, pm.NS, network, plugins, a.Socket, web); err == nil || !strings.Contains(err.Error(), "not inline") {
		t.Errorf("CNI CHECK of an unprotected container: %v, want not inline", err)
	}
	start = time.Now()
	pm.Command(t, "restart", "-t", "0", web.Name)
	t.Logf("podman restart with deepwall-cni: %v", time.Since(start).Round(time.Millisecond))
	pm.Inspect(t, web)
	waitPort(t, a, web.Name, func(p api.PortStatus) bool { return p.State == "running" && p.Target == web.Netns })
	waitBenign(t, pm.NS, web.IP)
	if got := fetch(pm.NS, web.IP, "/first"); got != "blocked\n" {
		t.Errorf("after restart, the entrypoint's first request (an attack): %q, want blocked", got)
	}

	// CNI DEL (podman rm) releases it; the bridge plugin's DEL removes
	// the veth: the host is as before but for the bridge, which the
	// bridge plugin keeps for the network's next container.
	pm.Command(t, "rm", "-f", "-t", "0", web.Name)
	if pl := portsOfAgent(t, a); len(pl.Ports) != 0 {
		t.Errorf("ports after podman rm: %+v", pl)
	}
	deleteBridge(t, pm.NS, gw)
	if after := testnet.WiringDump(t, pm.NS); after != before {
		t.Errorf("host wiring differs after CNI DEL:\n--- before\n%s\n--- after\n%s", before, after)
	}
	var ops []string
	for _, e := range agent.ReadAudit(t, a.Audit) {
		if e.OK && strings.Contains(e.Detail, web.Name) {
			ops = append(ops, e.Op)
		}
	}
	if want := "protect unprotect protect unprotect"; strings.Join(ops, " ") != want {
		t.Errorf("audited ops naming %s: %v, want %s (ADD, by hand, restart's ADD, rm's DEL)", web.Name, ops, want)
	}

	// failClosed with no agent: ADD fails, the container does not start.
	a.stop(t)
	var runOut []byte
	err := pm.NS.Do(func() error {
		var err error
		runOut, err = exec.Command("podman", "run", "-d", "--name", web.Name, "--network", network, "--runtime", "runc", testctr.Image, "/bin/sleep", "60").CombinedOutput()
		return err
	})
	if err == nil || !strings.Contains(string(runOut), "no agent listening") {
		t.Errorf("podman run with no agent, failClosed: %v: %s", err, runOut)
	}
	t.Logf("podman run with no agent: %s", bytes.TrimSpace(runOut))
	if out := pm.Command(t, "ps", "--filter", "name="+web.Name, "--format", "{{.Names}}"); out != "" {
		t.Errorf("a container runs unprotected: %s", out)
	}
	pm.Command(t, "rm", "-f", "--ignore", web.Name) // created, never started
}

// installCNIPlugin builds deepwall-cni and installs it with
// `deepwall-cni install` in a directory of the test's, which it returns.
func installCNIPlugin(tb testing.TB, socket string) string {
	tb.Helper()
	dir := tb.TempDir()
	bin := filepath.Join(dir, "deepwall-cni")
	if out, err := exec.Command("go", "build", "-trimpath", "-o", bin, "github.com/deepwall/deepwall/cmd/deepwall-cni").CombinedOutput(); err != nil {
		tb.Fatalf("build deepwall-cni: %v\n%s", err, out)
	}
	plugins := filepath.Join(dir, "bin")
	out, err := exec.Command(bin, "install", "-dir", plugins, "-socket", socket).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"socket": "`+socket+`"`) {
		tb.Fatalf("deepwall-cni install: %v\n%s", err, out)
	}
	return plugins
}

// firstRequestEntry is a container command that sends, as its first
// connection, a SQL injection to gw:8080 (the answer, if any, in
// /www/first), then a benign request (/www/benign), then serves /www on
// HTTPPort. busybox's static wget crashes resolving; nc speaks HTTP/1.0.
func firstRequestEntry(gw netip.Addr) string {
	get := func(path, out string) string {
		return fmt.Sprintf("printf 'GET %%s HTTP/1.0\\r\\n\\r\\n' '%s' | nc -w 5 %s 8080 >%s", path, gw, out)
	}
	return get("/?id=1%20UNION%20SELECT%20password%20FROM%20users", "/www/r1") +
		"; if [ -s /www/r1 ]; then echo answered; else echo blocked; fi >/www/first; " +
		get("/", "/www/benign") + fmt.Sprintf("; exec /bin/httpd -f -p %d -h /www", testctr.HTTPPort)
}

// checkFirstRequests checks, from ns, what firstRequestEntry recorded in
// the container at ip: the attack blocked, the benign request answered.
func checkFirstRequests(tb testing.TB, ns *testnet.NS, ip netip.Addr) {
	tb.Helper()
	waitBenign(tb, ns, ip)
	if got := fetch(ns, ip, "/first"); got != "blocked\n" {
		tb.Errorf("the entrypoint's first request (an attack): %q, want blocked", got)
	}
	if got := fetch(ns, ip, "/benign"); !strings.HasSuffix(got, "\r\n\r\nok") {
		tb.Errorf("the entrypoint's benign request: %q, want ok", got)
	}
}

// waitFirstBlocked waits for the blocked alert of c's first request to
// gw, naming c by its CNI name and id (and perhaps, when the agent knew
// its runtime by then, runtime and image).
func waitFirstBlocked(tb testing.TB, a *agentProc, gw netip.Addr, name, id string, src netip.Addr) {
	tb.Helper()
	a.waitEvents(tb, "the blocked alert of the entrypoint's first request", func(evs []eve.Event) bool {
		for _, ev := range evs {
			if ev.Alert != nil && ev.Alert.Action == "blocked" && ev.DestIP == gw.String() && ev.SrcIP == src.String() &&
				ev.Container != nil && ev.Container.Name == name && ev.Container.ID == id {
				return true
			}
		}
		return false
	})
}

// cniCheck runs deepwall-cni's CHECK (plugins in dir) of c's attachment
// in ns as libcni does, with the result podman cached as prevResult.
// Not the whole chain's: the bridge plugin's CHECK fails on a protected
// container, whose host veth has left the bridge (docs/containers.md).
func cniCheck(tb testing.TB, ns *testnet.NS, network, dir, socket string, c *testctr.Container) error {
	tb.Helper()
	conf, err := libcni.ConfFromBytes([]byte(fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"type":"deepwall-cni","socket":%q}`, network, socket)))
	if err != nil {
		tb.Fatal(err)
	}
	cfg := libcni.NewCNIConfig([]string{dir}, nil)
	rt := &libcni.RuntimeConf{ContainerID: c.ID, NetNS: c.Netns, IfName: "eth0",
		Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAME", c.Name}}}
	return ns.Do(func() error { return cfg.CheckNetwork(context.Background(), conf, rt) })
}

// chainPlugin appends plugin to the plugins of the conflist file.
func chainPlugin(tb testing.TB, file string, plugin map[string]any) {
	tb.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		tb.Fatal(err)
	}
	var list map[string]any
	if err := json.Unmarshal(b, &list); err != nil {
		tb.Fatalf("%s: %v", file, err)
	}
	list["plugins"] = append(list["plugins"].([]any), plugin)
	if b, err = json.MarshalIndent(list, "", "  "); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(file, b, 0o644); err != nil {
		tb.Fatal(err)
	}
}

// deleteBridge deletes the bridge holding gw in ns.
func deleteBridge(tb testing.TB, ns *testnet.NS, gw netip.Addr) {
	tb.Helper()
	h := ns.Netlink(tb)
	links, err := h.LinkList()
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range links {
		if l.Type() != "bridge" {
			continue
		}
		addrs, _ := h.AddrList(l, 0)
		for _, ad := range addrs {
			if ad.IP.String() == gw.String() {
				if err := h.LinkDel(l); err != nil {
					tb.Fatal(err)
				}
				return
			}
		}
	}
}

// fetch gets path from ip's test server from ns; "" when it fails.
func fetch(ns *testnet.NS, ip netip.Addr, path string) string {
	resp, err := testnet.HTTPClient(ns, false).Get(fmt.Sprintf("http://%s:%d%s", ip, testctr.HTTPPort, path))
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestPrivilegedContainerdCNI is what containerd's CRI does, through
// libcni: a namespace made for the container, the chain bridge +
// host-local + deepwall-cni ADDed, then the container run in it (ctr run
// --with-ns): its entrypoint's first request, an attack, is blocked; DEL
// releases it and leaves the host's wiring as it was.
func TestPrivilegedContainerdCNI(t *testing.T) {
	cd := testctr.NewContainerd(t)
	a := startHostAgent(t, cd.Host, t.TempDir())
	plugins := installCNIPlugin(t, a.Socket)
	octet := 240 + os.Getpid()%8
	gw := netip.MustParseAddr(fmt.Sprintf("198.19.%d.1", octet))
	list, err := libcni.ConfListFromBytes([]byte(fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "dwt-cni", "plugins": [
		{"type": "bridge", "bridge": "dwcni0", "isGateway": true,
		 "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": "198.19.%d.0/24"}]]}},
		{"type": "deepwall-cni", "socket": %q}]}`, t.TempDir(), octet, a.Socket)))
	if err != nil {
		t.Fatal(err)
	}
	webServer(t, cd.Host.NS, netip.IPv4Unspecified())
	before := testnet.WiringDump(t, cd.Host.NS)

	cfg := libcni.NewCNIConfigWithCacheDir([]string{plugins, "/usr/lib/cni"}, t.TempDir(), nil)
	sandbox := testnet.NewNS(t, "sandbox")
	rt := &libcni.RuntimeConf{ContainerID: fmt.Sprintf("sandbox%d", os.Getpid()), NetNS: sandbox.Path, IfName: "eth0",
		Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAME", "web"}}}
	var res types.Result
	start := time.Now()
	if err := cd.Host.NS.Do(func() error {
		var err error
		res, err = cfg.AddNetworkList(context.Background(), list, rt)
		return err
	}); err != nil {
		t.Fatalf("CNI ADD: %v", err)
	}
	t.Logf("CNI ADD (bridge, host-local, deepwall-cni): %v", time.Since(start).Round(time.Millisecond))
	r, err := current.NewResultFromResult(res)
	if err != nil || len(r.IPs) != 1 {
		t.Fatalf("CNI ADD result %v: %v", res, err)
	}
	ip, _ := netip.AddrFromSlice(r.IPs[0].Address.IP.To4())
	p := waitPort(t, a, "web", func(p api.PortStatus) bool { return p.State == "running" })
	if p.Kind != "cni" || p.ContainerID != rt.ContainerID || p.Target != sandbox.Path {
		t.Errorf("port %+v: want kind cni, container id %s, target %s", p, rt.ContainerID, sandbox.Path)
	}

	cd.RunIn(t, "web", sandbox.Path, "/bin/sh", "-c", firstRequestEntry(gw))
	checkFirstRequests(t, cd.Host.NS, ip)
	waitFirstBlocked(t, a, gw, "web", rt.ContainerID, ip)

	for range 2 { // DEL is idempotent
		if err := cd.Host.NS.Do(func() error { return cfg.DelNetworkList(context.Background(), list, rt) }); err != nil {
			t.Fatalf("CNI DEL: %v", err)
		}
	}
	if pl := portsOfAgent(t, a); len(pl.Ports) != 0 {
		t.Errorf("ports after CNI DEL: %+v", pl)
	}
	deleteBridge(t, cd.Host.NS, gw)
	if after := testnet.WiringDump(t, cd.Host.NS); after != before {
		t.Errorf("host wiring differs after CNI DEL:\n--- before\n%s\n--- after\n%s", before, after)
	}
}
