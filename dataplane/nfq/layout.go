package nfq

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/deepwall/deepwall/xdp"
)

// Mark layout: deepwall owns the bits of MarkMask, in the packet mark of a
// packet it sends back to the chain and in the connection mark, and leaves
// the other bits of both alone. (The kernel can set a connection's mark
// from a queue verdict only with CONFIG_NETFILTER_NETLINK_GLUE_CT, which
// hosts often lack; a packet mark and a CONNMARK rule work everywhere.) The low two of its bits say the verdict,
// the others the generation the verdict belongs to; only marks of the
// current generation are honoured by the fast-path rules, so moving the
// generation on revokes every verdict at once.
const (
	MarkShift  = 20
	verdictLen = 2
	genBits    = 10
	// MarkMask is the part of the connmark deepwall uses.
	MarkMask     uint32 = (1<<(verdictLen+genBits) - 1) << MarkShift
	markAllow    uint32 = 1 << MarkShift
	markDrop     uint32 = 2 << MarkShift
	maxGen              = 1<<genBits - 1
	genShift            = MarkShift + verdictLen
	filterTable         = "filter"
	forwardChain        = "FORWARD"
)

// mark is the connmark of a verdict in generation gen.
func mark(v xdp.Verdict, gen uint32) uint32 {
	m := gen << genShift
	switch v {
	case xdp.VerdictAllow:
		m |= markAllow
	case xdp.VerdictDrop:
		m |= markDrop
	}
	return m
}

// nextGen is the generation after g: 1 … maxGen, never 0, so a
// connection mark of zero never matches.
func nextGen(g uint32) uint32 {
	if g >= maxGen {
		return 1
	}
	return g + 1
}

// Limits of the iptables translation.
const (
	// maxTagLen keeps chain names within iptables' 28 characters and set
	// names within ipset's 31.
	maxTagLen = 12
	// multiportMax is how many ports one multiport match takes (a range
	// counts two).
	multiportMax = 15
	// maxInlinePrefixes: a rule side with more prefixes than this uses an
	// ipset.
	maxInlinePrefixes = 1
	// MaxACLRules bounds the iptables rules an ACL compiles to per family.
	MaxACLRules = 20000
)

var tagOK = regexp.MustCompile(`^[A-Za-z0-9_]{1,12}$`)

// Tag names one instance's chains and sets: the inner port's name when it
// is short and plain, else a hash of it. Tags never contain '-', which
// separates them from the rest of a chain or set name.
func Tag(inner string) string {
	if tagOK.MatchString(inner) {
		return inner
	}
	h := fnv.New32a()
	h.Write([]byte(inner))
	return fmt.Sprintf("h%08x", h.Sum32())
}

// chains names one instance's chains.
type chains struct{ tag string }

func (c chains) scope() string      { return "DW-" + c.tag }
func (c chains) flow() string       { return "DW-" + c.tag + "-F" }
func (c chains) acl(gen int) string { return "DW-" + c.tag + "-A" + strconv.Itoa(gen) }
func (c chains) comment() string    { return "deepwall " + c.tag }
func (c chains) setPrefix() string  { return "dw-" + c.tag + "-" }
func (c chains) jump() []string {
	return []string{"-m", "comment", "--comment", c.comment(), "-j", c.scope()}
}
func (c chains) set(gen, i int, side string, v6 bool) string {
	f := "4"
	if v6 {
		f = "6"
	}
	return fmt.Sprintf("%s%d-%d%s%s", c.setPrefix(), gen, i, side, f)
}

// ours reports whether chain is one of this instance's.
func (c chains) ours(chain string) bool {
	if chain == c.scope() || chain == c.flow() {
		return true
	}
	rest, ok := strings.CutPrefix(chain, c.scope()+"-A")
	if !ok || rest == "" {
		return false
	}
	_, err := strconv.Atoi(rest)
	return err == nil
}

// ndTypes are the ICMPv6 neighbour discovery messages, never inspected
// nor subject to the ACL (as in the XDP program).
var ndTypes = []string{"133", "134", "135", "136", "137"}

