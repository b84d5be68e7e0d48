package proto

import (
	"bytes"

	"github.com/deepwall/deepwall/internal/ascii"
)

// Status is the answer of identification.
type Status uint8

const (
	// NeedMore: the bytes so far start like one or more protocols; feed
	// more (up to MaxIdentifyBytes per direction).
	NeedMore Status = iota
	// Identified: the protocol is known.
	Identified
	// NotIdentified: no protocol matches, or MaxIdentifyBytes went by
	// without a decision. The protocol is Unknown.
	NotIdentified
)

// String returns "need-more", "identified" or "not-identified".
func (s Status) String() string {
	switch s {
	case NeedMore:
		return "need-more"
	case Identified:
		return "identified"
	}
	return "not-identified"
}

// MaxIdentifyBytes bounds how many bytes of each stream direction
// identification looks at (and Identifier buffers). A direction that is still
// undecided at this many bytes is NotIdentified. It covers the longest
// prefix any detector needs: a DNS-over-TCP question (2+12+255+4 bytes) and
// an SMTP/FTP greeting line.
const MaxIdentifyBytes = 512

// verdict is one detector's answer on a prefix.
type verdict uint8

const (
	no verdict = iota
	maybe
	yes
)

// IdentifyStream identifies the protocol of a TCP stream from the first
// bytes b sent in direction dir (b must start at the stream's first byte).
// It never reports NeedMore once len(b) >= MaxIdentifyBytes: bytes that
// still start like a protocol there are that protocol (detect), since a
// server of it would go on reading them — an HTTP request line with a long
// method or target must not become unidentified traffic.
//
// Some greetings are ambiguous on their own (an FTP server's "220 " without
// the word FTP); Identifier resolves them with the other direction.
func IdentifyStream(dir Dir, b []byte) (Protocol, Status) {
	if len(b) > MaxIdentifyBytes {
		b = b[:MaxIdentifyBytes]
	}
	if len(b) == 0 {
		return Unknown, NeedMore
	}
	switch match, may := detect(dir, b); {
	case match != Unknown:
		return match, Identified
	case may == Unknown:
		return Unknown, NotIdentified
	case len(b) < MaxIdentifyBytes:
		return Unknown, NeedMore
	default:
		return may, Identified
	}
}

// detect runs the detectors of direction dir over b, in order: it returns
// the protocol that matched, or Unknown and the first protocol b may still
// become (Unknown when none).
func detect(dir Dir, b []byte) (match, may Protocol) {
	dets := serverDetectors[:]
	if dir == ToServer {
		dets = clientDetectors[:]
	}
	for _, d := range dets {
		switch d.fn(b) {
		case yes:
			return d.proto, Unknown
		case maybe:
			if may == Unknown {
				may = d.proto
			}
		}
	}
	return Unknown, may
}

// IdentifyDatagram identifies the protocol of a UDP flow from one whole
// datagram sent in direction dir. It never reports NeedMore.
func IdentifyDatagram(dir Dir, b []byte) (Protocol, Status) {
	if isDNSMessage(dir, b, false) == yes {
		return DNS, Identified
	}
	if isQUIC(dir, b) || isGQUIC(dir, b) {
		return QUIC, Identified
	}
	return Unknown, NotIdentified
}

// IsServerFirst reports whether b, the first payload of a TCP flow picked
// up mid-stream, is what only a server sends: an HTTP response, a TLS
// ServerHello or alert, an SMTP/FTP/POP3/IMAP greeting, a MySQL greeting.
// The flow table then takes its sender for the server (flow.Config).
func IsServerFirst(b []byte) bool {
	if len(b) > MaxIdentifyBytes {
		b = b[:MaxIdentifyBytes]
	}
	for _, d := range serverDetectors {
		if d.proto == SSH || d.proto == DNS { // both sides send these
			continue
		}
		if d.fn(b) == yes {
			return true
		}
	}
	return false
}

type streamDetector struct {
	proto Protocol
	fn    func([]byte) verdict
}

var clientDetectors = [...]streamDetector{
	{HTTP1, isHTTPRequest},
	{HTTP2, isHTTP2Preface},
	{TLS, isTLSClientHello},
	{TLS, isSSLv2ClientHello},
	{SSH, isSSHBanner},
	{DNS, func(b []byte) verdict { return isDNSMessage(ToServer, b, true) }},
	{SMTP, isSMTPClient},
	{Redis, isRedisCommand},
	{PostgreSQL, isPostgresStartup},
	{MQTT, isMQTTConnect},
	{HTTP1, isHTTPExtensionRequest},
	{Memcached, isMemcachedCommand}, // after HTTP: "get / HTTP/1.1" is HTTP
}

