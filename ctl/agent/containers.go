package agent

import (
	"fmt"
	"reflect"
	"slices"

	"github.com/deepwall/deepwall/ctl/agent/packetpath"
	"github.com/deepwall/deepwall/ctl/agent/protect"
	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/ctl/audit"
	"github.com/deepwall/deepwall/ctl/resolve"
	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dataplane/probe"
	"github.com/deepwall/deepwall/rules"
)

// The agent's side of container protection (package protect): opening
// the protector with its dependencies, the rule manager as protection
// sees it, and the protected pairs' counters in the agent's.

// openProtector opens the protected set's store; Restore takes the set
// back once the kernel side has its ACL.
func (a *Agent) openProtector() error {
	if a.backend.Name == "" { // no static pair: choose the dataplane here
		m, err := chooseBackend(a.cfg.Backend, a.cfg.DataPath, nil)
		if err != nil {
			return err
		}
		if m.Name == probe.BackendNFQueue {
			if miss := probe.NFQueueMissing(); miss != "" {
				return fmt.Errorf("nfqueue mode: %s", miss)
			}
		}
		a.backend = m
		a.log.Info("dataplane mode", "mode", m.Name, "why", m.Reason)
	}
	d := protect.Deps{StateDir: a.cfg.StateDir, Workers: a.cfg.Workers, BPFFS: a.cfg.BPFFS, DataPath: a.cfg.DataPath, RunDir: a.cfg.RunDir,
		Log: a.log, NS: a.ns, Backend: a.backend.Name, InNS: a.inNS, PinDir: a.pinDir, RemovePins: a.removePins,
		// Timed: status and the metrics read its latency
		// (addProtectedStats).
		Inspector: func() dataplane.Inspector {
			return ruleInspector{newTimedInspector(a.engine, a.cfg.Workers), &a.blocks}
		},
		OnFlowEnd: a.kernelFlowEnded, Static: a.pair, Rules: protectRules{a.rules}, Engine: a.engine,
		Resolver: a.resolver()}
	if a.events != nil {
		d.Emit = a.events.Emit
	}
	p, err := protect.Open(d)
	if err != nil {
		return err
	}
	a.prot = p
	a.rules.containers = p.Addrs
	return nil
}

// resolver is resolve.Default with the runtimes' places of the config.
func (a *Agent) resolver() resolve.Resolver {
	r := resolve.Default
	for _, o := range []struct {
		dst *string
		v   string
	}{{&r.DockerSocket, a.cfg.DockerSocket},
		{&r.PodmanSocket, a.cfg.PodmanSocket}, {&r.ContainerdState, a.cfg.ContainerdState},
		{&r.ContainerdSocket, a.cfg.ContainerdSocket}} {
		if o.v != "" {
			*o.dst = o.v
		}
	}
	return r
}

// protectRules is the rule manager as protection uses it (protect.Rules).
type protectRules struct{ m *ruleManager }

func (r protectRules) Running() *rules.Compiled {
	if st := r.m.current(); st != nil {
		return st.compiled
	}
	return nil
}

func (r protectRules) RecompileContainers() error { return r.m.recompileContainers() }

func (r protectRules) Audit(e audit.Entry) error {
	if cur := r.m.current(); cur != nil {
		e.FromVersion, e.ToVersion, e.RulesHash = cur.version.Number, cur.version.Number, hexHash(cur.version.Hash)
	}
	return r.m.appendAuditLocked(e)
}

// Change runs build as a rule change; its errors are a set that does not
// validate.
func (r protectRules) Change(op string, who protect.Caller, comment string, build func(*rules.Set) (*rules.Set, []uint32, error)) (api.ChangeResult, error) {
	c := caller{UID: who.UID, GID: who.GID, PID: who.PID}
	return r.m.change(op, c, comment, func(cur *ruleState) (*rules.Set, []uint32, error) {
		set, ids, err := build(cur.set)
		if err != nil {
			return nil, nil, &validationError{err}
		}
		return set, ids, nil
	})
}

// protectCaller is who as protection records it.
func (c caller) protectCaller() protect.Caller {
	return protect.Caller{UID: c.UID, GID: c.GID, PID: c.PID}
}

// addProtectedStats adds every protected pair's counters to s, so that
// status and the metrics count all the agent's pairs together (deepwall
// ports has them per container). Like the kernel table it reads the
// pairs without the protector's lock (Protector.EachPair): a protect or
// unprotect in progress does not hold up a scrape.
func addProtectedStats(p *protect.Protector, s *snapshot) {
	if p.Count() == 0 {
		return
	}
	s.pair.Workers = slices.Clone(s.pair.Workers) // never add into a pair's own slice
	p.EachPair(func(pair packetpath.Path, insp dataplane.Inspector) {
		if ri, ok := insp.(ruleInspector); ok {
			if t, ok := ri.Inspector.(*timedInspector); ok {
				t.addTo(&s.latency)
			}
		}
		if pair == nil {
			return
		}
		ps, ks, kerr := pair.Stats()
		addCounters(&s.pair.Inner, &ps.Inner)
		addCounters(&s.pair.Outer, &ps.Outer)
		addCounters(&s.pair.Reaper, &ps.Reaper)
		s.pair.TxKicks += ps.TxKicks
		s.pair.InFlight += ps.InFlight
		for i := range ps.Workers {
			if i < len(s.pair.Workers) {
				addCounters(&s.pair.Workers[i], &ps.Workers[i])
			} else {
				s.pair.Workers = append(s.pair.Workers, ps.Workers[i])
			}
		}
		if kerr != nil {
			if s.kerr == nil {
				s.kerr = kerr
			}
			return
		}
		addCounters(&s.kernel, &ks)
	})
}

// addCounters adds every integer field of *src to *dst (same struct type),
// nested structs and arrays included: counter structs grow fields, and a
// sum that names them would silently miss new ones.
func addCounters[T any](dst, src *T) {
	addValue(reflect.ValueOf(dst).Elem(), reflect.ValueOf(src).Elem())
}

func addValue(d, s reflect.Value) {
	switch d.Kind() {
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if d.CanSet() {
			d.SetUint(d.Uint() + s.Uint())
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if d.CanSet() {
			d.SetInt(d.Int() + s.Int())
		}
	case reflect.Struct:
		for i := range d.NumField() {
			addValue(d.Field(i), s.Field(i))
		}
	case reflect.Array:
		for i := range d.Len() {
			addValue(d.Index(i), s.Index(i))
		}
	}
}
