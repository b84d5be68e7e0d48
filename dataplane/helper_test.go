package dataplane_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/internal/testnet"
	"github.com/deepwall/deepwall/internal/testutil"
	"github.com/deepwall/deepwall/xdp"
)

// Environment of the helper process.
const (
	helperEnv        = "DEEPWALL_DATAPLANE_HELPER"
	helperPinDir     = "DEEPWALL_HELPER_PIN_DIR"
	helperStateDir   = "DEEPWALL_HELPER_STATE_DIR"
	helperFailClosed = "DEEPWALL_HELPER_FAIL_CLOSED"
	helperAllowPort  = "DEEPWALL_HELPER_ALLOW_PORT"
	helperPath       = "DEEPWALL_HELPER_PATH"
	helperReady      = "DEEPWALL-HELPER-READY"
)

// TestHelperProcess is not a test: the SIGKILL tests run the test binary
// again with this test selected and helperEnv set, inside the fw namespace,
// to get a pair in a process they can kill mid-transfer.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("helper process of the SIGKILL tests, run by them")
	}
	allow, _ := strconv.Atoi(os.Getenv(helperAllowPort))
	insp := newRuleInspector(func(f *dataplane.Frame, pkt *dataplane.Packet, _ []byte) dataplane.Verdict {
		final := allow != 0 && (int(pkt.SrcPort) == allow || int(pkt.DstPort) == allow)
		return dataplane.Verdict{Action: dataplane.Forward, Final: final}
	})
	p, err := dataplane.OpenPair(dataplane.PairConfig{
		Inner: testnet.InnerIf, Outer: testnet.OuterIf,
		PinDir: os.Getenv(helperPinDir), StateDir: os.Getenv(helperStateDir),
		FailClosed: os.Getenv(helperFailClosed) == "1",
		Path:       dataplane.Path(os.Getenv(helperPath)),
		Inspector:  insp,
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	errc := make(chan error, 1)
	go func() { errc <- p.Run(context.Background()) }()
	fmt.Println(helperReady)
	// Runs until the test kills it.
	err = <-errc
	fmt.Fprintln(os.Stderr, "helper: run:", err)
	os.Exit(3)
}

// helperOpts configure a helper's pair.
type helperOpts struct {
	failClosed bool
	allowPort  int // a flow to or from this port is allowed finally
	path       dataplane.Path
}

// startHelper runs a pair in a helper process inside the fw namespace and
// waits until it is forwarding.
func startHelper(tb testing.TB, topo *testnet.Topology, pinDir, stateDir string, o helperOpts) *exec.Cmd {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	fc := "0"
	if o.failClosed {
		fc = "1"
	}
	cmd.Env = append(os.Environ(), helperEnv+"=1", helperPinDir+"="+pinDir, helperStateDir+"="+stateDir,
		helperFailClosed+"="+fc, helperAllowPort+"="+strconv.Itoa(o.allowPort), helperPath+"="+string(o.path))
	cmd.Stderr = testWriter{tb}
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	topo.FW.Start(tb, cmd)
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) == helperReady {
				ready <- true
				_, _ = io.Copy(io.Discard, out)
				return
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			tb.Fatal("helper exited before it was ready")
		}
	case <-time.After(30 * time.Second):
		tb.Fatal("helper not ready after 30s")
	}
	return cmd
}

// kill SIGKILLs a helper and reaps it.
func kill(tb testing.TB, cmd *exec.Cmd) {
	tb.Helper()
	if err := cmd.Process.Kill(); err != nil {
		tb.Fatal(err)
	}
	_ = cmd.Wait()
}

// stream is a paced TCP transfer from client to server whose bytes follow
// a pattern the server checks as it counts them.
type stream struct {
	key      xdp.FlowKey
	received atomic.Int64
	corrupt  atomic.Int64 // offset+1 of the first wrong byte
}

func patternByte(off int64) byte { return byte(off*131 + off>>9) }

