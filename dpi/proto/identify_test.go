package proto_test

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"math/rand/v2"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/dpi/proto/internal/prototest"
)

type identCase struct {
	name   string
	dir    proto.Dir
	data   []byte
	proto  proto.Protocol
	status proto.Status
}

func b(s string) []byte { return []byte(s) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// mysqlGreeting builds a protocol-10 greeting as MySQL 8 sends it.
func mysqlGreeting(seq, protoVersion byte, version string) []byte {
	var p []byte
	p = append(p, protoVersion)
	p = append(p, version...)
	p = append(p, 0)
	p = append(p, 8, 0, 0, 0)                         // connection id
	p = append(p, "abcdefgh"...)                      // scramble part 1
	p = append(p, 0)                                  // filler
	p = append(p, 0xff, 0xf7, 0xff, 0x02, 0xff, 0xdf) // capabilities, charset, status
	p = append(p, make([]byte, 13)...)                // caps hi, auth len, reserved
	p = append(p, "ijklmnopqrst\x00caching_sha2_password\x00"...)
	h := []byte{byte(len(p)), byte(len(p) >> 8), byte(len(p) >> 16), seq}
	return append(h, p...)
}

func pgStartup(protocol uint32, params string) []byte {
	body := binary.BigEndian.AppendUint32(nil, protocol)
	body = append(body, params...)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body)+4)), body...)
}

func pgCode(n, code uint32) []byte {
	out := binary.BigEndian.AppendUint32(nil, n)
	out = binary.BigEndian.AppendUint32(out, code)
	return append(out, make([]byte, n-8)...)
}

// quicInitial builds a client Initial packet padded to size bytes.
func quicInitial(first byte, version uint32, dcid, size int) []byte {
	p := []byte{first}
	p = binary.BigEndian.AppendUint32(p, version)
	p = append(p, byte(dcid))
	p = append(p, bytes.Repeat([]byte{0xab}, dcid)...)
	p = append(p, 0) // scid length
	p = append(p, 0) // token length
	rest := size - len(p) - 2
	p = append(p, 0x40|byte(rest>>8), byte(rest))
	return append(p, bytes.Repeat([]byte{0x5a}, rest)...)
}

func sslv2Hello() []byte {
	cs := bytes.Repeat([]byte{0x00, 0x00, 0x2f}, 4)
	body := []byte{0x01, 0x03, 0x01, 0x00, byte(len(cs)), 0x00, 0x00, 0x00, 0x10}
	body = append(body, cs...)
	body = append(body, bytes.Repeat([]byte{0x42}, 16)...)
	return append([]byte{0x80 | byte(len(body)>>8), byte(len(body))}, body...)
}

