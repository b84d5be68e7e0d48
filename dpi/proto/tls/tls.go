// Package tls owns the parsing of a TLS connection's cleartext start: the
// ClientHello (server name, versions offered, ALPN, cipher suites) and the
// ServerHello (version chosen), possibly spread over several records and
// TCP chunks. After the hellos everything is encrypted, so the parser says
// Done and the engine can let the kernel carry the flow.
package tls

import (
	"strconv"

	"github.com/deepwall/deepwall/dpi/proto"
)

// Limits on what the parser buffers and records.
const (
	// MaxHelloBytes bounds a hello message (handshake header included)
	// the parser buffers when it spans records or chunks. Real hellos are
	// below 2 KiB, or a few KiB with large session tickets or
	// post-quantum key shares.
	MaxHelloBytes = 32 << 10
	// MaxALPN bounds the ALPN protocols recorded from a ClientHello.
	MaxALPN = 16
	// MaxVersions bounds the supported_versions recorded.
	MaxVersions = 16
	// maxRecord is the largest legal TLSCiphertext length.
	maxRecord = 1<<14 + 2048
	// maxExtensions bounds the extensions checked for duplicates.
	maxExtensions = 64
)

// Protocol versions.
const (
	VersionSSL30 = 0x0300
	VersionTLS10 = 0x0301
	VersionTLS11 = 0x0302
	VersionTLS12 = 0x0303
	VersionTLS13 = 0x0304
)

// VersionName returns a version as Suricata's EVE tls.version spells it
// ("TLS 1.3", "SSLv3", ...).
func VersionName(v uint16) string {
	switch v {
	case 0x0002:
		return "SSLv2"
	case VersionSSL30:
		return "SSLv3"
	case VersionTLS10:
		return "TLSv1"
	case VersionTLS11:
		return "TLS 1.1"
	case VersionTLS12:
		return "TLS 1.2"
	case VersionTLS13:
		return "TLS 1.3"
	}
	return "0x" + strconv.FormatUint(uint64(v), 16)
}

// isGREASE reports whether v is a GREASE value (RFC 8701): 0x?a?a with
// both bytes equal.
func isGREASE(v uint16) bool { return v&0x0f0f == 0x0a0a && v>>8 == v&0xff }

// ClientHello is a parsed ClientHello. Its slices are valid only during
// the Sink call.
type ClientHello struct {
	// RecordVersion is the version of the record that carried the hello,
	// LegacyVersion the hello's legacy_version.
	RecordVersion, LegacyVersion uint16
	// Versions are the supported_versions offered, without GREASE.
	Versions []uint16
	// Version is the best version offered: the highest of Versions, or
	// LegacyVersion without supported_versions. TLS 1.3 shows here.
	Version uint16
	// SNI is the first host_name of server_name, nil without one.
	SNI []byte
	// ALPN are the protocols offered (at most MaxALPN).
	ALPN [][]byte
	// CipherSuites counts the cipher suites offered (GREASE included),
	// Extensions the extensions.
	CipherSuites, Extensions int
	// GREASE says the client sent GREASE values (browsers do).
	GREASE bool
	// Retry is true for the second ClientHello, after a
	// HelloRetryRequest.
	Retry bool
	// ECH says the hello carries encrypted_client_hello: SNI is then the
	// public (outer) name, and the real one is encrypted.
	ECH bool
}

// ServerHello is a parsed ServerHello.
type ServerHello struct {
	LegacyVersion uint16
	// Version is the version chosen: supported_versions, or
	// LegacyVersion without it.
	Version     uint16
	CipherSuite uint16
	// HelloRetry says this is a HelloRetryRequest: another ClientHello
	// and ServerHello follow.
	HelloRetry bool
	// ALPN is the protocol chosen, when the ServerHello says (TLS 1.2;
	// TLS 1.3 encrypts it). Valid only during the Sink call.
	ALPN []byte
}

