package protect

import (
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/ctl/audit"
	"github.com/deepwall/deepwall/ctl/eve"
	"github.com/deepwall/deepwall/ctl/resolve"
	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dataplane/wire"
	"github.com/deepwall/deepwall/rules"
	"github.com/deepwall/deepwall/xdp"
)

// modeRules: an ACL rule with a category, one without, and the default.
const modeRules = `rules:
  - {id: 9100, name: console closed, action: block, category: policy, proto: tcp, dst_port: 9090}
  - {id: 9200, name: no telnet, action: block, proto: tcp, dst_port: 23}
`

// testProtector is a protector over a test rule manager with one port
// (web, inner port veth7, 198.18.0.2), its store in a temporary
// directory, and no dataplane.
func testProtector(tb testing.TB, ruleText string) (*Protector, *protectedPort, *testRules) {
	tb.Helper()
	tr := newTestRules(tb, ruleText)
	p, err := Open(Deps{Workers: 2, StateDir: tb.TempDir(), Rules: tr, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.db.Close() })
	pp := &protectedPort{rec: portRecord{Target: resolve.Target{Name: "web"}, Iface: "eth0",
		Wire: &wire.Record{Inner: wire.Link{Name: "veth7"}}}}
	pp.mode.Store(api.ModeProtect)
	pp.addrs.Store(&[]netip.Addr{netip.MustParseAddr("198.18.0.2")})
	p.ports["web"] = pp
	p.publish()
	return p, pp, tr
}

// testRules is a minimal rule manager (Rules): the running set compiled
// with the containers resolved (addrs), a change swapped in at once, the
// audit entries kept.
type testRules struct {
	mu      sync.Mutex
	set     *rules.Set
	c       *rules.Compiled
	version uint64
	addrs   rules.ContainerAddrs
	audits  []audit.Entry
}

func newTestRules(tb testing.TB, text string) *testRules {
	tb.Helper()
	set, err := rules.Parse("test", []byte(text))
	if err != nil {
		tb.Fatal(err)
	}
	r := &testRules{version: 1}
	if err := r.compile(set); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.c.Close()
	})
	return r
}

// compile makes set the running one; mu held.
func (r *testRules) compile(set *rules.Set) error {
	resolved := set
	if r.addrs != nil && len(set.Containers()) > 0 {
		resolved = set.ResolveContainers(r.addrs)
	}
	c, err := rules.Compile(resolved)
	if err != nil {
		return err
	}
	if r.c != nil {
		r.c.Close()
	}
	r.set, r.c = set, c
	return nil
}

func (r *testRules) Running() *rules.Compiled {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.c
}

func (r *testRules) RecompileContainers() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.compile(r.set)
}

func (r *testRules) Audit(e audit.Entry) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.audits = append(r.audits, e)
	return nil
}

func (r *testRules) Change(op string, _ Caller, _ string, build func(*rules.Set) (*rules.Set, []uint32, error)) (api.ChangeResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := api.ChangeResult{Op: op, FromVersion: r.version, ToVersion: r.version}
	set, ids, err := build(r.set)
	if err != nil {
		return res, err
	}
	if err := r.compile(set); err != nil {
		return res, err
	}
	r.version++
	res.Changed, res.ToVersion, res.IDs, res.Rules = true, r.version, ids, len(set.Rules)
	return res, nil
}

func tcpFrame(src, dst string) *dataplane.Frame {
	s, d := netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst)
	k, dir := xdp.MakeFlowKey(s.Addr(), d.Addr(), s.Port(), d.Port(), 6)
	return &dataplane.Frame{Key: k, Dir: dir}
}

