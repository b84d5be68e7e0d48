package dataplane_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/internal/testnet"
	"github.com/deepwall/deepwall/xdp"
)

// testPinRoot holds the pin dirs of test pairs: <pid>-<n> each, so a
// later run can sweep what a killed run left behind.
var testPinRoot = filepath.Join(dataplane.DefaultBPFFS, "deepwall-test")

var pinSeq atomic.Uint32

// pinDir returns a fresh pin dir for a test and removes it (and any stale
// one of a dead test process) in cleanup, whatever happened to the pair.
func pinDir(tb testing.TB) string {
	tb.Helper()
	if err := xdp.EnsureBPFFS(dataplane.DefaultBPFFS); err != nil {
		tb.Fatalf("bpffs: %v", err)
	}
	sweepStalePins()
	dir := filepath.Join(testPinRoot, fmt.Sprintf("%d-%d", os.Getpid(), pinSeq.Add(1)))
	tb.Cleanup(func() { removePins(tb, dir) })
	return dir
}

// removePins detaches whatever is pinned in dir and deletes the pins.
func removePins(tb testing.TB, dir string) {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return
	}
	if prog, err := xdp.Load(xdp.Options{PinDir: dir}); err == nil {
		if err := prog.Remove(); err != nil {
			tb.Logf("remove pins in %s: %v", dir, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		tb.Errorf("remove pin dir %s: %v", dir, err)
	}
}

func sweepStalePins() {
	entries, err := os.ReadDir(testPinRoot)
	if err != nil {
		return
	}
	for _, e := range entries {
		pidStr, _, _ := strings.Cut(e.Name(), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := unix.Kill(pid, 0); errors.Is(err, unix.ESRCH) {
			dir := filepath.Join(testPinRoot, e.Name())
			if prog, err := xdp.Load(xdp.Options{PinDir: dir}); err == nil {
				_ = prog.Remove()
			}
			_ = os.RemoveAll(dir)
		}
	}
}

// passInspector forwards everything and counts what it saw.
type passInspector struct {
	frames [2]atomic.Uint64
	mu     sync.Mutex
	flows  map[xdp.FlowKey]int
}

func newPassInspector() *passInspector { return &passInspector{flows: map[xdp.FlowKey]int{}} }

func (p *passInspector) Inspect(_ int, f *dataplane.Frame) dataplane.Verdict {
	p.frames[f.Ingress].Add(1)
	p.mu.Lock()
	p.flows[f.Key]++
	p.mu.Unlock()
	return dataplane.Verdict{Action: dataplane.Forward}
}

func (p *passInspector) seen(k xdp.FlowKey) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.flows[k]
}

// runPair opens a pair on the topology's fw ports (inside the fw
// namespace, with its own pin dir and state dir) and runs it until the
// test ends; cleanup detaches it.
func runPair(tb testing.TB, topo *testnet.Topology, cfg dataplane.PairConfig) *dataplane.Pair {
	tb.Helper()
	cfg.Inner, cfg.Outer = testnet.InnerIf, testnet.OuterIf
	if cfg.PinDir == "" {
		cfg.PinDir = pinDir(tb)
	}
	if cfg.StateDir == "" {
		cfg.StateDir = tb.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{tb}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	p, stop := startPair(tb, topo, cfg)
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("pair stats: %+v", p.Stats())
			tb.Logf("xdp stats: %+v", xdpStats(tb, p))
			tb.Logf("sockets: %s", p.Diagnostics())
		}
		if err := stop(); err != nil {
			tb.Errorf("run pair: %v", err)
		}
		if err := p.Detach(); err != nil {
			tb.Errorf("detach pair: %v", err)
		}
	})
	return p
}

// startPair opens a pair with cfg inside the fw namespace and runs it
// until stop, which returns Run's error.
func startPair(tb testing.TB, topo *testnet.Topology, cfg dataplane.PairConfig) (p *dataplane.Pair, stop func() error) {
	tb.Helper()
	topo.FW.MustDo(tb, func() error {
		var err error
		p, err = dataplane.OpenPair(cfg)
		return err
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	return p, func() error {
		cancel()
		return <-done
	}
}

// testWriter sends log lines to the test log.
type testWriter struct{ tb testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.tb.Logf("%s", bytes.TrimRight(b, "\n"))
	return len(b), nil
}

// deterministic returns n pseudo-random bytes.
func deterministic(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// bulkTCP sends size bytes from client to server and size other bytes
// back over one TCP connection and checks both with sha256 at both ends.
// It returns the connection's flow key (client side as seen by the fw).
func bulkTCP(tb testing.TB, topo *testnet.Topology, server netip.AddrPort, size int, timeout time.Duration) xdp.FlowKey {
	tb.Helper()
	up, down := deterministic(size, 1), deterministic(size, 2)
	ln := testnet.Listen(tb, topo.Server, "tcp", server)
	type result struct {
		sum [32]byte
		err error
	}
	srv := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srv <- result{err: err}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(timeout))
		h := sha256.New()
		if _, err := io.CopyN(h, c, int64(size)); err != nil {
			srv <- result{err: fmt.Errorf("server read: %w", err)}
			return
		}
		if _, err := c.Write(down); err != nil {
			srv <- result{err: fmt.Errorf("server write: %w", err)}
			return
		}
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		srv <- result{sum: sum}
	}()
	c := testnet.Dial(tb, topo.Client, "tcp", server)
	_ = c.SetDeadline(time.Now().Add(timeout))
	local := c.LocalAddr().(*net.TCPAddr).AddrPort()
	key, _ := xdp.MakeFlowKey(local.Addr().Unmap(), server.Addr(), local.Port(), server.Port(), testnet.ProtoTCP)
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(up)
		werr <- err
	}()
	h := sha256.New()
	if _, err := io.CopyN(h, c, int64(size)); err != nil {
		tb.Fatalf("client read: %v", err)
	}
	if err := <-werr; err != nil {
		tb.Fatalf("client write: %v", err)
	}
	r := <-srv
	if r.err != nil {
		tb.Fatal(r.err)
	}
	if r.sum != sha256.Sum256(up) {
		tb.Fatal("client→server data corrupted (sha256 differs)")
	}
	if !bytes.Equal(h.Sum(nil), sha256Of(down)) {
		tb.Fatal("server→client data corrupted (sha256 differs)")
	}
	return key
}

