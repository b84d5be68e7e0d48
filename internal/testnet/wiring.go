package testnet

import (
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// WiringDump is a normalised view of a namespace's wiring, for a test to
// compare before and after it changed and restored it: links with their
// master, MTU, MAC, flags and bridge port flags; routes of every table
// but local; permanent neighbour entries; the proxy-ARP and forwarding
// sysctls of veths (what dataplane/wire copies from one to another).
func WiringDump(tb testing.TB, ns *NS) string {
	tb.Helper()
	h := ns.Netlink(tb)
	links, err := h.LinkList()
	if err != nil {
		tb.Fatal(err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	var out []string
	for _, l := range links {
		a := l.Attrs()
		line := fmt.Sprintf("link %s type=%s master=%s mtu=%d mac=%s up=%v", a.Name, l.Type(), names[a.MasterIndex],
			a.MTU, a.HardwareAddr, a.Flags&net.FlagUp != 0)
		if a.MasterIndex > 0 {
			pi, err := h.LinkGetProtinfo(l)
			if err == nil {
				line += " protinfo=" + pi.String()
			}
		}
		addrs, _ := h.AddrList(l, netlink.FAMILY_V4)
		for _, ad := range addrs {
			line += " addr=" + ad.IPNet.String()
		}
		out = append(out, line)
		if l.Type() == "veth" {
			ns.MustDo(tb, func() error {
				for _, k := range []string{"ipv4/conf/%s/proxy_arp", "ipv4/conf/%s/forwarding"} {
					b, err := os.ReadFile("/proc/sys/net/" + fmt.Sprintf(k, a.Name))
					if err != nil {
						return err
					}
					out = append(out, fmt.Sprintf("sysctl %s %s", fmt.Sprintf(k, a.Name), strings.TrimSpace(string(b))))
				}
				return nil
			})
		}
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		tb.Fatal(err)
	}
	for _, r := range routes {
		if r.Table == unix.RT_TABLE_LOCAL {
			continue
		}
		out = append(out, fmt.Sprintf("route %v dev=%s gw=%v table=%d proto=%d scope=%d type=%d metric=%d",
			r.Dst, names[r.LinkIndex], r.Gw, r.Table, r.Protocol, r.Scope, r.Type, r.Priority))
	}
	neigh, err := h.NeighList(0, netlink.FAMILY_V4)
	if err != nil {
		tb.Fatal(err)
	}
	for _, n := range neigh {
		if n.State&netlink.NUD_PERMANENT != 0 {
			out = append(out, fmt.Sprintf("neigh %s dev=%s lladdr=%s permanent", n.IP, names[n.LinkIndex], n.HardwareAddr))
		}
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

// CheckNoPrograms fails tb if an XDP program or a tcx ingress program is
// attached to one of the named interfaces of ns, or the shadow veths of
// deepwall's tc path for one of them (dw<ifindex>n, dw<ifindex>f) are left
// in ns: what a detached or failed port must not keep.
func CheckNoPrograms(tb testing.TB, ns *NS, names ...string) {
	tb.Helper()
	h := ns.Netlink(tb)
	for _, name := range names {
		l, err := h.LinkByName(name)
		if err != nil {
			tb.Fatalf("%s: %v", name, err)
		}
		if x := l.Attrs().Xdp; x != nil && x.Attached {
			tb.Errorf("%s: %s still has an XDP program", ns.Name, name)
		}
		idx := l.Attrs().Index
		ns.MustDo(tb, func() error {
			res, err := link.QueryPrograms(link.QueryOptions{Target: idx, Attach: ebpf.AttachTCXIngress})
			if err != nil {
				return fmt.Errorf("query tcx on %s: %w", name, err)
			}
			if len(res.Programs) != 0 {
				tb.Errorf("%s: %s still has %d tcx programs", ns.Name, name, len(res.Programs))
			}
			return nil
		})
		for _, end := range []string{"n", "f"} {
			shadow := fmt.Sprintf("dw%d%s", idx, end)
			if _, err := h.LinkByName(shadow); err == nil {
				tb.Errorf("%s: shadow veth %s of %s left", ns.Name, shadow, name)
			}
		}
	}
}
