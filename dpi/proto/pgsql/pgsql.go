// Package pgsql owns the parsing of the PostgreSQL frontend/backend
// protocol (version 3) for deepwall's DPI: the client's startup packet
// (user, database), its SSL and GSS encryption requests with the server's
// one-byte answer (after a yes the connection is encrypted and nothing
// more is parsed), and its queries: the simple query (Query, 'Q') and the
// extended protocol's Parse ('P'). Every other message is skipped by its
// length, unread; so is everything the server sends after the startup.
package pgsql

import (
	"bytes"
	"encoding/binary"

	"github.com/deepwall/deepwall/dpi/proto"
)

// Limits.
const (
	// MaxQuery bounds the query text of one message kept for inspection
	// (a longer query is inspected by its first MaxQuery bytes, with a
	// PgSQLQueryTooLong finding).
	MaxQuery = 64 << 10
	// MaxName bounds a user, database or statement name reported
	// (PostgreSQL's NAMEDATALEN is 64).
	MaxName = 256
	// maxStartup is the longest startup packet, PostgreSQL's own
	// MAX_STARTUP_PACKET_LENGTH.
	maxStartup = 10000
	// maxMessage is the longest message PostgreSQL accepts
	// (PQ_LARGE_MESSAGE_LIMIT); longer lengths are malformed.
	maxMessage = 1 << 30
	// maxKeep bounds the bytes of one message kept: a Parse's statement
	// name and query.
	maxKeep = max(maxStartup, MaxName+1+MaxQuery)
)

// Request codes of untyped startup-phase packets.
const (
	codeCancel   = 80877102
	codeSSL      = 80877103
	codeGSSENC   = 80877104
	protoMajor3  = 3
	typedHdrLen  = 5 // type and length
	untypedHdrLn = 4 // length
)

// Startup is the client's startup message. Slices are valid only during
// the Sink call.
type Startup struct {
	// User and Database as sent; Database is User when the client sent
	// none (PostgreSQL's default).
	User, Database  []byte
	ApplicationName []byte
	Major, Minor    uint16
}

// Query is a simple query or a Parse message. Slices are valid only
// during the Sink call.
type Query struct {
	// Type is 'Q' (simple query) or 'P' (Parse).
	Type byte
	// Statement is the prepared statement's name of a Parse ("" for the
	// unnamed statement).
	Statement []byte
	// Text is the SQL text, at most MaxQuery bytes (Truncated when
	// longer).
	Text      []byte
	Truncated bool
}

// Sink receives what the parser finds.
type Sink interface {
	Startup(s *Startup)
	// Encrypted reports an SSLRequest ("ssl") or GSSENCRequest ("gss")
	// the server accepted: nothing more is parsed.
	Encrypted(kind string)
	Query(q *Query)
	Finding(f proto.Finding)
}

// Parser parses both directions of one PostgreSQL connection.
type Parser struct {
	sink Sink
	// Client direction.
	hdr     [typedHdrLen]byte
	nh      int
	typed   bool // past the startup packet
	typ     byte
	total   int // length of the current message's body
	left    int // body bytes not yet consumed
	want    int // body bytes to keep
	buf     []byte
	offset  int64
	start   int64
	pending uint32 // an SSL or GSS request awaiting the server's answer
	done    bool   // the client's direction ended
	stopped bool
	st      Startup
	q       Query
}

// Reset readies p for a new connection, keeping its buffer.
func (p *Parser) Reset(sink Sink) {
	b := p.buf[:0]
	*p = Parser{sink: sink, buf: b}
}

// Done reports whether nothing more is parsed: the connection is
// encrypted, the client direction ended, or the parser stopped.
func (p *Parser) Done() bool { return p.stopped || p.done }

// Close tells p that direction dir ended.
func (p *Parser) Close(dir proto.Dir) {
	if dir == proto.ToServer {
		p.done = true
	}
}