func TestModeInspector(t *testing.T) {
	drop := dataplane.Verdict{Action: dataplane.Drop, Final: true, Reset: true, RuleID: 100}
	fwd := dataplane.Verdict{Action: dataplane.Forward}
	type want struct {
		v      dataplane.Verdict
		events int // would-block events emitted by this frame
	}
	tests := []struct {
		name   string
		mode   string
		engine dataplane.Verdict
		frames []*dataplane.Frame
		want   []want
		sig    uint32 // signature of the events
		cat    string
		src    string // src of the events
	}{
		{name: "protect passes the engine's drop", mode: api.ModeProtect, engine: drop,
			frames: []*dataplane.Frame{tcpFrame("198.18.0.1:40000", "198.18.0.2:8080")}, want: []want{{drop, 0}}},
		{name: "protect reports nothing for an ACL block (the kernel drops)", mode: api.ModeProtect, engine: fwd,
			frames: []*dataplane.Frame{tcpFrame("198.18.0.1:40000", "198.18.0.2:9090")}, want: []want{{fwd, 0}}},
		{name: "monitor turns a drop into a final forward", mode: api.ModeMonitor, engine: drop,
			frames: []*dataplane.Frame{tcpFrame("198.18.0.1:40000", "198.18.0.2:8080")},
			want:   []want{{dataplane.Verdict{Action: dataplane.Forward, Final: true}, 0}}},
		{name: "discover turns a drop into a final forward", mode: api.ModeDiscover, engine: drop,
			frames: []*dataplane.Frame{tcpFrame("198.18.0.1:40000", "198.18.0.2:8080")},
			want:   []want{{dataplane.Verdict{Action: dataplane.Forward, Final: true}, 0}}},
		{name: "monitor keeps a non-final drop's flow inspected", mode: api.ModeMonitor,
			engine: dataplane.Verdict{Action: dataplane.Drop},
			frames: []*dataplane.Frame{tcpFrame("198.18.0.1:40000", "198.18.0.2:8080")}, want: []want{{fwd, 0}}},
		{name: "monitor reports an ACL block once per flow", mode: api.ModeMonitor, engine: fwd,
			frames: []*dataplane.Frame{tcpFrame("198.18.0.1:40000", "198.18.0.2:9090"), tcpFrame("198.18.0.2:9090", "198.18.0.1:40000"),
				tcpFrame("198.18.0.1:40000", "198.18.0.2:9090")},
			want: []want{{fwd, 1}, {fwd, 0}, {fwd, 0}}, sig: 9100, cat: "policy", src: "198.18.0.1"},
		{name: "the first frame seen may come from the key's high end", mode: api.ModeMonitor, engine: fwd,
			frames: []*dataplane.Frame{tcpFrame("198.18.0.9:40000", "198.18.0.2:9090")},
			want:   []want{{fwd, 1}}, sig: 9100, cat: "policy", src: "198.18.0.9"},
		{name: "an ACL rule without category is reported as acl", mode: api.ModeDiscover, engine: fwd,
			frames: []*dataplane.Frame{tcpFrame("198.18.0.1:40001", "198.18.0.2:23")},
			want:   []want{{fwd, 1}}, sig: 9200, cat: "acl", src: "198.18.0.1"},
		{name: "distinct flows are reported each", mode: api.ModeMonitor, engine: fwd,
			frames: []*dataplane.Frame{tcpFrame("198.18.0.1:40000", "198.18.0.2:9090"), tcpFrame("198.18.0.1:40001", "198.18.0.2:9090")},
			want:   []want{{fwd, 1}, {fwd, 1}}, sig: 9100, cat: "policy", src: "198.18.0.1"},
		{name: "what the ACL allows is not reported", mode: api.ModeMonitor, engine: fwd,
			frames: []*dataplane.Frame{tcpFrame("198.18.0.1:40000", "198.18.0.2:8080"), {}},
			want:   []want{{fwd, 0}, {fwd, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, pp, _ := testProtector(t, modeRules)
			pp.mode.Store(tt.mode)
			var got []*eve.Event
			m := newModeInspector(p, pp, dataplane.InspectorFunc(func(int, *dataplane.Frame) dataplane.Verdict { return tt.engine }))
			m.emit = func(ev *eve.Event) bool { got = append(got, ev); return true }
			for i, f := range tt.frames {
				n := len(got)
				if v := m.Inspect(1, f); !reflect.DeepEqual(v, tt.want[i].v) {
					t.Errorf("frame %d: verdict %+v, want %+v", i, v, tt.want[i].v)
				}
				if len(got)-n != tt.want[i].events {
					t.Errorf("frame %d: %d events, want %d", i, len(got)-n, tt.want[i].events)
				}
			}
			for _, ev := range got {
				al := ev.Alert
				if ev.EventType != eve.EventAlert || al == nil || al.Action != "allowed" || !al.WouldBlock || al.SignatureID != tt.sig ||
					al.Category != tt.cat || ev.InIface != "veth7" || ev.SrcIP != tt.src || ev.DestIP != "198.18.0.2" || ev.Proto != "TCP" {
					t.Errorf("event %+v alert %+v", ev, al)
				}
			}
		})
	}
}

// A changed ACL (or mode) makes flows be checked again.
func TestModeInspectorForgetSeen(t *testing.T) {
	p, pp, _ := testProtector(t, modeRules)
	pp.mode.Store(api.ModeMonitor)
	n := 0
	m := newModeInspector(p, pp, dataplane.InspectorFunc(func(int, *dataplane.Frame) dataplane.Verdict { return dataplane.Verdict{} }))
	m.emit = func(*eve.Event) bool { n++; return true }
	f := tcpFrame("198.18.0.1:40000", "198.18.0.2:9090")
	m.Inspect(0, f)
	m.Inspect(0, f)
	m.forgetSeen()
	m.Inspect(0, f)
	if n != 2 {
		t.Errorf("%d events, want 2 (once, then once more after forgetSeen)", n)
	}
	// A worker index beyond the table is inspected without the check.
	if v := m.Inspect(99, tcpFrame("198.18.0.1:40002", "198.18.0.2:9090")); v.Action != dataplane.Forward || n != 2 {
		t.Errorf("worker out of range: %+v, %d events", v, n)
	}
}

// Annotate: an engine block on a flow of a monitoring container becomes
// a would-block; not when an endpoint is in protect mode.
func TestAnnotate(t *testing.T) {
	tests := []struct {
		name           string
		mode           string
		src, dst       string
		action         string
		wantAction     string
		wantWouldBlock bool
		wantIface      string
	}{
		{"monitor: block to the container", api.ModeMonitor, "198.18.0.1", "198.18.0.2", "blocked", "allowed", true, "veth7"},
		{"discover: block from the container", api.ModeDiscover, "198.18.0.2", "198.18.0.1", "blocked", "allowed", true, "veth7"},
		{"protect: block stays", api.ModeProtect, "198.18.0.1", "198.18.0.2", "blocked", "blocked", false, "veth7"},
		{"monitor: an alert rule is not a would-block", api.ModeMonitor, "198.18.0.1", "198.18.0.2", "allowed", "allowed", false, "veth7"},
		{"not a protected container", api.ModeMonitor, "198.18.0.1", "198.18.0.3", "blocked", "blocked", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, pp, _ := testProtector(t, modeRules)
			pp.mode.Store(tt.mode)
			ev := &eve.Event{EventType: eve.EventAlert, SrcIP: tt.src, DestIP: tt.dst, Proto: "TCP", SrcPort: 40000, DestPort: 80,
				Alert: &eve.Alert{Action: tt.action, SignatureID: 100}}
			p.Annotate(ev)
			if ev.Alert.Action != tt.wantAction || ev.Alert.WouldBlock != tt.wantWouldBlock || ev.InIface != tt.wantIface {
				t.Errorf("got action %q would_block %v in_iface %q", ev.Alert.Action, ev.Alert.WouldBlock, ev.InIface)
			}
			if wantName := map[bool]string{true: "web"}[tt.wantIface != ""]; (ev.Container == nil) != (wantName == "") ||
				ev.Container != nil && ev.Container.Name != wantName {
				t.Errorf("container %+v, want %q", ev.Container, wantName)
			}
		})
	}
	// Two protected containers, one in protect mode: the block stands.
	p, pp, _ := testProtector(t, modeRules)
	pp.mode.Store(api.ModeMonitor)
	db := &protectedPort{rec: portRecord{Target: resolve.Target{Name: "db"}, Wire: &wire.Record{Inner: wire.Link{Name: "veth9"}}}}
	db.mode.Store(api.ModeProtect)
	db.addrs.Store(&[]netip.Addr{netip.MustParseAddr("198.18.0.3")})
	p.ports["db"] = db
	p.publish()
	ev := &eve.Event{EventType: eve.EventAlert, SrcIP: "198.18.0.2", DestIP: "198.18.0.3", Proto: "TCP",
		Alert: &eve.Alert{Action: "blocked"}}
	p.Annotate(ev)
	if ev.Alert.Action != "blocked" || ev.Alert.WouldBlock || ev.InIface != "veth9" || ev.Container == nil || ev.Container.Name != "db" {
		t.Errorf("monitor -> protect: %+v in_iface %q container %+v", ev.Alert, ev.InIface, ev.Container)
	}
}

