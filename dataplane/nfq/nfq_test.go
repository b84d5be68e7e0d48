package nfq

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/internal/testnet"
	"github.com/deepwall/deepwall/internal/testutil"
	"github.com/deepwall/deepwall/xdp"
)

// testInspector blocks (final, with resets) a flow whose packet carries
// "BLOCKME", bypasses (final forward) flows to port bypassPort after their
// first payload, and forwards everything else packet by packet.
type testInspector struct {
	inspected atomic.Uint64
	maxFrame  atomic.Int64 // the longest frame inspected
	mu        sync.Mutex
	seen      map[xdp.FlowKey]int
}

const bypassPort = 7001

func (ti *testInspector) Inspect(_ int, f *dataplane.Frame) dataplane.Verdict {
	ti.inspected.Add(1)
	for n := int64(len(f.Data)); n > ti.maxFrame.Load(); {
		if ti.maxFrame.CompareAndSwap(ti.maxFrame.Load(), n) {
			break
		}
	}
	if bytes.Contains(f.Data, []byte("BLOCKME")) {
		return dataplane.Verdict{Action: dataplane.Drop, Final: true, Reset: true, RuleID: 42}
	}
	if f.Key.PortLo == bypassPort || f.Key.PortHi == bypassPort {
		ti.mu.Lock()
		defer ti.mu.Unlock()
		ti.seen[f.Key]++
		if ti.seen[f.Key] > 4 {
			return dataplane.Verdict{Action: dataplane.Forward, Final: true}
		}
	}
	return dataplane.Verdict{Action: dataplane.Forward}
}

// laterPacketReset resets a connection to srv (BLOCKME), then sends an ACK
// on its tuple from the client and wants a reset back at that ACK's
// acknowledgement number.
func laterPacketReset(t *testing.T, topo *testnet.Topology, srv netip.AddrPort) {
	t.Helper()
	ps := testnet.OpenPacketSocket(t, topo.Client, 2*time.Second)
	c := testnet.Dial(t, topo.Client, "tcp", srv)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	local := c.LocalAddr().(*net.TCPAddr).AddrPort()
	io.WriteString(c, "BLOCKME\n")
	if _, err := io.ReadAll(c); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("blocked flow to %s: %v, want a reset", srv, err)
	}
	buf := make([]byte, 1<<16)
	var p dataplane.Packet
	next := func(want func(*dataplane.Packet) bool) []byte {
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
			n, err := ps.Recv(buf)
			if err != nil {
				break
			}
			if dataplane.ParsePacket(buf[:n], &p) == dataplane.KindIP && p.Keyed && p.Proto == 6 && want(&p) {
				return buf[:n]
			}
		}
		return nil
	}
	syn := next(func(p *dataplane.Packet) bool { return p.SrcPort == local.Port() && p.TCPFlags&0x02 != 0 })
	if syn == nil {
		t.Fatalf("no SYN of %s captured", local)
	}
	const ack = 777777
	spec := testnet.FrameSpec{DstMAC: slices.Clone(syn[0:6]), SrcMAC: slices.Clone(syn[6:12]),
		Src: netip.AddrPortFrom(local.Addr().Unmap(), local.Port()), Dst: srv, Proto: testnet.ProtoTCP,
		Flags: testnet.ACK, Seq: 4242, Ack: ack}
	if err := ps.Send(testnet.Frame(t, spec)); err != nil {
		t.Fatal(err)
	}
	if next(func(p *dataplane.Packet) bool {
		return p.DstPort == local.Port() && p.TCPFlags&0x04 != 0 && p.Seq == ack
	}) == nil {
		t.Errorf("a later packet of the reset flow to %s got no reset at its acknowledgement", srv)
	}
}

