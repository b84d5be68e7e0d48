package dataplane

import "github.com/deepwall/deepwall/xdp"

// Side names a port of a pair.
type Side uint8

const (
	// Inner is the port facing the protected container.
	Inner Side = 0
	// Outer is the port facing the bridge or the host stack.
	Outer Side = 1
)

func (s Side) String() string {
	if s == Inner {
		return "inner"
	}
	return "outer"
}

// Peer returns the other side.
func (s Side) Peer() Side { return s ^ 1 }

// Action is what the dataplane does with a judged frame.
type Action uint8

const (
	// Forward transmits the frame on the peer port.
	Forward Action = iota
	// Drop recycles the frame without transmitting it.
	Drop
	// Hold recycles the frame like Drop: the Inspector kept a copy, to
	// hand back in the Release of a later verdict (the fragments of an IP
	// datagram until the datagram is complete and inspected). It is
	// counted as held, not dropped, and an inspector that turns drops
	// into forwards (a monitoring mode) leaves it alone.
	Hold
)

func (a Action) String() string {
	switch a {
	case Forward:
		return "forward"
	case Hold:
		return "hold"
	}
	return "drop"
}

// Verdict is an Inspector's judgement on one frame.
type Verdict struct {
	Action Action
	// Final means the flow's fate is settled: the dataplane writes it into
	// the kernel's flow map (ALLOW for Forward, DROP for Drop) so that the
	// flow's later packets never leave the kernel.
	Final bool
	// Reset, with Drop on a TCP frame, resets both ends of the connection so
	// neither side hangs.
	Reset bool
	// RuleID names the rule that decided a Final verdict (0: none, e.g. an
	// evasion drop or a flow no rule can apply to). The dataplane stores it
	// with the kernel's verdict so that a rule change can tell which
	// verdicts it affects without asking the Inspector.
	RuleID uint32
	// Rewritten, with Forward, means the Inspector rewrote Frame.Data in
	// place, keeping its length, with its checksums right: the dataplane
	// transmits the rewritten bytes (AF_XDP forwards the UMEM frame it
	// was given; NFQUEUE returns the packet with the verdict). The DPI
	// engine rewrites the HTTP/2 frames of a blocked stream this way.
	Rewritten bool
	// Release are frames the Inspector held earlier (Hold) and now gives
	// back: with Forward the dataplane transmits them on the peer port
	// before this frame, in order; with any other action they are dropped
	// with it. They are the Inspector's and valid until its next Inspect
	// call for the same worker, so the dataplane copies them at once.
	Release [][]byte
}

// Frame is one received frame handed to an Inspector.
type Frame struct {
	// Data is the frame from its Ethernet header on. It points into UMEM and
	// is valid only during the Inspect call: implementations must copy what
	// they keep.
	Data []byte
	// Ingress is the port the frame arrived on, Ifindex its interface
	// index (0 when unknown): Ingress tells the sides of one pair apart,
	// Ifindex the pairs that share an Inspector.
	Ingress Side
	Ifindex int
	// Key is the frame's normalised 5-tuple, Dir which endpoint sent it.
	// Key is the zero value for frames that are not IPv4/IPv6.
	Key xdp.FlowKey
	Dir xdp.Direction
	// Timestamp is CLOCK_MONOTONIC in nanoseconds at receive time.
	Timestamp int64
	// ChecksumComplete says the kernel reported the frame's TCP/UDP
	// checksum complete (NFQUEUE without NFQA_SKB_CSUMNOTREADY): a field
	// that merely looks partial is then wrong, since nothing will complete
	// it before the receiver checks it. False where the kernel does not
	// say (AF_XDP): a partial-looking checksum is completed on forwarding
	// (CompletePartialChecksum), so the receiver accepts it.
	ChecksumComplete bool
}

// Inspector judges frames that the kernel could not decide. The DPI engine
// implements it; tests use small ones of their own.
//
// Inspect is called concurrently for distinct workers, serially for one
// worker. Both directions of a flow always reach the same worker, in order,
// so per-worker state needs no locking.
type Inspector interface {
	Inspect(worker int, f *Frame) Verdict
}

// InspectorFunc adapts a function to Inspector.
type InspectorFunc func(worker int, f *Frame) Verdict

// Inspect calls fn.
func (fn InspectorFunc) Inspect(worker int, f *Frame) Verdict { return fn(worker, f) }
