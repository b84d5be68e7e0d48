package xdp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/deepwall/deepwall/internal/testnet"
)

// aclPacket is what the ACL sees of a packet.
type aclPacket struct {
	proto        uint8
	src, dst     netip.Addr
	sport, dport uint16
	ports        bool // TCP or UDP, not a fragment
}

func (pk aclPacket) String() string {
	return fmt.Sprintf("%s %v:%d → %v:%d ports=%v", ProtoName(pk.proto), pk.src, pk.sport, pk.dst, pk.dport, pk.ports)
}

// refDecide is the ACL semantics written plainly: the first rule whose
// every condition holds decides. It returns the rule index, -1 for none.
func refDecide(acl *ACL, pk aclPacket) (ACLAction, int) {
	inPrefixes := func(ps []netip.Prefix, a netip.Addr) bool {
		if len(ps) == 0 {
			return true
		}
		for _, p := range ps {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	inRanges := func(rs []PortRange, port uint16) bool {
		if len(rs) == 0 {
			return true
		}
		if !pk.ports {
			return false
		}
		for _, r := range rs {
			if r.Lo <= port && port <= r.Hi {
				return true
			}
		}
		return false
	}
	src, dst := pk.src.Unmap(), pk.dst.Unmap()
	for i, r := range acl.Rules {
		if (r.Proto == 0 || r.Proto == pk.proto) &&
			inPrefixes(r.Src, src) && inPrefixes(r.Dst, dst) &&
			inRanges(r.SrcPorts, pk.sport) && inRanges(r.DstPorts, pk.dport) {
			return r.Action, i
		}
	}
	return acl.Default, -1
}

// decide evaluates a compiled image the way the XDP program does, with a
// faithful longest-prefix match over the trie entries.
func (img *aclImage) decide(pk aclPacket) (ACLAction, int) {
	if len(img.rules) == 0 {
		return img.def, -1
	}
	acc := img.proto[pk.proto]
	class := func(pi *portImage, port uint16) aclBits {
		if !pk.ports {
			return pi.bits[0]
		}
		return pi.bits[pi.class[port]]
	}
	acc.and(class(&img.sport, pk.sport))
	acc.and(class(&img.dport, pk.dport))
	acc.and(lpmLookup(img.src, pk.src))
	acc.and(lpmLookup(img.dst, pk.dst))
	i, ok := acc.first()
	if !ok {
		return img.def, -1
	}
	return ACLAction(img.rules[i].Action), i
}

// lpmData is the part of a trie key that prefixlen counts (gen, family,
// address).
func lpmData(k deepwallAclLpmKey) [18]byte {
	var d [18]byte
	d[0], d[1] = k.Gen, k.Family
	copy(d[2:], k.Addr[:])
	return d
}

func lpmLookup(entries []lpmEntry, a netip.Addr) aclBits {
	a = a.Unmap()
	var probe deepwallAclLpmKey
	if a.Is4() {
		probe.Family = aclFamilyV4
		b := a.As4()
		copy(probe.Addr[:], b[:])
	} else {
		probe.Family = aclFamilyV6
		probe.Addr = a.As16()
	}
	pd := lpmData(probe)
	best, bestLen := aclBits{}, -1
	for _, e := range entries {
		n := int(e.key.Prefixlen)
		ed := lpmData(e.key)
		match := true
		for bit := range n {
			if (pd[bit/8]>>(7-bit%8))&1 != (ed[bit/8]>>(7-bit%8))&1 {
				match = false
				break
			}
		}
		if match && n > bestLen {
			best, bestLen = e.bits, n
		}
	}
	return best
}

func pfx(s ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(s))
	for i, p := range s {
		out[i] = netip.MustParsePrefix(p)
	}
	return out
}

func pkt(proto uint8, src, dst string, sport, dport uint16) aclPacket {
	return aclPacket{
		proto: proto, src: netip.MustParseAddr(src), dst: netip.MustParseAddr(dst),
		sport: sport, dport: dport, ports: proto == 6 || proto == 17 || proto == 132,
	}
}

type aclCase struct {
	name   string
	acl    ACL
	checks []aclCheck
}

type aclCheck struct {
	pk   aclPacket
	want ACLAction
}

// aclCases are worked examples of the semantics; they run against the
// compiled image (TestACLCases) and the kernel (TestPrivilegedACL).
var aclCases = []aclCase{
	{"empty default allow", ACL{}, []aclCheck{
		{pkt(6, "198.18.0.1", "198.18.0.2", 1, 80), ACLAllow},
	}},
	{"empty default deny", ACL{Default: ACLDeny}, []aclCheck{
		{pkt(6, "198.18.0.1", "198.18.0.2", 1, 80), ACLDeny},
		{pkt(58, "2001:2::1", "2001:2::2", 0, 0), ACLDeny},
	}},
	{"allow web then deny all", ACL{Rules: []ACLRule{
		{ID: 1, Action: ACLAllow, Proto: 6, Dst: pfx("198.18.0.2/32"), DstPorts: []PortRange{{80, 80}, {443, 443}}},
		{ID: 2, Action: ACLDeny},
	}}, []aclCheck{
		{pkt(6, "198.18.0.1", "198.18.0.2", 40000, 80), ACLAllow},
		{pkt(6, "198.18.0.1", "198.18.0.2", 40000, 443), ACLAllow},
		{pkt(6, "198.18.0.1", "198.18.0.2", 40000, 81), ACLDeny},
		{pkt(17, "198.18.0.1", "198.18.0.2", 40000, 80), ACLDeny},
		{pkt(6, "198.18.0.1", "198.18.0.3", 40000, 80), ACLDeny},
	}},
	{"first match beats longer prefix", ACL{Rules: []ACLRule{
		{ID: 1, Action: ACLDeny, Src: pfx("198.18.0.0/24")},
		{ID: 2, Action: ACLAllow, Src: pfx("198.18.0.1/32")},
	}}, []aclCheck{
		{pkt(6, "198.18.0.1", "198.18.0.2", 1, 2), ACLDeny},
		{pkt(6, "198.18.1.1", "198.18.0.2", 1, 2), ACLAllow},
	}},
	{"specific allow before broad deny", ACL{Rules: []ACLRule{
		{ID: 1, Action: ACLAllow, Src: pfx("198.18.0.1/32")},
		{ID: 2, Action: ACLDeny, Src: pfx("198.18.0.0/15")},
	}}, []aclCheck{
		{pkt(6, "198.18.0.1", "198.18.0.2", 1, 2), ACLAllow},
		{pkt(6, "198.18.0.3", "198.18.0.2", 1, 2), ACLDeny},
		{pkt(6, "198.19.255.255", "198.18.0.2", 1, 2), ACLDeny},
		{pkt(6, "198.20.0.0", "198.18.0.2", 1, 2), ACLAllow},
	}},
	{"ipv6 prefixes do not match ipv4", ACL{Rules: []ACLRule{
		{ID: 1, Action: ACLDeny, Src: pfx("::/0")},
	}}, []aclCheck{
		{pkt(6, "198.18.0.1", "198.18.0.2", 1, 2), ACLAllow},
		{pkt(6, "2001:2::1", "2001:2::2", 1, 2), ACLDeny},
		{pkt(6, "::ffff:198.18.0.1", "2001:2::2", 1, 2), ACLAllow}, // unmapped: IPv4
	}},
	{"ipv4 prefixes do not match ipv6", ACL{Rules: []ACLRule{
		{ID: 1, Action: ACLDeny, Dst: pfx("0.0.0.0/0")},
	}}, []aclCheck{
		{pkt(6, "198.18.0.1", "198.18.0.2", 1, 2), ACLDeny},
		{pkt(6, "2001:2::1", "2001:2::2", 1, 2), ACLAllow},
		{pkt(6, "2001:2::1", "::ffff:198.18.0.2", 1, 2), ACLDeny}, // unmapped: IPv4
	}},
	{"ipv4-mapped prefixes match nothing", ACL{Rules: []ACLRule{
		{ID: 1, Action: ACLDeny, Src: pfx("::ffff:198.18.0.0/112")},
	}}, []aclCheck{
		{pkt(17, "198.18.0.1", "198.18.0.2", 1, 2), ACLAllow},
		{pkt(17, "::ffff:198.18.0.1", "2001:2::2", 1, 2), ACLAllow},
	}},
	{"mixed families in one rule", ACL{Rules: []ACLRule{
		{ID: 1, Action: ACLDeny, Src: pfx("198.18.0.0/16", "2001:2::/48")},
	}}, []aclCheck{
		{pkt(17, "198.18.9.9", "198.18.0.2", 1, 2), ACLDeny},
		{pkt(17, "2001:2:0:5::1", "2001:2::2", 1, 2), ACLDeny},
		{pkt(17, "2001:3::1", "2001:2::2", 1, 2), ACLAllow},
	}},
	{"dst port range edges", ACL{Rules: []ACLRule{
		{ID: 1, Action: ACLDeny, DstPorts: []PortRange{{1000, 2000}}},
	}}, []aclCheck{
		{pkt(6, "198.18.0.1", "198.18.0.2", 1, 999), ACLAllow},
		{pkt(6, "198.18.0.1", "198.18.0.2", 1, 1000), ACLDeny},
		{pkt(17, "198.18.0.1", "198.18.0.2", 1, 2000), ACLDeny},
		{pkt(6, "198.18.0.1", "198.18.0.2", 1, 2001), ACLAllow},
		{pkt(1, "198.18.0.1", "198.18.0.2", 0, 0), ACLAllow},
	}},
	{"src port and whole range", ACL{Rules: []ACLRule{
		{ID: 1, Action: ACLDeny, SrcPorts: []PortRange{{0, 0}, {65535, 65535}}},
		{ID: 2, Action: ACLDeny, Proto: 17, DstPorts: []PortRange{{0, 65535}}},
	}}, []aclCheck{
		{pkt(6, "198.18.0.1", "198.18.0.2", 0, 80), ACLDeny},
		{pkt(6, "198.18.0.1", "198.18.0.2", 65535, 80), ACLDeny},
		{pkt(6, "198.18.0.1", "198.18.0.2", 1, 80), ACLAllow},
		{pkt(17, "198.18.0.1", "198.18.0.2", 1, 80), ACLDeny},
		{pkt(47, "198.18.0.1", "198.18.0.2", 0, 0), ACLAllow},
		{pkt(132, "198.18.0.1", "198.18.0.2", 0, 80), ACLDeny},
	}},
	{"sctp ports", ACL{Rules: []ACLRule{
		{ID: 1, Action: ACLDeny, Proto: 132, DstPorts: []PortRange{{36412, 36412}}},
	}}, []aclCheck{
		{pkt(132, "198.18.0.1", "198.18.0.2", 1, 36412), ACLDeny},
		{pkt(132, "2001:2::1", "2001:2::2", 1, 36413), ACLAllow},
		{pkt(6, "198.18.0.1", "198.18.0.2", 1, 36412), ACLAllow},
	}},
	{"protocol", ACL{Rules: []ACLRule{
		{ID: 1, Action: ACLDeny, Proto: 17},
		{ID: 2, Action: ACLDeny, Proto: 58, Dst: pfx("2001:2::2/128")},
	}}, []aclCheck{
		{pkt(17, "198.18.0.1", "198.18.0.2", 1, 53), ACLDeny},
		{pkt(6, "198.18.0.1", "198.18.0.2", 1, 53), ACLAllow},
		{pkt(58, "2001:2::1", "2001:2::2", 0, 0), ACLDeny},
		{pkt(58, "2001:2::1", "2001:2::3", 0, 0), ACLAllow},
	}},
	{"default deny with allow rules", ACL{Default: ACLDeny, Rules: []ACLRule{
		{ID: 7, Action: ACLAllow, Proto: 6, Src: pfx("198.18.0.0/24"), Dst: pfx("198.18.0.0/24"), DstPorts: []PortRange{{22, 22}}},
	}}, []aclCheck{
		{pkt(6, "198.18.0.1", "198.18.0.2", 50000, 22), ACLAllow},
		{pkt(6, "198.18.0.2", "198.18.0.1", 22, 50000), ACLDeny}, // the ACL is directional
		{pkt(6, "198.18.1.1", "198.18.0.2", 50000, 22), ACLDeny},
	}},
}

// TestACLCases checks the compiler on the worked examples (and checks the
// examples against the reference evaluator).
func TestACLCases(t *testing.T) {
	for _, tc := range aclCases {
		t.Run(tc.name, func(t *testing.T) {
			img, err := compileACL(&tc.acl)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range tc.checks {
				if ref, _ := refDecide(&tc.acl, c.pk); ref != c.want {
					t.Fatalf("case is wrong: reference says %v for %v", ref, c.pk)
				}
				if got, _ := img.decide(c.pk); got != c.want {
					t.Errorf("%v: %v, want %v", c.pk, got, c.want)
				}
			}
		})
	}
}

func TestACLCompileErrors(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	manyRanges := ACL{Rules: make([]ACLRule, MaxACLRules)}
	for i := range manyRanges.Rules {
		for range MaxACLPortRanges / MaxACLRules {
			lo := uint16(r.IntN(65536))
			manyRanges.Rules[i].DstPorts = append(manyRanges.Rules[i].DstPorts, PortRange{lo, lo + uint16(r.IntN(int(min(65535-int(lo), 64))+1))})
		}
	}
	manyPrefixes := ACL{Rules: []ACLRule{{}}}
	for i := range MaxACLPrefixes + 1 {
		manyPrefixes.Rules[0].Src = append(manyPrefixes.Rules[0].Src, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 32))
	}
	tooManyRanges := ACL{Rules: []ACLRule{{}}}
	for i := range MaxACLPortRanges + 1 {
		tooManyRanges.Rules[0].SrcPorts = append(tooManyRanges.Rules[0].SrcPorts, PortRange{uint16(i), uint16(i)})
	}
	for _, tc := range []struct {
		name string
		acl  ACL
		want error
	}{
		{"too many rules", ACL{Rules: make([]ACLRule, MaxACLRules+1)}, ErrACLLimit},
		{"too many prefixes", manyPrefixes, ErrACLLimit},
		{"too many port ranges", tooManyRanges, ErrACLLimit},
		{"too many port classes", manyRanges, ErrACLLimit},
		{"bad default", ACL{Default: 2}, ErrInvalidACL},
		{"bad action", ACL{Rules: []ACLRule{{Action: 9}}}, ErrInvalidACL},
		{"ports with icmp", ACL{Rules: []ACLRule{{Proto: 1, DstPorts: []PortRange{{1, 1}}}}}, ErrInvalidACL},
		{"inverted range", ACL{Rules: []ACLRule{{SrcPorts: []PortRange{{2, 1}}}}}, ErrInvalidACL},
		{"invalid prefix", ACL{Rules: []ACLRule{{Dst: []netip.Prefix{{}}}}}, ErrInvalidACL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := compileACL(&tc.acl); !errors.Is(err, tc.want) {
				t.Errorf("compile: %v, want %v", err, tc.want)
			}
		})
	}
	full := ACL{Rules: make([]ACLRule, MaxACLRules)}
	if _, err := compileACL(&full); err != nil {
		t.Errorf("%d rules: %v", MaxACLRules, err)
	}
}

