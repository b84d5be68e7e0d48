package xdp

import "fmt"

// Counter indexes into dw_stats (CNT_* in bpf/deepwall.h).
const (
	cntFastAllow = iota
	cntFastDrop
	cntACLDrop
	cntToUser
	cntFailOpen
	cntFailClosed
	cntNonIP
	cntParseErr
	cntUnconfigured
	cntRedirectErr
	cntFragment
	cntHdrLimit
	cntFlowMiss
	cntQueueRange
	cntSynReopen
	cntMax
)

// Stats are the program's counters summed over CPUs. The fields up to
// RedirectErrors are outcomes: each packet increments exactly one of them.
// The rest are informational and come on top of an outcome. Field order
// is counter order.
type Stats struct {
	FastAllow      uint64 // flow ALLOW: redirected to the peer port
	FastDrop       uint64 // flow DROP: dropped
	ACLDrop        uint64 // ACL deny: dropped
	ToUser         uint64 // redirected to an AF_XDP socket
	FailOpen       uint64 // no socket for the queue, fail-open: to the peer
	FailClosed     uint64 // no socket for the queue, fail-closed: dropped
	NonIP          uint64 // non-IP or ICMPv6 ND: to the peer
	Errors         uint64 // truncated or malformed: dropped
	Unconfigured   uint64 // no port config: passed to the kernel stack
	RedirectErrors uint64 // peer redirect impossible (no devmap entry): dropped
	Fragments      uint64 // IP fragments sent to user space (or fail policy)
	HeaderLimit    uint64 // VLAN or IPv6 extension header limit reached
	FlowMiss       uint64 // no flow entry: to user space (or fail policy)
	QueueRange     uint64 // rx queue >= MaxQueues: fail policy applied
	SynReopen      uint64 // SYN on an ALLOW/DROP entry: 5-tuple reused, entry back to INSPECT
}

// Packets is the number of packets the program judged (the sum of the
// outcome counters).
func (s Stats) Packets() uint64 {
	return s.FastAllow + s.FastDrop + s.ACLDrop + s.ToUser + s.FailOpen + s.FailClosed +
		s.NonIP + s.Errors + s.Unconfigured + s.RedirectErrors
}

// Stats reads the per-CPU counters and sums them.
func (p *Program) Stats() (Stats, error) {
	var s Stats
	fields := s.counters()
	var perCPU []uint64
	for i := range cntMax {
		if err := p.objs.DwStats.Lookup(uint32(i), &perCPU); err != nil {
			return Stats{}, fmt.Errorf("stats counter %d: %w", i, err)
		}
		var sum uint64
		for _, v := range perCPU {
			sum += v
		}
		*fields[i] = sum
	}
	return s, nil
}

// counters lists the fields in counter order.
func (s *Stats) counters() [cntMax]*uint64 {
	return [cntMax]*uint64{
		&s.FastAllow, &s.FastDrop, &s.ACLDrop, &s.ToUser, &s.FailOpen, &s.FailClosed,
		&s.NonIP, &s.Errors, &s.Unconfigured, &s.RedirectErrors,
		&s.Fragments, &s.HeaderLimit, &s.FlowMiss, &s.QueueRange, &s.SynReopen,
	}
}
