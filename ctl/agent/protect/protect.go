package protect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netns"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"log/slog"

	"github.com/deepwall/deepwall/ctl/agent/packetpath"
	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/ctl/audit"
	"github.com/deepwall/deepwall/ctl/eve"
	"github.com/deepwall/deepwall/ctl/resolve"
	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dataplane/nfq"
	"github.com/deepwall/deepwall/dataplane/probe"
	"github.com/deepwall/deepwall/dataplane/wire"
	"github.com/deepwall/deepwall/dpi"
	"github.com/deepwall/deepwall/rules"
	"github.com/deepwall/deepwall/xdp"
)

// Protected containers.
const (
	// portsDB is the store of the protected set and the learned flows, in
	// the state dir (beside rules.db, which admits no foreign buckets).
	portsDB = "ports.db"
	// maxProtected bounds the protected set.
	maxProtected = 256
	// watchInterval paces the check for vanished containers and changed
	// addresses.
	watchInterval = time.Second
	// maxPortRecord bounds one stored protected container (a record
	// holding wire's limits of routes and neighbours is about 1 MiB).
	maxPortRecord = 4 << 20
)

var (
	bucketPorts   = []byte("ports")
	bucketLearned = []byte("learned")
)

// Errors of Protect and Unprotect (a malformed request is api.ErrInvalid).
var (
	// ErrNotProtected: no protected container by that name.
	ErrNotProtected = errors.New("not protected")
	// ErrProtected: the container is protected already (under another name).
	ErrProtected = errors.New("already protected")
)

// portRecord is what the store keeps of a protected container.
type portRecord struct {
	Target     resolve.Target `json:"target"`
	Iface      string         `json:"iface"`
	Mode       string         `json:"mode"`
	FailClosed bool           `json:"fail_closed"`
	Since      time.Time      `json:"since"`
	Wire       *wire.Record   `json:"wire"`
}

// protectedPort is a protected container: its wiring and its pair.
type protectedPort struct {
	rec  portRecord
	pair packetpath.Path
	insp *modeInspector
	// next is the inspector Deps.Inspector gave the pair (EachPair).
	next  dataplane.Inspector
	mode  atomic.Value // string
	addrs atomic.Pointer[[]netip.Addr]
	// eve is the workload its events name (workload), made once (under
	// eveMu, which also covers identifyCNI's change of rec.Target):
	// events share it and never change it.
	eve   atomic.Pointer[eve.Container]
	eveMu sync.Mutex
	// identTries counts identifyCNI's passes over it (mu held).
	identTries int

	cancel context.CancelFunc
	done   chan error // Run's result; nil until started
}

func (p *protectedPort) name() string { return p.rec.Target.Name }

func (p *protectedPort) protectionMode() string { return p.mode.Load().(string) }

// Deps is everything protection uses of the agent, named here instead of
// reached through the agent.
type Deps struct {
	StateDir string // where ports.db is
	Workers  int
	BPFFS    string // a pair's pins
	DataPath dataplane.Path
	RunDir   string // a pair's port records
	Log      *slog.Logger
	// NS is the ports' namespace, the host side of the containers.
	NS netns.NsHandle
	// Backend is the agent's dataplane backend: a container protected
	// under NFQUEUE gets a joint bridge (probe.BackendNFQueue).
	Backend    string
	InNS       func(func() error) error
	PinDir     func(inner string) string
	RemovePins func(dir string) error
	// Inspector is a new pair's view of the engine (the agent's timed
	// inspector naming the rules of final drops).
	Inspector func() dataplane.Inspector
	OnFlowEnd func(xdp.FlowKey, xdp.FlowValue, dataplane.EndReason)
	// Static is the agent's --inner/--outer pair (nil: none): the kernel
	// set (Kernel) covers it with the protected pairs.
	Static packetpath.Path
	// Rules is the running set (the mode inspector's ACL check), the
	// audit log, recompiles for changed addresses and promote's change;
	// nil in tests that need none of them.
	Rules Rules
	// Emit writes would-block alerts to the verdict log (nil: none).
	Emit func(*eve.Event) bool
	// Engine is what discover polls for live flows (nil: none).
	Engine Engine
	// Resolver finds containers by name, id, pid or namespace (one
	// without a ProcDir is resolve.Default).
	Resolver resolve.Resolver
}

