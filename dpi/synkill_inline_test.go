package dpi_test

import (
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/deepwall/deepwall/internal/agenttest"
	"github.com/deepwall/deepwall/internal/testnet"
)

// TestPrivilegedInlineSynOnDecided: with a fail-closed agent SIGKILLed, a
// SYN injected on the tuple of a flow the kernel decided (allowed) takes
// that tuple back to inspection in both dataplanes — XDP resets the flow
// entry, NFQUEUE clears the connection's mark — so the SYN meets the fail
// policy (dropped, never reaches the server) and so does the flow after
// it. Before NFQUEUE cleared the mark, conntrack kept the established
// entry through the SYN and the SYN passed on the old verdict.
func TestPrivilegedInlineSynOnDecided(t *testing.T) {
	testnet.RequirePrivileged(t)
	forInlineModes(t, func(t *testing.T, topo *testnet.Topology, a *agenttest.Agent) {
		server := netip.AddrPortFrom(testnet.ServerIP, 9000)
		go testnet.Serve(testnet.Listen(t, topo.Server, "tcp", server), func(c net.Conn) {
			buf := make([]byte, 4096)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
				_, _ = io.WriteString(c, "\x02\x03 an answer in no protocol\n")
			}
		})
		cin := newInjector(t, topo.Client)
		c := testnet.Dial(t, topo.Client, "tcp", server)
		port := uint16(c.LocalAddr().(*net.TCPAddr).Port)
		spec, _ := cin.syn(t, port)
		exchange := func() error {
			_, _ = io.WriteString(c, "\x01\x02 a request in no protocol\n")
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			_, err := c.Read(make([]byte, 100))
			return err
		}
		// Identification gives up on both directions: no rule applies, the
		// flow is allowed to the kernel.
		for deadline := time.Now().Add(5 * time.Second); ; {
			if err := exchange(); err != nil {
				t.Fatal(err)
			}
			if _, out, _ := a.CLI(t, "flows", "--port", "9000"); bypassedRow(out) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the flow never reached the fast path")
			}
			time.Sleep(100 * time.Millisecond)
		}
		a.Kill(t)
		if err := exchange(); err != nil {
			t.Fatalf("the decided flow after the kill, before any SYN: %v", err)
		}
		sin := newInjector(t, topo.Server)
		cin.send(t, spec, testnet.SYN, 123456, nil, false)
		if _, _, seen := sin.nextSYN(port, 2*time.Second); seen {
			t.Error("a SYN on a decided tuple passed a dead fail-closed agent")
		}
		if err := exchange(); err == nil {
			t.Error("the flow kept its verdict after a SYN on its tuple")
		}
	}, "--fail-closed")
}

// bypassedRow reports whether `deepwall flows` output shows a bypassed flow.
func bypassedRow(out string) bool {
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 5 && f[0] == "TCP" && f[5] == "yes" {
			return true
		}
	}
	return false
}
