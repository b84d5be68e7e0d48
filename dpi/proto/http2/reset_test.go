package http2

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	xhttp2 "golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/deepwall/deepwall/dpi/proto"
)

// headerFrames writes a header block of fields for stream sid as HEADERS
// (+ CONTINUATIONs of at most split bytes of block) with enc.
func headerFrames(t testing.TB, enc *hpack.Encoder, eb *bytes.Buffer, sid uint32, split, pad int, fields ...string) []byte {
	t.Helper()
	eb.Reset()
	for i := 0; i < len(fields); i += 2 {
		f := hpack.HeaderField{Name: fields[i], Value: fields[i+1]}
		f.Sensitive = f.Name == "cookie"
		if err := enc.WriteField(f); err != nil {
			t.Fatal(err)
		}
	}
	blk := bytes.Clone(eb.Bytes())
	var out bytes.Buffer
	fr := xhttp2.NewFramer(&out, nil)
	first := blk
	if split > 0 && len(first) > split {
		first = blk[:split]
	}
	rest := blk[len(first):]
	if err := fr.WriteHeaders(xhttp2.HeadersFrameParam{StreamID: sid, BlockFragment: first, EndHeaders: len(rest) == 0,
		EndStream: true, PadLength: uint8(pad)}); err != nil {
		t.Fatal(err)
	}
	for len(rest) > 0 {
		c := rest[:min(split, len(rest))]
		rest = rest[len(c):]
		if err := fr.WriteContinuation(sid, len(rest) == 0, c); err != nil {
			t.Fatal(err)
		}
	}
	return out.Bytes()
}

// readFrames reads b with x/net's Framer and a decoder: the frames'
// types and stream errors, and the decoded fields of header blocks.
func readFrames(t testing.TB, b []byte, dec *hpack.Decoder) (kinds []string, fields []hpack.HeaderField) {
	t.Helper()
	fr := xhttp2.NewFramer(nil, bytes.NewReader(b))
	fr.ReadMetaHeaders = dec
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			var se xhttp2.StreamError
			if errors.As(err, &se) {
				kinds = append(kinds, "stream-error:"+se.Code.String())
				continue
			}
			if err.Error() == "EOF" {
				return kinds, fields
			}
			t.Fatalf("read: %v", err)
		}
		kinds = append(kinds, f.Header().Type.String())
		if mh, ok := f.(*xhttp2.MetaHeadersFrame); ok {
			fields = append(fields, mh.Fields...)
		}
	}
}

func TestResetStreamHeaders(t *testing.T) {
	for _, tc := range []struct {
		name       string
		dir        proto.Dir
		split, pad int
		fields     []string
	}{
		{"request", proto.ToServer, 0, 0, []string{":method", "GET", ":scheme", "http", ":path", "/?id=1%20UNION%20SELECT%20password", ":authority", "a", "x-long", strings.Repeat("v", 300)}},
		{"request padded split", proto.ToServer, 20, 7, []string{":method", "POST", ":path", "/x", "cookie", "s=1", "user-agent", "curl/8", "x-a", "b"}},
		{"request long cookie", proto.ToServer, 100, 0, []string{":method", "GET", ":path", "/", "cookie", strings.Repeat("c", 700)}},
		{"response", proto.ToClient, 0, 0, []string{":status", "200", "content-type", "text/plain", "x-card", "4111 1111 1111 1111"}},
		{"response split", proto.ToClient, 30, 0, []string{":status", "200", "server", "nghttpd nghttp2/1.52.0", "x-a", strings.Repeat("z", 200)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var eb bytes.Buffer
			enc := hpack.NewEncoder(&eb)
			// A first block fills the dynamic table; the second (the
			// one blocked) inserts more; the third refers to both.
			warm := headerFrames(t, enc, &eb, 1, 0, 0, tc.fields...)
			blocked := headerFrames(t, enc, &eb, 3, tc.split, tc.pad, append(slices2(tc.fields), "x-new", "inserted")...)
			after := headerFrames(t, enc, &eb, 5, 0, 0, append(slices2(tc.fields), "x-new", "inserted")...)
			rw := bytes.Clone(blocked)
			if err := ResetStream(rw, tc.dir); err != nil {
				t.Fatal(err)
			}
			if len(rw) != len(blocked) {
				t.Fatal("length changed")
			}
			var want, got []hpack.HeaderField
			dec := hpack.NewDecoder(4096, nil)
			_, want = readFrames(t, append(append(bytes.Clone(warm), blocked...), after...), dec)
			dec2 := hpack.NewDecoder(4096, nil)
			kinds, got := readFrames(t, append(append(bytes.Clone(warm), rw...), after...), dec2)
			// The block after decodes the same on both: the tables agree.
			n := len(tc.fields)/2 + 1
			if !equalFields(want[len(want)-n:], got[len(got)-n:]) {
				t.Fatalf("tables out of step: got %v, want %v", got[len(got)-n:], want[len(want)-n:])
			}
			// x/net's Framer finds the block malformed, as servers and
			// clients built on it do: a stream error.
			if g := strings.Join(kinds, " "); g != "HEADERS stream-error:PROTOCOL_ERROR HEADERS" {
				t.Fatalf("frames %q", g)
			}
		})
	}
}