// Rules is what protection needs of the agent's rule manager.
type Rules interface {
	// Running is the running compiled set, nil before there is one.
	Running() *rules.Compiled
	// RecompileContainers compiles the running set again with the
	// containers' current addresses (Protector.Addrs) and swaps it in.
	RecompileContainers() error
	// Audit appends e to the audit log, stamped with the running
	// version as rule changes are.
	Audit(e audit.Entry) error
	// Change changes the running set as the API's rule changes do
	// (compile, swap, store, audit): build makes the new set from the
	// running one, and its error says that set is invalid.
	Change(op string, who Caller, comment string, build func(running *rules.Set) (*rules.Set, []uint32, error)) (api.ChangeResult, error)
}

// Engine is what discovery reads of the DPI engine: its live flows.
type Engine interface {
	Flows(fn func(dpi.FlowInfo) bool)
}

// Caller is who asks for a change, as the audit log records it.
type Caller struct{ UID, GID, PID int }

// Protector keeps the agent's protected containers.
type Protector struct {
	d        Deps
	log      slogger
	db       *bolt.DB
	resolver resolve.Resolver

	mu    sync.Mutex // protect, unprotect, mode changes, clean-up
	ports map[string]*protectedPort
	// pending are the followed protections whose containers are not
	// protected now (follow.go); kicks asks the watch for a pass.
	pending map[string]*pendingPort
	kicks   chan struct{}
	// policies are the protections by selector (policy.go).
	policies map[string]*policy
	// list is ports as a slice, read without mu by the packet path's
	// helpers (kernel table, event annotation).
	list atomic.Pointer[[]*protectedPort]
	ctx  context.Context // the agent's run context once Run started
	wg   sync.WaitGroup

	learn *learner
	kset  *KernelSet
}

// slogger is the part of *slog.Logger the protector uses.
type slogger interface {
	Info(msg string, args ...any)
	Warn(msg string, args ...any)
	Error(msg string, args ...any)
}

// Open opens the protected set's store (ports.db in d.StateDir) and the
// learned flows; Restore takes the set back.
func Open(d Deps) (*Protector, error) {
	db, err := bolt.Open(filepath.Join(d.StateDir, portsDB), 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", filepath.Join(d.StateDir, portsDB), err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketPorts, bucketLearned, bucketPending, bucketPolicies} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("%s: %w", portsDB, err)
	}
	p := &Protector{d: d, log: d.Log, db: db, resolver: d.Resolver, ports: map[string]*protectedPort{},
		pending: map[string]*pendingPort{}, kicks: make(chan struct{}, 1), policies: map[string]*policy{}}
	if p.resolver.ProcDir == "" { // not given
		p.resolver = resolve.Default
	}
	// Selectors list the containers every pass: containerd is asked
	// about each one once, not every second.
	p.resolver = p.resolver.WithContainerdCache()
	p.list.Store(&[]*protectedPort{})
	p.kset = &KernelSet{static: d.Static, prot: p}
	p.learn = newLearner(p)
	if err := p.learn.load(); err != nil {
		d.Log.Warn("learned flows not loaded", "error", err)
	}
	return p, nil
}

// publish refreshes the lock-free list; mu held.
func (p *Protector) publish() {
	l := make([]*protectedPort, 0, len(p.ports))
	for _, pp := range p.ports {
		l = append(l, pp)
	}
	slices.SortFunc(l, func(a, b *protectedPort) int { return compareStrings(a.name(), b.name()) })
	p.list.Store(&l)
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// decodePortRecord reads a stored protected container back and checks
// it before anything acts on it: the file is another run's, and a record
// names links to delete, a pin directory to remove and a namespace file
// to open every second.
func decodePortRecord(key, v []byte) (portRecord, error) {
	var r portRecord
	if len(v) > maxPortRecord {
		return r, fmt.Errorf("%d bytes, at most %d", len(v), maxPortRecord)
	}
	if err := json.Unmarshal(v, &r); err != nil {
		return r, err
	}
	switch {
	case r.Wire == nil:
		return r, errors.New("no wiring recorded")
	case !rules.ValidContainerName(r.Target.Name) || string(key) != r.Target.Name:
		return r, fmt.Errorf("name %.64q under key %.64q", r.Target.Name, key)
	case !filepath.IsAbs(r.Target.Path) || filepath.Clean(r.Target.Path) != r.Target.Path:
		return r, fmt.Errorf("namespace path %.128q", r.Target.Path)
	case !slices.Contains(api.ProtectionModes, r.Mode):
		return r, fmt.Errorf("mode %.32q", r.Mode)
	case len(r.Iface) >= unix.IFNAMSIZ || !rules.ValidContainerName(r.Iface) || r.Iface != r.Wire.ContainerIface:
		return r, fmt.Errorf("interface %.32q", r.Iface)
	}
	if err := r.Wire.Validate(); err != nil {
		return r, err
	}
	return r, nil
}

func (p *Protector) save(rec portRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return p.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketPorts).Put([]byte(rec.Target.Name), b) })
}

