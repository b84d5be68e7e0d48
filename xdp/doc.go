// Package xdp owns deepwall's eBPF side: the XDP program's C sources and
// their bpf2go output, typed access to the program's maps (flow verdicts,
// ACL, ports, counters), and attaching and detaching the program on ports.
//
// One program (bpf/deepwall.c) serves both ports of a pair. Per frame it
// forwards non-IP traffic and ICMPv6 neighbour discovery to the peer port,
// drops malformed packets, applies the L3/L4 ACL (first match, compiled to
// per-field rule bitmaps and swapped atomically), then follows the flow
// verdict map: ALLOW goes to the peer port and DROP is dropped in the
// kernel, everything else goes to the AF_XDP socket of its port and rx
// queue, or, with none bound, to the port's fail policy.
//
// Maps and attach links are pinned under Options.PinDir, so a restarted
// agent adopts live flows and attached ports. Attach and SetPort resolve
// ifindexes in the calling thread's network namespace: call them from
// inside the namespace that holds the ports.
package xdp
