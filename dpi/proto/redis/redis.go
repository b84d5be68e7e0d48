// Package redis owns the parsing of the commands a Redis client sends, for
// deepwall's DPI: RESP arrays of bulk strings (what every client library
// sends, RESP2 and RESP3 alike) and inline commands (a line of words, as
// typed into telnet), with the command's name and its keys. Keys are taken
// at the positions Redis gives them for the common commands (a table
// below); other commands' first argument is taken as their key. Values
// are skipped, unread; so is everything the server sends.
package redis

import (
	"bytes"

	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/internal/ascii"
)

// Limits.
const (
	// MaxArg bounds a command name or key kept for inspection: a longer
	// one is inspected by its first MaxArg bytes (RedisArgTooLong).
	MaxArg = 1024
	// MaxKeys bounds the keys of one command kept (RedisTooManyKeys).
	MaxKeys = 64
	// MaxInline bounds an inline command line: Redis' own limit
	// (PROTO_INLINE_MAX_SIZE), past which it refuses the line.
	MaxInline = 64 << 10
	// maxLine bounds a RESP header line ("*<n>" or "$<len>").
	maxLine = 24
	// maxBulk is the largest bulk length accepted (Redis' default
	// proto-max-bulk-len is 512 MiB; it may be raised to this).
	maxBulk = 1 << 40
)

// Command is one command. Slices are valid only during the Sink call.
type Command struct {
	// Name is the command name in lower case (at most MaxArg bytes).
	Name []byte
	// Args is the number of arguments after the name.
	Args int
	// Keys are the command's keys, as sent (at most MaxKeys of MaxArg
	// bytes each).
	Keys [][]byte
	// Inline: the command came as an inline line.
	Inline bool
}

// Sink receives what the parser finds.
type Sink interface {
	Command(c *Command)
	Finding(f proto.Finding)
}

// Parser states.
const (
	stStart  = iota // at the start of a command
	stArray         // in the "*<n>" line
	stBulkHd        // in a "$<len>" line
	stBulk          // in a bulk string's bytes and CR LF
	stInline        // in an inline line
)

// Parser parses the client direction of one Redis connection.
type Parser struct {
	sink    Sink
	state   uint8
	stopped bool
	done    bool
	line    []byte // header or inline line spanning chunks
	argc    int    // arguments of the array (name included)
	arg     int    // index of the current argument
	left    int64  // bulk bytes left, CR LF included
	blen    int64  // length of the current bulk string
	keep    bool   // the current bulk is kept (name, key, numkeys)
	cur     []byte // the current bulk's kept bytes
	spec    keySpec
	numKeys int // keys of an EVAL-like command (-1 until read)
	keys    []byte
	ends    [MaxKeys]int32
	nkeys   int
	over    bool // more keys than MaxKeys
	name    [MaxArg]byte
	nname   int
	keySl   [MaxKeys][]byte
	cmd     Command
	offset  int64
	start   int64
}

// Reset readies p for a new connection, keeping its buffers.
func (p *Parser) Reset(sink Sink) {
	line, keys, cur := p.line[:0], p.keys[:0], p.cur[:0]
	*p = Parser{sink: sink, line: line, keys: keys, cur: cur}
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
// replies are ignored) and returns Done.
func (p *Parser) Feed(dir proto.Dir, b []byte) bool {
	if dir != proto.ToServer {
		return p.Done()
	}
	for len(b) > 0 && !p.Done() {
		switch p.state {
		case stStart:
			p.start = p.offset
			p.line = p.line[:0]
			if b[0] == '*' {
				p.state = stArray
			} else {
				p.state = stInline
			}
		case stArray, stBulkHd, stInline:
			limit := maxLine
			if p.state == stInline {
				limit = MaxInline
			}
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				if len(p.line)+len(b) > limit {
					p.fatal()
					return true
				}
				p.line = append(p.line, b...)
				p.offset += int64(len(b))
				return p.Done()
			}
			var l []byte
			if len(p.line) == 0 {
				l = b[:i]
			} else {
				p.line = append(p.line, b[:i]...)
				l = p.line
			}
			if len(l) > limit {
				p.fatal()
				return true
			}
			b = b[i+1:]
			p.offset += int64(i + 1)
			p.lineDone(l)
			p.line = p.line[:0]
		case stBulk:
			n := int(min(int64(len(b)), p.left))
			if p.keep {
				// Keep the string's bytes, not its CR LF.
				data := int(min(int64(n), max(0, p.left-2)))
				if room := MaxArg - len(p.cur); room > 0 {
					p.cur = append(p.cur, b[:min(data, room)]...)
				}
			}
			if crlf := p.left - 2; crlf < int64(n) {
				// The CR LF, in part or whole, is in b[:n]: check it.
				for j := max(0, int(crlf)); j < n; j++ {
					want := byte('\r')
					if p.left-int64(j) == 1 {
						want = '\n'
					}
					if b[j] != want {
						p.fatal()
						return true
					}
				}
			}
			p.left -= int64(n)
			b = b[n:]
			p.offset += int64(n)
			if p.left == 0 {
				p.bulkDone()
			}
		}
	}
	return p.Done()
}

