package refxdp

import (
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/deepwall/deepwall/internal/testnet"
)

const (
	xdpDrop     = 1
	xdpRedirect = 4
	loIfindex   = 1 // BPF_PROG_TEST_RUN's ingress without a context
)

func load(tb testing.TB) *Forwarder {
	tb.Helper()
	testnet.RequirePrivileged(tb)
	f, err := Load()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = f.Close() })
	return f
}

func tcpFrame(tb testing.TB) []byte {
	return testnet.Frame(tb, testnet.FrameSpec{
		Src: netip.MustParseAddrPort("198.18.0.1:40000"), Dst: netip.MustParseAddrPort("198.18.0.2:80"), Proto: testnet.ProtoTCP,
	})
}

func TestPrivilegedRedirect(t *testing.T) {
	f := load(t)
	run := func() uint32 {
		ret, err := f.Program().Run(&ebpf.RunOptions{Data: tcpFrame(t)})
		if err != nil {
			t.Fatal(err)
		}
		return ret
	}
	if got := run(); got != xdpDrop {
		t.Errorf("no devmap entry: %d, want XDP_DROP", got)
	}
	if err := f.objs.RefPeers.Update(uint32(loIfindex), uint32(loIfindex), ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}
	if got := run(); got != xdpRedirect {
		t.Errorf("with an entry: %d, want XDP_REDIRECT", got)
	}
}

// TestPrivilegedAttach attaches both ways on the topology's fw ports and
// checks that Close detaches them.
func TestPrivilegedAttach(t *testing.T) {
	topo := testnet.NewTopology(t, testnet.TopologyOptions{})
	f := load(t)
	topo.FW.MustDo(t, func() error {
		if err := f.Attach(topo.InnerIndex, topo.OuterIndex); err != nil {
			return err
		}
		return f.Attach(topo.OuterIndex, topo.InnerIndex)
	})
	nl := topo.FW.Netlink(t)
	attached := func(ifindex int) bool {
		l, err := nl.LinkByIndex(ifindex)
		if err != nil {
			t.Fatal(err)
		}
		return l.Attrs().Xdp != nil && l.Attrs().Xdp.Attached
	}
	if !attached(topo.InnerIndex) || !attached(topo.OuterIndex) {
		t.Fatal("not attached")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if attached(topo.InnerIndex) || attached(topo.OuterIndex) {
		t.Error("still attached after Close")
	}
}

// BenchmarkProgRun is the reference figure for xdp.BenchmarkProgRun: the
// same 64-byte frame, redirected without any work.
func BenchmarkProgRun(b *testing.B) {
	f := load(b)
	if err := f.objs.RefPeers.Update(uint32(loIfindex), uint32(loIfindex), ebpf.UpdateAny); err != nil {
		b.Fatal(err)
	}
	frame := tcpFrame(b)
	b.Run("redirect", func(b *testing.B) {
		ret, per, err := f.Program().Benchmark(frame, max(b.N, 1), nil)
		if err != nil || ret != xdpRedirect {
			b.Fatalf("ret %d err %v", ret, err)
		}
		b.ReportMetric(float64(per.Nanoseconds()), "ns/packet")
	})
}
