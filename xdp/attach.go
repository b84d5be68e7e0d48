package xdp

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// PortConfig is one port's setup in the program.
type PortConfig struct {
	// Slot is 0 for the inner port, 1 for the outer port of a pair; it
	// selects the port's AF_XDP sockets in the XSKMAP.
	Slot uint32
	// Peer is the ifindex of the other port: the target for ALLOW flows,
	// non-IP frames and fail-open.
	Peer int
	// FailClosed: with no AF_XDP socket bound for the packet's queue, drop
	// (true) or forward to Peer (false).
	FailClosed bool
	// Shadow, when set, puts the port on the tc path: the tc program on
	// the port forwards decided flows itself and sends undecided traffic
	// through this shadow pair (see EnsureShadow), whose far end holds the
	// port's AF_XDP sockets. Unset: the XDP path, with the XDP program and
	// the sockets on the port.
	Shadow *Shadow
}

// Shadow is a port's shadow veth pair on the tc path (ifindexes).
type Shadow struct {
	Near, Far int
}

// Attach attaches the program to ifindex in native XDP mode through a
// bpf_link and writes the port's config and devmap entry. With a PinDir the
// link is pinned there, so the port stays attached when the process exits;
// a link already pinned for ifindex (a previous agent's) is adopted and
// switched to this program instead of failing. Attaching an attached port
// again updates its config.
//
// ifindexes are resolved in the calling thread's network namespace: call
// Attach from inside the namespace that holds the ports.
func (p *Program) Attach(ifindex int, cfg PortConfig) error {
	if err := cfg.check(ifindex); err != nil {
		return fmt.Errorf("attach ifindex %d (peer %d, slot %d): %w", ifindex, cfg.Peer, cfg.Slot, err)
	}
	old, configured, err := p.Port(ifindex)
	if err != nil {
		return fmt.Errorf("attach ifindex %d: %w", ifindex, err)
	}
	if err := p.setPort(ifindex, cfg); err != nil {
		return fmt.Errorf("attach ifindex %d: %w", ifindex, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, h := range cfg.hooks(ifindex) {
		if err := p.attachLink(h); err != nil {
			if !configured {
				_ = p.deletePort(ifindex)
			}
			return fmt.Errorf("attach ifindex %d: %w", ifindex, err)
		}
	}
	// The port was on the other path (pins of an agent run with the other
	// --datapath): take that path's programs off, now that this one's
	// are in place. XDP runs before tcx, so until then the old path
	// carried the traffic.
	var errs []error
	other := hook{ifindex, hookTC}
	if cfg.Shadow != nil {
		other = hook{ifindex, hookXDP}
	}
	_, err = p.detachHook(other)
	errs = append(errs, err)
	if s := old.Shadow; s != nil && (cfg.Shadow == nil || *s != *cfg.Shadow) {
		for _, h := range old.hooks(ifindex)[:3] {
			_, err := p.detachHook(h)
			errs = append(errs, err)
		}
		if cfg.Shadow == nil {
			errs = append(errs, RemoveShadow(ifindex))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("attach ifindex %d: switch path: %w", ifindex, err)
	}
	return nil
}

// detachHook removes the link at h, held or pinned, and reports whether
// there was one. p.mu is held.
func (p *Program) detachHook(h hook) (bool, error) {
	if l, ok := p.links[h]; ok {
		delete(p.links, h)
		return true, detachLink(l)
	}
	pin := p.linkPin(h)
	if pin == "" {
		return false, nil
	}
	l, err := link.LoadPinnedLink(pin, nil)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return true, fmt.Errorf("load pinned link %s: %w", pin, err)
	}
	return true, detachLink(l)
}

func (cfg *PortConfig) check(ifindex int) error {
	if ifindex <= 0 || cfg.Peer <= 0 || cfg.Slot >= MaxSlots {
		return ErrRange
	}
	if s := cfg.Shadow; s != nil && (s.Near <= 0 || s.Far <= 0) {
		return ErrRange
	}
	return nil
}

// hook is one place a program of the pair runs: an interface and which
// program runs there.
type hook struct {
	ifindex int
	kind    hookKind
}

// hookKind is the program of a hook, and so its attach point.
type hookKind uint8

const (
	hookXDP hookKind = iota // deepwall_xdp at XDP of a port (the XDP path)
	hookXSK                 // deepwall_xsk at XDP of a shadow's far end
	hookTC                  // deepwall_tc at tcx ingress
)

// hooks lists where a port's programs run: XDP on the port, or on the tc
// path tcx on the port and both shadow ends and XDP on the far end.
func (cfg *PortConfig) hooks(ifindex int) []hook {
	s := cfg.Shadow
	if s == nil {
		return []hook{{ifindex, hookXDP}}
	}
	return []hook{{s.Far, hookXSK}, {s.Far, hookTC}, {s.Near, hookTC}, {ifindex, hookTC}}
}

// SetPort rewrites an attached port's config (for example its fail policy)
// without touching the link.
func (p *Program) SetPort(ifindex int, cfg PortConfig) error {
	if err := cfg.check(ifindex); err != nil {
		return fmt.Errorf("set port %d: %w", ifindex, err)
	}
	if err := p.setPort(ifindex, cfg); err != nil {
		return fmt.Errorf("set port %d: %w", ifindex, err)
	}
	return nil
}

// Port returns the config of a port, if it has one.
func (p *Program) Port(ifindex int) (PortConfig, bool, error) {
	ports, err := p.ports()
	if err != nil {
		return PortConfig{}, false, fmt.Errorf("port %d: %w", ifindex, err)
	}
	for _, pc := range ports {
		if ifindex > 0 && pc.Ifindex == uint32(ifindex) {
			cfg := PortConfig{Slot: pc.Slot, Peer: int(pc.Peer), FailClosed: pc.FailClosed != 0}
			var sh deepwallShadowConfig
			if err := p.objs.DwShadows.Lookup(pc.Slot, &sh); err != nil {
				return PortConfig{}, false, fmt.Errorf("port %d: shadow: %w", ifindex, err)
			}
			if sh.Near != 0 {
				cfg.Shadow = &Shadow{Near: int(sh.Near), Far: int(sh.Far)}
			}
			return cfg, true, nil
		}
	}
	return PortConfig{}, false, nil
}

// ports reads the port table (one entry per slot, Ifindex 0 = unused).
func (p *Program) ports() ([MaxSlots]deepwallPortConfig, error) {
	var out [MaxSlots]deepwallPortConfig
	for slot := range out {
		if err := p.objs.DwPorts.Lookup(uint32(slot), &out[slot]); err != nil {
			return out, fmt.Errorf("slot %d: %w", slot, err)
		}
	}
	return out, nil
}

// setPort writes the devmap entry first: a port config without a peer
// would make the program count redirect errors. A port that moves to
// another slot leaves its old one.
func (p *Program) setPort(ifindex int, cfg PortConfig) error {
	ports, err := p.ports()
	if err != nil {
		return err
	}
	if cur := ports[cfg.Slot].Ifindex; cur != 0 && cur != uint32(ifindex) {
		return fmt.Errorf("slot %d: %w (ifindex %d)", cfg.Slot, ErrSlotTaken, cur)
	}
	if err := p.objs.DwPeers.Update(uint32(ifindex), uint32(cfg.Peer), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("devmap %d → %d: %w", ifindex, cfg.Peer, err)
	}
	v := deepwallPortConfig{Ifindex: uint32(ifindex), Slot: cfg.Slot, Peer: uint32(cfg.Peer)}
	if cfg.FailClosed {
		v.FailClosed = 1
	}
	var sh deepwallShadowConfig
	if s := cfg.Shadow; s != nil {
		sh = deepwallShadowConfig{Near: uint32(s.Near), Far: uint32(s.Far)}
	}
	// The shadow before the port: the tc programs read a slot's shadow
	// only once its port config names the port.
	if err := p.objs.DwShadows.Update(cfg.Slot, &sh, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("shadow config: %w", err)
	}
	if err := p.objs.DwPorts.Update(cfg.Slot, &v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("port config: %w", err)
	}
	for slot, pc := range ports {
		if uint32(slot) != cfg.Slot && pc.Ifindex == uint32(ifindex) {
			if err := p.objs.DwPorts.Update(uint32(slot), &deepwallPortConfig{}, ebpf.UpdateAny); err != nil {
				return fmt.Errorf("clear old slot %d: %w", slot, err)
			}
			if err := p.objs.DwShadows.Update(uint32(slot), &deepwallShadowConfig{}, ebpf.UpdateAny); err != nil {
				return fmt.Errorf("clear old slot %d: %w", slot, err)
			}
		}
	}
	return nil
}

// deletePort clears the port's slot and devmap entry.
func (p *Program) deletePort(ifindex int) error {
	ports, err := p.ports()
	if err != nil {
		return err
	}
	var errs []error
	for slot, pc := range ports {
		if pc.Ifindex == uint32(ifindex) {
			errs = append(errs, p.objs.DwPorts.Update(uint32(slot), &deepwallPortConfig{}, ebpf.UpdateAny))
			errs = append(errs, p.objs.DwShadows.Update(uint32(slot), &deepwallShadowConfig{}, ebpf.UpdateAny))
		}
	}
	if err := p.objs.DwPeers.Delete(uint32(ifindex)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (p *Program) linkPin(h hook) string {
	if p.opts.PinDir == "" {
		return ""
	}
	prefix := linkPinPrefix
	if h.kind == hookTC {
		prefix = tcxPinPrefix
	}
	return filepath.Join(p.opts.PinDir, prefix+strconv.Itoa(h.ifindex))
}

// attachLink makes sure this program runs at h, with a link this process
// holds: the one it has, a pinned one switched to this program, or a new
// one. p.mu is held.
func (p *Program) attachLink(h hook) error {
	prog := p.objs.DeepwallXdp
	switch h.kind {
	case hookTC:
		prog = p.objs.DeepwallTc
	case hookXSK:
		prog = p.objs.DeepwallXsk
	}
	if l, ok := p.links[h]; ok {
		if err := l.Update(prog); err != nil {
			return fmt.Errorf("update link: %w", err)
		}
		return nil
	}
	pin := p.linkPin(h)
	if pin != "" {
		l, err := adoptLink(pin, h, prog)
		if err != nil {
			return err
		}
		if l != nil {
			p.links[h] = l
			return nil
		}
	}
	var l link.Link
	var err error
	if h.kind == hookTC {
		l, err = link.AttachTCX(link.TCXOptions{Program: prog, Interface: h.ifindex, Attach: ebpf.AttachTCXIngress})
		if errors.Is(err, ebpf.ErrNotSupported) {
			return fmt.Errorf("attach tcx ingress on ifindex %d: %w (tcx needs Linux 6.6 or later; the XDP path does not: --datapath xdp)", h.ifindex, err)
		}
		if err != nil {
			return fmt.Errorf("attach tcx ingress on ifindex %d: %w", h.ifindex, err)
		}
	} else {
		l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: h.ifindex, Flags: link.XDPDriverMode})
		if err != nil {
			return fmt.Errorf("attach xdp (native) on ifindex %d: %w", h.ifindex, err)
		}
	}
	if pin != "" {
		if err := l.Pin(pin); err != nil {
			_ = detachLink(l)
			return fmt.Errorf("pin link: %w", err)
		}
	}
	p.links[h] = l
	return nil
}

// adoptLink loads the link pinned at pin and points it at prog. A pin whose
// link no longer serves h (the interface was deleted, or the index now
// names another one) is stale: it is removed and (nil, nil) returned.
func adoptLink(pin string, h hook, prog *ebpf.Program) (link.Link, error) {
	l, err := link.LoadPinnedLink(pin, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load pinned link %s: %w", pin, err)
	}
	info, err := l.Info()
	live := false
	if err == nil {
		if h.kind == hookTC {
			live = info.TCX() != nil && int(info.TCX().Ifindex) == h.ifindex
		} else {
			live = info.XDP() != nil && int(info.XDP().Ifindex) == h.ifindex
		}
	}
	if live {
		if err := l.Update(prog); err == nil {
			return l, nil
		} else if !errors.Is(err, unix.ENOLINK) {
			l.Close()
			return nil, fmt.Errorf("update pinned link %s: %w", pin, err)
		}
	}
	// Stale: unpin so a fresh link can take the name.
	_ = l.Unpin()
	_ = l.Close()
	return nil, nil
}

// detachLink breaks a link even if another process still holds it, then
// removes its pin and closes it.
func detachLink(l link.Link) error {
	var errs []error
	if err := l.Detach(); err != nil && !errors.Is(err, ebpf.ErrNotSupported) && !errors.Is(err, unix.ENOLINK) {
		errs = append(errs, fmt.Errorf("detach link: %w", err))
	}
	if err := l.Unpin(); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("unpin link: %w", err))
	}
	if err := l.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close link: %w", err))
	}
	return errors.Join(errs...)
}

