package dpi

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dpi/flow"
	"github.com/deepwall/deepwall/internal/testnet"

	"github.com/deepwall/deepwall/ctl/eve"
)

// Frame mutations: what the receiver's checks reject (or accept).
var (
	// badL4 flips a bit of the TCP or UDP checksum.
	badL4 = func(b []byte) { b[l4CsumOff(b)] ^= 0x01 }
	// badIP flips a bit of the IPv4 header checksum.
	badIP = func(b []byte) { b[14+10] ^= 0x01 }
	// partialL4 writes the pseudo-header sum into the TCP/UDP checksum, as
	// a sender with TX checksum offload leaves it.
	partialL4 = func(b []byte) { binary.BigEndian.PutUint16(b[l4CsumOff(b):], pseudoSumOf(b)) }
)

// setURG sets the URG flag of an IPv4 TCP frame, checksum updated
// (RFC 1624).
func setURG(b []byte) {
	b[14+20+13] |= 0x20
	c := l4CsumOff(b)
	sum := uint32(^binary.BigEndian.Uint16(b[c:])) + 0x20
	sum = sum>>16 + sum&0xffff
	binary.BigEndian.PutUint16(b[c:], ^uint16(sum))
}

// ttl1 sets the IPv4 TTL to 1: the segment dies at the next router, before
// a receiver further away (checksum updated).
func ttl1(b []byte) {
	b[14+8] = 1
	testnet.FixIPv4Checksum(b)
}

// window0 sets the TCP window of an untagged IPv4 frame to 0, checksum
// updated (RFC 1624).
func window0(b []byte) {
	w, c := 14+20+14, l4CsumOff(b)
	sum := uint32(^binary.BigEndian.Uint16(b[c:])) + uint32(^binary.BigEndian.Uint16(b[w:]))
	binary.BigEndian.PutUint16(b[w:], 0)
	sum = sum>>16 + sum&0xffff
	sum = sum>>16 + sum&0xffff
	binary.BigEndian.PutUint16(b[c:], ^uint16(sum))
}

// l4CsumOff is the offset of the TCP/UDP checksum of an untagged frame
// without IP options or extension headers.
func l4CsumOff(b []byte) int {
	l3, proto, l4 := 14, b[14+9], 14+20
	if b[l3]>>4 == 6 {
		proto, l4 = b[l3+6], l3+40
	}
	if proto == testnet.ProtoUDP {
		return l4 + 6
	}
	return l4 + 16
}