func identCases(tb testing.TB) []identCase {
	tb.Helper()
	hello13 := prototest.ClientHello(tb, &tls.Config{ServerName: "www.example.com", NextProtos: []string{"h2", "http/1.1"}})
	hello12 := prototest.ClientHello(tb, &tls.Config{ServerName: "old.example.com", MaxVersion: tls.VersionTLS12})
	_, serverFlight := prototest.Handshake(tb, &tls.Config{InsecureSkipVerify: true}, nil)
	query := prototest.DNSQuery(tb, 0x1234, "www.example.com", dnsmessage.TypeA)
	resp := prototest.DNSResponse(tb, 0x1234, "www.example.com", dnsmessage.RCodeSuccess, [4]byte{192, 0, 2, 1})
	twoQuestions := append([]byte(nil), query...)
	twoQuestions[5] = 2
	badLabel := append([]byte(nil), query...)
	badLabel[12] = 64

	c, s := proto.ToServer, proto.ToClient
	return []identCase{
		// HTTP/1.x requests.
		{"http get", c, b("GET /index.html HTTP/1.1\r\nHost: a\r\n\r\n"), proto.HTTP1, proto.Identified},
		{"http get minimal", c, b("GET /"), proto.HTTP1, proto.Identified},
		{"http post", c, b("POST /api HTTP/1.1\r\n"), proto.HTTP1, proto.Identified},
		{"http webdav propfind", c, b("PROPFIND /dav/ HTTP/1.1\r\n"), proto.HTTP1, proto.Identified},
		{"http webdav version-control", c, b("VERSION-CONTROL /x HTTP/1.1\r\n"), proto.HTTP1, proto.Identified},
		{"http connect", c, b("CONNECT example.com:443 HTTP/1.1\r\n"), proto.HTTP1, proto.Identified},
		{"http options star", c, b("OPTIONS * HTTP/1.1\r\n"), proto.HTTP1, proto.Identified},
		{"http tab separator", c, b("GET\t/ HTTP/1.1\r\n"), proto.HTTP1, proto.Identified},
		{"http extension method", c, b("M-SEARCH * HTTP/1.1\r\n"), proto.HTTP1, proto.Identified},
		{"http lower-case method", c, b("get / HTTP/1.1\r\n"), proto.HTTP1, proto.Identified},
		{"http extension bare lf", c, b("BREW /pot HTTP/1.0\n"), proto.HTTP1, proto.Identified},
		{"http after empty lines", c, b("\r\n\r\nGET /?id=1 HTTP/1.1\r\n"), proto.HTTP1, proto.Identified},
		{"http after bare lf", c, b("\n\nPOST / HTTP/1.1\r\n"), proto.HTTP1, proto.Identified},
		{"http extension after empty lines", c, b("\r\nM-SEARCH * HTTP/1.1\r\n"), proto.HTTP1, proto.Identified},
		{"empty lines only", c, b("\r\n\r\n"), proto.Unknown, proto.NeedMore},
		{"empty lines past the bound", c, bytes.Repeat([]byte("\r\n"), proto.MaxEmptyLineBytes/2+1), proto.HTTP1, proto.Identified},
		{"http method prefix after empty lines", c, b("\r\nGE"), proto.Unknown, proto.NeedMore},
		{"http after a lone cr", c, b("\rGET / HTTP/1.1\r\n"), proto.HTTP1, proto.Identified},
		{"http after a space", c, b(" GET / HTTP/1.1\r\n"), proto.HTTP1, proto.Identified},
		{"http after tab vt ff", c, b("\t\v\fGET / HTTP/1.1\r\n"), proto.HTTP1, proto.Identified},
		{"http after nul", c, b("\x00GET / HTTP/1.1\r\n"), proto.Unknown, proto.NotIdentified},
		{"http junk glued to the method", c, b("XYZGET /?id=1 HTTP/1.1\r\n"), proto.HTTP1, proto.Identified},
		{"http long unknown method", c, b(strings.Repeat("X", 60) + "GET / HTTP/1.1\r\n"), proto.HTTP1, proto.Identified},
		{"http unknown method, target unterminated", c, b("XGET /?id=" + strings.Repeat("a", 80)), proto.Unknown, proto.NeedMore},
		{"http method prefix", c, b("GE"), proto.Unknown, proto.NeedMore},
		{"http method no target yet", c, b("GET "), proto.Unknown, proto.NeedMore},
		{"http method then crlf", c, b("GET \r\nHost: x\r\n\r\n"), proto.Unknown, proto.NotIdentified},
		{"http slash glued to method", c, b("GET/ HTTP/1.1\r\n"), proto.Unknown, proto.NotIdentified},
		{"http extension without version", c, b("GETS /x\r\n"), proto.Unknown, proto.NotIdentified},
		{"http extension version 2", c, b("FOO / HTTP/2.0\r\n"), proto.Unknown, proto.NotIdentified},
		{"http extension unterminated", c, b("FOO / HTTP/1.1"), proto.HTTP1, proto.Identified},
		{"http extension before the version", c, b("FOO / HTT"), proto.Unknown, proto.NeedMore},
		{"http extension lower-case version", c, b("FOO / http/1.1\r\n"), proto.Unknown, proto.NotIdentified},
		{"http extension, spaces around the target", c, b("XYZGET  /?id=1  HTTP/1.1\r\n"), proto.HTTP1, proto.Identified},
		{"http extension, two-digit minor", c, b("XYZGET / HTTP/1.10\r\n"), proto.HTTP1, proto.Identified},
		{"http extension, space after the version", c, b("XYZGET / HTTP/1.1 \r\n"), proto.HTTP1, proto.Identified},
		{"http extension, control byte in the target", c, b("XYZGET /a\x01b HTTP/1.1\r\n"), proto.HTTP1, proto.Identified},
		{"http response from client", c, b("HTTP/1.1 200 OK\r\n"), proto.Unknown, proto.NotIdentified},

		// HTTP/1.x responses.
		{"http 200", s, b("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), proto.HTTP1, proto.Identified},
		{"http 1.0 404", s, b("HTTP/1.0 404 Not Found\r\n"), proto.HTTP1, proto.Identified},
		{"http status prefix", s, b("HTTP/1.1 20"), proto.Unknown, proto.NeedMore},
		{"http status letters", s, b("HTTP/1.1 2x0 OK\r\n"), proto.Unknown, proto.NotIdentified},
		{"http version 2 status", s, b("HTTP/2 200\r\n"), proto.Unknown, proto.NotIdentified},
		{"http lower-case response", s, b("http/1.1 200 OK\r\n"), proto.Unknown, proto.NotIdentified},
		{"http request from server", s, b("GET / HTTP/1.1\r\n"), proto.Unknown, proto.NotIdentified},

		// HTTP/2.
		{"h2 preface", c, b("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), proto.HTTP2, proto.Identified},
		{"h2 preface partial", c, b("PRI * HTTP/2.0\r\n"), proto.Unknown, proto.NeedMore},
		{"h2 preface damaged", c, b("PRI * HTTP/2.0\r\n\r\nSX\r\n\r\n"), proto.Unknown, proto.NotIdentified},

		// TLS.
		{"tls 1.3 client hello", c, hello13, proto.TLS, proto.Identified},
		{"tls 1.2 client hello", c, hello12, proto.TLS, proto.Identified},
		{"tls hello prefix", c, hello13[:10], proto.Unknown, proto.NeedMore},
		{"tls server flight", s, serverFlight, proto.TLS, proto.Identified},
		{"tls alert", s, []byte{21, 3, 3, 0, 2, 2, 40}, proto.TLS, proto.Identified},
		{"tls server hello from client", c, serverFlight, proto.Unknown, proto.NotIdentified},
		{"tls client hello from server", s, hello13, proto.Unknown, proto.NotIdentified},
		{"tls record version 3.5", c, cat([]byte{22, 3, 5}, hello13[3:]), proto.Unknown, proto.NotIdentified},
		{"tls record length 0", c, []byte{22, 3, 1, 0, 0, 1, 0, 0, 64, 3, 3}, proto.Unknown, proto.NotIdentified},
		{"tls record length too big", c, []byte{22, 3, 1, 0x48, 0x01, 1, 0, 0, 64, 3, 3}, proto.Unknown, proto.NotIdentified},
		{"tls hello too short", c, []byte{22, 3, 1, 0, 40, 1, 0, 0, 20, 3, 3}, proto.Unknown, proto.NotIdentified},
		{"tls application data", c, []byte{23, 3, 3, 0, 40, 1, 0, 0, 64, 3, 3}, proto.Unknown, proto.NotIdentified},
		{"sslv2 client hello", c, sslv2Hello(), proto.TLS, proto.Identified},
		{"sslv2 lengths off", c, func() []byte { h := sslv2Hello(); h[1]++; return append(h, 0) }(), proto.Unknown, proto.NotIdentified},

		// SSH.
		{"ssh client", c, b("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"), proto.SSH, proto.Identified},
		{"ssh server 1.99", s, b("SSH-1.99-Cisco-1.25\r\n"), proto.SSH, proto.Identified},
		{"ssh prefix", c, b("SSH-2.0"), proto.Unknown, proto.NeedMore},
		{"ssh bad version", c, b("SSH-X.0-foo\r\n"), proto.Unknown, proto.NotIdentified},
		{"ssh no dash", c, b("SSH-2.0x\r\n"), proto.Unknown, proto.NotIdentified},
		{"ssh lower case", c, b("ssh-2.0-OpenSSH\r\n"), proto.Unknown, proto.NotIdentified},

		// DNS over TCP.
		{"dns tcp query", c, prototest.TCPFrame(query), proto.DNS, proto.Identified},
		{"dns tcp response", s, prototest.TCPFrame(resp), proto.DNS, proto.Identified},
		{"dns tcp two queries", c, prototest.TCPFrame(query, query), proto.DNS, proto.Identified},
		{"dns tcp prefix", c, prototest.TCPFrame(query)[:8], proto.Unknown, proto.NeedMore},
		{"dns tcp name prefix", c, prototest.TCPFrame(query)[:20], proto.Unknown, proto.NeedMore},
		{"dns tcp response from client", c, prototest.TCPFrame(resp), proto.Unknown, proto.NotIdentified},
		{"dns tcp length too small", c, cat([]byte{0, 12}, query[:12]), proto.Unknown, proto.NotIdentified},
		{"dns tcp two questions", c, prototest.TCPFrame(twoQuestions), proto.Unknown, proto.NotIdentified},
		{"dns tcp bad label", c, prototest.TCPFrame(badLabel), proto.Unknown, proto.NotIdentified},
		{"dns tcp name runs past length", c, prototest.TCPFrame(query[:20]), proto.Unknown, proto.NotIdentified},

		// Mail and file transfer.
		{"smtp postfix", s, b("220 mail.example.com ESMTP Postfix (Debian/GNU)\r\n"), proto.SMTP, proto.Identified},
		{"smtp multiline", s, b("220-mx.example.com ESMTP Exim 4.96\r\n220 go\r\n"), proto.SMTP, proto.Identified},
		{"smtp greeting unterminated", s, b("220 mail.example.com ESMTP"), proto.Unknown, proto.NeedMore},
		{"smtp ehlo", c, b("EHLO client.example.com\r\n"), proto.SMTP, proto.Identified},
		{"smtp helo lower", c, b("helo x\r\n"), proto.SMTP, proto.Identified},
		{"smtp ehlo glued", c, b("EHLOX client.example\r\n"), proto.Unknown, proto.NotIdentified},
		{"ftp vsftpd", s, b("220 (vsFTPd 3.0.3)\r\n"), proto.FTP, proto.Identified},
		{"ftp pure-ftpd", s, b("220---------- Welcome to Pure-FTPd [privsep] [TLS] ----------\r\n"), proto.FTP, proto.Identified},
		{"220 naming neither", s, b("220 ready\r\n"), proto.Unknown, proto.NotIdentified},
		{"2200 is not a greeting", s, b("2200 SMTP\r\n"), proto.Unknown, proto.NotIdentified},
		{"pop3", s, b("+OK Dovecot (Debian) ready.\r\n"), proto.POP3, proto.Identified},
		{"pop3 bare", s, b("+OK\r\n"), proto.POP3, proto.Identified},
		{"pop3 near miss", s, b("+OKAY\r\n"), proto.Unknown, proto.NotIdentified},
		{"imap", s, b("* OK [CAPABILITY IMAP4rev1 SASL-IR] Dovecot ready.\r\n"), proto.IMAP, proto.Identified},
		{"imap preauth", s, b("* PREAUTH ready\r\n"), proto.IMAP, proto.Identified},
		{"imap near miss", s, b("* OKAY\r\n"), proto.Unknown, proto.NotIdentified},

		// Databases and caches.
		{"redis command", c, b("*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n"), proto.Redis, proto.Identified},
		{"redis prefix", c, b("*2\r\n$"), proto.Unknown, proto.NeedMore},
		{"redis no count", c, b("*\r\n$3\r\n"), proto.Unknown, proto.NotIdentified},
		{"redis integer not bulk", c, b("*2\r\n:3\r\n"), proto.Unknown, proto.NotIdentified},
		{"redis bare lf", c, b("*2\n$3\n"), proto.Unknown, proto.NotIdentified},
		{"postgres startup", c, pgStartup(3<<16, "user\x00postgres\x00database\x00app\x00\x00"), proto.PostgreSQL, proto.Identified},
		{"postgres ssl request", c, pgCode(8, 80877103), proto.PostgreSQL, proto.Identified},
		{"postgres gss request", c, pgCode(8, 80877104), proto.PostgreSQL, proto.Identified},
		{"postgres cancel", c, pgCode(16, 80877102), proto.PostgreSQL, proto.Identified},
		{"postgres startup prefix", c, pgStartup(3<<16, "user\x00postgres\x00\x00")[:12], proto.Unknown, proto.NeedMore},
		{"postgres protocol 2", c, pgStartup(2<<16, "user\x00postgres\x00\x00"), proto.Unknown, proto.NotIdentified},
		{"postgres binary params", c, pgStartup(3<<16, "user\x00\x01\x02\x00\x00"), proto.Unknown, proto.NotIdentified},
		{"postgres ssl code wrong length", c, pgCode(12, 80877103), proto.Unknown, proto.NotIdentified},
		{"mysql 8 greeting", s, mysqlGreeting(0, 10, "8.0.36"), proto.MySQL, proto.Identified},
		{"mariadb greeting", s, mysqlGreeting(0, 10, "5.5.5-10.11.6-MariaDB-0+deb12u1"), proto.MySQL, proto.Identified},
		{"mysql sequence 1", s, mysqlGreeting(1, 10, "8.0.36"), proto.Unknown, proto.NotIdentified},
		{"mysql protocol 9", s, mysqlGreeting(0, 9, "8.0.36"), proto.Unknown, proto.NotIdentified},
		{"mysql greeting from client", c, mysqlGreeting(0, 10, "8.0.36"), proto.Unknown, proto.NotIdentified},
		{"mqtt 3.1.1 connect", c, b("\x10\x12\x00\x04MQTT\x04\x02\x00\x3c\x00\x06client"), proto.MQTT, proto.Identified},
		{"mqtt 5 connect", c, b("\x10\x80\x01\x00\x04MQTT\x05"), proto.MQTT, proto.Identified},
		{"mqtt 3.1 connect", c, b("\x10\x20\x00\x06MQIsdp\x03"), proto.MQTT, proto.Identified},
		{"mqtt connect prefix", c, b("\x10\x12\x00\x04MQ"), proto.Unknown, proto.NeedMore},
		{"mqtt level 6", c, b("\x10\x12\x00\x04MQTT\x06"), proto.Unknown, proto.NotIdentified},
		{"mqtt length past 4 bytes", c, b("\x10\xff\xff\xff\xff\x01"), proto.Unknown, proto.NotIdentified},
		{"memcached get", c, b("get user:1 user:2\r\n"), proto.Memcached, proto.Identified},
		{"memcached set", c, b("set k 0 0 5\r\nhello\r\n"), proto.Memcached, proto.Identified},
		{"memcached bare lf", c, b("  stats\n"), proto.Memcached, proto.Identified},
		{"memcached line unterminated", c, b("get user:1"), proto.Unknown, proto.NeedMore},
		{"memcached word prefix", c, b("flush_"), proto.Unknown, proto.NeedMore},
		{"memcached set without length", c, b("set k v\r\n"), proto.Unknown, proto.NotIdentified},
		{"memcached upper case", c, b("SET k 0 0 1\r\n"), proto.Unknown, proto.NotIdentified},
		{"memcached get without key", c, b("get\r\n"), proto.Unknown, proto.NotIdentified},
		{"memcached binary get", c, cat([]byte{0x80, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1}, make([]byte, 12), b("k")), proto.Memcached, proto.Identified},
		{"memcached binary prefix", c, []byte{0x80, 0x00, 0, 1}, proto.Unknown, proto.NeedMore},
		{"memcached binary key past body", c, cat([]byte{0x80, 0x00, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1}, make([]byte, 12)), proto.Unknown, proto.NotIdentified},
		{"memcached binary unknown opcode", c, cat([]byte{0x80, 0x60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, make([]byte, 12)), proto.Unknown, proto.NotIdentified},

		// Noise.
		{"empty", c, nil, proto.Unknown, proto.NeedMore},
		{"binary", c, []byte{0xde, 0xad, 0xbe, 0xef, 0x00, 0x01, 0x02, 0x03}, proto.Unknown, proto.NotIdentified},
		{"text line", c, b("hello world\r\n"), proto.Unknown, proto.NotIdentified},
		// A method or a target that runs to the bound is still a request
		// line a server reads (nginx passes unknown methods on).
		{"method run to the bound", c, bytes.Repeat([]byte{'A'}, 600), proto.HTTP1, proto.Identified},
		{"extension target run to the bound", c, append(b("FOO /"), bytes.Repeat([]byte{'a'}, 600)...), proto.HTTP1, proto.Identified},
		{"text broken before the bound", c, append(b("FOO /a\x00"), bytes.Repeat([]byte{'a'}, 600)...), proto.Unknown, proto.NotIdentified},
	}
}

func TestIdentifyStream(t *testing.T) {
	for _, tc := range identCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			p, st := proto.IdentifyStream(tc.dir, tc.data)
			if p != tc.proto || st != tc.status {
				t.Fatalf("IdentifyStream(%v, %q) = %v, %v; want %v, %v", tc.dir, trunc(tc.data), p, st, tc.proto, tc.status)
			}
		})
	}
}

func trunc(b []byte) []byte {
	if len(b) > 48 {
		return b[:48]
	}
	return b
}

// TestIdentifierChunking feeds every case in every chunking: the answer
// must not depend on where the stream was cut.
func TestIdentifierChunking(t *testing.T) {
	for _, tc := range identCases(t) {
		if len(tc.data) == 0 {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			data := tc.data
			if len(data) > proto.MaxIdentifyBytes+16 {
				data = data[:proto.MaxIdentifyBytes+16]
			}
			var id proto.Identifier
			prototest.Chunkings(data, 64, func(chunks [][]byte) {
				id.Reset()
				var p proto.Protocol
				var st proto.Status
				for _, ch := range chunks {
					p, st = id.Feed(tc.dir, ch)
				}
				want := tc.status
				if want == proto.NotIdentified {
					// Undecided until the other direction has spoken.
					want = proto.NeedMore
				}
				if p != tc.proto || st != want {
					t.Fatalf("chunks %d (first %d bytes): got %v, %v; want %v, %v", len(chunks), len(chunks[0]), p, st, tc.proto, want)
				}
			})
		})
	}
}

func TestIdentifierBothDirections(t *testing.T) {
	type feed struct {
		dir  proto.Dir
		data string
	}
	tests := []struct {
		name   string
		feeds  []feed
		proto  proto.Protocol
		status proto.Status
	}{
		{"ftp greeting without the word, then USER", []feed{{proto.ToClient, "220 ready\r\n"}, {proto.ToServer, "USER anonymous\r\n"}}, proto.FTP, proto.Identified},
		{"ftp greeting without the word, then AUTH TLS", []feed{{proto.ToClient, "220 ready\r\n"}, {proto.ToServer, "AUTH TLS\r\n"}}, proto.FTP, proto.Identified},
		{"ftp greeting split, then FEAT split", []feed{{proto.ToClient, "22"}, {proto.ToClient, "0 hi\r\n"}, {proto.ToServer, "FE"}, {proto.ToServer, "AT\r\n"}}, proto.FTP, proto.Identified},
		{"smtp greeting without the word, then EHLO", []feed{{proto.ToClient, "220 ready\r\n"}, {proto.ToServer, "EHLO me\r\n"}}, proto.SMTP, proto.Identified},
		{"USER without a 220 greeting", []feed{{proto.ToClient, "hello\r\n"}, {proto.ToServer, "USER anonymous\r\n"}}, proto.Unknown, proto.NotIdentified},
		{"client garbage, server http", []feed{{proto.ToServer, "\x00\x01\x02"}, {proto.ToClient, "HTTP/1.1 400 Bad Request\r\n"}}, proto.HTTP1, proto.Identified},
		{"client garbage, server silent", []feed{{proto.ToServer, "\x00\x01\x02"}}, proto.Unknown, proto.NeedMore},
		{"both garbage", []feed{{proto.ToServer, "\x00\x01\x02"}, {proto.ToClient, "\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7\xf6\xf5\xf4\xf3\xf2"}}, proto.Unknown, proto.NotIdentified},
		{"decision sticks", []feed{{proto.ToServer, "GET / HTTP/1.1\r\n"}, {proto.ToClient, "SSH-2.0-x\r\n"}}, proto.HTTP1, proto.Identified},
		{"empty chunks ignored", []feed{{proto.ToServer, ""}, {proto.ToClient, ""}}, proto.Unknown, proto.NeedMore},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var id proto.Identifier
			var p proto.Protocol
			var st proto.Status
			for _, f := range tc.feeds {
				p, st = id.Feed(f.dir, []byte(f.data))
			}
			if p != tc.proto || st != tc.status {
				t.Fatalf("got %v, %v; want %v, %v", p, st, tc.proto, tc.status)
			}
		})
	}
}