// Feed parses the next in-order chunk of direction dir and returns Done.
func (p *Parser) Feed(dir proto.Dir, b []byte) bool {
	if dir == proto.ToClient {
		p.server(b)
		return p.Done()
	}
	for len(b) > 0 && !p.Done() {
		hl := untypedHdrLn
		if p.typed {
			hl = typedHdrLen
		}
		if p.nh < hl {
			n := copy(p.hdr[p.nh:hl], b)
			p.nh += n
			b = b[n:]
			p.offset += int64(n)
			if p.nh < hl {
				break
			}
			if !p.header() {
				return true
			}
			if p.left == 0 {
				p.message(nil)
				p.nh, p.start = 0, p.offset
				continue
			}
		}
		n := min(len(b), p.left)
		chunk := b[:n]
		b = b[n:]
		p.left -= n
		p.offset += int64(n)
		if k := p.want - len(p.buf); k > 0 {
			if len(p.buf) == 0 && len(chunk) >= p.want {
				p.message(chunk[:p.want]) // all in this chunk: no copy
				p.want = 0
			} else {
				p.buf = append(p.buf, chunk[:min(k, len(chunk))]...)
				if len(p.buf) == p.want {
					p.message(p.buf)
					p.want = 0
				}
			}
		}
		if p.left == 0 {
			p.nh, p.start = 0, p.offset
		}
	}
	return p.Done()
}

// header reads the header just completed; it reports false when the
// parser stopped.
func (p *Parser) header() bool {
	p.buf = p.buf[:0]
	var l uint32
	if p.typed {
		p.typ = p.hdr[0]
		l = binary.BigEndian.Uint32(p.hdr[1:])
		if l < 4 || l > maxMessage {
			p.fatal(proto.PgSQLMalformed)
			return false
		}
	} else {
		p.typ = 0
		l = binary.BigEndian.Uint32(p.hdr[:])
		if l < 8 || l > maxStartup || p.pending != 0 {
			// A request before the server answered the last one is
			// not something a client does.
			p.fatal(proto.PgSQLMalformed)
			return false
		}
	}
	p.total = int(l) - 4
	p.left = p.total
	p.want = 0
	if !p.typed || p.typ == 'Q' || p.typ == 'P' {
		p.want = min(p.total, maxKeep)
	}
	return true
}

// message handles the kept part b of the current message.
func (p *Parser) message(b []byte) {
	if !p.typed {
		p.startup(b)
		return
	}
	q := &p.q
	*q = Query{Type: p.typ}
	switch p.typ {
	case 'Q':
		q.Text, _ = cstring(b)
	case 'P':
		var name []byte
		name, b = cstring(b)
		q.Statement = name[:min(len(name), MaxName)]
		q.Text, _ = cstring(b)
	default:
		return
	}
	if len(q.Text) > MaxQuery || p.want < p.total && len(q.Text) == len(b) {
		q.Text, q.Truncated = q.Text[:min(len(q.Text), MaxQuery)], true
		p.report(proto.PgSQLQueryTooLong, false)
	}
	p.sink.Query(q)
}

// startup handles an untyped startup-phase packet (b is its body after
// the length: the code first).
func (p *Parser) startup(b []byte) {
	code := binary.BigEndian.Uint32(b)
	switch {
	case code == codeSSL || code == codeGSSENC:
		p.pending = code
		return
	case code == codeCancel:
		p.done = true
		return
	case code>>16 != protoMajor3:
		p.fatal(proto.PgSQLMalformed)
		return
	}
	st := &p.st
	*st = Startup{Major: uint16(code >> 16), Minor: uint16(code)}
	for kv := b[4:]; len(kv) > 0 && kv[0] != 0; {
		var k, v []byte
		k, kv = cstring(kv)
		v, kv = cstring(kv)
		v = v[:min(len(v), MaxName)]
		switch string(k) {
		case "user":
			st.User = v
		case "database":
			st.Database = v
		case "application_name":
			st.ApplicationName = v
		}
	}
	if len(st.Database) == 0 {
		st.Database = st.User
	}
	p.typed = true
	p.sink.Startup(st)
}

// server reads what the server sends: only the one-byte answer to an
// SSL or GSS request matters.
func (p *Parser) server(b []byte) {
	if p.pending == 0 || len(b) == 0 || p.stopped {
		return
	}
	kind := "ssl"
	if p.pending == codeGSSENC {
		kind = "gss"
	}
	p.pending = 0
	switch b[0] {
	case 'N':
	case 'S', 'G':
		p.sink.Encrypted(kind)
		p.stopped = true
	default:
		// An error message (a server too old for the request): the
		// connection ends.
		p.stopped = true
	}
}

func cstring(b []byte) (s, rest []byte) {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return b[:i], b[i+1:]
	}
	return b, nil
}

func (p *Parser) report(k proto.FindingKind, fatal bool) {
	p.sink.Finding(proto.Finding{Kind: k, Dir: proto.ToServer, Fatal: fatal, Offset: p.start})
}

func (p *Parser) fatal(k proto.FindingKind) {
	p.report(k, true)
	p.stopped = true
}
