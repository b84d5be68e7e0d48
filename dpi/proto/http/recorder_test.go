package http

import (
	"fmt"
	"strings"
	"testing"

	"github.com/deepwall/deepwall/dpi/proto"
)

// recorder is a Sink that writes every event as one line of text, with
// body chunks of a message merged (chunk boundaries depend on how the
// stream was cut; their concatenation must not). It checks the Sink
// contract as it goes.
type recorder struct {
	tb     testing.TB
	lines  []string
	body   [2]strings.Builder
	inBody [2]bool // headers seen, end not yet
	// skipFindings drops non-fatal findings from the log (for tests that
	// look at fields only).
	skipFindings bool
	findings     []proto.Finding
}

func newRecorder(tb testing.TB) *recorder { return &recorder{tb: tb} }

func (r *recorder) add(format string, args ...any) {
	r.lines = append(r.lines, fmt.Sprintf(format, args...))
}

func (r *recorder) RequestHeaders(q *Request) {
	if r.inBody[0] {
		r.tb.Errorf("request headers before the previous request's body ended")
	}
	r.inBody[0] = true
	var args []string
	for _, a := range q.Args {
		args = append(args, string(a.Name)+"="+string(a.Value))
	}
	r.add("req %s uri=%q path=%q query=%q args=%q argsbuf=%q proto=%s host=%q ua=%q cl=%d chunked=%v seq=%d headers=%q",
		q.Method, q.URI, q.Path, q.Query, strings.Join(args, "|"), q.ArgsBuf, q.Proto, q.Host, q.UserAgent,
		q.ContentLength, q.Chunked, q.Seq, q.HeaderBlock)
	// Header lookups agree with the block.
	for _, h := range q.Headers {
		if v := q.Header(asciiUpper(h.Name)); v == nil {
			r.tb.Errorf("Header(%q) = nil", h.Name)
		}
	}
}

func (r *recorder) RequestBody(chunk []byte, end bool) { r.bodyEvent(0, "req", chunk, end) }

func (r *recorder) ResponseHeaders(s *Response) {
	if r.inBody[1] {
		r.tb.Errorf("response headers before the previous response's body ended")
	}
	if !s.Interim {
		r.inBody[1] = true
	}
	r.add("resp %d reason=%q proto=%s cl=%d chunked=%v seq=%d interim=%v headers=%q",
		s.Status, s.Reason, s.Proto, s.ContentLength, s.Chunked, s.Seq, s.Interim, s.HeaderBlock)
}

func (r *recorder) ResponseBody(chunk []byte, end bool) { r.bodyEvent(1, "resp", chunk, end) }

func (r *recorder) bodyEvent(i int, who string, chunk []byte, end bool) {
	if !r.inBody[i] {
		r.tb.Errorf("%s body without headers (end=%v)", who, end)
	}
	if !end && len(chunk) == 0 {
		r.tb.Errorf("%s empty body chunk without end", who)
	}
	r.body[i].Write(chunk)
	if end {
		r.add("%sbody %q", who, r.body[i].String())
		r.body[i].Reset()
		r.inBody[i] = false
	}
}

func (r *recorder) Finding(f proto.Finding) {
	r.findings = append(r.findings, f)
	if r.skipFindings && !f.Fatal {
		return
	}
	fatal := ""
	if f.Fatal {
		fatal = " fatal"
	}
	r.add("finding %s %s@%d%s", f.Kind, f.Dir, f.Offset, fatal)
}

// has reports whether kind was found.
func (r *recorder) has(k proto.FindingKind) bool {
	for _, f := range r.findings {
		if f.Kind == k {
			return true
		}
	}
	return false
}

func (r *recorder) String() string { return strings.Join(r.lines, "\n") }

// flush logs a body that has not ended (the stream was cut), so logs of
// different chunkings compare equal.
func (r *recorder) flush() string {
	for i, who := range []string{"req", "resp"} {
		if r.body[i].Len() > 0 {
			r.add("%sbody-open %q", who, r.body[i].String())
			r.body[i].Reset()
		}
	}
	return r.String()
}

// feedAll feeds chunks of one direction and logs where HTTP ended: the
// offset of a tunnel's first byte (exact), or that the parser stopped (a
// stopped parser may or may not count the bytes of the message it stopped
// in, depending on how they were cut).
func feedAll(p *Parser, r *recorder, dir proto.Dir, chunks [][]byte) {
	consumed := 0
	for _, c := range chunks {
		n := p.Feed(dir, c)
		consumed += n
		if n < len(c) {
			break
		}
	}
	switch st := p.State(dir); st {
	case StateTunnel:
		r.add("left %s after %d bytes: %s", dir, consumed, st)
	case StateStopped:
		r.add("left %s: %s", dir, st)
	}
}

func asciiUpper(b []byte) string {
	out := []byte(string(b))
	for i, c := range out {
		if c >= 'a' && c <= 'z' {
			out[i] = c - 'a' + 'A'
		}
	}
	return string(out)
}
