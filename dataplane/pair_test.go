package dataplane_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/internal/testnet"
	"github.com/deepwall/deepwall/internal/testutil"
	"github.com/deepwall/deepwall/xdp"
)

// bulkSize is the size of each direction of the bulk transfers.
const bulkSize = 8 << 20

// TestPrivilegedPassThrough: with an inspector that forwards everything
// and never decides, TCP, UDP and ICMP cross the AF_XDP path byte-exact in
// both directions over IPv4 and IPv6, without any port pre-configuration.
func TestPrivilegedPassThrough(t *testing.T) {
	topo := testnet.NewTopology(t, testnet.TopologyOptions{})
	insp := newPassInspector()
	p := runPair(t, topo, dataplane.PairConfig{Inspector: insp})

	for _, ip := range []netip.Addr{testnet.ServerIP, testnet.ServerIP6} {
		name := "v4"
		if ip.Is6() {
			name = "v6"
		}
		t.Run("tcp "+name, func(t *testing.T) {
			k := bulkTCP(t, topo, netip.AddrPortFrom(ip, 8080), bulkSize, 60*time.Second)
			if n := insp.seen(k); n < bulkSize/1500 {
				t.Fatalf("inspector saw %d frames of %v, want every one (> %d)", n, k, bulkSize/1500)
			}
		})
		t.Run("udp "+name, func(t *testing.T) {
			k := udpEcho(t, topo, netip.AddrPortFrom(ip, 5353), 50)
			if n := insp.seen(k); n < 100 {
				t.Fatalf("inspector saw %d frames of %v, want ≥ 100", n, k)
			}
		})
		t.Run("icmp "+name, func(t *testing.T) {
			k := ping(t, topo, ip, 5)
			if n := insp.seen(k); n < 10 {
				t.Fatalf("inspector saw %d frames of %v, want ≥ 10", n, k)
			}
		})
	}
	st := p.Stats()
	xs := xdpStats(t, p)
	t.Logf("pair stats: inner %+v outer %+v kicks %d", st.Inner, st.Outer, st.TxKicks)
	t.Logf("xdp stats: %+v", xs)
	if st.Inner.Inspected == 0 || st.Outer.Inspected == 0 {
		t.Fatalf("inspector not reached from both sides: %+v / %+v", st.Inner, st.Outer)
	}
	if xs.FastAllow != 0 || xs.FailOpen != 0 {
		t.Fatalf("traffic bypassed user space: %+v", xs)
	}
}

// TestPrivilegedAllowBypass: once the inspector marks a flow final
// Forward, its later packets stay in the kernel: the XDP counters show them
// on the fast path and the inspector never sees them.
func TestPrivilegedAllowBypass(t *testing.T) {
	topo := testnet.NewTopology(t, testnet.TopologyOptions{})
	insp := newRuleInspector(func(f *dataplane.Frame, pkt *dataplane.Packet, _ []byte) dataplane.Verdict {
		return dataplane.Verdict{Action: dataplane.Forward, Final: pkt.DstPort == 8081 || pkt.SrcPort == 8081}
	})
	p := runPair(t, topo, dataplane.PairConfig{Inspector: insp})
	before := xdpStats(t, p)
	k := bulkTCP(t, topo, netip.AddrPortFrom(testnet.ServerIP, 8081), bulkSize, 60*time.Second)
	after := xdpStats(t, p)
	seen := insp.seen(k)
	v, ok, err := p.Program().LookupFlow(k)
	if err != nil || !ok {
		t.Fatalf("flow %v not in the map: ok=%v err=%v", k, ok, err)
	}
	fast := after.FastAllow - before.FastAllow
	t.Logf("inspector saw %d frames; fast path %d; flow entry %+v", seen, fast, v)
	if v.Verdict != xdp.VerdictAllow {
		t.Fatalf("flow verdict %v, want allow", v.Verdict)
	}
	// The SYN decides; a retransmitted SYN may come before the entry.
	if seen < 1 || seen > 3 {
		t.Fatalf("inspector saw %d frames of the allowed flow, want 1..3", seen)
	}
	// Bytes, not packets: on the tc path the fast path carries GSO
	// packets of up to 64 KB.
	if fast == 0 || v.Bytes[0]+v.Bytes[1] < 2*bulkSize {
		t.Fatalf("fast path carried %d packets, %v bytes, want ≥ %d bytes", fast, v.Bytes, 2*bulkSize)
	}
}