// userRules installs rules of "the user's own" in fw, to be left alone.
func userRules(tb testing.TB, ns *testnet.NS) {
	tb.Helper()
	for _, args := range [][]string{
		{"iptables", "-A", "FORWARD", "-p", "udp", "--dport", "9999", "-j", "ACCEPT"},
		{"iptables", "-N", "USERCHAIN"},
		{"iptables", "-A", "USERCHAIN", "-s", "198.19.0.0/16", "-j", "RETURN"},
		{"iptables", "-I", "FORWARD", "1", "-j", "USERCHAIN"},
		{"ip6tables", "-A", "FORWARD", "-p", "tcp", "--dport", "9998", "-j", "ACCEPT"},
	} {
		if out, err := ns.Run(exec.Command(args[0], args[1:]...)); err != nil {
			tb.Fatalf("%v: %v %s", args, err, out)
		}
	}
}

// openPair opens a pair in topo's fw namespace and runs it until cleanup.
func openPair(tb testing.TB, topo *testnet.Topology, insp dataplane.Inspector, mod func(*Config)) (*Pair, func()) {
	tb.Helper()
	cfg := Config{Inner: testnet.InnerIf, Outer: testnet.OuterIf, Workers: 2, Inspector: insp,
		Aging: dataplane.AgingConfig{Interval: 300 * time.Millisecond}}
	if mod != nil {
		mod(&cfg)
	}
	var p *Pair
	topo.FW.MustDo(tb, func() error {
		var err error
		p, err = Open(cfg)
		return err
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				tb.Errorf("run: %v", err)
			}
			if err := p.Detach(); err != nil {
				tb.Errorf("detach: %v", err)
			}
		})
	}
	tb.Cleanup(stop)
	return p, stop
}

func pseudo(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + r.IntN(26))
	}
	return b
}

// answerPseudo answers a connection with n pseudo-random bytes, n read
// as a decimal line, until the client stops asking.
func answerPseudo(c net.Conn) {
	for {
		var n int
		if _, err := fmt.Fscanf(c, "%d\n", &n); err != nil {
			return
		}
		if _, err := c.Write(pseudo(n, uint64(n))); err != nil {
			return
		}
	}
}

// blockedBody is the size of answerBlocked's response.
const blockedBody = 4 << 20

// answerBlocked answers a connection with blockedBody bytes with
// BLOCKME in the middle, written at once (TSO makes GSO packets).
func answerBlocked() func(net.Conn) {
	body := pseudo(blockedBody, 7)
	copy(body[blockedBody/2:], "BLOCKME")
	return func(c net.Conn) { c.Write(body) }
}

func fetch(tb testing.TB, ns *testnet.NS, addr netip.AddrPort, n int) error {
	tb.Helper()
	var c net.Conn
	if err := ns.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr.String(), 10*time.Second)
		return err
	}); err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "%d\n", n)
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if sha256.Sum256(got) != sha256.Sum256(pseudo(n, uint64(n))) {
		return fmt.Errorf("%d bytes back, not the %d sent", len(got), n)
	}
	return nil
}

