// Package wire owns the netlink surgery that puts deepwall in front of a
// running container and takes it out again: it finds the host side of the
// container's veth, records how that veth is wired (bridge port and its
// settings, addresses, routes, neighbour entries, sysctls), adds a new
// veth pair whose host end takes the old veth's place, and puts everything
// back exactly as recorded. The container keeps its interface, MAC and IP.
//
// The swap runs in two stages around the XDP attach so that the link-down
// window is nil: Plug builds the new pair beside the old veth (on the same
// bridge, with the same addresses ready), the caller attaches deepwall to
// the old veth (inner port) and the new pair's outer end, then Cut moves
// the old veth's role to the new end (it leaves the bridge; routes are
// replaced in place). Uncut and Unplug reverse the two stages. The Record
// is plain JSON so a restarted agent can finish or undo what an earlier
// one began.
package wire

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Stage says how far a swap has gone.
type Stage string

// Stages of a swap, in order.
const (
	// StageFound: the wiring is recorded, nothing is changed yet.
	StageFound Stage = "found"
	// StagePlugged: the new veth pair exists beside the old veth.
	StagePlugged Stage = "plugged"
	// StageCut: the new veth holds the old one's place; the old veth is
	// deepwall's inner port.
	StageCut Stage = "cut"
)

// RecordVersion is the format version of Record.
const RecordVersion = 1

// Limits on what a recording takes from the host (all hostile input in
// principle: another program may have put anything on the veth).
const (
	MaxRoutes = 4096
	MaxNeigh  = 4096
	MaxAddrs  = 256
	MaxVLANs  = 4096
	// MaxQueues bounds a recorded queue count (the kernel's veth limit).
	MaxQueues = 4096
	// maxSysctlValue bounds a recorded sysctl value (all are integers).
	maxSysctlValue = 24
	// minMTU and maxMTU are a veth's MTU range (ETH_MIN_MTU, ETH_MAX_MTU).
	minMTU, maxMTU = 68, 65535
)

// Name prefixes of the new veth pair: dwo<N> is deepwall's outer port,
// dwp<N> takes the old veth's place (N is the old veth's ifindex, so the
// names are unique in the host namespace and found again after a restart).
const (
	OuterPrefix = "dwo"
	PlacePrefix = "dwp"
	// JointPrefix names the bridge dwb<N> of a joined record (Joined).
	JointPrefix = "dwb"
)

// Errors.
var (
	// ErrNotVeth: the container interface is not a veth.
	ErrNotVeth = errors.New("not a veth")
	// ErrNotHostPeer: the veth's peer is not in the host namespace given.
	ErrNotHostPeer = errors.New("veth peer is not in the host namespace")
	// ErrMaster: the old veth's master is not a Linux bridge.
	ErrMaster = errors.New("unsupported master device")
	// ErrGone: the old veth disappeared (its container's namespace is gone).
	ErrGone = errors.New("container veth is gone")
	// ErrStage: a step was asked at the wrong stage.
	ErrStage = errors.New("wrong stage")
	// ErrLimit: the veth carries more state than the recording takes.
	ErrLimit = errors.New("too much state on the veth")
	// ErrInvalid: a record (read back from a file) is not one Find and
	// Plug could have written; nothing acts on it.
	ErrInvalid = errors.New("invalid wiring record")
)

// Link names one interface of the host namespace.
type Link struct {
	Name    string `json:"name"`
	Ifindex int    `json:"ifindex"`
}

// Record is everything needed to put the wiring back: the old veth and
// how it was placed, and the new pair.
type Record struct {
	Version int   `json:"version"`
	Stage   Stage `json:"stage"`
	// Container side.
	ContainerIface   string `json:"container_iface"`
	ContainerIfindex int    `json:"container_ifindex"`
	ContainerMAC     string `json:"container_mac"`
	ContainerNSInode uint64 `json:"container_netns_inode"`
	// Inner is the old host-side veth: deepwall's inner port once cut.
	Inner    Link   `json:"inner"`
	InnerMAC string `json:"inner_mac"`
	MTU      int    `json:"mtu"`
	Queues   int    `json:"queues"`
	// Outer is deepwall's outer port; Place the new veth end that takes
	// the old one's place.
	Outer Link `json:"outer"`
	Place Link `json:"place"`
	// Joined asks Plug for a bridge (Joint) with the outer port and,
	// once cut, the old veth: the kernel then carries frames between the
	// two ports, for a dataplane that inspects in the kernel's forwarding
	// path (NFQUEUE) instead of redirecting with XDP.
	Joined bool  `json:"joined,omitempty"`
	Joint  *Link `json:"joint,omitempty"`
	// Master is the bridge the old veth was a port of (nil: routed).
	Master *Master `json:"master,omitempty"`
	// Addrs, Routes and Neigh are the old veth's addresses, the routes
	// through it and its neighbour entries (those deepwall moves).
	Addrs  []Addr  `json:"addrs,omitempty"`
	Routes []Route `json:"routes,omitempty"`
	Neigh  []Neigh `json:"neigh,omitempty"`
	// Sysctls are the old veth's per-interface settings that decide how
	// the host answers through it (proxy_arp, forwarding...), copied to
	// the new end. Keys are paths below /proc/sys/net with %s for the
	// interface name.
	Sysctls map[string]string `json:"sysctls,omitempty"`
}

