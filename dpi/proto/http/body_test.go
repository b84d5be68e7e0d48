package http

import (
	"slices"
	"strings"
	"testing"

	"github.com/deepwall/deepwall/dpi/proto"
)

type bodyRec struct{ got []string }

func (b *bodyRec) Arg(name, value []byte) {
	b.got = append(b.got, "arg:"+string(name)+"="+string(value))
}
func (b *bodyRec) File(field, filename []byte) {
	b.got = append(b.got, "file:"+string(field)+"="+string(filename))
}
func (b *bodyRec) PartHeader(line []byte) { b.got = append(b.got, "hdr:"+string(line)) }

func TestParseBody(t *testing.T) {
	mp := "preamble\r\n--b1\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\ny\r\n--b1\r\nContent-Disposition: form-data; name=\"f\"; filename=\"../x.php\"\r\nContent-Type: text/plain\r\n\r\ndata\r\n--b1--\r\n"
	tests := []struct {
		ct, body string
		want     []string
	}{
		{"application/x-www-form-urlencoded", "a=1&b=%27x+y&&c", []string{"arg:a=1", "arg:b='x y", "arg:c="}},
		{"Application/X-WWW-Form-Urlencoded; charset=utf-8", "q=%E2%82%AC", []string{"arg:q=€"}},
		{"application/json", `{"a":"x\"y","b":[1,true,null,{"c":"\u00e9"}],"d":{}}`, []string{`arg:a=x"y`, "arg:b=1", "arg:b=true", "arg:b=null", "arg:c=é"}},
		{"application/vnd.api+json", `["top"]`, []string{"arg:=top"}},
		{"application/json", `{"a":"ok","b":`, []string{"arg:a=ok"}},
		{"multipart/form-data; boundary=b1", mp, []string{"hdr:Content-Disposition: form-data; name=\"a\"", "arg:a=x\r\ny",
			"hdr:Content-Disposition: form-data; name=\"f\"; filename=\"../x.php\"", "hdr:Content-Type: text/plain", "file:f=../x.php"}},
		{"text/plain", "a=1", nil},
		{"multipart/form-data", mp, nil},
	}
	for _, tc := range tests {
		t.Run(tc.ct, func(t *testing.T) {
			k, b := BodyKindOf([]byte(tc.ct))
			var r bodyRec
			var found proto.KindSet
			ParseBody(k, b, []byte(tc.body), nil, 100, &r, &found)
			if !slices.Equal(r.got, tc.want) {
				t.Errorf("got %q\nwant %q", r.got, tc.want)
			}
		})
	}
}

func TestParseBodyAllocs(t *testing.T) {
	body := []byte(`{"items":[{"sku":"A-1234","qty":2}],"note":"leave \u00e9 at the door"}`)
	buf := make([]byte, 0, len(body))
	var r nopArgs
	var found proto.KindSet
	n := testing.AllocsPerRun(100, func() { buf = ParseBody(BodyJSON, nil, body, buf, 100, &r, &found) })
	if n != 0 {
		t.Errorf("%v allocations per body", n)
	}
}

type nopArgs struct{ n int }

func (a *nopArgs) Arg(name, value []byte)      { a.n += len(name) + len(value) }
func (a *nopArgs) File(field, filename []byte) { a.n += len(field) + len(filename) }
func (a *nopArgs) PartHeader(line []byte)      { a.n += len(line) }

// FuzzParseBody: any body of any kind parses without panicking, reports
// at most maxArgs arguments, and every value it reports lies within the
// decoding buffer or the body (nothing invented beyond the input size).
func FuzzParseBody(f *testing.F) {
	f.Add(uint8(1), "a=1&b=%zz&c=%u0041+x", "")
	f.Add(uint8(2), `{"a":[1,{"b":"\ud800"}],"c":"\u12"}`, "")
	f.Add(uint8(3), "--b\r\nContent-Disposition: form-data; name=x; filename=\r\n\r\nv\r\n--b--", "b")
	f.Add(uint8(3), "--b\nContent-Disposition: form-data; name=\"x\"\n\nv\n--b\n", "b")
	f.Fuzz(func(t *testing.T, kind uint8, body, boundary string) {
		k := BodyKind(kind % 4)
		if len(boundary) > MaxBoundary {
			boundary = boundary[:MaxBoundary]
		}
		var r bodyRec
		var found proto.KindSet
		ParseBody(k, []byte(boundary), []byte(body), nil, 16, &r, &found)
		args := 0
		for _, g := range r.got {
			if strings.HasPrefix(g, "arg:") {
				args++
			}
			if len(g) > len(body)+8 {
				t.Fatalf("reported %d bytes from a %d-byte body", len(g), len(body))
			}
		}
		if args > 16 {
			t.Fatalf("%d arguments reported, limit 16", args)
		}
	})
}