var serverDetectors = [...]streamDetector{
	{HTTP1, isHTTPResponse},
	{TLS, isTLSServerFirst},
	{SSH, isSSHBanner},
	{DNS, func(b []byte) verdict { return isDNSMessage(ToClient, b, true) }},
	{SMTP, func(b []byte) verdict { return is220Greeting(b, "SMTP") }},
	{FTP, func(b []byte) verdict { return is220Greeting(b, "FTP") }},
	{POP3, isPOP3Greeting},
	{IMAP, isIMAPGreeting},
	{MySQL, isMySQLGreeting},
}

// hasPrefix compares b with the start of p: yes when b holds all of p,
// maybe when b is a shorter prefix of p.
func hasPrefix(b []byte, p string) verdict {
	if len(b) >= len(p) {
		if string(b[:len(p)]) == p {
			return yes
		}
		return no
	}
	if string(b) == p[:len(b)] {
		return maybe
	}
	return no
}

// hasPrefixFold is hasPrefix with ASCII case folding.
func hasPrefixFold(b []byte, p string) verdict {
	n := min(len(b), len(p))
	if !ascii.EqualFold(b[:n], p[:n]) {
		return no
	}
	if n < len(p) {
		return maybe
	}
	return yes
}

// hasAnyPrefixFold is hasPrefixFold for several prefixes: yes when one of
// them matches, maybe when b may still become one of them.
func hasAnyPrefixFold(b []byte, ps ...string) verdict {
	best := no
	for _, p := range ps {
		switch hasPrefixFold(b, p) {
		case yes:
			return yes
		case maybe:
			best = maybe
		}
	}
	return best
}

// httpMethods are the request methods that identify HTTP/1.x on their own:
// RFC 9110, WebDAV (RFC 4918, 3253, 3648, 3744, 5323, 5842, 4791, 4437) and
// a few common extensions.
var httpMethods = [...]string{
	"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
	"PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK",
	"SEARCH", "REPORT", "MKACTIVITY", "CHECKOUT", "CHECKIN", "UNCHECKOUT", "MERGE",
	"VERSION-CONTROL", "BASELINE-CONTROL", "MKWORKSPACE", "UPDATE", "LABEL",
	"MKCALENDAR", "ACL", "ORDERPATCH", "BIND", "UNBIND", "REBIND",
	"MKREDIRECTREF", "UPDATEREDIRECTREF", "PURGE", "LINK", "UNLINK", "QUERY",
}

// methodsByFirst indexes httpMethods by first byte.
var methodsByFirst = func() (t [256][]string) {
	for _, m := range httpMethods {
		t[m[0]] = append(t[m[0]], m)
	}
	return t
}()

// MaxEmptyLineBytes bounds the CR and LF bytes an HTTP/1.x message may be
// preceded by. RFC 9112 2.2 asks servers to skip at least one empty line;
// nginx skips any number (also a lone CR), Apache ten lines. Identification
// looks past up to this many, so that a request behind empty lines is
// inspected as one; a longer run is identified as HTTP too, for the parser
// to stop the flow (http.too_many_empty_lines) rather than let a server
// that skips it see an uninspected request.
const MaxEmptyLineBytes = 64

// skipBlanks returns b without its leading CR and LF bytes (empty lines)
// and spaces, tabs, VT and FF, and whether there were more than
// MaxEmptyLineBytes of them. nginx and Go answer 400 to whitespace before
// the method, but servers that split the request line on whitespace
// (Python's http.server) skip it: identification looks past it, so that
// the HTTP parser sees the request and stops the flow
// (http.invalid_method) instead of the policy for unidentified traffic
// letting it through.
func skipBlanks(b []byte) ([]byte, bool) {
	i := 0
	for i < len(b) && i <= MaxEmptyLineBytes && isBlank(b[i]) {
		i++
	}
	return b[i:], i > MaxEmptyLineBytes
}

func isBlank(c byte) bool {
	switch c {
	case '\r', '\n', ' ', '\t', '\v', '\f':
		return true
	}
	return false
}

// isHTTPRequest matches a known method, a space (or a tab, which some
// servers accept and the HTTP parser reports), and the first byte of a
// request-target, after blanks (skipBlanks).
func isHTTPRequest(b []byte) verdict {
	b, over := skipBlanks(b)
	if over {
		return yes
	}
	if len(b) == 0 {
		return maybe
	}
	best := no
	for _, m := range methodsByFirst[b[0]] {
		switch hasPrefix(b, m) {
		case yes:
			if len(b) == len(m) {
				best = maybe
				continue
			}
			if c := b[len(m)]; c != ' ' && c != '\t' {
				continue
			}
			if len(b) == len(m)+1 {
				best = maybe
				continue
			}
			switch b[len(m)+1] {
			case '\r', '\n', 0:
				continue
			}
			return yes
		case maybe:
			best = maybe
		}
	}
	return best
}

// IsTokenChar reports whether c may appear in an HTTP token (RFC 9110
// 5.6.2): identification and the HTTP parser share the one table.
func IsTokenChar(c byte) bool { return tokenChars[c] }

