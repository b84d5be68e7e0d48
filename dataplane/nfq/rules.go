package nfq

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"

	goipt "github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netlink"

	"github.com/deepwall/deepwall/xdp"
)

// ipTables is the part of go-iptables deepwall uses.
type ipTables interface {
	List(table, chain string) ([]string, error)
	ListChains(table string) ([]string, error)
	NewChain(table, chain string) error
	ClearChain(table, chain string) error
	DeleteChain(table, chain string) error
	Append(table, chain string, rulespec ...string) error
	Insert(table, chain string, pos int, rulespec ...string) error
	Replace(table, chain string, pos int, rulespec ...string) error
	DeleteById(table, chain string, id int) error
	StructuredStats(table, chain string) ([]goipt.Stat, error)
}

func newIPTables(v6 bool) (ipTables, error) {
	proto := goipt.ProtocolIPv4
	if v6 {
		proto = goipt.ProtocolIPv6
	}
	ipt, err := goipt.New(goipt.IPFamily(proto), goipt.Timeout(10))
	if err != nil {
		return nil, fmt.Errorf("iptables: %w", err)
	}
	return ipt, nil
}

// removeRules deletes this instance's jumps from FORWARD, its chains and
// its sets, in every family, and returns the fast-path generation found.
// Nothing else is touched: rules are matched by their target chain name.
func (p *Pair) removeRules() (uint32, error) {
	var gen uint32
	var errs []error
	for _, f := range p.fams {
		if rules, err := f.ipt.List(filterTable, p.c.flow()); err == nil {
			for _, r := range rules {
				if g := genOf(r); g != 0 {
					gen = g
				}
			}
		}
		errs = append(errs, p.deleteJumps(f.ipt))
		all, err := f.ipt.ListChains(filterTable)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var mine []string
		for _, ch := range all {
			if p.c.ours(ch) {
				mine = append(mine, ch)
			}
		}
		// Flush all first: they refer to each other.
		for _, ch := range mine {
			errs = append(errs, f.ipt.ClearChain(filterTable, ch))
		}
		for _, ch := range mine {
			errs = append(errs, f.ipt.DeleteChain(filterTable, ch))
		}
	}
	errs = append(errs, destroySets(p.c.setPrefix(), nil))
	return gen, errors.Join(errs...)
}

// deleteJumps removes every rule of FORWARD that jumps to this
// instance's scope chain, by position.
func (p *Pair) deleteJumps(ipt ipTables) error {
	for range 64 {
		rules, err := ipt.List(filterTable, forwardChain)
		if err != nil {
			return err
		}
		pos := 0
		n := 0
		for _, r := range rules {
			if !strings.HasPrefix(r, "-A ") {
				continue
			}
			n++
			if strings.HasSuffix(r, " -j "+p.c.scope()) {
				pos = n
				break
			}
		}
		if pos == 0 {
			return nil
		}
		if err := ipt.DeleteById(filterTable, forwardChain, pos); err != nil {
			return err
		}
	}
	return errors.New("jumps to " + p.c.scope() + " keep coming back")
}

// install creates the chains and the jump, in every family. The jump
// comes last, so packets meet only a complete layout.
func (p *Pair) install() error {
	p.aclGen = 0
	for _, f := range p.fams {
		ipt := f.ipt
		for _, ch := range []string{p.c.scope(), p.c.flow(), p.c.acl(p.aclGen)} {
			if err := ipt.NewChain(filterTable, ch); err != nil {
				return err
			}
		}
		if err := ipt.Append(filterTable, p.c.acl(p.aclGen), "-j", "RETURN"); err != nil {
			return err
		}
		rules, fast := flowLayout(p.c, f.v6, p.aclGen, p.gen.Load(), p.cfg.QueueBase, p.cfg.Workers, !p.cfg.FailClosed)
		f.fastPos = fast
		for _, r := range rules {
			if err := ipt.Append(filterTable, p.c.flow(), r...); err != nil {
				return err
			}
		}
		for _, r := range scopeRules(p.c, p.cfg.Inner, p.cfg.Outer, p.bridged) {
			if err := ipt.Append(filterTable, p.c.scope(), r...); err != nil {
				return err
			}
		}
		if err := ipt.Insert(filterTable, forwardChain, 1, p.c.jump()...); err != nil {
			return err
		}
	}
	return nil
}