// startStream writes chunk bytes every interval until the test ends.
func startStream(tb testing.TB, topo *testnet.Topology, server netip.AddrPort, chunk int, interval time.Duration) *stream {
	tb.Helper()
	s := &stream{}
	ln := testnet.Listen(tb, topo.Server, "tcp", server)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64<<10)
		var off int64
		for {
			n, err := c.Read(buf)
			for _, b := range buf[:n] {
				if b != patternByte(off) && s.corrupt.Load() == 0 {
					s.corrupt.Store(off + 1)
				}
				off++
			}
			s.received.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	c := testnet.Dial(tb, topo.Client, "tcp", server)
	local := c.LocalAddr().(*net.TCPAddr).AddrPort()
	s.key, _ = xdp.MakeFlowKey(local.Addr().Unmap(), server.Addr(), local.Port(), server.Port(), testnet.ProtoTCP)
	stop := make(chan struct{})
	tb.Cleanup(func() { close(stop); c.Close() })
	go func() {
		buf := make([]byte, chunk)
		var off int64
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			for i := range buf {
				buf[i] = patternByte(off + int64(i))
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
			off += int64(chunk)
		}
	}()
	return s
}

// loadPinned opens the pair's program from its pins in the test process.
func loadPinned(tb testing.TB, dir string) *xdp.Program {
	tb.Helper()
	prog, err := xdp.Load(xdp.Options{PinDir: dir})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { prog.Close() })
	return prog
}

// TestPrivilegedFailPolicy kills the agent mid-transfer: with fail-open the
// kernel forwards the flow to the peer port and the transfer goes on; with
// fail-closed it stops.
func TestPrivilegedFailPolicy(t *testing.T) {
	testnet.RequirePrivileged(t)
	for _, tc := range []struct {
		failClosed bool
		path       dataplane.Path
	}{{false, dataplane.PathTC}, {true, dataplane.PathTC}, {false, dataplane.PathXDP}, {true, dataplane.PathXDP}} {
		failClosed := tc.failClosed
		name := "fail-open"
		if failClosed {
			name = "fail-closed"
		}
		t.Run(string(tc.path)+"/"+name, func(t *testing.T) {
			topo := testnet.NewTopology(t, testnet.TopologyOptions{})
			dir := pinDir(t)
			helper := startHelper(t, topo, dir, t.TempDir(), helperOpts{failClosed: failClosed, path: tc.path})
			s := startStream(t, topo, netip.AddrPortFrom(testnet.ServerIP, 9100), 8<<10, 2*time.Millisecond)
			if !testutil.WaitFor(10*time.Second, func() bool { return s.received.Load() > 256<<10 }) {
				t.Fatalf("transfer did not start: %d bytes", s.received.Load())
			}
			kill(t, helper)
			atKill := s.received.Load()
			prog := loadPinned(t, dir)
			if !failClosed {
				if !testutil.WaitFor(15*time.Second, func() bool { return s.received.Load() > atKill+1<<20 }) {
					t.Fatalf("fail-open: transfer stopped at %d bytes (killed at %d)", s.received.Load(), atKill)
				}
				st, err := prog.Stats()
				if err != nil {
					t.Fatal(err)
				}
				if st.FailOpen == 0 {
					t.Fatalf("fail-open: no packet took the fail-open path: %+v", st)
				}
				t.Logf("fail-open: %d bytes before the kill, %d after; %+v", atKill, s.received.Load()-atKill, st)
			} else {
				time.Sleep(time.Second) // what was already past the fw
				settled := s.received.Load()
				time.Sleep(2 * time.Second)
				if now := s.received.Load(); now != settled {
					t.Fatalf("fail-closed: transfer went on: %d → %d bytes", settled, now)
				}
				st, err := prog.Stats()
				if err != nil {
					t.Fatal(err)
				}
				if st.FailClosed == 0 {
					t.Fatalf("fail-closed: nothing dropped by the fail-closed policy: %+v", st)
				}
				t.Logf("fail-closed: %d bytes before the kill, stopped at %d; %+v", atKill, settled, st)
			}
			if c := s.corrupt.Load(); c != 0 {
				t.Fatalf("stream corrupted at byte %d", c-1)
			}
		})
	}
}

