package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/deepwall/deepwall/dataplane/afxdp"
	"github.com/deepwall/deepwall/internal/nsexec"
	"github.com/deepwall/deepwall/xdp"
)

// Defaults of PairConfig.
const (
	// DefaultBPFFS is where bpffs is mounted when it is not already.
	DefaultBPFFS = "/sys/fs/bpf"
	// DefaultStateDir holds what deepwall changed on port peers, so that
	// a restarted agent can still restore it.
	DefaultStateDir = "/run/deepwall"
	// DefaultBatchSize is how many frames one ring operation and one
	// worker hand-off move at most.
	DefaultBatchSize = 64
	// MaxBatchSize bounds BatchSize.
	MaxBatchSize = 256
	// MaxWorkers bounds Workers.
	MaxWorkers = 256
	// DefaultSpin is how many empty loop turns an I/O loop spins before it
	// sleeps in poll() when busy polling.
	DefaultSpin = 200
)

// Path is how a pair's ports carry traffic.
type Path string

// Data paths.
const (
	// PathTC runs tc (tcx) programs on the ports: decided flows are
	// forwarded by bpf_redirect with their GSO packets whole and their
	// checksum state kept, so the ports' veth peers keep TSO and checksum
	// offload; undecided traffic reaches the AF_XDP sockets through a
	// shadow veth pair per port (xdp.EnsureShadow). The default.
	PathTC Path = "tc"
	// PathXDP runs the XDP program on the ports and binds the sockets to
	// them: one hop less for inspected traffic, but the ports' peers lose
	// TSO, and OpenPair turns their TX checksum offload off.
	PathXDP Path = "xdp"
)

// ParsePath checks a --datapath value; "" is PathTC.
func ParsePath(s string) (Path, error) {
	switch Path(s) {
	case "", PathTC:
		return PathTC, nil
	case PathXDP:
		return PathXDP, nil
	}
	return "", fmt.Errorf("data path %q: want %q or %q", s, PathTC, PathXDP)
}

// PairConfig configures a port pair.
type PairConfig struct {
	// Inner and Outer are interface names in the calling thread's network
	// namespace (call OpenPair from inside it).
	Inner, Outer string
	// PinDir is the bpffs directory of this pair; default
	// DefaultBPFFS/deepwall/<Inner>. Pins there are adopted.
	PinDir string
	// BPFFS is mounted as bpffs when it is not one yet; PinDir lives in it.
	BPFFS string
	// StateDir holds the record of changed peer settings.
	StateDir string
	// FailClosed: while no socket serves a queue (agent down), drop its
	// uninspected traffic instead of forwarding it.
	FailClosed bool
	// Path is the data path; default PathTC. A pair opened on pins of
	// the other path switches them over.
	Path Path
	// Workers is the number of inspection workers; default
	// runtime.NumCPU().
	Workers int
	// BusyPoll spins before sleeping and sets the busy-poll socket options.
	BusyPoll bool
	// Spin is the number of empty I/O loop turns before poll(); default 0,
	// or DefaultSpin with BusyPoll.
	Spin int
	// Inspector judges frames; required.
	Inspector Inspector
	// Logger receives setup, port change and error messages; default
	// slog.Default().
	Logger *slog.Logger

	// UMEM and ring sizing per queue; zero takes the afxdp defaults.
	FrameSize, NumFrames uint32
	RingSize             uint32
	// BatchSize: frames per ring batch and per worker hand-off.
	BatchSize int
	// ZeroCopy asks for zero-copy sockets, falling back to copy mode.
	ZeroCopy bool
	// Aging configures the flow reaper.
	Aging AgingConfig
}

