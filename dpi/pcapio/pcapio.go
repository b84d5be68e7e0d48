// Package pcapio reads and writes capture files of Ethernet frames for
// tests, replays and offline inspection: pcap (every version libpcap reads,
// 2.0 to 2.4) and pcapng with any number of interfaces (gopacket's pcapgo),
// plain or gzip-compressed, in; pcap out.
//
// Capture files are input like any other: every error says which file,
// which record and why (*Error), and records are bounded by MaxFrameLen.
// deepwall inspects Ethernet frames, so records of the other link types
// captures are commonly taken on (Linux cooked SLL and SLL2, raw IPv4 and
// IPv6, BSD loopback and null, PPP, Cisco HDLC) are given an Ethernet
// header with their network layer's EtherType; a capture whose link type is
// none of these is refused (ErrLinkType).
package pcapio

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// MaxFrameLen bounds the captured length of one record (libpcap's largest
// snap length).
const MaxFrameLen = 262144

// Sentinel errors, wrapped in *Error.
var (
	ErrFormat    = errors.New("not a pcap or pcapng file")
	ErrLinkType  = errors.New("unsupported link type (ethernet, linux sll/sll2, raw ip, loopback/null, ppp, cisco hdlc are)")
	ErrVersion   = errors.New("unsupported pcap version")
	ErrTooLong   = fmt.Errorf("record longer than %d bytes", MaxFrameLen)
	ErrTruncated = errors.New("file ends inside a record")
)

// Error is a failure reading or writing a capture file.
type Error struct {
	File string
	// Record is the 1-based number of the packet record, 0 for the file
	// header.
	Record int
	Err    error
}

func (e *Error) Error() string {
	if e.Record == 0 {
		return fmt.Sprintf("pcap %s: header: %v", e.File, e.Err)
	}
	return fmt.Sprintf("pcap %s: record %d: %v", e.File, e.Record, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Frame is one captured frame, as Ethernet.
type Frame struct {
	Data      []byte
	Timestamp time.Time
	// Length is the frame's length on the wire (≥ len(Data) when the
	// capture truncated it), counting the Ethernet header for records of
	// other link types.
	Length int
}

// Reader reads frames from a pcap or pcapng file.
type Reader struct {
	name   string
	rec    int
	pcap   *classicReader
	ng     *pcapgo.NgReader
	closer io.Closer
	err    error // sticky: after an error Next keeps returning it
}

// Open opens the capture file at path.
func Open(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &Error{File: path, Err: err}
	}
	r, err := NewReader(f, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	r.closer = f
	return r, nil
}

// NewReader reads a capture from r; name is used in errors.
func NewReader(r io.Reader, name string) (*Reader, error) {
	fail := func(err error) (*Reader, error) { return nil, &Error{File: name, Err: err} }
	br := bufio.NewReader(r)
	magic, err := br.Peek(4)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("%w: %d bytes", ErrFormat, len(magic))
		}
		return fail(err)
	}
	if magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fail(fmt.Errorf("gzip: %w", err))
		}
		br = bufio.NewReader(zr)
		if magic, err = br.Peek(4); err != nil {
			return fail(fmt.Errorf("%w: gzip content: %v", ErrFormat, err))
		}
	}
	rd := &Reader{name: name}
	switch m := uint32(magic[0])<<24 | uint32(magic[1])<<16 | uint32(magic[2])<<8 | uint32(magic[3]); m {
	case 0x0a0d0d0a:
		ng, err := pcapgo.NewNgReader(br, pcapgo.NgReaderOptions{SkipUnknownVersion: true, WantMixedLinkType: true})
		if err != nil {
			return fail(fmt.Errorf("pcapng: %w", err))
		}
		rd.ng = ng
	case magicMicros, 0xd4c3b2a1, magicNanos, 0x4d3cb2a1:
		pr, err := newClassicReader(br)
		if err != nil {
			return fail(err)
		}
		if !supportedLink(pr.linkType) {
			return fail(fmt.Errorf("%w: %d (%v)", ErrLinkType, pr.linkType, pr.linkType))
		}
		rd.pcap = pr
	default:
		return fail(fmt.Errorf("%w: magic %#08x", ErrFormat, m))
	}
	return rd, nil
}

