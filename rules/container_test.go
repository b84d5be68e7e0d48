package rules

import (
	"net/netip"
	"strings"
	"testing"
)

func TestContainerSelectors(t *testing.T) {
	const src = `rules:
  - id: 1
    action: allow
    proto: tcp
    src: [container:web, 198.18.0.0/24]
    dst: container:db
    dst_port: 5432
  - id: 2
    action: block
    dst: container:db
  - id: 3
    action: block
    src: container:ghost
`
	set, err := Parse("c.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	r := set.Rules[0]
	if len(r.SrcContainers) != 1 || r.SrcContainers[0] != "web" || len(r.Src) != 1 || r.DstContainers[0] != "db" {
		t.Fatalf("parsed %+v", r)
	}
	if got := set.Containers(); strings.Join(got, ",") != "db,ghost,web" {
		t.Fatalf("containers %v", got)
	}
	if n := len(set.Enabled()); n != 0 {
		t.Fatalf("%d unresolved rules enabled, want 0", n)
	}
	canon := string(set.Canonical())
	if !strings.Contains(canon, "container:web") || !strings.Contains(canon, "container:db") {
		t.Fatalf("canonical form lost the selectors:\n%s", canon)
	}
	back, err := Parse("canon", []byte(canon))
	if err != nil || back.Hash() != set.Hash() {
		t.Fatalf("canonical round trip: %v", err)
	}
	addrs := map[string][]netip.Addr{"web": {netip.MustParseAddr("198.18.1.5")}, "db": {netip.MustParseAddr("198.18.1.6"), netip.MustParseAddr("2001:2::6")}}
	res := set.ResolveContainers(func(n string) []netip.Addr { return addrs[n] })
	if set.Rules[0].Src[0] != netip.MustParsePrefix("198.18.0.0/24") || len(set.Rules[0].Src) != 1 {
		t.Fatal("resolution changed the stored set")
	}
	r0 := res.Rules[0]
	if len(r0.Src) != 2 || r0.Src[1] != netip.MustParsePrefix("198.18.1.5/32") || len(r0.Dst) != 2 || r0.Dst[1] != netip.MustParsePrefix("2001:2::6/128") || r0.HasContainers() {
		t.Fatalf("resolved %+v", r0)
	}
	if !res.Rules[2].Disabled || res.Rules[1].Disabled {
		t.Fatalf("ghost rule must be disabled, db rule not: %v %v", res.Rules[2].Disabled, res.Rules[1].Disabled)
	}
	c, err := Compile(res)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if a, id := c.ACLVerdict(6, netip.MustParseAddrPort("198.18.1.5:4000"), netip.MustParseAddrPort("198.18.1.6:5432")); a != ActionAllow || id != 1 {
		t.Fatalf("web -> db:5432: %v %d", a, id)
	}
	if a, id := c.ACLVerdict(6, netip.MustParseAddrPort("198.18.9.9:4000"), netip.MustParseAddrPort("198.18.1.6:22")); a != ActionBlock || id != 2 {
		t.Fatalf("other -> db:22: %v %d", a, id)
	}
	if _, err := Parse("bad.yaml", []byte("rules:\n  - id: 1\n    action: block\n    src: container:-bad\n")); err == nil || !strings.Contains(err.Error(), "bad.yaml:4:10") {
		t.Fatalf("bad name: %v", err)
	}
}
