package wire

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/internal/nsexec"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// sysctls are the per-interface settings copied to the new veth end:
// those that decide how the host answers and forwards through it (Calico
// sets proxy_arp and forwarding on its cali* veths, for instance).
var sysctls = []string{
	"ipv4/conf/%s/forwarding",
	"ipv4/conf/%s/proxy_arp",
	"ipv4/conf/%s/proxy_arp_pvlan",
	"ipv4/conf/%s/rp_filter",
	"ipv4/conf/%s/route_localnet",
	"ipv4/conf/%s/accept_local",
	"ipv4/conf/%s/arp_ignore",
	"ipv4/conf/%s/arp_announce",
	"ipv4/conf/%s/arp_accept",
	"ipv4/conf/%s/send_redirects",
	"ipv4/neigh/%s/proxy_delay",
	"ipv6/conf/%s/disable_ipv6",
	"ipv6/conf/%s/forwarding",
	"ipv6/conf/%s/proxy_ndp",
	"ipv6/conf/%s/accept_ra",
}

// Find records how the host side of the container interface iface (in the
// namespace container) is wired in the host namespace host. Nothing is
// changed.
func Find(host, container netns.NsHandle, iface string) (*Record, error) {
	ch, err := netlink.NewHandleAt(container)
	if err != nil {
		return nil, fmt.Errorf("find %s: netlink in container: %w", iface, err)
	}
	defer ch.Close()
	cl, err := ch.LinkByName(iface)
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", iface, err)
	}
	if cl.Type() != "veth" {
		return nil, fmt.Errorf("find %s (%s): %w", iface, cl.Type(), ErrNotVeth)
	}
	ca := cl.Attrs()
	hostID, err := ch.GetNetNsIdByFd(int(host))
	if err != nil || ca.NetNsID < 0 || hostID != ca.NetNsID {
		return nil, fmt.Errorf("find %s: its peer is in netns id %d, the host namespace is id %d: %w",
			iface, ca.NetNsID, hostID, ErrNotHostPeer)
	}
	hh, err := netlink.NewHandleAt(host)
	if err != nil {
		return nil, fmt.Errorf("find %s: netlink in host: %w", iface, err)
	}
	defer hh.Close()
	pl, err := hh.LinkByIndex(ca.ParentIndex)
	if err != nil {
		return nil, fmt.Errorf("find %s: host peer ifindex %d: %w", iface, ca.ParentIndex, err)
	}
	pa := pl.Attrs()
	if pl.Type() != "veth" || pa.ParentIndex != ca.Index {
		return nil, fmt.Errorf("find %s: host ifindex %d (%s) is not its peer: %w", iface, pa.Index, pa.Name, ErrNotHostPeer)
	}
	if strings.HasPrefix(pa.Name, PlacePrefix) || strings.HasPrefix(pa.Name, OuterPrefix) {
		return nil, fmt.Errorf("find %s: host peer %s is deepwall's own veth", iface, pa.Name)
	}
	rec := &Record{Version: RecordVersion, Stage: StageFound, ContainerIface: iface, ContainerIfindex: ca.Index,
		ContainerMAC: ca.HardwareAddr.String(), Inner: Link{Name: pa.Name, Ifindex: pa.Index},
		InnerMAC: pa.HardwareAddr.String(), MTU: pa.MTU, Queues: 1}
	if n, ok := dataplane.RxQueues(host, pa.Name); ok {
		rec.Queues = n
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(container), &st); err == nil {
		rec.ContainerNSInode = st.Ino
	}
	if err := recordMaster(hh, pl, rec); err != nil {
		return nil, fmt.Errorf("find %s: %w", iface, err)
	}
	if err := recordL3(hh, pl, rec); err != nil {
		return nil, fmt.Errorf("find %s: %w", iface, err)
	}
	if rec.Sysctls, err = readSysctls(host, pa.Name); err != nil {
		return nil, fmt.Errorf("find %s: %w", iface, err)
	}
	return rec, nil
}

