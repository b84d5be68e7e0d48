package nfq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/internal/nsexec"
	"github.com/deepwall/deepwall/xdp"
)

// Defaults and limits of Config.
const (
	// DefaultMaxFlows bounds the flow table (all workers).
	DefaultMaxFlows = 1 << 18
	// DefaultQueueLen is the kernel's queue length per queue.
	DefaultQueueLen = 4096
	// maxPacket is the most a queued packet may carry (IP total length).
	maxPacket = 65535
	// ethLen is the synthetic Ethernet header put before each packet:
	// Inspectors take frames.
	ethLen = 14
	// sockBuf is each queue socket's receive buffer.
	sockBuf = 8 << 20
	// flowsFresh: Flows re-reads conntrack when its copy is older.
	flowsFresh = 200 * time.Millisecond
	// goneGrace: a decided flow missing from conntrack is ended only if
	// it is older than this (its conntrack entry may not be confirmed yet).
	goneGrace = time.Second
)

// Errors of Open.
var (
	// ErrPorts: the ports are neither both bridge ports of one bridge nor
	// both unbridged (routed).
	ErrPorts = errors.New("ports must be two ports of one bridge, or two routed interfaces")
	// ErrNoBrNetfilter: bridged ports need br_netfilter.
	ErrNoBrNetfilter = errors.New("bridged ports need br_netfilter (modprobe br_netfilter)")
	// ErrQueueBusy: another program listens on one of the queues.
	ErrQueueBusy = errors.New("nfqueue already bound by another program")
)

// Config configures an NFQUEUE pair.
type Config struct {
	// Inner and Outer are the ports, in the calling thread's network
	// namespace (call Open from inside it).
	Inner, Outer string
	// Workers is the number of queues and inspection workers; default
	// runtime.NumCPU().
	Workers int
	// QueueBase is the first queue number; default 256·(inner ifindex
	// mod 250), or the next free block of 256 when another program holds
	// that one, so instances in one namespace do not collide.
	QueueBase uint16
	// FailClosed: while no agent listens, drop what would be queued
	// (without it, --queue-bypass accepts it, and a full queue too).
	FailClosed bool
	Inspector  dataplane.Inspector
	Logger     *slog.Logger
	// Aging: OnFlowEnd hears of decided flows that end (EndGone when
	// conntrack forgot them; EndIdle by the timeouts when conntrack cannot
	// be read); Interval paces the check. Defaults as for the AF_XDP pair.
	Aging dataplane.AgingConfig
	// MaxFlows bounds the flow table; default DefaultMaxFlows.
	MaxFlows int
	// QueueLen is the kernel queue length per queue; default
	// DefaultQueueLen.
	QueueLen uint32
}

// Pair is an NFQUEUE pair: deepwall's chains between two ports, one
// queue per worker, the flow table and the conntrack reader.
type Pair struct {
	cfg     Config
	log     *slog.Logger
	ns      netns.NsHandle
	c       chains
	bridged bool
	ports   [2]port
	fams    []*family4or6
	queues  []*queue
	work    []*worker
	ct      *netlink.Conn // conntrack dump; nil when unavailable
	sysctls []sysctl      // changed at Open, restored by Detach

	// gen is the connmark generation honoured by the fast path; dirty
	// says a verdict was revoked since it last moved.
	mu      sync.Mutex // kernel changes: ACL, generation, teardown
	gen     atomic.Uint32
	dirty   atomic.Bool
	aclGen  int
	acl     xdp.ACL
	aclSets []string
	closed  bool
	done    chan struct{} // closed by Close: Run returns
	errc    chan error    // queue receive errors
	ctDel   chan xdp.FlowKey

	ctMu      sync.Mutex
	ctRead    time.Time
	ctErr     error
	lastSweep int64 // mono time of the last conntrack dump that worked

	stats  kernelStatsCache
	reaper struct{ passes, idle, gone, errors atomic.Uint64 }
}

type port struct {
	name    string
	ifindex int32
	mac     [6]byte
}

// family4or6 is one iptables family's handle and its fast-path position.
type family4or6 struct {
	ipt     ipTables
	v6      bool
	fastPos int
}