var tokenChars = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// isHTTPExtensionRequest matches a request line with a method that is not
// in httpMethods (or is not upper case): a token, spaces, a target, spaces
// and "HTTP/1" (not "HTTP/2": the HTTP/2 preface is "PRI * HTTP/2.0", and
// servers refuse that version on a request line). Servers take any token as a method, of any length (nginx
// passes A-Z, '_' and '-' runs it does not know to the backend: "XYZGET /"),
// more than one space around the target, and versions such as "HTTP/1.10"
// or with spaces after them; the HTTP parser judges the line once it is
// HTTP. A target runs to a space or the line end (nginx refuses control
// bytes in it, others may not), and targets run to 8 KiB and more: such a
// line is a maybe until the version or a break of the form, and one that
// still has the form at the identification bound is HTTP (IdentifyStream),
// so that neither a long method nor a long target makes it unidentified
// traffic. Blanks before it are skipped as isHTTPRequest does.
func isHTTPExtensionRequest(b []byte) verdict {
	b, _ = skipBlanks(b)
	i := 0
	for i < len(b) && IsTokenChar(b[i]) {
		i++
	}
	if i == len(b) {
		return maybe
	}
	if i == 0 || b[i] != ' ' {
		return no
	}
	t := skipSpaces(b[i:])
	j := 0
	for j < len(t) && !isTargetEnd(t[j]) {
		j++
	}
	switch {
	case j == len(t):
		return maybe
	case j == 0 || t[j] != ' ':
		// No target, or one ended by the line: HTTP/0.9, which servers
		// refuse for other methods than GET.
		return no
	}
	return hasPrefix(skipSpaces(t[j:]), "HTTP/1")
}

// skipSpaces returns b without its leading spaces.
func skipSpaces(b []byte) []byte {
	for len(b) > 0 && b[0] == ' ' {
		b = b[1:]
	}
	return b
}

// isTargetEnd reports whether c ends a request-target: a space or the
// line end (and NUL, which no server takes).
func isTargetEnd(c byte) bool { return c == ' ' || c == '\r' || c == '\n' || c == 0 }

// isHTTPResponse matches "HTTP/1.x NNN".
func isHTTPResponse(b []byte) verdict {
	if v := hasPrefix(b, "HTTP/1."); v != yes {
		return v
	}
	// "HTTP/1." d SP d d d
	const n = 12
	for i := 7; i < n && i < len(b); i++ {
		switch i {
		case 8:
			if b[i] != ' ' {
				return no
			}
		default:
			if b[i] < '0' || b[i] > '9' {
				return no
			}
		}
	}
	if len(b) < n {
		return maybe
	}
	return yes
}

// h2Preface is the HTTP/2 client connection preface (RFC 9113 3.4).
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

func isHTTP2Preface(b []byte) verdict { return hasPrefix(b, h2Preface) }

// maxTLSRecord is the largest legal TLSCiphertext length (2^14 + 2048).
const maxTLSRecord = 1<<14 + 2048

// isTLSRecordStart checks a handshake record header and the handshake
// message header that follows: the message type, a plausible length, and a
// hello's version (SSL 3.0 to TLS 1.2 as legacy_version).
func isTLSHandshake(b []byte, msgType byte) verdict {
	// record: type(1)=22 version(2)=03 0x len(2); handshake: type(1) len(3) version(2)
	const need = 11
	for i := 0; i < need && i < len(b); i++ {
		c := b[i]
		switch i {
		case 0:
			if c != 22 {
				return no
			}
		case 1, 9:
			if c != 3 {
				return no
			}
		case 2, 10:
			if c > 4 {
				return no
			}
		case 4:
			n := int(b[3])<<8 | int(c)
			if n < 4 || n > maxTLSRecord {
				return no
			}
		case 5:
			if c != msgType {
				return no
			}
		case 8:
			// A hello is at least 38 bytes and at most 2^24 (we only
			// need it to be sane, not bufferable).
			n := int(b[6])<<16 | int(b[7])<<8 | int(c)
			if n < 38 {
				return no
			}
		}
	}
	if len(b) < need {
		return maybe
	}
	return yes
}

func isTLSClientHello(b []byte) verdict { return isTLSHandshake(b, 1) }

// minTLSRecords is how many whole record headers in a row make a stream
// picked up mid-stream TLS (or the bytes run out inside the last record).
const minTLSRecords = 2

// isTLSRecords matches TLS record headers from the start of b: content
// type change_cipher_spec, alert, handshake or application_data, version
// 3.0 to 3.4, a legal length; the next header where the record ends. Two
// headers in a row, or one whose record b ends inside of at the bound,
// are TLS (nDPI identifies mid-stream TLS from record headers too).
func isTLSRecords(b []byte) verdict {
	for n := 0; ; n++ {
		if n == minTLSRecords {
			return yes
		}
		if len(b) < 5 {
			if len(b) == 0 && n > 0 {
				return maybe
			}
			for i, c := range b {
				if i == 0 && (c < 20 || c > 23) || i == 1 && c != 3 || i == 2 && c > 4 {
					return no
				}
			}
			return maybe
		}
		if b[0] < 20 || b[0] > 23 || b[1] != 3 || b[2] > 4 {
			return no
		}
		l := int(b[3])<<8 | int(b[4])
		if l == 0 || l > maxTLSRecord {
			return no
		}
		if 5+l > len(b) {
			if len(b) >= MaxIdentifyBytes {
				return yes
			}
			return maybe
		}
		b = b[5+l:]
	}
}

