package xdp

import (
	"cmp"
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"
)

// ACL limits (MAX_ACL_* in bpf/deepwall.h, except MaxACLPortRanges, which
// only bounds the compiler's work).
const (
	// MaxACLRules is the number of rules an ACL may have.
	MaxACLRules = 512
	// MaxACLPrefixes is the number of distinct prefixes per direction
	// (all Src prefixes of all rules; all Dst prefixes).
	MaxACLPrefixes = 4096
	// MaxPortClasses is the number of distinct port intervals (with
	// distinct rule sets) per direction, plus one for "no ports".
	MaxPortClasses = 4096
	// MaxACLPortRanges is the number of port ranges per direction.
	MaxACLPortRanges = 4096
)

// Internal layout constants of the compiled ACL (see bpf/deepwall.h).
const (
	aclWords    = MaxACLRules / 64
	aclGens     = 2
	aclProtos   = 256
	aclPorts    = 65536
	aclLPMAny   = 8
	aclLPMBase  = 16
	aclLPMFull  = aclLPMBase + 128
	aclFamilyV4 = 4
	aclFamilyV6 = 6
)

// ACLAction is what an ACL rule, or the ACL's default, does with a packet.
type ACLAction uint8

const (
	// ACLAllow lets the packet on to the flow map and inspection: it does
	// not bypass layer 7.
	ACLAllow ACLAction = 0
	// ACLDeny drops the packet in XDP.
	ACLDeny ACLAction = 1
)

func (a ACLAction) String() string {
	switch a {
	case ACLAllow:
		return "allow"
	case ACLDeny:
		return "deny"
	}
	return fmt.Sprintf("action-%d", uint8(a))
}

// PortRange is an inclusive range of ports.
type PortRange struct{ Lo, Hi uint16 }

// ACLRule is one L3/L4 rule. Every condition must hold for the rule to
// match; an empty condition holds for every packet.
type ACLRule struct {
	ID     uint32 // reported to user space, not interpreted
	Action ACLAction
	// Proto is the IP protocol, 0 = any. For IPv6 it is the protocol after
	// the extension headers.
	Proto uint8
	// Src and Dst: the packet's source (destination) address is in one of
	// the prefixes, as netip.Prefix.Contains says of the unmapped address:
	// IPv4 prefixes match IPv4 packets and IPv4-mapped IPv6 addresses,
	// IPv6 prefixes match the other IPv6 addresses.
	Src, Dst []netip.Prefix
	// SrcPorts and DstPorts: the port is in one of the ranges. Only TCP,
	// UDP and SCTP packets have ports, so a rule with ports never matches
	// anything else (ICMP, other protocols, IP fragments); its Proto must be
	// 0, TCP, UDP or SCTP.
	SrcPorts, DstPorts []PortRange
}

// ACL is an ordered list of rules: the first rule whose conditions all
// hold decides; when none does, Default decides. It is evaluated in the
// direction the packet travels (Src = the packet's source).
type ACL struct {
	Rules   []ACLRule
	Default ACLAction
}

// aclBits is struct acl_bits: bit i = rule i.
type aclBits [aclWords]uint64

func (b *aclBits) set(i int)   { b[i/64] |= 1 << (i % 64) }
func (b *aclBits) clear(i int) { b[i/64] &^= 1 << (i % 64) }
func (b *aclBits) or(o aclBits) {
	for i := range b {
		b[i] |= o[i]
	}
}
func (b *aclBits) and(o aclBits) {
	for i := range b {
		b[i] &= o[i]
	}
}

// first is the lowest set bit: the first matching rule.
func (b *aclBits) first() (int, bool) {
	for i, w := range b {
		if w != 0 {
			return i*64 + bits.TrailingZeros64(w), true
		}
	}
	return 0, false
}

// lpmEntry is one prefix of a trie; key.Gen is filled in when written.
type lpmEntry struct {
	key  deepwallAclLpmKey
	bits aclBits
}

// portImage maps every port to a class and every class to its rules.
// Class 0 is "the packet has no ports".
type portImage struct {
	class []uint16 // aclPorts entries
	bits  []aclBits
}

// aclImage is an ACL compiled into what one generation of the maps holds.
type aclImage struct {
	def          ACLAction
	rules        []deepwallAclRule
	proto        [aclProtos]aclBits
	src, dst     []lpmEntry
	sport, dport portImage
}

