package rules

import (
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Container selectors: `src: container:web` or `dst: [container:db,
// 198.18.0.0/24]` select traffic by a protected container's name. A
// selector resolves to the container's current addresses when the agent
// compiles the set (Set.ResolveContainers), so policy follows a container
// whose address changes. An unresolved selector matches nothing: Enabled
// leaves out rules that still carry selectors, and a rule whose
// selectors resolve to no address (and that names no literal address on
// that side) is disabled in the resolved copy.

// ContainerPrefix marks a container selector in src and dst.
const ContainerPrefix = "container:"

// MaxContainerAddrs bounds the addresses one selector resolves to.
const MaxContainerAddrs = 64

var containerNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// ValidContainerName reports whether name may follow container: in a rule.
func ValidContainerName(name string) bool { return containerNameRE.MatchString(name) }

// containerRef takes a container selector out of a src/dst list entry; it
// reports whether the entry was one (an invalid name is reported here).
func (l *loader) containerRef(f *fileCtx, n *yaml.Node, r *Rule, key string) bool {
	name, ok := strings.CutPrefix(strings.TrimSpace(n.Value), ContainerPrefix)
	if !ok {
		return false
	}
	if !ValidContainerName(name) {
		l.errs.errorf(f.pos(n), r, "%s: container name %q: want letters, digits, _ . - (up to 128, starting with a letter or digit)", key, name)
		return true
	}
	if key == "src" {
		r.SrcContainers = append(r.SrcContainers, name)
	} else {
		r.DstContainers = append(r.DstContainers, name)
	}
	return true
}

// HasContainers reports whether the rule selects by container name.
func (r *Rule) HasContainers() bool { return len(r.SrcContainers) > 0 || len(r.DstContainers) > 0 }

// Containers returns every container name the set's rules select, sorted.
func (s *Set) Containers() []string {
	var out []string
	for _, r := range s.Rules {
		for _, n := range append(slices.Clip(r.SrcContainers), r.DstContainers...) {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	slices.Sort(out)
	return out
}

// ContainerAddrs returns a container's current addresses (nil: unknown).
type ContainerAddrs func(name string) []netip.Addr

// ResolveContainers returns a copy of s in which every container
// selector is replaced by the container's addresses (host prefixes),
// beside the rule's literal prefixes. A side whose selectors resolve to
// nothing and that has no literal prefix can match nothing, so such a
// rule is disabled in the copy. Rules without selectors are shared. The
// copy is what the agent compiles; s stays what is stored.
func (s *Set) ResolveContainers(addrs ContainerAddrs) *Set {
	out := *s
	out.Rules = make([]*Rule, len(s.Rules))
	for i, r := range s.Rules {
		if !r.HasContainers() {
			out.Rules[i] = r
			continue
		}
		c := *r
		c.Src, c.Dst = resolveSide(r.Src, r.SrcContainers, addrs), resolveSide(r.Dst, r.DstContainers, addrs)
		if len(r.SrcContainers) > 0 && len(c.Src) == 0 || len(r.DstContainers) > 0 && len(c.Dst) == 0 {
			c.Disabled = true
		}
		c.SrcContainers, c.DstContainers = nil, nil
		out.Rules[i] = &c
	}
	return &out
}

func resolveSide(lit []netip.Prefix, names []string, addrs ContainerAddrs) []netip.Prefix {
	if len(names) == 0 {
		return lit
	}
	out := slices.Clone(lit)
	for _, n := range names {
		as := addrs(n)
		if len(as) > MaxContainerAddrs {
			as = as[:MaxContainerAddrs]
		}
		for _, a := range as {
			p := netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out
}

// selectorStrings renders a side's selectors for the canonical form.
func selectorStrings(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = ContainerPrefix + n
	}
	return out
}
