package http

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"

	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/dpi/proto/internal/prototest"
	"github.com/deepwall/deepwall/internal/testutil"
)

// encode and chunk are the shared helpers, short.
func encode(tb testing.TB, ce string, b []byte) []byte { return testutil.Encode(tb, ce, b) }

func chunk(b []byte, n int) []byte { return testutil.Chunked(b, n) }

const decodePlain = "id=1' UNION SELECT password FROM users--&card=4111 1111 1111 1111"

func TestDecodeCodings(t *testing.T) {
	sc := NewScratch(Limits{})
	for _, tc := range []struct {
		ce   string // header value
		wire string // codings applied (raw-deflate stands for deflate without zlib)
	}{
		{"gzip", "gzip"},
		{"x-gzip", "gzip"},
		{"deflate", "deflate"},
		{"deflate", "raw-deflate"},
		{"br", "br"},
		{"zstd", "zstd"},
		{"gzip, br", "gzip, br"},
		{"deflate, zstd, gzip", "deflate, zstd, gzip"},
		{"identity, GZIP", "gzip"},
	} {
		enc := encode(t, tc.wire, []byte(decodePlain))
		for _, chunked := range []bool{false, true} {
			name := fmt.Sprintf("%s/%s/chunked=%v", tc.ce, tc.wire, chunked)
			t.Run(name, func(t *testing.T) {
				framing := fmt.Sprintf("Content-Length: %d\r\n\r\n", len(enc))
				body := enc
				if chunked {
					framing = "Transfer-Encoding: chunked\r\n\r\n"
					body = chunk(enc, 7)
				}
				ce := "Content-Encoding: " + tc.ce + "\r\n"
				req := append([]byte("POST /f HTTP/1.1\r\nHost: h\r\n"+ce+framing), body...)
				resp := append([]byte("HTTP/1.1 200 OK\r\n"+ce+framing), body...)
				want := fmt.Sprintf("reqbody %q", decodePlain)
				wantResp := fmt.Sprintf("respbody %q", decodePlain)
				// Every cut of the stream, 1-byte segments included,
				// gives the same decoded body.
				n := 0
				prototest.Chunkings(req, 40, func(chunks [][]byte) {
					n++
					got := run(t, sc, chunks, whole(string(resp)))
					if !strings.Contains(got, want) || !strings.Contains(got, wantResp) || strings.Contains(got, "finding") {
						t.Fatalf("%d chunks:\n%s", len(chunks), got)
					}
				})
				if sc.decMem != 0 {
					t.Fatalf("%d bytes of decoder memory still reserved", sc.decMem)
				}
			})
		}
	}
}

func TestDecodeFindings(t *testing.T) {
	zeros := encode(t, "gzip", make([]byte, 10<<20))
	gz := encode(t, "gzip", []byte(decodePlain))
	// 2 MiB of hex text: compresses about 2 times, so it reaches
	// MaxDecodedBody and not the ratio.
	rnd := rand.New(rand.NewPCG(1, 2))
	hexText := make([]byte, 2<<20)
	for i := range hexText {
		hexText[i] = "0123456789abcdef"[rnd.IntN(16)]
	}
	big := encode(t, "gzip", hexText)
	for _, tc := range []struct {
		name  string
		ce    string
		body  []byte
		want  []proto.FindingKind
		fatal proto.FindingKind
		body2 string // substring of the decoded body expected in the log
	}{
		{name: "bomb", ce: "gzip", body: zeros, fatal: proto.HTTPDecompressionBomb},
		{name: "limit", ce: "gzip", body: big, want: kinds(proto.HTTPDecodeLimit), body2: "reqbody"},
		{name: "unknown", ce: "compress", body: []byte("raw"), want: kinds(proto.HTTPUnknownEncoding), body2: `reqbody "raw"`},
		{name: "too many", ce: "gzip, gzip, gzip, gzip", body: gz, fatal: proto.HTTPTooManyEncodings},
		{name: "corrupt", ce: "gzip", body: []byte("\x1f\x8b\x08\x00garbage-garbage"), fatal: proto.HTTPDecodeError},
		{name: "trailing", ce: "gzip", body: append(bytes.Clone(gz), "; DROP TABLE x"...), fatal: proto.HTTPDecodeError},
		{name: "brotli window", ce: "br", body: []byte{0x0f, 0, 0, 0}, fatal: proto.HTTPDecoderMemory}, // WBITS 24
		{name: "not zstd", ce: "zstd", body: []byte("plain text"), fatal: proto.HTTPDecodeError},
		{name: "empty", ce: "gzip", body: nil, body2: `reqbody ""`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := NewScratch(Limits{})
			in := fmt.Sprintf("POST / HTTP/1.1\r\nHost: h\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n%s", tc.ce, len(tc.body), tc.body)
			r := checkFindings(t, sc, proto.ToServer, "", findingCase{tc.name, in, tc.want, tc.fatal})
			if tc.body2 != "" && !strings.Contains(r.String(), tc.body2) {
				t.Errorf("log lacks %q:\n%.2000s", tc.body2, r)
			}
			if tc.fatal == proto.FindingNone && tc.body2 != "" && !strings.Contains(r.String(), "reqbody") {
				t.Errorf("no body end:\n%.2000s", r)
			}
		})
	}
}