func recordMaster(h *netlink.Handle, l netlink.Link, rec *Record) error {
	idx := l.Attrs().MasterIndex
	if idx <= 0 {
		return nil
	}
	ml, err := h.LinkByIndex(idx)
	if err != nil {
		return fmt.Errorf("master ifindex %d: %w", idx, err)
	}
	br, ok := ml.(*netlink.Bridge)
	if !ok {
		return fmt.Errorf("%s is a port of %s (%s); only Linux bridges are supported: %w",
			l.Attrs().Name, ml.Attrs().Name, ml.Type(), ErrMaster)
	}
	pi, err := h.LinkGetProtinfo(l)
	if err != nil {
		return fmt.Errorf("bridge port settings of %s: %w", l.Attrs().Name, err)
	}
	m := &Master{Link: Link{Name: br.Name, Ifindex: br.Index}, Kind: "bridge", Protinfo: PortFlags{
		Hairpin: pi.Hairpin, Guard: pi.Guard, FastLeave: pi.FastLeave, RootBlock: pi.RootBlock,
		Learning: pi.Learning, Flood: pi.Flood, ProxyArp: pi.ProxyArp, ProxyArpWiFi: pi.ProxyArpWiFi,
		Isolated: pi.Isolated, NeighSuppress: pi.NeighSuppress}}
	if br.VlanFiltering != nil && *br.VlanFiltering {
		all, err := h.BridgeVlanList()
		if err != nil {
			return fmt.Errorf("bridge vlans: %w", err)
		}
		m.VLANsSet = true
		vl := all[int32(l.Attrs().Index)]
		if len(vl) > MaxVLANs {
			return fmt.Errorf("%d bridge vlans: %w", len(vl), ErrLimit)
		}
		for _, v := range vl {
			m.VLANs = append(m.VLANs, VLAN{VID: v.Vid, PVID: v.PortVID(), Untagged: v.EngressUntag()})
		}
	}
	rec.Master = m
	return nil
}

func recordL3(h *netlink.Handle, l netlink.Link, rec *Record) error {
	idx := l.Attrs().Index
	addrs, err := h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("addresses: %w", err)
	}
	for _, a := range addrs {
		p, ok := netPrefix(a.IPNet)
		if !ok || p.Addr().Is6() && p.Addr().IsLinkLocalUnicast() {
			continue // the kernel makes link-local addresses itself
		}
		ra := Addr{Prefix: p.String(), Flags: a.Flags, Scope: a.Scope}
		if pp, ok := netPrefix(a.Peer); ok {
			ra.Peer = pp.String()
		}
		rec.Addrs = append(rec.Addrs, ra)
	}
	if len(rec.Addrs) > MaxAddrs {
		return fmt.Errorf("%d addresses: %w", len(rec.Addrs), ErrLimit)
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: idx, Table: unix.RT_TABLE_UNSPEC},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("routes: %w", err)
	}
	for _, r := range routes {
		// Routes the kernel derives from addresses and links follow them;
		// the local table is the kernel's.
		if r.Protocol == unix.RTPROT_KERNEL || r.Table == unix.RT_TABLE_LOCAL || len(r.MultiPath) > 0 {
			continue
		}
		rr := Route{Family: r.Family, Gw: ipString(r.Gw), Src: ipString(r.Src), Table: r.Table, Priority: r.Priority,
			Scope: int(r.Scope), Protocol: int(r.Protocol), Type: r.Type, Tos: r.Tos, Flags: r.Flags, MTU: r.MTU, AdvMSS: r.AdvMSS}
		if p, ok := netPrefix(r.Dst); ok {
			rr.Dst = p.String()
		}
		rec.Routes = append(rec.Routes, rr)
	}
	if len(rec.Routes) > MaxRoutes {
		return fmt.Errorf("%d routes: %w", len(rec.Routes), ErrLimit)
	}
	neigh, err := h.NeighList(idx, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("neighbours: %w", err)
	}
	const dynamic = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY | netlink.NUD_PROBE
	for _, n := range neigh {
		// Permanent entries are configuration (Calico writes one per
		// workload); learned ones are copied so that the host need not
		// resolve the container again; NOARP ones are the kernel's.
		if n.State&(netlink.NUD_PERMANENT|dynamic) == 0 || n.HardwareAddr == nil || n.Flags&netlink.NTF_PROXY != 0 {
			continue
		}
		rec.Neigh = append(rec.Neigh, Neigh{Family: n.Family, IP: ipString(n.IP), MAC: n.HardwareAddr.String(),
			State: n.State, Flags: n.Flags})
	}
	if len(rec.Neigh) > MaxNeigh {
		return fmt.Errorf("%d neighbour entries: %w", len(rec.Neigh), ErrLimit)
	}
	return nil
}

