package protect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/ctl/resolve"
	"github.com/deepwall/deepwall/rules"
)

// Protection that follows a container. A container protected as a
// runtime's container (docker, podman, containerd: resolve.Target's
// Runtime and Container) keeps its protection when it stops, restarts
// or is removed and run again under the same name: its new namespace
// and veth are protected again, with the same name, mode and fail
// policy, as soon as the runtime has it running. Until then the
// protection is pending (the container is not running) or failed (it
// runs, and protecting it failed: the reason is kept). Both show in
// `deepwall ports` beside the protected ones, and last until unprotect.
//
// What brings it back: the runtimes' container start events (Docker and
// podman, resolve.Resolver.WatchStarts) kick a pass at once, and the
// watch's periodic pass (every watchInterval) is the safety net (and
// containerd's only path). A namespace or pid that no runtime runs is
// not followed: when it goes, its protection goes (cleanup).

const (
	// maxPendingRecord bounds one stored pending protection (a target,
	// a reason).
	maxPendingRecord = 64 << 10
	// maxReason bounds the reason kept and shown of a pending one.
	maxReason = 512
)

var bucketPending = []byte("pending")

// Pending states (api.PortStatus.State).
const (
	statePending = "pending"
	stateFailed  = "failed"
)

// pendingPort is a followed protection whose container is not protected
// now.
type pendingPort struct {
	Target     resolve.Target `json:"target"`
	Iface      string         `json:"iface"`
	Mode       string         `json:"mode"`
	FailClosed bool           `json:"fail_closed"`
	Since      time.Time      `json:"since"` // pending since
	State      string         `json:"state"`
	Reason     string         `json:"reason"`
}

// follows reports whether a protection of t follows the container.
func follows(t resolve.Target) bool {
	return slices.Contains(resolve.Runtimes, t.Runtime) && t.Container != "" && t.Policy == ""
}

func decodePending(key, v []byte) (*pendingPort, error) {
	var pp pendingPort
	if err := unmarshalBounded(v, maxPendingRecord, &pp); err != nil {
		return nil, err
	}
	switch {
	case !rules.ValidContainerName(pp.Target.Name) || string(key) != pp.Target.Name:
		return nil, fmt.Errorf("name %.64q under key %.64q", pp.Target.Name, key)
	case !follows(pp.Target) || len(pp.Target.Container) > maxReason:
		return nil, fmt.Errorf("runtime %.32q container %.64q", pp.Target.Runtime, pp.Target.Container)
	case !slices.Contains(api.ProtectionModes, pp.Mode):
		return nil, fmt.Errorf("mode %.32q", pp.Mode)
	case len(pp.Iface) >= unix.IFNAMSIZ || !rules.ValidContainerName(pp.Iface):
		return nil, fmt.Errorf("interface %.32q", pp.Iface)
	case pp.State != statePending && pp.State != stateFailed:
		return nil, fmt.Errorf("state %.32q", pp.State)
	}
	if len(pp.Reason) > maxReason {
		pp.Reason = pp.Reason[:maxReason]
	}
	return &pp, nil
}

// loadPending takes back the stored pending protections; mu held.
func (p *Protector) loadPending() error {
	return loadRecords(p, bucketPending, "pending protection", maxProtected, decodePending,
		func(pend *pendingPort) { p.pending[pend.Target.Name] = pend })
}

// loadRecords takes back the records of bucket, at most limit, each
// decoded and checked by decode and given to add; an invalid one is
// logged and left alone.
func loadRecords[T any](p *Protector, bucket []byte, what string, limit int, decode func(k, v []byte) (T, error), add func(T)) error {
	n := 0
	return p.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			r, err := decode(k, v)
			if err == nil && n >= limit {
				err = fmt.Errorf("more than %d of them", limit)
			}
			if err != nil {
				p.log.Error(what+": invalid record ignored", "key", fmt.Sprintf("%.64q", k), "error", err)
				return nil
			}
			n++
			add(r)
			return nil
		})
	})
}

// unmarshalBounded decodes a stored record of at most limit bytes.
func unmarshalBounded(v []byte, limit int, dst any) error {
	if len(v) > limit {
		return fmt.Errorf("%d bytes, at most %d", len(v), limit)
	}
	return json.Unmarshal(v, dst)
}

