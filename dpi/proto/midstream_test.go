package proto_test

import (
	"bytes"
	"testing"

	"github.com/deepwall/deepwall/dpi/proto"
)

// tlsRecord is a record header of content type typ and n bytes of body.
func tlsRecord(typ byte, n int) []byte {
	return append([]byte{typ, 3, 3, byte(n >> 8), byte(n)}, bytes.Repeat([]byte{0xa5}, n)...)
}

// A flow picked up mid-stream is TLS from its record headers: two in a
// row, or one whose record runs past the identification bound. A flow
// seen from its start is not (its first bytes must be a hello).
func TestIdentifyMidstreamTLS(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		mid  proto.Status // status mid-stream
	}{
		{"two application data records", cat(tlsRecord(23, 40), tlsRecord(23, 30)), proto.Identified},
		{"alert then application data", cat(tlsRecord(21, 2), tlsRecord(23, 30)), proto.Identified},
		{"one record past the bound", tlsRecord(23, 1400)[:proto.MaxIdentifyBytes+10], proto.Identified},
		{"one whole record", tlsRecord(23, 40), proto.NeedMore},
		{"record header cut", tlsRecord(23, 40)[:3], proto.NeedMore},
		{"bad second header", cat(tlsRecord(23, 40), []byte{0x42, 3, 3, 0, 1, 0}), proto.NotIdentified},
		{"zero length", tlsRecord(23, 0), proto.NotIdentified},
		{"version 2", []byte{23, 2, 0, 0, 10}, proto.NotIdentified},
		{"text", b("hello world, this is not tls"), proto.NotIdentified},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, dir := range []proto.Dir{proto.ToServer, proto.ToClient} {
				var id proto.Identifier
				id.SetMidstream()
				p, st := id.Feed(dir, tc.data)
				if tc.mid == proto.NotIdentified {
					// not TLS; other detectors may still wait for more
					if p == proto.TLS {
						t.Errorf("%v: TLS", dir)
					}
					continue
				}
				if st != tc.mid || st == proto.Identified && p != proto.TLS {
					t.Errorf("%v: %v %v, want %v", dir, p, st, tc.mid)
				}
				var fresh proto.Identifier
				if p, st := fresh.Feed(dir, tc.data); st == proto.Identified && p == proto.TLS {
					t.Errorf("%v: TLS from record headers in a flow seen from its start", dir)
				}
			}
		})
	}
}

// IsServerFirst names the first bytes only a server sends.
func TestIsServerFirst(t *testing.T) {
	serverHello := []byte{22, 3, 3, 0, 60, 2, 0, 0, 56, 3, 3}
	for _, tc := range []struct {
		name string
		data []byte
		want bool
	}{
		{"http response", b("HTTP/1.1 200 OK\r\n"), true},
		{"server hello", append(serverHello, make([]byte, 56)...), true},
		{"mysql greeting", mysqlGreeting(0, 10, "8.0.36"), true},
		{"smtp greeting", b("220 mail.example ESMTP Postfix\r\n"), true},
		{"pop3 greeting", b("+OK POP3 ready\r\n"), true},
		{"http request", b("GET / HTTP/1.1\r\n"), false},
		{"ssh banner (both sides)", b("SSH-2.0-OpenSSH_9.6\r\n"), false},
		{"client hello", append([]byte{22, 3, 1, 0, 60, 1, 0, 0, 56, 3, 3}, make([]byte, 56)...), false},
		{"noise", []byte{1, 2, 3, 4, 5, 6, 7, 8}, false},
	} {
		if got := proto.IsServerFirst(tc.data); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// Google QUIC's client packets are QUIC.
func TestIdentifyGQUIC(t *testing.T) {
	long := append([]byte{0xc3, 'Q', '0', '5', '0', 8}, make([]byte, 1294)...)
	public := append([]byte{0x09, 1, 2, 3, 4, 5, 6, 7, 8, 'Q', '0', '4', '3'}, make([]byte, 1337)...)
	for _, tc := range []struct {
		name string
		data []byte
		dir  proto.Dir
		want proto.Status
	}{
		{"Q050 long header", long, proto.ToServer, proto.Identified},
		{"Q043 public header", public, proto.ToServer, proto.Identified},
		{"short datagram", long[:500], proto.ToServer, proto.NotIdentified},
		{"from the server", public, proto.ToClient, proto.NotIdentified},
		{"not a version", append([]byte{0x09, 1, 2, 3, 4, 5, 6, 7, 8, 'X', '0', '4', '3'}, make([]byte, 1337)...), proto.ToServer, proto.NotIdentified},
	} {
		p, st := proto.IdentifyDatagram(tc.dir, tc.data)
		if st != tc.want || st == proto.Identified && p != proto.QUIC {
			t.Errorf("%s: %v %v, want %v", tc.name, p, st, tc.want)
		}
	}
}
