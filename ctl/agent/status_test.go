package agent

import (
	"net/netip"
	"testing"
	"time"

	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dpi"
	"github.com/deepwall/deepwall/rules"
	"github.com/deepwall/deepwall/xdp"
)

func TestLatencyBuckets(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want int
	}{{0, 0}, {250, 0}, {251, 1}, {500, 1}, {501, 2}, {1000, 2}, {1001, 3}, {2 * time.Millisecond, 13}, {time.Hour, latBuckets - 1}} {
		if got := latBucket(tc.d); got != tc.want {
			t.Errorf("latBucket(%v) = %d, want %d", tc.d, got, tc.want)
		}
		if tc.want < latBuckets-1 && float64(tc.d)/1e9 > latBound(tc.want) {
			t.Errorf("%v above the bound %v of its bucket", tc.d, latBound(tc.want))
		}
	}
	ti := newTimedInspector(&nopEngine{}, 2)
	var f dataplane.Frame
	for range 32 * latSample {
		ti.Inspect(1, &f)
	}
	ti.Inspect(5, &f) // a worker index out of range is inspected, not counted
	s := ti.snapshot()
	if s.n != 32 {
		t.Errorf("%d frames timed, want 32", s.n)
	}
	cum := s.cumulative()
	if len(cum) != latBuckets-1 || cum[latBound(latBuckets-2)] > s.n {
		t.Errorf("cumulative %v", cum)
	}
}

func TestKernelACL(t *testing.T) {
	set, err := rules.Parse("acl.yaml", []byte(`acl_default: block
rules:
  - {id: 1, action: allow, proto: tcp, src: 198.18.0.0/24, dst_port: [80, "8000-8080"]}
  - {id: 2, action: block, dst: "2001:2::/48", src_port: 53}
  - {id: 3, action: alert, proto: tcp, dst_port: 22}
  - {id: 4, action: block, match: {field: http.uri, regex: x}}
`))
	if err != nil {
		t.Fatal(err)
	}
	c, err := rules.Compile(set)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	acl, err := kernelACL(c)
	if err != nil {
		t.Fatal(err)
	}
	want := xdp.ACL{Default: xdp.ACLDeny, Rules: []xdp.ACLRule{
		{ID: 1, Action: xdp.ACLAllow, Proto: 6, Src: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24")},
			DstPorts: []xdp.PortRange{{Lo: 80, Hi: 80}, {Lo: 8000, Hi: 8080}}},
		{ID: 2, Action: xdp.ACLDeny, Dst: []netip.Prefix{netip.MustParsePrefix("2001:2::/48")}, SrcPorts: []xdp.PortRange{{Lo: 53, Hi: 53}}},
	}}
	if len(acl.Rules) != len(want.Rules) || acl.Default != want.Default {
		t.Fatalf("acl %+v, want %+v", acl, want)
	}
	for i := range want.Rules {
		g, w := acl.Rules[i], want.Rules[i]
		if g.ID != w.ID || g.Action != w.Action || g.Proto != w.Proto || len(g.Src) != len(w.Src) || len(g.Dst) != len(w.Dst) ||
			len(g.SrcPorts) != len(w.SrcPorts) || len(g.DstPorts) != len(w.DstPorts) {
			t.Errorf("rule %d: %+v, want %+v", i, g, w)
		}
		for j := range w.DstPorts {
			if g.DstPorts[j] != w.DstPorts[j] {
				t.Errorf("rule %d ports %v", i, g.DstPorts)
			}
		}
	}
	// The Go evaluator and the converted ACL agree on a few packets.
	for _, p := range []struct {
		proto    uint8
		src, dst string
	}{{6, "198.18.0.1:1234", "198.18.0.2:80"}, {6, "198.18.0.1:1234", "198.18.0.2:81"}, {17, "[2001:2::1]:53", "[2001:2::2]:9"}} {
		act, id := c.ACLVerdict(p.proto, netip.MustParseAddrPort(p.src), netip.MustParseAddrPort(p.dst))
		var kid uint32
		kact := acl.Default
		for _, r := range acl.Rules {
			if matchKernelRule(r, p.proto, netip.MustParseAddrPort(p.src), netip.MustParseAddrPort(p.dst)) {
				kid, kact = r.ID, r.Action
				break
			}
		}
		if id != kid || (act == rules.ActionBlock) != (kact == xdp.ACLDeny) {
			t.Errorf("%v: rules say %v/%d, kernel ACL %v/%d", p, act, id, kact, kid)
		}
	}
}