// TestEventLabels bounds the labels events carry: the first
// maxEventLabels keys in order, long values cut, long keys and the rest
// counted as omitted.
func TestEventLabels(t *testing.T) {
	many := map[string]string{}
	for i := range maxEventLabels + 3 {
		many[fmt.Sprintf("k%03d", i)] = "v"
	}
	long := "x" + strings.Repeat("é", maxEventLabelLen) // 2 bytes a rune: cut inside one
	tests := []struct {
		name  string
		in    map[string]string
		n     int
		check func(map[string]string) bool
	}{
		{"none", nil, 0, func(m map[string]string) bool { return m == nil }},
		{"few", map[string]string{"tier": "web", "app": "shop"}, 2, func(m map[string]string) bool { return m["tier"] == "web" }},
		{"many", many, maxEventLabels + 1, func(m map[string]string) bool {
			return m["k000"] == "v" && m[fmt.Sprintf("k%03d", maxEventLabels-1)] == "v" && m[labelsOmitted] == "3"
		}},
		{"long value cut", map[string]string{"note": long}, 1, func(m map[string]string) bool {
			return len(m["note"]) <= maxEventLabelLen && utf8.ValidString(m["note"]) && strings.HasPrefix(long, m["note"])
		}},
		{"long key omitted", map[string]string{strings.Repeat("k", maxEventLabelLen+1): "v", "a": "b"}, 2, func(m map[string]string) bool {
			return m["a"] == "b" && m[labelsOmitted] == "1"
		}},
	}
	for _, tt := range tests {
		got := eventLabels(tt.in)
		if len(got) != tt.n || !tt.check(got) {
			t.Errorf("%s: %d labels %v", tt.name, len(got), got)
		}
	}
	// The event's container carries them, the same object for every event.
	pp := &protectedPort{rec: portRecord{Target: resolve.Target{Name: "web", Runtime: "podman", Labels: many}}}
	if c := pp.workload(); c != pp.workload() || len(c.Labels) != maxEventLabels+1 || c.Runtime != "podman" {
		t.Errorf("workload %+v", c)
	}
}
