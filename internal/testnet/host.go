package testnet

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/vishvananda/netlink"
)

// Addresses of the container-host topology: a bridged subnet behind the
// bridge's address, and routed /32 containers behind a link-local gateway
// answered by proxy ARP, as Calico does.
var (
	HostBridgeIP  = netip.MustParseAddr("198.18.0.254") // on the bridge: the bridged containers' gateway
	RoutedGateway = netip.MustParseAddr("169.254.1.1")  // routed containers' default gateway (proxy ARP)
)

// Host is a namespace standing in for a container host: a Linux bridge
// (BridgeIf, standing in for docker0) with HostBridgeIP/24, IPv4
// forwarding on, and containers (namespaces) on veths, either ports of
// the bridge or routed Calico-style. Nothing of it is in the root
// namespace.
type Host struct {
	NS *NS
	tb testing.TB
	n  int
}

// Container is a namespace standing in for a container on a Host.
type Container struct {
	NS *NS
	// IP is eth0's address, MAC its hardware address.
	IP  netip.Addr
	MAC net.HardwareAddr
	// HostIf and HostIndex name the veth's host end.
	HostIf    string
	HostIndex int
}

// NewHost builds a host namespace with its bridge; cleanup removes it.
func NewHost(tb testing.TB) *Host {
	tb.Helper()
	h := &Host{NS: NewNS(tb, "host"), tb: tb}
	nl := h.NS.Netlink(tb)
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: BridgeIf}}
	if err := nl.LinkAdd(br); err != nil {
		tb.Fatalf("host: add bridge: %v", err)
	}
	l, err := nl.LinkByName(BridgeIf)
	if err != nil {
		tb.Fatalf("host: bridge: %v", err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: HostBridgeIP.AsSlice(), Mask: net.CIDRMask(24, 32)}}
	if err := nl.AddrAdd(l, addr); err != nil {
		tb.Fatalf("host: bridge address: %v", err)
	}
	if err := nl.LinkSetUp(l); err != nil {
		tb.Fatalf("host: bridge up: %v", err)
	}
	// Proxy ARP answers for an address routed through another interface:
	// on a real host the gateway address leaves by the uplink.
	gw := &netlink.Route{LinkIndex: l.Attrs().Index, Scope: netlink.SCOPE_LINK,
		Dst: &net.IPNet{IP: RoutedGateway.AsSlice(), Mask: net.CIDRMask(32, 32)}}
	if err := nl.RouteAdd(gw); err != nil {
		tb.Fatalf("host: gateway route: %v", err)
	}
	h.NS.MustDo(tb, func() error { return writeSysctl("ipv4/ip_forward", "1") })
	return h
}

// addContainer creates a container namespace and its veth pair, the host
// end named hostIf in the host namespace.
func (h *Host) addContainer(tb testing.TB, role, hostIf string, ip netip.Addr, bits int) *Container {
	tb.Helper()
	c := &Container{NS: NewNS(tb, role), IP: ip, HostIf: hostIf}
	hn := h.NS.Netlink(tb)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: hostIf, MTU: 1500, TxQLen: 1000},
		PeerName: EndpointIf, PeerNamespace: netlink.NsFd(c.NS.Handle()), PeerMTU: 1500, PeerTxQLen: 1000}
	if err := hn.LinkAdd(veth); err != nil {
		tb.Fatalf("host: add veth %s: %v", hostIf, err)
	}
	hl, err := hn.LinkByName(hostIf)
	if err != nil {
		tb.Fatalf("host: %s: %v", hostIf, err)
	}
	c.HostIndex = hl.Attrs().Index
	cn := c.NS.Netlink(tb)
	cl, err := cn.LinkByName(EndpointIf)
	if err != nil {
		tb.Fatalf("%s: %s: %v", c.NS.Name, EndpointIf, err)
	}
	c.MAC = cl.Attrs().HardwareAddr
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(bits, 32)}}
	if err := cn.AddrAdd(cl, addr); err != nil {
		tb.Fatalf("%s: address: %v", c.NS.Name, err)
	}
	if err := cn.LinkSetUp(cl); err != nil {
		tb.Fatalf("%s: up: %v", c.NS.Name, err)
	}
	return c
}