// isTLSServerFirst matches a ServerHello, or an alert record (a server
// that refuses the ClientHello).
func isTLSServerFirst(b []byte) verdict {
	if v := isTLSHandshake(b, 2); v != no {
		return v
	}
	// alert: 21 03 0x 00 02 level(1|2) description
	const need = 6
	for i := 0; i < need && i < len(b); i++ {
		c := b[i]
		switch {
		case i == 0 && c != 21, i == 1 && c != 3, i == 2 && c > 4, i == 3 && c != 0, i == 4 && c != 2,
			i == 5 && c != 1 && c != 2:
			return no
		}
	}
	if len(b) < need {
		return maybe
	}
	return yes
}

// isSSLv2ClientHello matches the SSLv2-compatible ClientHello that old
// clients send (RFC 5246 appendix E.2): the lengths must add up exactly.
func isSSLv2ClientHello(b []byte) verdict {
	const need = 11
	if len(b) > 0 && b[0]&0x80 == 0 {
		return no
	}
	if len(b) > 2 && b[2] != 1 {
		return no
	}
	if len(b) > 4 {
		v := int(b[3])<<8 | int(b[4])
		if v != 0x0002 && (v < 0x0300 || v > 0x0303) {
			return no
		}
	}
	if len(b) < need {
		return maybe
	}
	n := int(b[0]&0x7f)<<8 | int(b[1])
	cs := int(b[5])<<8 | int(b[6])
	sid := int(b[7])<<8 | int(b[8])
	ch := int(b[9])<<8 | int(b[10])
	if cs == 0 || cs%3 != 0 || (sid != 0 && sid != 16) || ch < 16 || ch > 32 || 9+cs+sid+ch != n {
		return no
	}
	return yes
}

// isSSHBanner matches "SSH-<digits>.<digits>-".
func isSSHBanner(b []byte) verdict {
	if v := hasPrefix(b, "SSH-"); v != yes {
		return v
	}
	digits, dot := 0, false
	for i := 4; i < len(b); i++ {
		c := b[i]
		switch {
		case c >= '0' && c <= '9':
			digits++
			if digits > 3 {
				return no
			}
		case c == '.' && !dot && digits > 0:
			dot, digits = true, 0
		case c == '-' && dot && digits > 0:
			return yes
		default:
			return no
		}
	}
	return maybe
}

// isSMTPClient matches EHLO or HELO (any case) and a space.
func isSMTPClient(b []byte) verdict { return hasAnyPrefixFold(b, "EHLO ", "HELO ") }

// firstLine returns b's first line without its line end, and whether the
// line end was seen.
func firstLine(b []byte) ([]byte, bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return b, false
	}
	return bytes.TrimSuffix(b[:i], []byte{'\r'}), true
}

// containsFold reports whether s occurs in b, ignoring ASCII case.
func containsFold(b []byte, s string) bool {
	for i := 0; i+len(s) <= len(b); i++ {
		if ascii.HasPrefixFold(b[i:], s) {
			return true
		}
	}
	return false
}

// is220Greeting matches a "220 " or "220-" greeting line that names word
// (SMTP or FTP; a line that names both is SMTP). It decides only at the line
// end, so that the answer does not depend on where the stream was cut. A
// greeting that names neither is no for both; Identifier then decides from
// the client's first command.
func is220Greeting(b []byte, word string) verdict {
	v := hasPrefix(b, "220")
	if v != yes {
		return v
	}
	if len(b) > 3 && b[3] != ' ' && b[3] != '-' {
		return no
	}
	line, done := firstLine(b)
	if !done {
		return maybe
	}
	if word == "FTP" && containsFold(line, "SMTP") {
		return no
	}
	if containsFold(line, word) {
		return yes
	}
	return no
}

// isPOP3Greeting matches "+OK" and a space or the line end.
func isPOP3Greeting(b []byte) verdict {
	v := hasPrefix(b, "+OK")
	if v != yes {
		return v
	}
	if len(b) == 3 {
		return maybe
	}
	if b[3] == ' ' || b[3] == '\r' || b[3] == '\n' {
		return yes
	}
	return no
}

// isIMAPGreeting matches "* OK ", "* PREAUTH " or "* BYE " (RFC 9051 7.1).
func isIMAPGreeting(b []byte) verdict {
	return hasAnyPrefixFold(b, "* OK ", "* PREAUTH ", "* BYE ")
}