func matchKernelRule(r xdp.ACLRule, proto uint8, src, dst netip.AddrPort) bool {
	in := func(ps []netip.Prefix, a netip.Addr) bool {
		if len(ps) == 0 {
			return true
		}
		for _, p := range ps {
			if p.Contains(a.Unmap()) {
				return true
			}
		}
		return false
	}
	port := func(rs []xdp.PortRange, p uint16) bool {
		if len(rs) == 0 {
			return true
		}
		for _, r := range rs {
			if p >= r.Lo && p <= r.Hi {
				return true
			}
		}
		return false
	}
	return (r.Proto == 0 || r.Proto == proto) && in(r.Src, src.Addr()) && in(r.Dst, dst.Addr()) &&
		port(r.SrcPorts, src.Port()) && port(r.DstPorts, dst.Port())
}

func TestMergeFlows(t *testing.T) {
	client, server := netip.MustParseAddrPort("198.18.0.9:40000"), netip.MustParseAddrPort("198.18.0.2:80")
	k, _ := xdp.MakeFlowKey(client.Addr(), server.Addr(), client.Port(), server.Port(), 6)
	k2, _ := xdp.MakeFlowKey(client.Addr(), server.Addr(), 40001, 80, 6)
	wall := time.Now()
	eng := &fakeEngine{flows: []dpi.FlowInfo{{Key: k, Client: client, Server: server, Proto: 6, App: "tls",
		Packets: [2]uint64{3, 2}, Bytes: [2]uint64{300, 200}, Start: wall.Add(-time.Minute), Last: wall.Add(-time.Second), Bypassed: true, Verdict: "pass"}}}
	kern := newFakeKernel()
	// The client (198.18.0.9) sorts above the server: it is the key's hi end.
	kern.flows[k] = xdp.FlowValue{Verdict: xdp.VerdictAllow, Packets: [2]uint64{10, 20}, Bytes: [2]uint64{1000, 2000}}
	kern.flows[k2] = xdp.FlowValue{Verdict: xdp.VerdictDrop, RuleID: 7}
	fl := mergeFlows(eng, kern, api.FlowFilter{}, nil, 0, wall)
	if fl.Total != 2 {
		t.Fatalf("%+v", fl)
	}
	r := fl.Flows[0]
	if r.Client != client.String() || r.Verdict != "pass" || !r.Bypassed || r.AgeSecs < 59 ||
		r.PktsToServer != 3+20 || r.PktsToClient != 2+10 || r.BytesToServer != 300+2000 || r.BytesToClient != 200+1000 {
		t.Errorf("merged row %+v", r)
	}
	if r := fl.Flows[1]; r.Verdict != "drop" || r.RuleID != 7 || !r.Bypassed {
		t.Errorf("kernel-only row %+v", r)
	}
	if fl := mergeFlows(eng, kern, api.FlowFilter{Verdict: "drop"}, nil, 0, wall); fl.Total != 1 || fl.Flows[0].RuleID != 7 {
		t.Errorf("filtered %+v", fl)
	}
	if fl := mergeFlows(eng, kern, api.FlowFilter{Limit: 1}, nil, 0, wall); fl.Total != 2 || len(fl.Flows) != 1 || !fl.Truncated {
		t.Errorf("limited %+v", fl)
	}
	if fl := mergeFlows(eng, kern, api.FlowFilter{Addr: netip.MustParseAddr("198.18.0.3")}, nil, 0, wall); fl.Total != 0 || fl.Flows == nil {
		t.Errorf("no match %+v", fl)
	}
	// A container's flows: one of its addresses at either end.
	web := []netip.Addr{netip.MustParseAddr("198.18.0.7"), server.Addr()}
	if fl := mergeFlows(eng, kern, api.FlowFilter{Container: "web"}, web, 0, wall); fl.Total != 2 {
		t.Errorf("container web %+v", fl)
	}
	if fl := mergeFlows(eng, kern, api.FlowFilter{Container: "db"}, []netip.Addr{netip.MustParseAddr("198.18.0.3")}, 0, wall); fl.Total != 0 {
		t.Errorf("container db %+v", fl)
	}
	if fl := mergeFlows(eng, kern, api.FlowFilter{Container: "gone"}, nil, 0, wall); fl.Total != 0 {
		t.Errorf("container without addresses %+v", fl)
	}
}
