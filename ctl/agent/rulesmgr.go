package agent

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"path/filepath"

	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/ctl/audit"
	"github.com/deepwall/deepwall/dpi"
	"github.com/deepwall/deepwall/rules"
	"github.com/deepwall/deepwall/rules/store"
	"github.com/deepwall/deepwall/xdp"
)

const (
	// revokeSettle is how long after the swap the second revocation pass
	// runs: a worker that was inside Inspect with the old rules when they
	// were swapped may still write a final verdict the old rules decided.
	revokeSettle = 100 * time.Millisecond
)

// runningSetName names the running set in rule positions.
const runningSetName = "running-rules"

// Errors of rule changes (a malformed request is api.ErrInvalid, a rule
// set that does not validate a *validationError); the API server alone
// maps them to status codes.
var (
	// errNoRule: no rule with that id.
	errNoRule = errors.New("no such rule")
)

// flowTable is the kernel side of a rule change: the XDP ACL and the
// flow verdict map (*xdp.Program).
type flowTable interface {
	SetACL(xdp.ACL) error
	Flows(fn func(xdp.FlowKey, xdp.FlowValue) bool) error
	SetFlow(k xdp.FlowKey, v xdp.Verdict, ruleID uint32) error
}

// ruleState is the running rule set.
type ruleState struct {
	set      *rules.Set
	version  store.Version
	compiled *rules.Compiled
	l7       [32]byte // hash of the enabled layer-7 rules: what inspection decides with
	applied  time.Time
}

func (s *ruleState) info() api.RuleSetInfo {
	info := api.RuleSetInfo{Version: s.version.Number, Hash: hexHash(s.version.Hash), Rules: len(s.set.Rules),
		Disabled: len(s.set.Rules) - len(s.set.Enabled()), ACLDefault: s.set.ACLDefault.String(),
		Stored: s.version.Time, Applied: s.applied, Comment: s.version.Comment}
	if s.compiled != nil {
		info.ACL, info.Layer7 = len(s.compiled.ACL), len(s.compiled.L7)
	}
	return info
}

// l7Hash identifies what the engine decides with: the enabled layer-7
// rules in order. A change that leaves it alone (an ACL edit, a disabled
// rule) cannot change a layer-7 verdict.
func l7Hash(c *rules.Compiled) [32]byte {
	return (&rules.Set{Rules: c.L7}).Hash()
}

// ruleManager owns the rule set of a running agent: the store, the
// compiled set, the swap into the engine and the kernel, and the audit
// trail. Changes are serialised by mu; readers use cur without locking.
type ruleManager struct {
	mu        sync.Mutex
	store     *store.Store
	audit     *audit.Log
	cacheFile string
	engine    dpiEngine
	kernel    flowTable // nil until the pair is open
	// forget makes the dataplane drop what it remembers of final
	// verdicts for packets in flight (dataplane.Pair.ForgetVerdicts); it
	// runs after every revocation pass, once the kernel's verdicts are
	// revoked, so no in-flight packet of a revoked flow escapes the
	// engine. nil: nothing to forget.
	forget func()
	// containers resolves container selectors (protect.Protector.Addrs);
	// nil: they match nothing.
	containers rules.ContainerAddrs
	log        *slog.Logger
	settle     time.Duration
	cur        atomic.Pointer[ruleState]
	// reclaim gives the memory a change freed back to the kernel
	// (reclaimLater); nil until the first change.
	reclaim *time.Timer
	// changes counts the attempts appendAudit recorded: [0] applied
	// (or unchanged), [1] refused.
	changes [2]atomic.Uint64
}

// newRuleManager returns the rule manager of a store and an audit log,
// keeping the compiled-rules cache and the audit chain's head in
// stateDir. The engine and the kernel side join once they are open (the
// engine starts with the set loadInitial chooses).
func newRuleManager(store *store.Store, al *audit.Log, stateDir string, log *slog.Logger) *ruleManager {
	if al != nil {
		al.RecordHead(filepath.Join(stateDir, audit.HeadFile))
	}
	return &ruleManager{store: store, audit: al,
		cacheFile: filepath.Join(stateDir, CompiledCache), log: log, settle: revokeSettle}
}

