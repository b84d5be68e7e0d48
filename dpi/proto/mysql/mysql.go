// Package mysql owns the parsing of the MySQL and MariaDB client/server
// protocol for deepwall's DPI: the server greeting (capabilities), the
// client's handshake response (user, database, capabilities) or its SSL
// request (after which the connection is TLS and nothing more is parsed),
// and the client's commands: COM_QUERY and COM_STMT_PREPARE text,
// COM_INIT_DB and COM_CHANGE_USER, and the name of every other command.
// Result sets and the rest of what the server sends are skipped by their
// packet lengths, unread.
package mysql

import (
	"encoding/binary"

	"github.com/deepwall/deepwall/dpi/proto"
)

// Limits.
const (
	// MaxQuery bounds the query text of one command kept for inspection
	// (a longer query is inspected by its first MaxQuery bytes, with a
	// MySQLQueryTooLong finding).
	MaxQuery = 64 << 10
	// MaxName bounds a user or database name reported (MySQL's own are
	// 32 and 64 characters, up to 4 bytes each).
	MaxName = 256
	// maxPrefix bounds a COM_QUERY's query-attributes block before the
	// text (values are kept as part of the packet prefix).
	maxPrefix = 4096
	// maxKeep bounds the bytes of one packet kept: the command byte, the
	// query attributes and the query.
	maxKeep   = 1 + maxPrefix + MaxQuery
	headerLen = 4
)

// Capability flags (MySQL's CLIENT_*).
const (
	CapConnectWithDB    = 1 << 3
	CapCompress         = 1 << 5
	CapProtocol41       = 1 << 9
	CapSSL              = 1 << 11
	CapSecureConnection = 1 << 15
	CapPluginAuthLenenc = 1 << 21
	CapQueryAttributes  = 1 << 27
)

// Command codes the parser reads more than the code of.
const (
	ComQuit        = 0x01
	ComInitDB      = 0x02
	ComQuery       = 0x03
	ComCreateDB    = 0x05
	ComDropDB      = 0x06
	ComChangeUser  = 0x11
	ComStmtPrepare = 0x16
)

var commandNames = [...]string{
	"sleep", "quit", "init_db", "query", "field_list", "create_db", "drop_db", "refresh",
	"shutdown", "statistics", "process_info", "connect", "process_kill", "debug", "ping", "time",
	"delayed_insert", "change_user", "binlog_dump", "table_dump", "connect_out", "register_slave", "stmt_prepare", "stmt_execute",
	"stmt_send_long_data", "stmt_close", "stmt_reset", "set_option", "stmt_fetch", "daemon", "binlog_dump_gtid", "reset_connection",
	"clone",
}

// CommandName returns the name of command code c as the mysql.command
// field spells it: "query", "init_db", "stmt_prepare", ... (MySQL's
// COM_ names in lower case without COM_), "stmt_bulk_execute" for
// MariaDB's 0xfa, "unknown" for others.
func CommandName(c byte) string {
	if int(c) < len(commandNames) {
		return commandNames[c]
	}
	if c == 0xfa {
		return "stmt_bulk_execute"
	}
	return "unknown"
}

// Handshake is the client's handshake response or SSL request. Slices
// are valid only during the Sink call.
type Handshake struct {
	User, Database []byte
	// Capabilities are the client's flags (Cap*), as sent.
	Capabilities uint32
	// TLS: this was an SSL request; the rest of the connection is TLS.
	TLS bool
}

// Command is one client command. Slices are valid only during the Sink
// call.
type Command struct {
	Code byte
	// Query is the text of COM_QUERY and COM_STMT_PREPARE (at most
	// MaxQuery bytes; Truncated when longer).
	Query     []byte
	Truncated bool
	// Database is the schema of COM_INIT_DB, COM_CREATE_DB, COM_DROP_DB
	// and COM_CHANGE_USER; User the user of COM_CHANGE_USER.
	Database, User []byte
}

// Name returns CommandName(c.Code).
func (c *Command) Name() string { return CommandName(c.Code) }