// Sink receives a connection's hellos and findings.
type Sink interface {
	ClientHello(h *ClientHello)
	ServerHello(h *ServerHello)
	Finding(f proto.Finding)
}

// Handshake message and record types.
const (
	recChangeCipherSpec = 20
	recAlert            = 21
	recHandshake        = 22
	msgClientHello      = 1
	msgServerHello      = 2
)

// Extension types.
const (
	extServerName        = 0
	extALPN              = 16
	extSupportedVersions = 43
	extECH               = 0xfe0d
)

// helloRetryRandom is the ServerHello.random of a HelloRetryRequest
// (RFC 8446 4.1.3): SHA-256 of "HelloRetryRequest".
var helloRetryRandom = [32]byte{
	0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
	0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
}

// dirState is one direction's position in its records.
type dirState struct {
	dir      proto.Dir
	done     bool
	hdr      [5]byte // record header being read
	nhdr     int
	recType  byte
	recVer   uint16
	remain   int    // payload bytes left in the current record
	hs       []byte // handshake bytes gathered across records
	need     int    // size of the hello (header included) once known
	offset   int64  // stream offset of the next byte
	msgStart int64  // stream offset of the record that started the hello
	retry    bool   // expecting the hello that follows a HelloRetryRequest
	started  bool   // a record header byte has been seen
	found    proto.KindSet
}

// Parser parses one TLS connection's hellos. The zero value is not ready:
// use NewParser or Reset.
type Parser struct {
	sink    Sink
	d       [2]dirState
	stopped bool
	ch      ClientHello
	sh      ServerHello
	alpn    [MaxALPN][]byte
	vers    [MaxVersions]uint16
	exts    [maxExtensions]uint16
}

// NewParser returns a parser reporting to sink.
func NewParser(sink Sink) *Parser {
	p := &Parser{}
	p.Reset(sink)
	return p
}

// Reset readies p for a new connection, keeping its buffers.
func (p *Parser) Reset(sink Sink) {
	h0, h1 := p.d[0].hs[:0], p.d[1].hs[:0]
	*p = Parser{sink: sink}
	p.d[0] = dirState{dir: proto.ToServer, hs: h0}
	p.d[1] = dirState{dir: proto.ToClient, hs: h1}
}

// Done reports whether nothing more can be inspected on the connection:
// both hellos were parsed (the rest is encrypted), or the parser stopped.
func (p *Parser) Done() bool { return p.stopped || p.d[0].done && p.d[1].done }

// DirDone reports whether direction dir has nothing more to parse.
func (p *Parser) DirDone(dir proto.Dir) bool { return p.stopped || p.d[dir&1].done }

// Feed parses the next in-order chunk of direction dir and returns Done.
func (p *Parser) Feed(dir proto.Dir, b []byte) bool {
	d := &p.d[dir&1]
	for len(b) > 0 && !d.done && !p.stopped {
		n := p.step(d, b)
		b = b[n:]
		d.offset += int64(n)
	}
	return p.Done()
}

// Close tells p that direction dir ended: it has nothing more to parse.
func (p *Parser) Close(dir proto.Dir) { p.d[dir&1].done = true }

func (p *Parser) report(d *dirState, k proto.FindingKind) {
	if d.found.Add(k) {
		p.sink.Finding(proto.Finding{Kind: k, Dir: d.dir, Offset: d.msgStart})
	}
}

// fatal reports k and stops the parser: the connection cannot be
// followed any further.
func (p *Parser) fatal(d *dirState, k proto.FindingKind) {
	d.found.Add(k)
	p.sink.Finding(proto.Finding{Kind: k, Dir: d.dir, Fatal: true, Offset: d.msgStart})
	p.stopped = true
}

// step consumes a record header or record payload bytes from b.
func (p *Parser) step(d *dirState, b []byte) int {
	if d.remain == 0 {
		return p.recordHeader(d, b)
	}
	n := min(d.remain, len(b))
	d.remain -= n
	switch d.recType {
	case recHandshake:
		p.handshake(d, b[:n])
	case recChangeCipherSpec:
		// Skipped: only allowed around a HelloRetryRequest (checked
		// in recordHeader).
	}
	return n
}