// caller is who asks for a change (from SO_PEERCRED).
type caller struct {
	UID, GID, PID int
	Groups        []int
}

// validationError is a rule set that does not validate or compile.
type validationError struct{ err error }

func (e *validationError) Error() string { return e.err.Error() }
func (e *validationError) Unwrap() error { return e.err }

// loadInitial decides the rule set the agent starts with: file (replacing
// the stored set), else the stored set, else the default pack. It stores
// it as needed and compiles it. who is the agent's own identity for the
// audit log.
func (m *ruleManager) loadInitial(file string, who caller) (*ruleState, error) {
	var set *rules.Set
	var op, comment string
	_, cur, err := m.store.Current()
	switch {
	case file != "":
		if set, err = rules.ParseFile(file); err != nil {
			return nil, fmt.Errorf("rules %s: %w", file, err)
		}
		op, comment = "start --rules", "deepwall run --rules "+file
	case err == nil:
		set, cur, err = m.store.Current()
		if err != nil {
			return nil, err
		}
	case errors.Is(err, store.ErrNoRules):
		if set, err = rules.DefaultPack(); err != nil {
			return nil, fmt.Errorf("default pack: %w", err)
		}
		op, comment = "start default-pack", "default pack (empty store)"
	default:
		return nil, err
	}
	c, err := m.compile(set)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	st := &ruleState{set: set, compiled: c, version: cur, l7: l7Hash(c), applied: time.Now().UTC()}
	if op != "" {
		v, changed, err := m.store.Put(set, comment)
		if err != nil {
			c.Close()
			return nil, err
		}
		st.version = v
		if changed {
			e := audit.Entry{UID: who.UID, GID: who.GID, PID: who.PID, Op: op, FromVersion: cur.Number,
				ToVersion: v.Number, RulesHash: hexHash(v.Hash), Detail: comment, OK: true}
			if err := m.appendAudit(e); err != nil {
				c.Close()
				return nil, err
			}
		}
	}
	m.cur.Store(st)
	return st, nil
}

// compile compiles set, using and refreshing the cache file.
func (m *ruleManager) compile(set *rules.Set) (*rules.Compiled, error) {
	c, _, err := m.loadOrCompile(set)
	if errors.Is(err, rules.ErrCacheWrite) {
		m.log.Warn("compiled rules not cached", "error", err)
		err = nil
	}
	return c, err
}

// attachKernel installs the running set's ACL on the opened pair and
// revokes fast-path verdicts an earlier agent left (they were decided by
// rules this agent may not share, and it has no state for those flows).
func (m *ruleManager) attachKernel(k flowTable) (revoked int, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.cur.Load()
	acl, err := kernelACL(st.compiled)
	if err != nil {
		return 0, err
	}
	if err := k.SetACL(acl); err != nil {
		return 0, fmt.Errorf("set kernel acl: %w", err)
	}
	m.kernel = k
	return m.revoke(true, st.compiled), nil
}

// current returns the running rule set.
func (m *ruleManager) current() *ruleState { return m.cur.Load() }

// Apply replaces the whole rule set with the request's.
func (m *ruleManager) Apply(req *api.RulesRequest, who caller) (api.ChangeResult, error) {
	return m.change("apply", who, req.Comment, func(cur *ruleState) (*rules.Set, []uint32, error) {
		fsys, err := req.FS()
		if err != nil {
			return nil, nil, err
		}
		set, err := rules.ParseFS(fsys, req.Main)
		if err != nil {
			return nil, nil, &validationError{err}
		}
		return set, nil, nil
	})
}