// AgingConfig sets when the reaper deletes flow entries. Zero fields take
// the defaults in parentheses.
type AgingConfig struct {
	TCP     time.Duration // idle TCP flow (10m)
	UDP     time.Duration // idle UDP flow (60s)
	ICMP    time.Duration // idle ICMP flow (30s)
	Other   time.Duration // idle flow of another protocol (60s)
	Closing time.Duration // flow that saw FIN or RST, idle (10s)
	// Interval between passes; default a quarter of the shortest timeout,
	// at most 10s.
	Interval time.Duration
	// Disabled turns the reaper off.
	Disabled bool
	// OnFlowEnd, if set, hears of every entry the reaper removes (the
	// agent turns them into flow events with the fast-path counters).
	OnFlowEnd FlowEndFunc
}

func (a *AgingConfig) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&a.TCP, 10*time.Minute)
	def(&a.UDP, time.Minute)
	def(&a.ICMP, 30*time.Second)
	def(&a.Other, time.Minute)
	def(&a.Closing, 10*time.Second)
	if a.Interval <= 0 {
		a.Interval = min(a.TCP, a.UDP, a.ICMP, a.Other, a.Closing) / 4
		a.Interval = min(max(a.Interval, 100*time.Millisecond), 10*time.Second)
	}
}