func (p *Protector) forget(name string) error {
	return p.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketPorts).Delete([]byte(name)) })
}

// Restore takes back the protected set an earlier agent left: pairs of
// containers still there are adopted (their pins and wiring stay as
// they are, so their flows never stop); vanished ones are cleaned up.
func (p *Protector) Restore() error {
	var recs []portRecord
	file := filepath.Join(p.d.StateDir, portsDB)
	err := p.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPorts).ForEach(func(k, v []byte) error {
			r, err := decodePortRecord(k, v)
			if err == nil && len(recs) >= maxProtected {
				err = fmt.Errorf("more than %d protected containers", maxProtected)
			}
			if err != nil {
				// Left in place, wiring and all: acting on it could
				// break what it does not describe.
				p.log.Error("protected set: invalid record ignored, its container left as it is", "file", file,
					"key", fmt.Sprintf("%.64q", k), "error", err)
				return nil
			}
			recs = append(recs, r)
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("protected set %s: %w", file, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.loadPending(); err != nil {
		return fmt.Errorf("pending protections %s: %w", file, err)
	}
	if err := p.loadPolicies(); err != nil {
		return fmt.Errorf("selector policies %s: %w", file, err)
	}
	for _, r := range recs {
		if wire.Gone(p.d.NS, r.Wire) || r.Wire.Stage == wire.StageFound {
			p.log.Info("protected container gone while no agent ran: cleaning up", "name", r.Target.Name, "inner", r.Wire.Inner.Name)
			p.cleanupRecord(r)
			if follows(r.Target) {
				p.followLater(r)
			}
			if r.Target.Policy != "" {
				p.kick() // its selector's pass takes it back when it runs
			}
			continue
		}
		pp := &protectedPort{rec: r}
		pp.mode.Store(r.Mode)
		if r.Wire.Joint != nil && r.Wire.Stage == wire.StagePlugged {
			if err := wire.Cut(p.d.NS, pp.rec.Wire); err != nil {
				p.log.Error("finish protecting", "name", r.Target.Name, "error", err)
			}
			_ = p.save(pp.rec)
		}
		if (r.Wire.Joint != nil) != (p.d.Backend == probe.BackendNFQueue) {
			p.log.Warn("protected container keeps the dataplane it was protected with", "name", r.Target.Name,
				"joint", r.Wire.Joint != nil, "agent_mode", p.d.Backend)
		}
		if err := p.attach(pp); err != nil {
			p.log.Error("re-attach protected container", "name", r.Target.Name, "error", err)
			continue
		}
		if r.Wire.Stage == wire.StagePlugged { // the earlier agent stopped halfway
			if err := wire.Cut(p.d.NS, pp.rec.Wire); err != nil {
				p.log.Error("finish protecting", "name", r.Target.Name, "error", err)
			}
			_ = p.save(pp.rec)
		}
		p.ports[r.Target.Name] = pp
		p.refreshAddrs(pp)
		p.log.Info("protected container re-attached", "name", r.Target.Name, "inner", r.Wire.Inner.Name,
			"outer", r.Wire.Outer.Name, "mode", r.Mode)
	}
	p.publish()
	p.addressesChanged()
	return nil
}

// cleanupRecord removes what is left of a protected container whose
// namespace is gone: the pins (detaching from what ports remain) and the
// new veth pair; then its record.
func (p *Protector) cleanupRecord(r portRecord) {
	dir := p.d.PinDir(r.Wire.Inner.Name)
	if _, err := os.Stat(dir); err == nil {
		if err := p.d.RemovePins(dir); err != nil {
			p.log.Warn("remove pins of a vanished container", "name", r.Target.Name, "pin_dir", dir, "error", err)
			_ = os.RemoveAll(dir)
		}
	}
	if r.Wire.Stage == wire.StageCut && !wire.Gone(p.d.NS, r.Wire) {
		if err := wire.Uncut(p.d.NS, r.Wire); err != nil {
			p.log.Warn("uncut", "name", r.Target.Name, "error", err)
		}
	}
	if err := wire.Unplug(p.d.NS, r.Wire); err != nil {
		p.log.Warn("remove the new veth pair", "name", r.Target.Name, "error", err)
	}
	if err := p.forget(r.Target.Name); err != nil {
		p.log.Warn("forget protected container", "name", r.Target.Name, "error", err)
	}
}

// attach opens the pair on the record's ports (adopting pins an earlier
// agent left) with the current kernel ACL for its mode.
func (p *Protector) attach(pp *protectedPort) error {
	d := p.d
	pp.next = d.Inspector()
	pp.insp = newModeInspector(p, pp, pp.next)
	w := pp.rec.Wire
	aging := dataplane.AgingConfig{OnFlowEnd: d.OnFlowEnd}
	if err := d.InNS(func() error {
		if w.Joint != nil { // NFQUEUE between the ports of the joint bridge
			np, err := nfq.Open(nfq.Config{Inner: w.Inner.Name, Outer: w.Outer.Name, Workers: d.Workers,
				FailClosed: pp.rec.FailClosed, Inspector: pp.insp, Logger: d.Log, Aging: aging})
			if err == nil {
				pp.pair = packetpath.NFQueue{Pair: np}
			}
			return err
		}
		xp, err := dataplane.OpenPair(dataplane.PairConfig{Inner: w.Inner.Name, Outer: w.Outer.Name,
			PinDir: d.PinDir(w.Inner.Name), BPFFS: d.BPFFS, StateDir: d.RunDir, Path: d.DataPath,
			FailClosed: pp.rec.FailClosed, Workers: d.Workers, Inspector: pp.insp, Logger: d.Log, Aging: aging})
		if err == nil {
			pp.pair = packetpath.XDP{Pair: xp}
		}
		return err
	}); err != nil {
		return err
	}
	if err := p.kset.apply(pp); err != nil {
		_ = d.InNS(pp.pair.Detach)
		pp.pair = nil
		return err
	}
	return nil
}

// Start runs every pair until ctx is done, and watches the containers.
func (p *Protector) Start(ctx context.Context) {
	p.mu.Lock()
	p.ctx = ctx
	for _, pp := range p.ports {
		p.run(pp)
	}
	p.mu.Unlock()
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		p.watch(ctx)
	}()
	go func() {
		defer p.wg.Done()
		p.watchStarts(ctx)
	}()
}

// run starts pp's pair if the agent runs; mu held.
func (p *Protector) run(pp *protectedPort) {
	if p.ctx == nil || pp.done != nil || pp.pair == nil {
		return
	}
	ctx, cancel := context.WithCancel(p.ctx)
	pp.cancel, pp.done = cancel, make(chan error, 1)
	pair, done := pp.pair, pp.done
	go func() { done <- pair.Run(ctx) }()
}

// stop stops pp's pair's loop; mu held.
func (p *Protector) stop(pp *protectedPort) {
	if pp.done == nil {
		return
	}
	pp.cancel()
	if err := <-pp.done; err != nil {
		p.log.Warn("protected pair stopped with an error", "name", pp.name(), "error", err)
	}
	pp.done = nil
}

// watch cleans up containers that vanished and follows address changes.
func (p *Protector) watch(ctx context.Context) {
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.kicks:
		}
		p.check()
		p.identifyCNI(ctx)
		p.reconcile(ctx)
		p.applyPolicies(ctx)
		p.learn.poll()
	}
}

