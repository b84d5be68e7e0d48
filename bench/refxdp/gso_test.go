package refxdp_test

// The GSO experiment: does a multi-buffer (xdp.frags) program let the XDP
// fast path keep GSO/TSO on veth, and so approach the Linux bridge? The
// answer on kernel 6.18 is no; docs/performance.md has the figures and the
// kernel code path. BenchmarkVethGSO measures every path on its own
// topology in interleaved rounds; the TestPrivilegedFrags… tests pin down
// the kernel behaviour the answer rests on, so both can be rerun on another
// kernel.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/deepwall/deepwall/bench/refxdp"
	"github.com/deepwall/deepwall/internal/testnet"
	"github.com/deepwall/deepwall/internal/testutil"
	"github.com/deepwall/deepwall/xdp"
)

// Endpoint settings of the experiment, applied with ethtool -K to eth0 in
// the client and server namespaces.
var (
	// redirectNeeds is what a redirect into a veth needs at the receiving
	// end: NAPI, which GRO provides; without it the kernel drops every
	// redirected frame (docs/architecture.md, measured facts).
	redirectNeeds = []string{"gro", "on"}
	// checksumsDone also makes the senders fill in TCP checksums, which an
	// XDP redirect cannot carry as CHECKSUM_PARTIAL.
	checksumsDone = []string{"tx", "off", "gro", "on"}
)

// gsoPath is one forwarding path between client and server.
type gsoPath struct {
	name   string
	mtu    int      // every veth of the topology; 0 = 1500
	bridge bool     // Linux bridge in fw instead of an attach
	tune   []string // ethtool -K arguments for both endpoints' eth0
	// attach connects inner and outer of p.topo; it may set p.before and
	// p.prog.
	attach func(tb testing.TB, p *gsoPath) error

	topo     *testnet.Topology
	before   func(port, cport int) // run before each measurement, with iperf3's ports
	prog     *xdp.Program          // deepwall's, for its counters
	setupErr error
	peer     string // client eth0 after the attach: TSO state and max MTU
	runs     []gsoRun
}

// gsoRun is one iperf3 measurement.
type gsoRun struct {
	gbps      float64
	retrans   int
	csumErrs  uint64 // TcpInCsumErrors, client + server
	err       string // iperf3's error, if it got no result
	fastAllow uint64 // deepwall only: packets on the ALLOW fast path
}

