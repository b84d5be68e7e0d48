package dataplane

import (
	"bytes"
	"errors"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/deepwall/deepwall/internal/testnet"
)

// checkRST verifies a reset frame against the frame it answers.
func checkRST(t testing.TB, rst []byte, orig *Packet, origFrame []byte, toSender bool) *Packet {
	t.Helper()
	var r Packet
	if k := ParsePacket(rst, &r); k != KindIP || !r.Keyed || r.Proto != protoTCP {
		t.Fatalf("reset does not parse as tcp: kind %v keyed %v proto %d", k, r.Keyed, r.Proto)
	}
	if r.TCPFlags&tcpFlagRST == 0 {
		t.Fatalf("reset without RST flag: %#x", r.TCPFlags)
	}
	if r.Key != orig.Key {
		t.Fatalf("reset key %v, want %v", r.Key, orig.Key)
	}
	wantDir := orig.Dir
	if toSender && !(orig.Src == orig.Dst && orig.SrcPort == orig.DstPort) {
		wantDir ^= 1
	}
	if r.Dir != wantDir {
		t.Fatalf("reset direction %v, want %v", r.Dir, wantDir)
	}
	if !l4ChecksumOK(rst, &r) {
		t.Fatal("reset tcp checksum wrong")
	}
	if !r.IPv6 && csumFold(csumAdd(0, rst[r.L3Off:r.L3Off+ipv4HeaderLen])) != 0xffff {
		t.Fatal("reset ipv4 header checksum wrong")
	}
	if toSender {
		if !bytes.Equal(rst[0:6], origFrame[6:12]) || !bytes.Equal(rst[6:12], origFrame[0:6]) {
			t.Fatal("reset to sender: MACs not swapped")
		}
	} else if !bytes.Equal(rst[0:12], origFrame[0:12]) {
		t.Fatal("reset to receiver: MACs changed")
	}
	if !bytes.Equal(rst[12:r.L3Off], origFrame[12:orig.L3Off]) {
		t.Fatal("reset lost the VLAN tags")
	}
	return &r
}

func TestBuildRST(t *testing.T) {
	for _, tc := range []struct {
		name     string
		spec     testnet.FrameSpec
		toSender bool
		seq, ack uint32
		flags    uint8
	}{
		{"v4 to receiver", testnet.FrameSpec{Src: testnet.Client4, Dst: testnet.Server4, Proto: testnet.ProtoTCP, Flags: testnet.ACK | testnet.PSH, Seq: 1000, Ack: 5000, Payload: []byte("evil")},
			false, 1000, 5000, tcpFlagRST | tcpFlagACK},
		{"v4 to sender", testnet.FrameSpec{Src: testnet.Client4, Dst: testnet.Server4, Proto: testnet.ProtoTCP, Flags: testnet.ACK | testnet.PSH, Seq: 1000, Ack: 5000, Payload: []byte("evil")},
			true, 5000, 0, tcpFlagRST},
		{"v6 vlan to receiver", testnet.FrameSpec{Src: testnet.Client6, Dst: testnet.Server6, VLAN: 12, Proto: testnet.ProtoTCP, Flags: testnet.ACK, Seq: 0xfffffff0, Ack: 77, Payload: make([]byte, 300)},
			false, 0xfffffff0, 77, tcpFlagRST | tcpFlagACK},
		{"v6 vlan to sender", testnet.FrameSpec{Src: testnet.Client6, Dst: testnet.Server6, VLAN: 12, Proto: testnet.ProtoTCP, Flags: testnet.ACK, Seq: 0xfffffff0, Ack: 77, Payload: make([]byte, 300)},
			true, 77, 0, tcpFlagRST},
		{"syn to sender", testnet.FrameSpec{Src: testnet.Client4, Dst: testnet.Server4, Proto: testnet.ProtoTCP, Flags: testnet.SYN, Seq: 99},
			true, 0, 100, tcpFlagRST | tcpFlagACK},
		{"syn to receiver", testnet.FrameSpec{Src: testnet.Client6, Dst: testnet.Server6, Proto: testnet.ProtoTCP, Flags: testnet.SYN, Seq: 99},
			false, 99, 0, tcpFlagRST},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frame := testnet.Frame(t, tc.spec)
			var p Packet
			ParsePacket(frame, &p)
			buf := make([]byte, MaxRSTLen)
			n, err := BuildRST(buf, frame, &p, tc.toSender)
			if err != nil {
				t.Fatal(err)
			}
			r := checkRST(t, buf[:n], &p, frame, tc.toSender)
			if r.Seq != tc.seq || r.Ack != tc.ack || r.TCPFlags != tc.flags {
				t.Fatalf("seq %d ack %d flags %#x, want %d %d %#x", r.Seq, r.Ack, r.TCPFlags, tc.seq, tc.ack, tc.flags)
			}
			// An independent decoder agrees on the checksums.
			pkt := gopacket.NewPacket(buf[:n], layers.LayerTypeEthernet, gopacket.Default)
			tcp, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
			if tcp == nil || !tcp.RST {
				t.Fatalf("gopacket sees no RST: %v", pkt)
			}
			want := tcp.Checksum
			if err := tcp.SetNetworkLayerForChecksum(pkt.NetworkLayer()); err != nil {
				t.Fatal(err)
			}
			sb := gopacket.NewSerializeBuffer()
			if err := tcp.SerializeTo(sb, gopacket.SerializeOptions{ComputeChecksums: true}); err != nil {
				t.Fatal(err)
			}
			if tcp.Checksum != want {
				t.Fatalf("gopacket computes checksum %#x, reset has %#x", tcp.Checksum, want)
			}
		})
	}
}

func TestBuildRSTRejects(t *testing.T) {
	udp := testnet.Frame(t, testnet.FrameSpec{Src: testnet.Client4, Dst: testnet.Server4, Proto: testnet.ProtoUDP})
	var p Packet
	ParsePacket(udp, &p)
	if _, err := BuildRST(make([]byte, MaxRSTLen), udp, &p, false); !errors.Is(err, ErrNotTCP) {
		t.Fatalf("udp: err = %v", err)
	}
	tcp := testnet.Frame(t, testnet.FrameSpec{Src: testnet.Client4, Dst: testnet.Server4, Proto: testnet.ProtoTCP, Flags: testnet.ACK})
	ParsePacket(tcp, &p)
	if _, err := BuildRST(make([]byte, 20), tcp, &p, false); !errors.Is(err, ErrShortBuffer) {
		t.Fatalf("short buffer: err = %v", err)
	}
	buf := make([]byte, MaxRSTLen)
	if n := testing.AllocsPerRun(100, func() { _, _ = BuildRST(buf, tcp, &p, true) }); n != 0 {
		t.Fatalf("BuildRST allocates %.1f times", n)
	}
}

func FuzzBuildRST(f *testing.F) {
	for _, s := range seedFrames(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		var p Packet
		ParsePacket(frame, &p)
		buf := make([]byte, MaxRSTLen)
		for _, toSender := range []bool{false, true} {
			n, err := BuildRST(buf, frame, &p, toSender)
			if err != nil {
				if p.Kind == KindIP && p.Keyed && p.Proto == protoTCP {
					t.Fatalf("keyed tcp frame refused: %v", err)
				}
				continue
			}
			if n > MaxRSTLen {
				t.Fatalf("reset of %d bytes", n)
			}
			checkRST(t, buf[:n], &p, frame, toSender)
		}
	})
}
