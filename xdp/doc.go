// Package xdp owns deepwall's eBPF side: the XDP program's C sources and
// their bpf2go output, typed access to the program's maps (flow verdicts,
// ACL, ports, counters), and attaching and detaching the program on ports.
package xdp
