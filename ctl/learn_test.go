package ctl

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/deepwall/deepwall/dataplane/wire"
	"github.com/deepwall/deepwall/rules"
)

func learnedLines(l LearnedList) []string {
	var out []string
	for _, r := range l.Rules {
		out = append(out, fmt.Sprintf("%s %s %s %s/%d %s", r.Container, r.Direction, r.Peer, r.Proto, r.Port, r.App))
	}
	slices.Sort(out)
	return out
}

func TestLearnerObserve(t *testing.T) {
	type obs struct {
		client, server string
		proto          uint8
		app            string
	}
	tests := []struct {
		name string
		obs  []obs
		want []string
	}{
		{"inbound", []obs{{"198.18.0.1:40000", "198.18.0.2:8080", 6, "http"}}, []string{"web in 198.18.0.1 tcp/8080 http"}},
		{"outbound", []obs{{"198.18.0.2:40000", "198.18.0.53:53", 17, "dns"}}, []string{"web out 198.18.0.53 udp/53 dns"}},
		{"client ports do not matter", []obs{{"198.18.0.1:40000", "198.18.0.2:8080", 6, ""}, {"198.18.0.1:40001", "198.18.0.2:8080", 6, ""}},
			[]string{"web in 198.18.0.1 tcp/8080 "}},
		{"app learned later", []obs{{"198.18.0.1:40000", "198.18.0.2:8080", 6, "unknown"}, {"198.18.0.1:40001", "198.18.0.2:8080", 6, "http"}},
			[]string{"web in 198.18.0.1 tcp/8080 http"}},
		{"icmp", []obs{{"198.18.0.1:0", "198.18.0.2:0", 1, ""}}, []string{"web in 198.18.0.1 icmp/0 "}},
		{"other protocols are not learned", []obs{{"198.18.0.1:0", "198.18.0.2:0", 47, ""}}, nil},
		{"monitor mode does not learn", []obs{{"198.18.0.1:40000", "198.18.0.3:5432", 6, ""}}, nil},
		{"flows of no container", []obs{{"198.18.0.1:40000", "198.18.0.9:80", 6, ""}}, nil},
		{"distinct peers, ports, protocols", []obs{{"198.18.0.1:40000", "198.18.0.2:8080", 6, ""}, {"198.18.0.4:40000", "198.18.0.2:8080", 6, ""},
			{"198.18.0.1:40000", "198.18.0.2:9090", 6, ""}, {"198.18.0.1:40000", "198.18.0.2:8080", 17, ""}},
			[]string{"web in 198.18.0.1 tcp/8080 ", "web in 198.18.0.1 tcp/9090 ", "web in 198.18.0.1 udp/8080 ", "web in 198.18.0.4 tcp/8080 "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, web, _ := testProtector(t, modeRules)
			web.mode.Store(ModeDiscover)
			db := &protectedPort{rec: portRecord{Target: Target{Name: "db"}, Wire: &wire.Record{}}}
			db.mode.Store(ModeMonitor)
			db.addrs.Store(&[]netip.Addr{netip.MustParseAddr("198.18.0.3")})
			p.ports["db"] = db
			p.publish()
			for _, o := range tt.obs {
				p.learn.observe(netip.MustParseAddrPort(o.client), netip.MustParseAddrPort(o.server), o.proto, o.app)
			}
			got := learnedLines(p.learn.Learned())
			if !slices.Equal(got, tt.want) {
				t.Errorf("learned:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestLearnerBounded(t *testing.T) {
	p, web, _ := testProtector(t, modeRules)
	web.mode.Store(ModeDiscover)
	server := netip.MustParseAddrPort("198.18.0.2:80")
	for i := range MaxLearned + 10 {
		peer := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		p.learn.observe(netip.AddrPortFrom(peer, 40000), server, 6, "")
	}
	l := p.learn.Learned()
	if len(l.Rules) != MaxLearned {
		t.Fatalf("%d learned, want the bound %d", len(l.Rules), MaxLearned)
	}
	ids := map[uint32]bool{}
	for _, r := range l.Rules {
		if ids[r.ID] || ids[r.ID+1] || r.ID < learnedIDBase || r.ID+1 >= learnedDenyBase {
			t.Fatalf("rule id %d collides or is out of range", r.ID)
		}
		ids[r.ID], ids[r.ID+1] = true, true
	}
}

// Promoted rules, compiled with the container resolved, allow exactly
// the learned flows (both directions) and deny the rest to and from the
// container; a second promotion goes before the existing default deny.
func TestBuildPromoted(t *testing.T) {
	base, err := rules.Parse("base", []byte("rules:\n  - {id: 10, name: deny telnet, action: block, proto: tcp, dst_port: 23}\n"))
	if err != nil {
		t.Fatal(err)
	}
	first := []LearnedRule{
		{ID: learnedIDBase + 2, Container: "web", Direction: "in", Peer: "198.18.0.1", Proto: "tcp", Port: 8080, App: "http"},
		{ID: learnedIDBase + 4, Container: "web", Direction: "out", Peer: "198.18.0.53", Proto: "udp", Port: 53, App: "dns"},
	}
	set, ids, err := buildPromoted(base, first)
	if err != nil {
		t.Fatal(err)
	}
	wantIDs := []uint32{learnedIDBase + 2, learnedIDBase + 3, learnedIDBase + 4, learnedIDBase + 5, learnedDenyBase, learnedDenyBase + 1}
	if !slices.Equal(ids, wantIDs) {
		t.Errorf("ids %v, want %v", ids, wantIDs)
	}
	second := []LearnedRule{{ID: learnedIDBase + 6, Container: "web", Direction: "in", Peer: "198.18.0.4", Proto: "tcp", Port: 9090}}
	set2, ids2, err := buildPromoted(set, second)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids2, []uint32{learnedIDBase + 6, learnedIDBase + 7}) {
		t.Errorf("second promotion ids %v: want no new default deny", ids2)
	}
	deny := slices.IndexFunc(set2.Rules, func(r *rules.Rule) bool { return r.ID == learnedDenyBase })
	added := slices.IndexFunc(set2.Rules, func(r *rules.Rule) bool { return r.ID == learnedIDBase+6 })
	if deny < 0 || added < 0 || added > deny {
		t.Errorf("second promotion at %d, default deny at %d: want it before", added, deny)
	}
	// The canonical form keeps the selectors (the stored set).
	if !strings.Contains(string(set2.Canonical()), "container:web") {
		t.Errorf("canonical form lost the selectors:\n%s", set2.Canonical())
	}

	web := netip.MustParseAddr("198.18.0.2")
	resolved := set2.ResolveContainers(func(name string) []netip.Addr {
		if name == "web" {
			return []netip.Addr{web}
		}
		return nil
	})
	c, err := rules.Compile(resolved)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ap := netip.MustParseAddrPort
	tests := []struct {
		proto    uint8
		src, dst string
		want     rules.Action
	}{
		{6, "198.18.0.1:40000", "198.18.0.2:8080", rules.ActionAllow},
		{6, "198.18.0.2:8080", "198.18.0.1:40000", rules.ActionAllow},
		{17, "198.18.0.2:40000", "198.18.0.53:53", rules.ActionAllow},
		{17, "198.18.0.53:53", "198.18.0.2:40000", rules.ActionAllow},
		{6, "198.18.0.4:40000", "198.18.0.2:9090", rules.ActionAllow},
		{6, "198.18.0.1:40000", "198.18.0.2:9090", rules.ActionBlock}, // another port
		{6, "198.18.0.7:40000", "198.18.0.2:8080", rules.ActionBlock}, // another client
		{17, "198.18.0.2:40000", "198.18.0.53:5353", rules.ActionBlock},
		{6, "198.18.0.2:40000", "198.18.0.53:53", rules.ActionBlock}, // another protocol
		{6, "198.18.0.1:40000", "198.18.0.9:80", rules.ActionAllow},  // not the container
		{6, "198.18.0.1:40000", "198.18.0.9:23", rules.ActionBlock},  // the base set still applies
	}
	for _, tt := range tests {
		if got, id := c.ACLVerdict(tt.proto, ap(tt.src), ap(tt.dst)); got != tt.want {
			t.Errorf("%d %s -> %s: %v (rule %d), want %v", tt.proto, tt.src, tt.dst, got, id, tt.want)
		}
	}
}

// Promote through the rule manager: a new version, flows marked
// promoted, unknown or already promoted ids refused.
func TestLearnerPromote(t *testing.T) {
	p, web, tm := testProtector(t, modeRules)
	tm.containers = p.a.containerAddrs
	web.mode.Store(ModeDiscover)
	p.learn.observe(netip.MustParseAddrPort("198.18.0.1:40000"), netip.MustParseAddrPort("198.18.0.2:8080"), 6, "http")
	p.learn.observe(netip.MustParseAddrPort("198.18.0.1:40000"), netip.MustParseAddrPort("198.18.0.2:8443"), 6, "tls")
	l := p.learn.Learned()
	if len(l.Rules) != 2 {
		t.Fatalf("learned %+v", l)
	}
	if _, err := p.learn.Promote(PromoteRequest{IDs: []uint32{12345}}, Caller{}); err == nil {
		t.Error("an unknown id was promoted")
	}
	res, err := p.learn.Promote(PromoteRequest{IDs: []uint32{l.Rules[0].ID}, Comment: "first"}, Caller{})
	if err != nil || !res.Changed || res.ToVersion != res.FromVersion+1 {
		t.Fatalf("promote: %+v %v", res, err)
	}
	if _, err := p.learn.Promote(PromoteRequest{IDs: []uint32{l.Rules[0].ID}}, Caller{}); err == nil {
		t.Error("a promoted id was promoted again")
	}
	// The engine runs the set with web's address in the learned rules.
	r := tm.eng.current().Set.Rule(l.Rules[0].ID)
	if r == nil || len(r.Dst) != 1 || r.Dst[0] != netip.MustParsePrefix("198.18.0.2/32") || r.Disabled {
		t.Errorf("running rule %+v: want dst 198.18.0.2/32", r)
	}
	if _, err := p.learn.Promote(PromoteRequest{All: true}, Caller{}); err != nil {
		t.Fatalf("promote --all: %v", err)
	}
	for _, r := range p.learn.Learned().Rules {
		if !r.Promoted {
			t.Errorf("%+v not promoted", r)
		}
	}
	if _, err := p.learn.Promote(PromoteRequest{All: true}, Caller{}); err == nil {
		t.Error("promote --all with nothing left succeeded")
	}
	if n := strings.Count(string(tm.current().set.Canonical()), "default deny"); n != 2 {
		t.Errorf("%d default deny rules, want 2 (to and from web, once):\n%s", n, tm.current().set.Canonical())
	}
}

// Learned flows survive a restart, and new ones get fresh ids.
func TestLearnerPersist(t *testing.T) {
	dir := t.TempDir()
	open := func() *protector {
		a := &Agent{cfg: AgentConfig{StateDir: dir, Workers: 1}, log: slog.New(slog.DiscardHandler)}
		p, err := openProtector(a)
		if err != nil {
			t.Fatal(err)
		}
		pp := &protectedPort{rec: portRecord{Target: Target{Name: "web"}, Wire: &wire.Record{}}}
		pp.mode.Store(ModeDiscover)
		pp.addrs.Store(&[]netip.Addr{netip.MustParseAddr("198.18.0.2")})
		p.ports["web"] = pp
		p.publish()
		return p
	}
	p := open()
	p.learn.observe(netip.MustParseAddrPort("198.18.0.1:40000"), netip.MustParseAddrPort("198.18.0.2:8080"), 6, "http")
	before := p.learn.Learned()
	p.learn.flush()
	if err := p.db.Close(); err != nil {
		t.Fatal(err)
	}
	p = open()
	defer p.db.Close()
	after := p.learn.Learned()
	if !slices.Equal(learnedLines(before), learnedLines(after)) || after.Rules[0].ID != before.Rules[0].ID {
		t.Fatalf("after reopening: %+v, want %+v", after, before)
	}
	p.learn.observe(netip.MustParseAddrPort("198.18.0.1:40000"), netip.MustParseAddrPort("198.18.0.2:9090"), 6, "")
	l := p.learn.Learned()
	if len(l.Rules) != 2 || l.Rules[1].ID == l.Rules[0].ID {
		t.Errorf("new flow after reopening: %+v", l)
	}
}
