package agent_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/internal/agenttest"
	"github.com/deepwall/deepwall/internal/testnet"
)

// startHostAgent runs `deepwall run` with no ports in the host namespace.
func startHostAgent(tb testing.TB, host *testnet.Host, dir string, extra ...string) *agentProc {
	tb.Helper()
	a := newAgentProc(dir)
	// An agent stopped with containers protected keeps their pins (the
	// next agent adopts them); once the test's host namespace is gone
	// nobody will, so remove them. Registered first, it runs after
	// NS.Start's cleanup has killed an agent still running.
	tb.Cleanup(func() { removeHostPins(tb, host) })
	a.launch(tb, host.NS, extra...)
	return a
}

// removeHostPins removes the pin directories of the host namespace's
// protected pairs.
func removeHostPins(tb testing.TB, host *testnet.Host) {
	tb.Helper()
	agenttest.RemovePins(tb, host.NS)
}

// webServer serves / (ok), /bulk (n bytes) in ns on ip:8080 and :9090.
func webServer(tb testing.TB, ns *testnet.NS, ip netip.Addr) {
	tb.Helper()
	body := pseudoBytes(4<<20, 7)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/bulk", func(w http.ResponseWriter, _ *http.Request) { w.Write(body) })
	for _, port := range []uint16{8080, 9090} {
		ln := testnet.Listen(tb, ns, "tcp", netip.AddrPortFrom(ip, port))
		srv := &http.Server{Handler: mux}
		go srv.Serve(ln)
		tb.Cleanup(func() { srv.Close() })
	}
}

// load keeps a keep-alive client and a bulk downloader busy on url.
type load struct {
	ok, fail atomic.Int64
	errs     sync.Map
	stop     chan struct{}
	wg       sync.WaitGroup
}

func startLoad(client *testnet.NS, base string) *load {
	l := &load{stop: make(chan struct{})}
	for _, path := range []string{"/", "/bulk"} {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			hc := testnet.HTTPClient(client, true)
			for {
				select {
				case <-l.stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				resp, err := hc.Get(base + path)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil {
					l.fail.Add(1)
					l.errs.Store(err.Error(), true)
					continue
				}
				l.ok.Add(1)
			}
		}()
	}
	return l
}

func (l *load) finish(tb testing.TB, name string) {
	tb.Helper()
	close(l.stop)
	l.wg.Wait()
	tb.Logf("%s: %d requests ok, %d failed", name, l.ok.Load(), l.fail.Load())
	if l.fail.Load() > 0 {
		l.errs.Range(func(k, _ any) bool { tb.Errorf("%s: %v", name, k); return true })
	}
	if l.ok.Load() == 0 {
		tb.Errorf("%s: no request went through", name)
	}
}