// Plug creates the new veth pair beside the old veth: the place end gets
// the old veth's MAC, MTU, queues and sysctls and joins its bridge with
// the same port settings; both ends are up. Nothing the container's
// traffic uses changes yet.
func Plug(host netns.NsHandle, rec *Record) (err error) {
	if rec.Stage != StageFound {
		return fmt.Errorf("plug %s: at stage %s: %w", rec.Inner.Name, rec.Stage, ErrStage)
	}
	h, err := netlink.NewHandleAt(host)
	if err != nil {
		return fmt.Errorf("plug %s: netlink: %w", rec.Inner.Name, err)
	}
	defer h.Close()
	inner, err := innerLink(h, rec)
	if err != nil {
		return fmt.Errorf("plug: %w", err)
	}
	mac, err := net.ParseMAC(rec.InnerMAC)
	if err != nil {
		return fmt.Errorf("plug %s: mac: %w", rec.Inner.Name, err)
	}
	outerName, placeName := newNames(rec.Inner.Ifindex)
	ia := inner.Attrs()
	// As many queues in use as the old veth: the dataplane needs equal
	// counts on both ports of a pair.
	q := max(rec.Queues, 1)
	v := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: outerName, MTU: rec.MTU, TxQLen: ia.TxQLen, NumRxQueues: q, NumTxQueues: q},
		PeerName:  placeName, PeerHardwareAddr: mac, PeerMTU: uint32(rec.MTU), PeerTxQLen: ia.TxQLen,
		PeerNumRxQueues: uint32(q), PeerNumTxQueues: uint32(q),
	}
	if err := h.LinkAdd(v); err != nil {
		return fmt.Errorf("plug %s: add veth %s/%s: %w", rec.Inner.Name, outerName, placeName, err)
	}
	defer func() {
		if err != nil {
			if l, lerr := h.LinkByName(outerName); lerr == nil {
				_ = h.LinkDel(l)
			}
		}
	}()
	outer, err := h.LinkByName(outerName)
	if err != nil {
		return fmt.Errorf("plug %s: %w", rec.Inner.Name, err)
	}
	place, err := h.LinkByName(placeName)
	if err != nil {
		return fmt.Errorf("plug %s: %w", rec.Inner.Name, err)
	}
	if err := writeSysctls(host, placeName, rec.Sysctls); err != nil {
		return fmt.Errorf("plug %s: %w", rec.Inner.Name, err)
	}
	if rec.Master != nil {
		if err := joinBridge(h, place, rec.Master); err != nil {
			return fmt.Errorf("plug %s: %s: %w", rec.Inner.Name, placeName, err)
		}
	}
	for _, l := range []netlink.Link{outer, place} {
		if err := h.LinkSetUp(l); err != nil {
			return fmt.Errorf("plug %s: up %s: %w", rec.Inner.Name, l.Attrs().Name, err)
		}
	}
	if rec.Joined {
		j, err := addJoint(h, rec.Inner.Ifindex, rec.MTU, outer)
		if err != nil {
			return fmt.Errorf("plug %s: %w", rec.Inner.Name, err)
		}
		rec.Joint = j
	}
	rec.Outer = Link{Name: outerName, Ifindex: outer.Attrs().Index}
	rec.Place = Link{Name: placeName, Ifindex: place.Attrs().Index}
	rec.Stage = StagePlugged
	return nil
}

// addJoint creates the bridge of a joined record with outer as its first
// port: no STP (the kernel's default: ports forward at once), no
// address; the old veth joins it when cut.
func addJoint(h *netlink.Handle, ifindex, mtu int, outer netlink.Link) (*Link, error) {
	name := jointName(ifindex)
	if l, err := h.LinkByName(name); err == nil { // an unfinished earlier plug
		_ = h.LinkDel(l)
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu}}
	if err := h.LinkAdd(br); err != nil {
		return nil, fmt.Errorf("add bridge %s: %w", name, err)
	}
	l, err := h.LinkByName(name)
	if err == nil {
		err = h.LinkSetMasterByIndex(outer, l.Attrs().Index)
	}
	if err == nil {
		err = h.LinkSetUp(l)
	}
	if err != nil {
		if l != nil {
			_ = h.LinkDel(l)
		}
		return nil, fmt.Errorf("bridge %s: %w", name, err)
	}
	return &Link{Name: name, Ifindex: l.Attrs().Index}, nil
}