// Address and port pools for random ACLs and packets: small enough that
// rules and packets often meet.
var (
	pool4 = []netip.Addr{
		netip.MustParseAddr("198.18.0.0"), netip.MustParseAddr("198.18.1.0"),
		netip.MustParseAddr("198.19.128.0"), netip.MustParseAddr("10.0.0.0"),
	}
	pool6 = []netip.Addr{
		netip.MustParseAddr("2001:2::"), netip.MustParseAddr("2001:2:0:1::"),
		netip.MustParseAddr("2001:3::"), netip.MustParseAddr("::ffff:198.18.0.0"),
	}
	portPool = []uint16{0, 1, 22, 53, 79, 80, 81, 443, 1000, 2000, 40000, 65534, 65535}
)

func randAddr(r *rand.Rand, v6 bool) netip.Addr {
	if v6 {
		b := pool6[r.IntN(len(pool6))].As16()
		b[15] = byte(r.IntN(8))
		b[14] = byte(r.IntN(2))
		return netip.AddrFrom16(b)
	}
	b := pool4[r.IntN(len(pool4))].As4()
	b[3] = byte(r.IntN(8))
	b[2] |= byte(r.IntN(2))
	return netip.AddrFrom4(b)
}

func randPrefix(r *rand.Rand) netip.Prefix {
	v6 := r.IntN(2) == 0
	bits := []int{0, 8, 15, 16, 23, 24, 29, 31, 32}
	if v6 {
		bits = []int{0, 16, 32, 48, 64, 112, 120, 125, 127, 128}
	}
	p, _ := randAddr(r, v6).Prefix(bits[r.IntN(len(bits))])
	return p
}