func TestIdentifierPending(t *testing.T) {
	type feed struct {
		dir  proto.Dir
		data string
	}
	tests := []struct {
		name               string
		feeds              []feed
		toServer, toClient string
		proto              proto.Protocol
	}{
		{"decided on the first chunk", []feed{{proto.ToServer, "GET / HTTP/1.1\r\n"}}, "", "", proto.HTTP1},
		{"decided on the second chunk", []feed{{proto.ToServer, "GE"}, {proto.ToServer, "T / HTTP/1.1\r\n"}}, "GE", "", proto.HTTP1},
		{"decided by the server", []feed{{proto.ToServer, "\x00\x01\x02"}, {proto.ToClient, "HTTP/1.1 400 Bad Request\r\n"}}, "\x00\x01\x02", "", proto.HTTP1},
		{"ftp by the client's command", []feed{{proto.ToClient, "220 ready\r\n"}, {proto.ToServer, "USER a\r\n"}}, "", "220 ready\r\n", proto.FTP},
		{"split ssh", []feed{{proto.ToServer, "SS"}, {proto.ToClient, "S"}, {proto.ToServer, "H-2.0-x\r\n"}}, "SS", "S", proto.SSH},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var id proto.Identifier
			var p proto.Protocol
			for _, f := range tc.feeds {
				p, _ = id.Feed(f.dir, []byte(f.data))
			}
			if p != tc.proto || string(id.Pending(proto.ToServer)) != tc.toServer || string(id.Pending(proto.ToClient)) != tc.toClient {
				t.Fatalf("got %v, pending %q / %q; want %v, %q / %q", p, id.Pending(proto.ToServer), id.Pending(proto.ToClient), tc.proto, tc.toServer, tc.toClient)
			}
		})
	}
	var id proto.Identifier
	id.Feed(proto.ToServer, bytes.Repeat([]byte{0}, 600))
	if len(id.Pending(proto.ToServer)) != proto.MaxIdentifyBytes || !id.Dropped(proto.ToServer) {
		t.Fatalf("pending %d bytes, dropped %v", len(id.Pending(proto.ToServer)), id.Dropped(proto.ToServer))
	}
}

