// Package afxdptest owns the minimal XDP programs that the AF_XDP and
// dataplane tests and benchmarks load, built with cilium/ebpf/asm so that
// those tests depend neither on package xdp nor on a compiler: a program
// that redirects every frame to an XSKMAP, and a sink that counts and drops.
package afxdptest

import (
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/deepwall/deepwall/dataplane/afxdp"
	"github.com/deepwall/deepwall/internal/testnet"
)

// MaxQueues is the XSKMAP stride per slot, as in package xdp: the socket
// for (slot, queue) lives at index slot*MaxQueues + queue.
const MaxQueues = 64

// Offsets in struct xdp_md.
const (
	mdData         = 0
	mdDataEnd      = 4
	mdRxQueueIndex = 16
)

// XSKMap creates an XSKMAP with room for two slots of MaxQueues sockets.
func XSKMap(tb testing.TB) *ebpf.Map {
	tb.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "test_xsks", Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: 2 * MaxQueues})
	if err != nil {
		tb.Fatalf("create xskmap: %v", err)
	}
	tb.Cleanup(func() { m.Close() })
	return m
}

// RedirectProgram loads an XDP program that redirects every frame to
// xsks[slot*MaxQueues + rx_queue_index] and drops it when no socket is
// there.
func RedirectProgram(tb testing.TB, xsks *ebpf.Map, slot uint32) *ebpf.Program {
	tb.Helper()
	insns := asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, mdRxQueueIndex, asm.Word),
		asm.Add.Imm(asm.R2, int32(slot*MaxQueues)),
		asm.LoadMapPtr(asm.R1, xsks.FD()),
		asm.Mov.Imm(asm.R3, 1), // XDP_DROP when the slot is empty
		asm.FnRedirectMap.Call(),
		asm.Return(),
	}
	return load(tb, "test_redirect", insns)
}

// Sink is a counting XDP_DROP program and its per-CPU counters.
type Sink struct {
	Program  *ebpf.Program
	counters *ebpf.Map
}

// NewSink loads a program that counts frames and bytes and drops them.
func NewSink(tb testing.TB) *Sink {
	tb.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "test_sink", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 16, MaxEntries: 1})
	if err != nil {
		tb.Fatalf("create sink counters: %v", err)
	}
	tb.Cleanup(func() { m.Close() })
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.StoreImm(asm.R10, -4, 0, asm.Word),
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, -4),
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		// Per-CPU value: plain read-modify-write is safe.
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
		asm.LoadMem(asm.R2, asm.R6, mdDataEnd, asm.Word),
		asm.LoadMem(asm.R3, asm.R6, mdData, asm.Word),
		asm.Sub.Reg(asm.R2, asm.R3),
		asm.LoadMem(asm.R1, asm.R0, 8, asm.DWord),
		asm.Add.Reg(asm.R1, asm.R2),
		asm.StoreMem(asm.R0, 8, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, 1).WithSymbol("out"), // XDP_DROP
		asm.Return(),
	}
	return &Sink{Program: load(tb, "test_sink", insns), counters: m}
}

// Count returns the frames and bytes the sink has dropped.
func (s *Sink) Count(tb testing.TB) (frames, bytes uint64) {
	tb.Helper()
	var vals [][2]uint64
	if err := s.counters.Lookup(uint32(0), &vals); err != nil {
		tb.Fatalf("read sink counters: %v", err)
	}
	for _, v := range vals {
		frames += v[0]
		bytes += v[1]
	}
	return frames, bytes
}

