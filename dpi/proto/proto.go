// Package proto owns application-protocol identification by content (never by
// port) and the types the protocol parsers share: Protocol, Dir and Finding.
//
// The parsers live in subpackages: http (HTTP/1.x requests and responses),
// tls (ClientHello and ServerHello), dns (UDP datagrams and TCP streams) and
// ssh (version banners). Each is fed the reassembled, in-order bytes of one
// direction at a time, in chunks that may split anywhere, keeps bounded state
// per flow, and reports malformed or evasive input as Findings, never as a
// panic.
package proto

// Protocol is an application protocol that identification can name.
type Protocol uint8

// The protocols Identify recognises. Unknown is the zero value.
const (
	Unknown    Protocol = iota
	HTTP1               // HTTP/1.0 and HTTP/1.1 (requests and responses)
	HTTP2               // HTTP/2 with prior knowledge (client connection preface)
	TLS                 // TLS 1.0-1.3 and SSL 3.0 (and SSLv2-compatible ClientHello)
	DNS                 // DNS over UDP or TCP
	SSH                 // SSH (version exchange)
	QUIC                // QUIC long-header packets (v1, v2, drafts)
	SMTP                // SMTP greeting or EHLO/HELO
	FTP                 // FTP control connection
	POP3                // POP3 greeting
	IMAP                // IMAP greeting
	Redis               // Redis RESP command
	PostgreSQL          // PostgreSQL startup, SSL or GSS request
	MySQL               // MySQL/MariaDB server greeting (protocol 10)
	Memcached           // memcached text command line or binary request
	MQTT                // MQTT CONNECT (3.1, 3.1.1, 5.0)
	NumProtocols
)

var protocolNames = [NumProtocols]string{
	Unknown:    "unknown",
	HTTP1:      "http",
	HTTP2:      "http2",
	TLS:        "tls",
	DNS:        "dns",
	SSH:        "ssh",
	QUIC:       "quic",
	SMTP:       "smtp",
	FTP:        "ftp",
	POP3:       "pop3",
	IMAP:       "imap",
	Redis:      "redis",
	PostgreSQL: "postgresql",
	MySQL:      "mysql",
	Memcached:  "memcached",
	MQTT:       "mqtt",
}

// String returns the protocol's name as rules spell it in app-proto ("http",
// "tls", "dns", ...) and as EVE's app_proto shows it.
func (p Protocol) String() string {
	if p < NumProtocols {
		return protocolNames[p]
	}
	return "unknown"
}

// ParseProtocol returns the Protocol named s (as String spells it; "http1"
// is accepted for "http"). It reports false for names it does not know.
func ParseProtocol(s string) (Protocol, bool) {
	if s == "http1" {
		return HTTP1, true
	}
	for p, n := range protocolNames {
		if n == s {
			return Protocol(p), true
		}
	}
	return Unknown, false
}

// Protocols returns every protocol Identify can name, without Unknown.
func Protocols() []Protocol {
	ps := make([]Protocol, 0, NumProtocols-1)
	for p := Protocol(1); p < NumProtocols; p++ {
		ps = append(ps, p)
	}
	return ps
}

// Dir is the direction bytes travel in, relative to the endpoints' roles:
// the client is the endpoint that opened the connection (sent the first
// SYN) or sent the first datagram.
type Dir uint8

const (
	// ToServer is client to server.
	ToServer Dir = 0
	// ToClient is server to client.
	ToClient Dir = 1
)

// String returns EVE's spelling, "to_server" or "to_client".
func (d Dir) String() string {
	if d == ToServer {
		return "to_server"
	}
	return "to_client"
}

// Reverse returns the other direction.
func (d Dir) Reverse() Dir { return d ^ 1 }