// BenchmarkVethGSO measures one iperf3 TCP stream client → server over
// every path of the GSO experiment, in interleaved rounds (each round runs
// every path once, in a rotated order), and prints per path the median,
// minimum and maximum rate, the median retransmits, the TCP checksum
// errors seen by both ends and the client eth0's TSO state once the path
// is set up. It asserts nothing about the figures.
//
//	go test -run '^$' -bench VethGSO -benchtime 1x -timeout 30m ./bench/refxdp
//
// DEEPWALL_BENCH_DURATION (default 5s) sets the length of a measurement,
// DEEPWALL_BENCH_ROUNDS (default 3) the number of rounds; a round takes
// about 12 × (duration + 1.5 s).
func BenchmarkVethGSO(b *testing.B) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Skip("iperf3 not installed")
	}
	d, rounds := testutil.BenchDuration(b), testutil.BenchRounds(b)
	paths := []*gsoPath{
		{name: "bridge", bridge: true},
		{name: "bridge tx-off", bridge: true, tune: []string{"tx", "off"}},
		{name: "tc-mirred", attach: attachMirred},
		{name: "refxdp", tune: redirectNeeds, attach: attachRef(refxdp.Load)},
		{name: "refxdp tx-off", tune: checksumsDone, attach: attachRef(refxdp.Load)},
		{name: "refxdp-frags", tune: redirectNeeds, attach: attachRef(refxdp.LoadFrags)},
		{name: "refxdp-frags tx-off", tune: checksumsDone, attach: attachRef(refxdp.LoadFrags)},
		{name: "deepwall-allow", tune: redirectNeeds, attach: attachDeepwall},
		{name: "deepwall-allow tx-off", tune: checksumsDone, attach: attachDeepwall},
		{name: "bridge mtu9000", mtu: 9000, bridge: true},
		{name: "refxdp mtu9000 tx-off", mtu: 9000, tune: checksumsDone, attach: attachRef(refxdp.Load)},
		{name: "refxdp-frags mtu9000 tx-off", mtu: 9000, tune: checksumsDone, attach: attachRef(refxdp.LoadFrags)},
	}
	for _, p := range paths {
		p.topo = testnet.NewTopology(b, testnet.TopologyOptions{MTU: p.mtu, Bridge: p.bridge})
		for _, ns := range []*testnet.NS{p.topo.Client, p.topo.Server} {
			if len(p.tune) > 0 {
				ethtoolK(b, ns, p.tune...)
			}
		}
		if p.attach != nil {
			p.setupErr = p.attach(b, p)
		}
		p.peer = peerState(b, p.topo)
	}
	port := 5201
	for r := range rounds {
		for i := range paths {
			p := paths[(i+r)%len(paths)]
			if p.setupErr != nil {
				continue
			}
			port++
			cport := port + 30000
			if p.before != nil {
				p.before(port, cport)
			}
			p.runs = append(p.runs, measure(b, p, port, cport, d))
		}
	}

	fmt.Printf("\nveth GSO experiment: %d rounds of %s, one iperf3 TCP stream, figures noisy (shared 2-core VM)\n", rounds, d)
	fmt.Printf("%-28s %8s %17s %8s %9s  %s\n", "path", "Gbit/s", "min–max", "retrans", "csum-err", "client eth0 after setup / result")
	for _, p := range paths {
		if p.setupErr != nil {
			fmt.Printf("%-28s %8s %17s %8s %9s  setup failed: %v\n", p.name, "-", "-", "-", "-", p.setupErr)
			continue
		}
		var rates []float64
		var retrans []int
		var allowed []int
		var csum uint64
		var errs []string
		for _, run := range p.runs {
			csum += run.csumErrs
			if run.err != "" {
				errs = append(errs, run.err)
				continue
			}
			rates = append(rates, run.gbps)
			retrans = append(retrans, run.retrans)
			allowed = append(allowed, int(run.fastAllow))
		}
		note := p.peer
		if len(errs) > 0 {
			note += fmt.Sprintf("; %d/%d runs failed: %s", len(errs), len(p.runs), errs[0])
		}
		if p.prog != nil && len(allowed) > 0 {
			note += fmt.Sprintf("; fast-path packets/run %d", medianI(allowed))
		}
		if len(rates) == 0 {
			fmt.Printf("%-28s %8s %17s %8s %9d  %s\n", p.name, "0", "-", "-", csum, note)
			continue
		}
		med, lo, hi := medianF(rates), slices.Min(rates), slices.Max(rates)
		fmt.Printf("%-28s %8.2f %8.2f–%-8.2f %8d %9d  %s\n", p.name, med, lo, hi, medianI(retrans), csum, note)
		b.ReportMetric(med, "Gbit/s:"+strings.ReplaceAll(p.name, " ", "_"))
	}
}

// measure runs one iperf3 stream over p and collects its counters.
func measure(tb testing.TB, p *gsoPath, port, cport int, d time.Duration) gsoRun {
	tb.Helper()
	c0, s0 := csumErrors(tb, p.topo.Client, "Tcp:"), csumErrors(tb, p.topo.Server, "Tcp:")
	var allow0 uint64
	if p.prog != nil {
		allow0 = stats(tb, p.prog).FastAllow
	}
	run := iperf3(tb, p.topo, port, cport, d)
	run.csumErrs = csumErrors(tb, p.topo.Client, "Tcp:") - c0 + csumErrors(tb, p.topo.Server, "Tcp:") - s0
	if p.prog != nil {
		run.fastAllow = stats(tb, p.prog).FastAllow - allow0
	}
	return run
}

