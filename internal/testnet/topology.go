package testnet

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
)

// Addresses of the test topology, from the ranges set aside for
// benchmarking (RFC 2544: 198.18.0.0/15; RFC 5180: 2001:2::/48).
var (
	ClientIP  = netip.MustParseAddr("198.18.0.1")
	ServerIP  = netip.MustParseAddr("198.18.0.2")
	ClientIP6 = netip.MustParseAddr("2001:2::1")
	ServerIP6 = netip.MustParseAddr("2001:2::2")
)

// Interface names inside the topology's namespaces.
const (
	EndpointIf = "eth0"  // in the client and server namespaces
	InnerIf    = "inner" // in fw, the veth facing the client
	OuterIf    = "outer" // in fw, the veth facing the server
	BridgeIf   = "br0"   // in fw, only with TopologyOptions.Bridge
)

// TopologyOptions shape a Topology.
type TopologyOptions struct {
	// Queues is the number of rx and tx queues on every veth (default 1).
	Queues int
	// MTU of every veth (default 1500).
	MTU int
	// Bridge enslaves inner and outer to a Linux bridge in fw, the
	// kernel's own forwarding path, for reference measurements.
	Bridge bool
	// Routed makes fw a router between the two sides: the endpoints get
	// host addresses (/32, /128) and reach each other through fw (proxy
	// ARP and proxy NDP on inner and outer, forwarding on, a host route
	// per endpoint), so packets cross fw's IP stack (FORWARD). Exclusive
	// with Bridge.
	Routed bool
}

// Topology is the three-namespace test topology (docs/architecture.md):
//
//	client ns (eth0) ↔ (inner) fw ns (outer) ↔ (eth0) server ns
//
// Client and server share one subnet; fw has no addresses and forwards
// nothing by itself, so traffic only flows once something is attached to
// inner and outer (deepwall, or the bridge of TopologyOptions.Bridge).
// Offloads are left at the kernel's defaults on purpose: deepwall must cope
// with them on its own.
type Topology struct {
	Client, FW, Server *NS
	// ClientMAC and ServerMAC are the endpoints' eth0 addresses.
	ClientMAC, ServerMAC net.HardwareAddr
	// InnerIndex and OuterIndex are the fw ports' interface indexes.
	InnerIndex, OuterIndex int
}

// NewTopology builds the three namespaces and two veth pairs; cleanup
// removes them all.
func NewTopology(tb testing.TB, opts TopologyOptions) *Topology {
	tb.Helper()
	if opts.Queues <= 0 {
		opts.Queues = 1
	}
	if opts.MTU <= 0 {
		opts.MTU = 1500
	}
	t := &Topology{
		Client: NewNS(tb, "client"),
		FW:     NewNS(tb, "fw"),
		Server: NewNS(tb, "server"),
	}
	t.ClientMAC = t.addEndpoint(tb, t.Client, InnerIf, ClientIP, ClientIP6, opts)
	t.ServerMAC = t.addEndpoint(tb, t.Server, OuterIf, ServerIP, ServerIP6, opts)
	nl := t.FW.Netlink(tb)
	for _, p := range []struct {
		name string
		idx  *int
	}{{InnerIf, &t.InnerIndex}, {OuterIf, &t.OuterIndex}} {
		l, err := nl.LinkByName(p.name)
		if err != nil {
			tb.Fatalf("fw %s: %v", p.name, err)
		}
		*p.idx = l.Attrs().Index
	}
	if opts.Bridge {
		t.addBridge(tb, nl)
	}
	if opts.Routed {
		t.addRouting(tb, nl)
	}
	return t
}

// addRouting makes fw route between the endpoints (TopologyOptions.Routed).
func (t *Topology) addRouting(tb testing.TB, nl *netlink.Handle) {
	tb.Helper()
	t.FW.MustDo(tb, func() error {
		for _, k := range []string{"ipv4/ip_forward", "ipv6/conf/all/forwarding", "ipv6/conf/all/proxy_ndp"} {
			if err := writeSysctl(k, "1"); err != nil {
				return err
			}
		}
		for _, ifn := range []string{InnerIf, OuterIf} {
			if err := writeSysctl("ipv4/conf/"+ifn+"/proxy_arp", "1"); err != nil {
				return err
			}
			if err := writeSysctl("ipv4/neigh/"+ifn+"/proxy_delay", "0"); err != nil {
				return err
			}
		}
		return nil
	})
	for _, r := range []struct {
		idx, other int
		ips        []netip.Addr
	}{{t.InnerIndex, t.OuterIndex, []netip.Addr{ClientIP, ClientIP6}}, {t.OuterIndex, t.InnerIndex, []netip.Addr{ServerIP, ServerIP6}}} {
		for _, ip := range r.ips {
			dst := &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(ip.BitLen(), ip.BitLen())}
			if err := nl.RouteAdd(&netlink.Route{LinkIndex: r.idx, Dst: dst, Scope: netlink.SCOPE_LINK}); err != nil {
				tb.Fatalf("fw: route %s: %v", ip, err)
			}
			if ip.Is6() {
				// Answer neighbour solicitations for this endpoint on the
				// other side's port.
				n := &netlink.Neigh{LinkIndex: r.other, Family: netlink.FAMILY_V6, IP: ip.AsSlice(), Flags: netlink.NTF_PROXY}
				if err := nl.NeighAdd(n); err != nil {
					tb.Fatalf("fw: proxy ndp %s: %v", ip, err)
				}
			}
		}
	}
}

