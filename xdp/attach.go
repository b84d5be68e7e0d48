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
	if ifindex <= 0 || cfg.Peer <= 0 || cfg.Slot >= MaxSlots {
		return fmt.Errorf("attach ifindex %d (peer %d, slot %d): %w", ifindex, cfg.Peer, cfg.Slot, ErrRange)
	}
	_, configured, err := p.Port(ifindex)
	if err != nil {
		return fmt.Errorf("attach ifindex %d: %w", ifindex, err)
	}
	if err := p.setPort(ifindex, cfg); err != nil {
		return fmt.Errorf("attach ifindex %d: %w", ifindex, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	l, err := p.attachLink(ifindex)
	if err != nil {
		if !configured {
			_ = p.deletePort(ifindex)
		}
		return fmt.Errorf("attach ifindex %d: %w", ifindex, err)
	}
	p.links[ifindex] = l
	return nil
}

// SetPort rewrites an attached port's config (for example its fail policy)
// without touching the link.
func (p *Program) SetPort(ifindex int, cfg PortConfig) error {
	if ifindex <= 0 || cfg.Peer <= 0 || cfg.Slot >= MaxSlots {
		return fmt.Errorf("set port %d: %w", ifindex, ErrRange)
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
			return PortConfig{Slot: pc.Slot, Peer: int(pc.Peer), FailClosed: pc.FailClosed != 0}, true, nil
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
	if err := p.objs.DwPorts.Update(cfg.Slot, &v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("port config: %w", err)
	}
	for slot, pc := range ports {
		if uint32(slot) != cfg.Slot && pc.Ifindex == uint32(ifindex) {
			if err := p.objs.DwPorts.Update(uint32(slot), &deepwallPortConfig{}, ebpf.UpdateAny); err != nil {
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
		}
	}
	if err := p.objs.DwPeers.Delete(uint32(ifindex)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (p *Program) linkPin(ifindex int) string {
	if p.opts.PinDir == "" {
		return ""
	}
	return filepath.Join(p.opts.PinDir, linkPinPrefix+strconv.Itoa(ifindex))
}

// attachLink returns a link of this program on ifindex: the one this
// process holds, a pinned one switched to this program, or a new one.
// p.mu is held.
func (p *Program) attachLink(ifindex int) (link.Link, error) {
	prog := p.objs.DeepwallXdp
	if l, ok := p.links[ifindex]; ok {
		if err := l.Update(prog); err != nil {
			return nil, fmt.Errorf("update link: %w", err)
		}
		return l, nil
	}
	pin := p.linkPin(ifindex)
	if pin != "" {
		l, err := adoptLink(pin, ifindex, prog)
		if err != nil || l != nil {
			return l, err
		}
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPDriverMode})
	if err != nil {
		return nil, fmt.Errorf("attach xdp (native): %w", err)
	}
	if pin != "" {
		if err := l.Pin(pin); err != nil {
			_ = detachLink(l)
			return nil, fmt.Errorf("pin link: %w", err)
		}
	}
	return l, nil
}

// adoptLink loads the link pinned at pin and points it at prog. A pin whose
// link no longer serves ifindex (the interface was deleted, or the index
// now names another one) is stale: it is removed and (nil, nil) returned.
func adoptLink(pin string, ifindex int, prog *ebpf.Program) (link.Link, error) {
	l, err := link.LoadPinnedLink(pin, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load pinned link %s: %w", pin, err)
	}
	info, err := l.Info()
	if err == nil && info.XDP() != nil && int(info.XDP().Ifindex) == ifindex {
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
	p.mu.Lock()
	defer p.mu.Unlock()
	found := false
	var errs []error
	if l, ok := p.links[ifindex]; ok {
		found = true
		errs = append(errs, detachLink(l))
		delete(p.links, ifindex)
	} else if pin := p.linkPin(ifindex); pin != "" {
		l, err := link.LoadPinnedLink(pin, nil)
		switch {
		case err == nil:
			found = true
			errs = append(errs, detachLink(l))
		case !errors.Is(err, os.ErrNotExist):
			errs = append(errs, fmt.Errorf("load pinned link: %w", err))
		}
	}
	if _, ok, _ := p.Port(ifindex); ok {
		found = true
	}
	errs = append(errs, p.deletePort(ifindex))
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
