package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/deepwall/deepwall/ctl/agent/packetpath"
	"github.com/deepwall/deepwall/ctl/agent/protect"
	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/ctl/audit"
	"github.com/deepwall/deepwall/ctl/eve"
	"github.com/deepwall/deepwall/ctl/resolve"
	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dataplane/probe"
	"github.com/deepwall/deepwall/dpi"
	"github.com/deepwall/deepwall/internal/nsexec"
	"github.com/deepwall/deepwall/rules/store"
	"github.com/deepwall/deepwall/xdp"
)

// Defaults of `deepwall run`.
const (
	DefaultStateDir = "/var/lib/deepwall"
	DefaultRunDir   = dataplane.DefaultStateDir // locks, beside the dataplane's port records
	// CompiledCache is the compiled-rules cache file in the state dir
	// (tests seed it to skip compiling the default pack).
	CompiledCache = "rules.compiled"
	// tickInterval paces the engine's flow expiry.
	tickInterval = time.Second
)

// Config configures an agent (the flags of `deepwall run`).
type Config struct {
	Inner, Outer string
	// NetNS is the network namespace of the ports: a name under
	// /run/netns or a path; "" is the agent's own.
	NetNS       string
	RulesFile   string // replaces the stored rule set at start
	LogPath     string // EVE log
	LogMaxBytes int64
	LogKeep     int
	AuditPath   string // default: audit.json beside LogPath
	Socket      string
	StateDir    string
	RunDir      string // port locks
	FailClosed  bool
	// NoIdentify identifies only the flows some rule may apply to
	// (dpi.Config.NoIdentify): the others reach the kernel fast path at
	// their first packet, and their flow events name no protocol.
	NoIdentify bool
	Workers    int
	// H2Block is what a blocking rule on an HTTP/2 stream resets: the
	// stream (default) or the connection (flag --h2-block).
	H2Block     dpi.H2BlockPolicy
	MetricsAddr string // "" = no metrics
	AdminGroup  string // name or gid; "" = root only
	ViewerGroup string // name or gid; "" = admins only
	// APIPolicy is the per-command authorisation file ("": DefaultPolicy,
	// the group flags alone). docs/api.md, "Authorisation".
	APIPolicy string
	BPFFS     string // default dataplane.DefaultBPFFS
	// Backend is the dataplane backend (flag --mode): auto (probe),
	// xdp or nfqueue (backend.go).
	Backend string
	// DataPath is the eBPF backend's data path (flag --datapath): tc
	// (default) or xdp.
	DataPath dataplane.Path
	// DockerSocket, PodmanSocket, ContainerdState and ContainerdSocket
	// are where protect finds containers by name or id and watches their
	// starts ("": resolve.Default's).
	DockerSocket, PodmanSocket, ContainerdState, ContainerdSocket string
	// CommunityIDSeed seeds the events' Community ID (0 by default, as
	// Suricata and Zeek).
	CommunityIDSeed uint16
	// Outputs are where events go besides the file (--syslog,
	// --event-socket).
	Outputs []eve.Output
	// EventTap sees every event as it is written (eve.Config.Tap): the
	// Kubernetes controller's Events on pods.
	EventTap func(*eve.Event)

	// Version is what status reports as the agent's version.
	Version string
	Logger  *slog.Logger
}

