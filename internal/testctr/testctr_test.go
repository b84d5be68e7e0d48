package testctr

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestPrivilegedPodmanRun starts a container in a network of its own and
// fetches its page from the runtime's namespace.
func TestPrivilegedPodmanRun(t *testing.T) {
	p := NewPodman(t)
	c := p.Run(t, "web", Options{})
	if !c.IP.Is4() || c.PID <= 0 || len(c.ID) != 64 {
		t.Fatalf("container %+v", c)
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var conn net.Conn
			err := p.NS.Do(func() (err error) {
				conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		}}}
	var body []byte
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := hc.Get(fmt.Sprintf("http://%s:%d/", c.IP, HTTPPort))
		if err == nil {
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if string(body) != "ok\n" {
		t.Fatalf("body %q", body)
	}
}
