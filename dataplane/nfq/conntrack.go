package nfq

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/deepwall/deepwall/xdp"
)

// ctnetlink constants (linux/netfilter/nfnetlink_conntrack.h).
const (
	nfnlSubsysCtnetlink = 1
	ipctnlMsgCtGet      = 1
	ctaTupleOrig        = 1
	ctaMark             = 8
	ctaCountersOrig     = 9
	ctaCountersReply    = 10
	ctaTupleIP          = 1
	ctaTupleProto       = 2
	ctaIPv4Src          = 1
	ctaIPv4Dst          = 2
	ctaIPv6Src          = 3
	ctaIPv6Dst          = 4
	ctaProtoNum         = 1
	ctaProtoSrcPort     = 2
	ctaProtoDstPort     = 3
	ctaProtoICMPID      = 4
	ctaProtoICMPv6ID    = 7
	ctaCountersPackets  = 1
	ctaCountersBytes    = 2
	ctaCounters32Pkts   = 3
	ctaCounters32Bytes  = 4
	nlaTypeMask         = 0x3fff // strips NLA_F_NESTED and NLA_F_NET_BYTEORDER
	nfgenHeaderLen      = 4
)

// ErrConntrack: a conntrack message that does not decode.
var ErrConntrack = errors.New("malformed conntrack message")

// ctEntry is what deepwall reads of one conntrack entry.
type ctEntry struct {
	Key xdp.FlowKey
	// OrigDir is the key direction of the original tuple (the side that
	// opened the connection); counters are indexed by key direction.
	OrigDir xdp.Direction
	Mark    uint32
	Packets [2]uint64
	Bytes   [2]uint64
}

// attrs walks the netlink attributes in b, calling fn with each one's
// type (flags stripped) and payload. It never reads outside b.
func attrs(b []byte, fn func(typ uint16, data []byte) error) error {
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b))
		typ := binary.NativeEndian.Uint16(b[2:]) & nlaTypeMask
		if l < 4 || l > len(b) {
			return fmt.Errorf("attribute length %d of %d bytes: %w", l, len(b), ErrConntrack)
		}
		if err := fn(typ, b[4:l]); err != nil {
			return err
		}
		al := (l + 3) &^ 3
		if al >= len(b) {
			return nil
		}
		b = b[al:]
	}
	return nil
}