// joinBridge makes l a port of the recorded bridge with the recorded
// port settings and VLANs.
func joinBridge(h *netlink.Handle, l netlink.Link, m *Master) error {
	if err := masterLink(h, m); err != nil {
		return err
	}
	if err := h.LinkSetMasterByIndex(l, m.Ifindex); err != nil {
		return fmt.Errorf("join bridge %s: %w", m.Name, err)
	}
	p := m.Protinfo
	for _, s := range []struct {
		name string
		set  func(netlink.Link, bool) error
		v    bool
	}{
		{"hairpin", h.LinkSetHairpin, p.Hairpin}, {"guard", h.LinkSetGuard, p.Guard},
		{"fastleave", h.LinkSetFastLeave, p.FastLeave}, {"root_block", h.LinkSetRootBlock, p.RootBlock},
		{"learning", h.LinkSetLearning, p.Learning}, {"flood", h.LinkSetFlood, p.Flood},
		{"proxy_arp", h.LinkSetBrProxyArp, p.ProxyArp}, {"proxy_arp_wifi", h.LinkSetBrProxyArpWiFi, p.ProxyArpWiFi},
		{"isolated", h.LinkSetIsolated, p.Isolated}, {"neigh_suppress", h.LinkSetBrNeighSuppress, p.NeighSuppress},
	} {
		if err := s.set(l, s.v); err != nil {
			return fmt.Errorf("bridge port %s=%v: %w", s.name, s.v, err)
		}
	}
	if !m.VLANsSet {
		return nil
	}
	all, err := h.BridgeVlanList()
	if err != nil {
		return fmt.Errorf("bridge vlans: %w", err)
	}
	for _, v := range all[int32(l.Attrs().Index)] {
		if !slices.ContainsFunc(m.VLANs, func(w VLAN) bool { return w.VID == v.Vid }) {
			if err := h.BridgeVlanDel(l, v.Vid, false, false, false, true); err != nil {
				return fmt.Errorf("bridge vlan %d: %w", v.Vid, err)
			}
		}
	}
	for _, v := range m.VLANs {
		if err := h.BridgeVlanAdd(l, v.VID, v.PVID, v.Untagged, false, true); err != nil {
			return fmt.Errorf("bridge vlan %d: %w", v.VID, err)
		}
	}
	return nil
}

// Cut moves the old veth's role to the new place end: its addresses,
// neighbour entries and routes (replaced in place, so no packet meets a
// missing route), and its bridge membership. Call it once deepwall
// forwards between the old veth (inner port) and the outer end. On an
// error what moved is moved back: the old veth keeps its place.
func Cut(host netns.NsHandle, rec *Record) error {
	if rec.Stage != StagePlugged {
		return fmt.Errorf("cut %s: at stage %s: %w", rec.Inner.Name, rec.Stage, ErrStage)
	}
	h, err := netlink.NewHandleAt(host)
	if err != nil {
		return fmt.Errorf("cut %s: netlink: %w", rec.Inner.Name, err)
	}
	defer h.Close()
	inner, err := innerLink(h, rec)
	if err != nil {
		return fmt.Errorf("cut: %w", err)
	}
	place, err := placeLink(h, rec)
	if err != nil {
		return fmt.Errorf("cut %s: %w", rec.Inner.Name, err)
	}
	if rec.Joint != nil {
		if err := jointLink(h, rec); err != nil {
			return fmt.Errorf("cut %s: %w", rec.Inner.Name, err)
		}
	}
	if moved, err := moveL3(h, rec, inner, place); err != nil {
		return fmt.Errorf("cut %s: %w", rec.Inner.Name, putBack(h, moved, place, inner, err))
	}
	switch {
	case rec.Joint != nil:
		// One call moves it from its bridge (if any) to the joint.
		if err := h.LinkSetMasterByIndex(inner, rec.Joint.Ifindex); err != nil {
			err = fmt.Errorf("join %s: %w", rec.Joint.Name, err)
			return fmt.Errorf("cut %s: %w", rec.Inner.Name, putBack(h, rec, place, inner, err))
		}
	case rec.Master != nil:
		if err := h.LinkSetNoMaster(inner); err != nil {
			err = fmt.Errorf("leave bridge %s: %w", rec.Master.Name, err)
			return fmt.Errorf("cut %s: %w", rec.Inner.Name, putBack(h, rec, place, inner, err))
		}
	}
	rec.Stage = StageCut
	return nil
}