func (c *Config) setDefaults() error {
	if (c.Inner == "") != (c.Outer == "") {
		return errors.New("--inner and --outer go together (leave both out to start with no ports and protect containers)")
	}
	if c.Inner != "" && c.Inner == c.Outer {
		return fmt.Errorf("--inner and --outer are both %q: a pair needs two ports", c.Inner)
	}
	if c.Socket == "" {
		c.Socket = api.DefaultSocket
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.LogPath == "" {
		c.LogPath = eve.DefaultPath
	}
	if c.AuditPath == "" {
		c.AuditPath = filepath.Join(filepath.Dir(c.LogPath), "audit.json")
	}
	if c.RunDir == "" {
		c.RunDir = DefaultRunDir
	}
	if c.BPFFS == "" {
		c.BPFFS = dataplane.DefaultBPFFS
	}
	if c.Workers < 0 || c.Workers > dataplane.MaxWorkers {
		return fmt.Errorf("--workers %d: want 1 to %d (0 = one per CPU)", c.Workers, dataplane.MaxWorkers)
	}
	if c.Workers == 0 {
		c.Workers = runtime.NumCPU()
	}
	p, err := dataplane.ParsePath(string(c.DataPath))
	if err != nil {
		return fmt.Errorf("--datapath: %w", err)
	}
	c.DataPath = p
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Agent is one running deepwall: the rule store and compiled set, the DPI
// engine, the port pair, the event and audit logs, the API and metrics.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	started time.Time

	ns      netns.NsHandle
	nsName  string
	locks   []*os.File
	store   *store.Store
	audit   *audit.Log
	events  *eve.Log
	rules   *ruleManager
	engine  dpiEngine
	timed   *timedInspector
	blocks  blockRules         // rule ids of final drops (engine.go)
	prot    *protect.Protector // protected containers (containers.go)
	pair    packetpath.Path    // the --inner/--outer pair: AF_XDP or NFQUEUE
	backend backendChoice
	ports   [2]api.PortInfo
	api     *apiServer
	apiLn   net.Listener
	metrics *http.Server
	metLn   net.Listener
	fast    fastBytes
	wl      workloadCounters // per-workload events (workloads.go)

	closeOnce sync.Once
	closeErr  error
}

// Open checks everything that can be wrong with the configuration
// before it touches XDP, then opens the pair and installs the rules. On
// any error it leaves nothing behind: no XDP program, no pin, no socket.
func Open(cfg Config) (_ *Agent, err error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, log: cfg.Logger, started: time.Now(), ns: netns.None()}
	defer func() {
		if err != nil {
			_ = a.Close()
		}
	}()

	auth, sockGID, err := resolveGroups(cfg.AdminGroup, cfg.ViewerGroup)
	if err != nil {
		return nil, err
	}
	var pol *policy // nil: DefaultPolicy
	if cfg.APIPolicy != "" {
		if pol, err = loadPolicy(cfg.APIPolicy); err != nil {
			return nil, err
		}
	}
	if err := a.openNetNS(); err != nil {
		return nil, err
	}
	if cfg.Inner != "" {
		if err := a.checkPorts(); err != nil {
			return nil, err
		}
		if err := a.lockPorts(); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	if a.store, err = store.Open(cfg.StateDir); err != nil {
		return nil, err
	}
	if a.events, err = eve.Open(eve.Config{Path: cfg.LogPath, MaxBytes: cfg.LogMaxBytes, Keep: cfg.LogKeep, CommunityIDSeed: cfg.CommunityIDSeed, Outputs: cfg.Outputs, Tap: cfg.EventTap}); err != nil {
		return nil, err
	}
	if a.audit, err = openAuditChecked(cfg.AuditPath, filepath.Join(cfg.StateDir, audit.HeadFile)); err != nil {
		return nil, err
	}
	a.rules = newRuleManager(a.store, a.audit, cfg.StateDir, a.log)
	self := caller{UID: os.Getuid(), GID: os.Getgid(), PID: os.Getpid()}
	st, err := a.rules.loadInitial(cfg.RulesFile, self)
	if err != nil {
		return nil, err
	}
	events := a.events
	ecfg := engineConfig(st.compiled, cfg.Workers, cfg.H2Block, func(ev *eve.Event) {
		a.prot.Annotate(ev)
		a.blocks.noteEvent(ev)
		a.wl.note(ev)
		events.Emit(ev)
	})
	ecfg.NoIdentify = cfg.NoIdentify
	a.engine, err = newEngine(ecfg)
	if err != nil {
		return nil, fmt.Errorf("dpi engine: %w", err)
	}
	a.rules.engine = a.engine
	a.timed = newTimedInspector(a.engine, cfg.Workers)

	if a.apiLn, err = listenUnix(cfg.Socket, sockGID); err != nil {
		return nil, err
	}
	a.api = newAPIServer(a.rules, a, auth, pol, a.log)
	if cfg.MetricsAddr != "" {
		if a.metLn, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
		a.metrics = newMetricsServer(a)
	}

	if cfg.Inner != "" {
		if err := a.openPair(); err != nil {
			return nil, err
		}
	}
	if err := a.openProtector(); err != nil {
		return nil, err
	}
	kset := a.prot.Kernel()
	a.rules.forget = kset.ForgetVerdicts
	revoked, err := a.rules.attachKernel(kset)
	if err != nil {
		return nil, err
	}
	if err := a.prot.Restore(); err != nil {
		return nil, err
	}
	a.log.Info("deepwall agent ready", "inner", cfg.Inner, "outer", cfg.Outer, "netns", a.nsName,
		"rules_version", st.version.Number, "rules", len(st.set.Rules), "revoked", revoked,
		"socket", cfg.Socket, "log", cfg.LogPath, "fail_closed", cfg.FailClosed, "workers", cfg.Workers)
	return a, nil
}

// resolveGroups turns the group flags into gids: the authorizer's and the
// socket's group (the viewer group when set, else the admin group, else
// the agent's own).
func resolveGroups(admin, viewer string) (authorizer, int, error) {
	var auth authorizer
	sock := -1
	for _, g := range []struct {
		flag, val string
		into      *[]int
	}{{"--admin-group", admin, &auth.AdminGIDs}, {"--viewer-group", viewer, &auth.ViewerGIDs}} {
		if g.val == "" {
			continue
		}
		gid, err := lookupGroup(g.val)
		if err != nil {
			return auth, 0, fmt.Errorf("%s %s: %w", g.flag, g.val, err)
		}
		*g.into = append(*g.into, gid)
		sock = gid
	}
	return auth, sock, nil
}

func lookupGroup(s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 {
			return 0, errors.New("negative gid")
		}
		return n, nil
	}
	g, err := user.LookupGroup(s)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(g.Gid)
}

