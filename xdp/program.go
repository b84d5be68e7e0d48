package xdp

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Limits of the XDP program. They are fixed when the maps are created: the
// C side has the same values in bpf/deepwall.h (TestHeaderConstants).
const (
	// MaxQueues is the number of rx queues per port the program can hand
	// to user space: XSKMAP index = slot*MaxQueues + queue.
	MaxQueues = 64
	// MaxSlots is the number of ports one program serves: slot 0 is the
	// inner port, slot 1 the outer port of a pair.
	MaxSlots = 2
	// DefaultMaxFlows is the flow map size when Options.MaxFlows is 0 and
	// no pinned flow map exists.
	DefaultMaxFlows = 65536
	// MaxVLANDepth is the number of 802.1Q/802.1ad tags parsed; frames
	// with more are dropped as errors.
	MaxVLANDepth = 2
	// MaxIPv6ExtHeaders is the number of IPv6 extension headers parsed; a
	// longer chain goes to user space with the ACL applied on L3 only.
	MaxIPv6ExtHeaders = 4
)

// Exported errors.
var (
	// ErrNotBPFFS: a pin directory is not on a bpf filesystem.
	ErrNotBPFFS = errors.New("not on a bpf filesystem")
	// ErrIncompatiblePins: pinned maps exist but do not match this
	// program (another version, or another MaxFlows); Remove them first.
	ErrIncompatiblePins = errors.New("pinned maps do not match this program")
	// ErrRange: a slot, queue, ifindex or verdict is out of range.
	ErrRange = errors.New("out of range")
	// ErrNotAttached: Detach on a port this program is not attached to.
	ErrNotAttached = errors.New("not attached")
	// ErrSlotTaken: Attach or SetPort on a slot that another port holds.
	ErrSlotTaken = errors.New("slot taken by another port")
	// ErrInvalidACL: an ACL rule or the default is malformed.
	ErrInvalidACL = errors.New("invalid acl")
	// ErrACLLimit: an ACL exceeds MaxACLRules, MaxACLPrefixes,
	// MaxACLPortRanges or MaxPortClasses.
	ErrACLLimit = errors.New("acl exceeds a limit")
)

// Options shape Load.
type Options struct {
	// PinDir is the bpffs directory for this port pair; "" = no pinning.
	// Existing pins are adopted: maps (flows, ACL, sockets, ports,
	// counters) and attach links.
	PinDir string
	// MaxFlows sizes the flow verdict LRU. 0 adopts the size of a pinned
	// flow map, or DefaultMaxFlows. A value that differs from a pinned
	// map's fails with ErrIncompatiblePins.
	MaxFlows uint32
}

// Program is deepwall's XDP program and its maps, loaded in the kernel.
// Its methods are safe for concurrent use.
type Program struct {
	opts Options
	objs deepwallObjects

	mu    sync.Mutex
	links map[hook]link.Link // hooks attached (or adopted) by this process

	aclMu   sync.Mutex
	rcuSync *ebpf.Map // ARRAY_OF_MAPS whose update waits for an RCU grace period
	rcuElem *ebpf.Map
}

// Names of the pins under PinDir besides the maps (which are pinned under
// their C names, dw_*).
const (
	linkPinPrefix = "link_" // XDP links, by ifindex
	tcxPinPrefix  = "tcx_"  // tcx ingress links, by ifindex
)

// Load creates the program's maps, or adopts them from Options.PinDir, and
// loads the program. It attaches nothing.
func Load(opts Options) (*Program, error) {
	spec, err := loadDeepwall()
	if err != nil {
		return nil, fmt.Errorf("load xdp spec: %w", err)
	}
	flows := spec.Maps[deepwallMapDwFlows]
	flows.MaxEntries = DefaultMaxFlows
	if opts.PinDir != "" {
		if err := makePinDir(opts.PinDir); err != nil {
			return nil, fmt.Errorf("load xdp: %w", err)
		}
		if opts.MaxFlows == 0 {
			if n, ok := pinnedMaxEntries(filepath.Join(opts.PinDir, deepwallMapDwFlows)); ok {
				flows.MaxEntries = n
			}
		}
	} else {
		for _, m := range spec.Maps {
			m.Pinning = ebpf.PinNone
		}
	}
	if opts.MaxFlows > 0 {
		flows.MaxEntries = opts.MaxFlows
	}
	p := &Program{opts: opts, links: map[hook]link.Link{}}
	err = spec.LoadAndAssign(&p.objs, &ebpf.CollectionOptions{
		Maps: ebpf.MapOptions{PinPath: opts.PinDir},
	})
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		return nil, fmt.Errorf("load xdp from %s: %w: %w", opts.PinDir, ErrIncompatiblePins, err)
	}
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load xdp: %+v", ve)
		}
		return nil, fmt.Errorf("load xdp: %w", err)
	}
	return p, nil
}