// isRedisCommand matches a RESP array of bulk strings, the form every
// Redis client sends: "*<n>\r\n$<len>\r\n".
func isRedisCommand(b []byte) verdict {
	i := 0
	num := func(lead byte, maxDigits int) verdict {
		if i == len(b) {
			return maybe
		}
		if b[i] != lead {
			return no
		}
		i++
		d := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			d++
			if d > maxDigits {
				return no
			}
		}
		if i == len(b) {
			return maybe
		}
		if d == 0 || b[i] != '\r' {
			return no
		}
		i++
		if i == len(b) {
			return maybe
		}
		if b[i] != '\n' {
			return no
		}
		i++
		return yes
	}
	if v := num('*', 7); v != yes {
		return v
	}
	return num('$', 9)
}

// isMQTTConnect matches an MQTT CONNECT: packet type 1 with no flags, a
// remaining length of at most 4 bytes, and the protocol name and level
// of MQTT 3.1 ("MQIsdp", 3) or 3.1.1 and 5.0 ("MQTT", 4 or 5).
func isMQTTConnect(b []byte) verdict {
	if b[0] != 0x10 {
		return no
	}
	i := 1
	for ; i < len(b) && b[i]&0x80 != 0; i++ {
		if i == 4 {
			return no
		}
	}
	if i >= len(b) {
		return maybe
	}
	rest := b[i+1:]
	for _, p := range [...]struct {
		name  string
		level [2]byte
	}{{"\x00\x04MQTT", [2]byte{4, 5}}, {"\x00\x06MQIsdp", [2]byte{3, 3}}} {
		switch hasPrefix(rest, p.name) {
		case maybe:
			return maybe
		case yes:
			if len(rest) == len(p.name) {
				return maybe
			}
			if l := rest[len(p.name)]; l == p.level[0] || l == p.level[1] {
				return yes
			}
			return no
		}
	}
	return no
}

// memcachedWords are memcached's text commands with the number of words
// a line of each has (the command included): at least min, at most max
// (0: any).
var memcachedWords = map[string][2]int{
	"get": {2, 0}, "gets": {2, 0}, "gat": {3, 0}, "gats": {3, 0},
	"set": {5, 6}, "add": {5, 6}, "replace": {5, 6}, "append": {5, 6}, "prepend": {5, 6}, "cas": {6, 7},
	"delete": {2, 4}, "incr": {3, 4}, "decr": {3, 4}, "touch": {3, 4},
	"mg": {2, 0}, "ms": {3, 0}, "md": {2, 0}, "ma": {2, 0}, "me": {2, 2}, "mn": {1, 1},
	"flush_all": {1, 3}, "stats": {1, 0}, "version": {1, 1}, "verbosity": {2, 3}, "quit": {1, 1},
}

// isMemcachedCommand matches a memcached binary request header (magic
// 0x80, an opcode memcached knows, raw data type, a key and extras within
// the body) or a first text line that is one of memcachedWords with its
// number of words (memcached's commands are lower case, and a line of
// them ends in LF: until it does, the line is a maybe while its first
// word may still be one).
func isMemcachedCommand(b []byte) verdict {
	if b[0] == 0x80 {
		if len(b) < 24 {
			return maybe
		}
		keyExtras := int(b[2])<<8 | int(b[3]) + int(b[4])
		body := int(b[8])<<24 | int(b[9])<<16 | int(b[10])<<8 | int(b[11])
		if b[1] > 0x24 || b[1] == 0x1f || b[5] != 0 || keyExtras > body {
			return no
		}
		return yes
	}
	line, complete := firstLine(b)
	first, rest, spaced := bytes.Cut(skipSpaces(line), []byte(" "))
	if len(first) == 0 {
		return no
	}
	if !spaced && !complete {
		// The first word may still grow into a command.
		for w := range memcachedWords {
			if len(first) <= len(w) && w[:len(first)] == string(first) {
				return maybe
			}
		}
		return no
	}
	n, ok := memcachedWords[string(first)]
	switch {
	case !ok:
		return no
	case !complete:
		return maybe
	}
	words := 1
	for i := range rest {
		if rest[i] != ' ' && (i == 0 || rest[i-1] == ' ') {
			words++
		}
	}
	if words < n[0] || n[1] > 0 && words > n[1] {
		return no
	}
	return yes
}

// PostgreSQL protocol codes in the startup packet (protocol.h).
const (
	pgProtocol3    = 3 << 16
	pgSSLRequest   = 80877103
	pgGSSRequest   = 80877104
	pgCancelCode   = 80877102
	pgMaxStartup   = 10000
	pgStartupFixed = 8
)

