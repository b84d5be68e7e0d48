package pcapio

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// Classic pcap file header fields (libpcap's pcap/pcap.h and sf-pcap.c).
const (
	pcapHeaderLen = 24
	pcapRecordLen = 16
	magicMicros   = 0xa1b2c3d4
	magicNanos    = 0xa1b23c4d
	// linkTypeMask keeps the link type of the header's network field; the
	// bits above may say that records end in a frame check sequence
	// (fcsPresent) and its length in 16-bit words (bits 28-31).
	linkTypeMask = 0x03ffffff
	fcsPresent   = 0x04000000
)

// lengthOrder says where a record header keeps the captured and the wire
// length: versions before 2.3 wrote them the other way round, and 2.3
// files exist with either order (libpcap's lengths_swapped).
type lengthOrder uint8

const (
	lengthsNormal lengthOrder = iota
	lengthsMaybeSwapped
	lengthsSwapped
)

// classicReader reads a pcap file of any version libpcap reads (2.0 to
// 2.4). gopacket's pcapgo.Reader takes 2.4 only, and the corpora users
// inspect hold older files.
type classicReader struct {
	r        io.Reader
	order    binary.ByteOrder
	nanos    bool
	lengths  lengthOrder
	linkType layers.LinkType
	fcsLen   int
	hdr      [pcapRecordLen]byte
}

func newClassicReader(br *bufio.Reader) (*classicReader, error) {
	var h [pcapHeaderLen]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return nil, fmt.Errorf("%w: %d-byte header cut short", ErrFormat, pcapHeaderLen)
	}
	c := &classicReader{r: br}
	switch {
	case binary.LittleEndian.Uint32(h[:]) == magicMicros:
		c.order = binary.LittleEndian
	case binary.LittleEndian.Uint32(h[:]) == magicNanos:
		c.order, c.nanos = binary.LittleEndian, true
	case binary.BigEndian.Uint32(h[:]) == magicMicros:
		c.order = binary.BigEndian
	case binary.BigEndian.Uint32(h[:]) == magicNanos:
		c.order, c.nanos = binary.BigEndian, true
	default:
		return nil, fmt.Errorf("%w: magic %#08x", ErrFormat, binary.BigEndian.Uint32(h[:]))
	}
	major, minor := c.order.Uint16(h[4:]), c.order.Uint16(h[6:])
	switch {
	case major != 2 || minor > 4:
		return nil, fmt.Errorf("%w: version %d.%d", ErrVersion, major, minor)
	case minor < 3:
		c.lengths = lengthsSwapped
	case minor == 3:
		c.lengths = lengthsMaybeSwapped
	}
	network := c.order.Uint32(h[20:])
	c.linkType = layers.LinkType(network & linkTypeMask)
	if network&fcsPresent != 0 {
		c.fcsLen = int(network>>28) * 2
	}
	return c, nil
}

// next reads one record.
func (c *classicReader) next() (data []byte, ts time.Time, wire int, err error) {
	if _, err = io.ReadFull(c.r, c.hdr[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, ts, 0, io.EOF
		}
		return nil, ts, 0, ErrTruncated
	}
	sec, frac := c.order.Uint32(c.hdr[0:]), c.order.Uint32(c.hdr[4:])
	capLen, wireLen := c.order.Uint32(c.hdr[8:]), c.order.Uint32(c.hdr[12:])
	if c.lengths == lengthsSwapped || (c.lengths == lengthsMaybeSwapped && capLen > wireLen) {
		capLen, wireLen = wireLen, capLen
	}
	if capLen > MaxFrameLen {
		return nil, ts, 0, fmt.Errorf("%w: %d", ErrTooLong, capLen)
	}
	ns := int64(frac)
	if !c.nanos {
		ns *= 1000
	}
	ts = time.Unix(int64(sec), ns).UTC()
	data = make([]byte, capLen)
	if _, err = io.ReadFull(c.r, data); err != nil {
		return nil, ts, 0, ErrTruncated
	}
	// A frame check sequence is not part of the packet; strip it when the
	// record holds the whole frame.
	if c.fcsLen > 0 && capLen == wireLen && len(data) >= c.fcsLen {
		data = data[:len(data)-c.fcsLen]
		wireLen -= uint32(c.fcsLen)
	}
	return data, ts, int(wireLen), nil
}
