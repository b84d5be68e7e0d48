package dpi

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/internal/testnet"
	"github.com/deepwall/deepwall/internal/testutil"

	"github.com/deepwall/deepwall/ctl/eve"
)

// fuzzRules cover every field, a validator, a prefilter-confirmed
// pattern, libinjection, app_proto conditions and an ACL rule.
const fuzzRules = `rules:
  - {id: 1, action: block, proto: tcp, dst_port: 23}
  - {id: 2, action: allow, match: {field: http.path, regex: '^/health$'}}
  - {id: 3, action: block, match: {field: http.args, regex: 'union\s+select', transforms: [url_decode, lowercase]}}
  - {id: 4, action: alert, match: {field: http.uri, regex: '(a+)\1b'}}
  - {id: 5, action: alert, match: {field: http.headers, regex: 'x-evil'}}
  - {id: 6, action: alert, match: {field: http.header.cookie, detect: sqli}}
  - {id: 7, action: block, match: {field: http.method, regex: '^TRACE$'}}
  - {id: 8, action: alert, match: {field: http.body, regex: 'select.+from', transforms: [url_decode]}}
  - {id: 9, action: alert, category: dlp, match: {field: http.response_body, regex: '\b(?:\d[ -]?){13,16}\b', validate: luhn}}
  - {id: 10, action: alert, match: {field: http.response_headers, regex: 'debug'}}
  - {id: 11, action: block, match: {field: tls.sni, regex: 'evil'}}
  - {id: 12, action: alert, match: {field: dns.query, regex: 'tunnel'}}
  - {id: 13, action: alert, match: {field: payload, regex: 'SECRET', transforms: [lowercase, url_decode]}}
  - {id: 14, action: alert, match: {field: payload.to_client, regex: 'BANNER'}}
  - {id: 15, action: block, dst_port: 8080, app_proto_not: http}
  - {id: 16, action: alert, app_proto: ssh, match: {field: payload, regex: 'SSH-1'}}
  - {id: 17, action: alert, score: 3, match: {field: http.arg, regex: '^x+$'}}
  - {id: 18, action: alert, score: 3, match: [{field: http.cookie, phrases: [evil, bad]}, {field: http.header.accept, count: '== 0'}]}
  - {id: 19, action: alert, score: 2, match: {fields: [http.arg_name, http.file, http.part_header, http.filename, http.basename], regex: 'php', not: false}}
  - {id: 20, action: alert, match: {field: http.header_value, regex: '^[a-z]+$', not: true, except: [host]}}
  - {id: 21, action: alert, match: {fields: [http.request_line, http.query, http.header_name, http.cookie_name, http.file_field], detect: sqli}}
  - {id: 22, action: alert, score: 4, match: [{field: http.status, regex: '^5'}, {field: http.response_header_value, regex: 'php'}]}
  - {id: 23, action: block, anomaly: {direction: inbound, threshold: 5}}
  - {id: 24, action: block, anomaly: {direction: outbound, threshold: 4}}
  - {id: 25, action: block, match: {field: grpc.string, regex: 'union\s+select', transforms: [lowercase]}}
  - {id: 26, action: alert, match: [{field: http.version, regex: '^HTTP/2'}, {field: grpc.method, regex: '^Create$'}]}
  - {id: 27, action: alert, match: {fields: [grpc.status, grpc.message, grpc.message_length, grpc.service], regex: '^[0-9]+$'}}
`

// fuzzSegs encodes TCP data segments of connection 0, client to server,
// in FuzzEngine's input format (each at most 255 bytes).
func fuzzSegs(payloads ...[]byte) []byte {
	var out []byte
	for _, p := range payloads {
		out = append(append(out, 0x00, 0x18, 0, 0, byte(len(p))), p...)
	}
	return out
}

// fuzzGzipPost is a request with a gzip SQL injection body behind empty
// lines.
func fuzzGzipPost(tb testing.TB) []byte {
	body := testutil.Encode(tb, "gzip", []byte("q=1 union select password from users"))
	return append([]byte(fmt.Sprintf("\r\n\r\nPOST /x HTTP/1.1\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n", len(body))), body...)
}

// fuzzConv encodes a captured HTTP/2 conversation of dpi/proto/http2's
// testdata as connection 0's segments (the client's, then the server's).
func fuzzConv(tb testing.TB, name string) []byte {
	c2s, s2c := readConv(tb, name)
	var out []byte
	for d, b := range [][]byte{c2s, s2c} {
		for len(b) > 0 {
			n := min(len(b), 255)
			out = append(append(out, byte(d), 0x18, 0, 0, byte(n)), b[:n]...)
			b = b[n:]
		}
	}
	return out
}

var fuzzEngine struct {
	once sync.Once
	e    *Engine
	err  error
}