func randPort(r *rand.Rand) uint16 {
	if r.IntN(4) == 0 {
		return uint16(r.IntN(65536))
	}
	return portPool[r.IntN(len(portPool))]
}

func randRanges(r *rand.Rand) []PortRange {
	out := make([]PortRange, r.IntN(3))
	for i := range out {
		a, b := randPort(r), randPort(r)
		out[i] = PortRange{min(a, b), max(a, b)}
	}
	return out
}

func randACL(r *rand.Rand, n int) ACL {
	acl := ACL{Default: ACLAction(r.IntN(2)), Rules: make([]ACLRule, n)}
	for i := range acl.Rules {
		rule := &acl.Rules[i]
		rule.ID = uint32(i + 1)
		rule.Action = ACLAction(r.IntN(2))
		rule.Proto = []uint8{0, 0, 0, 6, 17, 1, 58, 132}[r.IntN(8)]
		for range r.IntN(3) {
			rule.Src = append(rule.Src, randPrefix(r))
		}
		for range r.IntN(3) {
			rule.Dst = append(rule.Dst, randPrefix(r))
		}
		if protoHasPorts(rule.Proto) {
			rule.SrcPorts, rule.DstPorts = randRanges(r), randRanges(r)
		}
	}
	return acl
}

func randPacket(r *rand.Rand) aclPacket {
	v6 := r.IntN(2) == 0
	pk := aclPacket{src: randAddr(r, v6), dst: randAddr(r, v6)}
	if v6 {
		pk.proto = []uint8{6, 17, 58, 47, 132}[r.IntN(5)]
	} else {
		pk.proto = []uint8{6, 17, 1, 47, 132}[r.IntN(5)]
	}
	if pk.proto != 47 && protoHasPorts(pk.proto) {
		pk.ports, pk.sport, pk.dport = true, randPort(r), randPort(r)
	}
	return pk
}