// Uncut puts the old veth back in its place: on its bridge with its port
// settings, with its addresses, neighbour entries and routes. Traffic then
// no longer needs deepwall; the caller detaches it and calls Unplug.
// On an error the old veth leaves its bridge again and what moved is
// moved back: deepwall stays inline, and Uncut can be tried again.
func Uncut(host netns.NsHandle, rec *Record) error {
	if rec.Stage != StageCut {
		return nil
	}
	h, err := netlink.NewHandleAt(host)
	if err != nil {
		return fmt.Errorf("uncut %s: netlink: %w", rec.Inner.Name, err)
	}
	defer h.Close()
	inner, err := innerLink(h, rec)
	if err != nil {
		return fmt.Errorf("uncut: %w", err)
	}
	place, err := placeLink(h, rec)
	if err != nil {
		return fmt.Errorf("uncut %s: %w", rec.Inner.Name, err)
	}
	if rec.Joint != nil {
		if err := jointLink(h, rec); err != nil {
			return fmt.Errorf("uncut %s: %w", rec.Inner.Name, err)
		}
	}
	if rec.Master != nil {
		if err := masterLink(h, rec.Master); err != nil {
			return fmt.Errorf("uncut %s: %w", rec.Inner.Name, err)
		}
	}
	// recut puts the old veth back where Cut left it.
	recut := func(err error) error {
		var uerr error
		switch {
		case rec.Joint != nil:
			uerr = h.LinkSetMasterByIndex(inner, rec.Joint.Ifindex)
		case rec.Master != nil:
			uerr = h.LinkSetNoMaster(inner)
		}
		if uerr != nil {
			return fmt.Errorf("%w (putting it back: %v)", err, uerr)
		}
		return err
	}
	switch {
	case rec.Master != nil:
		if err := joinBridge(h, inner, rec.Master); err != nil {
			return fmt.Errorf("uncut %s: %w", rec.Inner.Name, recut(err))
		}
	case rec.Joint != nil:
		if err := h.LinkSetNoMaster(inner); err != nil {
			return fmt.Errorf("uncut %s: leave %s: %w", rec.Inner.Name, rec.Joint.Name, err)
		}
	}
	if moved, err := moveL3(h, rec, place, inner); err != nil {
		return fmt.Errorf("uncut %s: %w", rec.Inner.Name, recut(putBack(h, moved, inner, place, err)))
	}
	rec.Stage = StagePlugged
	return nil
}

// putBack moves back what a failed moveL3 (or a later step) had moved
// from one link to the other, and returns err with what failed of that.
func putBack(h *netlink.Handle, moved *Record, from, to netlink.Link, err error) error {
	if _, uerr := moveL3(h, moved, from, to); uerr != nil {
		return fmt.Errorf("%w (putting it back: %v)", err, uerr)
	}
	return err
}

// moveL3 moves the recorded addresses, neighbour entries and routes from
// one link to the other: each is added to the target first, routes are
// replaced in place, then what the source held is removed. moved is what
// it changed, for putBack when it fails halfway.
func moveL3(h *netlink.Handle, rec *Record, from, to netlink.Link) (moved *Record, err error) {
	moved = &Record{}
	for _, a := range rec.Addrs {
		na, err := a.netlink()
		if err != nil {
			return moved, err
		}
		if err := h.AddrReplace(to, na); err != nil {
			return moved, fmt.Errorf("address %s on %s: %w", a.Prefix, to.Attrs().Name, err)
		}
		moved.Addrs = append(moved.Addrs, a)
	}
	for _, n := range rec.Neigh {
		state := n.State
		if !n.permanent() {
			state = netlink.NUD_STALE // learned: let the kernel confirm it
		}
		nn, err := n.netlink(to.Attrs().Index, state)
		if err != nil {
			return moved, err
		}
		if err := h.NeighSet(nn); err != nil {
			return moved, fmt.Errorf("neighbour %s on %s: %w", n.IP, to.Attrs().Name, err)
		}
		moved.Neigh = append(moved.Neigh, n)
	}
	for _, r := range rec.Routes {
		nr, err := r.netlink(to.Attrs().Index)
		if err != nil {
			return moved, err
		}
		if err := h.RouteReplace(nr); err != nil {
			return moved, fmt.Errorf("route %s on %s: %w", routeName(r), to.Attrs().Name, err)
		}
		moved.Routes = append(moved.Routes, r)
	}
	for _, n := range rec.Neigh {
		nn, err := n.netlink(from.Attrs().Index, n.State)
		if err != nil {
			return moved, err
		}
		if err := h.NeighDel(nn); err != nil && !errors.Is(err, unix.ENOENT) {
			return moved, fmt.Errorf("neighbour %s on %s: %w", n.IP, from.Attrs().Name, err)
		}
	}
	for _, a := range rec.Addrs {
		na, err := a.netlink()
		if err != nil {
			return moved, err
		}
		if err := h.AddrDel(from, na); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return moved, fmt.Errorf("address %s on %s: %w", a.Prefix, from.Attrs().Name, err)
		}
	}
	return moved, nil
}