// check is one pass of watch.
func (p *Protector) check() {
	p.mu.Lock()
	defer p.mu.Unlock()
	changed := false
	for name, pp := range p.ports {
		if wire.Gone(p.d.NS, pp.rec.Wire) {
			p.log.Info("protected container gone: cleaning up", "name", name, "inner", pp.rec.Wire.Inner.Name,
				"outer", pp.rec.Wire.Outer.Name)
			p.stop(pp)
			if err := p.d.InNS(pp.pair.Detach); err != nil {
				// The container's side cannot be restored: it is gone.
				p.log.Info("detach from a vanished container", "name", name, "error", err)
			}
			pp.pair = nil
			p.cleanupRecord(pp.rec)
			delete(p.ports, name)
			p.audit("cleanup", name, name+": container gone", selfCaller(), nil)
			if follows(pp.rec.Target) {
				p.followLater(pp.rec)
			}
			changed = true
			continue
		}
		if p.refreshAddrs(pp) {
			changed = true
		}
	}
	if changed {
		p.publish()
		p.addressesChanged()
	}
}

// refreshAddrs reads the container's addresses; it reports a change.
func (p *Protector) refreshAddrs(pp *protectedPort) bool {
	addrs, err := p.containerAddrs(pp)
	if err != nil {
		return false
	}
	old := pp.addrs.Load()
	if old != nil && slices.Equal(*old, addrs) {
		return false
	}
	pp.addrs.Store(&addrs)
	return true
}

// containerAddrs reads the addresses of the container interface through
// its namespace file, checking it is still the namespace protected.
func (p *Protector) containerAddrs(pp *protectedPort) ([]netip.Addr, error) {
	h, err := resolve.OpenNetns(pp.rec.Target.Path)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(h), &st); err != nil || st.Ino != pp.rec.Wire.ContainerNSInode {
		return nil, fmt.Errorf("%s is not the protected namespace any more", pp.rec.Target.Path)
	}
	return wire.Addresses(h, pp.rec.Iface)
}

