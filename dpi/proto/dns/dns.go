// Package dns owns the parsing of DNS messages for deepwall's DPI, over UDP
// (one message per datagram) and TCP (two-byte length framing, several
// messages per stream): the header, the questions with their names
// decompressed safely, and a bounded walk of the records that finds
// malformed messages. It reports malformed messages and traits of DNS
// tunnelling (very long names or labels, many labels, odd query types) as
// findings.
package dns

import (
	"strconv"

	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/internal/ascii"
)

// Limits. The protocol bounds names (255 bytes on the wire, so at most
// 127 labels) and TCP messages (65535 bytes); these bound the work per
// message.
const (
	// MaxQuestions bounds the questions reported per message (the rest
	// are checked, not reported).
	MaxQuestions = 4
	// MaxRecords bounds the resource records walked per message.
	MaxRecords = 256
	// MaxPointers bounds the compression pointers followed per name.
	MaxPointers = 32
	// MaxName is the longest name on the wire (RFC 1035 3.1); decoded
	// names are at most this long too.
	MaxName = 255
	// MaxTCPMessage is the longest DNS-over-TCP message, and what a
	// stream buffers at most when a message spans chunks.
	MaxTCPMessage = 65535
	headerLen     = 12
)

// Config sets the thresholds of the tunnelling findings. Zero fields take
// the defaults.
type Config struct {
	// LongName: query names longer than this (decoded, without the
	// final dot) are DNSLongName.
	LongName int
	// LongLabel: labels longer than this are DNSLongLabel.
	LongLabel int
	// ManyLabels: names with more labels than this (outside .arpa) are
	// DNSManyLabels.
	ManyLabels int
}

// Default thresholds. Tunnels (iodine, dnscat2, DNSExfiltrator) fill
// labels to 63 bytes and names to 150-250; ordinary names stay well below.
const (
	DefaultLongName   = 100
	DefaultLongLabel  = 52
	DefaultManyLabels = 10
)

func (c Config) withDefaults() Config {
	if c.LongName <= 0 {
		c.LongName = DefaultLongName
	}
	if c.LongLabel <= 0 {
		c.LongLabel = DefaultLongLabel
	}
	if c.ManyLabels <= 0 {
		c.ManyLabels = DefaultManyLabels
	}
	return c
}

// Question is one question of a message.
type Question struct {
	// Name is the name as on the wire, labels joined by '.', without the
	// final dot ("" for the root). Label bytes are not escaped or case
	// folded: rules should match caselessly. Valid only during the Sink
	// call.
	Name   []byte
	Labels int
	Type   uint16
	Class  uint16
}

// Message is a parsed DNS message.
type Message struct {
	ID       uint16
	Response bool
	Opcode   uint8
	RCode    uint8
	// Truncated is the TC bit (the answer did not fit a datagram).
	Truncated bool
	// Counts from the header.
	QDCount, ANCount, NSCount, ARCount uint16
	// Questions are the first MaxQuestions questions that parsed.
	Questions []Question
	// Records counts the resource records walked (all of them in a
	// well-formed message of at most MaxRecords records).
	Records int
	// Offset is the stream offset of the message (after the TCP length
	// prefix), 0 for a datagram.
	Offset int64
}

// Query returns the first question's name, or nil (the dns.query rule
// field).
func (m *Message) Query() []byte {
	if len(m.Questions) == 0 {
		return nil
	}
	return m.Questions[0].Name
}

// Sink receives parsed messages and findings.
type Sink interface {
	// Message is called for every message whose header parsed, after
	// the findings about it. m is valid only during the call.
	Message(dir proto.Dir, m *Message)
	Finding(f proto.Finding)
}

// stream is one direction's TCP framing state.
type stream struct {
	lenBuf  [2]byte
	nlen    int
	need    int    // length of the message being read, 0 while reading the prefix
	buf     []byte // message bytes gathered across chunks
	offset  int64  // stream offset of the next byte
	stopped bool
}

// Parser parses DNS messages: datagrams, or the two directions of one TCP
// connection. For UDP one Parser can serve every flow of a worker (a
// datagram leaves no state); for TCP use one per connection.
type Parser struct {
	sink    Sink
	cfg     Config
	tcp     [2]stream
	msg     Message
	qs      [MaxQuestions]Question
	names   [MaxQuestions][MaxName]byte
	found   proto.KindSet
	dir     proto.Dir
	baseOff int64
	udp     bool // parsing a datagram
}

// NewParser returns a parser reporting to sink with thresholds cfg.
func NewParser(sink Sink, cfg Config) *Parser {
	p := &Parser{}
	p.Reset(sink, cfg)
	return p
}

// Reset readies p for a new flow, keeping its buffers.
func (p *Parser) Reset(sink Sink, cfg Config) {
	b0, b1 := p.tcp[0].buf[:0], p.tcp[1].buf[:0]
	p.sink, p.cfg = sink, cfg.withDefaults()
	p.tcp = [2]stream{{buf: b0}, {buf: b1}}
}

