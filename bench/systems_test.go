package bench

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deepwall/deepwall/bench/refxdp"
	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/internal/testnet"
	"github.com/deepwall/deepwall/rules"
)

// The systems of the traffic scenarios (1, 2, 3 and 5). Each one is set
// up once per scenario on a topology of its own (client ns ↔ fw ns ↔
// server ns, testnet.NewTopology) and then measured in interleaved
// rounds; idle systems cost nothing meanwhile (the agent's loops sleep in
// poll). A new way of forwarding between inner and outer — an agent
// mode, another peer — is one more sysKind and one more case in up.

// sysKind is what forwards between the fw namespace's ports.
type sysKind int

const (
	// kindBridge: a Linux bridge enslaving inner and outer.
	kindBridge sysKind = iota
	// kindRedirect: bench/refxdp, the plain in-kernel XDP redirect.
	kindRedirect
	// kindAgent: `deepwall run` on inner and outer (XDP + AF_XDP).
	kindAgent
	// kindProxy: a Linux bridge, and nginx in fw as a reverse proxy on
	// the bridge's address (proxy_test.go).
	kindProxy
)

// ruleKind selects the rule file an agent system runs.
type ruleKind int

const (
	// rulesL4 is an L3/L4-only policy: every flow's verdict is final at
	// its first packet, the kernel carries the rest (the fast path).
	rulesL4 ruleKind = iota
	// rulesDefault is the default pack (HTTP flows inspected to their end:
	// the agent sets no inspection depth).
	rulesDefault
	// rulesPayload is the default pack plus a raw-payload rule, which
	// keeps flows the default pack would bypass (unidentified UDP) in
	// inspection.
	rulesPayload
)

// sysSpec describes one compared system.
type sysSpec struct {
	name string
	kind sysKind
	// defaultOffloads leaves the endpoints' offloads at the kernel's
	// defaults; every other system runs with the settings deepwall's
	// dataplane gives the port peers (see setEndpointOffloads).
	defaultOffloads bool
	rules           ruleKind
	workers         int // agent DPI workers; 0: the agent's default (one per CPU)
	// mode is the agent's --mode flag ("" = its default, XDP + AF_XDP
	// on veth).
	mode string
	// datapath is the agent's --datapath flag ("" = its default, tc).
	datapath string
	// bridge puts a Linux bridge between inner and outer for an agent
	// whose mode works on bridged traffic (NFQUEUE through br_netfilter).
	bridge bool
	// modsec runs ModSecurity and CRS in a kindProxy's nginx.
	modsec bool
}

// The systems, by the names of names.go.
var (
	specBridgeDefault = sysSpec{name: sysBridgeDefault, kind: kindBridge, defaultOffloads: true}
	specBridge        = sysSpec{name: sysBridge, kind: kindBridge}
	specRedirect      = sysSpec{name: sysRedirect, kind: kindRedirect}
	// deepwall's tc path leaves the endpoints' offloads alone; its XDP
	// path turns their TX checksum offload off itself.
	specFastPath    = sysSpec{name: sysFastPath, kind: kindAgent, rules: rulesL4, defaultOffloads: true}
	specFastPathXDP = sysSpec{name: sysFastPathXDP, kind: kindAgent, rules: rulesL4, datapath: "xdp"}
	specDPI         = sysSpec{name: sysDPI, kind: kindAgent, rules: rulesDefault, defaultOffloads: true}
	specDPIXDP      = sysSpec{name: sysDPIXDP, kind: kindAgent, rules: rulesDefault, datapath: "xdp"}
	specDPIPayload  = sysSpec{name: sysDPI, kind: kindAgent, rules: rulesPayload, defaultOffloads: true}
	specDPI1        = sysSpec{name: sysDPI1, kind: kindAgent, rules: rulesDefault, workers: 1, defaultOffloads: true}
	specDPI2        = sysSpec{name: sysDPI2, kind: kindAgent, rules: rulesDefault, workers: 2, defaultOffloads: true}
	specProxy       = sysSpec{name: sysProxy, kind: kindProxy, defaultOffloads: true}
	specModSec      = sysSpec{name: sysModSec, kind: kindProxy, defaultOffloads: true, modsec: true}
)