// FuzzEngine turns its input into a sequence of frames — TCP segments of a
// few connections with chosen flags, sequence offsets and payloads, UDP
// datagrams, ICMP, garbage frames, clock jumps — fed to one worker. The
// engine must not panic, its counters must stay consistent, and once every
// flow is flushed no stream, context or buffer may remain.
func FuzzEngine(f *testing.F) {
	seeds := [][]byte{
		[]byte("\x00\x02\x00\x00\x00GET /?q=union%20select HTTP/1.1\r\nHost: a\r\n\r\n\x01\x10\x00\x00\x00HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n4111 1111 1111 1111 "),
		[]byte("\x00\x12\x00\x00\x00POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nselec\r\n\x00\x00\x00\x10\x00t fr\r\n"),
		[]byte("\x02\x00\x00\x00\x00" + string(dnsQuery(1, "a.tunnel.example", 1))),
		[]byte("\x00\x02\x00\x00\x00" + string(clientHello("evil.example"))),
		[]byte("\x03\x00\x00\x00\x00\xff\xff\xff\x04\x05\x06\x07\x00\x00\x00\x00SSH-1.5-x\r\n"),
		[]byte("\x00\x0a\x00\x04\x00abcd\x00\x0a\x00\x00\x00ab\x00\x0b\xff\xf0\x00zz"),
		// A gzip form body behind empty lines, its compressed bytes
		// cut in two segments.
		fuzzSegs(fuzzGzipPost(f)[:90], fuzzGzipPost(f)[90:]),
		// HTTP/2: prior knowledge, h2c upgrade, gRPC.
		fuzzConv(f, "curl-prior.0"), fuzzConv(f, "curl-upgrade.0"), fuzzConv(f, "grpc.0"), fuzzConv(f, "grpc-go.0"),
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzEngine.once.Do(func() {
			// One engine for the whole run (compiling per input would
			// dominate); events are built and discarded.
			fuzzEngine.e, fuzzEngine.err = New(Config{Rules: compileRules(t, fuzzRules), Offline: true, Depth: 4096,
				Emit: func(ev *eve.Event) {
					if _, err := json.Marshal(ev); err != nil {
						panic(err)
					}
				}})
		})
		if fuzzEngine.err != nil {
			t.Fatal(fuzzEngine.err)
		}
		e := fuzzEngine.e
		defer e.Flush()
		ports := [4]uint16{40000, 40001, 40002, 40003}
		srvPorts := [4]uint16{80, 8080, 22, 23}
		var seq [4][2]uint32
		for i := range seq {
			seq[i] = [2]uint32{1000, 900000}
		}
		now := baseTime
		before := e.Stats()
		for frames := 0; len(data) >= 5 && frames < 64; frames++ {
			op, a, b := data[0], data[1], int16(uint16(data[2])<<8|uint16(data[3]))
			n := int(data[4])
			data = data[5:]
			n = min(n, len(data))
			payload := data[:n]
			data = data[n:]
			conn := int(op>>4) & 3
			cl := netip.AddrPortFrom(netip.MustParseAddr("198.18.0.1"), ports[conn])
			sv := netip.AddrPortFrom(netip.MustParseAddr("198.18.1.1"), srvPorts[conn])
			var spec testnet.FrameSpec
			ingress := dataplane.Inner
			switch op & 7 {
			case 0, 1: // TCP segment: a = flags, b = sequence offset
				d := op & 1
				spec = testnet.FrameSpec{Src: cl, Dst: sv, Proto: testnet.ProtoTCP, Flags: a & 0x1f, Seq: seq[conn][d] + uint32(int32(b)), Ack: seq[conn][d^1], Payload: payload}
				if d == 1 {
					spec.Src, spec.Dst = sv, cl
					ingress = dataplane.Outer
				}
				if b == 0 {
					seq[conn][d] += uint32(n)
					if a&(testnet.SYN|testnet.FIN) != 0 {
						seq[conn][d]++
					}
				}
			case 2: // UDP datagram
				spec = testnet.FrameSpec{Src: cl, Dst: netip.AddrPortFrom(sv.Addr(), 53), Proto: testnet.ProtoUDP, Payload: payload}
				if a&1 != 0 {
					spec.Src, spec.Dst = spec.Dst, spec.Src
				}
			case 3: // a raw frame
				fr := dataplane.Frame{Data: payload, Timestamp: now}
				e.Inspect(0, &fr)
				continue
			case 4:
				spec = testnet.FrameSpec{Src: cl, Dst: sv, Proto: testnet.ProtoICMP, Payload: payload}
			case 5: // the clock jumps
				now += int64(a) * 1e9
				continue
			case 6: // IPv6 TCP
				spec = testnet.FrameSpec{Src: netip.AddrPortFrom(netip.MustParseAddr("2001:2::1"), ports[conn]), Dst: netip.AddrPortFrom(netip.MustParseAddr("2001:2::2"), 80),
					Proto: testnet.ProtoTCP, Flags: a & 0x1f, Seq: seq[conn][0] + uint32(int32(b)), Payload: payload}
			case 7:
				e.Tick(now)
				continue
			}
			frame, err := testnet.BuildFrame(spec)
			if err != nil {
				continue
			}
			now += 1e6
			fr := dataplane.Frame{Data: frame, Timestamp: now, Ingress: ingress}
			e.Inspect(0, &fr)
			if s := e.Stats(); s.OpenStreams < 0 || s.Packets-before.Packets != s.Forwarded-before.Forwarded+s.Dropped-before.Dropped {
				t.Fatalf("stats inconsistent: %+v", s)
			}
		}
		e.Flush()
		s := e.Stats()
		if s.OpenStreams != 0 || s.Flows != 0 || s.Parked != 0 || s.Reasm.PoolBytes != 0 {
			t.Fatalf("after flush: %d streams, %d flows, %d parked, %d pool bytes", s.OpenStreams, s.Flows, s.Parked, s.Reasm.PoolBytes)
		}
		for _, w := range e.workers {
			for _, c := range w.ctxs {
				if c.inUse {
					t.Fatalf("context %d still in use", c.idx)
				}
			}
		}
	})
}