// Add appends the request's rules to the running set.
func (m *ruleManager) Add(req *api.RulesRequest, who caller) (api.ChangeResult, error) {
	return m.change("add", who, req.Comment, func(cur *ruleState) (*rules.Set, []uint32, error) {
		fsys, err := req.FS()
		if err != nil {
			return nil, nil, err
		}
		add, err := rules.ParseFS(fsys, req.Main)
		if err != nil {
			return nil, nil, &validationError{err}
		}
		if len(add.Rules) == 0 {
			return nil, nil, &validationError{fmt.Errorf("%s holds no rules", req.Main)}
		}
		if add.ACLDefault != cur.set.ACLDefault && add.ACLDefault != rules.ActionAllow {
			return nil, nil, &validationError{fmt.Errorf("%s sets acl_default: %s; the default changes only with rules apply", req.Main, add.ACLDefault)}
		}
		merged := &rules.Set{Rules: append(slices.Clip(cur.set.Rules), add.Rules...), ACLDefault: cur.set.ACLDefault}
		if err := merged.Validate(); err != nil {
			return nil, nil, &validationError{err}
		}
		ids := make([]uint32, len(add.Rules))
		for i, r := range add.Rules {
			ids[i] = r.ID
		}
		return merged, ids, nil
	})
}

// Delete removes the rule with id from the running set.
func (m *ruleManager) Delete(id uint32, comment string, who caller) (api.ChangeResult, error) {
	return m.change("delete", who, comment, func(cur *ruleState) (*rules.Set, []uint32, error) {
		i := slices.IndexFunc(cur.set.Rules, func(r *rules.Rule) bool { return r.ID == id })
		if i < 0 {
			return nil, nil, fmt.Errorf("rule %d: %w", id, errNoRule)
		}
		rs := slices.Delete(slices.Clone(cur.set.Rules), i, i+1)
		return &rules.Set{Rules: rs, ACLDefault: cur.set.ACLDefault}, []uint32{id}, nil
	})
}

// swapIn installs acl in the kernel, then c in the engine: each side
// swaps atomically on its own, so every packet meets one whole ACL and one
// whole rule set. When the engine refuses c the kernel gets oldACL back.
// On failure c is closed, and aclRefused says whether the kernel refused
// the ACL (a property of the rules) rather than the engine the set.
func (m *ruleManager) swapIn(c *rules.Compiled, acl, oldACL xdp.ACL) (aclRefused bool, err error) {
	if m.kernel != nil {
		if err := m.kernel.SetACL(acl); err != nil {
			c.Close()
			return true, fmt.Errorf("kernel acl: %w", err)
		}
	}
	if err := m.engine.SetRules(c); err != nil {
		c.Close()
		m.setACL(oldACL)
		return false, fmt.Errorf("swap rules into the engine: %w", err)
	}
	return false, nil
}

// setACL puts a running set's ACL back into the kernel (a rollback: the
// ACL was in the kernel before, so a failure is only logged).
func (m *ruleManager) setACL(acl xdp.ACL) {
	if m.kernel == nil {
		return
	}
	if err := m.kernel.SetACL(acl); err != nil {
		m.log.Error("roll back the kernel acl", "error", err)
	}
}