// flowLayout returns the flow chain's rules: neighbour discovery (IPv6),
// the ACL, the reset of a SYN's connection, the save of a verdict's mark
// into the connection, the connmark fast path of generation gen, the queue.
// The positions of the fast-path rules are fastPos and fastPos+1
// (1-based), the ACL jump fastPos-3.
func flowLayout(c chains, v6 bool, aclGen int, gen uint32, qBase uint16, workers int, failOpen bool) (rules [][]string, fastPos int) {
	if v6 {
		for _, t := range ndTypes {
			rules = append(rules, []string{"-p", "ipv6-icmp", "-m", "icmp6", "--icmpv6-type", t, "-j", "ACCEPT"})
		}
	}
	rules = append(rules, []string{"-j", c.acl(aclGen)})
	m := fmt.Sprintf("0x%x", MarkMask)
	// A SYN takes its connection off the fast path, as the XDP program
	// sends a decided tuple back to inspection on a SYN: conntrack keeps an
	// established entry through a SYN it ignores, and with it the old
	// verdict, so a new connection on the tuple would ride it (and pass a
	// dead agent's fail-closed port). The queue decides the SYN; its
	// verdict's mark, if final, comes back below.
	rules = append(rules, []string{"-p", "tcp", "--syn", "-j", "CONNMARK", "--set-xmark", "0x0/" + m})
	// A packet the queue sent back (NF_REPEAT) with deepwall's bits in its
	// packet mark hands them to its connection: the fast path from then on.
	rules = append(rules, []string{"-m", "mark", "!", "--mark", "0x0/" + m, "-j", "CONNMARK", "--save-mark", "--nfmask", m, "--ctmask", m})
	fastPos = len(rules) + 1
	rules = append(rules, fastRule(xdp.VerdictAllow, gen), fastRule(xdp.VerdictDrop, gen))
	q := []string{"-j", "NFQUEUE"}
	if workers <= 1 {
		q = append(q, "--queue-num", strconv.Itoa(int(qBase)))
	} else {
		q = append(q, "--queue-balance", fmt.Sprintf("%d:%d", qBase, int(qBase)+workers-1))
	}
	if failOpen {
		q = append(q, "--queue-bypass")
	}
	return append(rules, q), fastPos
}

// fastRule is the fast-path rule for verdict v of generation gen.
func fastRule(v xdp.Verdict, gen uint32) []string {
	target := "ACCEPT"
	if v == xdp.VerdictDrop {
		target = "DROP"
	}
	return []string{"-m", "connmark", "--mark", fmt.Sprintf("0x%x/0x%x", mark(v, gen), MarkMask), "-j", target}
}

var markRE = regexp.MustCompile(`--mark (0x[0-9a-fA-F]+)/`)

// genOf finds the generation in a listed fast-path rule (0 if none).
func genOf(rule string) uint32 {
	m := markRE.FindStringSubmatch(rule)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseUint(m[1][2:], 16, 32)
	if err != nil {
		return 0
	}
	return (uint32(v) & MarkMask) >> genShift
}

// scopeRules select the packets crossing between the two ports, either
// way, for the flow chain.
func scopeRules(c chains, inner, outer string, bridged bool) [][]string {
	var out [][]string
	for _, d := range [][2]string{{inner, outer}, {outer, inner}} {
		if bridged {
			out = append(out, []string{"-m", "physdev", "--physdev-in", d[0], "--physdev-out", d[1], "--physdev-is-bridged", "-j", c.flow()})
		} else {
			out = append(out, []string{"-i", d[0], "-o", d[1], "-j", c.flow()})
		}
	}
	return out
}

// ipset is a set an ACL rule matches against.
type ipset struct {
	name    string
	v6      bool
	members []netip.Prefix
}