// compileACL validates acl and turns it into per-field bitmaps.
func compileACL(acl *ACL) (*aclImage, error) {
	if n := len(acl.Rules); n > MaxACLRules {
		return nil, fmt.Errorf("%d rules, at most %d: %w", n, MaxACLRules, ErrACLLimit)
	}
	if acl.Default > ACLDeny {
		return nil, fmt.Errorf("default %v: %w", acl.Default, ErrInvalidACL)
	}
	img := &aclImage{def: acl.Default, rules: make([]deepwallAclRule, len(acl.Rules))}
	for i := range acl.Rules {
		r := &acl.Rules[i]
		if err := validateRule(r); err != nil {
			return nil, fmt.Errorf("rule %d (id %d): %w", i, r.ID, err)
		}
		img.rules[i] = deepwallAclRule{Id: r.ID, Action: uint8(r.Action)}
		if r.Proto == 0 {
			for p := range img.proto {
				img.proto[p].set(i)
			}
		} else {
			img.proto[r.Proto].set(i)
		}
	}
	var err error
	if img.src, err = compilePrefixes(acl.Rules, func(r *ACLRule) []netip.Prefix { return r.Src }); err != nil {
		return nil, fmt.Errorf("src: %w", err)
	}
	if img.dst, err = compilePrefixes(acl.Rules, func(r *ACLRule) []netip.Prefix { return r.Dst }); err != nil {
		return nil, fmt.Errorf("dst: %w", err)
	}
	if img.sport, err = compilePorts(acl.Rules, func(r *ACLRule) []PortRange { return r.SrcPorts }); err != nil {
		return nil, fmt.Errorf("src ports: %w", err)
	}
	if img.dport, err = compilePorts(acl.Rules, func(r *ACLRule) []PortRange { return r.DstPorts }); err != nil {
		return nil, fmt.Errorf("dst ports: %w", err)
	}
	return img, nil
}

// protoHasPorts: the program reads ports for TCP, UDP and SCTP; 0 (any)
// stands for those three in a rule with ports.
func protoHasPorts(p uint8) bool { return p == 0 || p == 6 || p == 17 || p == 132 }

func validateRule(r *ACLRule) error {
	if r.Action > ACLDeny {
		return fmt.Errorf("action %v: %w", r.Action, ErrInvalidACL)
	}
	if (len(r.SrcPorts) > 0 || len(r.DstPorts) > 0) && !protoHasPorts(r.Proto) {
		return fmt.Errorf("ports with protocol %s, which has none: %w", ProtoName(r.Proto), ErrInvalidACL)
	}
	for _, p := range append(slices.Clip(r.Src), r.Dst...) {
		if !p.IsValid() {
			return fmt.Errorf("prefix %v: %w", p, ErrInvalidACL)
		}
	}
	for _, pr := range append(slices.Clip(r.SrcPorts), r.DstPorts...) {
		if pr.Lo > pr.Hi {
			return fmt.Errorf("port range %d-%d: %w", pr.Lo, pr.Hi, ErrInvalidACL)
		}
	}
	return nil
}