// isPostgresStartup matches a StartupMessage (protocol 3.x with a
// "user" parameter), an SSLRequest, a GSSENCRequest or a CancelRequest.
func isPostgresStartup(b []byte) verdict {
	if len(b) < pgStartupFixed {
		// The length is big-endian and below 10000: two zero bytes.
		for i := 0; i < len(b) && i < 2; i++ {
			if b[i] != 0 {
				return no
			}
		}
		return maybe
	}
	n := int(b[0])<<24 | int(b[1])<<16 | int(b[2])<<8 | int(b[3])
	code := int(b[4])<<24 | int(b[5])<<16 | int(b[6])<<8 | int(b[7])
	switch {
	case (code == pgSSLRequest || code == pgGSSRequest) && n == 8:
		return yes
	case code == pgCancelCode && n == 16:
		return yes
	case code>>16 == 3 && code&0xffff <= 2 && n > pgStartupFixed && n <= pgMaxStartup:
		// Parameters are NUL-terminated name/value pairs ending in an
		// empty name; look at what we have of them.
		params := b[pgStartupFixed:min(len(b), n)]
		if len(params) == 0 {
			return maybe
		}
		for _, c := range params {
			if c != 0 && (c < 0x20 || c > 0x7e) {
				return no
			}
		}
		if len(b) < n {
			if len(b) < MaxIdentifyBytes {
				return maybe
			}
			return yes
		}
		if params[len(params)-1] != 0 {
			return no
		}
		return yes
	}
	return no
}

// isMySQLGreeting matches a MySQL protocol-10 server greeting: the packet
// header with sequence 0, version 10, a printable version string that
// starts with a digit and ends in NUL, the connection id, 8 bytes of
// scramble and a zero filler.
func isMySQLGreeting(b []byte) verdict {
	if len(b) > 3 && b[3] != 0 {
		return no
	}
	if len(b) > 4 && b[4] != 10 {
		return no
	}
	if len(b) > 5 && (b[5] < '0' || b[5] > '9') {
		return no
	}
	if len(b) >= 3 {
		n := int(b[0]) | int(b[1])<<8 | int(b[2])<<16
		if n < 40 || n > 1024 {
			return no
		}
	}
	if len(b) < 6 {
		return maybe
	}
	for i := 5; i < len(b); i++ {
		c := b[i]
		if c == 0 {
			// version NUL, thread id(4), scramble(8), filler(1)=0
			f := i + 1 + 4 + 8
			if f >= len(b) {
				return maybe
			}
			if b[f] != 0 {
				return no
			}
			return yes
		}
		if c < 0x20 || c > 0x7e || i-5 > 64 {
			return no
		}
	}
	return maybe
}

// dnsClasses are the classes a question may ask for: IN, CH, HS, NONE, ANY.
func dnsClassOK(c int) bool { return c == 1 || c == 3 || c == 4 || c == 254 || c == 255 }

// maxDNSTCPQuery bounds the length of a DNS-over-TCP message a client
// sends first. Queries are far smaller (a question and an OPT record); the
// bound also keeps any printable first byte (0x20 and up) from looking like
// a length prefix, so text protocols are not held back waiting for a DNS
// header.
const maxDNSTCPQuery = 0x2000 - 1

// isDNSMessage checks a DNS message header and its first question. With
// tcp, b starts with the two-byte length prefix and may be a prefix of the
// message (maybe); without, b is the whole datagram. A query must travel
// ToServer and a response ToClient.
func isDNSMessage(dir Dir, b []byte, tcp bool) verdict {
	m := b
	short := false // more bytes of the message may follow
	if tcp {
		if len(b) < 2 {
			return maybe
		}
		n := int(b[0])<<8 | int(b[1])
		if n < 12+5 || dir == ToServer && n > maxDNSTCPQuery {
			return no
		}
		m = b[2:]
		if len(m) > n {
			m = m[:n]
		}
		short = len(m) < n
	}
	if len(m) < 12 {
		if !short {
			return no
		}
		// Check what is there of the header.
		if len(m) > 2 && (m[2]>>7 == 1) != (dir == ToClient) {
			return no
		}
		if len(m) > 5 && (m[4] != 0 || m[5] != 1) {
			return no
		}
		return maybe
	}
	qr := m[2]>>7 == 1
	opcode := m[2] >> 3 & 0xf
	rcode := m[3] & 0xf
	z := m[3] >> 6 & 1
	qd := int(m[4])<<8 | int(m[5])
	an := int(m[6])<<8 | int(m[7])
	ns := int(m[8])<<8 | int(m[9])
	ar := int(m[10])<<8 | int(m[11])
	if qr != (dir == ToClient) || qd != 1 || z != 0 {
		return no
	}
	switch opcode {
	case 0, 2, 4, 5:
	default:
		return no
	}
	if !qr && (rcode != 0 || (opcode == 0 && (an != 0 || ns != 0))) {
		return no
	}
	if ar > 64 || an+ns+ar > 1024 {
		return no
	}
	// First question: uncompressed labels, then type and class.
	i := 12
	for {
		if i >= len(m) {
			if short {
				return maybe
			}
			return no
		}
		l := int(m[i])
		if l == 0 {
			i++
			break
		}
		if l > 63 {
			return no
		}
		i += 1 + l
		if i-12 > 255 {
			return no
		}
	}
	if i+4 > len(m) {
		if short {
			return maybe
		}
		return no
	}
	qtype := int(m[i])<<8 | int(m[i+1])
	if qtype == 0 || !dnsClassOK(int(m[i+2])<<8|int(m[i+3])) {
		return no
	}
	// Every further record needs at least 11 bytes (root name, fixed
	// part). Only a datagram is checked: a stream prefix must give the same
	// answer as the whole stream.
	if !tcp && len(m)-i-4 < 11*(an+ns+ar) {
		return no
	}
	return yes
}