// addressesChanged recompiles what resolves container names; mu held.
func (p *Protector) addressesChanged() {
	if err := p.d.Rules.RecompileContainers(); err != nil {
		p.log.Error("recompile rules for changed container addresses", "error", err)
	}
}

// Protect puts a container inline, or changes its protection mode.
func (p *Protector) Protect(ctx context.Context, req api.ProtectRequest, who Caller) (st api.PortStatus, err error) {
	if req.Iface == "" {
		req.Iface = api.DefaultIface
	}
	if req.Mode == "" {
		req.Mode = api.ModeProtect
	}
	if !slices.Contains(api.ProtectionModes, req.Mode) {
		return st, fmt.Errorf("%w: mode %q: want discover, monitor or protect", api.ErrInvalid, req.Mode)
	}
	if len(req.Iface) >= unix.IFNAMSIZ || !rules.ValidContainerName(req.Iface) {
		return st, fmt.Errorf("%w: interface %q", api.ErrInvalid, req.Iface)
	}
	if req.Name != "" && !rules.ValidContainerName(req.Name) {
		return st, fmt.Errorf("%w: name %q: want letters, digits, _ . - (up to 128)", api.ErrInvalid, req.Name)
	}
	if strings.HasPrefix(req.Target, selectorPrefix) {
		return p.addPolicy(ctx, req, who)
	}
	// A protected container's name is a target too (for mode changes);
	// otherwise resolve it.
	t, known := p.byName(req.Target)
	if !known {
		t, err = p.resolver.Resolve(ctx, req.Target)
	}
	if err != nil {
		if errors.Is(err, resolve.ErrNoTarget) || errors.Is(err, resolve.ErrAmbiguous) || errors.Is(err, resolve.ErrNotNetns) ||
			errors.Is(err, resolve.ErrUnknownRuntime) || errors.Is(err, resolve.ErrNetworkMode) {
			err = fmt.Errorf("%w: %w", api.ErrInvalid, err)
		}
		return st, err
	}
	if req.Name != "" {
		t.Name = req.Name
	}
	if req.K8s != nil && !known {
		if err := checkK8s(req.K8s); err != nil {
			return st, err
		}
		t.K8s = req.K8s
	}
	if req.CNIContainerID != "" && !known {
		if !rules.ValidContainerName(req.CNIContainerID) { // CNI's ids: alphanumerics, - _ .
			return st, fmt.Errorf("%w: CNI container id %.64q", api.ErrInvalid, req.CNIContainerID)
		}
		t.Kind = "cni"
		if t.Runtime == "" {
			t.ID = req.CNIContainerID
		}
	}
	if !rules.ValidContainerName(t.Name) { // a netns name may be anything ip netns accepts
		return st, fmt.Errorf("%w: target %q: name %.64q cannot be used in rules: give a --name", api.ErrInvalid, t.Spec, t.Name)
	}
	defer func() {
		detail := fmt.Sprintf("%s (%s) iface %s mode %s", t.Spec, t.Name, req.Iface, req.Mode)
		if req.FailClosed {
			detail += " fail-closed"
		}
		op := "protect"
		if st.Changed == "mode" {
			op = "mode"
		}
		p.audit(op, t.Name, detail, who, err)
	}()

	cns, err := resolve.OpenNetns(t.Path)
	if err != nil {
		return st, fmt.Errorf("%w: target %q: %v", api.ErrInvalid, t.Spec, err)
	}
	defer cns.Close()
	var cst unix.Stat_t
	if err := unix.Fstat(int(cns), &cst); err != nil {
		return st, err
	}
	if cns.Equal(p.d.NS) {
		return st, fmt.Errorf("%w: target %q is the agent's own network namespace, not a container's", api.ErrInvalid, t.Spec)
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	for name, pp := range p.ports {
		if pp.rec.Wire.ContainerNSInode == cst.Ino && pp.rec.Iface == req.Iface || name == t.Name {
			if name != t.Name || pp.rec.Wire.ContainerNSInode != cst.Ino {
				return st, fmt.Errorf("%w: %s %s is protected as %s", ErrProtected, t.Spec, req.Iface, name)
			}
			st = p.status(pp)
			if pp.protectionMode() != req.Mode {
				if err := p.setMode(pp, req.Mode); err != nil {
					return st, err
				}
				st = p.status(pp)
				st.Changed = "mode"
			}
			return st, nil
		}
	}
	if _, waits := p.pending[t.Name]; !waits && len(p.ports)+len(p.pending) >= maxProtected {
		return st, fmt.Errorf("%w: %d containers protected or waited for, at most %d", api.ErrInvalid,
			len(p.ports)+len(p.pending), maxProtected)
	}
	pp, err := p.protect(t, cns, req)
	if err != nil {
		return st, err
	}
	p.dropPending(t.Name) // protected by hand before it came back
	st = p.status(pp)
	st.Changed = "protected"
	return st, nil
}

// Has reports whether a container is protected as name.
func (p *Protector) Has(name string) bool {
	_, ok := p.byName(name)
	return ok
}

// byName returns the target of the container protected as name.
func (p *Protector) byName(name string) (resolve.Target, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pp, ok := p.ports[name]; ok {
		return pp.rec.Target, true
	}
	return resolve.Target{}, false
}

// protect wires a new container in; mu held. Any failure puts back what
// it changed.
func (p *Protector) protect(t resolve.Target, cns netns.NsHandle, req api.ProtectRequest) (_ *protectedPort, err error) {
	rec, err := wire.Find(p.d.NS, cns, req.Iface)
	if err != nil {
		// Say what the container has instead (a network mode none, a
		// user-mode stack's tap, another interface name).
		return nil, fmt.Errorf("%w: %w (interfaces in the container: %s)", api.ErrInvalid, err,
			strings.Join(resolve.Interfaces(cns), ", "))
	}
	// NFQUEUE inspects in the kernel's forwarding path: the ports are
	// joined by a bridge of their own (wire.Record.Joined).
	rec.Joined = p.d.Backend == probe.BackendNFQueue
	pp := &protectedPort{rec: portRecord{Target: t, Iface: req.Iface, Mode: req.Mode, FailClosed: req.FailClosed,
		Since: time.Now().UTC(), Wire: rec}}
	pp.mode.Store(req.Mode)
	if err := wire.Plug(p.d.NS, rec); err != nil {
		return nil, err
	}
	defer func() {
		if err == nil {
			return
		}
		if uerr := wire.Uncut(p.d.NS, rec); uerr != nil {
			p.log.Error("protect failed; put the wiring back", "error", uerr)
		}
		if pp.pair != nil {
			_ = p.d.InNS(pp.pair.Detach)
		}
		if uerr := wire.Unplug(p.d.NS, rec); uerr != nil {
			p.log.Error("protect failed; remove the new veth pair", "error", uerr)
		}
		_ = p.forget(t.Name)
	}()
	// Recorded before anything the container uses changes, so that a
	// crash from here on is finished or undone by the next agent.
	if err := p.save(pp.rec); err != nil {
		return nil, fmt.Errorf("store protected container: %w", err)
	}
	// XDP attaches first, so that the cut is seamless. NFQUEUE needs
	// both ports on the joint bridge: cut first (the joint forwards
	// uninspected until the queue rules are in, milliseconds).
	if rec.Joint != nil {
		if err := wire.Cut(p.d.NS, rec); err != nil {
			return nil, err
		}
	}
	if err := p.attach(pp); err != nil {
		return nil, err
	}
	if rec.Stage != wire.StageCut {
		if err := wire.Cut(p.d.NS, rec); err != nil {
			return nil, err
		}
	}
	if err := p.save(pp.rec); err != nil {
		return nil, fmt.Errorf("store protected container: %w", err)
	}
	p.ports[t.Name] = pp
	p.refreshAddrs(pp)
	p.publish()
	p.run(pp)
	p.addressesChanged()
	p.log.Info("container protected", "name", t.Name, "target", t.Spec, "inner", rec.Inner.Name, "outer", rec.Outer.Name,
		"place", rec.Place.Name, "wiring", wiringName(rec), "mode", req.Mode, "fail_closed", req.FailClosed)
	return pp, nil
}

// setMode changes a live port's protection mode: the kernel ACL for the
// mode, then the inspector. Leaving monitor or discover for protect sends
// the flows they let through back to inspection.
func (p *Protector) setMode(pp *protectedPort, mode string) error {
	old := pp.protectionMode()
	pp.mode.Store(mode)
	if err := p.kset.apply(pp); err != nil {
		pp.mode.Store(old)
		_ = p.kset.apply(pp)
		return err
	}
	if mode == api.ModeProtect && pp.pair != nil {
		n := revokeAllows(pp.pair.Kernel())
		pp.pair.ForgetVerdicts()
		p.log.Info("protection mode changed", "name", pp.name(), "from", old, "to", mode, "revoked", n)
	} else {
		p.log.Info("protection mode changed", "name", pp.name(), "from", old, "to", mode)
	}
	pp.rec.Mode = mode
	return p.save(pp.rec)
}

// revokeAllows sends every ALLOW verdict of prog back to inspection.
func revokeAllows(prog packetpath.Kernel) int {
	if prog == nil {
		return 0
	}
	var keys []xdp.FlowKey
	_ = prog.Flows(func(k xdp.FlowKey, v xdp.FlowValue) bool {
		if v.Verdict == xdp.VerdictAllow {
			keys = append(keys, k)
		}
		return true
	})
	n := 0
	for _, k := range keys {
		if prog.SetFlow(k, xdp.VerdictInspect, 0) == nil {
			n++
		}
	}
	return n
}

// Unprotect takes a container out: its wiring is put back exactly.
func (p *Protector) Unprotect(name string, who Caller) (st api.PortStatus, err error) {
	defer func() { p.audit("unprotect", name, name, who, err) }()
	p.mu.Lock()
	defer p.mu.Unlock()
	if strings.HasPrefix(name, selectorPrefix) {
		return p.removePolicy(name)
	}
	pp, ok := p.ports[name]
	if !ok {
		pp = p.findByTarget(name)
	}
	if pp == nil {
		for pname, pend := range p.pending {
			if pname == name || pend.Target.Spec == name {
				st = pendingStatus(pend)
				p.dropPending(pname)
				st.State, st.Changed = "unprotected", "unprotected"
				p.log.Info("pending protection removed", "name", pname)
				return st, nil
			}
		}
		return st, fmt.Errorf("%s: %w", name, ErrNotProtected)
	}
	if pol := pp.rec.Target.Policy; pol != "" {
		return p.status(pp), fmt.Errorf("%w: %s is protected by %s%s: unprotect that", api.ErrInvalid, pp.name(), selectorPrefix, pol)
	}
	return p.unprotect(pp)
}

// unprotect takes pp out; mu held.
func (p *Protector) unprotect(pp *protectedPort) (st api.PortStatus, err error) {
	name := pp.name()
	st = p.status(pp)
	rec := pp.rec.Wire
	if err := wire.Uncut(p.d.NS, rec); err != nil && !errors.Is(err, wire.ErrGone) {
		return st, err
	}
	_ = p.save(pp.rec)
	p.stop(pp)
	if pp.pair != nil {
		if err := p.d.InNS(pp.pair.Detach); err != nil {
			p.log.Warn("detach protected pair", "name", name, "error", err)
		}
		pp.pair = nil
	}
	if err := wire.Unplug(p.d.NS, rec); err != nil {
		return st, err
	}
	delete(p.ports, pp.name())
	if err := p.forget(pp.name()); err != nil {
		p.log.Warn("forget protected container", "name", name, "error", err)
	}
	p.publish()
	p.addressesChanged()
	st.State, st.Changed = "unprotected", "unprotected"
	p.log.Info("container unprotected", "name", pp.name(), "inner", rec.Inner.Name)
	return st, nil
}

// findByTarget finds a port by the target spec it was protected with.
func (p *Protector) findByTarget(spec string) *protectedPort {
	for _, pp := range p.ports {
		if pp.rec.Target.Spec == spec {
			return pp
		}
	}
	return nil
}

// Ports lists the protected containers.
func (p *Protector) Ports() api.PortList {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := api.PortList{Ports: []api.PortStatus{}}
	for _, pp := range *p.list.Load() {
		out.Ports = append(out.Ports, p.status(pp))
	}
	for _, pend := range p.pending {
		out.Ports = append(out.Ports, pendingStatus(pend))
	}
	for _, pol := range p.policies {
		out.Ports = append(out.Ports, p.policyStatus(pol))
	}
	slices.SortFunc(out.Ports, func(a, b api.PortStatus) int { return compareStrings(a.Name, b.Name) })
	return out
}

func wiringName(r *wire.Record) string {
	if r.Master != nil {
		return "bridge " + r.Master.Name
	}
	return "routed"
}

func (p *Protector) status(pp *protectedPort) api.PortStatus {
	r := pp.rec
	st := api.PortStatus{Name: r.Target.Name, Target: r.Target.Spec, Kind: r.Target.Kind, Iface: r.Iface,
		Runtime: r.Target.Runtime, ContainerID: r.Target.ID, Image: r.Target.Image, Labels: r.Target.Labels, K8s: r.Target.K8s,
		Follows: follows(r.Target), Policy: r.Target.Policy,
		Inner: r.Wire.Inner.Name, Outer: r.Wire.Outer.Name, Place: r.Wire.Place.Name, Wiring: wiringName(r.Wire),
		Mode: pp.protectionMode(), FailClosed: r.FailClosed, Since: r.Since, State: "stopped", Addrs: []string{}}
	if a := pp.addrs.Load(); a != nil {
		for _, ad := range *a {
			st.Addrs = append(st.Addrs, ad.String())
		}
	}
	if pp.done != nil {
		st.State = "running"
	}
	if pp.pair != nil {
		st.Dataplane = pp.pair.Backend()
		ps, ks, kerr := pp.pair.Stats()
		for _, w := range ps.Workers {
			st.Counters.Inspected += w.Inspected
			st.Counters.Forwarded += w.Forwarded
			st.Counters.Dropped += w.Dropped
		}
		if kerr == nil {
			st.Counters.FastAllow, st.Counters.FastDrop = ks.FastAllow, ks.FastDrop
			st.Counters.ACLDrop, st.Counters.ToUser = ks.ACLDrop, ks.ToUser
		}
	}
	return st
}

// audit records a protect-set change in the audit log, like rule changes.
func (p *Protector) audit(op, name, detail string, who Caller, err error) {
	if p.d.Rules == nil {
		return
	}
	e := audit.Entry{UID: who.UID, GID: who.GID, PID: who.PID, Op: op, Detail: detail, OK: err == nil}
	if err != nil {
		e.Error = err.Error()
	}
	if aerr := p.d.Rules.Audit(e); aerr != nil {
		p.log.Error("audit", "op", op, "name", name, "error", aerr)
	}
}

// selfCaller is the agent itself, for changes nobody asked for.
func selfCaller() Caller { return Caller{UID: os.Getuid(), GID: os.Getgid(), PID: os.Getpid()} }

// Close stops the pairs and keeps them attached, with their wiring: the
// fail policy applies until the next agent adopts them (unprotect takes
// a container out for good).
func (p *Protector) Close() error {
	p.mu.Lock()
	var errs []error
	for _, pp := range p.ports {
		p.stop(pp)
		if pp.pair != nil {
			errs = append(errs, p.d.InNS(pp.pair.Close))
			pp.pair = nil
		}
	}
	p.mu.Unlock()
	p.wg.Wait()
	p.learn.flush()
	errs = append(errs, p.db.Close())
	return errors.Join(errs...)
}

// portsOf returns the protected ports without locking (packet path).
func (p *Protector) portsOf() []*protectedPort {
	if p == nil {
		return nil
	}
	return *p.list.Load()
}

// Count is the number of protected containers; a nil Protector has none.
func (p *Protector) Count() int { return len(p.portsOf()) }

// EachPair calls fn with every protected container's pair (nil while it
// is not attached) and the inspector Deps.Inspector gave it, without the
// protector's lock: a protect or unprotect in progress does not hold up
// a status read. A nil Protector has none.
func (p *Protector) EachPair(fn func(packetpath.Path, dataplane.Inspector)) {
	for _, pp := range p.portsOf() {
		fn(pp.pair, pp.next)
	}
}

// Kernel is the kernel side of every pair the agent runs (Deps.Static
// and the protected containers'): what the rule manager writes.
func (p *Protector) Kernel() *KernelSet { return p.kset }

// Learned lists the flows discovery learned, oldest first.
func (p *Protector) Learned() api.LearnedList { return p.learn.list() }

// Promote turns learned flows into allow rules in the running set, each
// container's allow rules followed by its default deny (learn.go).
func (p *Protector) Promote(req api.PromoteRequest, who Caller) (api.ChangeResult, error) {
	return p.learn.promote(req, who)
}

// Limits of a ProtectRequest's pod (Kubernetes' own: DNS names, label
// keys with a prefix, label values).
const (
	maxK8sName       = 253
	maxK8sLabelKey   = 317
	maxK8sLabelValue = 63
)

// checkK8s bounds a request's pod reference: events carry it.
func checkK8s(k *eve.K8s) error {
	if k.Namespace == "" || len(k.Namespace) > maxK8sName || k.Pod == "" || len(k.Pod) > maxK8sName || len(k.Labels) > api.MaxK8sLabels {
		return fmt.Errorf("%w: k8s: namespace and pod of 1-%d bytes and at most %d labels", api.ErrInvalid, maxK8sName, api.MaxK8sLabels)
	}
	for key, v := range k.Labels {
		if key == "" || len(key) > maxK8sLabelKey || len(v) > maxK8sLabelValue {
			return fmt.Errorf("%w: k8s: label %.64q: key 1-%d bytes, value at most %d", api.ErrInvalid, key, maxK8sLabelKey, maxK8sLabelValue)
		}
	}
	return nil
}
