package nfq

import (
	"errors"
	"sync"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/xdp"
)

// kernelStatsCache keeps the last good reading of the iptables counters
// (read by running iptables, serialised by mu) for after Detach.
type kernelStatsCache struct {
	mu   sync.Mutex
	last xdp.Stats
}

// Stats returns the user-space counters in the AF_XDP pair's shape and
// the kernel's (iptables rule counters) in the XDP program's: FastAllow
// and FastDrop are the connmark rules, ACLDrop the ACL's drops, ToUser
// the queue rule. It runs iptables: for status and scrapes, not loops.
func (p *Pair) Stats() (dataplane.PairStats, xdp.Stats, error) {
	var st dataplane.PairStats
	for _, q := range p.queues {
		for side := range q.side {
			c, out := &q.side[side], st.Side(dataplane.Side(side))
			out.RxFrames += c.rx.Load()
			out.TxFrames += c.accepted.Load()
			out.Dropped += c.dropped.Load()
			out.Malformed += c.malformed.Load()
			out.NonIP += c.nonIP.Load()
			out.Resets += c.resets.Load()
			out.KernelDrops += c.errors.Load()
		}
	}
	for _, w := range p.work {
		ws := dataplane.WorkerStats{Inspected: w.inspected.Load(), Forwarded: w.forwarded.Load(),
			Dropped: w.dropped.Load(), Finals: w.finals.Load(), CacheHits: w.cacheHits.Load(),
			FlowErrors: w.full.Load()}
		st.Workers = append(st.Workers, ws)
		st.Inner.Inspected += ws.Inspected // by worker, not by side
	}
	st.Reaper = dataplane.ReaperStats{Passes: p.reaper.passes.Load(), Idle: p.reaper.idle.Load(),
		Gone: p.reaper.gone.Load(), Errors: p.reaper.errors.Load()}
	ks, err := p.kernelStats()
	return st, ks, err
}

func (p *Pair) kernelStats() (xdp.Stats, error) {
	c := &p.stats
	c.mu.Lock()
	defer c.mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || !p.ns.IsOpen() {
		return c.last, nil
	}
	var ks xdp.Stats
	err := p.inNS(func() error {
		var errs []error
		for _, f := range p.fams {
			fl, err := f.ipt.StructuredStats(filterTable, p.c.flow())
			if err != nil || len(fl) < f.fastPos+2 {
				errs = append(errs, err)
				continue
			}
			ks.FastAllow += fl[f.fastPos-1].Packets
			ks.FastDrop += fl[f.fastPos].Packets
			ks.ToUser += fl[f.fastPos+1].Packets
			for i := 0; i < f.fastPos-4; i++ {
				ks.NonIP += fl[i].Packets // neighbour discovery
			}
			acl, err := f.ipt.StructuredStats(filterTable, p.c.acl(p.aclGen))
			if err != nil {
				errs = append(errs, err)
				continue
			}
			for _, r := range acl {
				if r.Target == "DROP" {
					ks.ACLDrop += r.Packets
				}
			}
		}
		return errors.Join(errs...)
	})
	if err == nil {
		c.last = ks
	}
	return ks, err
}