// compilePrefixes builds one trie. The kernel returns only the longest
// matching prefix, and prefixes that contain one address are nested, so a
// prefix's bitmap is the union of the rules of all its ancestors (itself
// included) and of the rules without an address condition; the latter alone
// sit in the ACL_LPM_ANY entry that catches every other address.
func compilePrefixes(rules []ACLRule, get func(*ACLRule) []netip.Prefix) ([]lpmEntry, error) {
	var anyAddr aclBits
	listed := map[netip.Prefix]aclBits{}
	for i := range rules {
		pfxs := get(&rules[i])
		if len(pfxs) == 0 {
			anyAddr.set(i)
			continue
		}
		for _, p := range pfxs {
			p = p.Masked()
			b := listed[p]
			b.set(i)
			listed[p] = b
		}
	}
	if len(listed) > MaxACLPrefixes {
		return nil, fmt.Errorf("%d distinct prefixes, at most %d: %w", len(listed), MaxACLPrefixes, ErrACLLimit)
	}
	sorted := make([]netip.Prefix, 0, len(listed))
	for p := range listed {
		sorted = append(sorted, p)
	}
	slices.SortFunc(sorted, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	entries := make([]lpmEntry, 0, len(sorted)+1)
	entries = append(entries, lpmEntry{key: deepwallAclLpmKey{Prefixlen: aclLPMAny}, bits: anyAddr})
	for _, p := range sorted {
		match := anyAddr
		for l := 0; l <= p.Bits(); l++ {
			q, _ := p.Addr().Prefix(l)
			match.or(listed[q])
		}
		entries = append(entries, lpmEntry{key: prefixKey(p), bits: match})
	}
	return entries, nil
}

// prefixKey is the trie key of a (masked) prefix; Gen is left 0.
func prefixKey(p netip.Prefix) deepwallAclLpmKey {
	k := deepwallAclLpmKey{Prefixlen: uint32(aclLPMBase + p.Bits())}
	if p.Addr().Is4() {
		k.Family = aclFamilyV4
		a := p.Addr().As4()
		copy(k.Addr[:], a[:])
	} else {
		k.Family = aclFamilyV6
		k.Addr = p.Addr().As16()
	}
	return k
}

// compilePorts cuts the port space at every range boundary and gives each
// resulting interval the class of its rule set (identical sets share a
// class). Rules without a port condition are in every class, including
// class 0, which is used for packets without ports.
func compilePorts(rules []ACLRule, get func(*ACLRule) []PortRange) (portImage, error) {
	type edge struct{ at, rule, delta int }
	var anyPort aclBits
	var edges []edge
	for i := range rules {
		prs := get(&rules[i])
		if len(prs) == 0 {
			anyPort.set(i)
			continue
		}
		for _, pr := range prs {
			edges = append(edges, edge{int(pr.Lo), i, 1}, edge{int(pr.Hi) + 1, i, -1})
		}
	}
	if n := len(edges) / 2; n > MaxACLPortRanges {
		return portImage{}, fmt.Errorf("%d port ranges, at most %d: %w", n, MaxACLPortRanges, ErrACLLimit)
	}
	slices.SortFunc(edges, func(a, b edge) int { return cmp.Compare(a.at, b.at) })

	img := portImage{class: make([]uint16, aclPorts), bits: []aclBits{anyPort}}
	ids := map[aclBits]uint16{anyPort: 0}
	inRanges := make([]int, len(rules)) // ranges of rule i covering the current port
	cur := anyPort
	for start, e := 0, 0; start < aclPorts; {
		for ; e < len(edges) && edges[e].at == start; e++ {
			r := edges[e].rule
			inRanges[r] += edges[e].delta
			if inRanges[r] > 0 {
				cur.set(r)
			} else {
				cur.clear(r)
			}
		}
		end := aclPorts
		if e < len(edges) {
			end = edges[e].at
		}
		id, ok := ids[cur]
		if !ok {
			if len(img.bits) >= MaxPortClasses {
				return portImage{}, fmt.Errorf("more than %d port classes: %w", MaxPortClasses, ErrACLLimit)
			}
			id = uint16(len(img.bits))
			ids[cur] = id
			img.bits = append(img.bits, cur)
		}
		for p := start; p < end; p++ {
			img.class[p] = id
		}
		start = end
	}
	return img, nil
}

// SetACL replaces the whole ACL atomically. It compiles acl into the
// inactive generation of the ACL maps, flips the active generation, and
// returns once no packet can still be judged by the old one (an RCU grace
// period), so two calls in a row never write a generation in use. Calls are
// serialised per Program; two processes must not set the ACL of one pin
// directory at the same time.
func (p *Program) SetACL(acl ACL) error {
	img, err := compileACL(&acl)
	if err != nil {
		return fmt.Errorf("set acl: %w", err)
	}
	p.aclMu.Lock()
	defer p.aclMu.Unlock()
	var active uint32
	if err := p.objs.DwAclGen.Lookup(uint32(0), &active); err != nil {
		return fmt.Errorf("set acl: read generation: %w", err)
	}
	gen := (active & 1) ^ 1
	if err := p.writeACL(gen, img); err != nil {
		return fmt.Errorf("set acl: write generation %d: %w", gen, err)
	}
	if err := p.objs.DwAclGen.Update(uint32(0), gen, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("set acl: flip to generation %d: %w", gen, err)
	}
	if err := p.waitForReaders(); err != nil {
		return fmt.Errorf("set acl: wait for readers of generation %d: %w", active&1, err)
	}
	return nil
}

// writeACL fills generation gen of every ACL map; the meta entry, which
// makes the rules count, goes last.
func (p *Program) writeACL(gen uint32, img *aclImage) error {
	o := &p.objs
	if err := updateRange(o.DwAclProto, gen*aclProtos, img.proto[:]); err != nil {
		return fmt.Errorf("protocols: %w", err)
	}
	for _, d := range []struct {
		name           string
		ports, classes *ebpf.Map
		img            *portImage
	}{{"src ports", o.DwAclSport, o.DwAclSclass, &img.sport}, {"dst ports", o.DwAclDport, o.DwAclDclass, &img.dport}} {
		if err := updateRange(d.ports, gen*aclPorts, d.img.class); err != nil {
			return fmt.Errorf("%s: %w", d.name, err)
		}
		if err := updateRange(d.classes, gen*MaxPortClasses, d.img.bits); err != nil {
			return fmt.Errorf("%s classes: %w", d.name, err)
		}
	}
	if err := replaceTrie(o.DwAclSrc, uint8(gen), img.src); err != nil {
		return fmt.Errorf("src prefixes: %w", err)
	}
	if err := replaceTrie(o.DwAclDst, uint8(gen), img.dst); err != nil {
		return fmt.Errorf("dst prefixes: %w", err)
	}
	if err := updateRange(o.DwAclRules, gen*MaxACLRules, img.rules); err != nil {
		return fmt.Errorf("rules: %w", err)
	}
	meta := deepwallAclMeta{Nrules: uint32(len(img.rules)), DefaultAction: uint8(img.def)}
	if err := o.DwAclMeta.Update(gen, &meta, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("meta: %w", err)
	}
	return nil
}

// updateRange writes vals at keys base, base+1, … of an array map, in one
// batch where the kernel supports it.
func updateRange[V any](m *ebpf.Map, base uint32, vals []V) error {
	if len(vals) == 0 {
		return nil
	}
	keys := make([]uint32, len(vals))
	for i := range keys {
		keys[i] = base + uint32(i)
	}
	_, err := m.BatchUpdate(keys, vals, nil)
	if !errors.Is(err, ebpf.ErrNotSupported) {
		return err
	}
	for i := range keys {
		if err := m.Update(keys[i], &vals[i], ebpf.UpdateAny); err != nil {
			return err
		}
	}
	return nil
}

// replaceTrie removes generation gen's prefixes from a trie and inserts
// entries in their place. The other generation's prefixes are untouched.
func replaceTrie(m *ebpf.Map, gen uint8, entries []lpmEntry) error {
	var (
		k     deepwallAclLpmKey
		v     aclBits
		stale []deepwallAclLpmKey
	)
	it := m.Iterate()
	for it.Next(&k, &v) {
		if k.Gen == gen {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("list: %w", err)
	}
	for i := range stale {
		if err := m.Delete(&stale[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete: %w", err)
		}
	}
	for i := range entries {
		k := entries[i].key
		k.Gen = gen
		if err := m.Update(&k, &entries[i].bits, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("insert prefixlen %d: %w", k.Prefixlen, err)
		}
	}
	return nil
}

// waitForReaders returns after an RCU grace period: every XDP run that
// started before it has finished. User space has no direct way to wait for
// one, but updating an ARRAY_OF_MAPS calls synchronize_rcu() in the kernel
// (kernel selftests use the same trick).
func (p *Program) waitForReaders() error {
	if p.rcuSync == nil {
		inner := &ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1}
		elem, err := ebpf.NewMap(inner)
		if err != nil {
			return fmt.Errorf("create sync map: %w", err)
		}
		outer, err := ebpf.NewMap(&ebpf.MapSpec{
			Type: ebpf.ArrayOfMaps, KeySize: 4, ValueSize: 4, MaxEntries: 1, InnerMap: inner,
		})
		if err != nil {
			elem.Close()
			return fmt.Errorf("create sync map: %w", err)
		}
		p.rcuSync, p.rcuElem = outer, elem
	}
	return p.rcuSync.Update(uint32(0), p.rcuElem, ebpf.UpdateAny)
}