// recordHeader reads (part of) a record header.
func (p *Parser) recordHeader(d *dirState, b []byte) int {
	if !d.started {
		d.started = true
		d.msgStart = d.offset
		if d.dir == proto.ToServer && b[0]&0x80 != 0 {
			// SSLv2-compatible ClientHello: nothing we parse.
			p.fatal(d, proto.TLSSSLv2Hello)
			return 0
		}
	}
	n := copy(d.hdr[d.nhdr:], b)
	d.nhdr += n
	if d.nhdr < len(d.hdr) {
		return n
	}
	d.nhdr = 0
	typ, major, minor := d.hdr[0], d.hdr[1], d.hdr[2]
	length := int(d.hdr[3])<<8 | int(d.hdr[4])
	if len(d.hs) == 0 && d.need == 0 {
		d.msgStart = d.offset + int64(n) - 5
	}
	switch {
	case major != 3 || minor > 4 || length > maxRecord:
		p.fatal(d, proto.TLSInvalidRecord)
		return n
	case typ == recHandshake && length > 0:
	case typ == recChangeCipherSpec && d.retry && len(d.hs) == 0:
		// The compatibility CCS around a HelloRetryRequest.
	case typ == recAlert && d.dir == proto.ToClient && len(d.hs) == 0:
		// The server refused the ClientHello: no ServerHello will come.
		d.done = true
		return n
	default:
		p.fatal(d, proto.TLSInvalidRecord)
		return n
	}
	d.recType, d.recVer, d.remain = typ, uint16(major)<<8|uint16(minor), length
	return n
}

// handshake gathers handshake bytes of one record until the hello is
// complete, then parses it. The common case, a hello inside one record
// inside one chunk, is parsed in place.
func (p *Parser) handshake(d *dirState, b []byte) {
	if len(d.hs) == 0 && len(b) >= 4 {
		if !p.helloHeader(d, b) {
			return
		}
		if len(b) >= d.need {
			p.hello(d, b[:d.need])
			return
		}
	}
	room := MaxHelloBytes - len(d.hs)
	if d.need > 0 {
		room = d.need - len(d.hs)
	}
	if cap(d.hs) == 0 {
		d.hs = make([]byte, 0, 2048)
	}
	d.hs = append(d.hs, b[:min(len(b), room)]...)
	if d.need == 0 && len(d.hs) >= 4 && !p.helloHeader(d, d.hs) {
		return
	}
	if d.need > 0 && len(d.hs) >= d.need {
		p.hello(d, d.hs[:d.need])
		d.hs = d.hs[:0]
	}
}

// helloHeader checks the handshake message header: the expected hello
// type and a length within MaxHelloBytes.
func (p *Parser) helloHeader(d *dirState, b []byte) bool {
	want := byte(msgClientHello)
	if d.dir == proto.ToClient {
		want = msgServerHello
	}
	if b[0] != want {
		p.fatal(d, proto.TLSUnexpectedHandshake)
		return false
	}
	n := int(b[1])<<16 | int(b[2])<<8 | int(b[3])
	if n+4 > MaxHelloBytes {
		p.fatal(d, proto.TLSHandshakeTooLarge)
		return false
	}
	d.need = n + 4
	return true
}

// hello parses a complete hello message and ends the direction (or, for
// a HelloRetryRequest, rearms both directions).
func (p *Parser) hello(d *dirState, m []byte) {
	d.need = 0
	body := reader{b: m[4:]}
	if d.dir == proto.ToServer {
		if !p.clientHello(d, &body) {
			return
		}
		p.sink.ClientHello(&p.ch)
		d.done, d.retry = true, false
		return
	}
	if !p.serverHello(d, &body) {
		return
	}
	p.sink.ServerHello(&p.sh)
	d.done, d.retry = true, false
	if p.sh.HelloRetry {
		// A second ClientHello and the real ServerHello follow, both
		// in the clear.
		for i := range p.d {
			p.d[i].done, p.d[i].retry = false, true
			p.d[i].found.Clear()
		}
	}
}