// parseCT decodes one IPCTNL_MSG_CT_NEW message body (nfgenmsg and
// attributes) in place. ok is false for entries deepwall cannot key (no
// original tuple).
func parseCT(b []byte, e *ctEntry) (ok bool, err error) {
	*e = ctEntry{}
	if len(b) < nfgenHeaderLen {
		return false, fmt.Errorf("%d bytes: %w", len(b), ErrConntrack)
	}
	var src, dst netip.Addr
	var sport, dport uint16
	var proto uint8
	var haveTuple, haveProto bool
	var cnt [2][2]uint64 // orig/reply × packets/bytes
	err = attrs(b[nfgenHeaderLen:], func(typ uint16, data []byte) error {
		switch typ {
		case ctaTupleOrig:
			haveTuple = true
			return attrs(data, func(typ uint16, data []byte) error {
				switch typ {
				case ctaTupleIP:
					return attrs(data, func(typ uint16, data []byte) error {
						switch {
						case (typ == ctaIPv4Src || typ == ctaIPv4Dst) && len(data) == 4:
							a := netip.AddrFrom4([4]byte(data))
							if typ == ctaIPv4Src {
								src = a
							} else {
								dst = a
							}
						case (typ == ctaIPv6Src || typ == ctaIPv6Dst) && len(data) == 16:
							a := netip.AddrFrom16([16]byte(data))
							if typ == ctaIPv6Src {
								src = a
							} else {
								dst = a
							}
						}
						return nil
					})
				case ctaTupleProto:
					return attrs(data, func(typ uint16, data []byte) error {
						switch {
						case typ == ctaProtoNum && len(data) >= 1:
							proto, haveProto = data[0], true
						case typ == ctaProtoSrcPort && len(data) >= 2:
							sport = binary.BigEndian.Uint16(data)
						case typ == ctaProtoDstPort && len(data) >= 2:
							dport = binary.BigEndian.Uint16(data)
						case (typ == ctaProtoICMPID || typ == ctaProtoICMPv6ID) && len(data) >= 2:
							// Echo is keyed by its identifier on both sides.
							sport = binary.BigEndian.Uint16(data)
							dport = sport
						}
						return nil
					})
				}
				return nil
			})
		case ctaMark:
			if len(data) >= 4 {
				e.Mark = binary.BigEndian.Uint32(data)
			}
		case ctaCountersOrig, ctaCountersReply:
			i := typ - ctaCountersOrig
			return attrs(data, func(typ uint16, data []byte) error {
				switch {
				case (typ == ctaCountersPackets || typ == ctaCountersBytes) && len(data) >= 8:
					cnt[i][typ-ctaCountersPackets] = binary.BigEndian.Uint64(data)
				case (typ == ctaCounters32Pkts || typ == ctaCounters32Bytes) && len(data) >= 4:
					cnt[i][typ-ctaCounters32Pkts] = uint64(binary.BigEndian.Uint32(data))
				}
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	if !haveTuple || !haveProto || !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		return false, nil
	}
	e.Key, e.OrigDir = xdp.MakeFlowKey(src, dst, sport, dport, proto)
	e.Packets[e.OrigDir], e.Bytes[e.OrigDir] = cnt[0][0], cnt[0][1]
	e.Packets[e.OrigDir^1], e.Bytes[e.OrigDir^1] = cnt[1][0], cnt[1][1]
	return true, nil
}

// dumpConntrack lists the conntrack table of conn's namespace.
func dumpConntrack(conn *netlink.Conn, fn func(*ctEntry)) error {
	req := netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(nfnlSubsysCtnetlink<<8 | ipctnlMsgCtGet),
			Flags: netlink.Request | netlink.Dump},
		Data: []byte{0 /* AF_UNSPEC: both families */, 0, 0, 0},
	}
	msgs, err := conn.Execute(req)
	if err != nil {
		return fmt.Errorf("conntrack dump: %w", err)
	}
	var e ctEntry
	for _, m := range msgs {
		ok, err := parseCT(m.Data, &e)
		if err != nil {
			return fmt.Errorf("conntrack dump: %w", err)
		}
		if ok {
			fn(&e)
		}
	}
	return nil
}

// ctDeleteMsg builds an IPCTNL_MSG_CT_DELETE body for the connection of
// flow k (the lookup finds it by either direction's tuple).
func ctDeleteMsg(k xdp.FlowKey) []byte {
	lo, hi := k.Lo(), k.Hi()
	fam := byte(unix.AF_INET)
	srcT, dstT, alen := uint16(ctaIPv4Src), uint16(ctaIPv4Dst), 4
	if lo.Addr().Is6() {
		fam, srcT, dstT, alen = unix.AF_INET6, ctaIPv6Src, ctaIPv6Dst, 16
	}
	a16, b16 := k.AddrLo, k.AddrHi
	src, dst := a16[16-alen:], b16[16-alen:]
	var ip, proto []byte
	ip = appendNLAttr(ip, srcT, src)
	ip = appendNLAttr(ip, dstT, dst)
	proto = appendNLAttr(proto, ctaProtoNum, []byte{k.Proto})
	switch k.Proto {
	case 1, 58:
		t := uint16(ctaProtoICMPID)
		if k.Proto == 58 {
			t = ctaProtoICMPv6ID
		}
		proto = appendNLAttr(proto, t, binary.BigEndian.AppendUint16(nil, lo.Port()))
	default:
		proto = appendNLAttr(proto, ctaProtoSrcPort, binary.BigEndian.AppendUint16(nil, lo.Port()))
		proto = appendNLAttr(proto, ctaProtoDstPort, binary.BigEndian.AppendUint16(nil, hi.Port()))
	}
	var tuple []byte
	tuple = appendNLAttr(tuple, ctaTupleIP|nlaNested, ip)
	tuple = appendNLAttr(tuple, ctaTupleProto|nlaNested, proto)
	b := []byte{fam, 0, 0, 0}
	return appendNLAttr(b, ctaTupleOrig|nlaNested, tuple)
}

const nlaNested = 0x8000

// forgetConntrack deletes flow k's conntrack entry (a reset flow), so it
// ends now rather than when an established entry times out.
func (p *Pair) forgetConntrack(k xdp.FlowKey) {
	p.ctMu.Lock()
	defer p.ctMu.Unlock()
	if p.ct == nil {
		return
	}
	const ipctnlMsgCtDelete = 2
	_, err := p.ct.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(nfnlSubsysCtnetlink<<8 | ipctnlMsgCtDelete),
			Flags: netlink.Request | netlink.Acknowledge},
		Data: ctDeleteMsg(k),
	})
	if err != nil && !errors.Is(err, unix.ENOENT) {
		p.log.Debug("delete conntrack entry of a reset flow", "flow", k.String(), "error", err)
	}
}
