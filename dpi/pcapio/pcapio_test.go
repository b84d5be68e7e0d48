package pcapio

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/deepwall/deepwall/internal/testnet"
)

func testFrames(tb testing.TB) []Frame {
	tb.Helper()
	c := netip.MustParseAddrPort("198.18.0.1:40000")
	s := netip.MustParseAddrPort("198.18.0.2:80")
	t0 := time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.UTC)
	var frames []Frame
	for i, spec := range []testnet.FrameSpec{
		{Src: c, Dst: s, Proto: testnet.ProtoTCP, Flags: testnet.SYN, Seq: 1},
		{Src: s, Dst: c, Proto: testnet.ProtoTCP, Flags: testnet.SYN | testnet.ACK, Seq: 9, Ack: 2},
		{Src: c, Dst: s, Proto: testnet.ProtoTCP, Flags: testnet.ACK | testnet.PSH, Seq: 2, Ack: 10, Payload: []byte("GET / HTTP/1.1\r\n\r\n")},
	} {
		data := testnet.Frame(tb, spec)
		frames = append(frames, Frame{Data: data, Timestamp: t0.Add(time.Duration(i) * time.Millisecond), Length: len(data)})
	}
	return frames
}

func pcapBytes(tb testing.TB, frames []Frame) []byte {
	tb.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, "mem")
	if err != nil {
		tb.Fatal(err)
	}
	for _, f := range frames {
		if err := w.Write(f.Timestamp, f.Data); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func pcapngBytes(tb testing.TB, frames []Frame, link layers.LinkType) []byte {
	tb.Helper()
	var buf bytes.Buffer
	w, err := pcapgo.NewNgWriter(&buf, link)
	if err != nil {
		tb.Fatal(err)
	}
	for _, f := range frames {
		ci := gopacket.CaptureInfo{Timestamp: f.Timestamp, CaptureLength: len(f.Data), Length: len(f.Data)}
		if err := w.WritePacket(ci, f.Data); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	frames := testFrames(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "a.pcap")
	if err := WriteFile(path, frames); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		tsPr time.Duration // timestamp precision of the format (0: ns)
	}{
		{"pcap", raw, 0},
		{"pcap.gz", gzipped(raw), 0},
		{"pcapng", pcapngBytes(t, frames, layers.LinkTypeEthernet), 0},
		{"pcapng.gz", gzipped(pcapngBytes(t, frames, layers.LinkTypeEthernet)), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name)
			if err := os.WriteFile(p, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(frames) {
				t.Fatalf("%d frames, want %d", len(got), len(frames))
			}
			for i := range frames {
				want := frames[i].Timestamp
				if tc.tsPr > 0 {
					want = want.Truncate(tc.tsPr)
				}
				if !bytes.Equal(got[i].Data, frames[i].Data) || !got[i].Timestamp.Equal(want) || got[i].Length != len(frames[i].Data) {
					t.Errorf("frame %d: %d bytes at %v, want %d at %v", i, len(got[i].Data), got[i].Timestamp, len(frames[i].Data), want)
				}
			}
		})
	}
}

// tcpdump (when installed) reads what Writer writes.
func TestTcpdumpReadsOurFiles(t *testing.T) {
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		t.Skip("tcpdump not installed")
	}
	path := filepath.Join(t.TempDir(), "out.pcap")
	if err := WriteFile(path, testFrames(t)); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tcpdump, "-nn", "-r", path).CombinedOutput()
	if err != nil {
		t.Fatalf("tcpdump: %v\n%s", err, out)
	}
	if n := bytes.Count(out, []byte("198.18.0.1.40000")); n != 3 {
		t.Errorf("tcpdump saw %d of 3 packets:\n%s", n, out)
	}
}

func TestErrors(t *testing.T) {
	frames := testFrames(t)
	good := pcapBytes(t, frames)
	// a record header claiming more than MaxFrameLen bytes
	long := append([]byte(nil), good[:24]...)
	long = binary.LittleEndian.AppendUint32(long, 1)
	long = binary.LittleEndian.AppendUint32(long, 0)
	long = binary.LittleEndian.AppendUint32(long, MaxFrameLen+1)
	long = binary.LittleEndian.AppendUint32(long, MaxFrameLen+1)
	var usb bytes.Buffer
	rw := pcapgo.NewWriter(&usb)
	rw.WriteFileHeader(65535, layers.LinkTypeLinuxUSB)
	for _, tc := range []struct {
		name   string
		data   []byte
		record int
		want   error
		frames int // frames read before the error
	}{
		{"empty", nil, 0, ErrFormat, 0},
		{"text file", []byte("hello, world\n"), 0, ErrFormat, 0},
		{"header cut", good[:10], 0, nil, 0},
		{"last record cut", good[:len(good)-5], 3, ErrTruncated, 2},
		{"record header cut", good[:24+8], 1, ErrTruncated, 0},
		{"record too long", long, 1, nil, 0},
		{"usb link type", usb.Bytes(), 0, ErrLinkType, 0},
		{"pcapng usb link type", pcapngBytes(t, frames, layers.LinkTypeLinuxUSB), 1, ErrLinkType, 0},
		{"gzip garbage", []byte{0x1f, 0x8b, 1, 2, 3, 4, 5}, 0, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewReader(bytes.NewReader(tc.data), tc.name)
			n := 0
			if err == nil {
				for {
					_, err = r.Next()
					if err != nil {
						break
					}
					n++
				}
				if _, again := r.Next(); again != err {
					t.Errorf("error not sticky: %v then %v", err, again)
				}
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v (%T), want *Error", err, err)
			}
			if pe.File != tc.name || pe.Record != tc.record || (tc.want != nil && !errors.Is(err, tc.want)) || n != tc.frames {
				t.Errorf("%v (record %d after %d frames), want record %d %v after %d", err, pe.Record, n, tc.record, tc.want, tc.frames)
			}
		})
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing.pcap")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("open missing file: %v", err)
	}
	w, err := NewWriter(io.Discard, "out")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(time.Now(), make([]byte, MaxFrameLen+1)); !errors.Is(err, ErrTooLong) {
		t.Errorf("write too long: %v", err)
	}
}

func FuzzReader(f *testing.F) {
	frames := testFrames(f)
	good := pcapBytes(f, frames)
	ng := pcapngBytes(f, frames, layers.LinkTypeEthernet)
	for _, b := range [][]byte{good, ng, good[:40], ng[:len(ng)-3], gzipped(good)} {
		f.Add(b)
	}
	for _, lt := range []layers.LinkType{layers.LinkTypeLinuxSLL, layers.LinkTypeLinuxSLL2, layers.LinkTypeNull, layers.LinkTypePPP} {
		f.Add(classicPcap(lt, 1, frames, func(fr Frame) []byte { return asLink(f, lt, fr.Data) }))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReader(bytes.NewReader(data), "fuzz")
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("open error %v is not *Error", err)
			}
			return
		}
		for range 10000 {
			fr, err := r.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				var pe *Error
				if !errors.As(err, &pe) || pe.Record == 0 {
					t.Fatalf("record error %v is not *Error with a record", err)
				}
				return
			}
			if len(fr.Data) > MaxFrameLen || fr.Length < len(fr.Data) {
				t.Fatalf("frame of %d bytes, length %d", len(fr.Data), fr.Length)
			}
		}
	})
}
