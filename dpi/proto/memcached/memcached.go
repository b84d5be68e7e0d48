// Package memcached owns the parsing of the commands a memcached client
// sends, for deepwall's DPI: the text protocol (a command line, and the
// data block of a storage command, skipped) and the binary protocol (a
// 24-byte request header, extras, key, value skipped), with the command's
// name and its keys. A connection speaks the protocol its first byte
// says, as memcached decides it: 0x80 binary, anything else text.
// Everything the server sends is ignored.
package memcached

import (
	"bytes"

	"github.com/deepwall/deepwall/dpi/proto"
)

// Limits.
const (
	// MaxLine bounds a text command line kept for inspection; a longer
	// line (only a multi-key get can be one, memcached refuses any other
	// line past 2048 bytes) stops the parser (MemcachedLineTooLong).
	MaxLine = 64 << 10
	// MaxKeys bounds the keys of one command reported
	// (MemcachedTooManyKeys).
	MaxKeys = 64
	// MaxKey is memcached's own key limit (KEY_MAX_LENGTH): a binary
	// request with a longer key is refused and the connection closed,
	// and a storage command with one has no data block.
	MaxKey = 250
	// maxValue is the largest data block length memcached reads
	// (INT_MAX - 2); a larger one is refused with no data block.
	maxValue = maxInt32 - 2
	maxInt32 = 1<<31 - 1
	// binHeader is the binary protocol's request header length.
	binHeader = 24
	// binMagic is a binary request's magic byte.
	binMagic = 0x80
)

// Command is one command. Slices are valid only during the Sink call.
type Command struct {
	// Name is the command word as sent ("get", "set", "flush_all", "mg",
	// ...; memcached's words are case-sensitive) or, for the binary
	// protocol, the text command of the opcode ("get" for GET, GETQ,
	// GETK and GETKQ; "flush_all" for FLUSH; "incr" for INCREMENT...).
	Name []byte
	// Keys are the command's keys (at most MaxKeys).
	Keys [][]byte
	// Binary: the command came in the binary protocol, as Opcode.
	Binary bool
	Opcode uint8
}

// Sink receives what the parser finds.
type Sink interface {
	Command(c *Command)
	Finding(f proto.Finding)
}

// Parser states.
const (
	stStart   = iota // at the start of the connection
	stLine           // in a text command line
	stData           // in a text data block (and its CR LF)
	stBinHdr         // in a binary request header
	stBinKey         // in a binary request's extras and key
	stBinRest        // in a binary request's value
)

// Parser parses the client direction of one memcached connection.
type Parser struct {
	sink    Sink
	state   uint8
	stopped bool
	done    bool
	line    []byte // text line spanning chunks
	left    int64  // bytes left of a data block (CR LF included) or binary value
	tail    [2]byte
	hdr     [binHeader]byte
	nhdr    int
	extras  int // binary extras left to skip
	key     [MaxKey]byte
	nkey    int
	keyLen  int
	opcode  uint8
	toks    [MaxKeys + 2][]byte
	cmd     Command
	offset  int64
	start   int64
}

// Reset readies p for a new connection, keeping its buffers.
func (p *Parser) Reset(sink Sink) {
	line := p.line[:0]
	*p = Parser{sink: sink, line: line}
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
		var n int
		switch p.state {
		case stStart:
			p.state = stLine
			if b[0] == binMagic {
				p.state = stBinHdr
			}
		case stLine:
			n = p.lineBytes(b)
		case stData:
			n = p.dataBytes(b)
		case stBinHdr:
			if p.nhdr == 0 {
				p.start = p.offset
			}
			n = copy(p.hdr[p.nhdr:], b)
			p.nhdr += n
			if p.nhdr == binHeader {
				p.binHeader()
			}
		case stBinKey:
			n = p.keyBytes(b)
		case stBinRest:
			n = int(min(int64(len(b)), p.left))
			p.left -= int64(n)
			if p.left == 0 {
				p.state, p.nhdr = stBinHdr, 0
			}
		}
		b = b[n:]
		p.offset += int64(n)
	}
	return p.Done()
}