func (c *PairConfig) setDefaults() error {
	if c.Inner == "" || c.Outer == "" || c.Inner == c.Outer {
		return fmt.Errorf("pair needs two distinct interfaces, got %q and %q", c.Inner, c.Outer)
	}
	if c.Inspector == nil {
		return errors.New("pair needs an inspector")
	}
	var err error
	if c.Path, err = ParsePath(string(c.Path)); err != nil {
		return err
	}
	if c.BPFFS == "" {
		c.BPFFS = DefaultBPFFS
	}
	if c.PinDir == "" {
		c.PinDir = filepath.Join(c.BPFFS, "deepwall", c.Inner)
	}
	if rel, err := filepath.Rel(c.BPFFS, c.PinDir); err != nil || strings.HasPrefix(rel, "..") {
		return fmt.Errorf("pin dir %s is not inside bpffs %s", c.PinDir, c.BPFFS)
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.Workers <= 0 {
		c.Workers = runtime.NumCPU()
	}
	if c.Workers > MaxWorkers {
		return fmt.Errorf("%d workers, at most %d", c.Workers, MaxWorkers)
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.BatchSize > MaxBatchSize {
		return fmt.Errorf("batch size %d, at most %d", c.BatchSize, MaxBatchSize)
	}
	if c.Spin <= 0 && c.BusyPoll {
		c.Spin = DefaultSpin
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Aging.setDefaults()
	return nil
}

// Pair is a running port pair: the XDP program on both ports, one AF_XDP
// socket per queue per port, and the forwarding and inspection machinery.
type Pair struct {
	cfg   PairConfig
	log   *slog.Logger
	prog  *xdp.Program
	ns    netns.NsHandle // the ports' namespace
	ports [2]portInfo
	state string // port state file
	loops []*ioLoop
	work  []*worker

	stopFD    int // eventfd: readable once the pair stops
	stopping  atomic.Bool
	mu        sync.Mutex
	running   bool
	runDone   chan struct{}
	cancelRun context.CancelFunc
	closed    bool
	reaper    reaperStats
	// epoch moves on with every ForgetVerdicts; workers compare it once
	// per batch with the one their remembered verdicts belong to.
	epoch atomic.Uint64
}

type portInfo struct {
	name    string
	ifindex int
	queues  int
	shadow  *xdp.Shadow // the tc path's shadow pair
}

// sockIfindex is where the port's AF_XDP sockets bind: the port, or on the
// tc path its shadow's far end.
func (p *portInfo) sockIfindex() int {
	if p.shadow != nil {
		return p.shadow.Far
	}
	return p.ifindex
}

// OpenPair prepares both ports and their peers, loads (or adopts) the XDP
// program and its pins, attaches it to both ports, and binds an AF_XDP
// socket to every queue of both ports, registered in the XSKMAP with its
// fill ring already stocked. Call it from the ports' network namespace;
// then call Run.
func OpenPair(cfg PairConfig) (_ *Pair, err error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("open pair: %w", err)
	}
	// Everything below that resolves names or binds sockets does so in the
	// calling thread's namespace: stay on it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	p := &Pair{cfg: cfg, log: cfg.Logger.With("inner", cfg.Inner, "outer", cfg.Outer), stopFD: -1,
		state: stateFile(cfg.StateDir, cfg.PinDir)}
	// What this call creates, so that a failure undoes exactly that and
	// leaves alone what an earlier agent left for a live pair (adopted
	// pins and links, its peer records).
	var undo openUndo
	defer func() {
		if err != nil {
			if uerr := p.abortOpen(&undo); uerr != nil {
				p.log.Error("open pair failed and could not undo everything it did", "error", uerr)
			}
		}
	}()
	if p.ns, err = netns.Get(); err != nil {
		return nil, fmt.Errorf("open pair: current netns: %w", err)
	}
	h, err := netlink.NewHandleAt(p.ns)
	if err != nil {
		return nil, fmt.Errorf("open pair: netlink: %w", err)
	}
	defer h.Close()
	ctl, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open pair: %w", err)
	}
	defer unix.Close(ctl)
	for i, name := range []string{cfg.Inner, cfg.Outer} {
		l, err := h.LinkByName(name)
		if err != nil {
			return nil, fmt.Errorf("open pair: port %s: %w", name, err)
		}
		n, ok := rxQueues(ctl, name)
		if !ok {
			n = l.Attrs().NumRxQueues
		}
		p.ports[i] = portInfo{name: name, ifindex: l.Attrs().Index, queues: max(n, 1)}
	}
	if p.ports[0].queues != p.ports[1].queues {
		return nil, fmt.Errorf("open pair: %s has %d rx queues, %s has %d (make them equal with ethtool -L): %w",
			cfg.Inner, p.ports[0].queues, cfg.Outer, p.ports[1].queues, ErrQueues)
	}
	if p.ports[0].queues > xdp.MaxQueues {
		return nil, fmt.Errorf("open pair: %d queues, at most %d: %w", p.ports[0].queues, xdp.MaxQueues, ErrQueues)
	}

	if undo.peers, err = loadState(p.state); err != nil {
		return nil, fmt.Errorf("open pair: %w", err)
	}
	if cfg.Path == PathXDP {
		undo.peersTouched = true
		if err := p.preparePeers(h); err != nil {
			return nil, fmt.Errorf("open pair: %w", err)
		}
	} else {
		for i := range p.ports {
			port := &p.ports[i]
			s, created, err := xdp.EnsureShadow(port.ifindex, port.queues)
			if err != nil {
				return nil, fmt.Errorf("open pair: %w", err)
			}
			if created {
				undo.shadows = append(undo.shadows, port.ifindex)
			}
			port.shadow = &s
		}
	}
	if err := xdp.EnsureBPFFS(cfg.BPFFS); err != nil {
		return nil, fmt.Errorf("open pair: %w", err)
	}
	undo.freshPins = !hasPins(cfg.PinDir)
	if p.prog, err = xdp.Load(xdp.Options{PinDir: cfg.PinDir}); err != nil {
		return nil, fmt.Errorf("open pair: %w", err)
	}
	if p.stopFD, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, fmt.Errorf("open pair: eventfd: %w", err)
	}
	for w := 0; w < cfg.Workers; w++ {
		p.work = append(p.work, newWorker(p, w))
	}
	for q := 0; q < p.ports[0].queues; q++ {
		l, err := newIOLoop(p, q)
		if err != nil {
			return nil, fmt.Errorf("open pair: queue %d: %w", q, err)
		}
		p.loops = append(p.loops, l)
	}
	for _, l := range p.loops {
		for side, s := range l.socks {
			if err := p.prog.RegisterXSK(uint32(side), l.q, s.FD()); err != nil {
				return nil, fmt.Errorf("open pair: %w", err)
			}
		}
	}
	// Sockets first, program second: on a fresh pair no frame meets the
	// fail policy; on an adopted one the program is already there.
	for i, port := range p.ports {
		_, adopted, err := p.prog.Port(port.ifindex)
		if err != nil {
			return nil, fmt.Errorf("open pair: %w", err)
		}
		pc := xdp.PortConfig{Slot: uint32(i), Peer: p.ports[1-i].ifindex, FailClosed: cfg.FailClosed, Shadow: port.shadow}
		if err := p.prog.Attach(port.ifindex, pc); err != nil {
			return nil, fmt.Errorf("open pair: %w", err)
		}
		if !adopted {
			undo.attached = append(undo.attached, port.ifindex)
		}
	}
	if cfg.Path == PathTC && len(undo.peers.Peers) > 0 {
		// An XDP-path agent changed the peers; the tc path needs none of
		// that, and the XDP program is off the ports now.
		undo.peersTouched = true
		if err := p.restorePeers(&portState{}); err != nil {
			return nil, fmt.Errorf("open pair: %w", err)
		}
	}
	p.log.Info("port pair open", "path", cfg.Path, "queues", len(p.loops), "workers", cfg.Workers, "pin_dir", cfg.PinDir,
		"fail_closed", cfg.FailClosed, "zero_copy", p.loops[0].socks[0].ZeroCopy(), "adopted_pins", !undo.freshPins)
	return p, nil
}

