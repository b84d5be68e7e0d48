package dpi

import (
	"fmt"
	"strings"
	"testing"

	"github.com/deepwall/deepwall/dataplane"
	"github.com/deepwall/deepwall/dpi/flow"
	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/dpi/proto/http"
	"github.com/deepwall/deepwall/dpi/proto/http2"
	"github.com/deepwall/deepwall/internal/ruletest"
)

// h1Recorder is an http2.Sink that writes the streams of an HTTP/2
// conversation as the same exchanges over one HTTP/1.1 connection.
type h1Recorder struct {
	ex   [][2]string // request, response
	body map[uint32]*[2]strings.Builder
	head map[uint32]*[2]string
	n    int
}

func (r *h1Recorder) RequestHeaders(id uint32, q *http.Request) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", q.Method, q.URI, q.Host)
	for _, h := range q.Headers {
		if string(h.Name) != "host" && string(h.Name) != "content-length" {
			fmt.Fprintf(&b, "%s: %s\r\n", h.Name, h.Value)
		}
	}
	r.head[id] = &[2]string{b.String()}
	r.body[id] = &[2]strings.Builder{}
	r.n++
}

func (r *h1Recorder) RequestBody(id uint32, chunk []byte, end bool) {
	if b := r.body[id]; b != nil {
		b[0].Write(chunk)
	}
}

func (r *h1Recorder) ResponseHeaders(id uint32, s *http.Response) {
	if r.head[id] == nil {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 %d OK\r\n", s.Status)
	for _, h := range s.Headers {
		if string(h.Name) != "content-length" {
			fmt.Fprintf(&b, "%s: %s\r\n", h.Name, h.Value)
		}
	}
	r.head[id][1] = b.String()
}

func (r *h1Recorder) ResponseBody(id uint32, chunk []byte, end bool) {
	if b := r.body[id]; b != nil {
		b[1].Write(chunk)
	}
}

func (r *h1Recorder) Trailers(uint32, proto.Dir, []http.Header, []byte) {}
func (r *h1Recorder) Finding(uint32, proto.Finding)                     {}

func (r *h1Recorder) StreamClosed(id uint32, _ http2.End) {
	h, b := r.head[id], r.body[id]
	if h == nil {
		return
	}
	r.ex = append(r.ex, [2]string{
		fmt.Sprintf("%sContent-Length: %d\r\n\r\n%s", h[0], b[0].Len(), b[0].String()),
		fmt.Sprintf("%sContent-Length: %d\r\n\r\n%s", h[1], b[1].Len(), b[1].String()),
	})
}

// h2Traffic returns the captured h2load conversation and the same
// exchanges over HTTP/1.1, each as one connection, and the request count.
func h2Traffic(tb testing.TB) (h2, h1 *capture, requests int) {
	tb.Helper()
	c2s, s2c := readConv(tb, "h2load.0")
	rec := &h1Recorder{body: map[uint32]*[2]strings.Builder{}, head: map[uint32]*[2]string{}}
	p := http2.NewParser(rec, http2.NewScratch(http2.Limits{}, nil))
	p.Feed(proto.ToServer, c2s)
	p.Feed(proto.ToClient, s2c)
	p.Close(proto.ToServer)
	p.Close(proto.ToClient)
	mk := func(ex [][2]string) *capture {
		c := newCapture(tb)
		v := c.tcp(cli, srv).handshake()
		for _, e := range ex {
			v.send(flow.ToServer, e[0])
			v.send(flow.ToClient, e[1])
		}
		v.close()
		return c
	}
	return mk([][2]string{{string(c2s), string(s2c)}}), mk(rec.ex), rec.n
}

// BenchmarkHTTP2 compares the engine (default pack, one core) on the
// captured h2load conversation with the same requests and responses over
// HTTP/1.1: requests per CPU-second of each; the ratio of the two is the
// HTTP/2 cost per request relative to HTTP/1.
func BenchmarkHTTP2(b *testing.B) {
	h2, h1, n := h2Traffic(b)
	for _, tc := range []struct {
		name string
		c    *capture
	}{{"http1", h1}, {"http2", h2}} {
		b.Run(tc.name, func(b *testing.B) {
			e, err := New(Config{Rules: ruletest.DefaultPack(b), Offline: true})
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			span := tc.c.now - baseTime
			_, payload := captureBytes(tc.c)
			pass := int64(0)
			b.ResetTimer()
			cpu0 := cpuTime()
			for b.Loop() {
				off := pass * span
				for i := range tc.c.frames {
					f := &tc.c.frames[i]
					fr := dataplane.Frame{Data: f.data, Timestamp: f.ts + off, Ingress: f.ingress}
					e.Inspect(0, &fr)
				}
				pass++
			}
			cpu := (cpuTime() - cpu0).Seconds() / float64(b.N)
			b.ReportMetric(float64(n)/cpu, "req/cpu-s")
			b.ReportMetric(cpu*1e9/float64(n), "cpu-ns/req")
			b.ReportMetric(float64(payload)*8/cpu/1e9, "payload-Gbit/cpu-s")
			if st := e.Stats(); st.Alerts != 0 || st.Dropped != 0 {
				b.Errorf("benign traffic: %d alerts, %d drops %v", st.Alerts, st.Dropped, st.Drops)
			}
		})
	}
}