// attack sends a SQL injection from client to ip:8080 and reports whether
// it was answered.
func attack(client *testnet.NS, ip netip.Addr) (answered bool) {
	hc := testnet.HTTPClient(client, false)
	hc.Timeout = 3 * time.Second
	resp, err := hc.Get(fmt.Sprintf("http://%s:8080/?id=1%%20UNION%%20SELECT%%20password%%20FROM%%20users", ip))
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

func portsOfAgent(tb testing.TB, a *agentProc) api.PortList {
	tb.Helper()
	code, out, errOut := a.cli(tb, "ports", "-o", "json")
	if code != 0 {
		tb.Fatalf("ports: %s", errOut)
	}
	var pl api.PortList
	if err := json.Unmarshal([]byte(out), &pl); err != nil {
		tb.Fatal(err)
	}
	return pl
}

// protectHost is a host with a bridged client, and a bridged and a routed
// container serving webServer: the topology of the protect tests.
func protectHost(t *testing.T) (host *testnet.Host, client, web, routed *testnet.Container) {
	t.Helper()
	testnet.RequirePrivileged(t)
	host = testnet.NewHost(t)
	client = host.AddBridged(t, "client", netip.MustParseAddr("198.18.0.1"))
	web = host.AddBridged(t, "web", netip.MustParseAddr("198.18.0.2"))
	routed = host.AddRouted(t, "routed", netip.MustParseAddr("198.18.1.1"))
	webServer(t, web.NS, web.IP)
	webServer(t, routed.NS, routed.IP)
	return host, client, web, routed
}

// unprotectAll unprotects cs, stops the loads running to them (which
// must not have failed) and checks that the host's wiring is as before.
func unprotectAll(t *testing.T, a *agentProc, host *testnet.Host, before string, cs []*testnet.Container, loads map[string]*load) {
	t.Helper()
	for _, c := range cs {
		if code, _, errOut := a.cli(t, "unprotect", c.NS.Name); code != 0 {
			t.Fatalf("unprotect %s: %s", c.NS.Name, errOut)
		}
	}
	time.Sleep(300 * time.Millisecond)
	for name, l := range loads {
		l.finish(t, name)
	}
	if after := testnet.WiringDump(t, host.NS); after != before {
		t.Errorf("host wiring differs after unprotect:\n--- before\n%s\n--- after\n%s", before, after)
	}
}

// TestPrivilegedProtect protects a bridged and a routed container while
// keep-alive and bulk HTTP run to each, checks attacks get blocked, that
// a restarted agent brings them back, that unprotect restores the host's
// wiring, and that a vanished container is cleaned up.
func TestPrivilegedProtect(t *testing.T) {
	host, client, web, routed := protectHost(t)
	before := testnet.WiringDump(t, host.NS)
	if !attack(client.NS, web.IP) || !attack(client.NS, routed.IP) {
		t.Fatal("attack not answered before protection: the topology does not work")
	}

	dir := t.TempDir()
	a := startHostAgent(t, host, dir)
	toWeb := startLoad(client.NS, fmt.Sprintf("http://%s:8080", web.IP))
	toRouted := startLoad(client.NS, fmt.Sprintf("http://%s:8080", routed.IP))
	time.Sleep(300 * time.Millisecond)
	for _, c := range []*testnet.Container{web, routed} {
		code, out, errOut := a.cli(t, "protect", c.NS.Name)
		if code != 0 {
			t.Fatalf("protect %s: %s\n%s", c.NS.Name, errOut, a.Output())
		}
		t.Log(strings.TrimSpace(out))
	}
	time.Sleep(500 * time.Millisecond)
	for _, c := range []*testnet.Container{web, routed} {
		if attack(client.NS, c.IP) {
			t.Errorf("%s: attack answered while protected", c.NS.Name)
		}
	}
	pl := portsOfAgent(t, a)
	if len(pl.Ports) != 2 {
		t.Fatalf("ports: %+v", pl)
	}
	for _, p := range pl.Ports {
		if p.State != "running" || p.Counters.Inspected == 0 || len(p.Addrs) == 0 {
			t.Errorf("port %+v: want running, inspected traffic, addresses", p)
		}
	}

	// Restart: the protected set comes back; traffic never stops.
	a.stop(t)
	a = startHostAgent(t, host, dir)
	if pl := portsOfAgent(t, a); len(pl.Ports) != 2 {
		t.Fatalf("after restart: %+v\n%s", pl, a.Output())
	}
	time.Sleep(300 * time.Millisecond)
	if attack(client.NS, web.IP) {
		t.Error("attack answered after restart")
	}

	unprotectAll(t, a, host, before, []*testnet.Container{web, routed}, map[string]*load{"web": toWeb, "routed": toRouted})
	if !attack(client.NS, web.IP) {
		t.Error("unprotected container unreachable")
	}

	// A protected container whose namespace goes away is cleaned up.
	if code, _, errOut := a.cli(t, "protect", web.NS.Name); code != 0 {
		t.Fatalf("protect again: %s", errOut)
	}
	wh := web.NS.Netlink(t)
	el, _ := wh.LinkByName(testnet.EndpointIf)
	if err := wh.LinkDel(el); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(portsOfAgent(t, a).Ports) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("vanished container still listed:\n%s", a.Output())
		}
		time.Sleep(100 * time.Millisecond)
	}
	links, _ := host.NS.Netlink(t).LinkList()
	for _, l := range links {
		if n := l.Attrs().Name; strings.HasPrefix(n, "dwo") || strings.HasPrefix(n, "dwp") {
			t.Errorf("%s left behind", n)
		}
	}
	a.stop(t)
	_ = netns.None()
}