// TestPrivilegedRestart: an agent marks a flow ALLOW and is killed; the
// flow keeps flowing in the kernel with no agent (even fail-closed), a
// second agent adopts the pins, the flow still flows, and new traffic is
// inspected by the new agent. The second agent may run the other data
// path: it takes the first one's programs off the ports.
func TestPrivilegedRestart(t *testing.T) {
	for _, paths := range [][2]dataplane.Path{
		{dataplane.PathTC, dataplane.PathTC},
		{dataplane.PathXDP, dataplane.PathXDP},
		{dataplane.PathXDP, dataplane.PathTC},
		{dataplane.PathTC, dataplane.PathXDP},
	} {
		t.Run(string(paths[0])+"-"+string(paths[1]), func(t *testing.T) { testRestart(t, paths) })
	}
}

func testRestart(t *testing.T, paths [2]dataplane.Path) {
	topo := testnet.NewTopology(t, testnet.TopologyOptions{})
	dir, state := pinDir(t), t.TempDir()
	const allowPort = 9200
	a := startHelper(t, topo, dir, state, helperOpts{failClosed: true, allowPort: allowPort, path: paths[0]})
	s := startStream(t, topo, netip.AddrPortFrom(testnet.ServerIP, allowPort), 8<<10, 2*time.Millisecond)
	if !testutil.WaitFor(10*time.Second, func() bool { return s.received.Load() > 128<<10 }) {
		t.Fatalf("transfer did not start: %d bytes", s.received.Load())
	}
	prog := loadPinned(t, dir)
	v, ok, err := prog.LookupFlow(s.key)
	if err != nil || !ok || v.Verdict != xdp.VerdictAllow {
		t.Fatalf("flow %v: entry %+v ok=%v err=%v, want allow", s.key, v, ok, err)
	}

	kill(t, a)
	atKill := s.received.Load()
	if !testutil.WaitFor(10*time.Second, func() bool { return s.received.Load() > atKill+512<<10 }) {
		t.Fatalf("no agent: allowed flow stopped at %d bytes (killed at %d)", s.received.Load(), atKill)
	}
	// Fail-closed with no agent: a new flow does not pass.
	if err := topo.Client.Do(func() error {
		c, err := net.DialTimeout("tcp", netip.AddrPortFrom(testnet.ServerIP, allowPort).String(), 500*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err
	}); err == nil {
		t.Fatal("a new flow passed with no agent and fail-closed")
	}

	startHelper(t, topo, dir, state, helperOpts{failClosed: true, allowPort: allowPort, path: paths[1]})
	atStart := s.received.Load()
	if !testutil.WaitFor(10*time.Second, func() bool { return s.received.Load() > atStart+512<<10 }) {
		t.Fatalf("after restart: allowed flow stopped at %d bytes", s.received.Load())
	}
	// The new agent serves new flows.
	ping(t, topo, testnet.ServerIP, 3)
	v2, ok, err := prog.LookupFlow(s.key)
	if err != nil || !ok || v2.Verdict != xdp.VerdictAllow {
		t.Fatalf("flow entry after restart %+v ok=%v err=%v", v2, ok, err)
	}
	if v2.Packets[0]+v2.Packets[1] <= v.Packets[0]+v.Packets[1] {
		t.Fatalf("flow counters did not grow across the restart: %v → %v", v.Packets, v2.Packets)
	}
	if c := s.corrupt.Load(); c != 0 {
		t.Fatalf("stream corrupted at byte %d", c-1)
	}
	st, err := prog.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("received %d bytes; flow packets %v → %v; xdp %+v", s.received.Load(), v.Packets, v2.Packets, st)
}