// change runs one rule change: build the new set from the running one,
// compile it beside the old (prepare), swap it into the engine and the
// kernel ACL, store it, audit it and revoke fast-path verdicts it could
// change (commit). Any failure before the store write leaves everything
// as it was; later failures roll the engine and the ACL back (rollback).
// Every attempt is audited, refused ones too.
func (m *ruleManager) change(op string, who caller, comment string, build func(*ruleState) (*rules.Set, []uint32, error)) (res api.ChangeResult, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.cur.Load()
	res = api.ChangeResult{Op: op, FromVersion: cur.version.Number, ToVersion: cur.version.Number,
		Hash: hexHash(cur.version.Hash), Rules: len(cur.set.Rules)}
	entry := audit.Entry{UID: who.UID, GID: who.GID, PID: who.PID, Op: op, FromVersion: cur.version.Number,
		ToVersion: cur.version.Number, Detail: comment}
	defer func() {
		if err == nil {
			return
		}
		entry.Error = err.Error() // audit.Log.Append bounds it
		m.reclaimLater()          // a refused set may have been compiled
		if aerr := m.appendAudit(entry); aerr != nil {
			m.log.Error("audit a refused rule change", "error", aerr)
		}
	}()

	set, ids, err := build(cur)
	if err != nil {
		return res, err
	}
	// Run the set as the store will give it back: positions then name the
	// running set, not the files of one request.
	if set, err = rules.Parse(runningSetName, set.Canonical()); err != nil {
		return res, fmt.Errorf("re-read the new rule set: %w", err)
	}
	res.IDs = ids
	if len(ids) > 0 {
		entry.Detail = audit.RuleIDs(ids) // bounded whatever the change's size
		if comment != "" {
			entry.Detail += ": " + comment
		}
	}
	if bytes.Equal(set.Canonical(), cur.set.Canonical()) {
		entry.OK, entry.RulesHash = true, res.Hash
		entry.Detail = joinDetail(entry.Detail, "unchanged")
		if err := m.appendAudit(entry); err != nil {
			return res, err
		}
		return res, nil
	}
	if comment == "" {
		comment = op
		if len(ids) > 0 {
			// Bounded as the audit detail, well within store.MaxComment.
			comment = op + " " + strings.TrimPrefix(audit.RuleIDs(ids), "rules ")
		}
	}
	ch, err := m.prepare(cur, set)
	if err != nil {
		return res, err
	}
	res.CompileSecs, res.Cached = ch.compileSecs, ch.cached
	return m.commit(ch, res, &entry, op, comment, who)
}

// ruleChange is a prepared change: the new set compiled beside the
// running one, with what a rollback needs.
type ruleChange struct {
	cur         *ruleState
	set         *rules.Set
	c           *rules.Compiled
	acl, oldACL xdp.ACL
	// The engine owns the running compiled set and closes it when it is
	// replaced, so it is kept serialised: a rollback restores it from
	// here. oldSet is what was compiled: the stored set with its
	// container selectors resolved, which the blob's key names.
	oldBlob     []byte
	oldSet      *rules.Set
	compileSecs float64
	cached      bool
}

// prepare compiles set and its kernel ACL beside the running state cur;
// nothing running changes. mu held.
func (m *ruleManager) prepare(cur *ruleState, set *rules.Set) (*ruleChange, error) {
	ch := &ruleChange{cur: cur, set: set, oldSet: cur.compiled.Set}
	blob, err := cur.compiled.MarshalBinary()
	if err != nil {
		m.log.Warn("serialise the running rules for rollback", "error", err)
	}
	ch.oldBlob = blob
	start := time.Now()
	c, cached, err := m.loadOrCompile(set)
	if errors.Is(err, rules.ErrCacheWrite) {
		m.log.Warn("compiled rules not cached", "error", err)
		err = nil
	}
	if err != nil {
		return nil, &validationError{err}
	}
	ch.c, ch.compileSecs, ch.cached = c, time.Since(start).Seconds(), cached
	if ch.acl, err = kernelACL(c); err != nil {
		c.Close()
		return nil, &validationError{err}
	}
	// The rollback ACL; the running set built it before, so an error
	// here is a bug, and nothing is swapped rather than risk an empty ACL.
	if ch.oldACL, err = kernelACL(cur.compiled); err != nil {
		c.Close()
		return nil, fmt.Errorf("the running rules' acl: %w", err)
	}
	return ch, nil
}