func sha256Of(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// udpEcho sends n datagrams of different sizes from client to server,
// which echoes them, and checks every reply byte for byte.
func udpEcho(tb testing.TB, topo *testnet.Topology, server netip.AddrPort, n int) xdp.FlowKey {
	tb.Helper()
	pc := testnet.ListenPacket(tb, topo.Server, "udp", server)
	go func() {
		buf := make([]byte, 65536)
		for {
			m, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:m], from)
		}
	}()
	c := testnet.Dial(tb, topo.Client, "udp", server)
	local := c.LocalAddr().(*net.UDPAddr).AddrPort()
	key, _ := xdp.MakeFlowKey(local.Addr().Unmap(), server.Addr(), local.Port(), server.Port(), testnet.ProtoUDP)
	buf := make([]byte, 65536)
	for i := 0; i < n; i++ {
		msg := deterministic(1+i*97%1400, uint64(i))
		var got []byte
		for try := 0; try < 5 && got == nil; try++ {
			if _, err := c.Write(msg); err != nil {
				tb.Fatalf("udp write: %v", err)
			}
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			m, err := c.Read(buf)
			if err == nil {
				got = buf[:m]
			}
		}
		if !bytes.Equal(got, msg) {
			tb.Fatalf("datagram %d: echo of %d bytes differs (got %d)", i, len(msg), len(got))
		}
	}
	return key
}

// ping sends ICMP echo requests from the client to dst through raw ICMP
// sockets and checks the replies' payloads.
func ping(tb testing.TB, topo *testnet.Topology, dst netip.Addr, n int) xdp.FlowKey {
	tb.Helper()
	network, proto := "ip4:icmp", 1
	var typ icmp.Type = ipv4.ICMPTypeEcho
	var reply icmp.Type = ipv4.ICMPTypeEchoReply
	src := testnet.ClientIP
	if dst.Is6() {
		network, proto, typ, reply, src = "ip6:ipv6-icmp", 58, ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply, testnet.ClientIP6
	}
	var conn *icmp.PacketConn
	topo.Client.MustDo(tb, func() error {
		var err error
		conn, err = icmp.ListenPacket(network, src.String())
		return err
	})
	defer conn.Close()
	id := 0x4000 + int(pinSeq.Add(1))
	for seq := 1; seq <= n; seq++ {
		payload := deterministic(56, uint64(seq))
		msg := icmp.Message{Type: typ, Body: &icmp.Echo{ID: id, Seq: seq, Data: payload}}
		wb, err := msg.Marshal(nil)
		if err != nil {
			tb.Fatal(err)
		}
		ok := false
		for try := 0; try < 3 && !ok; try++ {
			if _, err := conn.WriteTo(wb, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
				tb.Fatalf("ping write: %v", err)
			}
			deadline := time.Now().Add(time.Second)
			for !ok && time.Now().Before(deadline) {
				_ = conn.SetReadDeadline(deadline)
				rb := make([]byte, 1500)
				m, _, err := conn.ReadFrom(rb)
				if err != nil {
					break
				}
				rm, err := icmp.ParseMessage(proto, rb[:m])
				if err != nil || rm.Type != reply {
					continue
				}
				if e, isEcho := rm.Body.(*icmp.Echo); isEcho && e.ID == id && e.Seq == seq && bytes.Equal(e.Data, payload) {
					ok = true
				}
			}
		}
		if !ok {
			tb.Fatalf("no echo reply for seq %d to %s", seq, dst)
		}
	}
	// Raw ICMP sockets may rewrite the id; the reply matched, so the key
	// uses the id we sent.
	k, _ := xdp.MakeFlowKey(src, dst, uint16(id), uint16(id), uint8(proto))
	return k
}

// xdpStats reads the program's counters.
func xdpStats(tb testing.TB, p *dataplane.Pair) xdp.Stats {
	tb.Helper()
	s, err := p.Program().Stats()
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// ruleInspector counts like passInspector and lets a test decide.
type ruleInspector struct {
	*passInspector
	decide func(f *dataplane.Frame, pkt *dataplane.Packet, payload []byte) dataplane.Verdict
}

func newRuleInspector(decide func(f *dataplane.Frame, pkt *dataplane.Packet, payload []byte) dataplane.Verdict) *ruleInspector {
	return &ruleInspector{passInspector: newPassInspector(), decide: decide}
}

func (r *ruleInspector) Inspect(w int, f *dataplane.Frame) dataplane.Verdict {
	r.passInspector.Inspect(w, f)
	var pkt dataplane.Packet
	if dataplane.ParsePacket(f.Data, &pkt) != dataplane.KindIP || !pkt.Keyed {
		return dataplane.Verdict{Action: dataplane.Forward}
	}
	payload := f.Data[pkt.L4Off:min(pkt.L4Off+pkt.L4Len, len(f.Data))]
	switch pkt.Proto {
	case testnet.ProtoTCP:
		payload = payload[pkt.TCPHdr:]
	case testnet.ProtoUDP:
		payload = payload[8:]
	}
	return r.decide(f, &pkt, payload)
}
