package defrag_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dpi/decode"
	"github.com/deepwall/deepwall/dpi/defrag"
	"github.com/deepwall/deepwall/internal/testnet"
	"github.com/deepwall/deepwall/internal/testutil"
)

// TestPrivilegedDifferentialDefrag sends every fragment sequence of
// addCases, as crafted frames, to a real kernel (the server namespace of
// a bridged topology, nothing inline) and checks that it delivers a
// datagram to a UDP socket exactly when Add completes one, with the same
// bytes: the overlap, duplicate, cut and length rules are the receiver's.
// Then the same for random sequences.
func TestPrivilegedDifferentialDefrag(t *testing.T) {
	testnet.RequirePrivileged(t)
	topo := testnet.NewTopology(t, testnet.TopologyOptions{Bridge: true})
	var socks [2]net.PacketConn
	for i, ip := range []netip.Addr{testnet.ServerIP, testnet.ServerIP6} {
		socks[i] = testnet.ListenPacket(t, topo.Server, "udp", netip.AddrPortFrom(ip, testnet.Server4.Port()))
	}
	ps := testnet.OpenPacketSocket(t, topo.Client, 100*time.Millisecond)
	dec := decode.NewDecoder()
	var p decode.Packet
	buf := make([]byte, 65536)
	id := uint32(1000)
	check := func(t *testing.T, v6 bool, n int, pieces []piece) {
		t.Helper()
		id++
		// A source port per sequence too: no sequence meets another's queue.
		spec := testnet.FrameSpec{SrcMAC: topo.ClientMAC, DstMAC: topo.ServerMAC, Src: netip.AddrPortFrom(testnet.ClientIP, uint16(id))}
		whole := datagramSpec(t, v6, n, spec)
		tab := defrag.New(defrag.Config{})
		var out []byte
		for j, pc := range pieces {
			fr := testnet.Frag(whole, id, pc.off, pc.end, pc.more)
			if pc.fill != 0 {
				for k := len(fr) - (pc.end - pc.off); k < len(fr); k++ {
					fr[k] = pc.fill
				}
			}
			if dec.Decode(fr, &p) != nil || p.Flags&decode.FlagFragment == 0 {
				continue // the engine drops what does not decode; so must the kernel
			}
			if d, o := tab.Add(int64(j), 0, fr, &p); o == defrag.OutcomeComplete {
				// What the engine then inspects: a datagram that decodes
				// and whose checksum holds (a conflicting copy that won
				// breaks it, and the receiver drops it too).
				var dp decode.Packet
				if dec.Decode(d.Frame, &dp) == nil && dataplane.VerifyL4Checksum(d.Frame[dp.L3Off:], v6, dp.Proto, d.Frame[dp.L4Off:]) == dataplane.ChecksumOK {
					out = bytes.Clone(dp.Payload)
				}
			}
			if err := ps.Send(fr); err != nil {
				t.Fatalf("send piece %d: %v", j, err)
			}
		}
		sock := socks[0]
		if v6 {
			sock = socks[1]
		}
		sock.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, _, err := sock.ReadFrom(buf)
		var got []byte
		if err == nil {
			got = buf[:n]
		}
		if (got == nil) != (out == nil) || !bytes.Equal(got, out) {
			t.Fatalf("pieces %v: the kernel delivered %d bytes (%v), defrag %d bytes", pieces, len(got), err, len(out))
		}
	}
	// Both addresses take a whole datagram before the test starts (a new
	// IPv6 address may still be tentative).
	for i, v6 := range []bool{false, true} {
		spec := testnet.FrameSpec{SrcMAC: topo.ClientMAC, DstMAC: topo.ServerMAC, Src: netip.AddrPortFrom(testnet.ClientIP, 999)}
		probe := datagramSpec(t, v6, 16, spec)
		if !testutil.WaitFor(5*time.Second, func() bool {
			if err := ps.Send(probe); err != nil {
				return false
			}
			socks[i].SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			_, _, err := socks[i].ReadFrom(buf)
			return err == nil
		}) {
			t.Fatalf("no datagram reached the server (IPv6 %v)", v6)
		}
	}
	for _, tt := range addCases {
		t.Run(tt.name, func(t *testing.T) { check(t, tt.v6, tt.n, tt.pieces) })
	}
	// Random sequences: a datagram cut at random 8-byte boundaries, sent
	// in random order, with random extra copies (some conflicting, some
	// of odd length).
	const rounds = 60
	r := rand.New(rand.NewPCG(11, 12))
	for round := range rounds {
		v6 := round%2 == 1
		const n = 200 // IP payload 208 bytes
		var pieces []piece
		for off := 0; off < n+8; {
			end := min(off+8*(1+r.IntN(8)), n+8)
			pieces = append(pieces, piece{off: off, end: end, more: end < n+8})
			off = end
		}
		for range r.IntN(3) {
			off := 8 * r.IntN(26)
			end := min(off+8*(1+r.IntN(6))+r.IntN(2)*r.IntN(8), n+8)
			pc := piece{off: off, end: end, more: end < n+8 || r.IntN(2) == 0}
			if r.IntN(2) == 0 {
				pc.fill = 'X'
			}
			pieces = append(pieces, pc)
		}
		r.Shuffle(len(pieces), func(i, j int) { pieces[i], pieces[j] = pieces[j], pieces[i] })
		t.Run(fmt.Sprint("random", round), func(t *testing.T) { check(t, v6, n, pieces) })
	}
}
