// Package ctl owns everything a person or a program talks to: the deepwall
// command line (cobra), the agent that wires the dataplane and the DPI
// engine together, its API on a unix socket, and the verdict and audit logs.
package ctl