// QUIC versions accepted as QUIC: v1 (RFC 9000), v2 (RFC 9369), the IETF
// drafts (0xff0000xx) and version negotiation (0).
const (
	quicV1          = 0x00000001
	quicV2          = 0x6b3343cf
	quicDraftMask   = 0xffffff00
	quicDraft       = 0xff000000
	quicMinDatagram = 1200 // RFC 9000 14.1: datagrams carrying Initial packets
	quicMaxCID      = 20
)

// isQUIC matches a QUIC long-header Initial packet in a datagram of at
// least 1200 bytes (or, from the server, a Version Negotiation packet):
// header form and fixed bits, a known version, connection IDs of legal
// length (a client's first DCID has at least 8 bytes), and a Length that
// fits the datagram.
func isQUIC(dir Dir, b []byte) bool {
	if len(b) < 7 || b[0]&0x80 == 0 {
		return false
	}
	v := uint32(b[1])<<24 | uint32(b[2])<<16 | uint32(b[3])<<8 | uint32(b[4])
	dcid := int(b[5])
	if dcid > quicMaxCID || 6+dcid >= len(b) {
		return false
	}
	i := 6 + dcid
	scid := int(b[i])
	if scid > quicMaxCID || i+1+scid > len(b) {
		return false
	}
	i += 1 + scid
	if v == 0 {
		// Version Negotiation: only from the server, a non-empty list
		// of 4-byte versions, none of them 0.
		rest := b[i:]
		if dir != ToClient || len(rest) == 0 || len(rest)%4 != 0 {
			return false
		}
		for j := 0; j < len(rest); j += 4 {
			if rest[j]|rest[j+1]|rest[j+2]|rest[j+3] == 0 {
				return false
			}
		}
		return true
	}
	if b[0]&0x40 == 0 || len(b) < quicMinDatagram {
		return false
	}
	typ := b[0] >> 4 & 3
	switch {
	case v == quicV1 || v&quicDraftMask == quicDraft:
		if typ != 0 {
			return false
		}
	case v == quicV2:
		if typ != 1 {
			return false
		}
	default:
		return false
	}
	if dir == ToServer && dcid < 8 {
		return false
	}
	tok, n := quicVarint(b[i:])
	if n == 0 || tok > uint64(len(b)) {
		return false
	}
	i += n + int(tok)
	if i > len(b) {
		return false
	}
	length, n := quicVarint(b[i:])
	if n == 0 || length < 1+16 || length > uint64(len(b)-i-n) {
		return false
	}
	return true
}

// isGQUIC matches a client's first packet of Google QUIC, which came
// before the IETF versions and is still seen: Q046 and later in a long
// header with the version 'Q' or 'T' and three digits, Q043 and earlier
// in a public header (version flag, 8-byte connection id, the version).
// Both pad the client's first packet to at least gquicMinDatagram bytes.
func isGQUIC(dir Dir, b []byte) bool {
	const gquicMinDatagram = 1024
	if dir != ToServer || len(b) < gquicMinDatagram {
		return false
	}
	version := func(v []byte) bool {
		return (v[0] == 'Q' || v[0] == 'T') && v[1] >= '0' && v[1] <= '9' && v[2] >= '0' && v[2] <= '9' && v[3] >= '0' && v[3] <= '9'
	}
	if b[0]&0x80 != 0 {
		return version(b[1:5])
	}
	// public flags: version (0x01), 8-byte connection id (0x08); no reset.
	return b[0]&0x0b == 0x09 && version(b[9:13])
}

// quicVarint decodes a QUIC variable-length integer; n is 0 if b is short.
func quicVarint(b []byte) (v uint64, n int) {
	if len(b) == 0 {
		return 0, 0
	}
	n = 1 << (b[0] >> 6)
	if len(b) < n {
		return 0, 0
	}
	v = uint64(b[0] & 0x3f)
	for i := 1; i < n; i++ {
		v = v<<8 | uint64(b[i])
	}
	return v, n
}