// pinnedMaxEntries reports the size of a pinned map, if there is one.
func pinnedMaxEntries(path string) (uint32, bool) {
	m, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return 0, false
	}
	defer m.Close()
	return m.MaxEntries(), true
}

// PinDir returns Options.PinDir.
func (p *Program) PinDir() string { return p.opts.PinDir }

// MaxFlows returns the size of the flow map.
func (p *Program) MaxFlows() uint32 { return p.objs.DwFlows.MaxEntries() }

// XDPProgram returns the loaded program, for BPF_PROG_TEST_RUN and
// benchmarks; it stays owned by p.
func (p *Program) XDPProgram() *ebpf.Program { return p.objs.DeepwallXdp }

// Close releases this process's handles. Pinned maps and pinned links stay,
// so attached ports keep running (and apply their fail policy); without a
// PinDir, closing detaches the ports this process attached.
func (p *Program) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for h, l := range p.links {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close link %d: %w", h.ifindex, err))
		}
		delete(p.links, h)
	}
	for _, m := range []*ebpf.Map{p.rcuSync, p.rcuElem} {
		if m != nil {
			errs = append(errs, m.Close())
		}
	}
	p.rcuSync, p.rcuElem = nil, nil
	errs = append(errs, p.objs.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close xdp: %w", err)
	}
	return nil
}

// Remove detaches every port of the program (configured ones and any link
// pinned in PinDir), deletes every pin deepwall made in PinDir and the
// directory itself when nothing else is left in it, and closes p.
func (p *Program) Remove() error {
	var errs []error
	ifindexes, err := p.portIndexes()
	errs = append(errs, err)
	for _, ifindex := range ifindexes {
		if err := p.Detach(ifindex); err != nil && !errors.Is(err, ErrNotAttached) {
			errs = append(errs, err)
		}
	}
	p.mu.Lock()
	for ifindex, l := range p.links { // attached without a port config entry
		errs = append(errs, detachLink(l))
		delete(p.links, ifindex)
	}
	p.mu.Unlock()
	if dir := p.opts.PinDir; dir != "" {
		entries, err := os.ReadDir(dir)
		errs = append(errs, err)
		for _, e := range entries {
			name := e.Name()
			path := filepath.Join(dir, name)
			switch {
			case strings.HasPrefix(name, linkPinPrefix), strings.HasPrefix(name, tcxPinPrefix):
				if l, err := link.LoadPinnedLink(path, nil); err == nil {
					errs = append(errs, detachLink(l))
				}
				errs = append(errs, removePin(path))
			case strings.HasPrefix(name, "dw_"):
				errs = append(errs, removePin(path))
			}
		}
		if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOTEMPTY) {
			errs = append(errs, err)
		}
	}
	errs = append(errs, p.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove xdp: %w", err)
	}
	return nil
}

func removePin(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// portIndexes lists the ifindexes that have a port config.
func (p *Program) portIndexes() ([]int, error) {
	ports, err := p.ports()
	if err != nil {
		return nil, fmt.Errorf("list ports: %w", err)
	}
	var out []int
	for _, pc := range ports {
		if pc.Ifindex != 0 {
			out = append(out, int(pc.Ifindex))
		}
	}
	return out, nil
}

// EnsureBPFFS makes path a bpf filesystem: it creates the directory and
// mounts bpffs on it unless it already is one. deepwall's machines do not
// mount bpffs at boot, and `ip netns exec` hides the host's /sys mounts.
func EnsureBPFFS(path string) error {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return fmt.Errorf("ensure bpffs at %s: %w", path, err)
	}
	ok, err := isBPFFS(path)
	if err != nil {
		return fmt.Errorf("ensure bpffs: %w", err)
	}
	if ok {
		return nil
	}
	if err := unix.Mount("bpf", path, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("ensure bpffs: mount bpf at %s: %w", path, err)
	}
	if ok, err := isBPFFS(path); err != nil || !ok {
		return fmt.Errorf("ensure bpffs at %s: mounted but statfs says otherwise: %w", path, errors.Join(err, ErrNotBPFFS))
	}
	return nil
}

// makePinDir creates dir after checking that its nearest existing
// ancestor is on bpffs, so a missing mount gives ErrNotBPFFS rather than a
// stray directory or a mkdir error from sysfs.
func makePinDir(dir string) error {
	existing := filepath.Clean(dir)
	for {
		if _, err := os.Stat(existing); err == nil {
			break
		}
		parent := filepath.Dir(existing)
		if parent == existing {
			break
		}
		existing = parent
	}
	ok, err := isBPFFS(existing)
	if err != nil {
		return fmt.Errorf("pin dir %s: %w", dir, err)
	}
	if !ok {
		return fmt.Errorf("pin dir %s: %s: %w (see EnsureBPFFS)", dir, existing, ErrNotBPFFS)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pin dir: %w", err)
	}
	return nil
}

func isBPFFS(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, fmt.Errorf("statfs %s: %w", path, err)
	}
	return uint32(st.Type) == unix.BPF_FS_MAGIC, nil
}