// Detach removes the program from ifindex (the link and its pin) and the
// port's config and devmap entry. It fails with ErrNotAttached when there is
// nothing to remove. Like Attach it runs in the ports' namespace.
func (p *Program) Detach(ifindex int) error {
	cfg, configured, _ := p.Port(ifindex)
	p.mu.Lock()
	defer p.mu.Unlock()
	found := configured
	var errs []error
	hooks := []hook{{ifindex, hookXDP}, {ifindex, hookTC}}
	if cfg.Shadow != nil {
		hooks = cfg.hooks(ifindex)
	}
	for _, h := range hooks {
		had, err := p.detachHook(h)
		found = found || had
		errs = append(errs, err)
	}
	errs = append(errs, p.deletePort(ifindex))
	if cfg.Shadow != nil {
		errs = append(errs, RemoveShadow(ifindex))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("detach ifindex %d: %w", ifindex, err)
	}
	if !found {
		return fmt.Errorf("detach ifindex %d: %w", ifindex, ErrNotAttached)
	}
	return nil
}

// RegisterXSK puts a bound AF_XDP socket in the XSKMAP for a port slot and
// rx queue: from then on that queue's INSPECT traffic goes to the socket
// instead of the fail policy.
func (p *Program) RegisterXSK(slot uint32, queue int, fd int) error {
	idx, err := xskIndex(slot, queue)
	if err != nil {
		return fmt.Errorf("register xsk: %w", err)
	}
	if fd < 0 {
		return fmt.Errorf("register xsk: fd %d: %w", fd, ErrRange)
	}
	if err := p.objs.DwXsks.Update(idx, uint32(fd), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("register xsk slot %d queue %d: %w", slot, queue, err)
	}
	return nil
}

// UnregisterXSK empties a slot and queue; the port's fail policy applies
// again to that queue. Unregistering an empty entry is not an error.
func (p *Program) UnregisterXSK(slot uint32, queue int) error {
	idx, err := xskIndex(slot, queue)
	if err != nil {
		return fmt.Errorf("unregister xsk: %w", err)
	}
	if err := p.objs.DwXsks.Delete(idx); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("unregister xsk slot %d queue %d: %w", slot, queue, err)
	}
	return nil
}

func xskIndex(slot uint32, queue int) (uint32, error) {
	if slot >= MaxSlots || queue < 0 || queue >= MaxQueues {
		return 0, fmt.Errorf("slot %d queue %d: %w", slot, queue, ErrRange)
	}
	return slot*MaxQueues + uint32(queue), nil
}