// openAuditChecked opens the audit log and checks its end against the
// head recorded after the last append, so a truncated log is refused as
// firmly as an edited one.
func openAuditChecked(path, headFile string) (*audit.Log, error) {
	if err := os.MkdirAll(filepath.Dir(path), eve.DirMode); err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	al, err := audit.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w (inspect it with deepwall audit verify; move it aside to start a new chain)", err)
	}
	want, err := os.ReadFile(headFile)
	if err == nil && len(want) > 0 {
		if w := string(trimNL(want)); w != al.Head() {
			al.Close()
			return nil, fmt.Errorf("audit log %s: its last entry is not the one recorded in %s (entries removed or the last one edited); move both aside to start a new chain", path, headFile)
		}
	}
	return al, nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

// openNetNS opens the ports' namespace.
func (a *Agent) openNetNS() error {
	var err error
	if a.cfg.NetNS == "" {
		a.ns, err = netns.Get()
		if err != nil {
			return fmt.Errorf("current network namespace: %w", err)
		}
		return nil
	}
	path := a.cfg.NetNS
	if !filepath.IsAbs(path) && filepath.Base(path) == path {
		path = filepath.Join("/run/netns", path)
	}
	a.nsName = a.cfg.NetNS
	a.ns, err = resolve.OpenNetns(path) // refuses files that are not network namespaces (FIFOs, devices) before opening them
	if err != nil {
		a.ns = netns.None()
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("network namespace %s: %s does not exist", a.cfg.NetNS, path)
		}
		return fmt.Errorf("network namespace %s: %w", a.cfg.NetNS, err)
	}
	return nil
}

// nsID identifies the ports' namespace for locks and pin names: its inode,
// or "" for the initial namespace (where pins keep the plain port name).
func (a *Agent) nsID() string {
	var st, init unix.Stat_t
	if unix.Fstat(int(a.ns), &st) != nil {
		return ""
	}
	if unix.Stat("/proc/1/ns/net", &init) == nil && init.Ino == st.Ino {
		return ""
	}
	return strconv.FormatUint(st.Ino, 10)
}

// checkPorts makes sure both interfaces exist in the namespace.
func (a *Agent) checkPorts() error {
	h, err := netlink.NewHandleAt(a.ns)
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	where := ""
	if a.nsName != "" {
		where = " in network namespace " + a.nsName
	}
	for i, name := range []string{a.cfg.Inner, a.cfg.Outer} {
		l, err := h.LinkByName(name)
		if err != nil {
			var nf netlink.LinkNotFoundError
			if errors.As(err, &nf) {
				return fmt.Errorf("interface %s: no such interface%s", name, where)
			}
			return fmt.Errorf("interface %s: %w", name, err)
		}
		side := "inner"
		if i == 1 {
			side = "outer"
		}
		a.ports[i] = api.PortInfo{Side: side, Name: name, Ifindex: l.Attrs().Index}
	}
	return nil
}

