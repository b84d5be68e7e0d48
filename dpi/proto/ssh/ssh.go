// Package ssh owns the parsing of an SSH connection's cleartext start: the
// identification lines ("SSH-2.0-OpenSSH_9.6 comment") that each side
// sends (RFC 4253 4.2), with the protocol and software versions. After
// them the parser says Done: the key exchange and everything after are
// not for rules to match.
package ssh

import (
	"bytes"

	"github.com/deepwall/deepwall/dpi/proto"
)

// Limits.
const (
	// MaxLine bounds the identification line, CR LF included (RFC 4253
	// 4.2), and the lines a server may send before it.
	MaxLine = 255
	// MaxPreBannerLines bounds the lines a server may send before its
	// identification line.
	MaxPreBannerLines = 32
)

// Banner is a parsed identification line. Its slices are valid only
// during the Sink call.
type Banner struct {
	// Line is the whole line without its line end.
	Line []byte
	// ProtoVersion is "2.0", "1.99" (2.0 with 1.x compatibility) or
	// "1.x"; Software the software version ("OpenSSH_9.6p1"); Comments
	// what follows the first space, if anything.
	ProtoVersion, Software, Comments []byte
}

// Sink receives the banners and findings.
type Sink interface {
	Banner(dir proto.Dir, b *Banner)
	Finding(f proto.Finding)
}

type dirState struct {
	dir    proto.Dir
	done   bool
	line   [MaxLine]byte // a line spanning chunks
	n      int
	lines  int   // lines before the identification line
	offset int64 // stream offset of the next byte
	start  int64 // stream offset of the current line
}

// Parser parses both directions of one SSH connection.
type Parser struct {
	sink    Sink
	d       [2]dirState
	stopped bool
	banner  Banner
}

// NewParser returns a parser reporting to sink.
func NewParser(sink Sink) *Parser {
	p := &Parser{}
	p.Reset(sink)
	return p
}

// Reset readies p for a new connection.
func (p *Parser) Reset(sink Sink) {
	*p = Parser{sink: sink}
	p.d[0].dir, p.d[1].dir = proto.ToServer, proto.ToClient
}

// Done reports whether both banners were parsed, or the parser stopped.
func (p *Parser) Done() bool { return p.stopped || p.d[0].done && p.d[1].done }

// DirDone reports whether direction dir has nothing more to parse.
func (p *Parser) DirDone(dir proto.Dir) bool { return p.stopped || p.d[dir&1].done }

// Feed parses the next in-order chunk of direction dir and returns Done.
func (p *Parser) Feed(dir proto.Dir, b []byte) bool {
	d := &p.d[dir&1]
	for len(b) > 0 && !d.done && !p.stopped {
		lf := bytes.IndexByte(b, '\n')
		if lf < 0 {
			if d.n+len(b) >= MaxLine {
				p.fatal(d, proto.SSHBannerTooLong)
				break
			}
			d.n += copy(d.line[d.n:], b)
			d.offset += int64(len(b))
			break
		}
		var line []byte
		if d.n == 0 {
			line = b[:lf]
		} else {
			if d.n+lf+1 > MaxLine {
				p.fatal(d, proto.SSHBannerTooLong)
				break
			}
			d.n += copy(d.line[d.n:], b[:lf])
			line = d.line[:d.n]
		}
		if len(line)+1 > MaxLine {
			p.fatal(d, proto.SSHBannerTooLong)
			break
		}
		b = b[lf+1:]
		d.offset += int64(lf + 1)
		p.line(d, line)
		d.n = 0
		d.start = d.offset
	}
	return p.Done()
}

// Close tells p that direction dir ended.
func (p *Parser) Close(dir proto.Dir) { p.d[dir&1].done = true }

func (p *Parser) report(d *dirState, k proto.FindingKind) {
	p.sink.Finding(proto.Finding{Kind: k, Dir: d.dir, Offset: d.start})
}

func (p *Parser) fatal(d *dirState, k proto.FindingKind) {
	p.sink.Finding(proto.Finding{Kind: k, Dir: d.dir, Fatal: true, Offset: d.start})
	p.stopped = true
}

// line handles one line (without its LF).
func (p *Parser) line(d *dirState, line []byte) {
	bareLF := len(line) == 0 || line[len(line)-1] != '\r'
	if !bareLF {
		line = line[:len(line)-1]
	}
	if !bytes.HasPrefix(line, []byte("SSH-")) {
		// Only a server may send other lines first (RFC 4253 4.2).
		if d.dir == proto.ToServer {
			p.fatal(d, proto.SSHInvalidBanner)
			return
		}
		if d.lines++; d.lines > MaxPreBannerLines {
			p.fatal(d, proto.SSHTooManyLines)
		}
		return
	}
	rest := line[4:]
	dash := bytes.IndexByte(rest, '-')
	if dash <= 0 || dash == len(rest)-1 {
		p.fatal(d, proto.SSHInvalidBanner)
		return
	}
	version := rest[:dash]
	if !validVersion(version) {
		p.fatal(d, proto.SSHInvalidBanner)
		return
	}
	sw := rest[dash+1:]
	var comments []byte
	if sp := bytes.IndexByte(sw, ' '); sp >= 0 {
		sw, comments = sw[:sp], sw[sp+1:]
	}
	if len(sw) == 0 {
		p.fatal(d, proto.SSHInvalidBanner)
		return
	}
	if bareLF {
		p.report(d, proto.SSHBareLF)
	}
	for _, c := range line {
		if c < 0x20 || c > 0x7e {
			p.report(d, proto.SSHInvalidChars)
			break
		}
	}
	if version[0] == '1' && string(version) != "1.99" {
		p.report(d, proto.SSHVersion1)
	}
	p.banner = Banner{Line: line, ProtoVersion: version, Software: sw, Comments: comments}
	p.sink.Banner(d.dir, &p.banner)
	d.done = true
}

// validVersion checks "<digits>.<digits>".
func validVersion(v []byte) bool {
	dot := bytes.IndexByte(v, '.')
	if dot <= 0 || dot == len(v)-1 {
		return false
	}
	for i, c := range v {
		if i != dot && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}
