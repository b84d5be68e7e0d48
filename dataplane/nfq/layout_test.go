package nfq

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/deepwall/deepwall/xdp"
)

func TestCompileACL(t *testing.T) {
	pp := netip.MustParsePrefix
	acl := xdp.ACL{Default: xdp.ACLDeny, Rules: []xdp.ACLRule{
		{ID: 1, Action: xdp.ACLAllow, Proto: 6, Dst: []netip.Prefix{pp("198.18.0.2/32")}, DstPorts: []xdp.PortRange{{Lo: 80, Hi: 80}, {Lo: 8000, Hi: 8100}}},
		{ID: 2, Action: xdp.ACLDeny, Src: []netip.Prefix{pp("198.18.1.0/24"), pp("198.18.2.0/24"), pp("2001:2::/64")}},
		{ID: 3, Action: xdp.ACLDeny, Src: []netip.Prefix{pp("2001:2::5/128")}},
		{ID: 4, Action: xdp.ACLDeny, DstPorts: []xdp.PortRange{{Lo: 9, Hi: 9}}},
		{ID: 5, Action: xdp.ACLAllow, Dst: []netip.Prefix{pp("0.0.0.0/0")}},
	}}
	name := func(i int, side string) string { return "set" + string(rune('0'+i)) + side }
	v4, sets4, err := compileACL(acl, false, name)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]string, len(v4))
	for i, r := range v4 {
		got[i] = strings.Join(r, " ")
	}
	want := []string{
		"-p 6 -d 198.18.0.2/32 -m multiport --dports 80,8000:8100 -m comment --comment acl 1 -j RETURN",
		"-m set --match-set set1s src -m comment --comment acl 2 -j DROP",
		"-p 6 -m multiport --dports 9 -m comment --comment acl 4 -j DROP",
		"-p 17 -m multiport --dports 9 -m comment --comment acl 4 -j DROP",
		"-p 132 -m multiport --dports 9 -m comment --comment acl 4 -j DROP",
		"-m comment --comment acl 5 -j RETURN",
		"-m comment --comment acl default -j DROP",
	}
	if !slices.Equal(got, want) {
		t.Errorf("v4 rules:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(sets4) != 1 || len(sets4[0].members) != 2 || sets4[0].v6 {
		t.Errorf("v4 sets %+v", sets4)
	}
	v6, sets6, err := compileACL(acl, true, name)
	if err != nil {
		t.Fatal(err)
	}
	var joined []string
	for _, r := range v6 {
		joined = append(joined, strings.Join(r, " "))
	}
	// Rule 1 (v4 only) and 5 (v4 only) are absent; 2 has one v6 prefix.
	want6 := []string{
		"-s 2001:2::/64 -m comment --comment acl 2 -j DROP",
		"-s 2001:2::5/128 -m comment --comment acl 3 -j DROP",
	}
	if !slices.Equal(joined[:2], want6) || len(sets6) != 0 || len(v6) != 6 {
		t.Errorf("v6 rules:\n%s", strings.Join(joined, "\n"))
	}
}

func TestPortChunks(t *testing.T) {
	var rs []xdp.PortRange
	for i := range 10 {
		rs = append(rs, xdp.PortRange{Lo: uint16(1000 + 10*i), Hi: uint16(1000 + 10*i + 5)})
	}
	chunks := portChunks(rs)
	if len(chunks) != 2 || strings.Count(chunks[0], ",") != 6 {
		t.Errorf("chunks %q", chunks)
	}
	if c := portChunks(nil); len(c) != 1 || c[0] != "" {
		t.Errorf("no ports: %q", c)
	}
}

func TestMarksAndNames(t *testing.T) {
	for _, g := range []uint32{1, 7, maxGen} {
		r := strings.Join(fastRule(xdp.VerdictDrop, g), " ")
		if got := genOf(r); got != g {
			t.Errorf("generation %d read back as %d from %q", g, got, r)
		}
		if mark(xdp.VerdictAllow, g)&^MarkMask != 0 {
			t.Errorf("mark outside the mask")
		}
	}
	if nextGen(maxGen) != 1 || nextGen(0) != 1 {
		t.Errorf("nextGen wraps to %d", nextGen(maxGen))
	}
	c := chains{tag: Tag("veth-app1@if3")}
	if strings.Contains(c.tag, "-") || len(c.acl(9999)) > 28 || len(c.set(9999, 9999, "s", true)) > 31 {
		t.Errorf("names too long or ambiguous: %s %s", c.acl(9999), c.set(9999, 9999, "s", true))
	}
	in := chains{tag: "inner"}
	for ch, want := range map[string]bool{"DW-inner": true, "DW-inner-F": true, "DW-inner-A12": true,
		"DW-inner2": false, "DW-inner-Ax": false, "DW-inner2-F": false, "FORWARD": false} {
		if in.ours(ch) != want {
			t.Errorf("ours(%s) = %v", ch, !want)
		}
	}
}