// lineDone handles a complete line (without its LF) of the current state.
func (p *Parser) lineDone(l []byte) {
	if p.state == stInline {
		if len(l) > 0 && l[len(l)-1] == '\r' {
			l = l[:len(l)-1]
		}
		p.inline(l)
		p.state = stStart
		return
	}
	if len(l) < 2 || l[len(l)-1] != '\r' {
		p.fatal()
		return
	}
	n, ok := atoi(l[1 : len(l)-1])
	if p.state == stArray {
		if !ok {
			p.fatal()
			return
		}
		if n <= 0 {
			p.state = stStart // Redis ignores empty and null arrays
			return
		}
		p.argc, p.arg = int(min(n, 1<<31)), 0
		p.begin()
		p.state = stBulkHd
		return
	}
	if l[0] != '$' || !ok || n > maxBulk {
		p.fatal()
		return
	}
	p.blen, p.left = n, n+2
	p.keep = p.wanted(p.arg)
	p.cur = p.cur[:0]
	p.state = stBulk
}

// begin starts a new command.
func (p *Parser) begin() {
	p.nname, p.nkeys, p.over = 0, 0, false
	p.keys = p.keys[:0]
	p.spec, p.numKeys = keySpec{}, -1
}

// bulkDone handles the end of argument p.arg.
func (p *Parser) bulkDone() {
	p.argument(p.arg, p.cur, p.blen > MaxArg)
	p.arg++
	if p.arg == p.argc {
		p.finish(false)
		p.state = stStart
		return
	}
	p.state = stBulkHd
}

// wanted reports whether argument i is kept: the name, a key, or the
// number of keys of an EVAL-like command.
func (p *Parser) wanted(i int) bool {
	if i == 0 {
		return true
	}
	if p.spec.numkeys {
		return i == 2 || p.numKeys >= 0 && i >= 3 && i < 3+p.numKeys
	}
	if p.spec.first == 0 || i < p.spec.first {
		return false
	}
	last := p.spec.last
	if last < 0 {
		last += p.argc
	}
	return i <= last && (i-p.spec.first)%p.spec.step == 0
}

// argument records argument i (its kept bytes v; long: it was longer).
func (p *Parser) argument(i int, v []byte, long bool) {
	switch {
	case i == 0:
		for _, c := range v {
			p.name[p.nname] = ascii.Lower(c)
			p.nname++
		}
		p.spec = specOf(p.name[:p.nname])
		if long {
			p.report(proto.RedisArgTooLong)
		}
	case p.spec.numkeys && i == 2:
		if n, ok := atoi(v); ok && n >= 0 {
			p.numKeys = int(min(n, 1<<31))
		}
	default:
		if !p.wanted(i) {
			return
		}
		if p.nkeys == MaxKeys {
			if !p.over {
				p.over = true
				p.report(proto.RedisTooManyKeys)
			}
			return
		}
		if long {
			p.report(proto.RedisArgTooLong)
		}
		p.keys = append(p.keys, v...)
		p.ends[p.nkeys] = int32(len(p.keys))
		p.nkeys++
	}
}

// finish reports the command.
func (p *Parser) finish(inline bool) {
	c := &p.cmd
	*c = Command{Name: p.name[:p.nname], Args: p.argc - 1, Inline: inline}
	from := int32(0)
	for i := range p.nkeys {
		p.keySl[i] = p.keys[from:p.ends[i]:p.ends[i]]
		from = p.ends[i]
	}
	c.Keys = p.keySl[:p.nkeys]
	p.sink.Command(c)
}