// Next returns the next frame, or io.EOF after the last one. The frame's
// Data is the caller's.
func (r *Reader) Next() (Frame, error) {
	if r.err != nil {
		return Frame{}, r.err
	}
	r.rec++
	if r.pcap != nil {
		data, ts, wire, err := r.pcap.next()
		if err != nil {
			if err == io.EOF {
				r.err = io.EOF
				return Frame{}, io.EOF
			}
			return Frame{}, r.fail(err)
		}
		return frame(r.pcap.linkType, data, ts, wire), nil
	}
	data, ci, err := r.ng.ReadPacketData()
	if err != nil {
		if errors.Is(err, io.EOF) {
			r.err = io.EOF
			return Frame{}, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = ErrTruncated
		}
		return Frame{}, r.fail(err)
	}
	if len(data) > MaxFrameLen {
		return Frame{}, r.fail(fmt.Errorf("%w: %d", ErrTooLong, len(data)))
	}
	iface, err := r.ng.Interface(ci.InterfaceIndex)
	if err != nil {
		return Frame{}, r.fail(err)
	}
	if !supportedLink(iface.LinkType) {
		return Frame{}, r.fail(fmt.Errorf("%w: interface %d is %d (%v)", ErrLinkType, ci.InterfaceIndex, iface.LinkType, iface.LinkType))
	}
	return frame(iface.LinkType, data, ci.Timestamp, ci.Length), nil
}

// frame makes the Frame of one record of link type lt.
func frame(lt layers.LinkType, data []byte, ts time.Time, wire int) Frame {
	f := toEthernet(lt, data)
	return Frame{Data: f, Timestamp: ts, Length: max(wire+len(f)-len(data), len(f))}
}

func (r *Reader) fail(err error) error {
	r.err = &Error{File: r.name, Record: r.rec, Err: err}
	return r.err
}

// Close closes the file Open opened.
func (r *Reader) Close() error {
	if r.closer == nil {
		return nil
	}
	err := r.closer.Close()
	r.closer = nil
	return err
}

// ReadFile reads every frame of the capture file at path.
func ReadFile(path string) ([]Frame, error) {
	r, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var frames []Frame
	for {
		f, err := r.Next()
		if errors.Is(err, io.EOF) {
			return frames, nil
		}
		if err != nil {
			return frames, err
		}
		frames = append(frames, f)
	}
}

// Writer writes Ethernet frames to a pcap file with nanosecond timestamps.
type Writer struct {
	name   string
	rec    int
	bw     *bufio.Writer
	w      *pcapgo.Writer
	closer io.Closer
}

// Create creates (or truncates) the pcap file at path.
func Create(path string) (*Writer, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, &Error{File: path, Err: err}
	}
	w, err := NewWriter(f, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	w.closer = f
	return w, nil
}

// NewWriter writes a pcap stream to w; name is used in errors.
func NewWriter(w io.Writer, name string) (*Writer, error) {
	bw := bufio.NewWriter(w)
	pw := pcapgo.NewWriterNanos(bw)
	if err := pw.WriteFileHeader(MaxFrameLen, layers.LinkTypeEthernet); err != nil {
		return nil, &Error{File: name, Err: err}
	}
	return &Writer{name: name, bw: bw, w: pw}, nil
}

// Write appends one frame.
func (w *Writer) Write(ts time.Time, data []byte) error {
	w.rec++
	if len(data) > MaxFrameLen {
		return &Error{File: w.name, Record: w.rec, Err: fmt.Errorf("%w: %d", ErrTooLong, len(data))}
	}
	ci := gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(data), Length: len(data)}
	if err := w.w.WritePacket(ci, data); err != nil {
		return &Error{File: w.name, Record: w.rec, Err: err}
	}
	return nil
}

// Close flushes the stream and closes the file Create opened.
func (w *Writer) Close() error {
	err := w.bw.Flush()
	if w.closer != nil {
		if cerr := w.closer.Close(); err == nil {
			err = cerr
		}
		w.closer = nil
	}
	if err != nil {
		return &Error{File: w.name, Record: w.rec, Err: err}
	}
	return nil
}

// WriteFile writes frames to a new pcap file at path.
func WriteFile(path string, frames []Frame) error {
	w, err := Create(path)
	if err != nil {
		return err
	}
	for _, f := range frames {
		if err := w.Write(f.Timestamp, f.Data); err != nil {
			w.Close()
			return err
		}
	}
	return w.Close()
}