// openUndo records what one OpenPair call created.
type openUndo struct {
	// freshPins: the pin directory held no pins before; everything in it
	// is this call's.
	freshPins bool
	// attached lists the ports this call attached (not adopted).
	attached []int
	// peers is the port state file as it was before this call;
	// peersTouched says preparePeers may have changed peers since.
	peers        *portState
	peersTouched bool
	// shadows lists the ports whose shadow pair this call created.
	shadows []int
}

// hasPins reports whether dir holds any of deepwall's map pins.
func hasPins(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "dw_") {
			return true
		}
	}
	return false
}

// abortOpen undoes a failed OpenPair: sockets closed and unregistered, the
// ports it attached detached, the pins it created removed (adopted ones
// kept, with the links of a live pair), the peer settings it changed put
// back.
func (p *Pair) abortOpen(u *openUndo) error {
	errs := p.unregisterXSKs()
	for _, l := range p.loops {
		errs = append(errs, l.close())
	}
	if p.prog != nil {
		if u.freshPins {
			errs = append(errs, p.prog.Remove())
		} else {
			for _, ifindex := range u.attached {
				errs = append(errs, p.prog.Detach(ifindex))
			}
			errs = append(errs, p.prog.Close())
		}
		p.prog = nil
	}
	if u.peersTouched && p.ns.IsOpen() {
		errs = append(errs, p.restorePeers(u.peers))
	}
	for _, port := range u.shadows {
		errs = append(errs, xdp.RemoveShadow(port))
	}
	if p.stopFD >= 0 {
		errs = append(errs, unix.Close(p.stopFD))
		p.stopFD = -1
	}
	if p.ns.IsOpen() {
		errs = append(errs, p.ns.Close())
		p.ns = netns.None()
	}
	return errors.Join(errs...)
}

// unregisterXSKs takes the loops' open sockets out of the program's
// XSKMAP.
func (p *Pair) unregisterXSKs() []error {
	if p.prog == nil {
		return nil
	}
	var errs []error
	for _, l := range p.loops {
		for side, s := range l.socks {
			if s != nil {
				errs = append(errs, p.prog.UnregisterXSK(uint32(side), l.q))
			}
		}
	}
	return errs
}