// pseudoSumOf is the folded pseudo-header sum of such a frame.
func pseudoSumOf(b []byte) uint16 {
	ip := b[14:]
	var addrs []byte
	var proto, l4len int
	if ip[0]>>4 == 4 {
		addrs, proto, l4len = ip[12:20], int(ip[9]), int(binary.BigEndian.Uint16(ip[2:]))-20
	} else {
		addrs, proto, l4len = ip[8:40], int(ip[6]), int(binary.BigEndian.Uint16(ip[4:]))
	}
	sum := uint32(proto + l4len)
	for i := 0; i < len(addrs); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(addrs[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}

// raw adds a segment of direction d at offset rel from its next sequence
// number with the given flags, mutated by mangle (nil: as built).
func (v *conv) raw(d flow.Dir, flags uint8, rel int, data string, mangle func([]byte)) {
	v.c.tb.Helper()
	b := testnet.Frame(v.c.tb, v.spec(d, flags, v.next[d]+uint32(rel), []byte(data)))
	if mangle != nil {
		mangle(b)
	}
	v.c.frames = append(v.c.frames, capFrame{data: b, ts: v.c.now, ingress: ingressOf(d), label: "raw"})
	v.c.now += v.c.step
}

// TestNormalise checks that segments the receiver rejects change nothing:
// wrong checksums, RSTs it ignores, data after an accepted RST.
func TestNormalise(t *testing.T) {
	rules := "rules:\n" + block("1", "http.uri", "attack")
	attack := "GET /attack HTTP/1.1\r\nHost: a\r\n\r\n"
	type want struct {
		idx    int // frame whose verdict is checked (-1: none)
		action dataplane.Action
		state  string // the flow's TCP state after the frames, when set
	}
	tests := []struct {
		name   string
		build  func(c *capture, v *conv) want
		alerts []string
		drops  map[string]uint64 // flow_drop: the ACK after the blocked request
	}{
		{"RST with a bad checksum, then the attack", func(c *capture, v *conv) want {
			n := len(c.frames)
			v.raw(flow.ToServer, testnet.RST, 0, "", badL4)
			v.send(flow.ToServer, attack)
			return want{n, dataplane.Drop, ""}
		}, []string{"blocked:1"}, map[string]uint64{"tcp.bad_checksum": 1, "rule": 1, "flow_drop": 1}},
		{"RST with a bad IP header checksum, then the attack", func(c *capture, v *conv) want {
			n := len(c.frames)
			v.raw(flow.ToServer, testnet.RST, 0, "", badIP)
			v.send(flow.ToServer, attack)
			return want{n, dataplane.Drop, ""}
		}, []string{"blocked:1"}, map[string]uint64{"ip.bad_checksum": 1, "rule": 1, "flow_drop": 1}},
		{"RST from the server with a bad checksum, then the attack", func(c *capture, v *conv) want {
			v.raw(flow.ToClient, testnet.RST, 0, "", badL4)
			v.send(flow.ToServer, attack)
			return want{-1, 0, ""}
		}, []string{"blocked:1"}, map[string]uint64{"tcp.bad_checksum": 1, "rule": 1, "flow_drop": 1}},
		{"in-window RST not at the next sequence number is ignored", func(c *capture, v *conv) want {
			n := len(c.frames)
			v.raw(flow.ToServer, testnet.RST, 10, "", nil) // the receiver answers a challenge ACK
			v.send(flow.ToServer, attack)
			return want{n, dataplane.Forward, ""}
		}, []string{"blocked:1"}, map[string]uint64{"rule": 1, "flow_drop": 1}},
		{"bad-checksum data takes no place in the stream", func(c *capture, v *conv) want {
			n := len(c.frames)
			v.raw(flow.ToServer, testnet.PSH, 0, "GET /index.html HTTP/1.1\r\n", badL4)
			v.send(flow.ToServer, attack)
			return want{n, dataplane.Drop, ""}
		}, []string{"blocked:1"}, map[string]uint64{"tcp.bad_checksum": 1, "rule": 1, "flow_drop": 1}},
		{"70 KB of bad-checksum data, then the attack at the same offsets", func(c *capture, v *conv) want {
			junk := strings.Repeat("GET /index.html HTTP/1.1\r\nHost: a\r\n\r\n", 2000)[:70<<10]
			for off := 0; off < len(junk); off += 1400 {
				v.raw(flow.ToServer, testnet.PSH, off, junk[off:min(off+1400, len(junk))], badL4)
			}
			v.send(flow.ToServer, attack)
			return want{-1, 0, ""}
		}, []string{"blocked:1"}, map[string]uint64{"tcp.bad_checksum": 52, "rule": 1, "flow_drop": 1}},
		{"RST at the end of a held segment, with a hole before it, is ignored", func(c *capture, v *conv) want {
			v.segment(flow.ToServer, 10, attack[10:20]) // held: the receiver's next byte is still v.next
			n := len(c.frames)
			v.raw(flow.ToServer, testnet.RST, 20, "", nil)
			v.segment(flow.ToServer, 0, attack[:10])
			v.segment(flow.ToServer, 10, attack[10:20])
			v.advance(flow.ToServer, 20)
			v.send(flow.ToServer, attack[20:])
			return want{n, dataplane.Forward, "established"}
		}, []string{"blocked:1"}, map[string]uint64{"rule": 1, "flow_drop": 1}},
		{"out-of-order FIN, then the attack", func(c *capture, v *conv) want {
			v.raw(flow.ToServer, testnet.FIN, 100, "", nil)
			v.segment(flow.ToServer, 0, attack)
			return want{-1, 0, "established"}
		}, []string{"blocked:1"}, map[string]uint64{"rule": 1}},
		{"data after an accepted RST is dropped", func(c *capture, v *conv) want {
			v.raw(flow.ToServer, testnet.RST, 0, "", nil)
			n := len(c.frames)
			v.raw(flow.ToServer, testnet.PSH, 0, attack, nil)
			v.raw(flow.ToClient, testnet.PSH, 0, "HTTP/1.1 200 OK\r\n\r\n", nil)
			return want{n, dataplane.Drop, ""}
		}, nil, map[string]uint64{"tcp.after_reset": 2}},
		{"a new handshake after an RST is inspected from its start", func(c *capture, v *conv) want {
			v.raw(flow.ToServer, testnet.RST, 0, "", nil)
			v2 := c.tcp(cli, srv)
			v2.next = [2]uint32{7000000, 9000000}
			v2.handshake()
			n := len(c.frames)
			v2.send(flow.ToServer, attack)
			return want{n, dataplane.Drop, ""}
		}, []string{"blocked:1"}, map[string]uint64{"rule": 1, "flow_drop": 1}},
		{"a retransmission past the history, not acknowledged, is dropped", func(c *capture, v *conv) want {
			v.acks = false
			body := strings.Repeat("x", 70<<10)
			head := "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 80000\r\n\r\n"
			v.send(flow.ToServer, head+body)
			n := len(c.frames)
			v.raw(flow.ToServer, testnet.PSH, -len(head)-len(body), attack, nil)
			return want{n, dataplane.Drop, ""}
		}, nil, map[string]uint64{"tcp.unverified": 1}},
		{"a retransmission of acknowledged bytes is old", func(c *capture, v *conv) want {
			v.acks = false
			body := strings.Repeat("x", 70<<10)
			head := "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 80000\r\n\r\n"
			v.send(flow.ToServer, head+body)
			v.ack(flow.ToClient)
			n := len(c.frames)
			v.raw(flow.ToServer, testnet.PSH, -len(head)-len(body), attack, nil)
			return want{n, dataplane.Forward, ""}
		}, nil, map[string]uint64{}},
		// Receiver disagreements deepwall does not model end the flow:
		// the bytes it took first define the stream, the real ones at the
		// same offsets conflict.
		{"a segment that dies before the receiver (TTL 1), then the attack", func(c *capture, v *conv) want {
			v.raw(flow.ToServer, testnet.PSH, 0, "GET /index.html HTTP/1.1\r\n", ttl1)
			n := len(c.frames)
			v.raw(flow.ToServer, testnet.PSH, 0, attack, nil)
			return want{n, dataplane.Drop, ""}
		}, nil, map[string]uint64{"tcp.overlap_conflict": 1}},
		{"data while the receiver's window is 0, then other bytes", func(c *capture, v *conv) want {
			v.raw(flow.ToClient, 0, 0, "", window0)
			v.raw(flow.ToServer, testnet.PSH, 0, "GET /index.html HTTP/1.1\r\n", nil) // the receiver drops it
			n := len(c.frames)
			v.raw(flow.ToServer, testnet.PSH, 0, attack, nil)
			return want{n, dataplane.Drop, ""}
		}, nil, map[string]uint64{"tcp.overlap_conflict": 1}},
		{"data after an accepted FIN is dropped", func(c *capture, v *conv) want {
			v.raw(flow.ToServer, testnet.FIN, 0, "", nil)
			n := len(c.frames)
			v.raw(flow.ToServer, testnet.PSH, 1, attack, nil)
			return want{n, dataplane.Drop, "closing"}
		}, nil, map[string]uint64{"tcp.out_of_window": 1}},
		{"SYN data the server ignores, then other bytes at its offsets", func(c *capture, v *conv) want {
			w := c.tcp(cli, "198.18.1.1:8080")
			c.add(testnet.FrameSpec{Src: w.cli, Dst: w.srv, Proto: testnet.ProtoTCP, Flags: testnet.SYN, Seq: w.next[0] - 1,
				Payload: []byte("GET /index.html HTTP/1.1\r\n")}, dataplane.Inner, "syn+data")
			c.add(testnet.FrameSpec{Src: w.srv, Dst: w.cli, Proto: testnet.ProtoTCP, Flags: testnet.SYN | testnet.ACK,
				Seq: w.next[1] - 1, Ack: w.next[0]}, dataplane.Outer, "syn-ack of the SYN alone")
			w.ack(flow.ToServer)
			n := len(c.frames)
			w.raw(flow.ToServer, testnet.PSH, 0, attack, nil)
			return want{n, dataplane.Drop, ""}
		}, nil, map[string]uint64{"tcp.overlap_conflict": 1}},
		{"urgent data blocks the flow", func(c *capture, v *conv) want {
			n := len(c.frames)
			v.raw(flow.ToServer, testnet.PSH, 0, "GET /att", setURG)
			return want{n, dataplane.Drop, ""}
		}, nil, map[string]uint64{"tcp.urgent": 1}},
		{"a partial checksum (TX offload) is the sender's, accepted", func(c *capture, v *conv) want {
			n := len(c.frames)
			v.raw(flow.ToServer, testnet.PSH, 0, attack, partialL4)
			return want{n, dataplane.Drop, ""}
		}, []string{"blocked:1"}, map[string]uint64{"rule": 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, compileRules(t, rules), Config{})
			c := newCapture(t)
			v := c.tcp(cli, srv).handshake()
			w := tc.build(c, v)
			vs := h.run(c)
			if w.idx >= 0 && vs[w.idx].Action != w.action {
				t.Errorf("frame %d: %v, want %v", w.idx, vs[w.idx], w.action)
			}
			if w.state != "" {
				h.e.Flows(func(fi FlowInfo) bool {
					if fi.State != w.state {
						t.Errorf("flow state %s, want %s", fi.State, w.state)
					}
					return true
				})
			}
			evs := h.take()
			if got := alerts(evs); !slices.Equal(got, tc.alerts) {
				dumpEvents(t, evs)
				t.Errorf("alerts %v, want %v", got, tc.alerts)
			}
			if got := h.e.Stats().Drops; !mapsEqual(got, tc.drops) {
				t.Errorf("drops %v, want %v", got, tc.drops)
			}
			for _, ev := range evs {
				if ev.EventType == eve.EventDrop && tc.drops[ev.Drop.Reason] == 0 {
					t.Errorf("drop event %+v", ev.Drop)
				}
			}
		})
	}
}

func mapsEqual(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestChecksums checks each checksum the receiver verifies, IPv4 and
// IPv6, TCP and UDP, and that a partial-looking checksum is wrong when
// the dataplane says the kernel had it complete (NFQUEUE).
func TestChecksums(t *testing.T) {
	h := newHarness(t, compileRules(t, "rules:\n"+block("1", "payload", "zzzz")), Config{Hold: -1})
	frame := func(src, dst string, proto uint8, mangle func([]byte)) []byte {
		b := testnet.Frame(t, testnet.FrameSpec{Src: netip.MustParseAddrPort(src), Dst: netip.MustParseAddrPort(dst), Proto: proto, Flags: testnet.ACK | testnet.PSH, Seq: 1, Payload: []byte("hello")})
		if mangle != nil {
			mangle(b)
		}
		return b
	}
	zeroUDP := func(b []byte) { binary.BigEndian.PutUint16(b[l4CsumOff(b):], 0) }
	tests := []struct {
		name     string
		frame    []byte
		complete bool
		want     string // drop reason, "" forwarded
	}{
		{"tcp4", frame("198.18.0.1:1000", "198.18.1.1:80", testnet.ProtoTCP, nil), false, ""},
		{"tcp4 bad", frame("198.18.0.1:1001", "198.18.1.1:80", testnet.ProtoTCP, badL4), false, "tcp.bad_checksum"},
		{"tcp4 bad ip header", frame("198.18.0.1:1002", "198.18.1.1:80", testnet.ProtoTCP, badIP), false, "ip.bad_checksum"},
		{"tcp4 partial", frame("198.18.0.1:1003", "198.18.1.1:80", testnet.ProtoTCP, partialL4), false, ""},
		{"tcp4 partial, kernel says complete", frame("198.18.0.1:1004", "198.18.1.1:80", testnet.ProtoTCP, partialL4), true, "tcp.bad_checksum"},
		{"tcp6", frame("[2001:db8::1]:1000", "[2001:db8::2]:80", testnet.ProtoTCP, nil), false, ""},
		{"tcp6 bad", frame("[2001:db8::1]:1001", "[2001:db8::2]:80", testnet.ProtoTCP, badL4), false, "tcp.bad_checksum"},
		{"tcp6 partial", frame("[2001:db8::1]:1002", "[2001:db8::2]:80", testnet.ProtoTCP, partialL4), false, ""},
		{"udp4", frame("198.18.0.1:1000", "198.18.1.1:53", testnet.ProtoUDP, nil), false, ""},
		{"udp4 bad", frame("198.18.0.1:1001", "198.18.1.1:53", testnet.ProtoUDP, badL4), false, "udp.bad_checksum"},
		{"udp4 without checksum", frame("198.18.0.1:1002", "198.18.1.1:53", testnet.ProtoUDP, zeroUDP), true, ""},
		{"udp6", frame("[2001:db8::1]:1000", "[2001:db8::2]:53", testnet.ProtoUDP, nil), false, ""},
		{"udp6 bad", frame("[2001:db8::1]:1001", "[2001:db8::2]:53", testnet.ProtoUDP, badL4), false, "udp.bad_checksum"},
		{"udp6 without checksum", frame("[2001:db8::1]:1002", "[2001:db8::2]:53", testnet.ProtoUDP, zeroUDP), false, "udp.bad_checksum"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := h.e.Stats()
			fr := dataplane.Frame{Data: tc.frame, Timestamp: baseTime, ChecksumComplete: tc.complete}
			v := h.e.Inspect(0, &fr)
			after := h.e.Stats()
			if tc.want == "" {
				if v.Action != dataplane.Forward || after.Flows != before.Flows+1 {
					t.Errorf("%v, flows %d→%d", v, before.Flows, after.Flows)
				}
				return
			}
			if v.Action != dataplane.Drop || after.Drops[tc.want] != before.Drops[tc.want]+1 || after.Flows != before.Flows {
				t.Errorf("%v, drops %v, flows %d→%d", v, after.Drops, before.Flows, after.Flows)
			}
		})
	}
}

// TestHold checks that the bytes of a direction whose protocol is not
// known yet are held (dropped, retransmitted by the sender) until
// identification decides, within Config.Hold.
func TestHold(t *testing.T) {
	rules := "rules:\n" + block("1", "http.uri", "attack")
	benign := "GET /index.html HTTP/1.1\r\nHost: a\r\n\r\n"
	tests := []struct {
		name  string
		build func(c *capture, v *conv)
		want  string // verdicts, one letter per frame after the handshake: f forward, d drop
		drops map[string]uint64
		alert bool
	}{
		{"a request in tiny segments, retransmitted", func(c *capture, v *conv) {
			v.sendSplit(flow.ToServer, benign, 1, 2, 3)
			v.segment(flow.ToServer, -len(benign), "GET") // the retransmission of the held bytes
		}, "dddff", map[string]uint64{"tcp.hold": 3}, false},
		{"an attack in tiny segments", func(c *capture, v *conv) {
			v.sendSplit(flow.ToServer, strings.Replace(benign, "index.html", "attack", 1), 1, 2, 3)
		}, "dddd", map[string]uint64{"tcp.hold": 3, "rule": 1}, true},
		{"a request in one segment is not held", func(c *capture, v *conv) {
			v.send(flow.ToServer, benign)
		}, "f", map[string]uint64{}, false},
		// Past the bound the flow is what its bytes still start like: a
		// server goes on reading "G" (nginx for a minute).
		{"held past the bound: a request still being read", func(c *capture, v *conv) {
			v.segment(flow.ToServer, 0, "G")
			c.now += int64(DefaultHold)
			v.segment(flow.ToServer, 0, "G")
			v.segment(flow.ToServer, 0, "G")
			v.segment(flow.ToServer, 1, benign[1:])
		}, "ddff", map[string]uint64{"tcp.hold": 1, "tcp.hold_timeout": 1}, false},
		{"held past the bound: an attack still being read", func(c *capture, v *conv) {
			v.segment(flow.ToServer, 0, "G")
			c.now += int64(DefaultHold)
			v.segment(flow.ToServer, 0, "G")
			v.segment(flow.ToServer, 0, "G")
			v.segment(flow.ToServer, 1, "ET /attack HTTP/1.1\r\nHost: a\r\n\r\n")
		}, "ddfd", map[string]uint64{"tcp.hold": 1, "tcp.hold_timeout": 1, "rule": 1}, true},
		{"held past the bound: a TLS record header, no TLS rule", func(c *capture, v *conv) {
			v.segment(flow.ToServer, 0, "\x16\x03")
			c.now += int64(DefaultHold)
			v.segment(flow.ToServer, 0, "\x16\x03")
			v.segment(flow.ToServer, 0, "\x16\x03")
			v.segment(flow.ToServer, 2, "/attack")
		}, "ddff", map[string]uint64{"tcp.hold": 1, "tcp.hold_timeout": 1}, false},
		{"a SYN with undecided data is held, the plain SYN again passes", func(c *capture, v *conv) {
			w := c.tcp(cli, "198.18.1.1:8080")
			c.add(testnet.FrameSpec{Src: w.cli, Dst: w.srv, Proto: testnet.ProtoTCP, Flags: testnet.SYN, Seq: w.next[0] - 1, Payload: []byte("G")}, dataplane.Inner, "syn+data")
			c.add(testnet.FrameSpec{Src: w.cli, Dst: w.srv, Proto: testnet.ProtoTCP, Flags: testnet.SYN, Seq: w.next[0] - 1}, dataplane.Inner, "syn")
		}, "df", map[string]uint64{"tcp.hold": 1}, false},
		{"a segment ahead of a gap is forwarded", func(c *capture, v *conv) {
			v.segment(flow.ToServer, 1, benign[1:])
			v.segment(flow.ToServer, 0, benign[:1])
		}, "ff", map[string]uint64{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, compileRules(t, rules), Config{})
			c := newCapture(t)
			v := c.tcp(cli, srv).handshake()
			v.acks = false
			n := len(c.frames)
			tc.build(c, v)
			vs := h.run(c)
			var got []byte
			for _, x := range vs[n:] {
				got = append(got, "fd"[x.Action])
			}
			evs := h.take()
			if string(got) != tc.want {
				dumpEvents(t, evs)
				t.Errorf("verdicts %s, want %s", got, tc.want)
			}
			if d := h.e.Stats().Drops; !mapsEqual(d, tc.drops) {
				t.Errorf("drops %v, want %v", d, tc.drops)
			}
			if a := len(alerts(evs)) > 0; a != tc.alert {
				t.Errorf("alerted %v, want %v", a, tc.alert)
			}
		})
	}
}