// Sink receives what the parser finds.
type Sink interface {
	Handshake(h *Handshake)
	Command(c *Command)
	Finding(f proto.Finding)
}

type dirState struct {
	hdr    [headerLen]byte
	nh     int
	left   int  // payload bytes of the current packet not yet consumed
	total  int  // payload length of the current packet
	want   int  // payload bytes to keep of the current packet
	seq    byte // sequence id of the current packet
	buf    []byte
	done   bool
	offset int64 // stream offset of the next byte
	start  int64 // stream offset of the current packet
	pkts   int
}

// Parser parses both directions of one MySQL connection.
type Parser struct {
	sink       Sink
	d          [2]dirState
	serverCaps uint32
	caps       uint32 // negotiated (client's, masked by the server's when known)
	greeted    bool
	stopped    bool
	hs         Handshake
	cmd        Command
}

// Reset readies p for a new connection, keeping its buffers.
func (p *Parser) Reset(sink Sink) {
	b0, b1 := p.d[0].buf[:0], p.d[1].buf[:0]
	*p = Parser{sink: sink}
	p.d[0].buf, p.d[1].buf = b0, b1
}

// Done reports whether nothing more is parsed: the connection switched to
// TLS or compression, both directions ended, or the parser stopped.
func (p *Parser) Done() bool { return p.stopped || p.d[0].done && p.d[1].done }

// Close tells p that direction dir ended.
func (p *Parser) Close(dir proto.Dir) { p.d[dir&1].done = true }

// Feed parses the next in-order chunk of direction dir and returns Done.
func (p *Parser) Feed(dir proto.Dir, b []byte) bool {
	d := &p.d[dir&1]
	for len(b) > 0 && !d.done && !p.stopped {
		if d.nh < headerLen {
			n := copy(d.hdr[d.nh:], b)
			d.nh += n
			b = b[n:]
			d.offset += int64(n)
			if d.nh < headerLen {
				break
			}
			d.left = int(d.hdr[0]) | int(d.hdr[1])<<8 | int(d.hdr[2])<<16
			d.total = d.left
			d.seq = d.hdr[3]
			wanted := p.keep(dir, d)
			d.want = 0
			if wanted {
				d.want = min(d.left, maxKeep)
			}
			d.buf = d.buf[:0]
			if d.left == 0 {
				if wanted {
					p.packet(dir, d, nil, false)
				}
				d.nh = 0
				d.start = d.offset
				continue
			}
		}
		n := min(len(b), d.left)
		chunk := b[:n]
		b = b[n:]
		d.left -= n
		d.offset += int64(n)
		if k := d.want - len(d.buf); k > 0 {
			if len(d.buf) == 0 && len(chunk) >= d.want {
				// The whole kept prefix is in this chunk: no copy.
				p.packet(dir, d, chunk[:d.want], d.want < d.total)
				d.want = 0
			} else {
				d.buf = append(d.buf, chunk[:min(k, len(chunk))]...)
				if len(d.buf) == d.want {
					p.packet(dir, d, d.buf, d.want < d.total)
					d.want = 0
				}
			}
		}
		if d.left == 0 {
			d.nh = 0
			d.start = d.offset
		}
	}
	return p.Done()
}

// keep reports whether the packet whose header was just read is parsed
// (its first maxKeep bytes kept) or skipped: the first packet of each
// direction (greeting, handshake response) and the client's commands.
func (p *Parser) keep(dir proto.Dir, d *dirState) bool {
	d.pkts++
	// Auth exchanges and LOAD DATA contents have seq > 0; every command
	// starts a new sequence.
	return d.pkts == 1 || dir == proto.ToServer && d.seq == 0
}

// packet handles the kept prefix b of the current packet of direction
// dir; truncated says the packet is longer than b.
func (p *Parser) packet(dir proto.Dir, d *dirState, b []byte, truncated bool) {
	if dir == proto.ToClient {
		p.greeting(b)
		d.done = true // results are not inspected
		return
	}
	if d.pkts == 1 {
		p.handshake(d, b)
		return
	}
	p.command(d, b, truncated)
}

