package afxdp_test

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/deepwall/deepwall/dataplane/afxdp"
	"github.com/deepwall/deepwall/dataplane/afxdp/afxdptest"
	"github.com/deepwall/deepwall/internal/testnet"
	"github.com/deepwall/deepwall/internal/testutil"
)

// packetSocket opens an AF_PACKET socket on ifname inside ns for sending
// crafted frames.
func packetSocket(tb testing.TB, ns *testnet.NS, ifname string) (fd int, sa *unix.SockaddrLinklayer) {
	tb.Helper()
	idx := afxdptest.LinkIndex(tb, ns, ifname)
	ns.MustDo(tb, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		return err
	})
	tb.Cleanup(func() { unix.Close(fd) })
	return fd, &unix.SockaddrLinklayer{Ifindex: idx, Halen: 6}
}

// newSocket creates an AF_XDP socket inside ns (the socket's namespace is
// the one of the thread that creates it) and closes it in cleanup.
func newSocket(tb testing.TB, ns *testnet.NS, u *afxdp.Umem, ifindex, queue int, cfg afxdp.SocketConfig) *afxdp.Socket {
	tb.Helper()
	var s *afxdp.Socket
	ns.MustDo(tb, func() error {
		var err error
		s, err = afxdp.NewSocket(u, ifindex, queue, cfg)
		return err
	})
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("close socket: %v", err)
		}
	})
	return s
}

// forwarder moves frames between two sockets sharing a UMEM, the way the
// dataplane does: descriptors received on one go to the other's TX ring.
type forwarder struct {
	s     [2]*afxdp.Socket
	descs []afxdp.Desc
	fds   []unix.PollFd
}

func (f *forwarder) step(tb testing.TB) int {
	tb.Helper()
	moved := 0
	for i, s := range f.s {
		s.Complete()
		s.Refill(512)
		n := s.Receive(f.descs)
		if n == 0 {
			continue
		}
		peer := f.s[1-i]
		sent := peer.Transmit(f.descs[:n])
		for _, d := range f.descs[sent:n] {
			s.Umem().Allocator().Free(d.Addr)
		}
		moved += sent
		for more := true; more; {
			var err error
			if more, err = peer.Kick(); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if moved == 0 {
		if _, err := afxdp.Poll(f.fds, 10); err != nil {
			tb.Fatal(err)
		}
	}
	return moved
}

func TestPrivilegedSocketForwardSharedUmem(t *testing.T) {
	topo := testnet.NewTopology(t, testnet.TopologyOptions{})
	xsks := afxdptest.XSKMap(t)
	afxdptest.Attach(t, topo.FW, topo.InnerIndex, afxdptest.RedirectProgram(t, xsks, 0))
	afxdptest.Attach(t, topo.FW, topo.OuterIndex, afxdptest.RedirectProgram(t, xsks, 1))

	u, err := afxdp.NewUmem(afxdp.UmemConfig{NumFrames: 2048})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := u.Close(); err != nil {
			t.Errorf("close umem: %v", err)
		}
	})
	// ZeroCopy asked: veth has no zero-copy path, so this exercises the
	// fallback to copy mode.
	in := newSocket(t, topo.FW, u, topo.InnerIndex, 0, afxdp.SocketConfig{ZeroCopy: true})
	out := newSocket(t, topo.FW, u, topo.OuterIndex, 0, afxdp.SocketConfig{})
	if in.ZeroCopy() || out.ZeroCopy() {
		t.Logf("zero-copy bound on veth (unexpected but fine)")
	}
	afxdptest.Register(t, xsks, 0, 0, in.FD())
	afxdptest.Register(t, xsks, 1, 0, out.FD())
	f := &forwarder{s: [2]*afxdp.Socket{in, out}, descs: make([]afxdp.Desc, 64),
		fds: []unix.PollFd{{Fd: int32(in.FD()), Events: unix.POLLIN}, {Fd: int32(out.FD()), Events: unix.POLLIN}}}
	in.Refill(512)
	out.Refill(512)

	const frames = 600
	for _, tc := range []struct {
		name           string
		from, to       *testnet.NS
		srcMAC, dstMAC net.HardwareAddr
		src, dst       netip.AddrPort
		fromIf         string
	}{
		{"v4 client→server", topo.Client, topo.Server, topo.ClientMAC, topo.ServerMAC,
			netip.AddrPortFrom(testnet.ClientIP, 5000), netip.AddrPortFrom(testnet.ServerIP, 9000), testnet.EndpointIf},
		{"v6 server→client", topo.Server, topo.Client, topo.ServerMAC, topo.ClientMAC,
			netip.AddrPortFrom(testnet.ServerIP6, 5001), netip.AddrPortFrom(testnet.ClientIP6, 9001), testnet.EndpointIf},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc := testnet.ListenPacket(t, tc.to, "udp", tc.dst)
			fd, sa := packetSocket(t, tc.from, tc.fromIf)
			want := make([][]byte, frames)
			for i := range want {
				want[i] = fmt.Appendf(nil, "frame %04d %s", i, bytes.Repeat([]byte{byte(i)}, i%900))
			}
			got := make(chan []byte, frames)
			go func() {
				buf := make([]byte, 2048)
				for {
					_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
					n, _, err := pc.ReadFrom(buf)
					if err != nil {
						close(got)
						return
					}
					got <- bytes.Clone(buf[:n])
				}
			}()
			var delivered atomic.Int64
			go func() {
				for i, p := range want {
					// Stay within the fill ring however slowly the
					// forwarder runs (the race detector slows it a lot).
					for int64(i)-delivered.Load() > 64 {
						time.Sleep(100 * time.Microsecond)
					}
					b, err := testnet.BuildFrame(testnet.FrameSpec{SrcMAC: tc.srcMAC, DstMAC: tc.dstMAC, Src: tc.src, Dst: tc.dst, Proto: testnet.ProtoUDP, Payload: p})
					if err == nil {
						err = unix.Sendto(fd, b, 0, sa)
					}
					if err != nil {
						t.Errorf("send frame %d: %v", i, err)
						return
					}
				}
			}()
			deadline := time.Now().Add(15 * time.Second)
			for i := 0; i < frames; {
				if time.Now().After(deadline) {
					t.Fatalf("received %d of %d frames; %v", i, frames, u.Allocator())
				}
				f.step(t)
				select {
				case p, ok := <-got:
					if !ok {
						t.Fatalf("receiver stopped after %d frames", i)
					}
					if !bytes.Equal(p, want[i]) {
						t.Fatalf("frame %d: got %q, want %q", i, p[:min(len(p), 16)], want[i][:16])
					}
					i++
					delivered.Store(int64(i))
				default:
				}
			}
		})
	}
	// Drain completions, then check that every frame is accounted for.
	for deadline := time.Now().Add(5 * time.Second); in.InTx()+out.InTx() > 0; {
		if time.Now().After(deadline) {
			t.Fatalf("tx never completed: %v", u.Allocator())
		}
		f.step(t)
	}
	a := u.Allocator()
	if err := a.Check(); err != nil {
		t.Fatal(err)
	}
	if a.Count(afxdp.PlaceUser) != 0 || a.Count(afxdp.PlaceTx) != 0 || a.Count(afxdp.PlaceFill) != in.InFill()+out.InFill() {
		t.Fatalf("frames unaccounted: %v, sockets hold %d+%d for fill", a, in.InFill(), out.InFill())
	}
	for _, s := range []*afxdp.Socket{in, out} {
		ks, err := s.KernelStats()
		if err != nil {
			t.Fatal(err)
		}
		if ks.Rx_invalid_descs != 0 || ks.Tx_invalid_descs != 0 {
			t.Errorf("ifindex %d: kernel saw invalid descriptors: %+v", s.Ifindex(), ks)
		}
		t.Logf("ifindex %d: %+v", s.Ifindex(), s.Stats())
		if st := s.Stats(); st.BadDescs != 0 {
			t.Errorf("ifindex %d: %d bad descriptors", s.Ifindex(), st.BadDescs)
		}
	}
}