// target is where e's clients send their requests to reach a server on
// port: the server, or the proxy.
func (e *sysEnv) target(port uint16) netip.AddrPort {
	if e.spec.kind == kindProxy {
		return netip.AddrPortFrom(proxyIP, port)
	}
	return netip.AddrPortFrom(testnet.ServerIP, port)
}

// sysEnv is a system set up on its topology.
type sysEnv struct {
	spec  sysSpec
	topo  *testnet.Topology
	agent *agent // agent systems only
}

// up builds spec's topology and starts what forwards on it; everything is
// removed at tb's cleanup.
func up(tb testing.TB, spec sysSpec) *sysEnv {
	tb.Helper()
	e := &sysEnv{spec: spec}
	e.topo = testnet.NewTopology(tb, testnet.TopologyOptions{Bridge: spec.kind == kindBridge || spec.kind == kindProxy || spec.bridge})
	if !spec.defaultOffloads {
		setEndpointOffloads(tb, e.topo)
	}
	switch spec.kind {
	case kindBridge:
	case kindRedirect:
		f, err := refxdp.Load()
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { f.Close() })
		e.topo.FW.MustDo(tb, func() error {
			if err := f.Attach(e.topo.InnerIndex, e.topo.OuterIndex); err != nil {
				return err
			}
			return f.Attach(e.topo.OuterIndex, e.topo.InnerIndex)
		})
	case kindProxy:
		startProxy(tb, e)
	case kindAgent:
		e.agent = startAgent(tb, e.topo, writeRules(tb, spec.rules), spec.workers, spec.mode, spec.datapath)
	}
	return e
}

// upAll sets up every system, with progress lines.
func upAll(tb testing.TB, scenario string, specs []sysSpec) []*sysEnv {
	tb.Helper()
	envs := make([]*sysEnv, len(specs))
	for i, s := range specs {
		h.progress("%s: setting up %s", scenario, s.name)
		envs[i] = up(tb, s)
	}
	return envs
}

// writeRules writes the rule file of k into a temporary directory and
// returns its path.
func writeRules(tb testing.TB, k ruleKind) string {
	tb.Helper()
	dir := tb.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			tb.Fatal(err)
		}
		return p
	}
	switch k {
	case rulesL4:
		return write("l4.yaml", l4Rules())
	case rulesPayload:
		write("default.yaml", rules.DefaultPackYAML())
		return write("payload.yaml", payloadRules("default.yaml"))
	default:
		return write("default.yaml", rules.DefaultPackYAML())
	}
}

// endpointOffloads are the features every system but "bridge, default
// offloads" runs with on both endpoints' eth0: what deepwall's dataplane
// sets on its ports' peers (TX checksum offload off, and with it TSO; GRO
// on), without which no XDP path works on veth (docs/architecture.md,
// measured facts). Setting them
// here, before any system starts, makes the comparison one of forwarding
// paths under the same endpoint settings; the agent then finds nothing to
// change.
var endpointOffloads = []string{"tx", "off", "gro", "on"}

// offloadNote is written beside the figures of the systems that run with
// endpointOffloads.
const offloadNote = "\"same endpoint offloads\": the endpoints' TX checksum offload and TSO off, GRO on (what deepwall's XDP path sets on its port peers; needed by every XDP path on veth); the other systems keep the kernel's default offloads"

func setEndpointOffloads(tb testing.TB, topo *testnet.Topology) {
	tb.Helper()
	for _, ns := range []*testnet.NS{topo.Client, topo.Server} {
		out, err := ns.Run(exec.Command("ethtool", append([]string{"-K", testnet.EndpointIf}, endpointOffloads...)...))
		if err != nil {
			tb.Fatalf("%s: ethtool -K %s %s: %v: %s", ns.Name, testnet.EndpointIf, strings.Join(endpointOffloads, " "), err, out)
		}
	}
}