// putRecord stores v as JSON under key in bucket.
func (p *Protector) putRecord(bucket []byte, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return p.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put([]byte(key), b) })
}

// deleteRecord removes key from bucket.
func (p *Protector) deleteRecord(bucket []byte, key string) error {
	return p.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Delete([]byte(key)) })
}

func (p *Protector) savePending(pend *pendingPort) {
	if err := p.putRecord(bucketPending, pend.Target.Name, pend); err != nil {
		p.log.Warn("store pending protection", "name", pend.Target.Name, "error", err)
	}
}

// dropPending forgets the pending protection name; mu held.
func (p *Protector) dropPending(name string) {
	if _, ok := p.pending[name]; !ok {
		return
	}
	delete(p.pending, name)
	if err := p.deleteRecord(bucketPending, name); err != nil {
		p.log.Warn("forget pending protection", "name", name, "error", err)
	}
}

// followLater makes the protection of a container that is gone pending;
// mu held.
func (p *Protector) followLater(r portRecord) {
	t := r.Target
	pend := &pendingPort{Target: t, Iface: r.Iface, Mode: r.Mode, FailClosed: r.FailClosed, Since: time.Now().UTC(),
		State: statePending, Reason: fmt.Sprintf("container gone: protected again when %s runs %s", t.Runtime, t.Container)}
	p.pending[t.Name] = pend
	p.savePending(pend)
	p.log.Info("protected container gone: its protection waits for it", "name", t.Name, "runtime", t.Runtime,
		"container", t.Container)
	p.kick()
}

// kick asks the watch for a pass now.
func (p *Protector) kick() {
	select {
	case p.kicks <- struct{}{}:
	default:
	}
}

// watchStarts kicks a pass whenever Docker, podman or containerd start
// a container while a protection waits, a selector may match it, or a
// followed protection names it (started again: its old veth is gone or
// going, which the pass sees at once instead of at the next second).
func (p *Protector) watchStarts(ctx context.Context) {
	p.resolver.WatchStarts(ctx, func(runtime, name string) {
		p.mu.Lock()
		waiting := len(p.pending) > 0 || len(p.policies) > 0
		for _, pp := range p.ports {
			if t := pp.rec.Target; !waiting && follows(t) && t.Runtime == runtime && t.Container == name {
				waiting = true
			}
		}
		p.mu.Unlock()
		if waiting {
			p.kick()
		}
	})
}

// reconcile is one pass over the pending protections: each whose
// container its runtime has running is protected again. The runtimes are
// asked without the lock (an API answers within its timeout, not at once).
func (p *Protector) reconcile(ctx context.Context) {
	p.mu.Lock()
	list := slices.Collect(maps.Values(p.pending))
	p.mu.Unlock()
	for _, pend := range list {
		if ctx.Err() != nil {
			return
		}
		t, err := p.resolver.Resolve(ctx, pend.Target.Runtime+":"+pend.Target.Container)
		p.mu.Lock()
		if p.pending[pend.Target.Name] == pend { // not unprotected or protected meanwhile
			if err == nil {
				err = p.reapply(pend, t)
			}
			if err != nil {
				state := stateFailed
				if errors.Is(err, resolve.ErrNoTarget) { // not running (yet)
					state = statePending
				}
				p.setPending(pend, state, err.Error())
			}
		}
		p.mu.Unlock()
	}
}

// setPending records a pending protection's state; a change is logged
// and stored. mu held.
func (p *Protector) setPending(pend *pendingPort, state, reason string) {
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	if pend.State == state && pend.Reason == reason {
		return
	}
	pend.State, pend.Reason = state, reason
	if state == stateFailed {
		p.log.Warn("protecting a followed container again failed", "name", pend.Target.Name, "error", reason)
	}
	p.savePending(pend)
}

