// Package dataplane owns the packet path in user space: AF_XDP sockets and
// their rings over golang.org/x/sys/unix, port pairs and forwarding between
// them, the worker pool that hands frames to an Inspector, writing final
// verdicts back into the kernel's flow map, and the NFQUEUE fallback.
package dataplane