// TestACLImageDifferential compares the compiled bitmaps with the
// reference evaluator on random rule sets and packets.
func TestACLImageDifferential(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	var seen coverage
	for round := range 300 {
		acl := randACL(r, 1+r.IntN(40))
		img, err := compileACL(&acl)
		if err != nil {
			t.Fatalf("round %d: compile: %v", round, err)
		}
		for range 100 {
			pk := randPacket(r)
			wantA, wantI := refDecide(&acl, pk)
			gotA, gotI := img.decide(pk)
			if gotA != wantA || gotI != wantI {
				t.Fatalf("round %d: %v: image says %v (rule %d), reference %v (rule %d)\nacl %+v", round, pk, gotA, gotI, wantA, wantI, acl)
			}
			seen.add(wantA, wantI)
		}
	}
	seen.check(t)
}

// coverage makes sure a random test met every kind of decision.
type coverage struct{ ruleAllow, ruleDeny, defaults int }

func (c *coverage) add(a ACLAction, rule int) {
	switch {
	case rule < 0:
		c.defaults++
	case a == ACLDeny:
		c.ruleDeny++
	default:
		c.ruleAllow++
	}
}

func (c *coverage) check(tb testing.TB) {
	tb.Helper()
	tb.Logf("decisions: %+v", *c)
	if c.ruleAllow == 0 || c.ruleDeny == 0 || c.defaults == 0 {
		tb.Errorf("random packets did not exercise every kind of decision: %+v", *c)
	}
}