// Open installs deepwall's chains between cfg.Inner and cfg.Outer (after
// removing what an earlier, killed instance left) and binds one queue per
// worker. Call it from the ports' network namespace, then Run.
func Open(cfg Config) (_ *Pair, err error) {
	if cfg.Inner == "" || cfg.Outer == "" || cfg.Inner == cfg.Outer {
		return nil, fmt.Errorf("nfqueue: two distinct ports needed, got %q and %q", cfg.Inner, cfg.Outer)
	}
	if cfg.Inspector == nil {
		return nil, errors.New("nfqueue: an inspector is needed")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.NumCPU()
	}
	if cfg.Workers > dataplane.MaxWorkers {
		return nil, fmt.Errorf("nfqueue: %d workers, at most %d", cfg.Workers, dataplane.MaxWorkers)
	}
	if cfg.MaxFlows <= 0 {
		cfg.MaxFlows = DefaultMaxFlows
	}
	if cfg.QueueLen == 0 {
		cfg.QueueLen = DefaultQueueLen
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Aging.SetDefaults()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	p := &Pair{cfg: cfg, log: cfg.Logger.With("inner", cfg.Inner, "outer", cfg.Outer, "mode", "nfqueue"),
		c: chains{tag: Tag(cfg.Inner)}, done: make(chan struct{}), ctDel: make(chan xdp.FlowKey, 1024)}
	if p.ns, err = netns.Get(); err != nil {
		return nil, fmt.Errorf("nfqueue: current netns: %w", err)
	}
	defer func() {
		if err != nil {
			if derr := p.teardown(); derr != nil {
				p.log.Error("nfqueue open failed and could not undo everything", "error", derr)
			}
		}
	}()
	if err := p.findPorts(); err != nil {
		return nil, err
	}
	defaultBase := cfg.QueueBase == 0
	if defaultBase {
		p.cfg.QueueBase = uint16(p.ports[0].ifindex%queueBases) * 256
	}
	if err := p.prepareSysctls(); err != nil {
		return nil, err
	}
	for _, v6 := range []bool{false, true} {
		ipt, err := newIPTables(v6)
		if err != nil {
			return nil, fmt.Errorf("nfqueue: %w", err)
		}
		p.fams = append(p.fams, &family4or6{ipt: ipt, v6: v6})
	}
	// What an instance with the same tag left (a killed agent), and the
	// generation it used (0: none).
	old, err := p.removeRules()
	if err != nil {
		return nil, fmt.Errorf("nfqueue: remove an earlier instance's rules: %w", err)
	}
	// A generation the killed instance did not use: its marks must not
	// pass on the fast path without this instance's inspection.
	p.gen.Store(nextGen(old))
	for w := range cfg.Workers {
		p.work = append(p.work, newWorker(p, w))
	}
	// Queues bound (and configured) first, rules second: no packet is
	// queued while a socket is still being configured, none to nobody.
	if err := p.bindQueues(defaultBase); err != nil {
		return nil, err
	}
	if p.ct, err = netlink.Dial(unix.NETLINK_NETFILTER, nil); err != nil {
		p.log.Warn("conntrack unavailable: decided flows end by idle timeouts", "error", err)
		p.ct = nil
	}
	if err := p.install(); err != nil {
		return nil, fmt.Errorf("nfqueue: install rules: %w", err)
	}
	p.log.Info("nfqueue pair open", "bridged", p.bridged, "queues", fmt.Sprintf("%d-%d", p.cfg.QueueBase, int(p.cfg.QueueBase)+cfg.Workers-1),
		"chain", p.c.scope(), "generation", p.gen.Load(), "fail_closed", cfg.FailClosed, "leftovers_removed", old != 0)
	return p, nil
}

// queueBases is how many 256-queue blocks the default QueueBase chooses
// from (the inner port's ifindex modulo it).
const queueBases = 250

// bindQueues opens and binds the pair's queues from p.cfg.QueueBase on.
// With the default base, a block another program holds (another pair in
// the namespace whose inner ifindex is equal modulo queueBases, on a host
// with many veths) is skipped for the next free one; an explicit base is
// the user's choice and its failure is reported.
func (p *Pair) bindQueues(defaultBase bool) error {
	for try := 0; ; try++ {
		err := p.bindQueuesAt()
		if err == nil {
			return nil
		}
		for _, q := range p.queues {
			q.close()
		}
		p.queues = nil
		if !defaultBase || !errors.Is(err, ErrQueueBusy) || try == queueBases-1 {
			return err
		}
		next := uint16((int(p.cfg.QueueBase)/256+1)%queueBases) * 256
		p.log.Info("nfqueue block busy, trying the next", "busy", p.cfg.QueueBase, "next", next)
		p.cfg.QueueBase = next
	}
}

func (p *Pair) bindQueuesAt() error {
	p.errc = make(chan error, p.cfg.Workers)
	for q := range p.cfg.Workers {
		qu, err := p.openQueue(p.cfg.QueueBase + uint16(q))
		if err != nil {
			return err
		}
		p.queues = append(p.queues, qu)
		if err := qu.register(p.errc); err != nil {
			return err
		}
	}
	return nil
}

// findPorts resolves both ports and decides routed or bridged.
func (p *Pair) findPorts() error {
	var masters [2]int
	for i, name := range []string{p.cfg.Inner, p.cfg.Outer} {
		ifi, err := netInterface(name)
		if err != nil {
			return fmt.Errorf("nfqueue: port %s: %w", name, err)
		}
		p.ports[i] = port{name: name, ifindex: int32(ifi.index)}
		copy(p.ports[i].mac[:], ifi.mac)
		masters[i] = ifi.master
	}
	switch {
	case masters[0] == 0 && masters[1] == 0:
	case masters[0] != 0 && masters[0] == masters[1]:
		p.bridged = true
	default:
		return fmt.Errorf("nfqueue: %s and %s: %w", p.cfg.Inner, p.cfg.Outer, ErrPorts)
	}
	return nil
}

// prepareSysctls makes the namespace do what the mode needs: conntrack
// accounting (the fast path's counters), and for bridged ports
// br_netfilter's call into iptables. What it changes is restored by
// Detach.
func (p *Pair) prepareSysctls() error {
	want := []sysctl{{path: "net/netfilter/nf_conntrack_acct", value: "1", why: "fast-path counters of decided flows"}}
	if p.bridged {
		if _, err := os.Stat("/proc/sys/net/bridge"); err != nil {
			// The module is global to the host: say so when loading it.
			p.log.Warn("loading br_netfilter (host-wide module; bridge-nf-call-* are per network namespace)")
			if out, err := runCmd("modprobe", "br_netfilter"); err != nil {
				return fmt.Errorf("nfqueue: %w: %v %s", ErrNoBrNetfilter, err, strings.TrimSpace(string(out)))
			}
		}
		want = append(want,
			sysctl{path: "net/bridge/bridge-nf-call-iptables", value: "1", why: "bridged IPv4 through iptables"},
			sysctl{path: "net/bridge/bridge-nf-call-ip6tables", value: "1", why: "bridged IPv6 through ip6tables"})
	} else if v, err := readSysctl("net/ipv4/ip_forward"); err == nil && v != "1" {
		p.log.Warn("routed ports but net.ipv4.ip_forward is off in this namespace: nothing is forwarded")
	}
	for _, s := range want {
		old, changed, err := setSysctl(s.path, s.value)
		if err != nil {
			return fmt.Errorf("nfqueue: sysctl %s: %w", s.path, err)
		}
		if changed {
			s.old = old
			p.sysctls = append(p.sysctls, s)
			p.log.Info("sysctl changed", "key", strings.ReplaceAll(s.path, "/", "."), "from", old, "to", s.value, "why", s.why)
		}
	}
	return nil
}

// Bridged reports whether the ports are bridge ports (physdev rules).
func (p *Pair) Bridged() bool { return p.bridged }

// Queues returns the number of queues (one per worker).
func (p *Pair) Queues() int { return len(p.queues) }

// QueueRange returns the first and last queue number.
func (p *Pair) QueueRange() (uint16, uint16) {
	return p.cfg.QueueBase, p.cfg.QueueBase + uint16(len(p.queues)) - 1
}

// Generation returns the connmark generation the fast path honours.
func (p *Pair) Generation() uint32 { return p.gen.Load() }

// inNS runs fn on a thread in the ports' namespace (iptables and ipset
// are processes that inherit it).
func (p *Pair) inNS(fn func() error) error { return nsexec.Do(p.ns, fn) }

// Run serves the queues and checks conntrack for ended flows until ctx
// is done or Detach. It returns nil on a clean stop.
func (p *Pair) Run(ctx context.Context) error {
	errc := p.errc
	t := time.NewTicker(p.cfg.Aging.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-p.done:
			return nil
		case err := <-errc:
			select {
			case <-p.done:
				return nil // the queues were closed under it
			default:
			}
			return err
		case k := <-p.ctDel:
			p.forgetConntrack(k)
		case <-t.C:
			if !p.cfg.Aging.Disabled {
				p.sweep()
			}
		}
	}
}