// lockPorts takes an exclusive lock per port, so that a second agent on
// either port fails before it touches XDP. The lock files are keyed by
// the namespace and the port name and hold the owner's pid.
func (a *Agent) lockPorts() error {
	if err := os.MkdirAll(a.cfg.RunDir, 0o755); err != nil {
		return fmt.Errorf("run dir: %w", err)
	}
	id := a.nsID()
	for _, p := range a.ports {
		name := "port-" + p.Name + ".lock"
		if id != "" {
			name = "port-ns" + id + "-" + p.Name + ".lock"
		}
		path := filepath.Join(a.cfg.RunDir, name)
		f, err := lockFile(path)
		if err != nil {
			return fmt.Errorf("port %s: %w", p.Name, err)
		}
		a.locks = append(a.locks, f)
	}
	return nil
}

// errLocked: another agent holds a port's lock.
var errLocked = errors.New("in use by another deepwall agent")

// lockFile takes an exclusive lock on path, creating it, and writes the
// owner's pid into it. A holder removes the file when it exits, so the
// file locked must still be the one at path (else it was removed between
// open and flock, and the lock means nothing: try again).
func lockFile(path string) (*os.File, error) {
	for range 5 {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			owner := make([]byte, 32)
			n, _ := f.ReadAt(owner, 0)
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("%w (pid %s, lock %s)", errLocked, trimNL(owner[:n]), path)
			}
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		held, herr := f.Stat()
		now, nerr := os.Stat(path)
		if herr != nil || nerr != nil || !os.SameFile(held, now) {
			f.Close()
			continue
		}
		_ = f.Truncate(0)
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		return f, nil
	}
	return nil, fmt.Errorf("lock %s: the file keeps changing", path)
}

// pinDir is the bpffs directory of the pair whose inner port is inner
// (the static pair's or a protected container's), unique per namespace.
func (a *Agent) pinDir(inner string) string {
	name := inner
	if id := a.nsID(); id != "" {
		name = "ns" + id + "-" + inner
	}
	return filepath.Join(a.cfg.BPFFS, "deepwall", name)
}

// removePins removes the XDP program pinned in dir from its ports and
// the pins (in the ports' namespace).
func (a *Agent) removePins(dir string) error {
	return a.inNS(func() error {
		prog, err := xdp.Load(xdp.Options{PinDir: dir})
		if err != nil {
			return err
		}
		return prog.Remove()
	})
}

// inNS runs fn on a thread inside the ports' namespace.
func (a *Agent) inNS(fn func() error) error { return nsexec.Do(a.ns, fn) }

// openPair attaches XDP and binds the sockets. A failure removes what
// this attempt created (the dataplane keeps pins on error so that a live
// pair survives an agent crash; a pair that never ran has nothing to keep).
func (a *Agent) openPair() error {
	pinDir := a.pinDir(a.cfg.Inner)
	_, statErr := os.Stat(pinDir)
	preexisting := statErr == nil
	if err := a.inNS(func() error {
		var err error
		a.backend, err = chooseBackend(a.cfg.Backend, a.cfg.DataPath, []int{a.ports[0].Ifindex, a.ports[1].Ifindex})
		return err
	}); err != nil {
		return err
	}
	a.log.Info("dataplane mode", "mode", a.backend.Name, "why", a.backend.Reason)
	if a.backend.Name == probe.BackendNFQueue {
		return a.openNFQueue()
	}
	cfg := dataplane.PairConfig{Inner: a.cfg.Inner, Outer: a.cfg.Outer, PinDir: pinDir, BPFFS: a.cfg.BPFFS,
		StateDir: a.cfg.RunDir, FailClosed: a.cfg.FailClosed, Path: a.cfg.DataPath, Workers: a.cfg.Workers, Inspector: ruleInspector{a.timed, &a.blocks},
		Logger: a.log, Aging: dataplane.AgingConfig{OnFlowEnd: a.kernelFlowEnded}}
	err := a.inNS(func() error {
		p, err := dataplane.OpenPair(cfg)
		if err == nil {
			a.pair = packetpath.XDP{Pair: p}
		}
		return err
	})
	if err == nil {
		for i := range a.ports {
			a.ports[i].Queues = a.pair.Queues()
		}
		return nil
	}
	if _, serr := os.Stat(pinDir); !preexisting && serr == nil {
		_ = a.removePins(pinDir)
	}
	if errors.Is(err, unix.EOPNOTSUPP) {
		name := a.cfg.Inner + " or " + a.cfg.Outer
		for _, p := range a.ports {
			if strings.Contains(err.Error(), fmt.Sprintf("ifindex %d:", p.Ifindex)) {
				name = p.Name
			}
		}
		return fmt.Errorf("interface %s does not support native XDP (its driver cannot run XDP programs; veth and most NIC drivers can): %w", name, err)
	}
	return err
}