// TestPrivilegedSocketTxOnly sends a burst from a TX-only socket (the
// benchmark's generator) into a counting sink.
func TestPrivilegedSocketTxOnly(t *testing.T) {
	topo := testnet.NewTopology(t, testnet.TopologyOptions{})
	sink := afxdptest.NewSink(t)
	afxdptest.Attach(t, topo.FW, topo.InnerIndex, sink.Program)
	u, err := afxdp.NewUmem(afxdp.UmemConfig{FrameSize: 2048, NumFrames: 256})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	eth0 := afxdptest.LinkIndex(t, topo.Client, testnet.EndpointIf)
	s := newSocket(t, topo.Client, u, eth0, 0, afxdp.SocketConfig{NoRx: true, TxSize: 256, CompSize: 256, FillSize: 2})
	frame := testnet.Frame(t, testnet.FrameSpec{SrcMAC: topo.ClientMAC, DstMAC: topo.ServerMAC,
		Src: netip.AddrPortFrom(testnet.ClientIP, 1), Dst: netip.AddrPortFrom(testnet.ServerIP, 9), Proto: testnet.ProtoUDP})
	a := u.Allocator()
	const total = 5000
	descs := make([]afxdp.Desc, 64)
	sent := 0
	for deadline := time.Now().Add(10 * time.Second); sent < total || s.InTx() > 0; {
		if time.Now().After(deadline) {
			t.Fatalf("sent %d, %d in flight", sent, s.InTx())
		}
		s.Complete()
		n := 0
		for ; n < len(descs) && sent+n < total; n++ {
			addr, ok := a.Alloc()
			if !ok {
				break
			}
			copy(u.Chunk(addr), frame)
			descs[n] = afxdp.Desc{Addr: addr, Len: uint32(len(frame))}
		}
		q := s.Transmit(descs[:n])
		for _, d := range descs[q:n] {
			a.Free(d.Addr)
		}
		sent += q
		if _, err := s.Kick(); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Check(); err != nil {
		t.Fatal(err)
	}
	if a.FreeCount() != a.NumFrames() {
		t.Fatalf("frames not back: %v", a)
	}
	// The endpoint also sends a few IPv6 neighbour/router messages of its
	// own when its link comes up.
	var got uint64
	if !testutil.WaitFor(5*time.Second, func() bool {
		got, _ = sink.Count(t)
		return got >= total && got < total+50
	}) {
		t.Fatalf("sink counted %d of %d frames", got, total)
	}
}