func TestIdentifyDatagram(t *testing.T) {
	query := prototest.DNSQuery(t, 7, "example.org", dnsmessage.TypeAAAA)
	resp := prototest.DNSResponse(t, 7, "example.org", dnsmessage.RCodeNameError)
	noQuestion := append([]byte(nil), query[:12]...)
	noQuestion[5] = 0
	badClass := append([]byte(nil), query...)
	badClass[len(badClass)-1] = 7
	claimsAnswers := append([]byte(nil), resp...)
	claimsAnswers[7] = 5
	vn := []byte{0x80, 0, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 1, 0x6b, 0x33, 0x43, 0xcf}
	c, s := proto.ToServer, proto.ToClient
	tests := []identCase{
		{"dns query", c, query, proto.DNS, proto.Identified},
		{"dns response", s, resp, proto.DNS, proto.Identified},
		{"dns query from server", s, query, proto.Unknown, proto.NotIdentified},
		{"dns truncated question", c, query[:len(query)-3], proto.Unknown, proto.NotIdentified},
		{"dns header only", c, query[:12], proto.Unknown, proto.NotIdentified},
		{"dns no question", c, noQuestion, proto.Unknown, proto.NotIdentified},
		{"dns bad class", c, badClass, proto.Unknown, proto.NotIdentified},
		{"dns answers that do not fit", s, claimsAnswers, proto.Unknown, proto.NotIdentified},
		{"quic v1 initial", c, quicInitial(0xc3, 1, 8, 1200), proto.QUIC, proto.Identified},
		{"quic v2 initial", c, quicInitial(0xd3, 0x6b3343cf, 16, 1252), proto.QUIC, proto.Identified},
		{"quic draft-29 initial", c, quicInitial(0xc0, 0xff00001d, 8, 1350), proto.QUIC, proto.Identified},
		{"quic server initial", s, quicInitial(0xc1, 1, 0, 1200), proto.QUIC, proto.Identified},
		{"quic version negotiation", s, vn, proto.QUIC, proto.Identified},
		{"quic version negotiation from client", c, vn, proto.Unknown, proto.NotIdentified},
		{"quic initial too small", c, quicInitial(0xc3, 1, 8, 1199), proto.Unknown, proto.NotIdentified},
		{"quic unknown version", c, quicInitial(0xc3, 0x12345678, 8, 1200), proto.Unknown, proto.NotIdentified},
		{"quic v1 handshake type", c, quicInitial(0xe3, 1, 8, 1200), proto.Unknown, proto.NotIdentified},
		{"quic short dcid from client", c, quicInitial(0xc3, 1, 4, 1200), proto.Unknown, proto.NotIdentified},
		{"quic dcid too long", c, quicInitial(0xc3, 1, 21, 1200), proto.Unknown, proto.NotIdentified},
		{"quic fixed bit clear", c, quicInitial(0x83, 1, 8, 1200), proto.Unknown, proto.NotIdentified},
		{"quic length past end", c, func() []byte { p := quicInitial(0xc3, 1, 8, 1200); return p[:1200] }(), proto.QUIC, proto.Identified},
		{"quic length claims more", c, func() []byte { p := quicInitial(0xc3, 1, 8, 1300); return p[:1250] }(), proto.Unknown, proto.NotIdentified},
		{"empty", c, nil, proto.Unknown, proto.NotIdentified},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, st := proto.IdentifyDatagram(tc.dir, tc.data)
			if p != tc.proto || st != tc.status {
				t.Fatalf("IdentifyDatagram(%v, %q) = %v, %v; want %v, %v", tc.dir, trunc(tc.data), p, st, tc.proto, tc.status)
			}
		})
	}
}