// TestPrivilegedNFQueue runs the pair on a bridged and on a routed fw
// namespace: traffic inspected and forwarded byte-exact (IPv4, IPv6), a
// final forward moving the flow to the connmark fast path with the
// conntrack counters in Flows, a final drop resetting the client, the ACL
// in iptables, revocation by generation, and after Detach the rules
// exactly as they were (the user's own included).
func TestPrivilegedNFQueue(t *testing.T) {
	for _, mode := range []struct {
		name string
		opts testnet.TopologyOptions
	}{{"bridged", testnet.TopologyOptions{Bridge: true}}, {"routed", testnet.TopologyOptions{Routed: true}}} {
		t.Run(mode.name, func(t *testing.T) {
			topo := testnet.NewTopology(t, mode.opts)
			userRules(t, topo.FW)
			before := testnet.RulesSnapshot(t, topo.FW)
			insp := &testInspector{seen: map[xdp.FlowKey]int{}}
			var ended atomic.Int32
			p, stop := openPair(t, topo, insp, func(c *Config) {
				c.Aging.OnFlowEnd = func(k xdp.FlowKey, v xdp.FlowValue, r dataplane.EndReason) {
					if r == dataplane.EndGone {
						ended.Add(1)
					}
				}
			})
			if p.Bridged() != mode.opts.Bridge {
				t.Fatalf("bridged %v", p.Bridged())
			}
			for _, srv := range []netip.Addr{testnet.ServerIP, testnet.ServerIP6} {
				for _, port := range []uint16{7000, bypassPort} {
					ln := testnet.Listen(t, topo.Server, "tcp", netip.AddrPortFrom(srv, port))
					go testnet.Serve(ln, answerPseudo)
				}
			}
			for _, srv := range []netip.Addr{testnet.ServerIP, testnet.ServerIP6} {
				if err := fetch(t, topo.Client, netip.AddrPortFrom(srv, 7000), 300<<10); err != nil {
					t.Fatalf("inspected fetch from %s: %v", srv, err)
				}
			}
			if insp.inspected.Load() < 50 {
				t.Errorf("only %d packets inspected", insp.inspected.Load())
			}

			// Fast path: after the final forward the flow stays in the kernel.
			before2 := insp.inspected.Load()
			if err := fetch(t, topo.Client, netip.AddrPortFrom(testnet.ServerIP, bypassPort), 4<<20); err != nil {
				t.Fatalf("bypassed fetch: %v", err)
			}
			// A 4 MiB flow is ~3000 packets; those queued before its mark
			// took are judged by the table, not inspected.
			if n := insp.inspected.Load() - before2; n > 300 {
				t.Errorf("%d packets of a bypassed 4 MiB flow inspected", n)
			}
			var fast xdp.FlowValue
			if err := p.Flows(func(k xdp.FlowKey, v xdp.FlowValue) bool {
				if (k.PortLo == bypassPort || k.PortHi == bypassPort) && v.Verdict == xdp.VerdictAllow {
					fast = v
				}
				return true
			}); err != nil {
				t.Fatal(err)
			}
			if fast.Bytes[0]+fast.Bytes[1] < 4<<20 {
				t.Errorf("fast-path counters of the bypassed flow: %+v", fast)
			}
			_, ks, err := p.Stats()
			if err != nil || ks.FastAllow == 0 || ks.ToUser == 0 {
				t.Errorf("kernel stats %+v (%v)", ks, err)
			}

			// A final drop resets the client, v4 and v6.
			for _, srv := range []netip.Addr{testnet.ServerIP, testnet.ServerIP6} {
				c := testnet.Dial(t, topo.Client, "tcp", netip.AddrPortFrom(srv, 7000))
				c.SetDeadline(time.Now().Add(5 * time.Second))
				io.WriteString(c, "BLOCKME\n")
				_, err := io.ReadAll(c)
				if !errors.Is(err, syscall.ECONNRESET) {
					t.Errorf("blocked flow to %s: %v, want a reset", srv, err)
				}
			}
			// A later packet of a reset flow is answered with a reset at its
			// acknowledgement: a receiver that lost a segment before the
			// blocked one answers the first reset with a challenge ACK.
			for _, srv := range []netip.Addr{testnet.ServerIP, testnet.ServerIP6} {
				laterPacketReset(t, topo, netip.AddrPortFrom(srv, 7000))
			}
			// The same for a server's bulk response (the endpoints keep
			// TSO: GSO packets, queued whole): the client, the receiver,
			// is reset too.
			for _, srv := range []netip.Addr{testnet.ServerIP, testnet.ServerIP6} {
				ln := testnet.Listen(t, topo.Server, "tcp", netip.AddrPortFrom(srv, 7002))
				go testnet.Serve(ln, answerBlocked())
				c := testnet.Dial(t, topo.Client, "tcp", netip.AddrPortFrom(srv, 7002))
				c.SetDeadline(time.Now().Add(5 * time.Second))
				n, err := io.Copy(io.Discard, c)
				if !errors.Is(err, syscall.ECONNRESET) || n >= blockedBody {
					t.Errorf("blocked response from %s: %d bytes, %v, want a reset", srv, n, err)
				}
			}
			if insp.maxFrame.Load() <= 1514 {
				t.Logf("no GSO packet queued (longest frame %d)", insp.maxFrame.Load())
			}
			st, _, _ := p.Stats()
			// The receiver's reset (the rewritten packet) always goes; the
			// sender's is best effort (packet socket).
			if st.Inner.Resets+st.Outer.Resets < 2 {
				t.Errorf("resets %d/%d", st.Inner.Resets, st.Outer.Resets)
			}

			// The ACL: port 7000 denied in the kernel, the rest allowed.
			acl := xdp.ACL{Default: xdp.ACLAllow, Rules: []xdp.ACLRule{{ID: 9, Action: xdp.ACLDeny, Proto: 6,
				Dst:      []netip.Prefix{netip.MustParsePrefix("198.18.0.2/32"), netip.MustParsePrefix("198.18.9.0/24"), netip.MustParsePrefix("2001:2::2/128")},
				DstPorts: []xdp.PortRange{{Lo: 7000, Hi: 7000}}}}}
			if err := p.SetACL(acl); err != nil {
				t.Fatalf("set acl: %v", err)
			}
			for _, srv := range []netip.Addr{testnet.ServerIP, testnet.ServerIP6} {
				if err := fetch(t, topo.Client, netip.AddrPortFrom(srv, 7000), 10); err == nil {
					t.Errorf("ACL deny to %s let a connection through", srv)
				}
			}
			if _, ks, _ := p.Stats(); ks.ACLDrop == 0 {
				t.Errorf("no ACL drops counted: %+v", ks)
			}
			if err := p.SetACL(xdp.ACL{Default: xdp.ACLAllow}); err != nil {
				t.Fatal(err)
			}
			if err := fetch(t, topo.Client, netip.AddrPortFrom(testnet.ServerIP, 7000), 10); err != nil {
				t.Errorf("after the ACL is lifted: %v", err)
			}

			// Revocation: a decided flow's verdict revoked, the generation
			// moves on, its next packets are inspected again.
			c := testnet.Dial(t, topo.Client, "tcp", netip.AddrPortFrom(testnet.ServerIP, bypassPort))
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, "100000\n")
			if _, err := io.ReadFull(c, make([]byte, 100000)); err != nil {
				t.Fatal(err)
			}
			gen := p.Generation()
			var revoked int
			p.Flows(func(k xdp.FlowKey, v xdp.FlowValue) bool {
				if v.Verdict == xdp.VerdictAllow {
					p.SetFlow(k, xdp.VerdictInspect, 0)
					revoked++
				}
				return true
			})
			p.ForgetVerdicts()
			if revoked == 0 || p.Generation() == gen {
				t.Errorf("revoked %d, generation %d -> %d", revoked, gen, p.Generation())
			}
			mid := insp.inspected.Load()
			io.WriteString(c, "200000\n")
			if _, err := io.ReadFull(c, make([]byte, 200000)); err != nil {
				t.Fatalf("revoked flow broke: %v", err)
			}
			if insp.inspected.Load() == mid {
				t.Errorf("revoked flow not inspected again")
			}
			c.Close()

			// Flow end: conntrack forgets closed flows (TIME_WAIT aside, the
			// reset ones go at once); at least the blocked ones end.
			if !testutil.WaitFor(15*time.Second, func() bool { return ended.Load() > 0 }) {
				t.Errorf("no flow ended from conntrack")
			}

			stop()
			if after := testnet.RulesSnapshot(t, topo.FW); after != before {
				t.Errorf("rules after detach differ:\n--- before\n%s--- after\n%s", before, after)
			}
		})
	}
}

