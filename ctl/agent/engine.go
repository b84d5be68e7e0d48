package agent

import (
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/deepwall/deepwall/ctl/eve"
	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dpi"
	"github.com/deepwall/deepwall/rules"
	"github.com/deepwall/deepwall/xdp"
)

// dpiEngine is what the agent needs from the DPI engine (*dpi.Engine): it
// judges frames, takes a new compiled rule set atomically (owning it from
// then on and closing the one it replaces), hears of flows that ended in
// the kernel fast path, ages its flows, and reports flows and counters.
// Tests use fakes.
type dpiEngine interface {
	dataplane.Inspector
	SetRules(c *rules.Compiled) error
	FlowEnded(key xdp.FlowKey, pkts, bytes [2]uint64) bool
	Tick(now int64)
	Flows(fn func(dpi.FlowInfo) bool)
	Stats() dpi.Stats
	Close() error
}

var _ dpiEngine = (*dpi.Engine)(nil)

// engineConfig is the engine the agent runs: the kernel enforces the ACL
// and carries final flows, events go to the verdict log.
func engineConfig(c *rules.Compiled, workers int, h2 dpi.H2BlockPolicy, emit func(*eve.Event)) dpi.Config {
	return dpi.Config{Workers: workers, Rules: c, Emit: emit, KernelACL: true, Bypass: true, H2Block: h2}
}

// newEngine builds the agent's engine; tests of the agent swap it.
var newEngine = func(cfg dpi.Config) (dpiEngine, error) { return dpi.New(cfg) }

// maxBlockRules bounds blockRules' memory; it is cleared when full (a
// verdict then goes without its rule id, which revocation copes with).
const maxBlockRules = 4096

// blockRules fills Verdict.RuleID for the engine's final drops. The engine
// names the blocking rule in the blocked alert it emits while judging the
// frame (on the worker's goroutine, before Inspect returns) but not in the
// verdict; the agent's Emit hook notes it per flow and the inspector
// wrapper takes it when the final Drop comes back, so the dataplane stores
// the rule with the kernel's verdict. Both paths are taken only on blocks.
type blockRules struct {
	n  atomic.Int32
	mu sync.Mutex
	m  map[xdp.FlowKey]uint32
}

// noteEvent records the rule of a blocked alert.
func (b *blockRules) noteEvent(ev *eve.Event) {
	if ev.Alert == nil || ev.Alert.Action != "blocked" || ev.Alert.SignatureID == 0 {
		return
	}
	src, err1 := netip.ParseAddr(ev.SrcIP)
	dst, err2 := netip.ParseAddr(ev.DestIP)
	proto, ok := eve.ProtoNumber(ev.Proto)
	if err1 != nil || err2 != nil || !ok {
		return
	}
	k, _ := xdp.MakeFlowKey(src, dst, ev.SrcPort, ev.DestPort, proto)
	b.mu.Lock()
	if b.m == nil || len(b.m) >= maxBlockRules {
		b.m = make(map[xdp.FlowKey]uint32)
	}
	b.m[k] = ev.Alert.SignatureID
	b.n.Store(int32(len(b.m)))
	b.mu.Unlock()
}

// take returns and forgets the rule noted for k (0 if none).
func (b *blockRules) take(k xdp.FlowKey) uint32 {
	if b.n.Load() == 0 {
		return 0
	}
	b.mu.Lock()
	id := b.m[k]
	delete(b.m, k)
	b.n.Store(int32(len(b.m)))
	b.mu.Unlock()
	return id
}

// ruleInspector is the dpi→dataplane adapter: the engine's verdicts with
// the deciding rule of final drops filled in.
type ruleInspector struct {
	dataplane.Inspector
	rules *blockRules
}

// Inspect implements dataplane.Inspector.
func (r ruleInspector) Inspect(w int, f *dataplane.Frame) dataplane.Verdict {
	v := r.Inspector.Inspect(w, f)
	if v.Rewritten {
		// An HTTP/2 stream was blocked alone: the connection goes on,
		// its note must not name a later verdict of the flow.
		r.rules.take(f.Key)
	}
	if v.Final && v.Action == dataplane.Drop {
		// Taken even when the engine named the rule, so no note outlives
		// its flow's verdict.
		if id := r.rules.take(f.Key); v.RuleID == 0 {
			v.RuleID = id
		}
	}
	return v
}