// TestPrivilegedDropFlow: once the inspector marks a flow final Drop,
// every later packet of it is lost, dropped in XDP.
func TestPrivilegedDropFlow(t *testing.T) {
	topo := testnet.NewTopology(t, testnet.TopologyOptions{})
	insp := newRuleInspector(func(f *dataplane.Frame, pkt *dataplane.Packet, payload []byte) dataplane.Verdict {
		if bytes.HasPrefix(payload, []byte("BLOCK")) {
			return dataplane.Verdict{Action: dataplane.Drop, Final: true}
		}
		return dataplane.Verdict{Action: dataplane.Forward}
	})
	p := runPair(t, topo, dataplane.PairConfig{Inspector: insp})
	server := netip.AddrPortFrom(testnet.ServerIP6, 7000)
	pc := testnet.ListenPacket(t, topo.Server, "udp", server)
	got := make(chan string, 100)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			got <- string(buf[:n])
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	c := testnet.Dial(t, topo.Client, "udp", server)
	local := c.LocalAddr().(*net.UDPAddr).AddrPort()
	k, _ := xdp.MakeFlowKey(local.Addr(), server.Addr(), local.Port(), server.Port(), testnet.ProtoUDP)
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m != "hello" {
			t.Fatalf("server got %q", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("first datagram never arrived")
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 100)); err != nil || n != 5 {
		t.Fatalf("echo of the first datagram: %d bytes, %v", n, err)
	}
	before := xdpStats(t, p)
	const later = 30
	for i := 0; i < later+1; i++ {
		msg := fmt.Sprintf("after %d", i)
		if i == 0 {
			msg = "BLOCK this flow"
		}
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case m := <-got:
		t.Fatalf("server got %q after the flow was dropped", m)
	case <-time.After(500 * time.Millisecond):
	}
	after := xdpStats(t, p)
	v, ok, err := p.Program().LookupFlow(k)
	if err != nil || !ok || v.Verdict != xdp.VerdictDrop {
		t.Fatalf("flow entry %+v ok=%v err=%v, want verdict drop", v, ok, err)
	}
	if d := after.FastDrop - before.FastDrop; d < later {
		t.Fatalf("XDP dropped %d packets, want ≥ %d", d, later)
	}
	// hello, its echo, and the BLOCK datagram: nothing after.
	if n := insp.seen(k); n != 3 {
		t.Fatalf("inspector saw %d frames of the flow, want 3", n)
	}
}

// TestPrivilegedResetOnDrop: a dropped TCP segment with Reset resets both
// ends, over IPv4 and IPv6.
func TestPrivilegedResetOnDrop(t *testing.T) {
	topo := testnet.NewTopology(t, testnet.TopologyOptions{})
	insp := newRuleInspector(func(f *dataplane.Frame, pkt *dataplane.Packet, payload []byte) dataplane.Verdict {
		if bytes.Contains(payload, []byte("EVIL")) {
			return dataplane.Verdict{Action: dataplane.Drop, Final: true, Reset: true}
		}
		return dataplane.Verdict{Action: dataplane.Forward}
	})
	p := runPair(t, topo, dataplane.PairConfig{Inspector: insp})
	for _, ip := range []netip.Addr{testnet.ServerIP, testnet.ServerIP6} {
		t.Run(ip.String(), func(t *testing.T) {
			server := netip.AddrPortFrom(ip, 8443)
			ln := testnet.Listen(t, topo.Server, "tcp", server)
			srvErr := make(chan error, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					srvErr <- err
					return
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				buf := make([]byte, 100)
				n, err := c.Read(buf)
				if err == nil && string(buf[:n]) != "fine" {
					err = fmt.Errorf("server read %q", buf[:n])
				}
				if err != nil {
					srvErr <- err
					return
				}
				_, err = c.Read(buf) // the reset should end this
				srvErr <- err
			}()
			c := testnet.Dial(t, topo.Client, "tcp", server)
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write([]byte("fine")); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
			if _, err := c.Write([]byte("this is EVIL")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 10)
			if _, err := c.Read(buf); !errors.Is(err, unix.ECONNRESET) {
				t.Fatalf("client read: %v, want connection reset", err)
			}
			if err := <-srvErr; !errors.Is(err, unix.ECONNRESET) {
				t.Fatalf("server read: %v, want connection reset", err)
			}
		})
	}
	st := p.Stats()
	if st.Inner.Resets < 2 || st.Outer.Resets < 2 {
		t.Fatalf("resets sent: inner %d outer %d, want ≥ 2 each", st.Inner.Resets, st.Outer.Resets)
	}
}

