package xdp

import (
	"net/netip"
	"testing"
)

func TestMakeFlowKeySymmetric(t *testing.T) {
	for _, tc := range []struct {
		src, dst     string
		sport, dport uint16
		proto        uint8
	}{
		{"198.18.0.1", "198.18.0.2", 40000, 80, 6},
		{"198.18.0.2", "198.18.0.1", 80, 40000, 6},
		{"198.18.0.1", "198.18.0.1", 9, 8, 17}, // same address: ports decide
		{"2001:2::1", "2001:2::2", 5353, 53, 17},
		{"2001:2::2", "2001:2::1", 7, 7, 58},
	} {
		src, dst := netip.MustParseAddr(tc.src), netip.MustParseAddr(tc.dst)
		k1, d1 := MakeFlowKey(src, dst, tc.sport, tc.dport, tc.proto)
		k2, d2 := MakeFlowKey(dst, src, tc.dport, tc.sport, tc.proto)
		if k1 != k2 {
			t.Errorf("%v: keys differ by direction: %v vs %v", tc, k1, k2)
		}
		if d1 == d2 && !(src == dst && tc.sport == tc.dport) {
			t.Errorf("%v: both directions report %v", tc, d1)
		}
		if k1.Hash() != k2.Hash() {
			t.Errorf("%v: hash not symmetric", tc)
		}
		lo := k1.Lo()
		if d1 == FromLo && (lo.Addr() != src || lo.Port() != tc.sport) {
			t.Errorf("%v: lo = %v, want source", tc, lo)
		}
	}
}
