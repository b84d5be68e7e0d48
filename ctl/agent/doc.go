// Package agent is the deepwall daemon behind `deepwall run`: it opens
// the rule store and the logs, runs the DPI engine, puts a dataplane
// backend (XDP with AF_XDP sockets, or the NFQUEUE fallback) between a
// port pair and between protected containers and their bridge, keeps the
// rule set in the engine and the kernel in step, and serves the API of
// package api on a unix socket (docs/agent.md, docs/api.md).
//
// The files say what they hold: agent.go start-up and shutdown,
// backend.go the choice of dataplane backend, engine.go the engine glue,
// rulesmgr.go rule changes (prepare, commit, rollback) and the
// recompiles for changed container addresses, flows.go, status.go and
// metrics.go what the agent reports, server*.go the API server,
// containers.go the agent's side of container protection.
//
// Two packages below it hold what the compiler should keep apart:
// packetpath the one face of the two dataplanes (a port pair's Path and
// its Kernel side), and protect container protection and discovery,
// which reaches the agent only through its protect.Deps (the rule
// manager as protect.Rules).
//
// Domain code returns its own errors (api.ErrInvalid for a request the
// contract refuses, a validation error for rules that do not compile, not
// found and conflict sentinels); the API server alone maps them to HTTP
// statuses.
package agent