// Stopped reports whether the TCP framing of direction dir broke (a
// length prefix too short for a DNS header); nothing more is parsed.
func (p *Parser) Stopped(dir proto.Dir) bool { return p.tcp[dir&1].stopped }

// Datagram parses one UDP datagram sent in direction dir.
func (p *Parser) Datagram(dir proto.Dir, b []byte) {
	p.udp = true
	p.parse(dir, b, 0)
}

// Feed parses the next in-order chunk of a TCP stream in direction dir.
func (p *Parser) Feed(dir proto.Dir, b []byte) {
	s := &p.tcp[dir&1]
	p.udp = false
	for len(b) > 0 && !s.stopped {
		if s.need == 0 {
			n := copy(s.lenBuf[s.nlen:], b)
			s.nlen += n
			b = b[n:]
			s.offset += int64(n)
			if s.nlen < 2 {
				return
			}
			s.nlen = 0
			s.need = int(s.lenBuf[0])<<8 | int(s.lenBuf[1])
			if s.need < headerLen {
				s.stopped = true
				p.sink.Finding(proto.Finding{Kind: proto.DNSInvalidLength, Dir: dir, Fatal: true, Offset: s.offset - 2})
				return
			}
			continue
		}
		if len(s.buf) == 0 && len(b) >= s.need {
			// The whole message is in the chunk: parse in place.
			m := b[:s.need]
			b = b[s.need:]
			p.parse(dir, m, s.offset)
			s.offset += int64(len(m))
			s.need = 0
			continue
		}
		if cap(s.buf) < s.need {
			s.buf = make([]byte, 0, s.need)
		}
		n := min(len(b), s.need-len(s.buf))
		s.buf = append(s.buf, b[:n]...)
		b = b[n:]
		if len(s.buf) == s.need {
			start := s.offset + int64(n) - int64(s.need)
			p.parse(dir, s.buf, start)
			s.buf = s.buf[:0]
			s.need = 0
		}
		s.offset += int64(n)
	}
}

func (p *Parser) report(k proto.FindingKind) {
	if p.found.Add(k) {
		p.sink.Finding(proto.Finding{Kind: k, Dir: p.dir, Offset: p.baseOff})
	}
}

// parse parses one whole message.
func (p *Parser) parse(dir proto.Dir, b []byte, off int64) {
	p.found.Clear()
	p.dir, p.baseOff = dir, off
	if len(b) < headerLen {
		p.report(proto.DNSTruncated)
		return
	}
	m := &p.msg
	flags := uint16(b[2])<<8 | uint16(b[3])
	*m = Message{
		ID:        uint16(b[0])<<8 | uint16(b[1]),
		Response:  flags&0x8000 != 0,
		Opcode:    uint8(flags >> 11 & 0xf),
		Truncated: flags&0x0200 != 0,
		RCode:     uint8(flags & 0xf),
		QDCount:   uint16(b[4])<<8 | uint16(b[5]),
		ANCount:   uint16(b[6])<<8 | uint16(b[7]),
		NSCount:   uint16(b[8])<<8 | uint16(b[9]),
		ARCount:   uint16(b[10])<<8 | uint16(b[11]),
		Questions: p.qs[:0],
		Offset:    off,
	}
	switch m.Opcode {
	case 0, 1, 2, 4, 5, 6:
	default:
		p.report(proto.DNSInvalidOpcode)
	}
	if m.Response != (dir == proto.ToClient) {
		p.report(proto.DNSResponseAsRequest)
	}
	if m.QDCount == 0 && !m.Response && m.Opcode == 0 {
		p.report(proto.DNSNoQuestion)
	}
	if m.QDCount > 1 {
		p.report(proto.DNSManyQuestions)
	}
	pos := headerLen
	ok := true
	for i := 0; i < int(m.QDCount) && ok; i++ {
		var dst []byte
		if i < MaxQuestions {
			dst = p.names[i][:0]
		}
		var name []byte
		var labels, longest int
		name, labels, longest, pos, ok = p.readName(b, pos, dst)
		if !ok {
			break
		}
		if pos+4 > len(b) {
			p.report(proto.DNSTruncated)
			ok = false
			break
		}
		q := Question{Name: name, Labels: labels,
			Type:  uint16(b[pos])<<8 | uint16(b[pos+1]),
			Class: uint16(b[pos+2])<<8 | uint16(b[pos+3])}
		pos += 4
		if !m.Response {
			p.traits(&q, longest)
		}
		if i < MaxQuestions {
			m.Questions = append(m.Questions, q)
		}
	}
	if ok {
		p.records(m, b, pos)
	}
	p.sink.Message(dir, m)
}

// records walks the answer, authority and additional sections.
func (p *Parser) records(m *Message, b []byte, pos int) {
	total := int(m.ANCount) + int(m.NSCount) + int(m.ARCount)
	for i := 0; i < total; i++ {
		if i == MaxRecords {
			p.report(proto.DNSTooManyRecords)
			return
		}
		var ok bool
		_, _, _, pos, ok = p.readName(b, pos, nil)
		if !ok {
			return
		}
		// type(2) class(2) ttl(4) rdlength(2) rdata
		if pos+10 > len(b) {
			p.report(proto.DNSTruncated)
			return
		}
		rdlen := int(b[pos+8])<<8 | int(b[pos+9])
		pos += 10
		if pos+rdlen > len(b) {
			p.report(proto.DNSTruncated)
			return
		}
		pos += rdlen
		m.Records++
	}
	if pos != len(b) {
		p.report(proto.DNSTrailingData)
	}
}

