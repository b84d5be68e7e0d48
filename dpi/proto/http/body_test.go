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
func (b *bodyRec) XMLText(v []byte)       { b.got = append(b.got, "text:"+string(v)) }
func (b *bodyRec) XMLAttr(v []byte)       { b.got = append(b.got, "attr:"+string(v)) }

// TestParseBodyNames checks multipart names and file names as Coraza reads
// them (Go's mime quoting, RFC 2231 filename*) and XML values.
func TestParseBodyNames(t *testing.T) {
	part := func(disp string) string {
		return "--b\r\nContent-Disposition: form-data; " + disp + "\r\n\r\nv\r\n--b--\r\n"
	}
	files := func(got []string) []string {
		var out []string
		for _, g := range got {
			if !strings.HasPrefix(g, "hdr:") {
				out = append(out, g)
			}
		}
		return out
	}
	tests := []struct {
		name, ct, body string
		want           []string
	}{
		{"semicolon in quotes", "multipart/form-data; boundary=b", part(`name="zzz&auml;&euml;zzz"; filename="test"`), []string{"file:zzz&auml;&euml;zzz=test"}},
		{"entity file name", "multipart/form-data; boundary=b", part(`name="a"; filename="zzz&amp;zzz"`), []string{"file:a=zzz&amp;zzz"}},
		{"escaped quote", "multipart/form-data; boundary=b", part(`name="a\"b"; filename="x"`), []string{`file:a"b=x`}},
		{"backslash kept", "multipart/form-data; boundary=b", part(`name="test"; filename="1.j\s\p"`), []string{`file:test=1.j\s\p`}},
		{"filename star", "multipart/form-data; boundary=b", part(`name="f"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf`), []string{"file:f=résumé.pdf"}},
		{"filename star and plain", "multipart/form-data; boundary=b", part(`name="f"; filename="plain.txt"; filename*=utf-8'en'star.txt`), []string{"file:f=star.txt", "file:f=plain.txt"}},
		// Go's mime drops a filename* whose charset it does not know, and
		// backends that ignore filename* read filename=: both are seen.
		{"filename star odd charset", "multipart/form-data; boundary=b", part(`name="f"; filename="evil.php"; filename*=x''safe.txt`), []string{"file:f=safe.txt", "file:f=evil.php"}},
		{"filename star same as plain", "multipart/form-data; boundary=b", part(`name="f"; filename="a.txt"; filename*=utf-8''a.txt`), []string{"file:f=a.txt"}},
		{"unquoted", "multipart/form-data; boundary=b", part(`name=f; filename=a.txt`), []string{"file:f=a.txt"}},
		{"quoted boundary with semicolon", `multipart/form-data; boundary="b;x"`, "--b;x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--b;x--\r\n", []string{"arg:a=1"}},
		{"xml", "application/xml", `<?xml version="1.0"?><!DOCTYPE a><a x="1" y='two'>  hi <b z=3/><!-- no --><![CDATA[c d]]></a>`,
			[]string{"attr:1", "attr:two", "text:hi", "attr:3", "text:c d"}},
		{"text/xml", "Text/XML; charset=utf-8", "<a>t</a>", []string{"text:t"}},
		{"soap", "application/soap+xml", "<e:Envelope><e:Body>x</e:Body></e:Envelope>", []string{"text:x"}},
		{"xml truncated", "application/xml", `<a b="1">text<c d="`, []string{"attr:1", "text:text"}},
		{"xml not a type", "application/xhtml+xml", "<a>t</a>", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, b := BodyKindOf([]byte(tc.ct))
			var r bodyRec
			var found proto.KindSet
			ParseBody(k, b, []byte(tc.body), nil, 100, &r, &found)
			if got := files(r.got); !slices.Equal(got, tc.want) {
				t.Errorf("got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestParseBody(t *testing.T) {
	mp := "preamble\r\n--b1\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\ny\r\n--b1\r\nContent-Disposition: form-data; name=\"f\"; filename=\"../x.php\"\r\nContent-Type: text/plain\r\n\r\ndata\r\n--b1--\r\n"
	tests := []struct {
		ct, body string
		want     []string
	}{
		{"application/x-www-form-urlencoded", "a=1&b=%27x+y&&c", []string{"arg:a=1", "arg:b='x y", "arg:c="}},
		{"Application/X-WWW-Form-Urlencoded; charset=utf-8", "q=%E2%82%AC", []string{"arg:q=€"}},
		{"application/json", `{"a":"x\"y","b":[1,true,null,{"c":"\u00e9"}],"d":{}}`,
			[]string{`arg:json.a=x"y`, "arg:json.b.0=1", "arg:json.b.1=true", "arg:json.b.2=", "arg:json.b.3.c=é", "arg:json.b=4"}},
		{"application/vnd.api+json", `["top"]`, []string{"arg:json.0=top", "arg:json=1"}},
		{"application/json", `{"a":"ok","b":`, []string{"arg:json.a=ok"}},
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

// TestParseBodyJSONNames checks JSON argument names against Coraza v3's
// JSON body processor (internal/bodyprocessors/json.go and its tests):
// the path from "json", array elements by index, one argument per
// non-empty array holding its length.
func TestParseBodyJSONNames(t *testing.T) {
	tests := []struct {
		name, body string
		want       []string
	}{
		{"crs 934130-2", `{"text":"a","title":{"__proto__":{"where":{"name":"sqlinjection","where":null}}}}`,
			[]string{"json.text=a", "json.title.__proto__.where.name=sqlinjection", "json.title.__proto__.where.where="}},
		{"coraza map", `{"a": 1, "b": 2, "c": [1, 2, 3], "d": {"a": {"b": 1}}, "e": [{"a": 1}], "f": [[[{"z": "abc"}]]]}`,
			[]string{"json.a=1", "json.b=2", "json.c.0=1", "json.c.1=2", "json.c.2=3", "json.c=3", "json.d.a.b=1",
				"json.e.0.a=1", "json.e=1", "json.f.0.0.0.z=abc", "json.f.0.0=1", "json.f.0=1", "json.f=1"}},
		{"top array", `[[[{"q": 1}]], {"a": 1}]`, []string{"json.0.0.0.q=1", "json.0.0=1", "json.0=1", "json.1.a=1", "json=2"}},
		{"index past 9", `{"a":[0,1,2,3,4,5,6,7,8,9,"x"]}`,
			[]string{"json.a.0=0", "json.a.1=1", "json.a.2=2", "json.a.3=3", "json.a.4=4", "json.a.5=5", "json.a.6=6",
				"json.a.7=7", "json.a.8=8", "json.a.9=9", "json.a.10=x", "json.a=11"}},
		{"empty containers", `{"a":[],"b":{},"c":[{}]}`, []string{"json.c=1"}},
		{"key unescaped, dots kept", `{"a.b":{"\u0063":"v"},"":"e"}`, []string{"json.a.b.c=v", "json.=e"}},
		{"scalar document", `"s"`, []string{"json.0=s", "json=1"}},
		{"number document", ` 12 `, []string{"json.0=12", "json=1"}},
		{"trailing comma", `{"a":[1,],}`, []string{"json.a.0=1", "json.a=1"}},
		{"unclosed array: no length", `{"a":[1,2`, []string{"json.a.0=1", "json.a.1=2"}},
		{"bad after a value", `{"a":"x" "b":"y"}`, []string{"json.a=x"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r bodyRec
			var found proto.KindSet
			ParseBody(BodyJSON, nil, []byte(tc.body), nil, 100, &r, &found)
			want := make([]string, len(tc.want))
			for i, w := range tc.want {
				want[i] = "arg:" + w
			}
			if !slices.Equal(r.got, want) {
				t.Errorf("got %q\nwant %q", r.got, want)
			}
		})
	}
}

// TestParseBodyJSONDeep checks that the path of the deepest value followed
// fits the scratch buffer ParseBody sizes (no growth while walking).
func TestParseBodyJSONDeep(t *testing.T) {
	body := []byte(strings.Repeat("[", MaxJSONDepth) + "1" + strings.Repeat("]", MaxJSONDepth))
	var r bodyRec
	var found proto.KindSet
	buf := ParseBody(BodyJSON, nil, body, nil, 100, &r, &found)
	if len(r.got) == 0 || r.got[0] != "arg:json"+strings.Repeat(".0", MaxJSONDepth)+"=1" {
		t.Fatalf("got %q", r.got)
	}
	if cap(buf) != len(body)+jsonPathSlack {
		t.Errorf("buffer grew to %d, sized %d", cap(buf), len(body)+jsonPathSlack)
	}
	r.got = nil
	ParseBody(BodyJSON, nil, append([]byte("["), body...), nil, 100, &r, &found)
	if len(r.got) != 0 {
		t.Errorf("deeper than MaxJSONDepth: got %q", r.got)
	}
}

func TestParseBodyAllocs(t *testing.T) {
	body := []byte(`{"items":[{"sku":"A-1234","qty":2}],"note":"leave \u00e9 at the door"}`)
	buf := make([]byte, 0, len(body)+jsonPathSlack)
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
	f.Add(uint8(2), `[[[{"a.b":[null,true,{"":[]}]}]],"x",]`, "")
	f.Add(uint8(3), "--b\r\nContent-Disposition: form-data; name=x; filename=\r\n\r\nv\r\n--b--", "b")
	f.Add(uint8(3), "--b\nContent-Disposition: form-data; name=\"x\"\n\nv\n--b\n", "b")
	f.Add(uint8(3), "--b\r\nContent-Disposition: form-data; name=\"a;\\\"b\"; filename*=UTF-8''%41%zz%\r\n\r\nv\r\n--b--", "b")
	f.Add(uint8(3), "--b\r\nContent-Disposition: form-data; name=\"q\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJyBVTklP\r\nTiBTRUxF=Q1Q\r\n--b--", "b")
	f.Add(uint8(3), "--b\r\nContent-Disposition: form-data; name=\"q\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=27 OR=\r\n 1=3D1=zz=\r\n--b--", "b")
	f.Add(uint8(4), `<?xml version="1.0"?><a x="1" y='2' z=3><!-- c --><![CDATA[d]]>e<f/></a`, "")
	f.Fuzz(func(t *testing.T, kind uint8, body, boundary string) {
		k := BodyKind(kind % 5)
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
			if len(g) > len(body)+len("arg:=")+jsonPathSlack {
				t.Fatalf("reported %d bytes from a %d-byte body", len(g), len(body))
			}
		}
		if args > 16 {
			t.Fatalf("%d arguments reported, limit 16", args)
		}
	})
}

// TestParsePartEncoding checks multipart values sent with a
// Content-Transfer-Encoding: reported decoded, with a finding when they
// do not decode cleanly.
func TestParsePartEncoding(t *testing.T) {
	part := func(cte, v string) string {
		return "--b\r\nContent-Disposition: form-data; name=\"q\"\r\nContent-Transfer-Encoding: " + cte + "\r\n\r\n" + v + "\r\n--b--\r\n"
	}
	tests := []struct {
		name, cte, v string
		want         string
		bad          bool
	}{
		{"base64", "base64", "JyBVTklPTiBTRUxFQ1QgMS0t", "' UNION SELECT 1--", false},
		{"base64 lines", "BASE64", "JyBVTklP\r\nTiBTRUxF\r\nQ1QgMS0t", "' UNION SELECT 1--", false},
		{"base64 padding", "base64", "YWI=", "ab", false},
		{"base64 unpadded", "base64", "YWJj ZA", "abcd", false},
		{"base64 url alphabet", "base64", "-_8", "\xfb\xff", false},
		{"base64 junk skipped", "base64", "Y*WJj", "abc", true},
		{"base64 after padding", "base64", "YQ==YQ", "a", true},
		{"qp", "quoted-printable", "=27 OR 1=3D1--", "' OR 1=1--", false},
		{"qp soft break", "quoted-printable", "<scr=\r\nipt>", "<script>", false},
		{"qp bare lf soft break", "quoted-printable", "a=\nb", "ab", false},
		{"qp bad escape", "quoted-printable", "a=zz", "a=zz", true},
		{"qp trailing equals", "quoted-printable", "a=", "a=", true},
		{"7bit as sent", "7bit", "JyBV", "JyBV", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, b := BodyKindOf([]byte("multipart/form-data; boundary=b"))
			var r bodyRec
			var found proto.KindSet
			ParseBody(k, b, []byte(part(tc.cte, tc.v)), nil, 100, &r, &found)
			want := []string{"hdr:Content-Disposition: form-data; name=\"q\"", "hdr:Content-Transfer-Encoding: " + tc.cte, "arg:q=" + tc.want}
			if !slices.Equal(r.got, want) {
				t.Errorf("got %q\nwant %q", r.got, want)
			}
			if found.Has(proto.HTTPPartEncoding) != tc.bad {
				t.Errorf("part_encoding finding = %v", !tc.bad)
			}
		})
	}
}