// ctMessage builds a conntrack message as the kernel sends it.
func ctMessage(src, dst netip.Addr, sport, dport uint16, proto uint8, mark uint32, orig, reply [2]uint64) []byte {
	ip := []byte{}
	if src.Is4() {
		ip = appendNLAttr(ip, ctaIPv4Src, src.AsSlice())
		ip = appendNLAttr(ip, ctaIPv4Dst, dst.AsSlice())
	} else {
		ip = appendNLAttr(ip, ctaIPv6Src, src.AsSlice())
		ip = appendNLAttr(ip, ctaIPv6Dst, dst.AsSlice())
	}
	pr := appendNLAttr(nil, ctaProtoNum, []byte{proto})
	pr = appendNLAttr(pr, ctaProtoSrcPort, binary.BigEndian.AppendUint16(nil, sport))
	pr = appendNLAttr(pr, ctaProtoDstPort, binary.BigEndian.AppendUint16(nil, dport))
	tuple := appendNLAttr(appendNLAttr(nil, ctaTupleIP|nlaNested, ip), ctaTupleProto|nlaNested, pr)
	cnt := func(c [2]uint64) []byte {
		b := appendNLAttr(nil, ctaCountersPackets, binary.BigEndian.AppendUint64(nil, c[0]))
		return appendNLAttr(b, ctaCountersBytes, binary.BigEndian.AppendUint64(nil, c[1]))
	}
	b := []byte{2, 0, 0, 0}
	b = appendNLAttr(b, ctaTupleOrig|nlaNested, tuple)
	b = appendNLAttr(b, ctaMark, binary.BigEndian.AppendUint32(nil, mark))
	b = appendNLAttr(b, ctaCountersOrig|nlaNested, cnt(orig))
	return appendNLAttr(b, ctaCountersReply|nlaNested, cnt(reply))
}

func TestParseCT(t *testing.T) {
	hi, lo := netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.1")
	// The connection was opened by the hi side: its counters are FromHi.
	msg := ctMessage(hi, lo, 5000, 80, 6, 0x500000, [2]uint64{10, 1000}, [2]uint64{20, 20000})
	var e ctEntry
	ok, err := parseCT(msg, &e)
	if err != nil || !ok {
		t.Fatalf("parse: %v %v", ok, err)
	}
	k, d := xdp.MakeFlowKey(hi, lo, 5000, 80, 6)
	if e.Key != k || e.OrigDir != d || d != xdp.FromHi || e.Mark != 0x500000 ||
		e.Packets[xdp.FromHi] != 10 || e.Bytes[xdp.FromLo] != 20000 {
		t.Errorf("entry %+v", e)
	}
	// The delete message names the same connection.
	if ok, err := parseCT(ctDeleteMsg(k), &e); err != nil || !ok || e.Key != k {
		t.Errorf("delete message reads back as %+v (%v %v)", e.Key, ok, err)
	}
	for _, bad := range [][]byte{nil, {1, 2}, {2, 0, 0, 0, 3, 0}, {2, 0, 0, 0, 200, 0, 1, 0}} {
		if _, err := parseCT(bad, &e); err == nil && len(bad) < 4 {
			t.Errorf("%x: no error", bad)
		}
	}
}

func FuzzParseCT(f *testing.F) {
	f.Add(ctMessage(netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2"), 1, 2, 6, 0, [2]uint64{}, [2]uint64{}))
	f.Add(ctMessage(netip.MustParseAddr("2001:2::1"), netip.MustParseAddr("2001:2::2"), 1, 2, 17, 9, [2]uint64{1, 2}, [2]uint64{3, 4}))
	k, _ := xdp.MakeFlowKey(netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2"), 7, 7, 1)
	f.Add(ctDeleteMsg(k))
	f.Fuzz(func(t *testing.T, b []byte) {
		var e ctEntry
		ok, err := parseCT(b, &e)
		if ok && err != nil {
			t.Fatalf("ok with an error")
		}
		if ok && e.Key.Proto == 0 && e.Key == (xdp.FlowKey{}) {
			t.Fatalf("ok without a key")
		}
	})
}