// TestPrivilegedACLDeny: a denying ACL rule drops in XDP, before user
// space: the inspector never sees the flow, other traffic still passes.
func TestPrivilegedACLDeny(t *testing.T) {
	topo := testnet.NewTopology(t, testnet.TopologyOptions{})
	insp := newPassInspector()
	p := runPair(t, topo, dataplane.PairConfig{Inspector: insp})
	acl := xdp.ACL{Default: xdp.ACLAllow, Rules: []xdp.ACLRule{
		{ID: 7, Action: xdp.ACLDeny, Proto: testnet.ProtoUDP, DstPorts: []xdp.PortRange{{Lo: 9999, Hi: 9999}}},
	}}
	if err := p.Program().SetACL(acl); err != nil {
		t.Fatal(err)
	}
	server := netip.AddrPortFrom(testnet.ServerIP, 9999)
	pc := testnet.ListenPacket(t, topo.Server, "udp", server)
	got := make(chan struct{}, 100)
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			got <- struct{}{}
		}
	}()
	before := xdpStats(t, p)
	c := testnet.Dial(t, topo.Client, "udp", server)
	local := c.LocalAddr().(*net.UDPAddr).AddrPort()
	k, _ := xdp.MakeFlowKey(local.Addr(), server.Addr(), local.Port(), server.Port(), testnet.ProtoUDP)
	const n = 20
	for i := 0; i < n; i++ {
		if _, err := c.Write([]byte("denied")); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-got:
		t.Fatal("a denied datagram reached the server")
	case <-time.After(500 * time.Millisecond):
	}
	if d := xdpStats(t, p).ACLDrop - before.ACLDrop; d < n {
		t.Fatalf("ACL dropped %d, want ≥ %d", d, n)
	}
	if s := insp.seen(k); s != 0 {
		t.Fatalf("inspector saw %d frames of the denied flow", s)
	}
	udpEcho(t, topo, netip.AddrPortFrom(testnet.ServerIP, 5353), 5)
}

// TestPrivilegedMultiQueue: with two queues per port the pair binds two
// sockets per port, and traffic still passes.
func TestPrivilegedMultiQueue(t *testing.T) {
	topo := testnet.NewTopology(t, testnet.TopologyOptions{Queues: 2})
	insp := newPassInspector()
	p := runPair(t, topo, dataplane.PairConfig{Inspector: insp})
	if p.Queues() != 2 {
		t.Fatalf("pair serves %d queues, want 2", p.Queues())
	}
	for i := 0; i < 4; i++ {
		bulkTCP(t, topo, netip.AddrPortFrom(testnet.ServerIP, uint16(8000+i)), 1<<20, 30*time.Second)
	}
	ping(t, topo, testnet.ServerIP6, 3)
	st := p.Stats()
	t.Logf("per-queue rx: %v", p.QueueRx())
	if st.Inner.Inspected == 0 || st.Outer.Inspected == 0 {
		t.Fatalf("nothing inspected: %+v", st)
	}
}

// TestPrivilegedDetachCleansUp: Close keeps the programs, the shadow pairs
// and the peer settings; Detach (even after Close) removes the programs from
// the ports, deletes every pin and shadow and restores the peers' settings.
// The XDP path turns the peers' GRO on and TX checksum offload off; the tc
// path leaves them alone.
func TestPrivilegedDetachCleansUp(t *testing.T) {
	for _, path := range []dataplane.Path{dataplane.PathTC, dataplane.PathXDP} {
		t.Run(string(path), func(t *testing.T) { testDetachCleansUp(t, path) })
	}
}

