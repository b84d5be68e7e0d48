package http

import (
	"math/rand/v2"
	"testing"

	"github.com/deepwall/deepwall/dpi/proto"
)

// TestHeaderLookup checks the rule-field accessors on a request.
func TestHeaderLookup(t *testing.T) {
	sc := NewScratch(Limits{})
	var got struct {
		host, ua, cookie, missing, block string
		n                                int
	}
	sink := &funcSink{req: func(r *Request) {
		got.host = string(r.Header("host"))
		got.ua = string(r.Header("User-Agent"))
		got.cookie = string(r.Header("cookie"))
		got.missing = string(r.Header("x-missing"))
		got.block = string(r.HeaderBlock)
		got.n = len(r.Headers)
	}}
	p := NewParser(sink, sc)
	p.Feed(proto.ToServer, []byte("GET / HTTP/1.1\r\nhOST:  h.example \r\nUser-Agent:Mozilla/5.0\r\nCookie: a=1\r\n\tb=2\r\nCookie: second\r\n\r\n"))
	if got.host != "h.example" || got.ua != "Mozilla/5.0" || got.cookie != "a=1 b=2" || got.missing != "" || got.n != 4 {
		t.Fatalf("lookups: %+v", got)
	}
	const wantBlock = "hOST: h.example\r\nUser-Agent: Mozilla/5.0\r\nCookie: a=1 b=2\r\nCookie: second\r\n"
	if got.block != wantBlock {
		t.Fatalf("HeaderBlock = %q, want %q", got.block, wantBlock)
	}
}

// TestScanPlain checks the word-at-a-time scan against a byte loop.
func TestScanPlain(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	buf := make([]byte, 64)
	for n := 0; n < 200000; n++ {
		size := rng.IntN(len(buf) + 1)
		for i := range size {
			// Mostly printable, some controls, DEL and high bytes.
			switch rng.IntN(16) {
			case 0:
				buf[i] = byte(rng.IntN(0x20))
			case 1:
				buf[i] = 0x7f
			case 2:
				buf[i] = 0x80 + byte(rng.IntN(0x80))
			default:
				buf[i] = 0x20 + byte(rng.IntN(0x5f))
			}
		}
		from := rng.IntN(size + 1)
		want := from
		for want < size && buf[want] >= 0x20 && buf[want] != 0x7f {
			want++
		}
		if got := scanPlain(buf[:size], from); got != want {
			t.Fatalf("scanPlain(%q, %d) = %d, want %d", buf[:size], from, got, want)
		}
	}
}
