package ctl

import (
	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dpi"
	"github.com/deepwall/deepwall/rules"
	"github.com/deepwall/deepwall/xdp"
)

// Engine is what the agent needs from the DPI engine (*dpi.Engine): it
// judges frames, takes a new compiled rule set atomically (owning it from
// then on and closing the one it replaces), hears of flows that ended in
// the kernel fast path, ages its flows, and reports flows and counters.
// Tests use fakes.
type Engine interface {
	dataplane.Inspector
	SetRules(c *rules.Compiled) error
	FlowEnded(key xdp.FlowKey, pkts, bytes [2]uint64) bool
	Tick(now int64)
	Flows(fn func(dpi.FlowInfo) bool)
	Stats() dpi.Stats
	Close() error
}

var _ Engine = (*dpi.Engine)(nil)

// engineConfig is the engine the agent runs: the kernel enforces the ACL
// and carries final flows, events go to the verdict log.
func engineConfig(c *rules.Compiled, workers int, emit func(*dpi.Event)) dpi.Config {
	return dpi.Config{Workers: workers, Rules: c, Emit: emit, KernelACL: true, Bypass: true}
}

// newEngine builds the agent's engine; tests of the agent swap it.
var newEngine = func(cfg dpi.Config) (Engine, error) { return dpi.New(cfg) }