// compileACL translates acl into the rules of one family's ACL chain (in
// order, first match wins: allow → RETURN to the flow chain, deny → DROP)
// and the sets they use. setName names the set of rule i's side ("s"/"d").
func compileACL(acl xdp.ACL, v6 bool, setName func(i int, side string) string) ([][]string, []ipset, error) {
	var out [][]string
	var sets []ipset
	for i, r := range acl.Rules {
		target := "RETURN"
		if r.Action == xdp.ACLDeny {
			target = "DROP"
		}
		var addr [][]string
		ok := true
		for _, side := range []struct {
			name, flag, dir string
			prefixes        []netip.Prefix
		}{{"s", "-s", "src", r.Src}, {"d", "-d", "dst", r.Dst}} {
			ps, any, match := family(side.prefixes, v6)
			switch {
			case any:
			case !match:
				ok = false // no prefix of this family: the rule cannot match here
			case len(ps) <= maxInlinePrefixes:
				addr = append(addr, []string{side.flag, ps[0].String()})
			default:
				name := setName(i, side.name)
				sets = append(sets, ipset{name: name, v6: v6, members: ps})
				addr = append(addr, []string{"-m", "set", "--match-set", name, side.dir})
			}
		}
		if !ok {
			continue
		}
		if (len(r.SrcPorts) > 0 || len(r.DstPorts) > 0) && !hasPorts(r.Proto) {
			return nil, nil, fmt.Errorf("acl rule %d: ports with protocol %d", r.ID, r.Proto)
		}
		protos := []uint8{r.Proto}
		if r.Proto == 0 && (len(r.SrcPorts) > 0 || len(r.DstPorts) > 0) {
			protos = []uint8{6, 17, 132} // the protocols with ports, as in XDP
		}
		sports, dports := portChunks(r.SrcPorts), portChunks(r.DstPorts)
		for _, p := range protos {
			for _, sp := range sports {
				for _, dp := range dports {
					var spec []string
					if p != 0 {
						spec = append(spec, "-p", strconv.Itoa(int(p)))
					}
					for _, a := range addr {
						spec = append(spec, a...)
					}
					if sp != "" {
						spec = append(spec, "-m", "multiport", "--sports", sp)
					}
					if dp != "" {
						spec = append(spec, "-m", "multiport", "--dports", dp)
					}
					spec = append(spec, "-m", "comment", "--comment", "acl "+strconv.FormatUint(uint64(r.ID), 10), "-j", target)
					out = append(out, spec)
					if len(out) > MaxACLRules {
						return nil, nil, fmt.Errorf("acl: more than %d iptables rules per family: %w", MaxACLRules, xdp.ErrACLLimit)
					}
				}
			}
		}
	}
	def := "RETURN"
	if acl.Default == xdp.ACLDeny {
		def = "DROP"
	}
	out = append(out, []string{"-m", "comment", "--comment", "acl default", "-j", def})
	return out, sets, nil
}

func hasPorts(p uint8) bool { return p == 0 || p == 6 || p == 17 || p == 132 }

// family returns the prefixes of one family. any: no condition (no
// prefixes, or one covering everything); match false: there are prefixes,
// none of this family.
func family(ps []netip.Prefix, v6 bool) (out []netip.Prefix, any, match bool) {
	if len(ps) == 0 {
		return nil, true, true
	}
	for _, p := range ps {
		p = p.Masked()
		if p.Addr().Unmap().Is4() == v6 {
			continue
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
		}
		if p.Bits() == 0 {
			return nil, true, true
		}
		out = append(out, p)
	}
	return out, false, len(out) > 0
}

// portChunks splits ranges into multiport lists of at most multiportMax
// ports each; [""] means no condition.
func portChunks(rs []xdp.PortRange) []string {
	if len(rs) == 0 {
		return []string{""}
	}
	var out []string
	var cur []string
	n := 0
	for _, r := range rs {
		w, s := 1, strconv.Itoa(int(r.Lo))
		if r.Hi > r.Lo {
			w, s = 2, fmt.Sprintf("%d:%d", r.Lo, r.Hi)
		}
		if n+w > multiportMax {
			out = append(out, strings.Join(cur, ","))
			cur, n = nil, 0
		}
		cur, n = append(cur, s), n+w
	}
	return append(out, strings.Join(cur, ","))
}