// readName decodes the name at b[pos:] into dst (when dst is not nil),
// following compression pointers only backwards, each to before where the
// previous jump landed, so no name can loop. It returns the name, its
// label count and longest label, the offset after the name where it
// started, and false (after a finding) if the name is malformed.
func (p *Parser) readName(b []byte, pos int, dst []byte) (name []byte, labels, longest, next int, ok bool) {
	next = -1
	limit := pos // a pointer must land before this
	wire := 0
	pointers := 0
	odd := false
	for {
		if pos >= len(b) {
			p.report(proto.DNSTruncated)
			return nil, 0, 0, 0, false
		}
		l := int(b[pos])
		switch l & 0xc0 {
		case 0x00:
			if l == 0 {
				if next < 0 {
					next = pos + 1
				}
				if odd {
					p.report(proto.DNSLabelChars)
				}
				return dst, labels, longest, next, true
			}
			if pos+1+l > len(b) {
				p.report(proto.DNSTruncated)
				return nil, 0, 0, 0, false
			}
			wire += 1 + l
			if wire+1 > MaxName {
				p.report(proto.DNSNameTooLong)
				return nil, 0, 0, 0, false
			}
			label := b[pos+1 : pos+1+l]
			if dst != nil {
				if labels > 0 {
					dst = append(dst, '.')
				}
				dst = append(dst, label...)
				for _, c := range label {
					if !ldh[c] {
						odd = true
					}
				}
			}
			labels++
			longest = max(longest, l)
			pos += 1 + l
		case 0xc0:
			if pos+1 >= len(b) {
				p.report(proto.DNSTruncated)
				return nil, 0, 0, 0, false
			}
			target := (l&0x3f)<<8 | int(b[pos+1])
			if next < 0 {
				next = pos + 2
			}
			pointers++
			if target >= limit || target < headerLen || pointers > MaxPointers {
				p.report(proto.DNSPointerLoop)
				return nil, 0, 0, 0, false
			}
			limit, pos = target, target
		default:
			// 0x40 (extended label types, RFC 6891) and 0x80 are not
			// used in names.
			p.report(proto.DNSInvalidLabel)
			return nil, 0, 0, 0, false
		}
	}
}

// ldh marks the bytes ordinary names use: letters, digits, '-', '_'.
var ldh = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	t['-'], t['_'] = true, true
	return t
}()

// Query types that tunnels favour or that only TCP should carry.
const (
	typeNULL = 10
	typeAXFR = 252
	typeANY  = 255
)

// traits reports the tunnelling hints of a query's question.
func (p *Parser) traits(q *Question, longest int) {
	if len(q.Name) > p.cfg.LongName {
		p.report(proto.DNSLongName)
	}
	if longest > p.cfg.LongLabel {
		p.report(proto.DNSLongLabel)
	}
	if q.Labels > p.cfg.ManyLabels && !hasSuffixFold(q.Name, ".arpa") {
		p.report(proto.DNSManyLabels)
	}
	switch q.Type {
	case typeNULL, typeANY:
		p.report(proto.DNSSuspiciousType)
	case typeAXFR:
		if p.udp {
			// Full zone transfers belong on TCP (IXFR may use UDP); a
			// datagram asking for one is a probe.
			p.report(proto.DNSSuspiciousType)
		}
	}
}

func hasSuffixFold(b []byte, s string) bool {
	return len(b) >= len(s) && ascii.EqualFold(b[len(b)-len(s):], s)
}

var typeNames = map[uint16]string{
	1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 10: "NULL", 12: "PTR", 13: "HINFO", 15: "MX", 16: "TXT",
	28: "AAAA", 33: "SRV", 35: "NAPTR", 41: "OPT", 43: "DS", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY",
	50: "NSEC3", 52: "TLSA", 64: "SVCB", 65: "HTTPS", 99: "SPF", 251: "IXFR", 252: "AXFR", 255: "ANY", 257: "CAA",
}

// TypeName returns a query type's mnemonic ("AAAA"), or "TYPEn" (RFC 3597).
func TypeName(t uint16) string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return "TYPE" + strconv.Itoa(int(t))
}

var rcodeNames = [...]string{"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED",
	"YXDOMAIN", "YXRRSET", "NXRRSET", "NOTAUTH", "NOTZONE"}

// RCodeName returns a response code's mnemonic ("NXDOMAIN"), as EVE
// spells it, or "RCODEn".
func RCodeName(rc uint8) string {
	if int(rc) < len(rcodeNames) {
		return rcodeNames[rc]
	}
	return "RCODE" + strconv.Itoa(int(rc))
}