func stats(tb testing.TB, p *xdp.Program) xdp.Stats {
	tb.Helper()
	s, err := p.Stats()
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// attachRef attaches the reference forwarder loaded by load both ways.
func attachRef(load func() (*refxdp.Forwarder, error)) func(testing.TB, *gsoPath) error {
	return func(tb testing.TB, p *gsoPath) error {
		f, err := load()
		if err != nil {
			return err
		}
		tb.Cleanup(func() { _ = f.Close() })
		return attachBoth(p.topo, f)
	}
}

// attachDeepwall attaches deepwall's program, fail-open and without
// sockets, and marks the measured flow ALLOW before each run, so its data
// takes the fast path (the iperf3 control connection fails open).
func attachDeepwall(tb testing.TB, path *gsoPath) error {
	p, err := xdp.Load(xdp.Options{MaxFlows: 1024})
	if err != nil {
		return err
	}
	tb.Cleanup(func() { _ = p.Close() })
	topo := path.topo
	err = topo.FW.Do(func() error {
		if err := p.Attach(topo.InnerIndex, xdp.PortConfig{Slot: 0, Peer: topo.OuterIndex}); err != nil {
			return err
		}
		return p.Attach(topo.OuterIndex, xdp.PortConfig{Slot: 1, Peer: topo.InnerIndex})
	})
	if err != nil {
		return err
	}
	path.prog = p
	path.before = func(port, cport int) {
		k, _ := xdp.MakeFlowKey(testnet.ClientIP, testnet.ServerIP, uint16(cport), uint16(port), testnet.ProtoTCP)
		if err := p.SetFlow(k, xdp.VerdictAllow, 0); err != nil {
			tb.Fatalf("set flow: %v", err)
		}
	}
	return nil
}

// attachMirred forwards at the skb level instead of XDP: tc ingress on
// each port redirects to the other port's egress. The skb keeps its GSO
// and checksum state, which is what the XDP paths lose.
func attachMirred(_ testing.TB, p *gsoPath) error {
	topo := p.topo
	for _, dir := range [][2]string{{testnet.InnerIf, testnet.OuterIf}, {testnet.OuterIf, testnet.InnerIf}} {
		for _, args := range [][]string{
			{"qdisc", "add", "dev", dir[0], "clsact"},
			{"filter", "add", "dev", dir[0], "ingress", "protocol", "all", "u32", "match", "u32", "0", "0",
				"action", "mirred", "egress", "redirect", "dev", dir[1]},
		} {
			if out, err := topo.FW.Run(exec.Command("tc", args...)); err != nil {
				return fmt.Errorf("tc %s: %w: %s", strings.Join(args, " "), err, out)
			}
		}
	}
	return nil
}

// iperf3 runs one TCP stream from the client's port cport to the server's
// port for d. A path that never connects gives a run with err set, after
// iperf3's 3 s connect timeout.
func iperf3(tb testing.TB, topo *testnet.Topology, port, cport int, d time.Duration) gsoRun {
	tb.Helper()
	srv := exec.Command("iperf3", "-s", "-1", "-p", strconv.Itoa(port))
	topo.Server.Start(tb, srv)
	defer func() {
		_ = srv.Process.Kill()
		_ = srv.Wait()
	}()
	if !testutil.WaitFor(5*time.Second, func() bool { return listening(tb, topo.Server, port) }) {
		tb.Fatalf("iperf3 server on port %d not listening", port)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d+20*time.Second)
	defer cancel()
	out, err := topo.Client.Run(exec.CommandContext(ctx, "iperf3", "-c", testnet.ServerIP.String(),
		"-p", strconv.Itoa(port), "--cport", strconv.Itoa(cport), "-t", strconv.Itoa(int(d.Seconds())),
		"--connect-timeout", "3000", "-J"))
	var r struct {
		Error string `json:"error"`
		End   struct {
			SumSent struct {
				Retransmits int `json:"retransmits"`
			} `json:"sum_sent"`
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if jerr := json.Unmarshal(out, &r); jerr != nil {
		return gsoRun{err: fmt.Sprintf("iperf3: %v: %s", errors.Join(err, jerr), firstLine(out))}
	}
	if r.Error != "" {
		return gsoRun{err: r.Error}
	}
	if err != nil {
		return gsoRun{err: err.Error()}
	}
	return gsoRun{gbps: r.End.SumReceived.BitsPerSecond / 1e9, retrans: r.End.SumSent.Retransmits}
}

func firstLine(b []byte) string {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	return string(line)
}

// listening reports whether a TCP socket listens on port in ns (iperf3
// listens on IPv6, dual stack).
func listening(tb testing.TB, ns *testnet.NS, port int) bool {
	tb.Helper()
	want := fmt.Sprintf(":%04X ", port)
	found := false
	ns.MustDo(tb, func() error {
		for _, f := range []string{"/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"} {
			data, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			sc := bufio.NewScanner(bytes.NewReader(data))
			for sc.Scan() {
				fields := strings.Fields(sc.Text())
				// sl local_address rem_address st …; 0A is LISTEN.
				if len(fields) > 3 && strings.HasSuffix(fields[1]+" ", want) && fields[3] == "0A" {
					found = true
				}
			}
		}
		return nil
	})
	return found
}

// csumErrors reads InCsumErrors of proto ("Tcp:", "Udp:") in ns: what its
// TCP or UDP dropped because the checksum was wrong.
func csumErrors(tb testing.TB, ns *testnet.NS, proto string) uint64 {
	tb.Helper()
	var v uint64
	ns.MustDo(tb, func() error {
		data, err := os.ReadFile("/proc/thread-self/net/snmp")
		if err != nil {
			return err
		}
		v, err = snmpField(data, proto, "InCsumErrors")
		return err
	})
	return v
}

// snmpField reads one counter from /proc/net/snmp, where each protocol has
// a header line of names followed by a line of values.
func snmpField(data []byte, proto, name string) (uint64, error) {
	var names []string
	for line := range strings.Lines(string(data)) {
		fields := strings.Fields(line)
		if len(fields) == 0 || fields[0] != proto {
			continue
		}
		if names == nil {
			names = fields
			continue
		}
		if i := slices.Index(names, name); i > 0 && i < len(fields) {
			return strconv.ParseUint(fields[i], 10, 64)
		}
		break
	}
	return 0, fmt.Errorf("snmp: no %s %s", proto, name)
}

// ethtoolK sets features of eth0 in ns. Only the experiment does this:
// deepwall itself must make a path work without pre-configured endpoints.
func ethtoolK(tb testing.TB, ns *testnet.NS, args ...string) {
	tb.Helper()
	if out, err := ns.Run(exec.Command("ethtool", append([]string{"-K", testnet.EndpointIf}, args...)...)); err != nil {
		tb.Fatalf("%s: ethtool -K %s: %v: %s", ns.Name, strings.Join(args, " "), err, out)
	}
}

// peerState describes the client's eth0 — the peer of the fw's inner port,
// whose offloads an XDP attach on inner changes.
func peerState(tb testing.TB, topo *testnet.Topology) string {
	tb.Helper()
	tso, fixed := feature(tb, topo.Client, "tcp-segmentation-offload")
	s := "tso " + tso
	if fixed {
		s += " [fixed]"
	}
	return fmt.Sprintf("%s, max mtu %d", s, maxMTU(tb, topo.Client))
}

// maxMTU is eth0's largest settable MTU in ns, which an XDP attach on its
// veth peer lowers (netlink IFLA_MAX_MTU, read through ip -j).
func maxMTU(tb testing.TB, ns *testnet.NS) int {
	tb.Helper()
	out, err := ns.Run(exec.Command("ip", "-j", "-d", "link", "show", testnet.EndpointIf))
	if err != nil {
		tb.Fatalf("ip link: %v: %s", err, out)
	}
	var links []struct {
		MaxMTU int `json:"max_mtu"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		tb.Fatalf("ip -j link: %v: %s", err, out)
	}
	return links[0].MaxMTU
}

// feature reads one ethtool -k feature of eth0 in ns, and whether the
// driver pins it (the "[fixed]" of ethtool, shown on its sub-features).
func feature(tb testing.TB, ns *testnet.NS, name string) (state string, fixed bool) {
	tb.Helper()
	out, err := ns.Run(exec.Command("ethtool", "-k", testnet.EndpointIf))
	if err != nil {
		tb.Fatalf("ethtool -k: %v: %s", err, out)
	}
	for line := range strings.Lines(string(out)) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		if k == name {
			state = strings.Fields(v)[0]
		}
		if k == "tx-tcp-segmentation" {
			fixed = strings.Contains(v, "[fixed]")
		}
	}
	if state == "" {
		tb.Fatalf("ethtool -k: no %s", name)
	}
	return state, fixed
}

func medianF(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func medianI(v []int) int {
	s := slices.Sorted(slices.Values(v))
	return s[len(s)/2]
}

// attachBoth attaches f on inner and outer of topo, forwarding both ways.
func attachBoth(topo *testnet.Topology, f *refxdp.Forwarder) error {
	return topo.FW.Do(func() error {
		if err := f.Attach(topo.InnerIndex, topo.OuterIndex); err != nil {
			return err
		}
		return f.Attach(topo.OuterIndex, topo.InnerIndex)
	})
}

func mustLoad(tb testing.TB, load func() (*refxdp.Forwarder, error)) *refxdp.Forwarder {
	tb.Helper()
	testnet.RequirePrivileged(tb)
	f, err := load()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = f.Close() })
	return f
}

// TestPrivilegedFragsPeerOffloads records what attaching each variant to
// the fw's inner port does to its veth peer, the client's eth0. The kernel
// (veth_xdp_set, veth_fix_features) takes NETIF_F_GSO_SOFTWARE, TSO
// included, from the peer of any veth with an XDP program; xdp_has_frags
// only raises the peer's max MTU. The TSO state is logged, not asserted:
// were a kernel to keep TSO for frags programs, BenchmarkVethGSO is the
// experiment to rerun.
func TestPrivilegedFragsPeerOffloads(t *testing.T) {
	maxMTUs := map[string]int{}
	for _, v := range []struct {
		name string
		load func() (*refxdp.Forwarder, error)
	}{{"xdp", refxdp.Load}, {"xdp.frags", refxdp.LoadFrags}} {
		topo := testnet.NewTopology(t, testnet.TopologyOptions{})
		before, _ := feature(t, topo.Client, "tcp-segmentation-offload")
		f := mustLoad(t, v.load)
		if err := attachBoth(topo, f); err != nil {
			t.Fatalf("%s: %v", v.name, err)
		}
		maxMTUs[v.name] = maxMTU(t, topo.Client)
		t.Logf("%s program on the peer: client eth0 TSO %s before, %s after", v.name, before, peerState(t, topo))
		if on, _ := feature(t, topo.Client, "tcp-segmentation-offload"); on == "on" {
			t.Logf("%s: this kernel keeps the peer's TSO: rerun BenchmarkVethGSO", v.name)
		}
	}
	// A page (4 KiB) less headroom and skb_shared_info for a plain
	// program; MAX_SKB_FRAGS more pages for a frags one.
	if maxMTUs["xdp"] >= 4096 || maxMTUs["xdp.frags"] < 9000 {
		t.Errorf("peer max MTU: %v, want < 4096 for xdp and >= 9000 for xdp.frags", maxMTUs)
	}
}

// TestPrivilegedFragsJumbo: on 9000-byte MTU veths a plain XDP program
// cannot attach at all; the frags variant forwards multi-buffer frames, and
// they arrive intact when the sender filled in its checksums, with a bad
// checksum (dropped by the receiver) when it left them to offload — the
// xdp_frame carries no CHECKSUM_PARTIAL, whatever its size.
func TestPrivilegedFragsJumbo(t *testing.T) {
	topo := testnet.NewTopology(t, testnet.TopologyOptions{MTU: 9000})
	plain := mustLoad(t, refxdp.Load)
	if err := attachBoth(topo, plain); !errors.Is(err, unix.ERANGE) {
		t.Fatalf("plain program on a 9000-MTU veth: %v, want ERANGE (peer MTU too large)", err)
	}
	_ = plain.Close()
	if err := attachBoth(topo, mustLoad(t, refxdp.LoadFrags)); err != nil {
		t.Fatal(err)
	}
	ethtoolK(t, topo.Client, checksumsDone...)
	ethtoolK(t, topo.Server, redirectNeeds...)
	srv := netip.AddrPortFrom(testnet.ServerIP, 9000)
	pc := testnet.ListenPacket(t, topo.Server, "udp4", srv)
	conn := testnet.Dial(t, topo.Client, "udp4", srv)

	if got := exchange(t, conn, pc, 8000); got != 8000 {
		t.Fatalf("8000-byte datagram, checksum filled in: received %d bytes", got)
	}
	ethtoolK(t, topo.Client, "tx", "on")
	bad := csumErrors(t, topo.Server, "Udp:")
	if got := exchange(t, conn, pc, 8000); got != 0 {
		t.Errorf("8000-byte datagram, checksum offloaded: received %d bytes, want a checksum drop", got)
	}
	if n := csumErrors(t, topo.Server, "Udp:") - bad; n == 0 {
		t.Error("checksum offloaded: no UDP InCsumErrors at the server")
	}
}

// TestPrivilegedFragsOversize: a frame larger than the egress port's MTU
// is dropped at the redirect (devmap __xdp_enqueue → xdp_ok_fwd_dev:
// -EMSGSIZE, counted in the ingress veth's rx drops), frags or not. A GSO
// super-frame (up to 64 KiB) would meet this check even if the kernel let
// one reach XDP; nothing segments it on the way.
func TestPrivilegedFragsOversize(t *testing.T) {
	topo := testnet.NewTopology(t, testnet.TopologyOptions{MTU: 9000})
	if err := attachBoth(topo, mustLoad(t, refxdp.LoadFrags)); err != nil {
		t.Fatal(err)
	}
	for _, l := range []struct {
		ns   *testnet.NS
		name string
	}{{topo.FW, testnet.OuterIf}, {topo.Server, testnet.EndpointIf}} {
		nl := l.ns.Netlink(t)
		link, err := nl.LinkByName(l.name)
		if err != nil {
			t.Fatal(err)
		}
		if err := nl.LinkSetMTU(link, 1500); err != nil {
			t.Fatalf("%s mtu 1500: %v", l.name, err)
		}
	}
	ethtoolK(t, topo.Client, checksumsDone...)
	ethtoolK(t, topo.Server, checksumsDone...)
	srv := netip.AddrPortFrom(testnet.ServerIP, 9000)
	pc := testnet.ListenPacket(t, topo.Server, "udp4", srv)
	conn := testnet.Dial(t, topo.Client, "udp4", srv)

	if got := exchange(t, conn, pc, 1000); got != 1000 {
		t.Fatalf("1000-byte datagram: received %d bytes", got)
	}
	drops := vethStat(t, topo.FW, testnet.InnerIf, "rx_queue_0_drops")
	if got := exchange(t, conn, pc, 4000); got != 0 {
		t.Errorf("4000-byte datagram into a 1500-MTU port: received %d bytes, want a drop", got)
	}
	if n := vethStat(t, topo.FW, testnet.InnerIf, "rx_queue_0_drops") - drops; n == 0 {
		t.Error("oversize frame: no rx drop counted on inner")
	}
}

// exchange sends one datagram of size bytes and returns the size of what
// the server receives within half a second (0: nothing).
func exchange(tb testing.TB, conn net.Conn, pc net.PacketConn, size int) int {
	tb.Helper()
	// Drain what an earlier exchange may have left.
	buf := make([]byte, 65536)
	for {
		_ = pc.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		if _, _, err := pc.ReadFrom(buf); err != nil {
			break
		}
	}
	if _, err := conn.Write(bytes.Repeat([]byte{0xa5}, size)); err != nil {
		tb.Fatalf("send %d bytes: %v", size, err)
	}
	_ = pc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		return 0
	}
	if !bytes.Equal(buf[:n], bytes.Repeat([]byte{0xa5}, n)) {
		tb.Fatalf("datagram of %d bytes arrived corrupted", n)
	}
	return n
}

// vethStat reads one ethtool -S counter of a veth in ns.
func vethStat(tb testing.TB, ns *testnet.NS, ifname, name string) uint64 {
	tb.Helper()
	out, err := ns.Run(exec.Command("ethtool", "-S", ifname))
	if err != nil {
		tb.Fatalf("ethtool -S %s: %v: %s", ifname, err, out)
	}
	for line := range strings.Lines(string(out)) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && k == name {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			if err != nil {
				tb.Fatalf("ethtool -S %s %s: %v", ifname, name, err)
			}
			return n
		}
	}
	tb.Fatalf("ethtool -S %s: no %s in\n%s", ifname, name, out)
	return 0
}
