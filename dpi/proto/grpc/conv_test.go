package grpc

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/dpi/proto/http"
	"github.com/deepwall/deepwall/dpi/proto/http2"
	"github.com/deepwall/deepwall/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// grpcSink is an http2.Sink that does what the engine does for gRPC: it
// recognises gRPC streams, splits their messages and walks them, and
// reads their status; it logs the fields a rule would see.
type grpcSink struct {
	sc      *Scratch
	lines   []string
	streams map[uint32]*grpcStream
}

type grpcStream struct{ r [2]Reader }

// side adapts a stream side to Handler.
type side struct {
	s   *grpcSink
	id  uint32
	dir proto.Dir
}

func (h side) Message(m []byte) {
	h.s.add("%d %s message %d bytes", h.id, h.dir, len(m))
	found := h.s.sc.Walker.Walk(m, func(f Field) bool {
		if f.Text {
			h.s.add("%d %s grpc.string %v %q", h.id, h.dir, f.Path, f.Value)
		}
		return true
	})
	for _, k := range proto.FindingKinds() {
		if found.Has(k) {
			h.s.add("%d %s finding %s", h.id, h.dir, k)
		}
	}
}

func (h side) Finding(k proto.FindingKind) { h.s.add("%d %s finding %s", h.id, h.dir, k) }

func (s *grpcSink) add(format string, args ...any) {
	s.lines = append(s.lines, fmt.Sprintf(format, args...))
}

func (s *grpcSink) RequestHeaders(id uint32, r *http.Request) {
	if !IsContentType(r.Header("content-type")) {
		return
	}
	svc, m, ok := SplitPath(r.Path)
	if !ok {
		s.add("%d finding %s", id, proto.GRPCInvalidPath)
	}
	st := &grpcStream{}
	st.r[0].Reset(ParseEncoding(r.Header("grpc-encoding")))
	s.streams[id] = st
	s.add("%d grpc.service %q grpc.method %q", id, svc, m)
}

func (s *grpcSink) ResponseHeaders(id uint32, r *http.Response) {
	if st := s.streams[id]; st != nil {
		st.r[1].Reset(ParseEncoding(r.Header("grpc-encoding")))
		s.status(id, r.Headers)
	}
}

func (s *grpcSink) body(id uint32, dir proto.Dir, chunk []byte, end bool) {
	st := s.streams[id]
	if st == nil {
		return
	}
	h := side{s, id, dir}
	st.r[dir].Feed(s.sc, chunk, h)
	if end {
		st.r[dir].End(h)
	}
}

func (s *grpcSink) RequestBody(id uint32, chunk []byte, end bool) {
	s.body(id, proto.ToServer, chunk, end)
}
func (s *grpcSink) ResponseBody(id uint32, chunk []byte, end bool) {
	s.body(id, proto.ToClient, chunk, end)
}

func (s *grpcSink) Trailers(id uint32, dir proto.Dir, hs []http.Header, _ []byte) {
	if s.streams[id] != nil && dir == proto.ToClient {
		s.status(id, hs)
	}
}

func (s *grpcSink) status(id uint32, hs []http.Header) {
	if code, msg, ok := Status(hs); ok {
		s.add("%d grpc.status %d grpc.message %q", id, code, AppendMessage(nil, msg))
	}
}

func (s *grpcSink) StreamClosed(id uint32, how http2.End) { delete(s.streams, id) }
func (s *grpcSink) Finding(id uint32, f proto.Finding)    { s.add("%d finding %s", id, f.Kind) }

// TestConversations runs the captured gRPC calls (dpi/proto/http2's
// testdata/conv: grpc.0, nghttp posting a hand-made length-prefixed
// message to a Go h2c server that echoes it with grpc-status trailers;
// grpc-go.0, a grpc-go client calling a grpc-go server plainly, with
// gzip, and failing) through the HTTP/2 parser and this package, the way
// the engine will.
func TestConversations(t *testing.T) {
	for _, name := range []string{"grpc.0", "grpc-go.0"} {
		t.Run(name, func(t *testing.T) {
			c2s, err := os.ReadFile("../http2/testdata/conv/" + name + ".c2s")
			if err != nil {
				t.Fatal(err)
			}
			s2c, err := os.ReadFile("../http2/testdata/conv/" + name + ".s2c")
			if err != nil {
				t.Fatal(err)
			}
			s := &grpcSink{sc: NewScratch(Limits{}), streams: map[uint32]*grpcStream{}}
			p := http2.NewParser(s, http2.NewScratch(http2.Limits{}, nil))
			p.Feed(proto.ToServer, c2s)
			p.Feed(proto.ToClient, s2c)
			p.Close(proto.ToServer)
			p.Close(proto.ToClient)
			testutil.Golden(t, "testdata/golden/"+name+".txt", []byte(strings.Join(s.lines, "\n")+"\n"), *update)
		})
	}
}
