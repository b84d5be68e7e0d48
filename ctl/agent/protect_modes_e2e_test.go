package agent_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/deepwall/deepwall/ctl/agent"
	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/ctl/eve"
	"github.com/deepwall/deepwall/dataplane/probe"
	"github.com/deepwall/deepwall/internal/testnet"
)

// keepAlive is one HTTP/1.1 connection kept open across the test: every
// get reuses it, so an error means that connection broke.
type keepAlive struct {
	c  net.Conn
	br *bufio.Reader
	ip netip.Addr
}

func dialKeepAlive(tb testing.TB, ns *testnet.NS, server netip.AddrPort) *keepAlive {
	tb.Helper()
	c := testnet.Dial(tb, ns, "tcp", server)
	return &keepAlive{c: c, br: bufio.NewReader(c), ip: server.Addr()}
}

// get sends GET path on the kept connection and reads the answer.
func (k *keepAlive) get(path string) error {
	k.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(k.c, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: deepwall-e2e/1.0\r\n\r\n", path, k.ip); err != nil {
		return err
	}
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// protectCLI runs deepwall protect and returns the port's status.
func protectCLI(tb testing.TB, a *agentProc, args ...string) api.PortStatus {
	tb.Helper()
	code, out, errOut := a.cli(tb, append([]string{"protect"}, append(args, "-o", "json")...)...)
	if code != 0 {
		tb.Fatalf("protect %v: %s\n%s", args, errOut, a.Output())
	}
	var st api.PortStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		tb.Fatalf("protect %v: %v: %s", args, err, out)
	}
	return st
}

// alertsTo returns the alerts of flows to dst.
func alertsTo(evs []eve.Event, dst netip.Addr) []eve.Event {
	var out []eve.Event
	for _, ev := range evs {
		if ev.EventType == eve.EventAlert && ev.Alert != nil && ev.DestIP == dst.String() {
			out = append(out, ev)
		}
	}
	return out
}

// TestPrivilegedProtectMonitor: a container in monitor mode receives an
// attack and the log says it would have been blocked; switched live to
// protect mode, the same attack is blocked, and a keep-alive connection
// opened in monitor mode keeps working across the change.
func TestPrivilegedProtectMonitor(t *testing.T) {
	testnet.RequirePrivileged(t)
	host := testnet.NewHost(t)
	client := host.AddBridged(t, "client", netip.MustParseAddr("198.18.0.1"))
	web := host.AddBridged(t, "web", netip.MustParseAddr("198.18.0.2"))
	webServer(t, web.NS, web.IP)

	a := startHostAgent(t, host, t.TempDir())
	defer a.stop(t)
	st := protectCLI(t, a, web.NS.Name, "--mode", "monitor")
	if st.Changed != "protected" || st.Mode != api.ModeMonitor {
		t.Fatalf("protect --mode monitor: %+v", st)
	}
	ka := dialKeepAlive(t, client.NS, netip.AddrPortFrom(web.IP, 8080))
	if err := ka.get("/"); err != nil {
		t.Fatalf("keep-alive in monitor mode: %v", err)
	}

	if !attack(client.NS, web.IP) {
		t.Fatalf("monitor mode: the attack was not answered (it must pass):\n%s", a.Output())
	}
	evs := a.waitEvents(t, "a would-block alert", func(evs []eve.Event) bool {
		for _, ev := range alertsTo(evs, web.IP) {
			if ev.Alert.WouldBlock {
				return true
			}
		}
		return false
	})
	for _, ev := range alertsTo(evs, web.IP) {
		if ev.Alert.Action != "allowed" {
			t.Errorf("monitor mode: alert %d %q has action %q, want allowed", ev.Alert.SignatureID, ev.Alert.Signature, ev.Alert.Action)
		}
		if ev.Alert.WouldBlock && ev.InIface != st.Inner {
			t.Errorf("would-block alert in_iface %q, want the inner port %s", ev.InIface, st.Inner)
		}
	}
	if err := ka.get("/"); err != nil {
		t.Fatalf("keep-alive after the attack: %v", err)
	}

	// Live change to protect mode: the kept connection goes on, the
	// attack stops.
	st = protectCLI(t, a, web.NS.Name, "--mode", "protect")
	if st.Changed != "mode" || st.Mode != api.ModeProtect {
		t.Fatalf("protect --mode protect: %+v", st)
	}
	for i := range 5 {
		if err := ka.get("/"); err != nil {
			t.Fatalf("keep-alive request %d after the mode change: %v", i, err)
		}
	}
	if attack(client.NS, web.IP) {
		t.Error("protect mode: the attack was answered")
	}
	a.waitEvents(t, "a blocked alert", func(evs []eve.Event) bool {
		for _, ev := range alertsTo(evs, web.IP) {
			if ev.Alert.Action == "blocked" && !ev.Alert.WouldBlock {
				return true
			}
		}
		return false
	})
	if err := ka.get("/"); err != nil {
		t.Errorf("keep-alive after the blocked attack: %v", err)
	}
	checkProtectedCounters(t, a, host, web, st.Name)
	pl := portsOfAgent(t, a)
	if len(pl.Ports) != 1 || pl.Ports[0].Mode != api.ModeProtect {
		t.Errorf("ports: %+v", pl)
	}
	// Back to monitor: nothing blocked again.
	protectCLI(t, a, web.NS.Name, "--mode", "monitor")
	if !attack(client.NS, web.IP) {
		t.Error("monitor mode again: the attack was not answered")
	}
	if err := ka.get("/"); err != nil {
		t.Errorf("keep-alive after going back to monitor: %v", err)
	}
	if strings.Contains(a.Output(), "level=ERROR") {
		t.Errorf("agent errors:\n%s", a.Output())
	}
}