// TestIdentifyRandomNoise checks that random bytes are not mistaken for a
// protocol: the header checks must be strict enough for random UDP.
func TestIdentifyRandomNoise(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 1500)
	const n = 100000
	hits := map[proto.Protocol]int{}
	for i := 0; i < n; i++ {
		size := 1 + r.IntN(len(buf))
		for j := range size {
			buf[j] = byte(r.Uint32())
		}
		dir := proto.Dir(i & 1)
		if p, st := proto.IdentifyDatagram(dir, buf[:size]); st == proto.Identified {
			hits[p]++
		}
		if p, st := proto.IdentifyStream(dir, buf[:min(size, 64)]); st == proto.Identified {
			hits[p]++
		}
	}
	if len(hits) != 0 {
		t.Fatalf("random input identified: %v", hits)
	}
}

func TestProtocolNames(t *testing.T) {
	for _, p := range proto.Protocols() {
		q, ok := proto.ParseProtocol(p.String())
		if !ok || q != p {
			t.Errorf("ParseProtocol(%q) = %v, %v", p.String(), q, ok)
		}
	}
	if _, ok := proto.ParseProtocol("gopher"); ok {
		t.Error("ParseProtocol accepted gopher")
	}
	seen := map[string]bool{}
	for _, k := range proto.FindingKinds() {
		name := k.String()
		if name == "unknown" || name == "" || seen[name] {
			t.Errorf("finding kind %d has name %q (duplicate or missing)", k, name)
		}
		seen[name] = true
		if q, ok := proto.ParseFindingKind(name); !ok || q != k {
			t.Errorf("ParseFindingKind(%q) = %v, %v", name, q, ok)
		}
	}
}