// Run serves until ctx is done (SIGINT/SIGTERM) or the pair fails, then
// shuts down: the pair is detached from both ports. SIGHUP reopens the
// event log.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 4)
	go func() {
		if err := a.api.Serve(a.apiLn); err != nil {
			errc <- fmt.Errorf("api: %w", err)
		}
	}()
	if a.metrics != nil {
		go func() {
			if err := a.metrics.Serve(a.metLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("metrics: %w", err)
			}
		}()
	}
	pairDone := make(chan error, 1)
	if a.pair != nil {
		go func() { pairDone <- a.pair.Run(ctx) }()
	} else {
		go func() { <-ctx.Done(); pairDone <- nil }()
	}
	a.prot.Start(ctx)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	tick := time.NewTicker(tickInterval)
	defer tick.Stop()
	wd := newWatchdog() // sdnotify.go
	a.notifyReady(wd)

	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-errc:
			runErr = err
			break loop
		case err := <-pairDone:
			pairDone <- err
			if err != nil {
				runErr = fmt.Errorf("dataplane: %w", err)
			}
			break loop
		case <-hup:
			if err := a.events.Reopen(); err != nil {
				a.log.Error("reopen event log", "error", err)
			} else {
				a.log.Info("event log reopened", "path", a.cfg.LogPath)
			}
			if a.cfg.APIPolicy != "" {
				if err := a.api.reloadPolicy(a.cfg.APIPolicy); err != nil {
					a.log.Error("api policy not reloaded, the previous one stays in force", "error", err)
				} else {
					a.log.Info("api policy reloaded", "path", a.cfg.APIPolicy)
				}
			}
		case now := <-tick.C:
			a.engine.Tick(dataplane.MonoNow())
			_ = wd.ping(now)
		}
	}
	a.notifyStopping()
	cancel()
	if err := <-pairDone; err != nil && runErr == nil {
		runErr = fmt.Errorf("dataplane: %w", err)
	}
	a.endKernelFlows()
	if err := a.Close(); err != nil && runErr == nil {
		runErr = err
	}
	return runErr
}

// endKernelFlows reports every flow the kernel still carries to the
// engine as ended, so their flow events carry the fast-path counters
// before the pair (and its flow map) goes away.
func (a *Agent) endKernelFlows() {
	if a.pair == nil || a.pair.Kernel() == nil {
		return
	}
	type entry struct {
		k xdp.FlowKey
		v xdp.FlowValue
	}
	var all []entry
	_ = a.pair.Kernel().Flows(func(k xdp.FlowKey, v xdp.FlowValue) bool {
		// INSPECT entries too: a revoked flow keeps its fast-path counters.
		all = append(all, entry{k, v})
		return true
	})
	for _, e := range all {
		a.flowEnded(e.k, e.v)
	}
}

// Close stops everything and detaches the pair. It is safe to call more
// than once and on a partly opened agent.
func (a *Agent) Close() error {
	a.closeOnce.Do(func() {
		var errs []error
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if a.api != nil {
			errs = append(errs, a.api.Shutdown(ctx))
		}
		if a.apiLn != nil {
			_ = a.apiLn.Close() // when it never served; removes the socket file
		}
		if a.metrics != nil {
			errs = append(errs, a.metrics.Shutdown(ctx))
		}
		if a.metLn != nil {
			_ = a.metLn.Close()
		}
		if a.prot != nil {
			errs = append(errs, a.prot.Close())
		}
		if a.pair != nil {
			errs = append(errs, a.inNS(a.pair.Detach))
		}
		if a.engine != nil {
			errs = append(errs, a.engine.Close())
		}
		if a.events != nil {
			errs = append(errs, a.events.Close())
		}
		if a.audit != nil {
			errs = append(errs, a.audit.Close())
		}
		if a.store != nil {
			errs = append(errs, a.store.Close())
		}
		for _, f := range a.locks {
			// Removed while still held: see lockFile.
			_ = os.Remove(f.Name())
			errs = append(errs, f.Close())
		}
		if a.ns.IsOpen() {
			errs = append(errs, a.ns.Close())
			a.ns = netns.None()
		}
		a.closeErr = errors.Join(errs...)
	})
	return a.closeErr
}