// reapply protects t, the container of pend, again; mu held.
func (p *Protector) reapply(pend *pendingPort, t resolve.Target) error {
	t.Spec, t.Name = pend.Target.Spec, pend.Target.Name
	start := time.Now()
	if err := p.protectResolved(t, pend.Iface, pend.Mode, pend.FailClosed); err != nil {
		return err
	}
	p.dropPending(t.Name)
	p.log.Info("followed container protected again", "name", t.Name, "runtime", t.Runtime, "id", t.ID,
		"pending_for", time.Since(pend.Since).Round(time.Millisecond), "took", time.Since(start).Round(time.Millisecond))
	p.audit("reprotect", t.Name, fmt.Sprintf("%s (%s) iface %s mode %s: %s:%s running again as %.12s",
		t.Spec, t.Name, pend.Iface, pend.Mode, t.Runtime, t.Container, t.ID), selfCaller(), nil)
	return nil
}

// protectResolved protects the runtime's container t, found by the
// agent itself (a followed container back, a selector's match); mu held.
func (p *Protector) protectResolved(t resolve.Target, iface, mode string, failClosed bool) error {
	cns, err := resolve.OpenNetns(t.Path)
	if err != nil {
		return err
	}
	defer cns.Close()
	var cst unix.Stat_t
	if err := unix.Fstat(int(cns), &cst); err != nil {
		return err
	}
	if cns.Equal(p.d.NS) {
		return fmt.Errorf("%s:%s is in the agent's own network namespace", t.Runtime, t.Container)
	}
	for name, pp := range p.ports {
		if pp.rec.Wire.ContainerNSInode == cst.Ino && pp.rec.Iface == iface || name == t.Name {
			return fmt.Errorf("%w: %s:%s %s is protected as %s", ErrProtected, t.Runtime, t.Container, iface, name)
		}
	}
	_, err = p.protect(t, cns, api.ProtectRequest{Target: t.Spec, Iface: iface, Mode: mode, FailClosed: failClosed, Name: t.Name})
	return err
}

// pendingStatus is a pending protection as ports lists it.
func pendingStatus(pend *pendingPort) api.PortStatus {
	t := pend.Target
	return api.PortStatus{Name: t.Name, Target: t.Spec, Kind: t.Kind, Runtime: t.Runtime, ContainerID: t.ID,
		Image: t.Image, Iface: pend.Iface, Mode: pend.Mode, FailClosed: pend.FailClosed, Since: pend.Since,
		State: pend.State, Reason: pend.Reason, Follows: true, Addrs: []string{}}
}

// maxIdentifyTries bounds the passes (one a second) that ask the
// runtimes about a CNI protection's container: a namespace no runtime
// runs (a CNI runtime deepwall does not know) is not asked about forever.
const maxIdentifyTries = 30

// identifyCNI names the containers deepwall-cni protected after the
// runtime that runs them, once it does: at ADD no process runs in the
// namespace and CNI_ARGS do not say which runtime calls. The runtime,
// full id, image and labels go into ports, the record and the events;
// the protection stays the CNI's (not followed: the runtime's DEL and
// ADD carry it across restarts). The runtimes are asked without the lock.
func (p *Protector) identifyCNI(ctx context.Context) {
	type ask struct {
		pp       *protectedPort
		id, path string
	}
	var asks []ask
	p.mu.Lock()
	for _, pp := range p.ports {
		if t := pp.rec.Target; t.Kind == "cni" && t.Runtime == "" && pp.identTries < maxIdentifyTries {
			pp.identTries++
			asks = append(asks, ask{pp, t.ID, t.Path})
		}
	}
	p.mu.Unlock()
	for _, a := range asks {
		rt, ok := p.resolver.Identify(ctx, a.id, a.path)
		if !ok {
			continue
		}
		p.mu.Lock()
		if p.ports[a.pp.name()] == a.pp && a.pp.rec.Target.Runtime == "" {
			a.pp.eveMu.Lock()
			t := &a.pp.rec.Target
			t.Runtime, t.ID, t.Image, t.Labels, t.NetworkMode = rt.Runtime, rt.ID, rt.Image, rt.Labels, rt.NetworkMode
			a.pp.eve.Store(workloadOf(*t))
			a.pp.eveMu.Unlock()
			if err := p.save(a.pp.rec); err != nil {
				p.log.Error("save protected container", "name", a.pp.name(), "error", err)
			}
			p.log.Info("CNI protection identified", "name", a.pp.name(), "runtime", rt.Runtime, "id", rt.ID, "image", rt.Image)
		}
		p.mu.Unlock()
	}
}