// SetACL replaces the ACL atomically: the new rules go to a fresh chain
// (and fresh sets), the flow chain's jump is switched to it in one
// replace, and the old chain and sets are removed.
func (p *Pair) SetACL(acl xdp.ACL) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed && !p.ns.IsOpen() {
		return errors.New("nfqueue: set acl: pair detached")
	}
	next := p.aclGen + 1
	var sets []string
	err := p.inNS(func() error {
		type fam struct {
			f     *family4or6
			rules [][]string
		}
		var fams []fam
		for _, f := range p.fams {
			rules, ss, err := compileACL(acl, f.v6, func(i int, side string) string { return p.c.set(next, i, side, f.v6) })
			if err != nil {
				return err
			}
			if err := createSets(ss); err != nil {
				return err
			}
			for _, s := range ss {
				sets = append(sets, s.name)
			}
			fams = append(fams, fam{f, rules})
		}
		for _, fa := range fams {
			if err := fa.f.ipt.NewChain(filterTable, p.c.acl(next)); err != nil {
				return err
			}
			for _, r := range fa.rules {
				if err := fa.f.ipt.Append(filterTable, p.c.acl(next), r...); err != nil {
					return fmt.Errorf("acl rule %q: %w", strings.Join(r, " "), err)
				}
			}
		}
		for _, fa := range fams {
			if err := fa.f.ipt.Replace(filterTable, p.c.flow(), fa.f.fastPos-3, "-j", p.c.acl(next)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		// The new chain never went live (or only in some families: put
		// the old one back everywhere).
		_ = p.inNS(func() error {
			for _, f := range p.fams {
				_ = f.ipt.Replace(filterTable, p.c.flow(), f.fastPos-3, "-j", p.c.acl(p.aclGen))
				_ = f.ipt.ClearChain(filterTable, p.c.acl(next))
				_ = f.ipt.DeleteChain(filterTable, p.c.acl(next))
			}
			return destroySets("", sets)
		})
		return fmt.Errorf("nfqueue: set acl: %w", err)
	}
	old, oldSets := p.aclGen, p.aclSets
	p.aclGen, p.aclSets, p.acl = next, sets, acl
	return p.inNS(func() error {
		var errs []error
		for _, f := range p.fams {
			errs = append(errs, f.ipt.ClearChain(filterTable, p.c.acl(old)), f.ipt.DeleteChain(filterTable, p.c.acl(old)))
		}
		errs = append(errs, destroySets("", oldSets))
		if err := errors.Join(errs...); err != nil {
			p.log.Warn("remove the previous acl chain", "error", err)
		}
		return nil
	})
}

// bumpGeneration moves the fast path to a new connmark generation, so
// every verdict marked before is revoked at once (the flows' next packets
// come back to the queue, where the flow table re-marks those still
// decided).
func (p *Pair) bumpGeneration() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	g := nextGen(p.gen.Load())
	err := p.inNS(func() error {
		for _, f := range p.fams {
			for i, v := range []xdp.Verdict{xdp.VerdictAllow, xdp.VerdictDrop} {
				if err := f.ipt.Replace(filterTable, p.c.flow(), f.fastPos+i, fastRule(v, g)...); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("nfqueue: new fast-path generation: %w", err)
	}
	p.gen.Store(g)
	return nil
}

// createSets creates the sets with ipset restore.
func createSets(sets []ipset) error {
	if len(sets) == 0 {
		return nil
	}
	var b bytes.Buffer
	for _, s := range sets {
		fam := "inet"
		if s.v6 {
			fam = "inet6"
		}
		fmt.Fprintf(&b, "create %s hash:net family %s maxelem %d\n", s.name, fam, max(len(s.members), 1024))
		for _, m := range s.members {
			fmt.Fprintf(&b, "add %s %s\n", s.name, m)
		}
	}
	cmd := exec.Command("ipset", "restore", "-exist")
	cmd.Stdin = &b
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ipset restore: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// destroySets destroys the named sets and every set whose name starts
// with prefix ("" for none). A missing ipset tool is not an error when
// there is nothing to destroy.
func destroySets(prefix string, names []string) error {
	if prefix != "" {
		out, err := runCmd("ipset", "list", "-n")
		if err != nil {
			if errors.Is(err, exec.ErrNotFound) {
				return nil
			}
			return fmt.Errorf("ipset list: %w: %s", err, strings.TrimSpace(string(out)))
		}
		for _, n := range strings.Fields(string(out)) {
			if strings.HasPrefix(n, prefix) {
				names = append(names, n)
			}
		}
	}
	var errs []error
	for _, n := range names {
		if out, err := runCmd("ipset", "destroy", n); err != nil && !strings.Contains(string(out), "does not exist") {
			errs = append(errs, fmt.Errorf("ipset destroy %s: %w: %s", n, err, strings.TrimSpace(string(out))))
		}
	}
	return errors.Join(errs...)
}

func runCmd(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}

// ifaceInfo is what Open needs of a port.
type ifaceInfo struct {
	index, master int
	mac           net.HardwareAddr
}

func netInterface(name string) (ifaceInfo, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return ifaceInfo{}, err
	}
	a := l.Attrs()
	return ifaceInfo{index: a.Index, master: a.MasterIndex, mac: a.HardwareAddr}, nil
}

// sysctl is a namespace setting deepwall changed.
type sysctl struct {
	path, value, old, why string
}

func readSysctl(path string) (string, error) {
	b, err := os.ReadFile("/proc/sys/" + path)
	return strings.TrimSpace(string(b)), err
}

// setSysctl sets a sysctl of the calling thread's namespace, returning
// the old value and whether it changed.
func setSysctl(path, value string) (string, bool, error) {
	old, err := readSysctl(path)
	if err != nil {
		return "", false, err
	}
	if old == value {
		return old, false, nil
	}
	if err := os.WriteFile("/proc/sys/"+path, []byte(value), 0o644); err != nil {
		return old, false, err
	}
	return old, true, nil
}
