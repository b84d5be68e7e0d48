package http2

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/deepwall/deepwall/dpi/proto"
)

const (
	c = proto.ToServer
	s = proto.ToClient
)

// small limits make the bounds cheap to reach.
var small = Limits{MaxStreams: 8, MaxHeaderBlock: 2048, MaxContinuations: 4, MaxHeaderListSize: 2048, MaxHeaderCount: 16}

func TestFindings(t *testing.T) {
	tests := []struct {
		name  string
		lim   Limits
		build func(s *script)
		want  []proto.FindingKind // non-fatal, in any order
		fatal proto.FindingKind
	}{
		{name: "clean", build: func(sc *script) { sc.get(1, "/"); sc.ok(1, "hi") }},
		{name: "invalid preface", build: func(sc *script) {
			sc.steps = nil
			sc.raw(c, []byte("GET / HTTP/1.1\r\nHost: h\r\n\r\n"))
		}, fatal: proto.HTTP2InvalidPreface},
		{name: "server starts without SETTINGS", build: func(sc *script) {
			sc.steps = nil
			sc.raw(c, []byte(Preface))
			sc.do(s, func(f *http2.Framer) error { return f.WritePing(false, [8]byte{}) })
		}, fatal: proto.HTTP2InvalidPreface},
		{name: "client starts with a SETTINGS ACK", build: func(sc *script) {
			sc.steps = nil
			sc.raw(c, []byte(Preface))
			sc.do(c, func(f *http2.Framer) error { return f.WriteSettingsAck() })
		}, fatal: proto.HTTP2InvalidPreface},
		{name: "PING of 4 bytes", build: func(sc *script) {
			sc.frame(c, http2.FramePing, 0, 0, []byte{1, 2, 3, 4})
		}, fatal: proto.HTTP2MalformedFrame},
		{name: "SETTINGS on a stream", build: func(sc *script) {
			sc.frame(c, http2.FrameSettings, 0, 1, nil)
		}, fatal: proto.HTTP2MalformedFrame},
		{name: "SETTINGS of 5 bytes", build: func(sc *script) {
			sc.frame(c, http2.FrameSettings, 0, 0, []byte{0, 1, 0, 0, 0})
		}, fatal: proto.HTTP2MalformedFrame},
		{name: "SETTINGS_MAX_FRAME_SIZE too small", build: func(sc *script) {
			sc.do(c, func(f *http2.Framer) error {
				return f.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 100})
			})
		}, fatal: proto.HTTP2MalformedFrame},
		{name: "DATA on stream 0", build: func(sc *script) { sc.data(c, 0, true, "x") }, fatal: proto.HTTP2MalformedFrame},
		{name: "padding longer than the frame", build: func(sc *script) {
			sc.get(1, "/")
			sc.frame(s, http2.FrameData, http2.FlagDataPadded, 1, []byte{9, 'a'})
		}, fatal: proto.HTTP2MalformedFrame},
		{name: "CONTINUATION without HEADERS", build: func(sc *script) {
			sc.do(c, func(f *http2.Framer) error { return f.WriteContinuation(1, true, nil) })
		}, fatal: proto.HTTP2MalformedFrame},
		{name: "DATA inside a header block", build: func(sc *script) {
			blk := sc.block(c, ":method", "GET", ":scheme", "http", ":authority", "h", ":path", "/")
			sc.do(c, func(f *http2.Framer) error {
				return f.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk})
			})
			sc.data(c, 1, true, "x")
		}, fatal: proto.HTTP2MalformedFrame},
		{name: "PUSH_PROMISE from the client", build: func(sc *script) {
			sc.do(c, func(f *http2.Framer) error {
				return f.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, EndHeaders: true})
			})
		}, fatal: proto.HTTP2MalformedFrame},
		{name: "frame over MAX_FRAME_SIZE", build: func(sc *script) {
			sc.headers(c, 1, false, ":method", "POST", ":scheme", "http", ":authority", "h", ":path", "/")
			sc.data(c, 1, true, strings.Repeat("x", 20000))
		}, want: kinds(proto.HTTP2FrameTooLarge)},
		{name: "frame within a raised MAX_FRAME_SIZE", build: func(sc *script) {
			sc.do(s, func(f *http2.Framer) error {
				return f.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 15})
			})
			sc.do(c, func(f *http2.Framer) error { return f.WriteSettingsAck() })
			sc.headers(c, 1, false, ":method", "POST", ":scheme", "http", ":authority", "h", ":path", "/")
			sc.data(c, 1, true, strings.Repeat("x", 20000))
		}},
		{name: "HPACK garbage", build: func(sc *script) {
			sc.do(c, func(f *http2.Framer) error {
				return f.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, EndHeaders: true})
			})
		}, fatal: proto.HTTP2HPACKError},
		{name: "table size update above SETTINGS_HEADER_TABLE_SIZE", build: func(sc *script) {
			sc.enc[c].SetMaxDynamicTableSizeLimit(1 << 20)
			sc.enc[c].SetMaxDynamicTableSize(1 << 20)
			sc.get(1, "/")
		}, fatal: proto.HTTP2HPACKError},
		{name: "table size raised by SETTINGS", build: func(sc *script) {
			sc.do(s, func(f *http2.Framer) error {
				return f.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 1 << 14})
			})
			sc.do(c, func(f *http2.Framer) error { return f.WriteSettingsAck() })
			sc.enc[c].SetMaxDynamicTableSizeLimit(1 << 14)
			sc.enc[c].SetMaxDynamicTableSize(1 << 14)
			sc.get(1, "/", "x-big", strings.Repeat("a", 8000))
			sc.get(3, "/", "x-big", strings.Repeat("a", 8000))
		}},
		{name: "table above MaxTableSize though SETTINGS allowed it", lim: Limits{MaxTableSize: 8192}, build: func(sc *script) {
			sc.do(s, func(f *http2.Framer) error {
				return f.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 1 << 16})
			})
			sc.do(c, func(f *http2.Framer) error { return f.WriteSettingsAck() })
			sc.enc[c].SetMaxDynamicTableSizeLimit(1 << 16)
			sc.enc[c].SetMaxDynamicTableSize(1 << 16)
			sc.get(1, "/")
		}, fatal: proto.HTTP2HPACKError},
		{name: "header list too large", lim: small, build: func(sc *script) {
			sc.get(1, "/", "x-big", strings.Repeat("a", 1000), "x-big2", strings.Repeat("b", 1000))
		}, fatal: proto.HTTP2HeaderListTooLarge},
		{name: "too many header fields", lim: small, build: func(sc *script) {
			var kv []string
			for range 20 {
				kv = append(kv, "x-a", "b")
			}
			sc.get(1, "/", kv...)
		}, fatal: proto.HTTP2HeaderListTooLarge},
		{name: "header block over MaxHeaderBlock", lim: small, build: func(sc *script) {
			sc.headers(c, 1, true, ":method", "GET", ":scheme", "http", ":authority", "h", ":path", "/", "x", strings.Repeat("a", 3000))
		}, fatal: proto.HTTP2HeaderListTooLarge},
		{name: "HPACK bomb", lim: Limits{MaxHeaderListSize: 1 << 20, MaxHeaderCount: 1000}, build: func(sc *script) {
			// A 4 KiB field enters the table, then 40 one-byte
			// references to it decode to 160 KiB.
			sc.get(1, "/", "x-bomb", strings.Repeat("a", 4000))
			sc.ok(1, "")
			blk := sc.block(c, ":method", "GET", ":scheme", "http", ":authority", "h", ":path", "/")
			blk = append(blk, bytes.Repeat([]byte{0x80 | 62}, 40)...)
			sc.do(c, func(f *http2.Framer) error {
				return f.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: blk, EndStream: true, EndHeaders: true})
			})
		}, fatal: proto.HTTP2HPACKBomb},
		{name: "CONTINUATION flood", lim: small, build: func(sc *script) {
			blk := sc.block(c, ":method", "GET", ":scheme", "http", ":authority", "h", ":path", "/")
			sc.do(c, func(f *http2.Framer) error {
				return f.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk})
			})
			for range 10 {
				sc.do(c, func(f *http2.Framer) error { return f.WriteContinuation(1, false, nil) })
			}
		}, fatal: proto.HTTP2ContinuationFlood},
		{name: "CONTINUATION growing the block past MaxHeaderBlock", lim: small, build: func(sc *script) {
			blk := sc.block(c, ":method", "GET", ":scheme", "http", ":authority", "h", ":path", "/")
			sc.do(c, func(f *http2.Framer) error {
				return f.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk})
			})
			for range 3 {
				sc.do(c, func(f *http2.Framer) error { return f.WriteContinuation(1, false, make([]byte, 1000)) })
			}
		}, fatal: proto.HTTP2ContinuationFlood},
		{name: "header block in CONTINUATIONs", lim: small, build: func(sc *script) {
			blk := sc.block(c, ":method", "GET", ":scheme", "http", ":authority", "h", ":path", "/split", "x-a", "b")
			sc.do(c, func(f *http2.Framer) error {
				return f.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk[:3], EndStream: true})
			})
			sc.do(c, func(f *http2.Framer) error { return f.WriteContinuation(1, false, blk[3:5]) })
			sc.do(c, func(f *http2.Framer) error { return f.WriteContinuation(1, true, blk[5:]) })
			sc.ok(1, "")
		}},
		{name: "rapid reset", build: func(sc *script) {
			sc.at(1)
			for id := uint32(1); id < 2*150; id += 2 {
				sc.get(id, "/")
				sc.rst(c, id)
			}
		}, want: kinds(proto.HTTP2RapidReset)},
		{name: "resets spread over time", build: func(sc *script) {
			for i, id := 0, uint32(1); id < 2*150; i, id = i+1, id+2 {
				sc.at(int64(i) * int64(20*time.Millisecond))
				sc.get(id, "/")
				sc.rst(c, id)
			}
		}},
		{name: "resets after the response", build: func(sc *script) {
			for id := uint32(1); id < 2*150; id += 2 {
				sc.get(id, "/")
				sc.headers(s, id, false, ":status", "200")
				sc.data(s, id, true, "x")
				sc.rst(c, id)
			}
		}},
		{name: "SETTINGS flood", build: func(sc *script) {
			for range 20 {
				sc.do(c, func(f *http2.Framer) error { return f.WriteSettings() })
			}
		}, want: kinds(proto.HTTP2SettingsFlood)},
		{name: "SETTINGS acknowledged", build: func(sc *script) {
			for range 20 {
				sc.do(c, func(f *http2.Framer) error { return f.WriteSettings() })
				sc.do(s, func(f *http2.Framer) error { return f.WriteSettingsAck() })
			}
		}},
		{name: "PING flood", build: func(sc *script) {
			for range 40 {
				sc.do(c, func(f *http2.Framer) error { return f.WritePing(false, [8]byte{1}) })
			}
		}, want: kinds(proto.HTTP2PingFlood)},
		{name: "PINGs acknowledged", build: func(sc *script) {
			for range 40 {
				sc.do(c, func(f *http2.Framer) error { return f.WritePing(false, [8]byte{1}) })
				sc.do(s, func(f *http2.Framer) error { return f.WritePing(true, [8]byte{1}) })
			}
		}},
		{name: "even stream from the client", build: func(sc *script) { sc.get(2, "/") }, want: kinds(proto.HTTP2StreamID)},
		{name: "decreasing stream ids", build: func(sc *script) { sc.get(5, "/"); sc.get(3, "/") }, want: kinds(proto.HTTP2StreamID)},
		{name: "odd promised stream", build: func(sc *script) {
			sc.get(1, "/")
			blk := sc.block(s, ":method", "GET", ":scheme", "http", ":authority", "h", ":path", "/pushed")
			sc.do(s, func(f *http2.Framer) error {
				return f.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 3, BlockFragment: blk, EndHeaders: true})
			})
		}, want: kinds(proto.HTTP2StreamID)},
		{name: "DATA on an idle stream", build: func(sc *script) { sc.data(c, 7, true, "x") }, want: kinds(proto.HTTP2StreamState)},
		{name: "RST_STREAM on an idle stream", build: func(sc *script) { sc.rst(c, 7) }, want: kinds(proto.HTTP2StreamState)},
		{name: "WINDOW_UPDATE on an idle stream", build: func(sc *script) {
			sc.do(c, func(f *http2.Framer) error { return f.WriteWindowUpdate(9, 100) })
		}, want: kinds(proto.HTTP2StreamState)},
		{name: "DATA after END_STREAM", build: func(sc *script) { sc.get(1, "/"); sc.data(c, 1, true, "x") }, want: kinds(proto.HTTP2StreamState)},
		{name: "response DATA before HEADERS", build: func(sc *script) { sc.get(1, "/"); sc.data(s, 1, true, "x") }, want: kinds(proto.HTTP2StreamState)},
		{name: "frames on a closed stream", build: func(sc *script) {
			sc.get(1, "/")
			sc.rst(c, 1)
			sc.ok(1, "late")
		}},
		{name: "too many streams", lim: small, build: func(sc *script) {
			for id := uint32(1); id < 20; id += 2 {
				sc.get(id, "/")
			}
		}, fatal: proto.HTTP2TooManyStreams},
		{name: "uppercase field name", build: func(sc *script) { sc.get(1, "/", "X-Up", "1") }, want: kinds(proto.HTTP2MalformedHeaders)},
		{name: "CRLF in a value", build: func(sc *script) {
			sc.get(1, "/", "x-a", "b\r\nTransfer-Encoding: chunked")
		}, want: kinds(proto.HTTP2MalformedHeaders)},
		{name: "space around a value", build: func(sc *script) { sc.get(1, "/", "x-a", " b") }, want: kinds(proto.HTTP2MalformedHeaders)},
		{name: "pseudo-header after a regular one", build: func(sc *script) {
			sc.headers(c, 1, true, ":method", "GET", ":scheme", "http", ":authority", "h", "x-a", "b", ":path", "/")
		}, want: kinds(proto.HTTP2MalformedHeaders)},
		{name: "unknown pseudo-header", build: func(sc *script) { sc.get(1, "/", ":foo", "b") }, want: kinds(proto.HTTP2MalformedHeaders)},
		{name: "duplicate :path", build: func(sc *script) {
			sc.headers(c, 1, true, ":method", "GET", ":scheme", "http", ":authority", "h", ":path", "/a", ":path", "/b")
		}, want: kinds(proto.HTTP2MalformedHeaders)},
		{name: "no :path", build: func(sc *script) {
			sc.headers(c, 1, true, ":method", "GET", ":scheme", "http", ":authority", "h")
		}, want: kinds(proto.HTTP2MalformedHeaders)},
		{name: "pseudo-header in trailers", build: func(sc *script) {
			sc.headers(c, 1, false, ":method", "POST", ":scheme", "http", ":authority", "h", ":path", "/")
			sc.headers(c, 1, true, ":path", "/x")
		}, want: kinds(proto.HTTP2MalformedHeaders)},
		{name: "trailers without END_STREAM", build: func(sc *script) {
			sc.headers(c, 1, false, ":method", "POST", ":scheme", "http", ":authority", "h", ":path", "/")
			sc.headers(c, 1, false, "x-t", "1")
		}, want: kinds(proto.HTTP2MalformedHeaders)},
		{name: "bad :status", build: func(sc *script) {
			sc.get(1, "/")
			sc.headers(s, 1, true, ":status", "2000")
		}, want: kinds(proto.HTTP2MalformedHeaders)},
		{name: "101 response", build: func(sc *script) {
			sc.get(1, "/")
			sc.headers(s, 1, true, ":status", "101")
		}, want: kinds(proto.HTTP2MalformedHeaders)},
		{name: "connection header", build: func(sc *script) { sc.get(1, "/", "connection", "close") }, want: kinds(proto.HTTP2ConnectionHeader)},
		{name: "transfer-encoding", build: func(sc *script) {
			sc.get(1, "/", "transfer-encoding", "chunked")
		}, want: kinds(proto.HTTP2ConnectionHeader)},
		{name: "te other than trailers", build: func(sc *script) { sc.get(1, "/", "te", "gzip") }, want: kinds(proto.HTTP2ConnectionHeader)},
		{name: "te trailers", build: func(sc *script) { sc.get(1, "/", "te", "trailers") }},
		{name: "content-length short", build: func(sc *script) {
			sc.headers(c, 1, false, ":method", "POST", ":scheme", "http", ":authority", "h", ":path", "/", "content-length", "5")
			sc.data(c, 1, true, "abc")
		}, want: kinds(proto.HTTP2ContentLength)},
		{name: "content-length exceeded", build: func(sc *script) {
			sc.headers(c, 1, false, ":method", "POST", ":scheme", "http", ":authority", "h", ":path", "/", "content-length", "2")
			sc.data(c, 1, false, "abc")
		}, want: kinds(proto.HTTP2ContentLength)},
		{name: "invalid content-length", build: func(sc *script) {
			sc.headers(c, 1, true, ":method", "POST", ":scheme", "http", ":authority", "h", ":path", "/", "content-length", "1x")
		}, want: kinds(proto.HTTPInvalidContentLength)},
		{name: "host and :authority differ", build: func(sc *script) { sc.get(1, "/", "host", "other") }, want: kinds(proto.HTTPHostMismatch)},
		{name: "path obfuscation", build: func(sc *script) { sc.get(1, "/a/%2e%2e/b?x=%zz") }, want: kinds(proto.HTTPURIDotSegment, proto.HTTPURIEncodedDot, proto.HTTPURIDotSegmentEscape, proto.HTTPURIInvalidEscape)},
		{name: "truncated frame", build: func(sc *script) {
			sc.get(1, "/")
			sc.raw(s, []byte{0, 0, 9, 1})
		}, want: kinds(proto.HTTP2Truncated)},
		{name: "truncated header block", build: func(sc *script) {
			blk := sc.block(c, ":method", "GET", ":scheme", "http", ":authority", "h", ":path", "/")
			sc.do(c, func(f *http2.Framer) error {
				return f.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk})
			})
		}, want: kinds(proto.HTTP2Truncated)},
		{name: "unknown frame type skipped", build: func(sc *script) {
			sc.frame(c, 0x42, 0xff, 3, []byte("whatever"))
			sc.get(1, "/")
			sc.ok(1, "x")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sc := newScript(t)
			tc.build(sc)
			r := sc.run(tc.lim)
			var got []proto.FindingKind
			var fatal proto.FindingKind
			for _, f := range r.findings {
				if f.Fatal {
					fatal = f.Kind
				} else {
					got = append(got, f.Kind)
				}
			}
			slices.Sort(got)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(got, want) || fatal != tc.fatal {
				t.Errorf("findings %v fatal %v, want %v fatal %v\n%s", got, fatal, want, tc.fatal, r)
			}
			// The same whatever the chunking.
			c2s, s2c := sc.concat()
			if !strings.Contains(tc.name, "rapid") && !strings.Contains(tc.name, "acknowledged") && !strings.Contains(tc.name, "time") && !strings.Contains(tc.name, "after the response") && !strings.Contains(tc.name, "raised") {
				r2 := newRecorder(t)
				p := NewParser(r2, NewScratch(tc.lim, nil))
				for _, ch := range splitEvery(c2s, 7) {
					p.Feed(c, ch)
				}
				for _, ch := range splitEvery(s2c, 5) {
					p.Feed(s, ch)
				}
				p.Close(c)
				p.Close(s)
				if r2.String() != feedWhole(tc.lim, c2s, s2c) {
					t.Errorf("chunked:\n%s\nwhole:\n%s", r2, feedWhole(tc.lim, c2s, s2c))
				}
			}
		})
	}
}

func kinds(ks ...proto.FindingKind) []proto.FindingKind { return ks }

func splitEvery(b []byte, n int) [][]byte {
	var out [][]byte
	for len(b) > n {
		out = append(out, b[:n])
		b = b[n:]
	}
	return append(out, b)
}

// feedWhole parses each direction in one chunk, client first.
func feedWhole(lim Limits, c2s, s2c []byte) string {
	r := newRecorder(nopTB{})
	p := NewParser(r, NewScratch(lim, nil))
	p.Feed(c, c2s)
	p.Feed(s, s2c)
	p.Close(c)
	p.Close(s)
	return r.String()
}

// nopTB is a testing.TB for recorders whose contract checks another run
// already made.
type nopTB struct{ testing.TB }

func (nopTB) Errorf(string, ...any) {}
func (nopTB) Helper()               {}
