package http2

import (
	"bytes"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/deepwall/deepwall/dpi/proto"
)

// script builds a conversation frame by frame with x/net/http2's Framer
// and hpack Encoder, both directions interleaved in the order written.
type script struct {
	tb    testing.TB
	steps []step
	buf   bytes.Buffer
	fr    *http2.Framer
	enc   [2]*hpack.Encoder
	hbuf  [2]bytes.Buffer
}

// step is bytes of one direction; at, when set, is fed to SetTime first.
type step struct {
	dir  proto.Dir
	b    []byte
	at   int64
	time bool
}

// newScript returns a script that has sent the preface and both
// SETTINGS (with their ACKs).
func newScript(tb testing.TB) *script {
	s := bareScript(tb)
	s.raw(proto.ToServer, []byte(Preface))
	s.do(proto.ToServer, func(f *http2.Framer) error { return f.WriteSettings() })
	s.do(proto.ToClient, func(f *http2.Framer) error { return f.WriteSettings() })
	s.do(proto.ToClient, func(f *http2.Framer) error { return f.WriteSettingsAck() })
	s.do(proto.ToServer, func(f *http2.Framer) error { return f.WriteSettingsAck() })
	return s
}

// bareScript returns a script that has sent nothing.
func bareScript(tb testing.TB) *script {
	s := &script{tb: tb}
	s.fr = http2.NewFramer(&s.buf, nil)
	s.fr.AllowIllegalWrites = true
	for i := range s.enc {
		s.enc[i] = hpack.NewEncoder(&s.hbuf[i])
	}
	return s
}

// raw appends bytes to a direction.
func (s *script) raw(dir proto.Dir, b []byte) {
	s.steps = append(s.steps, step{dir: dir, b: bytes.Clone(b)})
}

// at makes the next steps happen at time ns.
func (s *script) at(ns int64) { s.steps = append(s.steps, step{at: ns, time: true}) }

// do writes frames with the Framer into direction dir.
func (s *script) do(dir proto.Dir, write func(*http2.Framer) error) {
	s.tb.Helper()
	s.buf.Reset()
	if err := write(s.fr); err != nil {
		s.tb.Fatal(err)
	}
	s.raw(dir, s.buf.Bytes())
}

// block HPACK-encodes name, value pairs with dir's encoder.
func (s *script) block(dir proto.Dir, kv ...string) []byte {
	h := &s.hbuf[dir]
	h.Reset()
	for i := 0; i+1 < len(kv); i += 2 {
		if err := s.enc[dir].WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]}); err != nil {
			s.tb.Fatal(err)
		}
	}
	return bytes.Clone(h.Bytes())
}

// headers sends a HEADERS frame with the given fields.
func (s *script) headers(dir proto.Dir, id uint32, end bool, kv ...string) {
	blk := s.block(dir, kv...)
	s.do(dir, func(f *http2.Framer) error {
		return f.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: blk, EndStream: end, EndHeaders: true})
	})
}

// get sends a GET request for path on stream id.
func (s *script) get(id uint32, path string, extra ...string) {
	s.headers(proto.ToServer, id, true, append([]string{":method", "GET", ":scheme", "http", ":authority", "h", ":path", path}, extra...)...)
}

// ok sends a 200 response with body on stream id.
func (s *script) ok(id uint32, body string) {
	s.headers(proto.ToClient, id, body == "", ":status", "200")
	if body != "" {
		s.data(proto.ToClient, id, true, body)
	}
}

func (s *script) data(dir proto.Dir, id uint32, end bool, body string) {
	s.do(dir, func(f *http2.Framer) error { return f.WriteData(id, end, []byte(body)) })
}

func (s *script) rst(dir proto.Dir, id uint32) {
	s.do(dir, func(f *http2.Framer) error { return f.WriteRSTStream(id, http2.ErrCodeCancel) })
}

// frame writes a raw frame.
func (s *script) frame(dir proto.Dir, t http2.FrameType, flags http2.Flags, id uint32, payload []byte) {
	s.do(dir, func(f *http2.Framer) error { return f.WriteRawFrame(t, flags, id, payload) })
}

// run feeds the script to a new parser with limits lim and returns what
// the Sink received.
func (s *script) run(lim Limits) *recorder {
	s.tb.Helper()
	r := newRecorder(s.tb)
	p := NewParser(r, NewScratch(lim, nil))
	s.feed(p)
	return r
}

// feed feeds the steps, then closes both directions.
func (s *script) feed(p *Parser) {
	for _, st := range s.steps {
		if st.time {
			p.SetTime(st.at)
			continue
		}
		p.Feed(st.dir, st.b)
	}
	p.Close(proto.ToServer)
	p.Close(proto.ToClient)
}

// concat returns each direction's bytes.
func (s *script) concat() (c2s, s2c []byte) {
	for _, st := range s.steps {
		if st.dir == proto.ToServer {
			c2s = append(c2s, st.b...)
		} else {
			s2c = append(s2c, st.b...)
		}
	}
	return c2s, s2c
}