func routeName(r Route) string {
	if r.Dst == "" {
		return "default"
	}
	return r.Dst
}

// Unplug removes the new veth pair (both ends; routes and neighbour
// entries on it go with it). It is also the whole clean-up when the
// container's namespace is gone, taking the old veth with it.
func Unplug(host netns.NsHandle, rec *Record) error {
	if rec.Stage == StageCut && !Gone(host, rec) {
		return fmt.Errorf("unplug %s: still cut in (uncut first): %w", rec.Inner.Name, ErrStage)
	}
	h, err := netlink.NewHandleAt(host)
	if err != nil {
		return fmt.Errorf("unplug %s: netlink: %w", rec.Inner.Name, err)
	}
	defer h.Close()
	outerName, _ := newNames(rec.Inner.Ifindex)
	l, err := h.LinkByName(outerName)
	if err == nil {
		if err := h.LinkDel(l); err != nil {
			return fmt.Errorf("unplug %s: delete %s: %w", rec.Inner.Name, outerName, err)
		}
	} else if !isNotFound(err) {
		return fmt.Errorf("unplug %s: %w", rec.Inner.Name, err)
	}
	if l, err := h.LinkByName(jointName(rec.Inner.Ifindex)); err == nil {
		if err := h.LinkDel(l); err != nil {
			return fmt.Errorf("unplug %s: delete %s: %w", rec.Inner.Name, l.Attrs().Name, err)
		}
	} else if !isNotFound(err) {
		return fmt.Errorf("unplug %s: %w", rec.Inner.Name, err)
	}
	rec.Stage = StageFound
	rec.Outer, rec.Place, rec.Joint = Link{}, Link{}, nil
	return nil
}

// Gone reports whether the old veth has disappeared (the container's
// namespace was destroyed, which takes both ends of its veth).
func Gone(host netns.NsHandle, rec *Record) bool {
	h, err := netlink.NewHandleAt(host)
	if err != nil {
		return false
	}
	defer h.Close()
	_, err = innerLink(h, rec)
	return errors.Is(err, ErrGone)
}

// innerLink returns the old veth, checking it is still the recorded one.
func innerLink(h *netlink.Handle, rec *Record) (netlink.Link, error) {
	l, err := h.LinkByIndex(rec.Inner.Ifindex)
	if err != nil {
		if isNotFound(err) {
			return nil, fmt.Errorf("%s (ifindex %d): %w", rec.Inner.Name, rec.Inner.Ifindex, ErrGone)
		}
		return nil, fmt.Errorf("%s: %w", rec.Inner.Name, err)
	}
	if l.Attrs().Name != rec.Inner.Name || l.Type() != "veth" {
		return nil, fmt.Errorf("%s (ifindex %d) is now %s (%s): %w", rec.Inner.Name, rec.Inner.Ifindex,
			l.Attrs().Name, l.Type(), ErrGone)
	}
	return l, nil
}

// placeLink returns the new place end, checking it is still the
// recorded one (a stale record's ifindex may name another link now).
func placeLink(h *netlink.Handle, rec *Record) (netlink.Link, error) {
	l, err := h.LinkByIndex(rec.Place.Ifindex)
	if err != nil {
		return nil, fmt.Errorf("%s (ifindex %d): %w", rec.Place.Name, rec.Place.Ifindex, err)
	}
	if _, place := newNames(rec.Inner.Ifindex); l.Attrs().Name != place || l.Attrs().Name != rec.Place.Name || l.Type() != "veth" {
		return nil, fmt.Errorf("ifindex %d is %s (%s), not the recorded %s: %w", rec.Place.Ifindex, l.Attrs().Name, l.Type(),
			rec.Place.Name, ErrInvalid)
	}
	return l, nil
}