// greeting reads the server's capabilities from its protocol-10 greeting.
func (p *Parser) greeting(b []byte) {
	if len(b) == 0 || b[0] != 10 {
		return // an error packet, or an old protocol: nothing to learn
	}
	i := 1
	for i < len(b) && b[i] != 0 {
		i++
	}
	i += 1 + 4 + 8 + 1 // NUL, connection id, auth data 1, filler
	if i+2 > len(b) {
		return
	}
	caps := uint32(binary.LittleEndian.Uint16(b[i:]))
	if i+2+1+2+2 <= len(b) {
		caps |= uint32(binary.LittleEndian.Uint16(b[i+5:])) << 16
	}
	p.serverCaps, p.greeted = caps, true
}

// handshake reads the client's first packet: an SSL request or a
// handshake response (4.1, or the older 3.20 layout).
func (p *Parser) handshake(d *dirState, b []byte) {
	h := &p.hs
	*h = Handshake{}
	if len(b) < 4 {
		p.fatal(d, proto.MySQLMalformed)
		return
	}
	var user, rest []byte
	caps := uint32(binary.LittleEndian.Uint16(b))
	if caps&CapProtocol41 != 0 {
		if len(b) < 32 {
			p.fatal(d, proto.MySQLMalformed)
			return
		}
		caps = binary.LittleEndian.Uint32(b)
		h.Capabilities = caps
		if len(b) == 32 {
			h.TLS = caps&CapSSL != 0
			if !h.TLS {
				p.fatal(d, proto.MySQLMalformed)
				return
			}
			p.sink.Handshake(h)
			p.stopped = true
			return
		}
		user, rest = cstring(b[32:])
	} else {
		// HandshakeResponse320: caps 2, max packet 3, user, auth.
		if len(b) < 5 {
			p.fatal(d, proto.MySQLMalformed)
			return
		}
		h.Capabilities = caps
		user, rest = cstring(b[5:])
	}
	p.caps = caps
	if p.greeted {
		p.caps &= p.serverCaps
	}
	h.User = bounded(user)
	if p.caps&CapProtocol41 != 0 {
		var ok bool
		if rest, ok = skipAuth(rest, p.caps); ok && p.caps&CapConnectWithDB != 0 {
			db, _ := cstring(rest)
			h.Database = bounded(db)
		}
	}
	p.sink.Handshake(h)
	if p.caps&CapCompress != 0 {
		p.report(d, proto.MySQLCompressed, false)
		p.stopped = true
	}
}

// command reads one command packet.
func (p *Parser) command(d *dirState, b []byte, truncated bool) {
	if len(b) == 0 {
		p.fatal(d, proto.MySQLMalformed)
		return
	}
	c := &p.cmd
	*c = Command{Code: b[0]}
	body := b[1:]
	switch c.Code {
	case ComQuery:
		if p.caps&CapQueryAttributes != 0 {
			var ok bool
			if body, ok = skipQueryAttributes(body); !ok {
				p.fatal(d, proto.MySQLMalformed)
				return
			}
		}
		fallthrough
	case ComStmtPrepare:
		if len(body) > MaxQuery {
			body, truncated = body[:MaxQuery], true
		}
		c.Query, c.Truncated = body, truncated
		if truncated {
			p.report(d, proto.MySQLQueryTooLong, false)
		}
	case ComInitDB, ComCreateDB, ComDropDB:
		c.Database = bounded(body)
	case ComChangeUser:
		user, rest := cstring(body)
		c.User = bounded(user)
		// Auth data: a length byte with SECURE_CONNECTION, else NUL-ended.
		if p.caps&CapSecureConnection != 0 {
			if len(rest) > 0 && int(rest[0]) < len(rest) {
				db, _ := cstring(rest[1+int(rest[0]):])
				c.Database = bounded(db)
			}
		} else if _, rest = cstring(rest); len(rest) > 0 {
			db, _ := cstring(rest)
			c.Database = bounded(db)
		}
	}
	p.sink.Command(c)
}