func slices2(s []string) []string { return append([]string(nil), s...) }

func equalFields(a, b []hpack.HeaderField) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Value != b[i].Value {
			return false
		}
	}
	return true
}

func TestResetStreamData(t *testing.T) {
	for _, tc := range []struct {
		payload int
		err     error
		kinds   string
	}{
		{2, nil, "stream-error:PROTOCOL_ERROR"},
		{13, nil, "stream-error:PROTOCOL_ERROR"},
		{258, nil, "stream-error:PROTOCOL_ERROR"},
		{259, nil, "stream-error:PROTOCOL_ERROR DATA"},
		{266, nil, "stream-error:PROTOCOL_ERROR DATA"},
		{267, nil, "stream-error:PROTOCOL_ERROR DATA"},
		{16384, nil, "stream-error:PROTOCOL_ERROR DATA"},
		{0, ErrNoRoom, ""},
		{1, ErrNoRoom, ""},
	} {
		var out bytes.Buffer
		fr := xhttp2.NewFramer(&out, nil)
		if err := fr.WriteData(3, true, bytes.Repeat([]byte("a"), tc.payload)); err != nil {
			t.Fatal(err)
		}
		b := out.Bytes()
		orig := bytes.Clone(b)
		err := ResetStream(b, proto.ToServer)
		if !errors.Is(err, tc.err) {
			t.Fatalf("payload %d: %v, want %v", tc.payload, err, tc.err)
		}
		if err != nil {
			if !bytes.Equal(b, orig) {
				t.Fatalf("payload %d: changed on error", tc.payload)
			}
			continue
		}
		kinds, _ := readFrames(t, b, hpack.NewDecoder(4096, nil))
		if g := strings.Join(kinds, " "); g != tc.kinds {
			t.Fatalf("payload %d: frames %q, want %q", tc.payload, g, tc.kinds)
		}
		if bytes.Contains(b, []byte("aaaa")) {
			t.Fatalf("payload %d: content left", tc.payload)
		}
	}
}

func TestResetStreamRefuses(t *testing.T) {
	var out bytes.Buffer
	fr := xhttp2.NewFramer(&out, nil)
	_ = fr.WritePing(false, [8]byte{})
	_ = fr.WriteRSTStream(1, xhttp2.ErrCodeCancel)
	for _, tc := range []struct {
		b   []byte
		err error
	}{
		{nil, ErrNotFrames},
		{out.Bytes()[:17], ErrNotFrames},
		{out.Bytes()[17:], ErrNotFrames},
		{[]byte{0, 0, 1, 1, 0, 0, 0, 0, 1, 0x88}, ErrNotFrames}, // no END_HEADERS
		{[]byte{0, 0, 0, 1, 4, 0, 0, 0, 1}, ErrNoRoom},          // an empty block
		{[]byte{0, 0, 1, 1, 4, 0, 0, 0, 1, 0x48}, ErrNotFrames}, // a cut literal
	} {
		if err := ResetStream(bytes.Clone(tc.b), proto.ToServer); !errors.Is(err, tc.err) {
			t.Fatalf("%x: %v, want %v", tc.b, err, tc.err)
		}
	}
}

func FuzzResetStream(f *testing.F) {
	var eb bytes.Buffer
	enc := hpack.NewEncoder(&eb)
	f.Add(headerFrames(f, enc, &eb, 1, 0, 0, ":method", "GET", ":path", "/", "x", "y"), false)
	f.Add(headerFrames(f, enc, &eb, 3, 5, 3, ":status", "200", "x", "y", "z", strings.Repeat("q", 40)), true)
	f.Fuzz(func(t *testing.T, b []byte, resp bool) {
		dir := proto.ToServer
		if resp {
			dir = proto.ToClient
		}
		orig := b
		b = bytes.Clone(b) // the fuzzer's input is not ours to change
		if err := ResetStream(b, dir); err != nil {
			if !bytes.Equal(b, orig) {
				t.Fatal("changed on error")
			}
			return
		}
		if len(b) != len(orig) {
			t.Fatal("length changed")
		}
		// Frames x/net reads to the end stay so, but for a header block
		// in several frames whose invalid field the rewrite moved into
		// an earlier frame (x/net closes the connection on a
		// CONTINUATION after an invalid field).
		if readable(orig) && !readable(b) && int(orig[0])<<16|int(orig[1])<<8|int(orig[2]) == len(orig)-frameHeaderLen {
			t.Fatalf("rewritten frames unreadable: %q", b)
		}
	})
}

// readable reports whether x/net reads b to its end, stream errors
// allowed.
func readable(b []byte) bool {
	fr := xhttp2.NewFramer(nil, bytes.NewReader(b))
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.MaxHeaderListSize = 1 << 24
	for {
		_, err := fr.ReadFrame()
		var se xhttp2.StreamError
		switch {
		case errors.As(err, &se):
		case err != nil:
			return err.Error() == "EOF"
		}
	}
}