// inline handles an inline command line, split as Redis splits it
// (sdssplitargs: words, "..." with C escapes, '...').
func (p *Parser) inline(l []byte) {
	// Redis splits the line as a C string: a NUL ends it.
	if i := bytes.IndexByte(l, 0); i >= 0 {
		l = l[:i]
	}
	n, ok := splitArgs(l)
	if !ok {
		p.fatal()
		return
	}
	if n == 0 {
		return // an empty line: Redis ignores it
	}
	p.begin()
	p.argc = n
	var buf [MaxArg]byte
	for i, rest := 0, l; i < n; i++ {
		var tok []byte
		var long bool
		tok, long, rest = nextArg(rest, buf[:0])
		if i == 0 || p.wanted(i) || p.spec.numkeys && i == 2 {
			p.argument(i, tok, long)
		}
	}
	p.finish(true)
}

// splitArgs counts the arguments of an inline line; it reports false for
// unbalanced quotes, as Redis refuses them.
func splitArgs(l []byte) (int, bool) {
	n := 0
	var buf [MaxArg]byte
	for {
		l = skipSpaces(l)
		if len(l) == 0 {
			return n, true
		}
		var ok bool
		if _, _, l, ok = scanArg(l, buf[:0]); !ok {
			return 0, false
		}
		n++
	}
}

// nextArg returns the next argument of a line that splitArgs accepted.
func nextArg(l, dst []byte) (arg []byte, long bool, rest []byte) {
	arg, long, rest, _ = scanArg(skipSpaces(l), dst)
	return arg, long, rest
}

// scanArg reads one argument at the start of l (not a space) into dst
// (its first MaxArg bytes; long when there were more).
func scanArg(l, dst []byte) (arg []byte, long bool, rest []byte, ok bool) {
	put := func(c byte) {
		if len(dst) < MaxArg {
			dst = append(dst, c)
		} else {
			long = true
		}
	}
	var inq, insq bool
	i := 0
	for ; i < len(l); i++ {
		c := l[i]
		switch {
		case inq:
			switch {
			case c == '\\' && i+3 < len(l) && l[i+1] == 'x' && ascii.IsHex(l[i+2]) && ascii.IsHex(l[i+3]):
				v, _ := ascii.UnhexPair(l[i+2], l[i+3])
				put(v)
				i += 3
			case c == '\\' && i+1 < len(l):
				i++
				switch e := l[i]; e {
				case 'n':
					put('\n')
				case 'r':
					put('\r')
				case 't':
					put('\t')
				case 'b':
					put('\b')
				case 'a':
					put('\a')
				default:
					put(e)
				}
			case c == '"':
				// The closing quote must be followed by a space or the end.
				if i+1 < len(l) && !isSpace(l[i+1]) {
					return nil, false, nil, false
				}
				return dst, long, l[i+1:], true
			default:
				put(c)
			}
		case insq:
			switch {
			case c == '\\' && i+1 < len(l) && l[i+1] == '\'':
				put('\'')
				i++
			case c == '\'':
				if i+1 < len(l) && !isSpace(l[i+1]) {
					return nil, false, nil, false
				}
				return dst, long, l[i+1:], true
			default:
				put(c)
			}
		default:
			switch {
			case isSpace(c):
				return dst, long, l[i:], true
			case c == '"':
				inq = true
			case c == '\'':
				insq = true
			default:
				put(c)
			}
		}
	}
	if inq || insq {
		return nil, false, nil, false
	}
	return dst, long, l[i:], true
}

func skipSpaces(l []byte) []byte {
	for len(l) > 0 && isSpace(l[0]) {
		l = l[1:]
	}
	return l
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// atoi reads a decimal integer of at most 18 digits (a leading '-'
// allowed).
func atoi(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

func (p *Parser) report(k proto.FindingKind) {
	p.sink.Finding(proto.Finding{Kind: k, Dir: proto.ToServer, Offset: p.start})
}

func (p *Parser) fatal() {
	p.sink.Finding(proto.Finding{Kind: proto.RedisMalformed, Dir: proto.ToServer, Fatal: true, Offset: p.start})
	p.stopped = true
}