// reader reads big-endian fields from a byte slice; any read past the end
// sets bad and returns zeros.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) u8() int {
	if len(r.b) < 1 {
		r.bad = true
		return 0
	}
	v := int(r.b[0])
	r.b = r.b[1:]
	return v
}

func (r *reader) u16() int {
	if len(r.b) < 2 {
		r.bad, r.b = true, nil
		return 0
	}
	v := int(r.b[0])<<8 | int(r.b[1])
	r.b = r.b[2:]
	return v
}

func (r *reader) bytes(n int) []byte {
	if n > len(r.b) || n < 0 {
		r.bad, r.b = true, nil
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// clientHello parses a ClientHello body (RFC 8446 4.1.2).
func (p *Parser) clientHello(d *dirState, r *reader) bool {
	ch := &p.ch
	*ch = ClientHello{RecordVersion: d.recVer, Retry: d.retry, ALPN: p.alpn[:0], Versions: p.vers[:0]}
	ch.LegacyVersion = uint16(r.u16())
	r.bytes(32) // random
	if sid := r.u8(); sid > 32 {
		p.fatal(d, proto.TLSMalformedHello)
		return false
	} else {
		r.bytes(sid)
	}
	cs := r.u16()
	suites := r.bytes(cs)
	if r.bad || cs < 2 || cs%2 != 0 {
		p.fatal(d, proto.TLSMalformedHello)
		return false
	}
	ch.CipherSuites = cs / 2
	for i := 0; i+1 < len(suites); i += 2 {
		if isGREASE(uint16(suites[i])<<8 | uint16(suites[i+1])) {
			ch.GREASE = true
		}
	}
	if comp := r.u8(); comp < 1 || len(r.bytes(comp)) != comp {
		p.fatal(d, proto.TLSMalformedHello)
		return false
	}
	ch.Version = ch.LegacyVersion
	if len(r.b) > 0 && !p.extensions(d, r, true) {
		return false
	}
	if len(ch.Versions) > 0 {
		ch.Version = 0
		for _, v := range ch.Versions {
			ch.Version = max(ch.Version, v)
		}
	}
	if ch.Version < VersionTLS12 {
		p.report(d, proto.TLSWeakVersion)
	}
	return true
}

// serverHello parses a ServerHello body.
func (p *Parser) serverHello(d *dirState, r *reader) bool {
	sh := &p.sh
	*sh = ServerHello{}
	sh.LegacyVersion = uint16(r.u16())
	random := r.bytes(32)
	sh.HelloRetry = len(random) == 32 && [32]byte(random) == helloRetryRandom
	if sid := r.u8(); sid > 32 {
		p.fatal(d, proto.TLSMalformedHello)
		return false
	} else {
		r.bytes(sid)
	}
	sh.CipherSuite = uint16(r.u16())
	r.u8() // compression
	if r.bad {
		p.fatal(d, proto.TLSMalformedHello)
		return false
	}
	sh.Version = sh.LegacyVersion
	if len(r.b) > 0 && !p.extensions(d, r, false) {
		return false
	}
	if sh.Version < VersionTLS12 {
		p.report(d, proto.TLSWeakVersion)
	}
	return true
}

// extensions parses the extension block of a hello, which must end the
// message exactly.
func (p *Parser) extensions(d *dirState, r *reader, client bool) bool {
	n := r.u16()
	block := r.bytes(n)
	if r.bad || len(r.b) != 0 {
		p.fatal(d, proto.TLSMalformedHello)
		return false
	}
	er := reader{b: block}
	seen := p.exts[:0]
	count := 0
	for len(er.b) > 0 {
		typ := er.u16()
		data := er.bytes(er.u16())
		if er.bad {
			p.fatal(d, proto.TLSMalformedHello)
			return false
		}
		count++
		if len(seen) < cap(seen) {
			for _, t := range seen {
				if t == uint16(typ) {
					p.report(d, proto.TLSDuplicateExtension)
				}
			}
			seen = append(seen, uint16(typ))
		}
		if isGREASE(uint16(typ)) && client {
			p.ch.GREASE = true
			continue
		}
		var ok bool
		switch {
		case typ == extServerName && client:
			ok = p.serverName(d, data)
		case typ == extALPN && client:
			ok = p.alpnList(data, func(proto []byte) {
				if len(p.ch.ALPN) < MaxALPN {
					p.ch.ALPN = append(p.ch.ALPN, proto)
				}
			})
		case typ == extALPN:
			ok = p.alpnList(data, func(proto []byte) { p.sh.ALPN = proto })
		case typ == extSupportedVersions && client:
			ok = p.supportedVersions(data)
		case typ == extECH && client:
			p.ch.ECH, ok = true, true
		case typ == extSupportedVersions:
			ok = len(data) == 2
			if ok {
				p.sh.Version = uint16(data[0])<<8 | uint16(data[1])
			}
		default:
			ok = true
		}
		if !ok {
			p.fatal(d, proto.TLSMalformedExtension)
			return false
		}
	}
	if client {
		p.ch.Extensions = count
	}
	return true
}

// serverName parses server_name (RFC 6066 3).
func (p *Parser) serverName(d *dirState, data []byte) bool {
	r := reader{b: data}
	list := r.bytes(r.u16())
	if r.bad || len(r.b) != 0 || len(list) == 0 {
		return false
	}
	lr := reader{b: list}
	for len(lr.b) > 0 {
		typ := lr.u8()
		name := lr.bytes(lr.u16())
		if lr.bad {
			return false
		}
		if typ != 0 {
			continue
		}
		if p.ch.SNI != nil {
			p.report(d, proto.TLSMultipleSNI)
			continue
		}
		p.ch.SNI = name
		if !validHostName(name) {
			p.report(d, proto.TLSInvalidSNI)
		}
	}
	return true
}

// validHostName checks an SNI: 1-255 bytes of letters, digits, '-', '_'
// and '.', no empty label, no trailing dot, not an IP literal.
func validHostName(n []byte) bool {
	if len(n) == 0 || len(n) > 255 || n[len(n)-1] == '.' || n[0] == '.' {
		return false
	}
	digitsAndDots := true
	prevDot := false
	for _, c := range n {
		switch {
		case c >= '0' && c <= '9':
		case c == '.':
			if prevDot {
				return false
			}
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '-', c == '_':
			digitsAndDots = false
		default:
			return false
		}
		prevDot = c == '.'
	}
	return !digitsAndDots
}

// alpnList parses a ProtocolNameList (RFC 7301 3.1).
func (p *Parser) alpnList(data []byte, add func([]byte)) bool {
	r := reader{b: data}
	list := r.bytes(r.u16())
	if r.bad || len(r.b) != 0 || len(list) == 0 {
		return false
	}
	lr := reader{b: list}
	for len(lr.b) > 0 {
		name := lr.bytes(lr.u8())
		if lr.bad || len(name) == 0 {
			return false
		}
		add(name)
	}
	return true
}

// supportedVersions parses the ClientHello's supported_versions list.
func (p *Parser) supportedVersions(data []byte) bool {
	r := reader{b: data}
	list := r.bytes(r.u8())
	if r.bad || len(r.b) != 0 || len(list) < 2 || len(list)%2 != 0 {
		return false
	}
	for i := 0; i < len(list); i += 2 {
		v := uint16(list[i])<<8 | uint16(list[i+1])
		if isGREASE(v) {
			p.ch.GREASE = true
			continue
		}
		if len(p.ch.Versions) < MaxVersions {
			p.ch.Versions = append(p.ch.Versions, v)
		}
	}
	return true
}
