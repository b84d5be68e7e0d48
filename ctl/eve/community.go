package eve

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/deepwall/deepwall/ctl/eve/communityid"
)

// SetCommunityID sets ev's Community ID (version 1, with seed) from its
// addresses, ports and protocol, unless it has one or its addresses are
// not IP addresses. The writer calls it, off the packet path.
//
// ICMP flows are keyed by their echo identifier (both ports hold it; see
// xdp.FlowKey): an echo flow hashes as echo request and reply, which is
// the same ID from either end. Other ICMP messages carry port 0 and no
// type in the event: they get no ID rather than a wrong one (the only
// events without one, with drops of frames that did not decode as IP).
func (ev *Event) SetCommunityID(seed uint16) {
	if ev.CommunityID != "" {
		return
	}
	src, err1 := netip.ParseAddr(ev.SrcIP)
	dst, err2 := netip.ParseAddr(ev.DestIP)
	if err1 != nil || err2 != nil {
		return
	}
	proto, _ := ProtoNumber(ev.Proto)
	f := communityid.Flow{Proto: proto, Src: src, Dst: dst, SrcPort: ev.SrcPort, DstPort: ev.DestPort}
	if f.Proto == communityid.ProtoICMP || f.Proto == communityid.ProtoICMPv6 {
		var echo bool
		if f.SrcPort, f.DstPort, echo = icmpEcho(f.Proto, ev.SrcPort, ev.DestPort, ev.Direction); !echo {
			return
		}
	}
	ev.CommunityID = communityid.ID(seed, f)
}

// icmpEcho returns the ICMP type and code communityid hashes for an
// event whose ports hold an echo identifier: the request when the
// event's source is the client, the reply when it is the server.
func icmpEcho(proto uint8, sport, dport uint16, dir string) (typ, code uint16, ok bool) {
	if sport == 0 || sport != dport {
		return 0, 0, false
	}
	req, rep := uint16(8), uint16(0)
	if proto == communityid.ProtoICMPv6 {
		req, rep = 128, 129
	}
	if dir == "to_client" {
		return rep, 0, true
	}
	return req, 0, true
}

// ProtoNumber is the inverse of the names EVE's proto carries
// (xdp.ProtoName: ICMP, TCP, UDP, IPv6-ICMP, proto-N); false for any
// other name.
func ProtoNumber(name string) (uint8, bool) {
	switch name {
	case "TCP":
		return communityid.ProtoTCP, true
	case "UDP":
		return communityid.ProtoUDP, true
	case "ICMP":
		return communityid.ProtoICMP, true
	case "IPv6-ICMP":
		return communityid.ProtoICMPv6, true
	case "SCTP":
		return communityid.ProtoSCTP, true
	}
	rest, ok := strings.CutPrefix(name, "proto-")
	n, err := strconv.ParseUint(rest, 10, 8)
	if !ok || err != nil {
		return 0, false
	}
	return uint8(n), true
}