// preparePeers finds both ports' veth peers and sets what the XDP and
// AF_XDP paths need, recording the original settings.
func (p *Pair) preparePeers(h *netlink.Handle) error {
	st, err := loadState(p.state)
	if err != nil {
		return err
	}
	for _, port := range p.ports {
		pr, err := findPeer(h, p.ns, port.name)
		if errors.Is(err, ErrNotVeth) {
			p.log.Warn("port is not a veth: its peer is not prepared", "port", port.name, "error", err)
			continue
		}
		if err != nil {
			return err
		}
		err = preparePeer(p.log, pr, st)
		pr.close()
		if serr := saveState(p.state, st); serr != nil && err == nil {
			err = serr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// restorePeers puts back the peer settings recorded in the port state
// but not in before (every recorded one when before is empty: Detach),
// for peers that still exist, and then saves before as the state. On an
// error the state file is kept, so that a later Detach can try again.
func (p *Pair) restorePeers(before *portState) error {
	now, err := loadState(p.state)
	if err != nil {
		return err
	}
	h, err := netlink.NewHandleAt(p.ns)
	if err != nil {
		return fmt.Errorf("restore peers: netlink: %w", err)
	}
	defer h.Close()
	var errs []error
	for _, port := range p.ports {
		if port.name == "" {
			continue
		}
		pr, err := findPeer(h, p.ns, port.name)
		if err != nil {
			continue // port or peer gone: nothing left to restore
		}
		if rec := now.find(port.name, pr.ifindex, pr.nsInode); rec != nil {
			changed := peerRecord{Port: rec.Port, Peer: rec.Peer}
			prev := before.find(port.name, pr.ifindex, pr.nsInode)
			for _, f := range peerFeatures {
				o := *f.orig(&rec.Original)
				if o != nil && (prev == nil || *f.orig(&prev.Original) == nil) {
					*f.orig(&changed.Original) = o
				}
			}
			errs = append(errs, restorePeer(p.log, pr, &changed))
		}
		pr.close()
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return saveState(p.state, before)
}

// Program returns the pair's XDP program (flows, ACL, counters), nil
// once the pair is closed.
func (p *Pair) Program() *xdp.Program { return p.prog }

// ForgetVerdicts makes every worker forget the final verdicts it
// remembers for frames in flight, before it judges its next batch. Call
// it after revoking kernel verdicts (a rule change): otherwise frames of a
// revoked flow already in user space would still be forwarded or dropped
// by the old verdict, unseen by the Inspector, for up to finalTTL.
func (p *Pair) ForgetVerdicts() { p.epoch.Add(1) }

// Queues returns the number of queue pairs (sockets per port).
func (p *Pair) Queues() int { return len(p.loops) }

// Run forwards and inspects until ctx is done or the pair is closed. It
// returns nil on a clean stop and the first I/O error otherwise. A pair
// runs once: after Run returns, Close or Detach it.
func (p *Pair) Run(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	if p.running {
		p.mu.Unlock()
		return errors.New("run pair: it runs or ran already (a pair runs once)")
	}
	ctx, cancel := context.WithCancel(ctx)
	p.running, p.cancelRun, p.runDone = true, cancel, make(chan struct{})
	p.mu.Unlock()
	defer func() {
		cancel()
		close(p.runDone)
	}()

	var wg sync.WaitGroup
	for _, w := range p.work {
		wg.Add(1)
		go func() { defer wg.Done(); w.run() }()
	}
	errc := make(chan error, len(p.loops)+1)
	var lwg sync.WaitGroup
	for _, l := range p.loops {
		lwg.Add(1)
		go func() {
			defer lwg.Done()
			if err := l.run(); err != nil {
				errc <- fmt.Errorf("queue %d: %w", l.q, err)
				p.stop()
			}
		}()
	}
	if !p.cfg.Aging.Disabled {
		lwg.Add(1)
		go func() { defer lwg.Done(); reapTicker(ctx, p.cfg.Aging.Interval, p.reapOnce) }()
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		errc <- err
	}
	p.stop()
	cancel()
	lwg.Wait()
	// The loops are gone: nobody sends to the workers any more.
	for _, w := range p.work {
		close(w.in)
	}
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// stop tells every I/O loop to return.
func (p *Pair) stop() {
	if p.stopping.Swap(true) {
		return
	}
	var one = [8]byte{1}
	_, _ = unix.Write(p.stopFD, one[:])
}

// halt stops Run, if it runs, and waits for it.
func (p *Pair) halt() {
	p.mu.Lock()
	running, cancel, done := p.running, p.cancelRun, p.runDone
	p.mu.Unlock()
	if running {
		cancel()
		<-done
	}
}

// Close stops the pair and closes its sockets; the XDP program stays on
// both ports with its pins, so ALLOW/DROP flows keep their fate in the
// kernel and uninspected traffic gets the port's fail policy until another
// agent opens the pair again.
func (p *Pair) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.halt()
	return p.teardown(false)
}

// Detach stops the pair, removes the XDP program from both ports, deletes
// its pins and restores the peer settings OpenPair changed. It also works
// after Close.
func (p *Pair) Detach() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.halt()
	return p.teardown(true)
}

// teardown releases everything; with detach it also removes the program
// from the ports, its pins and the peer changes.
func (p *Pair) teardown(detach bool) error {
	var errs []error
	if detach && p.prog == nil && p.ns.IsOpen() {
		// Closed before: take the program back from its pins to remove it.
		prog, err := xdp.Load(xdp.Options{PinDir: p.cfg.PinDir})
		if err != nil {
			errs = append(errs, err)
		}
		p.prog = prog
	}
	errs = append(errs, p.unregisterXSKs()...)
	// The loops stay in p.loops, socketless, so Stats still reads their
	// counters after Close. p.mu keeps Stats off sockets being closed.
	p.mu.Lock()
	for _, l := range p.loops {
		errs = append(errs, l.close())
	}
	p.mu.Unlock()
	if p.prog != nil {
		if detach {
			// Shadow pairs are found by name in the ports' namespace.
			errs = append(errs, nsexec.Do(p.ns, p.prog.Remove))
		} else {
			errs = append(errs, p.prog.Close())
		}
		p.prog = nil
	}
	if detach && p.ns.IsOpen() {
		errs = append(errs, p.restorePeers(&portState{}))
	}
	if p.stopFD >= 0 {
		errs = append(errs, unix.Close(p.stopFD))
		p.stopFD = -1
	}
	if detach && p.ns.IsOpen() {
		// Kept open by Close so that a later Detach can still restore
		// the peers.
		errs = append(errs, p.ns.Close())
		p.ns = netns.None()
	}
	if err := errors.Join(errs...); err != nil {
		if detach {
			return fmt.Errorf("detach pair: %w", err)
		}
		return fmt.Errorf("close pair: %w", err)
	}
	if detach {
		p.log.Info("port pair detached")
	}
	return nil
}

// newSocketConfig is the socket setup of every queue.
func (p *Pair) socketConfig() afxdp.SocketConfig {
	r := p.cfg.RingSize
	return afxdp.SocketConfig{RxSize: r, TxSize: r, FillSize: r, CompSize: r,
		ZeroCopy: p.cfg.ZeroCopy, BusyPoll: p.cfg.BusyPoll}
}

// monoBase pairs a CLOCK_MONOTONIC reading with a Go time taken at the
// same moment. Go's monotonic clock is CLOCK_MONOTONIC read through the
// vDSO, so base + time.Since(baseTime) is CLOCK_MONOTONIC without a
// clock_gettime syscall per batch.
var monoBase, monoBaseTime = func() (int64, time.Time) {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano(), time.Now()
}()

// monoNow is CLOCK_MONOTONIC in nanoseconds (Frame.Timestamp's clock and
// bpf_ktime_get_ns's).
func monoNow() int64 { return monoBase + int64(time.Since(monoBaseTime)) }

// MonoNow is the clock of frame timestamps (CLOCK_MONOTONIC in ns),
// for everything that compares times with them: the NFQUEUE pair, the
// agent's engine ticks and flow ages.
func MonoNow() int64 { return monoNow() }
