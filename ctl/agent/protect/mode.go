package protect

import (
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/ctl/eve"
	"github.com/deepwall/deepwall/ctl/resolve"
	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/rules"
	"github.com/deepwall/deepwall/xdp"
)

// maxSeenFlows bounds the flows one worker of a monitoring port remembers
// having checked against the ACL; the set is cleared when full (a flow is
// then checked, and possibly reported, once more).
const maxSeenFlows = 1 << 14

// modeInspector applies a protected port's protection mode to the
// engine's verdicts. In protect mode it is the engine. In monitor and
// discover modes nothing is dropped: a Drop becomes a Forward (keeping
// Final, so the kernel carries the flow from then on), and since the
// kernel ACL of such a port denies nothing, the ACL is evaluated here once
// per flow and what it would block is logged.
type modeInspector struct {
	p    *Protector
	port *protectedPort
	next dataplane.Inspector
	seen []seenFlows // per worker
	// gen counts ACL changes: a worker whose set is of an older
	// generation starts it again.
	gen atomic.Uint64
	// emit writes a would-block event (the agent's verdict log).
	emit func(*eve.Event) bool
}

// seenFlows is one worker's set: only that worker touches it (one worker
// per index and pair).
type seenFlows struct {
	gen uint64
	m   map[xdp.FlowKey]struct{}
	_   [48]byte
}

func newModeInspector(p *Protector, pp *protectedPort, next dataplane.Inspector) *modeInspector {
	return &modeInspector{p: p, port: pp, next: next, seen: make([]seenFlows, max(p.d.Workers, 1)), emit: p.d.Emit}
}

// Inspect implements dataplane.Inspector.
func (m *modeInspector) Inspect(w int, f *dataplane.Frame) dataplane.Verdict {
	if m.port.protectionMode() == api.ModeProtect {
		return m.next.Inspect(w, f)
	}
	if f.Key != (xdp.FlowKey{}) && uint(w) < uint(len(m.seen)) && m.firstSight(w, f.Key) {
		m.checkACL(f)
	}
	v := m.next.Inspect(w, f)
	if v.Action == dataplane.Drop {
		// Fragments held for a datagram go out with it (Hold is left
		// alone: they are not dropped, only kept back).
		v = dataplane.Verdict{Action: dataplane.Forward, Final: v.Final, Release: v.Release}
	}
	return v
}

func (m *modeInspector) firstSight(w int, k xdp.FlowKey) bool {
	s := &m.seen[w]
	if g := m.gen.Load(); s.gen != g {
		s.gen, s.m = g, nil
	}
	if _, ok := s.m[k]; ok {
		return false
	}
	if s.m == nil || len(s.m) >= maxSeenFlows {
		s.m = make(map[xdp.FlowKey]struct{})
	}
	s.m[k] = struct{}{}
	return true
}

// forgetSeen makes every flow be checked again (the ACL changed).
func (m *modeInspector) forgetSeen() { m.gen.Add(1) }

// checkACL logs a would-block alert when the running ACL would drop f.
func (m *modeInspector) checkACL(f *dataplane.Frame) {
	c := m.p.d.Rules.Running()
	if c == nil {
		return
	}
	src, dst := f.Key.Lo(), f.Key.Hi()
	if f.Dir == xdp.FromHi {
		src, dst = dst, src
	}
	act, id := c.ACLVerdict(f.Key.Proto, src, dst)
	if act != rules.ActionBlock {
		return
	}
	ev := &eve.Event{Timestamp: eve.EveTime(time.Now()), EventType: eve.EventAlert, InIface: m.port.rec.Wire.Inner.Name,
		SrcIP: src.Addr().String(), SrcPort: src.Port(), DestIP: dst.Addr().String(), DestPort: dst.Port(),
		Proto: xdp.ProtoName(f.Key.Proto), Alert: &eve.Alert{Action: "allowed", AlertExtra: eve.AlertExtra{WouldBlock: true}, SignatureID: id,
			Signature: "acl default", Severity: 3, Category: "acl"}}
	if r := c.Set.Rule(id); r != nil {
		ev.Alert.Signature, ev.Alert.Category = r.Name, r.Category
		if ev.Alert.Category == "" {
			ev.Alert.Category = "acl"
		}
	}
	if m.emit != nil {
		m.emit(ev)
	}
}