func FuzzIdentify(f *testing.F) {
	for _, tc := range identCases(f) {
		f.Add(tc.data, []byte{3, 1, 7}, byte(tc.dir))
	}
	f.Add(quicInitial(0xc3, 1, 8, 1200), []byte{}, byte(0))
	f.Fuzz(func(t *testing.T, data, seed []byte, dirb byte) {
		dir := proto.Dir(dirb & 1)
		proto.IdentifyDatagram(dir, data)
		proto.IsServerFirst(data)
		var mid proto.Identifier
		mid.SetMidstream()
		for _, ch := range prototest.RandomChunks(data, seed) {
			if _, st := mid.Feed(dir, ch); st != proto.NeedMore {
				break
			}
		}
		wantP, wantSt := proto.IdentifyStream(dir, data)
		if wantSt == proto.NotIdentified {
			wantSt = proto.NeedMore
		}
		var id proto.Identifier
		var p proto.Protocol
		st := proto.NeedMore
		fed := 0
		for _, ch := range prototest.RandomChunks(data, seed) {
			p, st = id.Feed(dir, ch)
			if st == proto.Identified {
				// Pending is exactly what came before the deciding
				// chunk.
				if pend := id.Pending(dir); !bytes.Equal(pend, data[:min(fed, len(pend))]) || len(pend) != fed && !id.Dropped(dir) {
					t.Fatalf("pending %q, fed before %q", pend, data[:fed])
				}
				break
			}
			fed += len(ch)
		}
		// The hold running out decides for good, and never against a
		// decision already made.
		if e := id.Expire(dir); st == proto.Identified && e != p || id.Expire(dir) != e {
			t.Fatalf("Expire %v after %v, %v", e, p, st)
		}
		if len(data) == 0 {
			return
		}
		if p != wantP || st != wantSt {
			t.Fatalf("chunked %v, %v; whole %v, %v", p, st, wantP, wantSt)
		}
	})
}

