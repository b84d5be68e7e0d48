package testctr

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/deepwall/deepwall/internal/testnet"
)

// TestPrivilegedPodmanRun starts a container in a network of its own and
// fetches its page from the runtime's namespace.
func TestPrivilegedPodmanRun(t *testing.T) {
	p := NewPodman(t)
	c := p.Run(t, "web", Options{})
	if !c.IP.Is4() || c.PID <= 0 || len(c.ID) != 64 {
		t.Fatalf("container %+v", c)
	}
	body := get(t, p.NS, c.IP)
	if body != "ok\n" {
		t.Fatalf("body %q", body)
	}
}

// TestPrivilegedContainerdRun starts a containerd container on a host
// bridge and fetches its page from a neighbour.
func TestPrivilegedContainerdRun(t *testing.T) {
	c := NewContainerd(t)
	web := c.Run(t, "web", netip.MustParseAddr("198.18.0.2"))
	client := c.Host.AddBridged(t, "client", netip.MustParseAddr("198.18.0.1"))
	if body := get(t, client.NS, web.IP); body != "ok\n" {
		t.Fatalf("body %q", body)
	}
}

// get fetches ip's page from ns, retrying until the server listens.
func get(tb testing.TB, ns *testnet.NS, ip netip.Addr) string {
	tb.Helper()
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: ns.DialContext}}
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := hc.Get(fmt.Sprintf("http://%s:%d/", ip, HTTPPort))
		if err == nil {
			var body []byte
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				return string(body)
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("GET: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