// requireRoot marks scenario s as not measured and skips b when the
// traffic scenarios cannot run.
func requireRoot(b *testing.B, s *scenario) {
	b.Helper()
	if os.Geteuid() != 0 {
		s.skip("needs root (network namespaces, XDP, AF_XDP): run `make bench` as root")
	}
	testnet.RequirePrivileged(b)
}

// agentCounters is the part of the agent's status the scenarios check:
// how much traffic took which path.
type agentCounters struct {
	inspected, fastAllowed, blocks, resets uint64
}

func (e *sysEnv) counters(tb testing.TB) agentCounters {
	tb.Helper()
	if e.agent == nil {
		return agentCounters{}
	}
	st, err := e.agent.status()
	if err != nil {
		tb.Fatalf("%s: status: %v", e.spec.name, err)
	}
	return countersOf(st)
}

func countersOf(st api.Status) agentCounters {
	return agentCounters{inspected: st.Counters.Inspected, fastAllowed: st.Counters.FastPathAllowed,
		blocks: st.Counters.Blocks, resets: st.Counters.Resets}
}

// pathNote says which share of the frames between two readings of an
// agent's counters went through user-space inspection: the evidence that
// a "fast path" figure was the fast path and a "DPI" figure the DPI path.
func (e *sysEnv) pathNote(a, b agentCounters) string {
	ins, fast := b.inspected-a.inspected, b.fastAllowed-a.fastAllowed
	if ins+fast == 0 {
		return ""
	}
	if e.spec.mode != "" {
		// Another packet path may count its kernel fast path otherwise.
		return fmt.Sprintf("%d frames inspected in user space, %d counted on the kernel fast path", ins, fast)
	}
	return fmt.Sprintf("%.1f%% of frames inspected in user space, %.1f%% on the kernel fast path",
		100*float64(ins)/float64(ins+fast), 100*float64(fast)/float64(ins+fast))
}

// cpuWindow measures the machine's busy cores and the agent's cores over
// a measurement.
type cpuWindow struct {
	pid     int
	a, self cpuSample
}

func startCPU(e *sysEnv) *cpuWindow {
	w := &cpuWindow{}
	if e.agent != nil {
		w.pid = e.agent.pid()
	}
	w.a, _ = readCPU(w.pid)
	w.self, _ = readCPU(os.Getpid())
	return w
}

// stop returns the machine's busy cores and the agent's cores since start.
func (w *cpuWindow) stop() (machine, agent float64) {
	b, err := readCPU(w.pid)
	if err != nil {
		return 0, 0
	}
	return cores(w.a, b)
}

// harnessCores returns the cores this process (the harness: generators,
// clients, servers) used since start.
func (w *cpuWindow) harnessCores() float64 {
	b, err := readCPU(os.Getpid())
	if err != nil {
		return 0
	}
	_, c := cores(w.self, b)
	return c
}

// settle lets the machine calm down between measurements (TIME_WAIT,
// deferred work of the last system).
func settle() { time.Sleep(200 * time.Millisecond) }

// nfqueueSpecs is the agent in its NFQUEUE mode (`deepwall run --mode
// nfqueue`: iptables on a bridge between inner and outer, br_netfilter,
// connmark for decided flows) with rule set k, for the throughput,
// packet-rate and HTTP scenarios.
func nfqueueSpecs(k ruleKind) []sysSpec {
	return []sysSpec{{name: sysNFQueue, kind: kindAgent, rules: k, mode: "nfqueue", bridge: true}}
}

// nfqueueNote is written beside the NFQUEUE figures.
const nfqueueNote = "NFQUEUE mode: a Linux bridge between inner and outer, iptables (br_netfilter) queues the flows to the agent, connmark carries decided flows in the kernel; the same engine and rules as deepwall DPI"

// noteSystems writes each system's standing notes beside its figures in
// every case: the endpoint offloads, the NFQUEUE set-up.
func noteSystems(s *scenario, cases []string, envs []*sysEnv) {
	for _, e := range envs {
		for _, c := range cases {
			if !e.spec.defaultOffloads {
				s.setNote(c, e.spec.name, "same endpoint offloads")
			}
			if e.spec.mode == "nfqueue" {
				s.setNote(c, e.spec.name, nfqueueNote)
			}
		}
	}
}
