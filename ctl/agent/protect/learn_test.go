package protect

import (
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/ctl/resolve"
	"github.com/deepwall/deepwall/dataplane/wire"
	"github.com/deepwall/deepwall/rules"
)

func learnedLines(l api.LearnedList) []string {
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
			web.mode.Store(api.ModeDiscover)
			db := &protectedPort{rec: portRecord{Target: resolve.Target{Name: "db"}, Wire: &wire.Record{}}}
			db.mode.Store(api.ModeMonitor)
			db.addrs.Store(&[]netip.Addr{netip.MustParseAddr("198.18.0.3")})
			p.ports["db"] = db
			p.publish()
			for _, o := range tt.obs {
				p.learn.observe(netip.MustParseAddrPort(o.client), netip.MustParseAddrPort(o.server), o.proto, o.app)
			}
			got := learnedLines(p.Learned())
			if !slices.Equal(got, tt.want) {
				t.Errorf("learned:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestLearnerBounded(t *testing.T) {
	p, web, _ := testProtector(t, modeRules)
	web.mode.Store(api.ModeDiscover)
	server := netip.MustParseAddrPort("198.18.0.2:80")
	for i := range maxLearned + 10 {
		peer := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		p.learn.observe(netip.AddrPortFrom(peer, 40000), server, 6, "")
	}
	l := p.Learned()
	if len(l.Rules) != maxLearned {
		t.Fatalf("%d learned, want the bound %d", len(l.Rules), maxLearned)
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
	first := []api.LearnedRule{
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
	second := []api.LearnedRule{{ID: learnedIDBase + 6, Container: "web", Direction: "in", Peer: "198.18.0.4", Proto: "tcp", Port: 9090}}
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
	p, web, tr := testProtector(t, modeRules)
	tr.addrs = p.Addrs
	web.mode.Store(api.ModeDiscover)
	p.learn.observe(netip.MustParseAddrPort("198.18.0.1:40000"), netip.MustParseAddrPort("198.18.0.2:8080"), 6, "http")
	p.learn.observe(netip.MustParseAddrPort("198.18.0.1:40000"), netip.MustParseAddrPort("198.18.0.2:8443"), 6, "tls")
	l := p.Learned()
	if len(l.Rules) != 2 {
		t.Fatalf("learned %+v", l)
	}
	if _, err := p.Promote(api.PromoteRequest{IDs: []uint32{12345}}, Caller{}); err == nil {
		t.Error("an unknown id was promoted")
	}
	res, err := p.Promote(api.PromoteRequest{IDs: []uint32{l.Rules[0].ID}, Comment: "first"}, Caller{})
	if err != nil || !res.Changed || res.ToVersion != res.FromVersion+1 {
		t.Fatalf("promote: %+v %v", res, err)
	}
	if _, err := p.Promote(api.PromoteRequest{IDs: []uint32{l.Rules[0].ID}}, Caller{}); err == nil {
		t.Error("a promoted id was promoted again")
	}
	// The engine runs the set with web's address in the learned rules.
	r := tr.Running().Set.Rule(l.Rules[0].ID)
	if r == nil || len(r.Dst) != 1 || r.Dst[0] != netip.MustParsePrefix("198.18.0.2/32") || r.Disabled {
		t.Errorf("running rule %+v: want dst 198.18.0.2/32", r)
	}
	if _, err := p.Promote(api.PromoteRequest{All: true}, Caller{}); err != nil {
		t.Fatalf("promote --all: %v", err)
	}
	for _, r := range p.Learned().Rules {
		if !r.Promoted {
			t.Errorf("%+v not promoted", r)
		}
	}
	if _, err := p.Promote(api.PromoteRequest{All: true}, Caller{}); err == nil {
		t.Error("promote --all with nothing left succeeded")
	}
	if n := strings.Count(string(tr.set.Canonical()), "default deny"); n != 2 {
		t.Errorf("%d default deny rules, want 2 (to and from web, once):\n%s", n, tr.set.Canonical())
	}
}

// Learned flows survive a restart, and new ones get fresh ids.
func TestLearnerPersist(t *testing.T) {
	dir := t.TempDir()
	open := func() *Protector {
		p, err := Open(Deps{StateDir: dir, Workers: 1, Log: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		pp := &protectedPort{rec: portRecord{Target: resolve.Target{Name: "web"}, Wire: &wire.Record{}}}
		pp.mode.Store(api.ModeDiscover)
		pp.addrs.Store(&[]netip.Addr{netip.MustParseAddr("198.18.0.2")})
		p.ports["web"] = pp
		p.publish()
		return p
	}
	p := open()
	p.learn.observe(netip.MustParseAddrPort("198.18.0.1:40000"), netip.MustParseAddrPort("198.18.0.2:8080"), 6, "http")
	before := p.Learned()
	p.learn.flush()
	if err := p.db.Close(); err != nil {
		t.Fatal(err)
	}
	p = open()
	defer p.db.Close()
	after := p.Learned()
	if !slices.Equal(learnedLines(before), learnedLines(after)) || after.Rules[0].ID != before.Rules[0].ID {
		t.Fatalf("after reopening: %+v, want %+v", after, before)
	}
	p.learn.observe(netip.MustParseAddrPort("198.18.0.1:40000"), netip.MustParseAddrPort("198.18.0.2:9090"), 6, "")
	l := p.Learned()
	if len(l.Rules) != 2 || l.Rules[1].ID == l.Rules[0].ID {
		t.Errorf("new flow after reopening: %+v", l)
	}
}

// TestDecodeLearned: stored learned flows are taken back only as add
// would have made them; the sequence moves past every id in use.
func TestDecodeLearned(t *testing.T) {
	rule := func(id uint32, c, dir, peer, proto string) string {
		return fmt.Sprintf(`{"id":%d,"container":%q,"direction":%q,"peer":%q,"proto":%q,"port":80,"flows":1}`, id, c, dir, peer, proto)
	}
	const base = learnedIDBase
	for _, tc := range []struct {
		name    string
		data    string
		kept    int
		skipped int
		seq     uint32
		err     bool
	}{
		{name: "valid", data: `{"seq":2,"rules":[` + rule(base+2, "web", "in", "198.18.0.1", "tcp") + `,` + rule(base+4, "web", "out", "2001:2::1", "udp") + `]}`,
			kept: 2, seq: 2},
		{name: "seq behind the ids", data: `{"seq":0,"rules":[` + rule(base+20, "web", "in", "198.18.0.1", "tcp") + `]}`, kept: 1, seq: 10},
		{name: "seq past the id space", data: `{"seq":4000000000,"rules":[]}`, seq: maxLearnedSeq},
		{name: "proto as a number", data: `{"seq":1,"rules":[` + rule(base+2, "web", "in", "198.18.0.1", "6") + `]}`, kept: 1, seq: 1},
		{name: "proto not learnable", data: `{"seq":1,"rules":[` + rule(base+2, "web", "in", "198.18.0.1", "47") + `]}`, skipped: 1, seq: 1},
		{name: "proto injects yaml", data: `{"seq":1,"rules":[` + rule(base+2, "web", "in", "198.18.0.1", "tcp\n  - id: 1") + `]}`, skipped: 1, seq: 1},
		{name: "container name", data: `{"seq":1,"rules":[` + rule(base+2, "web\"\n- x", "in", "198.18.0.1", "tcp") + `]}`, skipped: 1, seq: 1},
		{name: "direction", data: `{"seq":1,"rules":[` + rule(base+2, "web", "sideways", "198.18.0.1", "tcp") + `]}`, skipped: 1, seq: 1},
		{name: "peer", data: `{"seq":1,"rules":[` + rule(base+2, "web", "in", "any", "tcp") + `]}`, skipped: 1, seq: 1},
		{name: "odd id", data: `{"seq":1,"rules":[` + rule(base+3, "web", "in", "198.18.0.1", "tcp") + `]}`, skipped: 1, seq: 1},
		{name: "id below the base", data: `{"seq":1,"rules":[` + rule(100, "web", "in", "198.18.0.1", "tcp") + `]}`, skipped: 1, seq: 1},
		{name: "id in the deny range", data: `{"seq":1,"rules":[` + rule(learnedDenyBase, "web", "in", "198.18.0.1", "tcp") + `]}`, skipped: 1, seq: 1},
		{name: "duplicate id", data: `{"seq":2,"rules":[` + rule(base+2, "web", "in", "198.18.0.1", "tcp") + `,` + rule(base+2, "web", "in", "198.18.0.9", "tcp") + `]}`,
			kept: 1, skipped: 1, seq: 2},
		{name: "duplicate flow", data: `{"seq":2,"rules":[` + rule(base+2, "web", "in", "198.18.0.1", "tcp") + `,` + rule(base+4, "web", "in", "198.18.0.1", "tcp") + `]}`,
			kept: 1, skipped: 1, seq: 2},
		{name: "not json", data: `{"seq":`, err: true},
		{name: "wrong shape", data: `{"rules":{"a":1}}`, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, seq, skipped, err := decodeLearned([]byte(tc.data))
			if tc.err {
				if err == nil {
					t.Fatal("decoded")
				}
				return
			}
			if err != nil || len(m) != tc.kept || skipped != tc.skipped || seq != tc.seq {
				t.Fatalf("%d kept, %d skipped, seq %d, %v; want %d, %d, %d", len(m), skipped, seq, err, tc.kept, tc.skipped, tc.seq)
			}
			for _, r := range m {
				if _, err := api.ParseProto(r.Proto); err != nil || r.Proto != rules.ProtoString(mustProto(t, r.Proto)) {
					t.Errorf("proto %q not in canonical form", r.Proto)
				}
			}
		})
	}
}

func mustProto(tb testing.TB, s string) uint8 {
	tb.Helper()
	p, err := api.ParseProto(s)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// TestLearnerLoadCorrupt: a corrupt learned-flows entry in ports.db is a
// clear error naming the file; the protector still opens.
func TestLearnerLoadCorrupt(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"garbage", []byte("\x00\xff{{{")},
		{"too large", []byte(`"` + strings.Repeat("x", maxLearnedBytes) + `"`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _, _ := testProtector(t, modeRules)
			if err := p.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketLearned).Put([]byte("all"), tc.data) }); err != nil {
				t.Fatal(err)
			}
			err := p.learn.load()
			if err == nil || !strings.Contains(err.Error(), filepath.Join(p.d.StateDir, portsDB)) {
				t.Fatalf("load: %v, want an error naming the file", err)
			}
			if err := p.db.Close(); err != nil {
				t.Fatal(err)
			}
			if p, err = Open(p.d); err != nil {
				t.Fatalf("reopen with a corrupt entry: %v", err)
			}
			p.db.Close()
		})
	}
}

// FuzzDecodeLearned: whatever the store holds, decoding never panics,
// keeps at most maxLearned flows, each with its own id below the deny
// ids and a protocol promote renders safely.
func FuzzDecodeLearned(f *testing.F) {
	f.Add([]byte(`{"seq":2,"rules":[{"id":3000000002,"container":"web","direction":"in","peer":"198.18.0.1","proto":"tcp","port":80,"flows":1}]}`))
	f.Add([]byte(`{"seq":4294967295,"rules":[{"id":3000000003,"container":"w","direction":"out","peer":"::ffff:1.2.3.4","proto":"58"}]}`))
	f.Add([]byte(`{"rules":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, seq, _, err := decodeLearned(data)
		if err != nil {
			return
		}
		if len(m) > maxLearned || seq > maxLearnedSeq {
			t.Fatalf("%d flows, seq %d", len(m), seq)
		}
		ids := map[uint32]bool{}
		for k, r := range m {
			if ids[r.ID] || r.ID < learnedIDBase+2 || r.ID+1 >= learnedDenyBase || (r.ID-learnedIDBase)/2 > seq {
				t.Fatalf("id %d (seq %d)", r.ID, seq)
			}
			ids[r.ID] = true
			if r.Proto != rules.ProtoString(k.Proto) || !learnable(k.Proto) || !rules.ValidContainerName(r.Container) {
				t.Fatalf("accepted %+v", r)
			}
		}
		if len(m) > 0 {
			list := make([]api.LearnedRule, 0, len(m))
			for _, r := range m {
				list = append(list, *r)
			}
			if _, err := rules.Parse("promote", []byte(promotedRules(list))); err != nil {
				t.Fatalf("promoted rules of accepted flows do not parse: %v", err)
			}
		}
	})
}
