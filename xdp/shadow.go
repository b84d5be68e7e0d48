package xdp

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/vishvananda/netlink"
)

// A shadow pair is the tc path's way into AF_XDP. The XDP program that
// feeds the sockets runs on the pair's far end instead of on the port, so
// the port's own veth peer keeps TSO and checksum offload (XDP on a veth
// strips them from its peer), and the kernel segments GSO packets as they
// enter the shadow. The pair lives in the port's namespace, has no
// addresses, and exists as long as the port is attached: Detach deletes it.

// shadowPrefix starts both ends' names: "dw<port ifindex>n" (near) and
// "dw<port ifindex>f" (far), at most 13 bytes, under IFNAMSIZ.
const shadowPrefix = "dw"

// shadowNames returns the names of the shadow pair of the port with this
// ifindex.
func shadowNames(port int) (near, far string) {
	base := shadowPrefix + strconv.Itoa(port)
	return base + "n", base + "f"
}

// EnsureShadow creates the shadow pair of a port, or adopts the one an
// earlier agent left, with queues rx and tx queues on each end (one AF_XDP
// socket per far-end queue) and the port's MTU; created says which. Call
// it in the port's namespace, before binding sockets to the far end.
func EnsureShadow(port, queues int) (_ Shadow, created bool, _ error) {
	near, far := shadowNames(port)
	pl, err := netlink.LinkByIndex(port)
	if err != nil {
		return Shadow{}, false, fmt.Errorf("shadow of ifindex %d: %w", port, err)
	}
	mtu := pl.Attrs().MTU
	s, err := findShadow(near, far)
	if err != nil {
		return Shadow{}, false, fmt.Errorf("shadow of %s: %w", pl.Attrs().Name, err)
	}
	if s == nil {
		created = true
		attrs := netlink.NewLinkAttrs()
		attrs.Name, attrs.MTU = near, mtu
		attrs.NumTxQueues, attrs.NumRxQueues = queues, queues
		v := &netlink.Veth{LinkAttrs: attrs, PeerName: far,
			PeerNumTxQueues: uint32(queues), PeerNumRxQueues: uint32(queues)}
		if err := netlink.LinkAdd(v); err != nil {
			return Shadow{}, false, fmt.Errorf("shadow of %s: create %s/%s: %w", pl.Attrs().Name, near, far, err)
		}
		if s, err = findShadow(near, far); err == nil && s == nil {
			err = errors.New("created but not found")
		}
		if err != nil {
			_ = RemoveShadow(port)
			return Shadow{}, false, fmt.Errorf("shadow of %s: %w", pl.Attrs().Name, err)
		}
	}
	if err := s.up(mtu); err != nil {
		_ = RemoveShadow(port)
		return Shadow{}, false, fmt.Errorf("shadow of %s: %w", pl.Attrs().Name, err)
	}
	return *s, created, nil
}

// findShadow returns the pair named near/far, nil if near does not exist,
// and an error if something else holds the names.
func findShadow(near, far string) (*Shadow, error) {
	nl, err := netlink.LinkByName(near)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	fl, err := netlink.LinkByName(far)
	if err != nil {
		return nil, fmt.Errorf("%s exists without %s: %w", near, far, err)
	}
	if nl.Type() != "veth" || nl.Attrs().ParentIndex != fl.Attrs().Index {
		return nil, fmt.Errorf("%s and %s exist but are not a veth pair (not deepwall's)", near, far)
	}
	return &Shadow{Near: nl.Attrs().Index, Far: fl.Attrs().Index}, nil
}

// up disables IPv6 on both ends (an address or a router solicitation from
// the shadow itself would be forwarded as the port's traffic), sets the MTU
// and brings them up.
func (s *Shadow) up(mtu int) error {
	for _, ifindex := range []int{s.Near, s.Far} {
		l, err := netlink.LinkByIndex(ifindex)
		if err != nil {
			return err
		}
		name := l.Attrs().Name
		// The thread's namespace decides which interface the path means.
		err = os.WriteFile("/proc/sys/net/ipv6/conf/"+name+"/disable_ipv6", []byte("1"), 0)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("disable ipv6 on %s: %w", name, err)
		}
		if l.Attrs().MTU != mtu {
			if err := netlink.LinkSetMTU(l, mtu); err != nil {
				return fmt.Errorf("mtu of %s: %w", name, err)
			}
		}
		if err := netlink.LinkSetUp(l); err != nil {
			return fmt.Errorf("up %s: %w", name, err)
		}
	}
	return nil
}

// RemoveShadow deletes the shadow pair of the port with this ifindex, if
// there is one (deleting one end deletes both).
func RemoveShadow(port int) error {
	near, _ := shadowNames(port)
	l, err := netlink.LinkByName(near)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove shadow %s: %w", near, err)
	}
	if err := netlink.LinkDel(l); err != nil {
		return fmt.Errorf("remove shadow %s: %w", near, err)
	}
	return nil
}