// Master is a bridge and the old veth's port settings on it.
type Master struct {
	Link
	Kind     string    `json:"kind"`
	Protinfo PortFlags `json:"protinfo"`
	VLANs    []VLAN    `json:"vlans,omitempty"`
	VLANsSet bool      `json:"vlans_recorded"` // the bridge filters VLANs: restore them exactly
}

// PortFlags are a bridge port's IFLA_PROTINFO flags.
type PortFlags struct {
	Hairpin       bool `json:"hairpin"`
	Guard         bool `json:"guard"`
	FastLeave     bool `json:"fast_leave"`
	RootBlock     bool `json:"root_block"`
	Learning      bool `json:"learning"`
	Flood         bool `json:"flood"`
	ProxyArp      bool `json:"proxy_arp"`
	ProxyArpWiFi  bool `json:"proxy_arp_wifi"`
	Isolated      bool `json:"isolated"`
	NeighSuppress bool `json:"neigh_suppress"`
}

// VLAN is one bridge VLAN of a port.
type VLAN struct {
	VID      uint16 `json:"vid"`
	PVID     bool   `json:"pvid,omitempty"`
	Untagged bool   `json:"untagged,omitempty"`
}

// Addr is an address on the old veth.
type Addr struct {
	Prefix string `json:"prefix"`
	Peer   string `json:"peer,omitempty"`
	Flags  int    `json:"flags,omitempty"`
	Scope  int    `json:"scope,omitempty"`
}

// Route is a route through the old veth.
type Route struct {
	Family   int    `json:"family"`
	Dst      string `json:"dst"` // prefix; "" = default
	Gw       string `json:"gw,omitempty"`
	Src      string `json:"src,omitempty"`
	Table    int    `json:"table"`
	Priority int    `json:"priority,omitempty"`
	Scope    int    `json:"scope"`
	Protocol int    `json:"protocol"`
	Type     int    `json:"type"`
	Tos      int    `json:"tos,omitempty"`
	Flags    int    `json:"flags,omitempty"`
	MTU      int    `json:"mtu,omitempty"`
	AdvMSS   int    `json:"advmss,omitempty"`
}

// Neigh is a neighbour entry on the old veth.
type Neigh struct {
	Family int    `json:"family"`
	IP     string `json:"ip"`
	MAC    string `json:"mac,omitempty"`
	State  int    `json:"state"`
	Flags  int    `json:"flags,omitempty"`
}

// permanent reports whether the entry was configured rather than learned.
func (n Neigh) permanent() bool { return n.State&(netlink.NUD_PERMANENT|netlink.NUD_NOARP) != 0 }

func (a Addr) netlink() (*netlink.Addr, error) {
	p, err := netip.ParsePrefix(a.Prefix)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", a.Prefix, err)
	}
	out := &netlink.Addr{IPNet: prefixNet(p), Flags: a.Flags, Scope: a.Scope}
	if a.Peer != "" {
		pp, err := netip.ParsePrefix(a.Peer)
		if err != nil {
			return nil, fmt.Errorf("peer address %q: %w", a.Peer, err)
		}
		out.Peer = prefixNet(pp)
	}
	return out, nil
}

func (r Route) netlink(link int) (*netlink.Route, error) {
	out := &netlink.Route{LinkIndex: link, Family: r.Family, Table: r.Table, Priority: r.Priority,
		Scope: netlink.Scope(r.Scope), Protocol: netlink.RouteProtocol(r.Protocol), Type: r.Type, Tos: r.Tos,
		Flags: r.Flags, MTU: r.MTU, AdvMSS: r.AdvMSS}
	if r.Dst != "" {
		p, err := netip.ParsePrefix(r.Dst)
		if err != nil {
			return nil, fmt.Errorf("route %q: %w", r.Dst, err)
		}
		out.Dst = prefixNet(p)
	}
	for _, f := range []struct {
		s    string
		into *net.IP
	}{{r.Gw, &out.Gw}, {r.Src, &out.Src}} {
		if f.s == "" {
			continue
		}
		a, err := netip.ParseAddr(f.s)
		if err != nil {
			return nil, fmt.Errorf("route %s: address %q: %w", r.Dst, f.s, err)
		}
		*f.into = a.AsSlice()
	}
	return out, nil
}