// jointLink checks that the record's joint bridge is still the one Plug made.
func jointLink(h *netlink.Handle, rec *Record) error {
	l, err := h.LinkByIndex(rec.Joint.Ifindex)
	if err != nil {
		return fmt.Errorf("%s (ifindex %d): %w", rec.Joint.Name, rec.Joint.Ifindex, err)
	}
	if l.Attrs().Name != jointName(rec.Inner.Ifindex) || l.Attrs().Name != rec.Joint.Name || l.Type() != "bridge" {
		return fmt.Errorf("ifindex %d is %s (%s), not the recorded %s: %w", rec.Joint.Ifindex, l.Attrs().Name, l.Type(),
			rec.Joint.Name, ErrInvalid)
	}
	return nil
}

// masterLink checks that the recorded bridge is still there under its
// ifindex: a re-created docker0 has a new one, and the old one may name
// another link by now.
func masterLink(h *netlink.Handle, m *Master) error {
	l, err := h.LinkByIndex(m.Ifindex)
	if err != nil {
		return fmt.Errorf("bridge %s (ifindex %d): %w", m.Name, m.Ifindex, err)
	}
	if l.Attrs().Name != m.Name || l.Type() != "bridge" {
		return fmt.Errorf("bridge %s: ifindex %d is %s (%s) now: %w", m.Name, m.Ifindex, l.Attrs().Name, l.Type(), ErrInvalid)
	}
	return nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// Addresses returns the addresses of the container interface (read in
// the container's namespace), without IPv6 link-local ones: what rules
// naming the container resolve to.
func Addresses(container netns.NsHandle, iface string) ([]netip.Addr, error) {
	h, err := netlink.NewHandleAt(container)
	if err != nil {
		return nil, fmt.Errorf("container addresses: %w", err)
	}
	defer h.Close()
	l, err := h.LinkByName(iface)
	if err != nil {
		return nil, fmt.Errorf("container addresses: %w", err)
	}
	list, err := h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("container addresses: %w", err)
	}
	var out []netip.Addr
	for _, a := range list {
		p, ok := netPrefix(a.IPNet)
		if !ok || p.Addr().IsLinkLocalUnicast() {
			continue
		}
		out = append(out, p.Addr())
		if len(out) >= MaxAddrs {
			break
		}
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out, nil
}

// readSysctls reads the recorded settings of iface in ns.
func readSysctls(ns netns.NsHandle, iface string) (map[string]string, error) {
	out := map[string]string{}
	err := inNS(ns, func() error {
		for _, k := range sysctls {
			b, err := os.ReadFile(sysctlPath(k, iface))
			if errors.Is(err, os.ErrNotExist) {
				continue // e.g. IPv6 disabled on the kernel command line
			}
			if err != nil {
				return fmt.Errorf("sysctl %s: %w", fmt.Sprintf(k, iface), err)
			}
			out[k] = strings.TrimSpace(string(b))
		}
		return nil
	})
	return out, err
}

// writeSysctls sets the recorded settings on iface in ns.
func writeSysctls(ns netns.NsHandle, iface string, vals map[string]string) error {
	return inNS(ns, func() error {
		for _, k := range sysctls { // a fixed order: disable_ipv6 before the other ipv6 keys is irrelevant, but stable
			v, ok := vals[k]
			if !ok {
				continue
			}
			p := sysctlPath(k, iface)
			cur, err := os.ReadFile(p)
			if err == nil && strings.TrimSpace(string(cur)) == v {
				continue
			}
			if err := os.WriteFile(p, []byte(v), 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("sysctl %s=%s: %w", fmt.Sprintf(k, iface), v, err)
			}
		}
		return nil
	})
}

func sysctlPath(key, iface string) string {
	return filepath.Join("/proc/sys/net", fmt.Sprintf(key, iface))
}

// inNS runs fn on a thread inside ns (/proc/sys/net follows the namespace
// of the thread that opens it).
func inNS(ns netns.NsHandle, fn func() error) error { return nsexec.Do(ns, fn) }