// FuzzCompileACL builds an ACL from arbitrary bytes: compiling must never
// panic, and a compiled ACL must decide like the reference evaluator.
func FuzzCompileACL(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19})
	f.Add([]byte("\x06\x01\x18\xc6\x12\x00\x00\x00\x50\x00\x50\xff\x20\x01\x00\x02"))
	f.Fuzz(func(t *testing.T, data []byte) {
		seed := uint64(0)
		for _, b := range data {
			seed = seed*131 + uint64(b)
		}
		acl := aclFromBytes(data)
		img, err := compileACL(&acl)
		if err != nil {
			if !errors.Is(err, ErrInvalidACL) && !errors.Is(err, ErrACLLimit) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		r := rand.New(rand.NewPCG(seed, 3))
		for range 20 {
			pk := randPacket(r)
			wantA, wantI := refDecide(&acl, pk)
			if gotA, gotI := img.decide(pk); gotA != wantA || gotI != wantI {
				t.Fatalf("%v: image %v/%d, reference %v/%d", pk, gotA, gotI, wantA, wantI)
			}
		}
	})
}

// aclFromBytes decodes rules of 12 bytes each: action, proto, src
// (4 bytes + length), dst port range (2+2), flags choosing families.
func aclFromBytes(data []byte) ACL {
	var acl ACL
	if len(data) > 0 {
		acl.Default = ACLAction(data[0] & 1)
		data = data[1:]
	}
	for len(data) >= 12 && len(acl.Rules) < 64 {
		d := data[:12]
		data = data[12:]
		rule := ACLRule{ID: uint32(len(acl.Rules)), Action: ACLAction(d[0] % 3), Proto: d[1]}
		a4 := netip.AddrFrom4([4]byte{198, 18 + d[2]&1, d[3], d[4]})
		switch d[5] >> 6 {
		case 1:
			if p, err := a4.Prefix(int(d[5] & 63)); err == nil {
				rule.Src = []netip.Prefix{p}
			} else {
				rule.Src = []netip.Prefix{netip.PrefixFrom(a4, int(d[5]&63))} // invalid: must be refused
			}
		case 2:
			a6 := netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 14: d[3], 15: d[4]})
			if p, err := a6.Prefix(int(d[5]&63) * 2); err == nil {
				rule.Dst = []netip.Prefix{p}
			}
		}
		if d[6]&1 != 0 {
			rule.DstPorts = []PortRange{{binary.BigEndian.Uint16(d[7:]), binary.BigEndian.Uint16(d[9:])}}
		}
		if d[11]&1 != 0 {
			rule.SrcPorts = []PortRange{{0, uint16(d[11]) << 8}}
		}
		acl.Rules = append(acl.Rules, rule)
	}
	return acl
}