func (n Neigh) netlink(link int, state int) (*netlink.Neigh, error) {
	ip, err := netip.ParseAddr(n.IP)
	if err != nil {
		return nil, fmt.Errorf("neighbour %q: %w", n.IP, err)
	}
	out := &netlink.Neigh{LinkIndex: link, Family: n.Family, IP: ip.AsSlice(), State: state, Flags: n.Flags}
	if n.MAC != "" {
		if out.HardwareAddr, err = net.ParseMAC(n.MAC); err != nil {
			return nil, fmt.Errorf("neighbour %s: %w", n.IP, err)
		}
	}
	return out, nil
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func netPrefix(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

func ipString(ip net.IP) string {
	if ip == nil {
		return ""
	}
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return ""
	}
	return a.Unmap().String()
}

// newNames returns the new pair's names for an old veth's ifindex.
// jointName names the bridge of a joined record.
func jointName(ifindex int) string { return JointPrefix + strconv.Itoa(ifindex) }

func newNames(ifindex int) (outer, place string) {
	n := strconv.Itoa(ifindex)
	return OuterPrefix + n, PlacePrefix + n
}

// Validate checks a record read back (a file an earlier agent wrote)
// before anything acts on it: every name is a valid interface name (a
// record names pin directories and links to delete), the new pair's
// names are those derived from the old veth's ifindex, counts are within
// the recording's limits, and every address, route, neighbour and
// sysctl value parses. It cannot know whether the routes are the ones
// that were there; the links are also checked against the kernel when
// used (innerLink, placeLink, jointLink, masterLink).
func (r *Record) Validate() error {
	if err := r.validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

func (r *Record) validate() error {
	if r.Version != RecordVersion {
		return fmt.Errorf("version %d, want %d", r.Version, RecordVersion)
	}
	if r.Stage != StageFound && r.Stage != StagePlugged && r.Stage != StageCut {
		return fmt.Errorf("stage %.32q", r.Stage)
	}
	if !validIfname(r.ContainerIface) {
		return fmt.Errorf("container interface %.32q", r.ContainerIface)
	}
	if err := r.Inner.validate("inner", ""); err != nil {
		return err
	}
	if strings.HasPrefix(r.Inner.Name, OuterPrefix) || strings.HasPrefix(r.Inner.Name, PlacePrefix) || strings.HasPrefix(r.Inner.Name, JointPrefix) {
		return fmt.Errorf("inner %s is deepwall's own link", r.Inner.Name)
	}
	if _, err := net.ParseMAC(r.InnerMAC); err != nil {
		return fmt.Errorf("inner mac: %w", err)
	}
	if r.MTU < minMTU || r.MTU > maxMTU {
		return fmt.Errorf("mtu %d", r.MTU)
	}
	if r.Queues < 0 || r.Queues > MaxQueues {
		return fmt.Errorf("%d queues", r.Queues)
	}
	outer, place := newNames(r.Inner.Ifindex)
	if r.Stage != StageFound {
		if err := r.Outer.validate("outer", outer); err != nil {
			return err
		}
		if err := r.Place.validate("place", place); err != nil {
			return err
		}
	}
	if r.Joint != nil {
		if !r.Joined {
			return errors.New("a joint bridge on a record not joined")
		}
		if err := r.Joint.validate("joint", jointName(r.Inner.Ifindex)); err != nil {
			return err
		}
	}
	if m := r.Master; m != nil {
		if err := m.Link.validate("master", ""); err != nil {
			return err
		}
		if m.Kind != "bridge" {
			return fmt.Errorf("master kind %.32q", m.Kind)
		}
		if len(m.VLANs) > MaxVLANs {
			return fmt.Errorf("%d vlans: %w", len(m.VLANs), ErrLimit)
		}
		for _, v := range m.VLANs {
			if v.VID < 1 || v.VID > 4094 {
				return fmt.Errorf("vlan %d", v.VID)
			}
		}
	}
	if len(r.Addrs) > MaxAddrs || len(r.Routes) > MaxRoutes || len(r.Neigh) > MaxNeigh {
		return fmt.Errorf("%d addresses, %d routes, %d neighbours: %w", len(r.Addrs), len(r.Routes), len(r.Neigh), ErrLimit)
	}
	for _, a := range r.Addrs {
		if _, err := a.netlink(); err != nil {
			return err
		}
	}
	for _, rt := range r.Routes {
		if rt.Family != unix.AF_INET && rt.Family != unix.AF_INET6 {
			return fmt.Errorf("route %.64q: family %d", rt.Dst, rt.Family)
		}
		if _, err := rt.netlink(1); err != nil {
			return err
		}
	}
	for _, n := range r.Neigh {
		if _, err := n.netlink(1, n.State); err != nil {
			return err
		}
	}
	for k, v := range r.Sysctls {
		if !slices.Contains(sysctls, k) {
			return fmt.Errorf("sysctl %.64q", k)
		}
		if _, err := strconv.Atoi(v); err != nil || len(v) > maxSysctlValue {
			return fmt.Errorf("sysctl %s value %.32q", k, v)
		}
	}
	return nil
}

// validate checks a recorded link: a valid interface name (want, if
// given) and an ifindex.
func (l Link) validate(what, want string) error {
	if !validIfname(l.Name) || want != "" && l.Name != want {
		return fmt.Errorf("%s name %.32q", what, l.Name)
	}
	if l.Ifindex <= 0 {
		return fmt.Errorf("%s %s: ifindex %d", what, l.Name, l.Ifindex)
	}
	return nil
}

// validIfname is the kernel's dev_valid_name, and no control bytes: a
// name can then never leave the directory it is joined to.
func validIfname(s string) bool {
	if s == "" || len(s) >= unix.IFNAMSIZ || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f || c == '/' || c == ':' {
			return false
		}
	}
	return true
}
