package dpi

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dpi/decode"
	"github.com/deepwall/deepwall/dpi/flow"
	"github.com/deepwall/deepwall/internal/testnet"
)

// TestPrivilegedDifferentialTCP replays random segment sequences —
// overlaps with other bytes, reordering, duplicates, bad checksums,
// RSTs near the next sequence number — from a raw socket into a real
// Linux receiver, each segment first judged by an offline engine and
// sent only if it forwards it (the inline path), and checks that what
// the application read is a prefix of what the engine inspected: the
// receiver never takes a byte the engine did not see, in that place. In
// the rounds where only bad-checksum segments carry other bytes, the
// application must read the whole stream: insertions the receiver drops
// cost nothing.
func TestPrivilegedDifferentialTCP(t *testing.T) {
	testnet.RequirePrivileged(t)
	topo := testnet.NewTopology(t, testnet.TopologyOptions{Bridge: true})
	// The client's kernel has no socket for the crafted connections: keep
	// it from resetting them.
	if out, err := topo.Client.Run(exec.Command("iptables", "-A", "OUTPUT", "-p", "tcp", "--tcp-flags", "RST", "RST", "-j", "DROP")); err != nil {
		t.Fatalf("iptables: %v %s", err, out)
	}
	reads := make(chan []byte, 1)
	ln := testnet.Listen(t, topo.Server, "tcp", netip.AddrPortFrom(testnet.ServerIP, 80))
	go testnet.Serve(ln, func(c net.Conn) {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		b, _ := io.ReadAll(c)
		reads <- b
	})
	ps := testnet.OpenPacketSocket(t, topo.Client, 200*time.Millisecond)

	const rounds = 40
	for round := range rounds {
		seed := uint64(round) + 1
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			diffRound(t, topo, ps, seed, reads)
		})
	}
}

func diffRound(t *testing.T, topo *testnet.Topology, ps *testnet.PacketSocket, seed uint64, reads chan []byte) {
	r := rand.New(rand.NewPCG(seed, 13))
	h := newHarness(t, compileRules(t, "rules:\n"+block("1", "payload", "zzzzzzzz")), Config{})
	w := h.e.workers[0]
	var inspected []byte
	orig := w.deliver[flow.ToServer]
	w.deliver[flow.ToServer] = func(b []byte) { inspected = append(inspected, b...); orig(b) }

	cli := netip.AddrPortFrom(testnet.ClientIP, uint16(20000+seed))
	srv := netip.AddrPortFrom(testnet.ServerIP, 80)
	spec := testnet.FrameSpec{SrcMAC: topo.ClientMAC, DstMAC: topo.ServerMAC, Src: cli, Dst: srv, Proto: testnet.ProtoTCP}
	isn := r.Uint32()
	send := func(fr []byte, judge bool) {
		if judge {
			v := h.e.Inspect(0, &dataplane.Frame{Data: fr, Timestamp: time.Now().UnixNano(), Ingress: dataplane.Inner})
			if v.Action != dataplane.Forward {
				return
			}
		}
		if err := ps.Send(fr); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
	frame := func(flags uint8, seq, ack uint32, payload []byte) []byte {
		s := spec
		s.Flags, s.Seq, s.Ack, s.Payload = flags, seq, ack, payload
		return testnet.Frame(t, s)
	}
	// Handshake, the SYN-ACK judged too.
	send(frame(testnet.SYN, isn, 0, nil), true)
	var ack uint32
	buf := make([]byte, 2048)
	dec := decode.NewDecoder()
	var p decode.Packet
	for deadline := time.Now().Add(2 * time.Second); ack == 0; {
		if time.Now().After(deadline) {
			t.Fatal("no SYN-ACK")
		}
		n, err := ps.Recv(buf)
		if err != nil || dec.Decode(buf[:n], &p) != nil || p.Proto != 6 || p.DstPort != cli.Port() ||
			p.TCPFlags&(decode.TCPSyn|decode.TCPAck) != decode.TCPSyn|decode.TCPAck {
			continue
		}
		ack = p.Seq + 1
		h.e.Inspect(0, &dataplane.Frame{Data: append([]byte(nil), buf[:n]...), Timestamp: time.Now().UnixNano(), Ingress: dataplane.Outer})
	}
	send(frame(testnet.ACK, isn+1, ack, nil), true)

	// The true stream, then random segments of it, some with other bytes.
	stream := []byte("GET /index.html HTTP/1.1\r\nHost: a\r\nX-Pad: ")
	for range 600 + r.IntN(1400) {
		stream = append(stream, 'a'+byte(r.IntN(26)))
	}
	stream = append(stream, "\r\n\r\n"...)
	base := isn + 1
	conflicts := r.IntN(3) * 2 // percent of segments with other bytes: none in a third of the rounds
	rsts := 0
	for range 20 + r.IntN(40) {
		off := r.IntN(len(stream))
		n := min(1+r.IntN(300), len(stream)-off)
		data := append([]byte(nil), stream[off:off+n]...)
		flags := uint8(testnet.ACK | testnet.PSH)
		badsum := r.IntN(100) < 20
		switch x := r.IntN(100); {
		case x < conflicts || badsum:
			data[r.IntN(n)] ^= 0x20 // other bytes for part of the range
		case x < conflicts+2:
			flags, data = testnet.RST|testnet.ACK, nil
			off += r.IntN(3) - 1
			rsts++
		}
		fr := frame(flags, base+uint32(off), ack, data)
		if badsum {
			// The insertion: other bytes the receiver drops.
			c := 14 + 20 + 16
			binary.BigEndian.PutUint16(fr[c:], binary.BigEndian.Uint16(fr[c:])^uint16(1+r.IntN(0xfffe)))
		}
		send(fr, true)
	}
	// In order, as a sender's retransmissions would fill the holes.
	for off := 0; off < len(stream); off += 500 {
		send(frame(testnet.ACK|testnet.PSH, base+uint32(off), ack, stream[off:min(off+500, len(stream))]), true)
	}
	send(frame(testnet.ACK|testnet.FIN, base+uint32(len(stream)), ack, nil), true)
	var app []byte
	select {
	case app = <-reads:
	case <-time.After(5 * time.Second):
		t.Fatal("the server read nothing back")
	}
	if !bytes.HasPrefix(inspected, app) {
		t.Fatalf("the application read %d bytes the engine did not inspect so:\napp:       %q\ninspected: %q", len(app), app, inspected)
	}
	if conflicts == 0 && rsts == 0 && !bytes.Equal(app, stream) {
		// Only segments the receiver drops carried other bytes: they must
		// not cost the connection.
		t.Fatalf("a benign stream among bad-checksum insertions: the application read %d of %d bytes; drops %v", len(app), len(stream), h.e.Stats().Drops)
	}
	t.Logf("application read %d bytes, engine inspected %d; drops %v", len(app), len(inspected), h.e.Stats().Drops)
}
