package xdp

import (
	"net/netip"
	"testing"

	"github.com/deepwall/deepwall/internal/testnet"
)

// bigACL is MaxACLRules rules that a client→server packet never matches,
// each with prefixes and ports, so every lookup runs to the last field.
func bigACL() ACL {
	acl := ACL{Rules: make([]ACLRule, MaxACLRules)}
	for i := range acl.Rules {
		acl.Rules[i] = ACLRule{
			ID: uint32(i + 1), Action: ACLDeny, Proto: testnet.ProtoTCP,
			Src:      []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 0, 0}), 16)},
			Dst:      []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24)},
			DstPorts: []PortRange{{uint16(i), uint16(i + 10)}},
		}
	}
	return acl
}

// BenchmarkProgRun measures the program per outcome on a 64-byte frame
// (60 bytes without FCS) with BPF_PROG_TEST_RUN, which repeats the run in
// the kernel and reports the time per run: ns/packet is the program's own
// cost, without a driver or a redirect's transmit.
func BenchmarkProgRun(b *testing.B) {
	tcp := frame(b, testnet.Client4, testnet.Server4, testnet.ProtoTCP, func(s *testnet.FrameSpec) { s.Payload = nil })
	if len(tcp) != 60 {
		b.Fatalf("frame is %d bytes", len(tcp))
	}
	k, _ := keyOf(testnet.Client4, testnet.Server4, testnet.ProtoTCP)
	for _, bc := range []struct {
		name  string
		cfg   PortConfig
		frame []byte
		want  uint32
		setup func(*harness)
	}{
		{"fast-allow", PortConfig{}, tcp, xdpRedirect, func(h *harness) { h.setFlow(k, VerdictAllow, 1) }},
		{"fast-allow-acl512", PortConfig{}, tcp, xdpRedirect, func(h *harness) {
			h.setFlow(k, VerdictAllow, 1)
			h.setACL(bigACL())
		}},
		{"fast-drop", PortConfig{}, tcp, xdpDrop, func(h *harness) { h.setFlow(k, VerdictDrop, 1) }},
		{"acl-drop", PortConfig{}, tcp, xdpDrop, func(h *harness) {
			h.setACL(ACL{Rules: []ACLRule{{Action: ACLDeny, Proto: testnet.ProtoTCP, DstPorts: []PortRange{{80, 80}}}}})
		}},
		{"to-user", PortConfig{}, tcp, xdpRedirect, func(h *harness) {
			if err := h.p.RegisterXSK(0, 0, xdpSocket(h.tb)); err != nil {
				h.tb.Fatal(err)
			}
		}},
		{"fail-open", PortConfig{}, tcp, xdpRedirect, nil},
		{"fail-closed", PortConfig{FailClosed: true}, tcp, xdpDrop, nil},
		{"non-ip", PortConfig{}, arpFrame(b), xdpRedirect, nil},
		{"parse-error", PortConfig{}, tcp[:ethLen+10], xdpDrop, nil},
	} {
		h := newHarness(b, bc.cfg)
		if bc.setup != nil {
			bc.setup(h)
		}
		b.Run(bc.name, func(b *testing.B) {
			h.tb = b
			ret, per, err := h.p.XDPProgram().Benchmark(bc.frame, max(b.N, 1), nil)
			if err != nil {
				b.Fatal(err)
			}
			if ret != bc.want {
				b.Fatalf("returned %s, want %s", actionName(ret), actionName(bc.want))
			}
			b.ReportMetric(float64(per.Nanoseconds()), "ns/packet")
		})
	}
}