// Close stops the queues and keeps the rules: with --fail-closed the
// queued traffic is dropped until an agent starts again; fail-open
// (--queue-bypass) accepts it. Decided flows keep their fast path.
func (p *Pair) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	close(p.done)
	var errs []error
	for _, q := range p.queues {
		errs = append(errs, q.close())
	}
	if p.ct != nil {
		errs = append(errs, p.ct.Close())
		p.ct = nil
	}
	return errors.Join(errs...)
}

// Detach stops the queues and removes every rule, chain and set it added
// and the sysctls it changed. It also works after Close.
func (p *Pair) Detach() error {
	if err := p.Close(); err != nil {
		p.log.Warn("close queues", "error", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.teardown(); err != nil {
		return fmt.Errorf("nfqueue detach: %w", err)
	}
	p.log.Info("nfqueue pair detached: rules and chains removed")
	return nil
}

// teardown removes the rules, sets and sysctl changes (Open's undo too).
func (p *Pair) teardown() error {
	var errs []error
	for _, q := range p.queues {
		errs = append(errs, q.close())
	}
	if p.ns.IsOpen() && len(p.fams) > 0 {
		errs = append(errs, p.inNS(func() error { _, err := p.removeRules(); return err }))
	}
	for i := len(p.sysctls) - 1; i >= 0; i-- {
		s := p.sysctls[i]
		if p.ns.IsOpen() {
			errs = append(errs, p.inNS(func() error { _, _, err := setSysctl(s.path, s.old); return err }))
		}
	}
	p.sysctls = nil
	if p.ct != nil {
		errs = append(errs, p.ct.Close())
		p.ct = nil
	}
	if p.ns.IsOpen() {
		errs = append(errs, p.ns.Close())
		p.ns = netns.None()
	}
	return errors.Join(errs...)
}