// skipQueryAttributes skips the query attributes that precede a
// COM_QUERY's text when CLIENT_QUERY_ATTRIBUTES was negotiated.
func skipQueryAttributes(b []byte) ([]byte, bool) {
	n, b, ok := lenenc(b)
	if !ok {
		return nil, false
	}
	if _, b, ok = lenenc(b); !ok { // parameter set count (always 1)
		return nil, false
	}
	if n == 0 {
		return b, true
	}
	if n > maxPrefix {
		return nil, false
	}
	nullMap := (int(n) + 7) / 8
	if len(b) < nullMap+1 || b[nullMap] != 1 {
		// Without new_params_bind_flag the types are unknown.
		return nil, false
	}
	nulls := b[:nullMap]
	b = b[nullMap+1:]
	var types [maxPrefix / 3]byte // a type (2 bytes) and a name (1+) per parameter
	if int(n) > len(types) {
		return nil, false
	}
	for i := range int(n) {
		if len(b) < 2 {
			return nil, false
		}
		types[i] = b[0]
		var l uint64
		if l, b, ok = lenenc(b[2:]); !ok || l > uint64(len(b)) {
			return nil, false
		}
		b = b[l:]
	}
	for i := range int(n) {
		if nulls[i/8]&(1<<(i%8)) != 0 {
			continue
		}
		var size int
		switch types[i] {
		case 0x06: // NULL
		case 0x01: // TINY
			size = 1
		case 0x02, 0x0d: // SHORT, YEAR
			size = 2
		case 0x03, 0x09, 0x04: // LONG, INT24, FLOAT
			size = 4
		case 0x08, 0x05: // LONGLONG, DOUBLE
			size = 8
		case 0x0a, 0x0b, 0x0c, 0x07: // DATE, TIME, DATETIME, TIMESTAMP
			if len(b) < 1 {
				return nil, false
			}
			size = 1 + int(b[0])
		default: // strings, blobs, decimals: length-encoded
			l, r, ok := lenenc(b)
			if !ok || l > uint64(len(r)) {
				return nil, false
			}
			size = len(b) - len(r) + int(l)
		}
		if size > len(b) {
			return nil, false
		}
		b = b[size:]
	}
	return b, true
}

// skipAuth skips the auth response of a 4.1 handshake response.
func skipAuth(b []byte, caps uint32) ([]byte, bool) {
	switch {
	case caps&CapPluginAuthLenenc != 0:
		n, r, ok := lenenc(b)
		if !ok || n > uint64(len(r)) {
			return nil, false
		}
		return r[n:], true
	case caps&CapSecureConnection != 0:
		if len(b) == 0 || int(b[0]) > len(b)-1 {
			return nil, false
		}
		return b[1+int(b[0]):], true
	}
	_, r := cstring(b)
	return r, true
}

// lenenc reads a length-encoded integer.
func lenenc(b []byte) (uint64, []byte, bool) {
	if len(b) == 0 {
		return 0, nil, false
	}
	switch c := b[0]; {
	case c < 0xfb:
		return uint64(c), b[1:], true
	case c == 0xfc && len(b) >= 3:
		return uint64(binary.LittleEndian.Uint16(b[1:])), b[3:], true
	case c == 0xfd && len(b) >= 4:
		return uint64(b[1]) | uint64(b[2])<<8 | uint64(b[3])<<16, b[4:], true
	case c == 0xfe && len(b) >= 9:
		return binary.LittleEndian.Uint64(b[1:]), b[9:], true
	}
	return 0, nil, false
}

// cstring splits b at its first NUL (all of b when there is none).
func cstring(b []byte) (s, rest []byte) {
	for i, c := range b {
		if c == 0 {
			return b[:i], b[i+1:]
		}
	}
	return b, nil
}

func bounded(b []byte) []byte { return b[:min(len(b), MaxName)] }

func (p *Parser) report(d *dirState, k proto.FindingKind, fatal bool) {
	dir := proto.ToServer
	if d == &p.d[1] {
		dir = proto.ToClient
	}
	p.sink.Finding(proto.Finding{Kind: k, Dir: dir, Fatal: fatal, Offset: d.start})
}

func (p *Parser) fatal(d *dirState, k proto.FindingKind) {
	p.report(d, k, true)
	p.stopped = true
}
