package nfq

import (
	"errors"
	"time"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/xdp"
)

// value renders an entry as the kernel flow map would: fast-path
// counters only (conntrack's totals minus what came through the queue).
func (e *entry) value() xdp.FlowValue {
	v := xdp.FlowValue{Verdict: e.verdict, RuleID: e.ruleID, LastSeen: uint64(e.last)}
	for d := range 2 {
		if e.ct[d][0] > e.queued[d][0] {
			v.Packets[d] = e.ct[d][0] - e.queued[d][0]
		}
		if e.ct[d][1] > e.queued[d][1] {
			v.Bytes[d] = e.ct[d][1] - e.queued[d][1]
		}
	}
	return v
}

// Flows calls fn for every flow with a kernel verdict (decided, or
// revoked back to inspection), as xdp.Program.Flows does, with fresh
// conntrack counters.
func (p *Pair) Flows(fn func(xdp.FlowKey, xdp.FlowValue) bool) error {
	p.refreshCT(true)
	type kv struct {
		k xdp.FlowKey
		v xdp.FlowValue
	}
	for _, w := range p.work {
		var batch []kv
		w.mu.Lock()
		for k, e := range w.flows {
			if e.kernel {
				batch = append(batch, kv{k, e.value()})
			}
		}
		w.mu.Unlock()
		for _, b := range batch {
			if !fn(b.k, b.v) {
				return nil
			}
		}
	}
	return nil
}

// LookupFlow returns one flow's kernel view.
func (p *Pair) LookupFlow(k xdp.FlowKey) (xdp.FlowValue, bool, error) {
	w := p.work[k.Worker(len(p.work))]
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.flows[k]
	if e == nil || !e.kernel {
		return xdp.FlowValue{}, false, nil
	}
	return e.value(), true, nil
}

// SetFlow sets a flow's verdict. VerdictInspect revokes it: the flow's
// packets go back to the Inspector once ForgetVerdicts has moved the
// fast path to a new generation.
func (p *Pair) SetFlow(k xdp.FlowKey, v xdp.Verdict, ruleID uint32) error {
	w := p.work[k.Worker(len(p.work))]
	w.mu.Lock()
	e := w.flows[k]
	if e == nil {
		e = &entry{created: dataplane.MonoNow()}
		w.flows[k] = e
	}
	if e.verdict != xdp.VerdictInspect && v == xdp.VerdictInspect {
		p.dirty.Store(true)
	}
	e.verdict, e.ruleID, e.kernel = v, ruleID, true
	w.mu.Unlock()
	return nil
}

// ForgetVerdicts makes revocations (SetFlow to VerdictInspect) take
// effect: the fast path moves to a new connmark generation, so no flow
// keeps an old mark's verdict; flows still decided are marked again as
// their next packet passes. Without revocations since the last call it
// does nothing.
func (p *Pair) ForgetVerdicts() {
	if !p.dirty.Swap(false) {
		return
	}
	if err := p.bumpGeneration(); err != nil {
		p.dirty.Store(true)
		p.log.Error("revoke fast-path verdicts", "error", err)
	}
}

// refreshCT reads conntrack's counters into the table unless they were
// read within flowsFresh (always with force), and ends decided flows
// conntrack no longer has.
func (p *Pair) refreshCT(force bool) {
	p.ctMu.Lock()
	defer p.ctMu.Unlock()
	if !force && time.Since(p.ctRead) < flowsFresh {
		return
	}
	p.ctRead = time.Now()
	p.ctErr = p.readCT()
}

// sweep is the reaper's pass: refresh from conntrack and end the decided
// flows it dropped (EndGone), or, without conntrack, those idle past the
// aging timeouts (EndIdle).
func (p *Pair) sweep() {
	p.reaper.passes.Add(1)
	p.refreshCT(true)
	p.ctMu.Lock()
	ctErr := p.ctErr
	p.ctMu.Unlock()
	now := dataplane.MonoNow()
	type ended struct {
		k      xdp.FlowKey
		v      xdp.FlowValue
		reason dataplane.EndReason
	}
	var out []ended
	for _, w := range p.work {
		w.mu.Lock()
		for k, e := range w.flows {
			var reason dataplane.EndReason
			switch {
			case ctErr == nil && e.ctSeen != p.lastSweep && now-e.created > int64(goneGrace):
				reason = dataplane.EndGone
			case ctErr != nil && now-e.last > int64(p.cfg.Aging.Timeout(k.Proto)):
				reason = dataplane.EndIdle
			default:
				continue
			}
			delete(w.flows, k)
			if e.kernel {
				out = append(out, ended{k, e.value(), reason})
			}
		}
		w.mu.Unlock()
	}
	if ctErr != nil {
		p.reaper.errors.Add(1)
	}
	for _, o := range out {
		if o.reason == dataplane.EndGone {
			p.reaper.gone.Add(1)
		} else {
			p.reaper.idle.Add(1)
		}
		if p.cfg.Aging.OnFlowEnd != nil {
			p.cfg.Aging.OnFlowEnd(o.k, o.v, o.reason)
		}
	}
}

// readCT dumps conntrack into the table (ctMu held).
func (p *Pair) readCT() error {
	if p.ct == nil {
		return errNoConntrack
	}
	stamp := dataplane.MonoNow()
	err := dumpConntrack(p.ct, func(c *ctEntry) {
		w := p.work[c.Key.Worker(len(p.work))]
		w.mu.Lock()
		if e := w.flows[c.Key]; e != nil {
			for d := range 2 {
				e.ct[d] = [2]uint64{c.Packets[d], c.Bytes[d]}
			}
			e.ctSeen = stamp
		}
		w.mu.Unlock()
	})
	if err == nil {
		p.lastSweep = stamp
	}
	return err
}

// errNoConntrack: conntrack could not be opened.
var errNoConntrack = errors.New("no conntrack netlink socket")