// AddBridged adds a container at ip/24 whose host veth is a port of the
// bridge; its default route is HostBridgeIP.
func (h *Host) AddBridged(tb testing.TB, role string, ip netip.Addr) *Container {
	tb.Helper()
	h.n++
	c := h.addContainer(tb, role, fmt.Sprintf("veth%d", h.n), ip, 24)
	hn := h.NS.Netlink(tb)
	hl, _ := hn.LinkByIndex(c.HostIndex)
	br, err := hn.LinkByName(BridgeIf)
	if err != nil {
		tb.Fatalf("host: bridge: %v", err)
	}
	if err := hn.LinkSetMaster(hl, br); err != nil {
		tb.Fatalf("host: enslave %s: %v", c.HostIf, err)
	}
	if err := hn.LinkSetUp(hl); err != nil {
		tb.Fatalf("host: %s up: %v", c.HostIf, err)
	}
	cn := c.NS.Netlink(tb)
	cl, _ := cn.LinkByName(EndpointIf)
	gw := &netlink.Route{LinkIndex: cl.Attrs().Index, Gw: HostBridgeIP.AsSlice()}
	if err := cn.RouteAdd(gw); err != nil {
		tb.Fatalf("%s: default route: %v", c.NS.Name, err)
	}
	return c
}

// AddRouted adds a container routed as Calico does: ip/32 on eth0, a
// default route to RoutedGateway on link; on the host, proxy ARP and
// forwarding on the veth, a /32 route and a permanent neighbour entry.
func (h *Host) AddRouted(tb testing.TB, role string, ip netip.Addr) *Container {
	tb.Helper()
	h.n++
	c := h.addContainer(tb, role, fmt.Sprintf("cali%d", h.n), ip, 32)
	hn := h.NS.Netlink(tb)
	hl, _ := hn.LinkByIndex(c.HostIndex)
	h.NS.MustDo(tb, func() error {
		for _, k := range []string{"ipv4/conf/%s/proxy_arp", "ipv4/conf/%s/forwarding"} {
			if err := writeSysctl(fmt.Sprintf(k, c.HostIf), "1"); err != nil {
				return err
			}
		}
		return writeSysctl(fmt.Sprintf("ipv4/neigh/%s/proxy_delay", c.HostIf), "0")
	})
	if err := hn.LinkSetUp(hl); err != nil {
		tb.Fatalf("host: %s up: %v", c.HostIf, err)
	}
	r := &netlink.Route{LinkIndex: c.HostIndex, Dst: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(32, 32)},
		Scope: netlink.SCOPE_LINK, Protocol: 4} // RTPROT_STATIC
	if err := hn.RouteAdd(r); err != nil {
		tb.Fatalf("host: route %s: %v", ip, err)
	}
	n := &netlink.Neigh{LinkIndex: c.HostIndex, Family: netlink.FAMILY_V4, IP: ip.AsSlice(), HardwareAddr: c.MAC,
		State: netlink.NUD_PERMANENT}
	if err := hn.NeighSet(n); err != nil {
		tb.Fatalf("host: neighbour %s: %v", ip, err)
	}
	cn := c.NS.Netlink(tb)
	cl, _ := cn.LinkByName(EndpointIf)
	gwNet := &net.IPNet{IP: RoutedGateway.AsSlice(), Mask: net.CIDRMask(32, 32)}
	if err := cn.RouteAdd(&netlink.Route{LinkIndex: cl.Attrs().Index, Dst: gwNet, Scope: netlink.SCOPE_LINK}); err != nil {
		tb.Fatalf("%s: gateway route: %v", c.NS.Name, err)
	}
	if err := cn.RouteAdd(&netlink.Route{LinkIndex: cl.Attrs().Index, Gw: RoutedGateway.AsSlice()}); err != nil {
		tb.Fatalf("%s: default route: %v", c.NS.Name, err)
	}
	return c
}

// writeSysctl writes a /proc/sys/net key in the calling thread's namespace.
func writeSysctl(key, val string) error {
	if err := os.WriteFile("/proc/sys/net/"+key, []byte(val), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", key, val, err)
	}
	return nil
}
