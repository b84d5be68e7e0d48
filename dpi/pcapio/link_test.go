package pcapio

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/deepwall/deepwall/internal/testnet"
)

// linkFrames is an IPv4 and an IPv6 frame, as Ethernet.
func linkFrames(tb testing.TB) []Frame {
	tb.Helper()
	frames := testFrames(tb)[:2]
	data := testnet.Frame(tb, testnet.FrameSpec{
		Src: netip.MustParseAddrPort("[2001:db8::1]:5353"), Dst: netip.MustParseAddrPort("[2001:db8::2]:53"),
		Proto: testnet.ProtoUDP, Payload: []byte("query"),
	})
	return append(frames, Frame{Data: data, Timestamp: frames[1].Timestamp.Add(time.Millisecond), Length: len(data)})
}

// asLink returns the record of link type lt that carries the IP packet of
// Ethernet frame eth, built the way the capturing systems write it.
func asLink(tb testing.TB, lt layers.LinkType, eth []byte) []byte {
	tb.Helper()
	ip := eth[ethLen:]
	v6 := ip[0]>>4 == 6
	et := eth[12:14]
	var h []byte
	switch lt {
	case layers.LinkTypeEthernet:
		return eth
	case layers.LinkTypeLinuxSLL:
		h = []byte{0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, et[0], et[1]}
	case layers.LinkTypeLinuxSLL2:
		h = []byte{et[0], et[1], 0, 0, 0, 0, 0, 3, 0, 1, 4, 6, 2, 0, 0, 0, 0, 1, 0, 0}
	case layers.LinkTypeRaw, linkTypeRawBSD, layers.LinkTypeIPv4, layers.LinkTypeIPv6:
	case layers.LinkTypeNull: // little-endian host, macOS AF_INET6
		h = binary.LittleEndian.AppendUint32(nil, map[bool]uint32{false: 2, true: 30}[v6])
	case layers.LinkTypeLoop: // OpenBSD, network order
		h = binary.BigEndian.AppendUint32(nil, map[bool]uint32{false: 2, true: 24}[v6])
	case layers.LinkTypePPP:
		h = []byte{0xff, 0x03, 0x00, 0x21}
		if v6 {
			h[3] = 0x57
		}
	case layers.LinkTypePPP_HDLC: // protocol field compressed
		h = []byte{0x21}
		if v6 {
			h[0] = 0x57
		}
	case layers.LinkTypeC_HDLC:
		h = []byte{0x0f, 0x00, et[0], et[1]}
	default:
		tb.Fatalf("no record for link type %v", lt)
	}
	return append(h, ip...)
}

// classicPcap writes records in the pcap format of version 2.minor
// (microsecond timestamps, little-endian; lengths swapped before 2.3).
func classicPcap(lt layers.LinkType, minor uint16, frames []Frame, record func(Frame) []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, magicMicros)
	b = binary.LittleEndian.AppendUint16(b, 2)
	b = binary.LittleEndian.AppendUint16(b, minor)
	b = append(b, make([]byte, 8)...)
	b = binary.LittleEndian.AppendUint32(b, 65535)
	b = binary.LittleEndian.AppendUint32(b, uint32(lt))
	for _, f := range frames {
		rec := record(f)
		b = binary.LittleEndian.AppendUint32(b, uint32(f.Timestamp.Unix()))
		b = binary.LittleEndian.AppendUint32(b, uint32(f.Timestamp.Nanosecond()/1000))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(rec))) // both lengths equal: the order cannot matter
		b = binary.LittleEndian.AppendUint32(b, uint32(len(rec)))
		b = append(b, rec...)
	}
	return b
}