// commit swaps a prepared change in, stores and audits it, and revokes
// the fast-path verdicts it could change; a failure after the swap rolls
// back. mu held.
func (m *ruleManager) commit(ch *ruleChange, res api.ChangeResult, entry *audit.Entry, op, comment string, who caller) (api.ChangeResult, error) {
	cur, set, c := ch.cur, ch.set, ch.c
	if aclRefused, err := m.swapIn(c, ch.acl, ch.oldACL); err != nil {
		if aclRefused {
			err = &validationError{err}
		}
		return res, err
	}
	v, _, err := m.store.Put(set, comment)
	if err != nil {
		m.rollback(ch)
		return res, err
	}
	entry.ToVersion, entry.RulesHash, entry.OK = v.Number, hexHash(v.Hash), true
	if err := m.appendAudit(*entry); err != nil {
		// The change cannot be recorded, so it must not stand.
		m.rollback(ch)
		if _, _, perr := m.store.Put(cur.set, "rollback: audit log write failed"); perr != nil {
			m.log.Error("roll back the rule store", "error", perr)
		}
		entry.OK, entry.ToVersion = false, cur.version.Number
		return res, fmt.Errorf("rules not changed: %w", err)
	}
	next := &ruleState{set: set, version: v, compiled: c, l7: l7Hash(c), applied: time.Now().UTC()}
	m.cur.Store(next)
	l7Changed := next.l7 != cur.l7
	res.Revoked = m.revoke(l7Changed, c)
	if m.settle > 0 && m.kernel != nil && l7Changed {
		time.Sleep(m.settle)
		res.Revoked += m.revoke(l7Changed, c)
	}
	res.Changed, res.ToVersion, res.Hash, res.Rules = true, v.Number, hexHash(v.Hash), len(set.Rules)
	m.reclaimLater()
	m.log.Info("rules changed", "op", op, "from", cur.version.Number, "to", v.Number, "rules", len(set.Rules),
		"revoked", res.Revoked, "uid", who.UID, "pid", who.PID)
	return res, nil
}

// rollback puts the running set of a swapped-in change back into the
// engine (rebuilt from its serialisation: the engine freed the running
// copy) and the kernel. mu held.
func (m *ruleManager) rollback(ch *ruleChange) {
	old, err := restoreCompiled(ch.oldSet, ch.oldBlob)
	if err == nil {
		if err = m.engine.SetRules(old); err != nil {
			old.Close()
		}
	}
	if err != nil {
		// Should not happen: the old set compiled before. Say what runs.
		m.log.Error("roll back the engine rules: the engine keeps the new, unstored set", "error", err)
		st := *ch.cur
		st.set, st.compiled, st.l7 = ch.set, ch.c, l7Hash(ch.c)
		st.version.Comment = "rollback failed: running an unstored set"
		m.cur.Store(&st)
		return
	}
	m.setACL(ch.oldACL)
	st := *ch.cur
	st.compiled = old
	m.cur.Store(&st)
}

// restoreCompiled rebuilds a compiled set from its serialised form, or
// compiles it again when that is missing or unusable.
func restoreCompiled(set *rules.Set, blob []byte) (*rules.Compiled, error) {
	if blob != nil {
		if c, err := rules.UnmarshalCompiled(set, blob); err == nil {
			return c, nil
		}
	}
	return rules.Compile(set)
}