// lineBytes takes a text command line's bytes from b and returns how
// many it used.
func (p *Parser) lineBytes(b []byte) int {
	if len(p.line) == 0 {
		p.start = p.offset
	}
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		if len(p.line)+len(b) > MaxLine {
			p.fatal(proto.MemcachedLineTooLong)
			return len(b)
		}
		p.line = append(p.line, b...)
		return len(b)
	}
	l := b[:i]
	if len(p.line) > 0 {
		p.line = append(p.line, l...)
		l = p.line
	}
	if len(l) > MaxLine {
		p.fatal(proto.MemcachedLineTooLong)
		return i + 1
	}
	p.command(bytes.TrimSuffix(l, []byte("\r")))
	p.line = p.line[:0]
	return i + 1
}

// dataBytes skips a data block's bytes from b, checking that it ends in
// CR LF, and returns how many it used.
func (p *Parser) dataBytes(b []byte) int {
	n := int(min(int64(len(b)), p.left))
	for j := max(0, n-2); j < n; j++ {
		if at := p.left - int64(j); at <= 2 {
			p.tail[2-at] = b[j]
		}
	}
	p.left -= int64(n)
	if p.left == 0 {
		if p.tail != [2]byte{'\r', '\n'} {
			p.report(proto.MemcachedBadDataChunk)
		}
		p.state = stLine
	}
	return n
}

// command handles a text command line (without its line end), split on
// spaces as memcached's tokenize_command splits it.
func (p *Parser) command(l []byte) {
	ntok, more := 0, false
	for len(l) > 0 {
		i := bytes.IndexByte(l, ' ')
		if i < 0 {
			i = len(l)
		}
		if i > 0 {
			if ntok == len(p.toks) {
				more = true
				break
			}
			p.toks[ntok] = l[:i]
			ntok++
		}
		l = l[min(i+1, len(l)):]
	}
	if ntok == 0 {
		return // memcached answers ERROR
	}
	toks := p.toks[:ntok]
	name := toks[0]
	var keys [][]byte
	vlen := int64(-1)
	switch string(name) {
	case "get", "gets":
		keys = toks[1:]
	case "gat", "gats":
		if ntok > 2 {
			keys = toks[2:]
		}
	case "set", "add", "replace", "append", "prepend", "cas":
		keys = toks[1:min(2, ntok)]
		vlen = storageLength(toks)
	case "ms":
		keys = toks[1:min(2, ntok)]
		if ntok >= 3 && len(toks[1]) <= MaxKey {
			if v, ok := atoi(toks[2], true); ok && v >= 0 && v <= maxValue {
				vlen = v
			}
		}
	case "delete", "incr", "decr", "touch", "mg", "md", "ma", "me":
		keys = toks[1:min(2, ntok)]
	}
	if more || len(keys) > MaxKeys {
		p.report(proto.MemcachedTooManyKeys)
		keys = keys[:min(len(keys), MaxKeys)]
	}
	p.cmd = Command{Name: name, Keys: keys}
	p.sink.Command(&p.cmd)
	if vlen >= 0 && !p.Done() {
		p.left, p.state = vlen+2, stData
	}
}

// storageLength returns the data block length of a storage command line
// as memcached reads it (process_update_command), or -1 when memcached
// refuses the line and reads no data block: "<cmd> <key> <flags>
// <exptime> <bytes> [noreply]", cas with "<cas unique>" before noreply.
func storageLength(toks [][]byte) int64 {
	words := 5
	if string(toks[0]) == "cas" {
		words = 6
	}
	if len(toks) != words && len(toks) != words+1 || len(toks[1]) > MaxKey {
		return -1
	}
	// flags and cas unique are unsigned (safe_strtoul, safe_strtoull:
	// a minus sign refused), exptime and bytes 32-bit signed.
	if _, ok := atoi(toks[2], false); !ok {
		return -1
	}
	if v, ok := atoi(toks[3], true); !ok || v < -maxInt32 || v > maxInt32 {
		return -1
	}
	if words == 6 {
		if _, ok := atoi(toks[5], false); !ok {
			return -1
		}
	}
	v, ok := atoi(toks[4], true)
	if !ok || v < 0 || v > maxValue {
		return -1
	}
	return v
}