func load(tb testing.TB, name string, insns asm.Instructions) *ebpf.Program {
	tb.Helper()
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: name, Type: ebpf.XDP, License: "GPL", Instructions: insns})
	if err != nil {
		tb.Fatalf("load %s: %v", name, err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}

// Attach attaches prog in native mode to ifindex inside ns; the link is
// removed in cleanup (and with the namespace), or earlier by closing it.
func Attach(tb testing.TB, ns *testnet.NS, ifindex int, prog *ebpf.Program) link.Link {
	tb.Helper()
	var l link.Link
	err := ns.Do(func() error {
		var err error
		l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPDriverMode})
		return err
	})
	if err != nil {
		tb.Fatalf("attach xdp to ifindex %d in %s: %v", ifindex, ns.Name, err)
	}
	tb.Cleanup(func() { l.Close() })
	return l
}

// Register puts a socket fd in the XSKMAP at (slot, queue).
func Register(tb testing.TB, xsks *ebpf.Map, slot uint32, queue int, fd int) {
	tb.Helper()
	if err := xsks.Put(uint32(slot*MaxQueues+uint32(queue)), uint32(fd)); err != nil {
		tb.Fatalf("register socket %d at slot %d queue %d: %v", fd, slot, queue, err)
	}
}

// LinkIndex resolves an interface name inside ns.
func LinkIndex(tb testing.TB, ns *testnet.NS, name string) int {
	tb.Helper()
	l, err := ns.Netlink(tb).LinkByName(name)
	if err != nil {
		tb.Fatalf("%s in %s: %v", name, ns.Name, err)
	}
	return l.Attrs().Index
}

// Generator sends prepared frames as fast as one TX-only AF_XDP socket can
// (the benchmarks' packet-rate source).
type Generator struct {
	u      *afxdp.Umem
	s      *afxdp.Socket
	descs  []afxdp.Desc
	lens   []uint32 // frame length by UMEM frame index
	fshift uint
}

// NewGenerator binds a TX-only socket to queue 0 of ifname inside ns and
// writes frames round-robin into every UMEM frame once: sending is then
// only descriptor work.
func NewGenerator(tb testing.TB, ns *testnet.NS, ifname string, frames [][]byte) *Generator {
	tb.Helper()
	const nframes, fsize = 4096, 2048
	u, err := afxdp.NewUmem(afxdp.UmemConfig{FrameSize: fsize, NumFrames: nframes})
	if err != nil {
		tb.Fatal(err)
	}
	g := &Generator{u: u, descs: make([]afxdp.Desc, 64), lens: make([]uint32, nframes), fshift: 11}
	for i := 0; i < nframes; i++ {
		f := frames[i%len(frames)]
		copy(u.Chunk(uint64(i)*fsize), f)
		g.lens[i] = uint32(len(f))
	}
	idx := LinkIndex(tb, ns, ifname)
	ns.MustDo(tb, func() error {
		g.s, err = afxdp.NewSocket(u, idx, 0, afxdp.SocketConfig{NoRx: true, FillSize: 2, TxSize: 2048, CompSize: 2048})
		return err
	})
	tb.Cleanup(func() {
		g.s.Close()
		u.Close()
	})
	return g
}

// Run sends for d and returns how many frames the kernel took.
func (g *Generator) Run(d time.Duration) uint64 {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	a := g.u.Allocator()
	var sent uint64
	deadline := time.Now().Add(d)
	for i := 0; ; i++ {
		if i%16 == 0 && time.Now().After(deadline) {
			break
		}
		g.s.Complete()
		n := 0
		for ; n < len(g.descs); n++ {
			addr, ok := a.Alloc()
			if !ok {
				break
			}
			g.descs[n] = afxdp.Desc{Addr: addr, Len: g.lens[addr>>g.fshift]}
		}
		q := g.s.Transmit(g.descs[:n])
		for _, d := range g.descs[q:n] {
			a.Free(d.Addr)
		}
		sent += uint64(q)
		_, _ = g.s.Kick()
	}
	// Let the last frames go before the caller reads counters.
	for end := time.Now().Add(time.Second); g.s.InTx() > 0 && time.Now().Before(end); {
		_, _ = g.s.Kick()
		g.s.Complete()
	}
	return sent - uint64(g.s.InTx())
}