// addEndpoint creates the veth pair fwName (in fw) ↔ eth0 (in ns) directly
// in those namespaces, never in the root namespace, and addresses eth0.
func (t *Topology) addEndpoint(tb testing.TB, ns *NS, fwName string, ip4, ip6 netip.Addr, opts TopologyOptions) net.HardwareAddr {
	tb.Helper()
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{
			Name:        fwName,
			MTU:         opts.MTU,
			NumTxQueues: opts.Queues,
			NumRxQueues: opts.Queues,
			TxQLen:      1000,
		},
		PeerName:        EndpointIf,
		PeerNamespace:   netlink.NsFd(ns.Handle()),
		PeerNumTxQueues: uint32(opts.Queues),
		PeerNumRxQueues: uint32(opts.Queues),
		PeerMTU:         uint32(opts.MTU),
		PeerTxQLen:      1000,
	}
	fw := t.FW.Netlink(tb)
	if err := fw.LinkAdd(veth); err != nil {
		tb.Fatalf("add veth %s ↔ %s:%s: %v", fwName, ns.Name, EndpointIf, err)
	}
	fl, err := fw.LinkByName(fwName)
	if err != nil {
		tb.Fatalf("fw %s: %v", fwName, err)
	}
	if err := fw.LinkSetUp(fl); err != nil {
		tb.Fatalf("fw %s up: %v", fwName, err)
	}
	nl := ns.Netlink(tb)
	l, err := nl.LinkByName(EndpointIf)
	if err != nil {
		tb.Fatalf("%s %s: %v", ns.Name, EndpointIf, err)
	}
	bits4, bits6 := 24, 64
	if opts.Routed {
		bits4, bits6 = 32, 128
	}
	for _, a := range []struct {
		ip   netip.Addr
		bits int
	}{{ip4, bits4}, {ip6, bits6}} {
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.ip.AsSlice(), Mask: net.CIDRMask(a.bits, a.ip.BitLen())}}
		if a.ip.Is6() {
			// No duplicate address detection: the address is usable at once.
			addr.Flags = 0x02 // IFA_F_NODAD
		}
		if err := nl.AddrAdd(l, addr); err != nil {
			tb.Fatalf("%s: add %s: %v", ns.Name, a.ip, err)
		}
	}
	if err := nl.LinkSetUp(l); err != nil {
		tb.Fatalf("%s %s up: %v", ns.Name, EndpointIf, err)
	}
	if opts.Routed {
		// Everything of the test ranges is on the link: fw answers for the
		// other side (proxy ARP/NDP) and routes.
		for _, p := range []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("2001:2::/48")} {
			dst := &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
			if err := nl.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: dst, Scope: netlink.SCOPE_LINK}); err != nil {
				tb.Fatalf("%s: route %s: %v", ns.Name, p, err)
			}
		}
	}
	return l.Attrs().HardwareAddr
}

func (t *Topology) addBridge(tb testing.TB, nl *netlink.Handle) {
	tb.Helper()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: BridgeIf}}
	if err := nl.LinkAdd(br); err != nil {
		tb.Fatalf("fw: add bridge: %v", err)
	}
	for _, name := range []string{InnerIf, OuterIf} {
		l, err := nl.LinkByName(name)
		if err != nil {
			tb.Fatalf("fw %s: %v", name, err)
		}
		if err := nl.LinkSetMaster(l, br); err != nil {
			tb.Fatalf("fw: enslave %s: %v", name, err)
		}
	}
	if err := nl.LinkSetUp(br); err != nil {
		tb.Fatalf("fw: bridge up: %v", err)
	}
}

// String names the namespaces, for failure messages.
func (t *Topology) String() string {
	return fmt.Sprintf("%s ↔ %s ↔ %s", t.Client.Name, t.FW.Name, t.Server.Name)
}