// TestPrivilegedNFQueueLeftovers: an instance that died without cleaning
// up (Close keeps its rules, as a crash does) is cleaned by the next start,
// which uses a new connmark generation; a fail-closed queue without a
// listener drops, Detach restores the rules exactly.
func TestPrivilegedNFQueueLeftovers(t *testing.T) {
	topo := testnet.NewTopology(t, testnet.TopologyOptions{Bridge: true})
	userRules(t, topo.FW)
	before := testnet.RulesSnapshot(t, topo.FW)
	ln := testnet.Listen(t, topo.Server, "tcp", netip.AddrPortFrom(testnet.ServerIP, 7000))
	go testnet.Serve(ln, answerPseudo)
	var first *Pair
	topo.FW.MustDo(t, func() error {
		var err error
		first, err = Open(Config{Inner: testnet.InnerIf, Outer: testnet.OuterIf, Workers: 1, FailClosed: true,
			Inspector: &testInspector{seen: map[xdp.FlowKey]int{}}})
		return err
	})
	gen := first.Generation()
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if err := fetch(t, topo.Client, netip.AddrPortFrom(testnet.ServerIP, 7000), 10); err == nil {
		t.Errorf("fail-closed rules without a listener let a connection through")
	}
	if testnet.RulesSnapshot(t, topo.FW) == before {
		t.Fatalf("Close removed the rules")
	}
	second, _ := openPair(t, topo, &testInspector{seen: map[xdp.FlowKey]int{}}, nil)
	if second.Generation() == gen {
		t.Errorf("second instance reuses generation %d", gen)
	}
	if err := fetch(t, topo.Client, netip.AddrPortFrom(testnet.ServerIP, 7000), 1000); err != nil {
		t.Errorf("after the restart: %v", err)
	}
	if err := second.Detach(); err != nil {
		t.Fatal(err)
	}
	if after := testnet.RulesSnapshot(t, topo.FW); after != before {
		t.Errorf("rules after detach differ:\n--- before\n%s--- after\n%s", before, after)
	}
}

