package testnet

import (
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestPrivilegedTopologyBridge checks the fixture itself: with the reference
// bridge, TCP crosses from client to server over IPv4 and IPv6.
func TestPrivilegedTopologyBridge(t *testing.T) {
	topo := NewTopology(t, TopologyOptions{Bridge: true})
	for _, ip := range []netip.Addr{ServerIP, ServerIP6} {
		ln := Listen(t, topo.Server, "tcp", netip.AddrPortFrom(ip, 8080))
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			_, _ = io.Copy(c, c)
		}()
		c := Dial(t, topo.Client, "tcp", netip.AddrPortFrom(ip, 8080))
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		msg := []byte("hello through the bridge")
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("%s: echo: %v", ip, err)
		}
		if string(got) != string(msg) {
			t.Fatalf("%s: echo = %q", ip, got)
		}
	}
}

// TestPrivilegedTopologyIsolated checks that without anything attached to
// the fw ports nothing crosses: the fixture must not leak traffic.
func TestPrivilegedTopologyIsolated(t *testing.T) {
	topo := NewTopology(t, TopologyOptions{})
	ln := Listen(t, topo.Server, "tcp", netip.AddrPortFrom(ServerIP, 8080))
	_ = ln
	err := topo.Client.Do(func() error {
		c, err := net.DialTimeout("tcp", netip.AddrPortFrom(ServerIP, 8080).String(), 500*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err
	})
	if err == nil {
		t.Fatal("client reached server with nothing attached to the fw ports")
	}
}