// TestPrivilegedACL runs the worked examples through the kernel.
func TestPrivilegedACL(t *testing.T) {
	h := newHarness(t, PortConfig{Shadow: tcShadow})
	for _, tc := range aclCases {
		t.Run(tc.name, func(t *testing.T) {
			h.setACL(tc.acl)
			for _, c := range tc.checks {
				if got := h.aclVerdict(c.pk); got != c.want {
					t.Errorf("%v: kernel says %v, want %v", c.pk, got, c.want)
				}
			}
		})
	}
	t.Run("non-IP and ND bypass a deny-all ACL", func(t *testing.T) {
		h.setACL(ACL{Default: ACLDeny})
		nd := frame(t, testnet.Client6, testnet.Server6, testnet.ProtoICMPv6, func(s *testnet.FrameSpec) { s.ICMPType = 135; s.Payload = make([]byte, 20) })
		for name, f := range map[string][]byte{"arp": arpFrame(t), "lldp": lldpFrame(), "nd": nd} {
			if got, stats := h.run(f); got != xdpRedirect || stats != wantNonIP {
				t.Errorf("%s: %s %+v", name, actionName(got), stats)
			}
		}
	})
	t.Run("fragments and long ext chains see L3 only", func(t *testing.T) {
		tcp4 := frame(t, testnet.Client4, testnet.Server4, testnet.ProtoTCP)
		frag := patch(tcp4, func(f []byte) { f[ethLen+6] = 0x20 })
		h.setACL(ACL{Rules: []ACLRule{{Action: ACLDeny, Proto: 6, DstPorts: []PortRange{{80, 80}}}}})
		if got, _ := h.run(tcp4); got != xdpDrop {
			t.Errorf("whole packet to port 80: %s, want XDP_DROP", actionName(got))
		}
		if got, stats := h.run(frag); got != xdpRedirect || stats != wantFragOut {
			t.Errorf("fragment vs port rule: %s %+v, want to user space", actionName(got), stats)
		}
		h.setACL(ACL{Rules: []ACLRule{{Action: ACLDeny, Proto: 6, Src: pfx("198.18.0.0/24")}}})
		if got, stats := h.run(frag); got != xdpDrop || stats != (Stats{ACLDrop: 1, Fragments: 0}) {
			t.Errorf("fragment vs L3 rule: %s %+v, want ACL drop", actionName(got), stats)
		}
		long := testnet.WithIPv6Ext(frame(t, testnet.Client6, testnet.Server6, testnet.ProtoTCP), testnet.ExtHopByHop, testnet.ExtDstOpts, testnet.ExtRouting, testnet.ExtDstOpts, testnet.ExtDstOpts)
		h.setACL(ACL{Rules: []ACLRule{{Action: ACLDeny, Src: pfx("2001:2::1/128")}}})
		if got, stats := h.run(long); got != xdpDrop || stats != (Stats{ACLDrop: 1, HeaderLimit: 1}) {
			t.Errorf("long chain vs L3 rule: %s %+v, want ACL drop", actionName(got), stats)
		}
	})
	t.Run("ports after ipv4 options", func(t *testing.T) {
		h.setACL(ACL{Rules: []ACLRule{{Action: ACLDeny, SrcPorts: []PortRange{{40000, 40000}}, DstPorts: []PortRange{{80, 80}}}}})
		f := withIPv4Options(frame(t, testnet.Client4, testnet.Server4, testnet.ProtoUDP), 4)
		if got, stats := h.run(f); got != xdpDrop || stats != (Stats{ACLDrop: 1}) {
			t.Errorf("%s %+v, want ACL drop", actionName(got), stats)
		}
	})
}