// TestPrivilegedNFQueueBusyBase: another program holding the default
// queue block moves the pair to the next free one; an explicit base that
// is held is an error naming the cause.
func TestPrivilegedNFQueueBusyBase(t *testing.T) {
	topo := testnet.NewTopology(t, testnet.TopologyOptions{Bridge: true})
	ln := testnet.Listen(t, topo.Server, "tcp", netip.AddrPortFrom(testnet.ServerIP, 7000))
	go testnet.Serve(ln, answerPseudo)
	var busy uint16
	topo.FW.MustDo(t, func() error {
		ifi, err := net.InterfaceByName(testnet.InnerIf)
		if err != nil {
			return err
		}
		busy = uint16(ifi.Index%queueBases) * 256
		s, err := openNLSock(busy, 1<<16)
		if err != nil {
			return err
		}
		t.Cleanup(func() { s.close() })
		return s.bind(maxPacket, 16, 0, nfAccept)
	})
	topo.FW.MustDo(t, func() error {
		_, err := Open(Config{Inner: testnet.InnerIf, Outer: testnet.OuterIf, Workers: 1, QueueBase: busy,
			Inspector: &testInspector{seen: map[xdp.FlowKey]int{}}})
		if !errors.Is(err, ErrQueueBusy) {
			return fmt.Errorf("explicit busy base %d: got %v, want ErrQueueBusy", busy, err)
		}
		return nil
	})
	p, _ := openPair(t, topo, &testInspector{seen: map[xdp.FlowKey]int{}}, nil)
	if first, _ := p.QueueRange(); first == busy {
		t.Fatalf("pair bound the busy block %d", busy)
	}
	if err := fetch(t, topo.Client, netip.AddrPortFrom(testnet.ServerIP, 7000), 1000); err != nil {
		t.Errorf("through the moved queues: %v", err)
	}
}
