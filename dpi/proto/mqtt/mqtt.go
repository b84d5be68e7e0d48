// Package mqtt owns the parsing of the control packets an MQTT client
// sends (MQTT 3.1, 3.1.1 and 5.0), for deepwall's DPI: each packet's type,
// the client id and user name of CONNECT, the topic of PUBLISH and the
// topic filters of SUBSCRIBE and UNSUBSCRIBE. Payloads (messages, will
// messages, passwords) are skipped, unread; so is everything the server
// sends.
package mqtt

import (
	"github.com/deepwall/deepwall/dpi/proto"
)

// Limits.
const (
	// MaxKeep bounds the bytes of a CONNECT, SUBSCRIBE or UNSUBSCRIBE
	// packet kept for parsing (and the topic of a PUBLISH: MQTT's
	// strings are at most 65535 bytes). What a longer packet holds past
	// it is not inspected (MQTTPacketTooLong).
	MaxKeep = 2 + 65535 + 16
	// MaxTopics bounds the topic filters of one packet reported
	// (MQTTTooManyTopics).
	MaxTopics = 64
	// maxLenBytes is the longest remaining-length varint (MQTT 2.2.3).
	maxLenBytes = 4
)

// Control packet types (MQTT 2.1.2).
const (
	Connect     = 1
	Publish     = 3
	Subscribe   = 8
	Unsubscribe = 10
)

// typeNames are the packet types as Packet.Name spells them.
var typeNames = [16]string{
	"reserved", "connect", "connack", "publish", "puback", "pubrec", "pubrel", "pubcomp",
	"subscribe", "suback", "unsubscribe", "unsuback", "pingreq", "pingresp", "disconnect", "auth",
}

// typeBytes are typeNames as Packet.Name.
var typeBytes = func() (b [16][]byte) {
	for i, s := range typeNames {
		b[i] = []byte(s)
	}
	return b
}()

// Packet is one control packet. Slices are valid only during the Sink
// call.
type Packet struct {
	// Type is the control packet type (1-15); Name its name in lower
	// case ("connect", "publish", "subscribe", "pingreq"...).
	Type uint8
	Name []byte
	// ClientID and User are a CONNECT's client identifier and user name
	// (User nil without the user name flag); Version its protocol level
	// (3: 3.1, 4: 3.1.1, 5: 5.0).
	ClientID, User []byte
	Version        uint8
	// Topics are a PUBLISH's topic name, or the topic filters of a
	// SUBSCRIBE or UNSUBSCRIBE (at most MaxTopics).
	Topics [][]byte
}

// Sink receives what the parser finds.
type Sink interface {
	Packet(p *Packet)
	Finding(f proto.Finding)
}

// Parser states.
const (
	stHeader = iota // in a fixed header
	stBody          // in a packet's variable header and payload
)

// Parser parses the client direction of one MQTT connection.
type Parser struct {
	sink    Sink
	state   uint8
	stopped bool
	done    bool
	version uint8 // of the CONNECT; 4 until one is seen
	first   byte  // the fixed header's first byte
	nlen    int   // remaining-length bytes read
	left    int64 // bytes of the packet left
	rem     int64 // the packet's remaining length
	want    int   // bytes of the packet to keep
	grown   bool  // want has grown by a PUBLISH's topic length
	keep    []byte
	topics  [MaxTopics][]byte
	pkt     Packet
	offset  int64
	start   int64
}

// Reset readies p for a new connection, keeping its buffers.
func (p *Parser) Reset(sink Sink) {
	keep := p.keep[:0]
	*p = Parser{sink: sink, keep: keep, version: 4}
}

// Done reports whether nothing more is parsed (the client direction
// ended or the parser stopped).
func (p *Parser) Done() bool { return p.stopped || p.done }

// Close tells p that direction dir ended.
func (p *Parser) Close(dir proto.Dir) {
	if dir == proto.ToServer {
		p.done = true
	}
}

// Feed parses the next in-order chunk of direction dir (the server's
// packets are ignored) and returns Done.
func (p *Parser) Feed(dir proto.Dir, b []byte) bool {
	if dir != proto.ToServer {
		return p.Done()
	}
	for len(b) > 0 && !p.Done() {
		n := 1
		switch p.state {
		case stHeader:
			p.headerByte(b[0])
		case stBody:
			n = p.bodyBytes(b)
		}
		b = b[n:]
		p.offset += int64(n)
	}
	return p.Done()
}

// headerByte takes the next byte of a fixed header: the type and flags,
// then the remaining length's varint.
func (p *Parser) headerByte(c byte) {
	if p.nlen == 0 && p.first == 0 {
		if c>>4 == 0 {
			p.fatal() // type 0 is reserved: the server closes
			return
		}
		p.start, p.first, p.rem = p.offset, c, 0
		return
	}
	p.rem |= int64(c&0x7f) << (7 * p.nlen)
	p.nlen++
	if c&0x80 != 0 {
		if p.nlen == maxLenBytes {
			p.fatal()
		}
		return
	}
	p.left, p.keep = p.rem, p.keep[:0]
	p.want, p.grown = 0, false
	switch p.first >> 4 {
	case Connect, Subscribe, Unsubscribe:
		p.want = int(min(p.rem, MaxKeep))
	case Publish:
		p.want = int(min(p.rem, 2)) // the topic's length, then the topic
	}
	p.state = stBody
	if p.want == 0 {
		p.kept()
	}
	if p.left == 0 {
		p.next()
	}
}