// TestDecodeBombMemory checks that a decompression bomb costs bounded
// memory: 10 MiB of zeros, gzipped twice, in 1,000-byte segments.
func TestDecodeBombMemory(t *testing.T) {
	body := encode(t, "gzip, gzip", make([]byte, 10<<20))
	sc := NewScratch(Limits{})
	in := append([]byte(fmt.Sprintf("POST / HTTP/1.1\r\nHost: h\r\nContent-Encoding: gzip, gzip\r\nContent-Length: %d\r\n\r\n", len(body))), body...)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r := newRecorder(t)
	r.skipFindings = true
	p := NewParser(r, sc)
	for len(in) > 0 {
		k := min(1000, len(in))
		p.Feed(proto.ToServer, in[:k])
		in = in[k:]
	}
	runtime.ReadMemStats(&after)
	if !r.has(proto.HTTPDecompressionBomb) {
		t.Fatalf("no bomb finding:\n%.1000s", r)
	}
	if d := after.TotalAlloc - before.TotalAlloc; d > 4<<20 {
		t.Errorf("allocated %d bytes for a bomb", d)
	}
	p.Release()
	if sc.decMem != 0 {
		t.Errorf("%d bytes reserved after Release", sc.decMem)
	}
}

// TestDecoderMemoryBudget checks that connections of one Scratch cannot
// reserve more decoder memory than the limit, and that Release frees it.
func TestDecoderMemoryBudget(t *testing.T) {
	sc := NewScratch(Limits{MaxDecoderMemory: 3 * flateMemory})
	gz := encode(t, "gzip", []byte(decodePlain))
	head := fmt.Sprintf("POST / HTTP/1.1\r\nHost: h\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n", len(gz))
	var ps []*Parser
	for i := range 4 {
		r := newRecorder(t)
		p := NewParser(r, sc)
		p.Feed(proto.ToServer, append([]byte(head), gz[:5]...))
		if got := r.has(proto.HTTPDecoderMemory); got != (i == 3) {
			t.Fatalf("connection %d: decoder_memory=%v\n%s", i, got, r)
		}
		ps = append(ps, p)
	}
	for _, p := range ps {
		p.Release()
	}
	if sc.decMem != 0 {
		t.Fatalf("%d bytes reserved after Release", sc.decMem)
	}
}

func TestBrotliWindowBits(t *testing.T) {
	for _, lgwin := range []int{10, 16, 17, 18, 22, 24} {
		b := encodeBrotliWindow(t, lgwin)
		if got := brotliWindowBits(b[0]); got != lgwin {
			t.Errorf("lgwin %d: read %d", lgwin, got)
		}
	}
}

func encodeBrotliWindow(tb testing.TB, lgwin int) []byte {
	var out bytes.Buffer
	w := brotli.NewWriterOptions(&out, brotli.WriterOptions{Quality: 5, LGWin: lgwin})
	_, _ = w.Write(bytes.Repeat([]byte("x"), 1<<lgwin+10))
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return out.Bytes()
}

// TestDecodeReleaseQuiet checks that a decoder ended early (Release, the
// engine freeing the flow) hands nothing more to the Sink, whatever it
// had decoded: the Sink may have closed the message's state already.
func TestDecodeReleaseQuiet(t *testing.T) {
	sc := NewScratch(Limits{})
	for _, ce := range []string{"gzip", "deflate", "br", "zstd"} {
		body := encode(t, ce, []byte(strings.Repeat(decodePlain, 50)))
		r := newRecorder(t)
		p := NewParser(r, sc)
		p.Feed(proto.ToServer, append([]byte(fmt.Sprintf("POST / HTTP/1.1\r\nHost: h\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n", ce, len(body))), body[:len(body)-3]...))
		before := r.body[0].Len()
		p.Release()
		if r.body[0].Len() != before || strings.Contains(r.String(), "reqbody") {
			t.Errorf("%s: the Sink got body text after Release:\n%s", ce, r)
		}
		if sc.decMem != 0 {
			t.Errorf("%s: %d bytes reserved after Release", ce, sc.decMem)
		}
	}
}