// binHeader checks a complete binary request header.
func (p *Parser) binHeader() {
	h := &p.hdr
	keyLen := int(h[2])<<8 | int(h[3])
	extras := int(h[4])
	body := int64(h[8])<<24 | int64(h[9])<<16 | int64(h[10])<<8 | int64(h[11])
	if h[0] != binMagic || keyLen > MaxKey || int64(keyLen+extras) > body {
		p.fatal(proto.MemcachedMalformed)
		return
	}
	p.opcode, p.keyLen, p.extras, p.nkey = h[1], keyLen, extras, 0
	p.left = body - int64(keyLen+extras)
	p.state = stBinKey
	if keyLen+extras == 0 {
		p.binCommand()
	}
}

// keyBytes skips a binary request's extras and keeps its key from b,
// returning how many bytes it used.
func (p *Parser) keyBytes(b []byte) int {
	n := min(len(b), p.extras)
	p.extras -= n
	k := min(len(b)-n, p.keyLen-p.nkey)
	p.nkey += copy(p.key[p.nkey:], b[n:n+k])
	if p.extras == 0 && p.nkey == p.keyLen {
		p.binCommand()
	}
	return n + k
}

// binCommand reports a binary request once its key is complete.
func (p *Parser) binCommand() {
	p.cmd = Command{Name: opName(p.opcode), Binary: true, Opcode: p.opcode}
	if p.keyLen > 0 {
		p.toks[0] = p.key[:p.nkey]
		p.cmd.Keys = p.toks[:1]
	}
	p.sink.Command(&p.cmd)
	p.state = stBinRest
	if p.left == 0 {
		p.state, p.nhdr = stBinHdr, 0
	}
}

// opNames are the text commands of the binary opcodes
// (protocol_binary.h); quiet and key-returning forms share their
// command's name.
var opNames = [...]string{
	0x00: "get", 0x01: "set", 0x02: "add", 0x03: "replace", 0x04: "delete",
	0x05: "incr", 0x06: "decr", 0x07: "quit", 0x08: "flush_all", 0x09: "get",
	0x0a: "noop", 0x0b: "version", 0x0c: "get", 0x0d: "get", 0x0e: "append",
	0x0f: "prepend", 0x10: "stats", 0x11: "set", 0x12: "add", 0x13: "replace",
	0x14: "delete", 0x15: "incr", 0x16: "decr", 0x17: "quit", 0x18: "flush_all",
	0x19: "append", 0x1a: "prepend", 0x1b: "verbosity", 0x1c: "touch", 0x1d: "gat",
	0x1e: "gat", 0x20: "sasl_list_mechs", 0x21: "sasl_auth", 0x22: "sasl_step",
	0x23: "gat", 0x24: "gat",
}

// opBytes are opNames as the Command's Name, "unknown" for an opcode
// memcached does not know (and answers with an error).
var opBytes = func() (b [256][]byte) {
	for op := range b {
		s := "unknown"
		if op < len(opNames) && opNames[op] != "" {
			s = opNames[op]
		}
		b[op] = []byte(s)
	}
	return b
}()

// opName returns the text command of opcode op.
func opName(op uint8) []byte { return opBytes[op] }

// atoi reads a decimal integer of memcached's command line: an optional
// sign ('-' only when signed) and at most 18 digits, nothing else. It
// accepts less than memcached's strtol (no leading blanks, no 19-digit
// numbers), so a line it takes for a storage command, memcached does too:
// a data block is never skipped that memcached would read as commands.
func atoi(b []byte, signed bool) (int64, bool) {
	neg := signed && len(b) > 0 && b[0] == '-'
	if neg || len(b) > 0 && b[0] == '+' {
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

func (p *Parser) fatal(k proto.FindingKind) {
	p.sink.Finding(proto.Finding{Kind: k, Dir: proto.ToServer, Fatal: true, Offset: p.start})
	p.stopped = true
}
