package dpi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	xhttp2 "golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dpi/flow"
	"github.com/deepwall/deepwall/internal/ruletest"
)

// streamBlockConv is an HTTP/2 connection whose client sends, a segment
// each: the preface with stream 1 (benign), stream 3 (SQL injection in
// the query, inserting x-trace into the HPACK table), stream 5 (benign,
// x-trace indexed from the table), stream 7's HEADERS then its JSON body
// with a SQL injection, stream 9 (benign). The server answers 1, 5 and 9.
func streamBlockConv(t *testing.T) (segs []string, s2c []byte) {
	t.Helper()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	block := func(fields ...string) []byte {
		hb.Reset()
		for i := 0; i < len(fields); i += 2 {
			if err := enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]}); err != nil {
				t.Fatal(err)
			}
		}
		return bytes.Clone(hb.Bytes())
	}
	var b bytes.Buffer
	fr := xhttp2.NewFramer(&b, nil)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	get := func(sid uint32, path string, extra ...string) {
		f := append([]string{":method", "GET", ":scheme", "http", ":authority", "shop", ":path", path}, extra...)
		must(fr.WriteHeaders(xhttp2.HeadersFrameParam{StreamID: sid, BlockFragment: block(f...), EndHeaders: true, EndStream: true}))
	}
	cut := func() {
		segs = append(segs, b.String())
		b.Reset()
	}
	b.WriteString(xhttp2.ClientPreface)
	must(fr.WriteSettings())
	get(1, "/one")
	cut()
	get(3, "/items?id=1%20UNION%20SELECT%20password%20FROM%20users", "x-trace", "abc123")
	cut()
	get(5, "/five", "x-trace", "abc123")
	cut()
	must(fr.WriteHeaders(xhttp2.HeadersFrameParam{StreamID: 7, EndHeaders: true, BlockFragment: block(":method", "POST",
		":scheme", "http", ":authority", "shop", ":path", "/api/items", "content-type", "application/json")}))
	cut()
	must(fr.WriteData(7, true, []byte(`{"id": "1' UNION SELECT password FROM users--", "note": "`+strings.Repeat("n", 400)+`"}`)))
	cut()
	get(9, "/nine")
	cut()

	var sb bytes.Buffer
	sf := xhttp2.NewFramer(&sb, nil)
	senc := hpack.NewEncoder(&hb)
	must(sf.WriteSettings())
	must(sf.WriteSettingsAck())
	for _, sid := range []uint32{1, 5, 9} {
		hb.Reset()
		must(senc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"}))
		must(sf.WriteHeaders(xhttp2.HeadersFrameParam{StreamID: sid, BlockFragment: bytes.Clone(hb.Bytes()), EndHeaders: true}))
		must(sf.WriteData(sid, true, []byte("hello")))
	}
	return segs, sb.Bytes()
}

// tcpPayloadOf returns an IPv4 TCP frame's sequence number and payload
// (testnet frames: Ethernet, IPv4, TCP).
func tcpPayloadOf(f []byte) (uint32, []byte) {
	ip := f[14:]
	ihl := int(ip[0]&0x0f) * 4
	tcp := ip[ihl:binary.BigEndian.Uint16(ip[2:])]
	return binary.BigEndian.Uint32(tcp[4:]), tcp[int(tcp[12]>>4)*4:]
}