// Identifier identifies a TCP flow from both directions' first bytes. It
// keeps the bytes of each direction that came before the deciding chunk
// (at most MaxIdentifyBytes per direction, allocated only when a decision
// spans chunks) so that the engine can replay them into the protocol's
// parser: Pending. The zero value is ready; Reset makes it reusable.
type Identifier struct {
	buf     [2][]byte
	dropped [2]bool
	state   [2]Status
	proto   Protocol
	done    Status
	saw220  bool // the server greeted with "220" without naming SMTP or FTP
	mid     bool // picked up mid-stream (SetMidstream)
}

// SetMidstream says the flow was picked up mid-stream: its first bytes are
// not the protocol's first message, so TLS is also recognised by its
// record headers (isTLSRecords), as a connection after its handshake
// shows.
func (id *Identifier) SetMidstream() { id.mid = true }

// Reset forgets the flow, keeping buffers for reuse.
func (id *Identifier) Reset() {
	b0, b1 := id.buf[0][:0], id.buf[1][:0]
	*id = Identifier{}
	id.buf[0], id.buf[1] = b0, b1
}

// Feed gives the identifier the next in-order chunk of direction dir and
// returns the flow's protocol once known. A flow is NotIdentified when
// both directions are undecidable (a client-first protocol may still be
// named by the server's answer, a server-first one by the client's
// command). Once decided, Feed returns the decision without looking at
// chunk, and the chunk that decided is not part of Pending.
func (id *Identifier) Feed(dir Dir, chunk []byte) (Protocol, Status) {
	if id.done != NeedMore {
		return id.proto, id.done
	}
	d := dir & 1
	if len(chunk) == 0 {
		return Unknown, NeedMore
	}
	before := len(id.buf[d])
	if id.state[d] == NeedMore {
		data := chunk
		if before > 0 {
			id.keep(d, chunk)
			data = id.buf[d]
		}
		p, st := IdentifyStream(d, data)
		if st == NotIdentified && id.mid {
			switch isTLSRecords(data) {
			case yes:
				p, st = TLS, Identified
			case maybe:
				st = NeedMore
			}
		}
		if st == NotIdentified && d == ToClient {
			if line, _ := firstLine(data); hasPrefix(line, "220") == yes {
				id.saw220 = true
			}
		}
		if st == NotIdentified && d == ToServer && id.saw220 && isFTPCommand(data) == yes {
			p, st = FTP, Identified
		}
		id.state[d] = st
		if st == Identified {
			id.buf[d] = id.buf[d][:before]
			id.proto, id.done = p, Identified
			return p, Identified
		}
		if before == 0 {
			id.keep(d, chunk)
		}
	} else {
		id.keep(d, chunk)
	}
	if id.state[0] == NotIdentified && id.state[1] == NotIdentified {
		id.done = NotIdentified
		return Unknown, NotIdentified
	}
	return Unknown, NeedMore
}

// keep appends what fits of chunk to the direction's buffer.
func (id *Identifier) keep(d Dir, chunk []byte) {
	if cap(id.buf[d]) == 0 {
		id.buf[d] = make([]byte, 0, MaxIdentifyBytes)
	}
	room := MaxIdentifyBytes - len(id.buf[d])
	if len(chunk) > room {
		chunk = chunk[:room]
		id.dropped[d] = true
	}
	id.buf[d] = append(id.buf[d], chunk...)
}

// Pending returns the bytes of direction dir fed before the chunk that
// decided the protocol: the engine replays them into the protocol's
// parser (ToServer first, then ToClient, then the deciding chunk), since
// parsers need each direction from its first byte. It is complete unless
// Dropped(dir); a direction that was still undecided is always complete,
// as it never held more than MaxIdentifyBytes.
func (id *Identifier) Pending(dir Dir) []byte { return id.buf[dir&1] }

// GaveUp reports whether identification gave up on direction dir alone
// (the other may still name the flow).
func (id *Identifier) GaveUp(dir Dir) bool { return id.state[dir&1] == NotIdentified }

// Expire decides the flow when its user stops waiting for direction dir
// (the engine's hold ran out): as the protocol the direction's bytes still
// start like (detect), since a server of that protocol goes on reading
// them — nginx waits a minute for the rest of "G" — and a pause must not
// turn a request into unidentified traffic; as Unknown when they start
// like none. Pending keeps every byte fed, for the parser.
func (id *Identifier) Expire(dir Dir) Protocol {
	if id.done != NeedMore {
		return id.proto
	}
	d := dir & 1
	id.proto, id.done = Unknown, NotIdentified
	if id.state[d] == NeedMore && len(id.buf[d]) > 0 {
		if _, may := detect(d, id.buf[d]); may != Unknown {
			id.proto, id.done = may, Identified
		}
	}
	return id.proto
}

// Dropped reports whether bytes of direction dir did not fit Pending.
func (id *Identifier) Dropped(dir Dir) bool { return id.dropped[dir&1] }

// isFTPCommand matches the commands an FTP client sends first.
func isFTPCommand(b []byte) verdict {
	return hasAnyPrefixFold(b, "USER ", "AUTH TLS", "AUTH SSL", "FEAT", "SYST", "OPTS ")
}