func testDetachCleansUp(t *testing.T, path dataplane.Path) {
	topo := testnet.NewTopology(t, testnet.TopologyOptions{})
	peerState := func(ns *testnet.NS) (gro, txcsum string) {
		out, err := ns.Run(exec.Command("ethtool", "-k", testnet.EndpointIf))
		if err != nil {
			t.Fatalf("ethtool -k: %v: %s", err, out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && f[0] == "generic-receive-offload:" {
				gro = f[1]
			}
			if len(f) >= 2 && f[0] == "tx-checksumming:" {
				txcsum = f[1]
			}
		}
		return gro, txcsum
	}
	g0, c0 := peerState(topo.Client)
	wantG, wantC := g0, c0
	if path == dataplane.PathXDP {
		wantG, wantC = "on", "off"
	}
	nl := topo.FW.Netlink(t)
	shadows := func() int {
		links, err := nl.LinkList()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, l := range links {
			if strings.HasPrefix(l.Attrs().Name, "dw") {
				n++
			}
		}
		return n
	}
	wantShadows := 0
	if path == dataplane.PathTC {
		wantShadows = 4
	}
	dir := pinDir(t)
	var p *dataplane.Pair
	topo.FW.MustDo(t, func() error {
		var err error
		p, err = dataplane.OpenPair(dataplane.PairConfig{Inner: testnet.InnerIf, Outer: testnet.OuterIf,
			PinDir: dir, StateDir: t.TempDir(), Inspector: newPassInspector(), Path: path})
		return err
	})
	if g, c := peerState(topo.Client); g != wantG || c != wantC {
		t.Fatalf("peer after open: gro %s tx-checksumming %s, want %s/%s", g, c, wantG, wantC)
	}
	if n := shadows(); n != wantShadows {
		t.Fatalf("%d shadow interfaces after open, want %d", n, wantShadows)
	}
	if entries, _ := os.ReadDir(dir); len(entries) == 0 {
		t.Fatal("nothing pinned")
	}
	// Close leaves the programs, the shadows and the peer settings in
	// place; Detach afterwards still removes and restores everything.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if g, c := peerState(topo.Client); g != wantG || c != wantC {
		t.Fatalf("peer after close: gro %s tx-checksumming %s, want %s/%s", g, c, wantG, wantC)
	}
	if n := shadows(); n != wantShadows {
		t.Fatalf("%d shadow interfaces after close, want %d", n, wantShadows)
	}
	if err := p.Detach(); err != nil {
		t.Fatal(err)
	}
	if g, c := peerState(topo.Client); g != g0 || c != c0 {
		t.Fatalf("peer after detach: gro %s tx-checksumming %s, want %s/%s", g, c, g0, c0)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		entries, _ := os.ReadDir(dir)
		t.Fatalf("pin dir still there with %d entries", len(entries))
	}
	if n := shadows(); n != 0 {
		t.Fatalf("%d shadow interfaces after detach", n)
	}
	testnet.CheckNoPrograms(t, topo.FW, testnet.InnerIf, testnet.OuterIf)
}

// TestPrivilegedFlowAging: the reaper deletes an ALLOW entry once its flow
// is idle past its protocol's timeout, and a flow that saw FIN after the
// (shorter) closing grace.
func TestPrivilegedFlowAging(t *testing.T) {
	topo := testnet.NewTopology(t, testnet.TopologyOptions{})
	insp := newRuleInspector(func(f *dataplane.Frame, pkt *dataplane.Packet, _ []byte) dataplane.Verdict {
		return dataplane.Verdict{Action: dataplane.Forward, Final: true}
	})
	p := runPair(t, topo, dataplane.PairConfig{Inspector: insp, Aging: dataplane.AgingConfig{
		UDP: 500 * time.Millisecond, TCP: time.Hour, Closing: 300 * time.Millisecond, Interval: 100 * time.Millisecond}})
	udp := udpEcho(t, topo, netip.AddrPortFrom(testnet.ServerIP, 5353), 3)
	tcp := bulkTCP(t, topo, netip.AddrPortFrom(testnet.ServerIP, 8080), 64<<10, 10*time.Second)
	// bulkTCP has closed the connection: its FINs crossed the fast path.
	present := func(k xdp.FlowKey) bool {
		_, ok, err := p.Program().LookupFlow(k)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !present(udp) {
		t.Fatal("udp flow not marked")
	}
	if !testutil.WaitFor(5*time.Second, func() bool { return !present(udp) && !present(tcp) }) {
		t.Fatalf("entries not reaped: udp %v tcp %v; reaper %+v", present(udp), present(tcp), p.Stats().Reaper)
	}
	if r := p.Stats().Reaper; r.Idle == 0 || r.Closing == 0 {
		t.Fatalf("reaper counted idle %d closing %d, want both > 0", r.Idle, r.Closing)
	}
}

// TestPrivilegedSingleWorker: one worker on one queue judges frames on the
// I/O loop itself; the results are the same.
func TestPrivilegedSingleWorker(t *testing.T) {
	topo := testnet.NewTopology(t, testnet.TopologyOptions{})
	insp := newPassInspector()
	p := runPair(t, topo, dataplane.PairConfig{Inspector: insp, Workers: 1})
	k := bulkTCP(t, topo, netip.AddrPortFrom(testnet.ServerIP6, 8080), 2<<20, 30*time.Second)
	if insp.seen(k) == 0 {
		t.Fatal("inspector not called")
	}
	ping(t, topo, testnet.ServerIP, 2)
	if st := p.Stats(); st.InFlight != 0 || len(st.Workers) != 1 || st.Workers[0].Inspected == 0 {
		t.Fatalf("stats %+v", st)
	}
}