// TestHTTP2StreamBlock: with the default pack and the stream policy, the
// HEADERS of a request attacking in its query and the DATA of one
// attacking in its body are rewritten in place (same length, TCP
// checksum right, a retransmission rewritten the same), the receiver's
// view of the connection stays valid HTTP/2 with its HPACK table in step,
// and both blocked streams end in a stream error while streams 1, 5 and
// 9 go through untouched. With the connection policy the connection is
// reset at the first attack.
func TestHTTP2StreamBlock(t *testing.T) {
	segs, s2c := streamBlockConv(t)
	build := func(retransmit bool) *capture {
		c := newCapture(t)
		convPort++
		v := c.tcp("198.18.0.1:"+itoa(convPort), srv).handshake()
		v.send(flow.ToClient, string(s2c[:18])) // SETTINGS
		for i, s := range segs {
			if retransmit && i == 1 {
				// The attack segment twice: the original, then the
				// sender's retransmission (unacknowledged).
				v.segment(flow.ToServer, 0, s)
			}
			v.send(flow.ToServer, s)
		}
		v.send(flow.ToClient, string(s2c[18:]))
		v.close()
		return c
	}

	t.Run("stream", func(t *testing.T) {
		h := newHarness(t, ruletest.DefaultPack(t), Config{})
		c := build(true)
		vs := h.run(c)
		evs := h.take()
		var stream []byte // what the server receives
		var seen = map[uint32][]byte{}
		rewritten := 0
		for i, v := range vs {
			f := c.frames[i]
			if v.Action != dataplane.Forward {
				t.Fatalf("frame %d (%s): %v", i, f.label, v.Action)
			}
			if v.Rewritten {
				rewritten++
				ip := f.data[14:]
				p := &h.e.workers[0].pkt
				_ = h.e.workers[0].dec.Decode(f.data, p)
				if st := dataplane.VerifyL4Checksum(ip, false, 6, f.data[p.L4Off:]); st != dataplane.ChecksumOK {
					t.Fatalf("frame %d: checksum %v after the rewrite", i, st)
				}
			}
			if f.ingress != dataplane.Inner {
				continue
			}
			seq, pay := tcpPayloadOf(f.data)
			if len(pay) == 0 {
				continue
			}
			if prev, ok := seen[seq]; ok {
				if !bytes.Equal(prev, pay) {
					t.Fatalf("retransmission forwarded as %q, first as %q", pay, prev)
				}
				continue
			}
			seen[seq] = bytes.Clone(pay)
			stream = append(stream, pay...)
		}
		// The attack segment, its retransmission and the body segment.
		if rewritten != 3 {
			t.Fatalf("%d frames rewritten, want 3", rewritten)
		}
		want := strings.Join(segs, "")
		if len(stream) != len(want) {
			t.Fatalf("server gets %d bytes, the client sent %d", len(stream), len(want))
		}
		for i, s := range segs {
			if (i == 1 || i == 4) == strings.Contains(string(stream), s) {
				t.Errorf("segment %d rewritten = %v", i, i == 1 || i == 4)
			}
		}
		// The server's view: x/net's Framer and one HPACK decoder.
		got := readH2(t, stream[len(xhttp2.ClientPreface):])
		wantFrames := "SETTINGS HEADERS:1:/one reset:3 HEADERS:5:/five:abc123 HEADERS:7:/api/items reset:7 DATA:7 HEADERS:9:/nine"
		if got != wantFrames {
			t.Errorf("server reads %q,\n want %q", got, wantFrames)
		}
		var ids []uint32
		for _, ev := range evs {
			if ev.Alert != nil && ev.Alert.Action == "blocked" && !slices.Contains(ids, ev.HTTP.StreamID) {
				ids = append(ids, ev.HTTP.StreamID)
			}
		}
		if !slices.Equal(ids, []uint32{3, 7}) {
			dumpEvents(t, evs)
			t.Errorf("blocked streams %v, want [3 7]", ids)
		}
		if s := h.e.Stats(); s.H2StreamResets != 2 || s.FinalDrop != 0 {
			t.Errorf("%d stream resets, %d final drops", s.H2StreamResets, s.FinalDrop)
		}
	})

	// An attack segment sent as IP fragments: the engine judges a copy
	// reassembled from them, and the fragments are what goes out, so the
	// stream cannot be rewritten: the connection is reset, and no fragment
	// of the attack reaches the server.
	t.Run("fragmented attack", func(t *testing.T) {
		h := newHarness(t, ruletest.DefaultPack(t), Config{})
		c := newCapture(t)
		convPort++
		v := c.tcp("198.18.0.1:"+itoa(convPort), srv).handshake()
		v.send(flow.ToClient, string(s2c[:18])) // SETTINGS
		v.send(flow.ToServer, segs[0])
		v.segment(flow.ToServer, 0, segs[1]) // the attack, then as IP fragments
		v.advance(flow.ToServer, len(segs[1]))
		c.fragmentLast(77, 64, false)
		vs := h.run(c)
		frags := 0
		for i, vd := range vs {
			f := c.frames[i]
			if !strings.HasSuffix(f.label, "fragment") {
				continue
			}
			frags++
			if vd.Action == dataplane.Forward {
				t.Fatalf("frame %d (%s): forwarded", i, f.label)
			}
		}
		if frags < 2 {
			t.Fatalf("%d fragments in the capture", frags)
		}
		if s := h.e.Stats(); s.H2StreamResets != 0 {
			t.Errorf("%d stream resets, want the connection reset", s.H2StreamResets)
		}
	})

	t.Run("connection", func(t *testing.T) {
		h := newHarness(t, ruletest.DefaultPack(t), Config{H2Block: H2BlockConnection})
		c := build(false)
		o := outcome{}
		for i, v := range h.run(c) {
			if v.Rewritten {
				t.Fatalf("frame %d rewritten", i)
			}
			if v.Action == dataplane.Drop && v.Final && v.Reset {
				o.blocked = true
				if _, pay := tcpPayloadOf(c.frames[i].data); string(pay) != segs[1] {
					t.Errorf("reset at %q", pay)
				}
				break
			}
		}
		if !o.blocked {
			t.Fatal("connection not reset")
		}
	})
}

// readH2 reads client frames as a server does (x/net's Framer, one HPACK
// decoder) and names them: type, stream, :path and x-trace of header
// blocks, "reset:N" for a stream error.
func readH2(t *testing.T, b []byte) string {
	t.Helper()
	fr := xhttp2.NewFramer(nil, bytes.NewReader(b))
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	var out []string
	for {
		f, err := fr.ReadFrame()
		var se xhttp2.StreamError
		switch {
		case errors.As(err, &se):
			out = append(out, "reset:"+itoa(se.StreamID))
			continue
		case err == io.EOF:
			return strings.Join(out, " ")
		case err != nil:
			t.Fatalf("server reads %v after %v", err, out)
		}
		name := f.Header().Type.String()
		if f.Header().StreamID != 0 {
			name += ":" + itoa(f.Header().StreamID)
		}
		if mh, ok := f.(*xhttp2.MetaHeadersFrame); ok {
			name += ":" + mh.PseudoValue("path")
			if v := headerValue(mh, "x-trace"); v != "" {
				name += ":" + v
			}
		}
		out = append(out, name)
	}
}

func headerValue(mh *xhttp2.MetaHeadersFrame, name string) string {
	for _, f := range mh.RegularFields() {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}
