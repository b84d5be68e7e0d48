package agent_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/deepwall/deepwall/ctl/agent"
	"github.com/deepwall/deepwall/ctl/eve"
	"github.com/deepwall/deepwall/internal/testnet"
)

// fragRules block a marker in any UDP datagram.
const fragRules = `rules:
  - {id: 7001, action: block, proto: udp, match: {field: payload, regex: 'fragattack'}}
`

// TestPrivilegedAgentFragments: UDP datagrams larger than the MTU cross
// the inline path as IP fragments (the kernels of both ends fragment
// them), IPv4 and IPv6, both ways: deepwall reassembles and inspects each
// datagram before any fragment of it passes. Benign datagrams (3,000 and
// 8,000 bytes, as large EDNS answers are) arrive byte-exact and are
// echoed back; a datagram with the marker past the first fragment is
// blocked with its rule's event and never reaches the application. With
// the agent killed, the fail-open port passes fragments.
func TestPrivilegedAgentFragments(t *testing.T) { forModes(t, testAgentFragments) }

func testAgentFragments(t *testing.T, m agentMode) {
	topo := m.topology(t)
	dir := t.TempDir()
	a := startAgent(t, topo, dir, "--rules", agent.WriteFile(t, dir, "frag.yaml", fragRules))
	for _, ip := range []netip.Addr{testnet.ServerIP, testnet.ServerIP6} {
		server := netip.AddrPortFrom(ip, 7000)
		got := udpEchoServer(t, topo.Server, server)
		for _, size := range []int{3000, 8000} {
			msg := bytes.Repeat([]byte{'b'}, size)
			copy(msg, fmt.Sprintf("%s %d ", ip, size))
			reply, err := udpExchange(topo.Client, server, msg)
			if err != nil {
				t.Fatalf("%s: %d-byte datagram: %v", ip, size, err)
			}
			if !bytes.Equal(reply, msg) {
				t.Fatalf("%s: %d-byte datagram came back as %d bytes, not byte-exact", ip, size, len(reply))
			}
		}
		attack := bytes.Repeat([]byte{'b'}, 5000)
		copy(attack[4000:], "fragattack")
		if _, err := udpExchange(topo.Client, server, attack); err == nil {
			t.Errorf("%s: the datagram with the marker was answered", ip)
		}
		select {
		case b := <-got:
			if bytes.Contains(b, []byte("fragattack")) {
				t.Errorf("%s: the application received the blocked datagram", ip)
			}
		default:
		}
		a.waitEvents(t, "the block of the fragmented datagram to "+ip.String(), func(evs []eve.Event) bool {
			for _, ev := range evs {
				if ev.Alert != nil && ev.Alert.SignatureID == 7001 && ev.Alert.Action == "blocked" && ev.DestIP == ip.String() {
					return true
				}
			}
			return false
		})
	}
	if out := a.Output(); strings.Contains(out, "level=ERROR") {
		t.Errorf("agent errors:\n%s", out)
	}
	// Fail-open (the default) with the agent dead: fragments pass as
	// every other packet does.
	a.Kill(t)
	for _, ip := range []netip.Addr{testnet.ServerIP, testnet.ServerIP6} {
		msg := bytes.Repeat([]byte{'c'}, 8000)
		reply, err := udpExchange(topo.Client, netip.AddrPortFrom(ip, 7000), msg)
		if err != nil || !bytes.Equal(reply, msg) {
			t.Errorf("%s: with the agent killed on a fail-open port: %d bytes back, %v", ip, len(reply), err)
		}
	}
}

// udpEchoServer echoes every datagram on ns at addr and reports the last
// few it received on the returned channel (dropped when full).
func udpEchoServer(tb testing.TB, ns *testnet.NS, at netip.AddrPort) <-chan []byte {
	tb.Helper()
	pc := testnet.ListenPacket(tb, ns, "udp", at)
	got := make(chan []byte, 16)
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			b := bytes.Clone(buf[:n])
			select {
			case got <- b:
			default:
			}
			_, _ = pc.WriteTo(b, from)
		}
	}()
	return got
}