// aclVerdict runs a packet built from pk and reports what the ACL did.
// On a harness of the tc path the tc program must agree.
func (h *harness) aclVerdict(pk aclPacket) ACLAction {
	h.tb.Helper()
	f := aclFrame(h.tb, pk)
	got, stats := h.run(f)
	if cfg, _, _ := h.p.Port(loIfindex); cfg.Shadow != nil {
		want, wantStats := tcOutcome(got, stats)
		if tgot, tstats := h.runTC(f); tgot != want || tstats != wantStats {
			h.tb.Fatalf("%v: tc %d %+v, xdp %s %+v", pk, tgot, tstats, actionName(got), stats)
		}
	}
	switch {
	case got == xdpDrop && stats == (Stats{ACLDrop: 1}):
		return ACLDeny
	case got == xdpRedirect && stats == wantMiss:
		return ACLAllow
	}
	h.tb.Fatalf("%v: unexpected outcome %s %+v", pk, actionName(got), stats)
	return 0
}

// aclFrame builds pk as a frame. testnet builds IPv4 for IPv4-mapped
// addresses, so an IPv6 packet with one gets its addresses patched in.
func aclFrame(tb testing.TB, pk aclPacket) []byte {
	tb.Helper()
	if pk.src.Is4() {
		return frame(tb, netip.AddrPortFrom(pk.src, pk.sport), netip.AddrPortFrom(pk.dst, pk.dport), pk.proto)
	}
	f := frame(tb, netip.AddrPortFrom(testnet.Client6.Addr(), pk.sport), netip.AddrPortFrom(testnet.Server6.Addr(), pk.dport), pk.proto)
	src, dst := pk.src.As16(), pk.dst.As16()
	copy(f[ethLen+8:], src[:])
	copy(f[ethLen+24:], dst[:])
	return f
}

// TestPrivilegedACLDifferential compares the kernel with the reference
// evaluator on random rule sets and packets. The rule sets replace each
// other on one program, so both generations are rewritten many times.
// The harness is on the tc path, so both programs are compared (aclVerdict).
func TestPrivilegedACLDifferential(t *testing.T) {
	h := newHarness(t, PortConfig{Shadow: tcShadow})
	r := rand.New(rand.NewPCG(42, 1))
	sizes := []int{0, 1, 2, 5, 20, 60, MaxACLRules}
	var seen coverage
	for round := range 24 {
		acl := randACL(r, sizes[round%len(sizes)])
		h.setACL(acl)
		for range 60 {
			pk := randPacket(r)
			want, rule := refDecide(&acl, pk)
			if got := h.aclVerdict(pk); got != want {
				t.Fatalf("round %d (%d rules): %v: kernel %v, reference %v by rule %d", round, len(acl.Rules), pk, got, want, rule)
			}
			seen.add(want, rule)
		}
	}
	seen.check(t)
}