func joinDetail(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// revoke sends back to inspection the fast-path verdicts that a change
// to next could change: every ALLOW when the layer-7 rules changed (a new
// signature may match the flow's next bytes; also when the rules before
// are unknown: verdicts left by an earlier agent), and every DROP decided
// by a rule that no longer blocks. ACL edits need nothing here: the XDP
// program applies the ACL before the flow map, to bypassed flows too. It
// returns how many entries it changed.
func (m *ruleManager) revoke(l7Changed bool, next *rules.Compiled) int {
	if m.kernel == nil {
		return 0
	}
	stillBlocks := func(id uint32) bool {
		r := next.Set.Rule(id)
		return r != nil && !r.Disabled && r.Action == rules.ActionBlock
	}
	var keys, anonDrops []xdp.FlowKey
	err := m.kernel.Flows(func(k xdp.FlowKey, v xdp.FlowValue) bool {
		switch {
		case v.Verdict == xdp.VerdictAllow && l7Changed:
			keys = append(keys, k)
		case v.Verdict == xdp.VerdictDrop && v.RuleID != 0:
			if !stillBlocks(v.RuleID) {
				keys = append(keys, k)
			}
		case v.Verdict == xdp.VerdictDrop:
			anonDrops = append(anonDrops, k)
		}
		return true
	})
	if err != nil {
		m.log.Warn("revoke verdicts: iterate the flow map", "error", err)
	}
	if len(anonDrops) > 0 && m.engine != nil {
		// The kernel entry does not name the rule (the dataplane writes
		// none); the engine remembers which rule blocked the flow. A drop
		// no rule explains (evasion, malformed) stays.
		byRule := make(map[xdp.FlowKey]uint32, len(anonDrops))
		m.engine.Flows(func(fi dpi.FlowInfo) bool {
			if fi.Verdict == "drop" && fi.RuleID != 0 {
				byRule[fi.Key] = fi.RuleID
			}
			return true
		})
		for _, k := range anonDrops {
			if id, ok := byRule[k]; ok && !stillBlocks(id) {
				keys = append(keys, k)
			}
		}
	}
	n := 0
	for _, k := range keys {
		if err := m.kernel.SetFlow(k, xdp.VerdictInspect, 0); err != nil {
			m.log.Warn("revoke verdict", "flow", k.String(), "error", err)
			continue
		}
		n++
	}
	if m.forget != nil {
		m.forget()
	}
	return n
}

// appendAuditLocked is appendAudit for callers outside a change.
func (m *ruleManager) appendAuditLocked(e audit.Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.appendAudit(e)
}

// appendAudit appends e; the log records the new head beside the store
// (audit.Log.RecordHead), so that removing or editing the last entries
// is noticed too.
func (m *ruleManager) appendAudit(e audit.Entry) error {
	if err := m.audit.Append(e); err != nil {
		return err
	}
	switch {
	case e.Op == audit.OpAccess: // an API decision, not a rule change
	case e.OK:
		m.changes[0].Add(1)
	default:
		m.changes[1].Add(1)
	}
	return nil
}

// History lists the stored versions, newest first.
func (m *ruleManager) History() ([]api.VersionInfo, error) {
	vs, err := m.store.History()
	if err != nil {
		return nil, err
	}
	cur := m.cur.Load().version.Number
	out := make([]api.VersionInfo, len(vs))
	for i, v := range vs {
		out[i] = api.VersionInfo{Version: v.Number, Hash: hexHash(v.Hash), Time: v.Time, Rules: v.Rules,
			Comment: v.Comment, Current: v.Number == cur}
	}
	return out, nil
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// resolveSet is what the rule manager compiles: the set with its
// container selectors resolved.
func (m *ruleManager) resolveSet(set *rules.Set) *rules.Set {
	if m.containers == nil || len(set.Containers()) == 0 {
		return set
	}
	return set.ResolveContainers(m.containers)
}

// loadOrCompile compiles set (resolved) with the cache, copying the
// databases of groups the change left alone from the running set (callers
// hold m.mu, so the engine cannot have replaced and freed it).
func (m *ruleManager) loadOrCompile(set *rules.Set) (*rules.Compiled, bool, error) {
	var prev *rules.Compiled
	if cur := m.cur.Load(); cur != nil {
		prev = cur.compiled
	}
	return rules.LoadOrCompileFrom(m.resolveSet(set), m.cacheFile, prev)
}

// recompileContainers compiles the running set again with the containers'
// current addresses and swaps it in (kernel ACL, then engine), when it
// selects by container. The stored version does not change.
func (m *ruleManager) recompileContainers() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.cur.Load()
	if cur == nil || len(cur.set.Containers()) == 0 || m.engine == nil {
		return nil
	}
	c, _, err := m.loadOrCompile(cur.set)
	if errors.Is(err, rules.ErrCacheWrite) {
		err = nil
	}
	if err != nil {
		return err
	}
	acl, err := kernelACL(c)
	if err != nil {
		c.Close()
		return err
	}
	// The rollback ACL; the running set built it before, so an error
	// here is a bug, and nothing is swapped rather than risk an empty ACL.
	oldACL, err := kernelACL(cur.compiled)
	if err != nil {
		c.Close()
		return fmt.Errorf("the running rules' acl: %w", err)
	}
	if _, err := m.swapIn(c, acl, oldACL); err != nil {
		return err
	}
	next := *cur
	next.compiled, next.l7, next.applied = c, l7Hash(c), time.Now().UTC()
	m.cur.Store(&next)
	n := m.revoke(next.l7 != cur.l7, c)
	m.reclaimLater()
	m.log.Info("rules recompiled for container addresses", "version", cur.version.Number, "revoked", n)
	return nil
}
