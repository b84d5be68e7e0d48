package grpc

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/dpi/proto/http"
	"github.com/deepwall/deepwall/dpi/proto/internal/prototest"
)

func TestIsContentType(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/grpc": true, "application/grpc+proto": true, "Application/GRPC+json": true,
		"application/grpc;charset=utf-8": true, "application/grpc-web+proto": true,
		"application/grpcx": false, "application/json": false, "application/grp": false, "": false,
	} {
		if got := IsContentType([]byte(ct)); got != want {
			t.Errorf("IsContentType(%q) = %v", ct, got)
		}
	}
}

func TestSplitPath(t *testing.T) {
	tests := []struct{ path, service, method string }{
		{"/orders.v1.Orders/Create", "orders.v1.Orders", "Create"},
		{"/grpc.health.v1.Health/Check", "grpc.health.v1.Health", "Check"},
		{"/a/b", "a", "b"},
		{"/Orders", "", ""},
		{"//Create", "", ""},
		{"/a/", "", ""},
		{"/a/b/c", "", ""},
		{"a/b", "", ""},
	}
	for _, tc := range tests {
		s, m, ok := SplitPath([]byte(tc.path))
		if string(s) != tc.service || string(m) != tc.method || ok != (tc.service != "") {
			t.Errorf("SplitPath(%q) = %q, %q, %v", tc.path, s, m, ok)
		}
	}
}

func TestStatus(t *testing.T) {
	hs := []http.Header{{Name: []byte("Grpc-Status"), Value: []byte("13")}, {Name: []byte("grpc-message"), Value: []byte("bad%20input%3a%2")}}
	code, msg, ok := Status(hs)
	if code != 13 || !ok || string(AppendMessage(nil, msg)) != "bad input:%2" {
		t.Errorf("Status = %d %q %v", code, AppendMessage(nil, msg), ok)
	}
	if _, _, ok := Status([]http.Header{{Name: []byte("grpc-status"), Value: []byte("x")}}); ok {
		t.Error("Status accepted a non-number")
	}
	if _, _, ok := Status(nil); ok {
		t.Error("Status without grpc-status")
	}
}

// handler records a Reader's output.
type handler struct {
	msgs     []string
	findings []proto.FindingKind
}

func (h *handler) Message(m []byte)            { h.msgs = append(h.msgs, string(m)) }
func (h *handler) Finding(k proto.FindingKind) { h.findings = append(h.findings, k) }
func (h *handler) String() string              { return fmt.Sprintf("%q %v", h.msgs, h.findings) }

// frame length-prefixes a message.
func frame(flag byte, msg []byte) []byte {
	out := []byte{flag, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(out[1:], uint32(len(msg)))
	return append(out, msg...)
}

func gz(tb testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func TestReader(t *testing.T) {
	lim := Limits{MaxMessage: 64, MaxDecoded: 100}
	tests := []struct {
		name  string
		enc   Encoding
		data  []byte
		want  []string
		finds []proto.FindingKind
	}{
		{"two messages", EncodingIdentity, slices.Concat(frame(0, []byte("hello")), frame(0, []byte("world!"))), []string{"hello", "world!"}, nil},
		{"empty message", EncodingIdentity, frame(0, nil), []string{""}, nil},
		{"too large skipped", EncodingIdentity, slices.Concat(frame(0, bytes.Repeat([]byte("x"), 65)), frame(0, []byte("next"))),
			[]string{"next"}, []proto.FindingKind{proto.GRPCMessageTooLarge}},
		{"gzip", EncodingGzip, slices.Concat(frame(1, gz(t, []byte("compressed text"))), frame(0, []byte("plain"))), []string{"compressed text", "plain"}, nil},
		{"gzip corrupt", EncodingGzip, frame(1, []byte("not gzip at all")), nil, []proto.FindingKind{proto.GRPCDecodeError}},
		{"gzip over MaxDecoded", EncodingGzip, frame(1, gz(t, bytes.Repeat([]byte("a"), 5000))),
			[]string{strings.Repeat("a", 100)}, []proto.FindingKind{proto.GRPCDecodeLimit}},
		{"gzip exactly MaxDecoded", EncodingGzip, frame(1, gz(t, bytes.Repeat([]byte("b"), 100))), []string{strings.Repeat("b", 100)}, nil},
		{"unknown encoding", EncodingOther, frame(1, []byte("zstd?")), nil, []proto.FindingKind{proto.GRPCUnknownEncoding}},
		{"gRPC-Web trailers skipped", EncodingIdentity, slices.Concat(frame(0, []byte("m")), frame(0x80, []byte("grpc-status: 0\r\n"))), []string{"m"}, nil},
		{"truncated", EncodingIdentity, slices.Concat(frame(0, []byte("ok")), frame(0, []byte("cut"))[:6]), []string{"ok"}, []proto.FindingKind{proto.GRPCTruncated}},
	}
	sc := NewScratch(lim)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var want string
			prototest.Chunkings(tc.data, 8, func(chunks [][]byte) {
				var r Reader
				r.Reset(tc.enc)
				h := &handler{}
				for _, c := range chunks {
					r.Feed(sc, c, h)
				}
				r.End(h)
				if want == "" {
					want = h.String()
					if !slices.Equal(h.msgs, tc.want) && !(len(h.msgs) == 0 && len(tc.want) == 0) || !slices.Equal(h.findings, tc.finds) {
						t.Fatalf("got %s, want %q %v", h, tc.want, tc.finds)
					}
				} else if got := h.String(); got != want {
					t.Fatalf("chunks %q: %s, whole: %s", chunks, got, want)
				}
			})
		})
	}
}