// BenchmarkIdentify identifies the first segment of common flows.
func BenchmarkIdentify(b *testing.B) {
	hello := prototest.ClientHello(b, &tls.Config{ServerName: "www.example.com"})
	query := prototest.DNSQuery(b, 1, "www.example.com", dnsmessage.TypeA)
	cases := []struct {
		name string
		dir  proto.Dir
		data []byte
		udp  bool
	}{
		{"http", proto.ToServer, []byte("GET /index.html HTTP/1.1\r\nHost: www.example.com\r\n\r\n"), false},
		{"tls", proto.ToServer, hello, false},
		{"ssh", proto.ToServer, []byte("SSH-2.0-OpenSSH_9.6\r\n"), false},
		{"unknown", proto.ToServer, bytes.Repeat([]byte{0xa5}, 64), false},
		{"dns-udp", proto.ToServer, query, true},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if c.udp {
					proto.IdentifyDatagram(c.dir, c.data)
				} else {
					proto.IdentifyStream(c.dir, c.data)
				}
			}
		})
	}
}

// TestIdentifierExpire: when the engine stops holding a direction, the
// flow is what its bytes still start like, its bytes kept for the parser.
func TestIdentifierExpire(t *testing.T) {
	tests := []struct {
		name    string
		feeds   []string // ToServer chunks
		want    proto.Protocol
		pending string
	}{
		{"a method prefix", []string{"G"}, proto.HTTP1, "G"},
		{"an unknown method, in pieces", []string{"XY", "ZG"}, proto.HTTP1, "XYZG"},
		{"empty lines", []string{"\r\n"}, proto.HTTP1, "\r\n"},
		{"a TLS record header", []string{"\x16\x03"}, proto.TLS, "\x16\x03"},
		{"nothing possible", []string{"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"}, proto.Unknown, "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"},
		{"nothing fed", nil, proto.Unknown, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var id proto.Identifier
			for _, f := range tc.feeds {
				if p, st := id.Feed(proto.ToServer, []byte(f)); st == proto.Identified {
					t.Fatalf("identified %v before the hold ran out", p)
				}
			}
			if got := id.Expire(proto.ToServer); got != tc.want || string(id.Pending(proto.ToServer)) != tc.pending {
				t.Fatalf("Expire = %v, pending %q; want %v, %q", got, id.Pending(proto.ToServer), tc.want, tc.pending)
			}
			if p, _ := id.Feed(proto.ToServer, []byte("more")); p != tc.want {
				t.Errorf("Feed after Expire = %v", p)
			}
		})
	}
}