// BenchmarkDecode measures a compressed response's cost through the
// parser, fed in 1,460-byte segments: 64 KiB of HTML-like text, plain and
// in each coding (Gbit/s of decoded text; allocations per body).
func BenchmarkDecode(b *testing.B) {
	var page bytes.Buffer
	for i := 0; page.Len() < 64<<10; i++ {
		fmt.Fprintf(&page, "<tr><td class=\"item\">Item %d</td><td>%d.%02d EUR</td><td><a href=\"/p/%d\">details</a></td></tr>\n", i, i*7%500, i%100, i)
	}
	for _, ce := range []string{"identity", "gzip", "deflate", "br", "zstd"} {
		b.Run(ce, func(b *testing.B) {
			body := page.Bytes()
			if ce != "identity" {
				body = encode(b, ce, body)
			}
			req := []byte("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
			resp := append([]byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n", ce, len(body))), body...)
			sc := NewScratch(Limits{})
			sink := &countingSink{}
			p := NewParser(sink, sc)
			b.ReportAllocs()
			for b.Loop() {
				p.Feed(proto.ToServer, req)
				for i := 0; i < len(resp); i += 1460 {
					p.Feed(proto.ToClient, resp[i:min(i+1460, len(resp))])
				}
			}
			reportRate(b, page.Len())
			if p.State(proto.ToClient) != StateHTTP {
				b.Fatal("parser stopped")
			}
		})
	}
}

// TestDecodeErrorResponse checks that a response that does not decode is
// a finding, not a stop: the next response on the connection is parsed.
func TestDecodeErrorResponse(t *testing.T) {
	sc := NewScratch(Limits{})
	bad := "\x1f\x8b\x08\x00garbage-garbage"
	in := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%sHTTP/1.1 204 No Content\r\n\r\n", len(bad), bad)
	r := checkFindings(t, sc, proto.ToClient, "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n",
		findingCase{"corrupt response", in, kinds(proto.HTTPDecodeError), proto.FindingNone})
	if !strings.Contains(r.String(), "resp 204") {
		t.Errorf("the next response was not parsed:\n%s", r)
	}
}

// decoderSink records what a Decoder passes on.
type decoderSink struct {
	text     bytes.Buffer
	findings []string
}

func (s *decoderSink) DecodedBody(b []byte) { s.text.Write(b) }
func (s *decoderSink) DecodeFinding(f proto.Finding) {
	s.findings = append(s.findings, fmt.Sprintf("%s fatal=%v", f.Kind, f.Fatal))
}

// TestDecoder: the parser's decoder on a body framed elsewhere (HTTP/2
// streams), written in chunks of every size.
func TestDecoder(t *testing.T) {
	sc := NewScratch(Limits{})
	gz := encode(t, "gzip", []byte(decodePlain))
	for _, tc := range []struct {
		name     string
		ce       []string // Content-Encoding fields
		dir      proto.Dir
		body     []byte
		active   bool
		text     string
		findings []string
	}{
		{"none", nil, proto.ToServer, nil, false, "", nil},
		{"identity", []string{"identity"}, proto.ToServer, nil, false, "", nil},
		{"gzip", []string{"gzip"}, proto.ToServer, gz, true, decodePlain, nil},
		{"stacked in two fields", []string{"gzip", "br"}, proto.ToClient, encode(t, "gzip, br", []byte(decodePlain)), true, decodePlain, nil},
		{"unknown", []string{"compress"}, proto.ToServer, nil, false, "", []string{"http.unknown_encoding fatal=false"}},
		{"too many", []string{"gzip, gzip, gzip, gzip"}, proto.ToServer, nil, false, "", []string{"http.too_many_encodings fatal=true"}},
		{"corrupt request", []string{"gzip"}, proto.ToServer, append([]byte{0x1f, 0x8b}, "not gzip at all"...), true, "", []string{"http.decode_error fatal=true"}},
		{"corrupt response", []string{"gzip"}, proto.ToClient, append([]byte{0x1f, 0x8b}, "not gzip at all"...), true, "", []string{"http.decode_error fatal=false"}},
	} {
		for _, size := range []int{1, 7, 1 << 20} {
			t.Run(fmt.Sprintf("%s/%d", tc.name, size), func(t *testing.T) {
				var hs []Header
				for _, v := range tc.ce {
					hs = append(hs, Header{Name: []byte("Content-Encoding"), Value: []byte(v)})
				}
				s := &decoderSink{}
				var dc Decoder
				if got := dc.Start(sc, tc.dir, hs, s); got != tc.active || dc.Active() != tc.active {
					t.Fatalf("Start = %v, Active = %v, want %v", got, dc.Active(), tc.active)
				}
				for b := tc.body; len(b) > 0; {
					n := min(size, len(b))
					dc.Write(b[:n], n == len(b))
					b = b[n:]
				}
				dc.Release()
				if s.text.String() != tc.text || fmt.Sprint(s.findings) != fmt.Sprint(tc.findings) {
					t.Errorf("decoded %q, findings %v; want %q, %v", s.text.String(), s.findings, tc.text, tc.findings)
				}
				if sc.decMem != 0 {
					t.Fatalf("%d bytes of decoder memory still reserved", sc.decMem)
				}
			})
		}
	}
}