// bodyBytes takes a packet's bytes from b, keeping what the packet's
// parsing needs, and returns how many it used.
func (p *Parser) bodyBytes(b []byte) int {
	n := int(min(int64(len(b)), p.left))
	if room := p.want - len(p.keep); room > 0 {
		n = min(n, room)
		p.keep = append(p.keep, b[:n]...)
		if len(p.keep) == p.want {
			p.kept()
		}
	}
	p.left -= int64(n)
	if p.left == 0 {
		p.next()
	}
	return n
}

// kept handles the packet once the bytes it needs are kept: a PUBLISH's
// topic length says how many more it needs.
func (p *Parser) kept() {
	if p.first>>4 == Publish && !p.grown && len(p.keep) == 2 {
		p.grown = true
		tl := int(p.keep[0])<<8 | int(p.keep[1])
		if p.want = int(min(p.rem, int64(2+tl))); p.want > 2 {
			return
		}
	}
	p.packet()
}

// next readies p for the next fixed header.
func (p *Parser) next() {
	p.state, p.first, p.nlen = stHeader, 0, 0
}

// packet reports the packet from its kept bytes.
func (p *Parser) packet() {
	typ := p.first >> 4
	p.pkt = Packet{Type: typ, Name: typeBytes[typ]}
	r := reader{b: p.keep}
	// truncated: the packet is longer than MaxKeep.
	truncated := false
	switch typ {
	case Connect, Subscribe, Unsubscribe:
		truncated = int64(len(p.keep)) < p.rem
	}
	switch typ {
	case Connect:
		if !p.connect(&r) {
			p.fatal()
			return
		}
	case Publish:
		t := r.str()
		if r.bad {
			p.fatal()
			return
		}
		p.topics[0] = t
		p.pkt.Topics = p.topics[:1]
	case Subscribe, Unsubscribe:
		p.filters(&r, typ == Subscribe)
	}
	if r.bad && !truncated {
		p.fatal()
		return
	}
	if truncated {
		p.report(proto.MQTTPacketTooLong)
	}
	p.sink.Packet(&p.pkt)
}

// filters reads the topic filters of a SUBSCRIBE (each with its options
// byte) or an UNSUBSCRIBE (MQTT 3.8.3, 3.10.3).
func (p *Parser) filters(r *reader, options bool) {
	r.skip(2) // packet identifier
	if p.version == 5 {
		r.skip(r.varint()) // properties
	}
	n, over := 0, false
	for !r.bad && len(r.b) > 0 {
		t := r.str()
		if options {
			r.skip(1)
		}
		if r.bad {
			break
		}
		if n == MaxTopics {
			over = true
			continue
		}
		p.topics[n] = t
		n++
	}
	p.pkt.Topics = p.topics[:n]
	if over {
		p.report(proto.MQTTTooManyTopics)
	}
}

// connect reads a CONNECT's variable header and the client id and user
// name of its payload (MQTT 3.1.2, 3.1.3). It reports false for a
// protocol name other than MQTT's.
func (p *Parser) connect(r *reader) bool {
	name := r.str()
	level := r.byte()
	flags := r.byte()
	r.skip(2) // keep alive
	if string(name) != "MQTT" && string(name) != "MQIsdp" {
		return false
	}
	p.version, p.pkt.Version = level, level
	if level == 5 {
		r.skip(r.varint()) // properties
	}
	p.pkt.ClientID = r.str()
	if flags&0x04 != 0 { // will: properties (5.0), topic, message
		if level == 5 {
			r.skip(r.varint())
		}
		r.str()
		r.str()
	}
	if flags&0x80 != 0 {
		p.pkt.User = r.str()
	}
	return true
}

// reader reads MQTT's encodings from a kept packet; bad turns true at
// the first read past its end.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) fail() {
	r.b, r.bad = nil, true
}

// str reads a UTF-8 string: a two-byte length and the bytes.
func (r *reader) str() []byte {
	if len(r.b) < 2 || len(r.b) < 2+(int(r.b[0])<<8|int(r.b[1])) {
		r.fail()
		return nil
	}
	n := int(r.b[0])<<8 | int(r.b[1])
	s := r.b[2 : 2+n]
	r.b = r.b[2+n:]
	return s
}

func (r *reader) byte() byte {
	if len(r.b) < 1 {
		r.fail()
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) skip(n int) {
	if n < 0 || len(r.b) < n {
		r.fail()
		return
	}
	r.b = r.b[n:]
}

// varint reads a variable byte integer (MQTT 1.5.5), -1 when broken.
func (r *reader) varint() int {
	v := 0
	for i := range maxLenBytes {
		if len(r.b) == 0 {
			break
		}
		c := r.b[0]
		r.b = r.b[1:]
		v |= int(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return v
		}
	}
	return -1
}

func (p *Parser) report(k proto.FindingKind) {
	p.sink.Finding(proto.Finding{Kind: k, Dir: proto.ToServer, Offset: p.start})
}

func (p *Parser) fatal() {
	p.sink.Finding(proto.Finding{Kind: proto.MQTTMalformed, Dir: proto.ToServer, Fatal: true, Offset: p.start})
	p.stopped = true
}