// dnsServer answers A queries on ns ip:port with 198.18.0.9, until cleanup.
func dnsServer(tb testing.TB, ns *testnet.NS, at netip.AddrPort) {
	tb.Helper()
	pc := testnet.ListenPacket(tb, ns, "udp", at)
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var p dnsmessage.Parser
			h, err := p.Start(buf[:n])
			if err != nil {
				continue
			}
			q, err := p.Question()
			if err != nil {
				continue
			}
			b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, RecursionDesired: h.RecursionDesired})
			_ = b.StartQuestions()
			_ = b.Question(q)
			_ = b.StartAnswers()
			_ = b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60},
				dnsmessage.AResource{A: [4]byte{198, 18, 0, 9}})
			if out, err := b.Finish(); err == nil {
				_, _ = pc.WriteTo(out, from)
			}
		}
	}()
}

// dnsLookup sends one A query from ns to server and waits up to 2s for
// the answer.
func dnsLookup(ns *testnet.NS, server netip.AddrPort, id uint16) error {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	_ = b.StartQuestions()
	_ = b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName("api.example.com."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	query, err := b.Finish()
	if err != nil {
		return err
	}
	answer, err := udpExchange(ns, server, query)
	if err != nil {
		return err
	}
	var p dnsmessage.Parser
	h, err := p.Start(answer)
	if err != nil {
		return err
	}
	if h.ID != id || !h.Response {
		return fmt.Errorf("answer id %d response %v", h.ID, h.Response)
	}
	return nil
}

// httpGet makes one request on a new connection from ns (2s timeout).
func httpGet(ns *testnet.NS, url string) error {
	hc := testnet.HTTPClient(ns, false)
	hc.Timeout = 2 * time.Second
	resp, err := hc.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

// TestPrivilegedProtectDiscover: discover mode learns a small workload
// (HTTP from a client to the container's 8080, DNS from the container to
// a resolver), rules learned lists exactly it, promote + protect mode
// then allow exactly that workload: another port, another client, or
// another destination port of the container is blocked.
func TestPrivilegedProtectDiscover(t *testing.T) {
	testnet.RequirePrivileged(t)
	host := testnet.NewHost(t)
	client := host.AddBridged(t, "client", netip.MustParseAddr("198.18.0.1"))
	web := host.AddBridged(t, "web", netip.MustParseAddr("198.18.0.2"))
	resolver := host.AddBridged(t, "dns", netip.MustParseAddr("198.18.0.3"))
	other := host.AddBridged(t, "other", netip.MustParseAddr("198.18.0.4"))
	webServer(t, web.NS, web.IP)
	dns, dnsAlt := netip.AddrPortFrom(resolver.IP, 53), netip.AddrPortFrom(resolver.IP, 5353)
	dnsServer(t, resolver.NS, dns)
	dnsServer(t, resolver.NS, dnsAlt)
	app := fmt.Sprintf("http://%s:8080/", web.IP)
	// Everything works before protection (else the blocks below prove nothing).
	for _, err := range []error{httpGet(client.NS, app), httpGet(other.NS, app),
		httpGet(client.NS, fmt.Sprintf("http://%s:9090/", web.IP)), dnsLookup(web.NS, dns, 1), dnsLookup(web.NS, dnsAlt, 2)} {
		if err != nil {
			t.Fatalf("before protection: %v", err)
		}
	}

	a := startHostAgent(t, host, t.TempDir())
	defer a.stop(t)
	protectCLI(t, a, web.NS.Name, "--mode", "discover", "--name", "web")
	// The workload, a few times.
	for i := range 3 {
		if err := httpGet(client.NS, app); err != nil {
			t.Fatalf("discover: http %d: %v", i, err)
		}
		if err := dnsLookup(web.NS, dns, uint16(10+i)); err != nil {
			t.Fatalf("discover: dns %d: %v", i, err)
		}
	}
	var learned api.LearnedList
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, out, errOut := a.cli(t, "rules", "learned", "-o", "json")
		if code != 0 {
			t.Fatalf("rules learned: %s", errOut)
		}
		learned = api.LearnedList{}
		if err := json.Unmarshal([]byte(out), &learned); err != nil {
			t.Fatal(err)
		}
		if len(learned.Rules) >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	var got []string
	for _, r := range learned.Rules {
		got = append(got, fmt.Sprintf("%s %s %s %s/%d", r.Container, r.Direction, r.Peer, r.Proto, r.Port))
		if r.Promoted || r.Flows == 0 {
			t.Errorf("learned %+v: want flows > 0, not promoted", r)
		}
	}
	slices.Sort(got)
	want := []string{"web in 198.18.0.1 tcp/8080", "web out 198.18.0.3 udp/53"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("learned:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if code, out, _ := a.cli(t, "rules", "learned"); code != 0 || !strings.Contains(out, "198.18.0.3") || !strings.Contains(out, "8080") {
		t.Errorf("rules learned (table):\n%s", out)
	}

	code, out, errOut := a.cli(t, "rules", "promote", "--all", "-m", "baseline of web")
	if code != 0 {
		t.Fatalf("rules promote --all: %s\n%s", errOut, a.Output())
	}
	t.Log(strings.TrimSpace(out))
	if code, _, _ := a.cli(t, "rules", "promote", "--all"); code == 0 {
		t.Error("a second promote --all with nothing new succeeded")
	}
	st := protectCLI(t, a, "web", "--mode", "protect")
	if st.Changed != "mode" {
		t.Fatalf("mode change: %+v", st)
	}

	// Exactly the workload passes.
	for i := range 3 {
		if err := httpGet(client.NS, app); err != nil {
			t.Errorf("protect: learned http %d: %v", i, err)
		}
		if err := dnsLookup(web.NS, dns, uint16(20+i)); err != nil {
			t.Errorf("protect: learned dns %d: %v", i, err)
		}
	}
	if err := httpGet(client.NS, fmt.Sprintf("http://%s:9090/", web.IP)); err == nil {
		t.Error("protect: a new connection to port 9090 went through")
	}
	if err := httpGet(other.NS, app); err == nil {
		t.Error("protect: a client discover never saw reached 8080")
	}
	if err := dnsLookup(web.NS, dnsAlt, 30); err == nil {
		t.Error("protect: the container reached a resolver port discover never saw")
	}
	pl := portsOfAgent(t, a)
	if len(pl.Ports) != 1 || pl.Ports[0].Counters.ACLDrop == 0 {
		t.Errorf("ports: want the kernel ACL dropping: %+v", pl)
	}
	code, out, _ = a.cli(t, "rules", "learned", "-o", "json")
	learned = api.LearnedList{}
	if code != 0 || json.Unmarshal([]byte(out), &learned) != nil {
		t.Fatalf("rules learned: %s", out)
	}
	for _, r := range learned.Rules {
		if !r.Promoted {
			t.Errorf("after promote: %+v not marked promoted", r)
		}
	}
}

// anyServer answers "ok" on every address of ns at port, so that it
// follows the container through an address change.
func anyServer(tb testing.TB, ns *testnet.NS, port uint16) {
	tb.Helper()
	ln := testnet.Listen(tb, ns, "tcp", netip.AddrPortFrom(netip.IPv4Unspecified(), port))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
}

// readdress moves the container's eth0 from its address to to (same
// /24), keeping its default route.
func readdress(tb testing.TB, c *testnet.Container, to netip.Addr) {
	tb.Helper()
	c.NS.MustDo(tb, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/conf/"+testnet.EndpointIf+"/promote_secondaries", []byte("1"), 0o644)
	})
	h := c.NS.Netlink(tb)
	l, err := h.LinkByName(testnet.EndpointIf)
	if err != nil {
		tb.Fatal(err)
	}
	add := &netlink.Addr{IPNet: &net.IPNet{IP: to.AsSlice(), Mask: net.CIDRMask(24, 32)}}
	if err := h.AddrAdd(l, add); err != nil {
		tb.Fatalf("add %s: %v", to, err)
	}
	del := &netlink.Addr{IPNet: &net.IPNet{IP: c.IP.AsSlice(), Mask: net.CIDRMask(24, 32)}}
	if err := h.AddrDel(l, del); err != nil {
		tb.Fatalf("remove %s: %v", c.IP, err)
	}
	c.IP = to
}

// TestPrivilegedProtectContainerRules: rules that name a protected
// container (dst: container:web) apply to its address, first match
// wins, and when the container's address changes the agent recompiles
// and the policy follows it.
func TestPrivilegedProtectContainerRules(t *testing.T) {
	testnet.RequirePrivileged(t)
	host := testnet.NewHost(t)
	client := host.AddBridged(t, "client", netip.MustParseAddr("198.18.0.1"))
	web := host.AddBridged(t, "web", netip.MustParseAddr("198.18.0.2"))
	admin := host.AddBridged(t, "admin", netip.MustParseAddr("198.18.0.4"))
	anyServer(t, web.NS, 8080)
	anyServer(t, web.NS, 9090)
	url := func(port int) string { return fmt.Sprintf("http://%s:%d/", web.IP, port) }

	a := startHostAgent(t, host, t.TempDir())
	defer a.stop(t)
	protectCLI(t, a, web.NS.Name, "--name", "web")
	policy := agent.WriteFile(t, t.TempDir(), "web.yaml", `rules:
  - id: 9101
    name: admin may reach the web console
    action: allow
    proto: tcp
    src: 198.18.0.4
    dst: container:web
    dst_port: 9090
  - id: 9100
    name: web console closed
    action: block
    proto: tcp
    dst: container:web
    dst_port: 9090
`)
	if code, _, errOut := a.cli(t, "rules", "add", policy); code != 0 {
		t.Fatalf("rules add: %s", errOut)
	}
	check := func(when string) {
		t.Helper()
		if err := httpGet(client.NS, url(8080)); err != nil {
			t.Errorf("%s: client to %s: %v", when, url(8080), err)
		}
		if err := httpGet(admin.NS, url(9090)); err != nil {
			t.Errorf("%s: admin to %s: %v", when, url(9090), err)
		}
		if err := httpGet(client.NS, url(9090)); err == nil {
			t.Errorf("%s: client reached %s", when, url(9090))
		}
	}
	check("at " + web.IP.String())

	// The stored rule keeps the name; the running one follows the address.
	if code, out, _ := a.cli(t, "rules", "show", "9100"); code != 0 || !strings.Contains(out, "container:web") {
		t.Errorf("rules show 9100:\n%s", out)
	}
	readdress(t, web, netip.MustParseAddr("198.18.0.5"))
	deadline := time.Now().Add(10 * time.Second)
	for {
		pl := portsOfAgent(t, a)
		if len(pl.Ports) == 1 && slices.Equal(pl.Ports[0].Addrs, []string{"198.18.0.5"}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ports never showed the new address: %+v", pl)
		}
		time.Sleep(100 * time.Millisecond)
	}
	deadline = time.Now().Add(5 * time.Second)
	for !strings.Contains(a.Output(), "rules recompiled for container addresses") {
		if time.Now().After(deadline) {
			t.Fatalf("no recompile logged:\n%s", a.Output())
		}
		time.Sleep(100 * time.Millisecond)
	}
	check("at " + web.IP.String())
	if code, _, errOut := a.cli(t, "unprotect", "web"); code != 0 {
		t.Fatalf("unprotect: %s", errOut)
	}
	// Unprotected, the selector resolves to nothing: the rules match nothing.
	if err := httpGet(client.NS, url(9090)); err != nil {
		t.Errorf("unprotected: client to %s: %v", url(9090), err)
	}
}

// checkProtectedCounters: status, flows (by address and by container
// name) and the metrics (also the container's own series) count the
// protected pairs' traffic (the agent has no static pair).
func checkProtectedCounters(t *testing.T, a *agentProc, host *testnet.Host, c *testnet.Container, name string) {
	t.Helper()
	st := a.status(t)
	if st.Protected != 1 || st.Counters.ToUserSpace == 0 || st.Counters.Inspected == 0 || st.Counters.Forwarded == 0 ||
		st.Counters.Blocks == 0 {
		t.Errorf("status: protected %d, counters %+v", st.Protected, st.Counters)
	}
	if code, out, _ := a.cli(t, "status"); code != 0 || !strings.Contains(out, "protected") {
		t.Errorf("status:\n%s", out)
	}
	code, out, errOut := a.cli(t, "flows", "--ip", c.IP.String(), "-o", "json")
	fl := agent.MustJSON[api.FlowList](t, []byte(out))
	if code != 0 || fl.Total == 0 {
		t.Errorf("flows --ip %s: %s %s", c.IP, out, errOut)
	}
	code, out, errOut = a.cli(t, "flows", "--container", name, "-o", "json")
	if fl2 := agent.MustJSON[api.FlowList](t, []byte(out)); code != 0 || fl2.Total == 0 {
		t.Errorf("flows --container %s: %s %s", name, out, errOut)
	}
	if code, _, errOut := a.cli(t, "flows", "--container", "absent"); code == 0 || !strings.Contains(errOut, `no protected container "absent"`) {
		t.Errorf("flows --container absent: exit %d, %s", code, errOut)
	}
	metrics := a.metrics(t, host.NS)
	for _, m := range []string{`deepwall_packets_total{path="user"}`, `deepwall_frames_judged_total{action="forward"}`,
		`deepwall_container_packets_total{container="` + name + `",path="inspected"}`, `deepwall_containers_protected`} {
		v, ok := metric(metrics, m)
		if !ok {
			t.Errorf("metrics lack %s", m)
			continue
		}
		if v == "0" {
			t.Errorf("metrics: %s %s, want the protected pair's traffic", m, v)
		}
	}
}

// TestPrivilegedProtectNFQueue: an agent in NFQUEUE mode protects a
// bridged and a routed container through a joint bridge between the
// ports: connections survive, attacks are blocked, a restart keeps them,
// unprotect restores the host's wiring.
func TestPrivilegedProtectNFQueue(t *testing.T) {
	host, client, web, routed := protectHost(t)
	before := testnet.WiringDump(t, host.NS)

	dir := t.TempDir()
	a := startHostAgent(t, host, dir, "--mode", "nfqueue")
	if st := a.status(t); !strings.Contains(st.Backend, "nfqueue") {
		t.Fatalf("agent mode %q, want nfqueue", st.Backend)
	}
	toWeb := startLoad(client.NS, fmt.Sprintf("http://%s:8080", web.IP))
	toRouted := startLoad(client.NS, fmt.Sprintf("http://%s:8080", routed.IP))
	time.Sleep(300 * time.Millisecond)
	for _, c := range []*testnet.Container{web, routed} {
		st := protectCLI(t, a, c.NS.Name)
		if st.Dataplane != probe.BackendNFQueue {
			t.Errorf("%s: dataplane %q, want nfqueue", c.NS.Name, st.Dataplane)
		}
	}
	time.Sleep(500 * time.Millisecond)
	for _, c := range []*testnet.Container{web, routed} {
		if attack(client.NS, c.IP) {
			t.Errorf("%s: attack answered while protected (nfqueue)", c.NS.Name)
		}
	}
	for _, p := range portsOfAgent(t, a).Ports {
		if p.State != "running" || p.Counters.Inspected == 0 {
			t.Errorf("port %+v: want running with inspected traffic", p)
		}
	}
	a.stop(t)
	a = startHostAgent(t, host, dir, "--mode", "nfqueue")
	time.Sleep(300 * time.Millisecond)
	if attack(client.NS, web.IP) {
		t.Error("attack answered after restart (nfqueue)")
	}
	unprotectAll(t, a, host, before, []*testnet.Container{web, routed}, map[string]*load{"web": toWeb, "routed": toRouted})
	if !attack(client.NS, web.IP) {
		t.Error("unprotected container unreachable")
	}
	a.stop(t)
}