// Every supported link type reads as the Ethernet frames it carries.
func TestLinkTypes(t *testing.T) {
	frames := linkFrames(t)
	check := func(t *testing.T, data []byte) {
		t.Helper()
		r, err := NewReader(bytes.NewReader(data), "mem")
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range frames {
			got, err := r.Next()
			if err != nil {
				t.Fatalf("frame %d: %v", i, err)
			}
			if !bytes.Equal(got.Data[12:], want.Data[12:]) {
				t.Errorf("frame %d:\n got % x\nwant % x", i, got.Data, want.Data)
			}
			if !got.Timestamp.Equal(want.Timestamp.Truncate(time.Microsecond)) || got.Length != len(want.Data) {
				t.Errorf("frame %d: at %v length %d, want %v %d", i, got.Timestamp, got.Length, want.Timestamp, len(want.Data))
			}
		}
		if _, err := r.Next(); err == nil {
			t.Error("more frames than written")
		}
	}
	for _, lt := range []layers.LinkType{
		layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL, layers.LinkTypeLinuxSLL2, layers.LinkTypeRaw,
		linkTypeRawBSD, layers.LinkTypeNull, layers.LinkTypeLoop, layers.LinkTypePPP, layers.LinkTypePPP_HDLC,
		layers.LinkTypeC_HDLC,
	} {
		t.Run(lt.String()+"/pcap", func(t *testing.T) {
			check(t, classicPcap(lt, 4, frames, func(f Frame) []byte { return asLink(t, lt, f.Data) }))
		})
	}
	// One interface per link type, records interleaved between them.
	t.Run("pcapng/several interfaces", func(t *testing.T) {
		var buf bytes.Buffer
		kinds := []layers.LinkType{layers.LinkTypeLinuxSLL2, layers.LinkTypeRaw, layers.LinkTypeEthernet}
		w, err := pcapgo.NewNgWriterInterface(&buf, pcapgo.NgInterface{LinkType: kinds[0], SnapLength: 65535}, pcapgo.DefaultNgWriterOptions)
		if err != nil {
			t.Fatal(err)
		}
		for _, lt := range kinds[1:] {
			if _, err := w.AddInterface(pcapgo.NgInterface{LinkType: lt, SnapLength: 65535}); err != nil {
				t.Fatal(err)
			}
		}
		for i, f := range frames {
			rec := asLink(t, kinds[i%len(kinds)], f.Data)
			ci := gopacket.CaptureInfo{Timestamp: f.Timestamp.Truncate(time.Microsecond), CaptureLength: len(rec), Length: len(rec), InterfaceIndex: i % len(kinds)}
			if err := w.WritePacket(ci, rec); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		check(t, buf.Bytes())
	})
}

// Files of pcap versions 2.0 to 2.3 read as libpcap reads them: before
// 2.3 a record header holds the wire length before the captured one, and
// 2.3 files come both ways.
func TestOldVersions(t *testing.T) {
	eth := testFrames(t)[2]
	for _, tc := range []struct {
		minor          uint16
		first, second  uint32 // the record header's two length fields
		capLen, length int
	}{
		{0, uint32(len(eth.Data)) + 100, uint32(len(eth.Data)), len(eth.Data), len(eth.Data) + 100},
		{1, uint32(len(eth.Data)) + 100, uint32(len(eth.Data)), len(eth.Data), len(eth.Data) + 100},
		{3, uint32(len(eth.Data)), uint32(len(eth.Data)) + 100, len(eth.Data), len(eth.Data) + 100},
		{3, uint32(len(eth.Data)) + 100, uint32(len(eth.Data)), len(eth.Data), len(eth.Data) + 100},
		{4, uint32(len(eth.Data)), uint32(len(eth.Data)) + 100, len(eth.Data), len(eth.Data) + 100},
	} {
		b := classicPcap(layers.LinkTypeEthernet, tc.minor, nil, nil)
		b = binary.LittleEndian.AppendUint64(b, 0)
		b = binary.LittleEndian.AppendUint32(b, tc.first)
		b = binary.LittleEndian.AppendUint32(b, tc.second)
		b = append(b, eth.Data...)
		r, err := NewReader(bytes.NewReader(b), "old")
		if err != nil {
			t.Fatalf("2.%d: %v", tc.minor, err)
		}
		f, err := r.Next()
		if err != nil || !bytes.Equal(f.Data, eth.Data) || f.Length != tc.length {
			t.Errorf("2.%d: %d bytes, length %d, %v; want %d, %d", tc.minor, len(f.Data), f.Length, err, tc.capLen, tc.length)
		}
	}
	b := classicPcap(layers.LinkTypeEthernet, 5, nil, nil)
	if _, err := NewReader(bytes.NewReader(b), "new"); err == nil {
		t.Error("version 2.5 read")
	}
}

// A record shorter than its link header is a frame the decoder rejects,
// not a damaged file.
func TestShortLinkHeader(t *testing.T) {
	for _, lt := range []layers.LinkType{layers.LinkTypeLinuxSLL, layers.LinkTypeLinuxSLL2, layers.LinkTypeNull, layers.LinkTypePPP, layers.LinkTypeC_HDLC, layers.LinkTypeRaw} {
		for n := range 21 {
			f := toEthernet(lt, make([]byte, n))
			if len(f) >= ethLen && f[12]|f[13] != 0 {
				t.Errorf("%v: %d-byte record gave EtherType %#x", lt, n, f[12:14])
			}
		}
	}
}