// portFor returns the protected port owning addr, if any.
func (p *Protector) portFor(addr netip.Addr) *protectedPort {
	for _, pp := range p.portsOf() {
		if as := pp.addrs.Load(); as != nil {
			for _, a := range *as {
				if a == addr {
					return pp
				}
			}
		}
	}
	return nil
}

// Annotate adjusts an engine event for the protected ports: an alert the
// engine reports as blocked on a flow whose protected endpoint is in
// monitor or discover mode (and no endpoint in protect mode) was let
// through: action "allowed", deepwall.would_block true. It names the inner port
// in in_iface and the container in container. Flow events feed
// discovery.
func (p *Protector) Annotate(ev *eve.Event) {
	if p == nil || len(p.portsOf()) == 0 {
		return
	}
	src, err1 := netip.ParseAddr(ev.SrcIP)
	dst, err2 := netip.ParseAddr(ev.DestIP)
	if err1 != nil || err2 != nil {
		return
	}
	ps, pd := p.portFor(src.Unmap()), p.portFor(dst.Unmap())
	if ev.EventType == eve.EventFlow {
		if proto, ok := learnableProto(ev.Proto); ok {
			p.learn.observe(netip.AddrPortFrom(src.Unmap(), ev.SrcPort), netip.AddrPortFrom(dst.Unmap(), ev.DestPort), proto, ev.AppProto)
		}
	}
	port := pd
	if port == nil {
		port = ps
	}
	if port == nil {
		return
	}
	if ev.InIface == "" {
		ev.InIface = port.rec.Wire.Inner.Name
	}
	if ev.Container == nil {
		ev.Container = port.workload()
		ev.K8s = port.rec.Target.K8s
	}
	if ev.Alert == nil || ev.Alert.Action != "blocked" {
		return
	}
	for _, pp := range []*protectedPort{ps, pd} {
		if pp != nil && pp.protectionMode() == api.ModeProtect {
			return
		}
	}
	ev.Alert.Action, ev.Alert.WouldBlock = "allowed", true
}

// learnableProto maps an EVE proto name (xdp.ProtoName) back to the
// number of a protocol discover learns.
func learnableProto(name string) (uint8, bool) {
	p, ok := eve.ProtoNumber(name)
	return p, ok && slices.Contains(learnedProtos, p)
}

// Limits of the labels an event carries: every event of a protected
// port has them, so a container with many or long labels (Kubernetes
// annotations as labels, build metadata) must not swell each event.
const (
	// maxEventLabels bounds the labels of an event's container: the
	// first ones in key order are kept, and the others are counted in
	// the label deepwall.io/labels-omitted.
	maxEventLabels = 32
	// maxEventLabelLen bounds a label's key and value in an event: a
	// longer key drops the label (counted as omitted), a longer value is
	// cut to this many bytes (at a UTF-8 boundary).
	maxEventLabelLen = 256
	// labelsOmitted is the label that counts the labels left out.
	labelsOmitted = "deepwall.io/labels-omitted"
)

// workload is the container pp's events name, with its labels bounded.
func (pp *protectedPort) workload() *eve.Container {
	if c := pp.eve.Load(); c != nil {
		return c
	}
	pp.eveMu.Lock()
	defer pp.eveMu.Unlock()
	if c := pp.eve.Load(); c != nil {
		return c
	}
	c := workloadOf(pp.rec.Target)
	pp.eve.Store(c)
	return c
}

// workloadOf is the container object of t's events.
func workloadOf(t resolve.Target) *eve.Container {
	return &eve.Container{Name: t.Name, Runtime: t.Runtime, ID: t.ID, Image: t.Image, Labels: eventLabels(t.Labels)}
}

// eventLabels bounds labels for events (maxEventLabels, maxEventLabelLen).
func eventLabels(labels map[string]string) map[string]string {
	if len(labels) == 0 {
		return nil
	}
	keys := slices.Sorted(maps.Keys(labels))
	out := make(map[string]string, min(len(keys), maxEventLabels+1))
	omitted := 0
	for _, k := range keys {
		v := labels[k]
		if len(out) >= maxEventLabels || len(k) > maxEventLabelLen {
			omitted++
			continue
		}
		if len(v) > maxEventLabelLen {
			v = strings.ToValidUTF8(v[:maxEventLabelLen], "")
		}
		out[k] = v
	}
	if omitted > 0 {
		out[labelsOmitted] = strconv.Itoa(omitted)
	}
	return out
}
