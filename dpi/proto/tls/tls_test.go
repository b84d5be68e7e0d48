package tls

import (
	"bytes"
	stdtls "crypto/tls"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/dpi/proto/internal/prototest"
)

// recorder logs the parser's events as text.
type recorder struct {
	lines    []string
	findings []proto.Finding
}

func (r *recorder) ClientHello(h *ClientHello) {
	var alpn []string
	for _, a := range h.ALPN {
		alpn = append(alpn, string(a))
	}
	r.lines = append(r.lines, fmt.Sprintf("client sni=%q version=%s legacy=%#04x record=%#04x versions=%04x alpn=%q suites=%d exts=%d grease=%v retry=%v ech=%v",
		h.SNI, VersionName(h.Version), h.LegacyVersion, h.RecordVersion, h.Versions, alpn, h.CipherSuites, h.Extensions, h.GREASE, h.Retry, h.ECH))
}

func (r *recorder) ServerHello(h *ServerHello) {
	r.lines = append(r.lines, fmt.Sprintf("server version=%s legacy=%#04x suite=%#04x retry=%v alpn=%q",
		VersionName(h.Version), h.LegacyVersion, h.CipherSuite, h.HelloRetry, h.ALPN))
}

func (r *recorder) Finding(f proto.Finding) {
	r.findings = append(r.findings, f)
	r.lines = append(r.lines, fmt.Sprintf("finding %s %s@%d fatal=%v", f.Kind, f.Dir, f.Offset, f.Fatal))
}

func (r *recorder) String() string { return strings.Join(r.lines, "\n") }

func (r *recorder) has(k proto.FindingKind) bool {
	return slices.ContainsFunc(r.findings, func(f proto.Finding) bool { return f.Kind == k })
}

// parse feeds both directions (client first) and returns the log and
// whether the parser said Done.
func parse(toServer, toClient [][]byte) (*recorder, bool) {
	r := &recorder{}
	p := NewParser(r)
	done := false
	for _, c := range toServer {
		done = p.Feed(proto.ToServer, c)
	}
	for _, c := range toClient {
		done = p.Feed(proto.ToClient, c)
	}
	return r, done
}

func one(b []byte) [][]byte { return [][]byte{b} }

func TestRealHandshakes(t *testing.T) {
	tests := []struct {
		name           string
		client, server *stdtls.Config
		want           []string // substrings of the log, in order
	}{
		{
			name:   "tls13",
			client: &stdtls.Config{ServerName: "www.example.com", NextProtos: []string{"h2", "http/1.1"}, InsecureSkipVerify: true},
			want: []string{
				`client sni="www.example.com" version=TLS 1.3 legacy=0x0303 record=0x0301 versions=[0304 0303] alpn=["h2" "http/1.1"]`,
				`server version=TLS 1.3 legacy=0x0303`,
			},
		},
		{
			name:   "tls12",
			client: &stdtls.Config{ServerName: "old.example.com", MaxVersion: stdtls.VersionTLS12, NextProtos: []string{"http/1.1"}, InsecureSkipVerify: true},
			server: &stdtls.Config{NextProtos: []string{"http/1.1"}},
			want: []string{
				`client sni="old.example.com" version=TLS 1.2 legacy=0x0303`,
				`server version=TLS 1.2 legacy=0x0303 suite=`,
				`alpn="http/1.1"`,
			},
		},
		{
			name:   "no sni",
			client: &stdtls.Config{InsecureSkipVerify: true},
			want:   []string{`client sni="" version=TLS 1.3`, `server version=TLS 1.3`},
		},
		{
			// The client's key shares do not fit the server's only
			// curve: HelloRetryRequest, a second ClientHello, then the
			// real ServerHello.
			name:   "hello retry",
			client: &stdtls.Config{ServerName: "retry.example.com", InsecureSkipVerify: true},
			server: &stdtls.Config{CurvePreferences: []stdtls.CurveID{stdtls.CurveP256}},
			want: []string{
				`client sni="retry.example.com" version=TLS 1.3`,
				`retry=false`,
				`server version=TLS 1.3 legacy=0x0303 suite=0x1301 retry=true`,
				`client sni="retry.example.com" version=TLS 1.3`,
				`retry=true`,
				`server version=TLS 1.3 legacy=0x0303 suite=0x1301 retry=false`,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			toServer, toClient := prototest.Handshake(t, tc.client, tc.server)
			// Interleave as on the wire: the retry's second ClientHello
			// is only parsed after the HelloRetryRequest.
			r := &recorder{}
			p := NewParser(r)
			c1, s1 := recordsLen(toServer, 1), recordsLen(toClient, 2)
			p.Feed(proto.ToServer, toServer[:c1])
			p.Feed(proto.ToClient, toClient[:s1])
			p.Feed(proto.ToServer, toServer[c1:])
			done := p.Feed(proto.ToClient, toClient[s1:])
			log := r.String()
			rest := log
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("log lacks %q (in order):\n%s", w, log)
				}
				rest = rest[i+len(w):]
			}
			if !done {
				t.Fatalf("not done after both hellos:\n%s", log)
			}
			if len(r.findings) != 0 {
				t.Fatalf("findings on a real handshake:\n%s", log)
			}
		})
	}
}

// recordsLen returns the length of the first n records of b.
func recordsLen(b []byte, n int) int {
	off := 0
	for i := 0; i < n && off+5 <= len(b); i++ {
		off += 5 + int(binary.BigEndian.Uint16(b[off+3:]))
	}
	return min(off, len(b))
}

// TestChunking feeds real hellos cut at every byte boundary and one byte
// at a time: the result must not change.
func TestChunking(t *testing.T) {
	toServer, toClient := prototest.Handshake(t, &stdtls.Config{ServerName: "chunk.example.com", NextProtos: []string{"h2"}, InsecureSkipVerify: true}, nil)
	ch := toServer[:recordsLen(toServer, 1)]
	sh := toClient[:recordsLen(toClient, 1)]
	want, _ := parse(one(ch), one(sh))
	if !strings.Contains(want.String(), `sni="chunk.example.com"`) {
		t.Fatalf("whole: %s", want)
	}
	prototest.Chunkings(ch, 0, func(chunks [][]byte) {
		if got, done := parse(chunks, one(sh)); got.String() != want.String() || !done {
			t.Fatalf("client hello in %d chunks:\n%s\nwant\n%s", len(chunks), got, want)
		}
	})
	prototest.Chunkings(sh, 0, func(chunks [][]byte) {
		if got, done := parse(one(ch), chunks); got.String() != want.String() || !done {
			t.Fatalf("server hello in %d chunks:\n%s\nwant\n%s", len(chunks), got, want)
		}
	})
}

// refragment re-frames the handshake messages of the first record of b
// into records of at most size bytes, as a client may (and as evasion
// tools do).
func refragment(b []byte, size int) []byte {
	n := recordsLen(b, 1)
	hdr, payload := b[:5], b[5:n]
	var out []byte
	for len(payload) > 0 {
		k := min(size, len(payload))
		out = append(out, hdr[0], hdr[1], hdr[2], byte(k>>8), byte(k))
		out = append(out, payload[:k]...)
		payload = payload[k:]
	}
	return append(out, b[n:]...)
}

func TestFragmentedRecords(t *testing.T) {
	ch := prototest.ClientHello(t, &stdtls.Config{ServerName: "frag.example.com"})
	want, _ := parse(one(ch), nil)
	for _, size := range []int{1, 2, 3, 4, 5, 7, 64, 100, 512} {
		got, _ := parse(one(refragment(ch, size)), nil)
		// The record version and offsets are the same; only the framing
		// differs.
		if got.String() != want.String() {
			t.Fatalf("records of %d bytes:\n%s\nwant\n%s", size, got, want)
		}
	}
}

// helloBuilder assembles ClientHellos by hand for malformed cases.
type helloBuilder struct {
	version uint16
	suites  []uint16
	exts    [][]byte
	// noExts omits the extensions block (pre-TLS 1.0 style).
	noExts bool
}

func ext(typ uint16, data []byte) []byte {
	out := binary.BigEndian.AppendUint16(nil, typ)
	out = binary.BigEndian.AppendUint16(out, uint16(len(data)))
	return append(out, data...)
}

func sniExt(names ...string) []byte {
	var list []byte
	for _, n := range names {
		list = append(list, 0)
		list = binary.BigEndian.AppendUint16(list, uint16(len(n)))
		list = append(list, n...)
	}
	return ext(extServerName, append(binary.BigEndian.AppendUint16(nil, uint16(len(list))), list...))
}

func versionsExt(vs ...uint16) []byte {
	data := []byte{byte(2 * len(vs))}
	for _, v := range vs {
		data = binary.BigEndian.AppendUint16(data, v)
	}
	return ext(extSupportedVersions, data)
}

func (h helloBuilder) body() []byte {
	b := binary.BigEndian.AppendUint16(nil, h.version)
	b = append(b, make([]byte, 32)...)
	b = append(b, 0) // session id
	suites := h.suites
	if suites == nil {
		suites = []uint16{0x1301, 0xc02f}
	}
	b = binary.BigEndian.AppendUint16(b, uint16(2*len(suites)))
	for _, s := range suites {
		b = binary.BigEndian.AppendUint16(b, s)
	}
	b = append(b, 1, 0) // null compression
	if !h.noExts {
		all := bytes.Join(h.exts, nil)
		b = binary.BigEndian.AppendUint16(b, uint16(len(all)))
		b = append(b, all...)
	}
	return b
}

func handshakeMsg(typ byte, body []byte) []byte {
	return append([]byte{typ, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
}

func record(typ byte, payload []byte) []byte {
	return append([]byte{typ, 3, 1, byte(len(payload) >> 8), byte(len(payload))}, payload...)
}

func (h helloBuilder) record() []byte {
	return record(recHandshake, handshakeMsg(msgClientHello, h.body()))
}

func TestClientHelloFindings(t *testing.T) {
	valid := helloBuilder{version: VersionTLS12, exts: [][]byte{sniExt("a.example"), versionsExt(0x0a0a, VersionTLS13, VersionTLS12)}}
	truncated := valid.record()
	truncated = truncated[:len(truncated)-3]
	// Fix the lengths so only the extension block is short.
	badExtLen := valid.record()
	badExtLen[len(badExtLen)-len(valid.exts[1])-len(valid.exts[0])-1]++
	none := proto.FindingNone
	tests := []struct {
		name  string
		in    []byte
		want  []proto.FindingKind
		fatal proto.FindingKind
		sni   string
		vers  string
	}{
		{"valid", valid.record(), nil, none, "a.example", "TLS 1.3"},
		{"no extensions", helloBuilder{version: VersionTLS12, noExts: true}.record(), nil, none, "", "TLS 1.2"},
		{"ech", helloBuilder{version: VersionTLS12, exts: [][]byte{sniExt("public.example"), ext(extECH, []byte{0, 1, 2}), versionsExt(VersionTLS13)}}.record(), nil, none, "public.example", "TLS 1.3"},
		{"weak version", helloBuilder{version: VersionTLS10, exts: [][]byte{sniExt("a.example")}}.record(), []proto.FindingKind{proto.TLSWeakVersion}, none, "a.example", "TLSv1"},
		{"ssl3", helloBuilder{version: VersionSSL30, noExts: true}.record(), []proto.FindingKind{proto.TLSWeakVersion}, none, "", "SSLv3"},
		{"sni ip literal", helloBuilder{version: VersionTLS12, exts: [][]byte{sniExt("192.0.2.1")}}.record(), []proto.FindingKind{proto.TLSInvalidSNI}, none, "192.0.2.1", "TLS 1.2"},
		{"sni trailing dot", helloBuilder{version: VersionTLS12, exts: [][]byte{sniExt("a.example.")}}.record(), []proto.FindingKind{proto.TLSInvalidSNI}, none, "a.example.", "TLS 1.2"},
		{"sni bad chars", helloBuilder{version: VersionTLS12, exts: [][]byte{sniExt("a b\x00.example")}}.record(), []proto.FindingKind{proto.TLSInvalidSNI}, none, "a b\x00.example", "TLS 1.2"},
		{"sni empty", helloBuilder{version: VersionTLS12, exts: [][]byte{sniExt("")}}.record(), []proto.FindingKind{proto.TLSInvalidSNI}, none, "", "TLS 1.2"},
		{"sni too long", helloBuilder{version: VersionTLS12, exts: [][]byte{sniExt(strings.Repeat("a", 256))}}.record(), []proto.FindingKind{proto.TLSInvalidSNI}, none, strings.Repeat("a", 256), "TLS 1.2"},
		{"two sni", helloBuilder{version: VersionTLS12, exts: [][]byte{sniExt("a.example", "b.example")}}.record(), []proto.FindingKind{proto.TLSMultipleSNI}, none, "a.example", "TLS 1.2"},
		{"duplicate extension", helloBuilder{version: VersionTLS12, exts: [][]byte{sniExt("a.example"), sniExt("b.example")}}.record(), []proto.FindingKind{proto.TLSDuplicateExtension, proto.TLSMultipleSNI}, none, "a.example", "TLS 1.2"},
		{"sni list length wrong", helloBuilder{version: VersionTLS12, exts: [][]byte{ext(extServerName, []byte{0, 9, 0, 0, 1, 'a'})}}.record(), nil, proto.TLSMalformedExtension, "", ""},
		{"alpn empty name", helloBuilder{version: VersionTLS12, exts: [][]byte{ext(extALPN, []byte{0, 1, 0})}}.record(), nil, proto.TLSMalformedExtension, "", ""},
		{"versions odd", helloBuilder{version: VersionTLS12, exts: [][]byte{ext(extSupportedVersions, []byte{3, 3, 4, 3})}}.record(), nil, proto.TLSMalformedExtension, "", ""},
		{"extension block short", badExtLen, nil, proto.TLSMalformedHello, "", ""},
		{"no cipher suites", helloBuilder{version: VersionTLS12, suites: []uint16{}, noExts: true}.record(), nil, proto.TLSMalformedHello, "", ""},
		{"application data first", record(23, []byte("hello")), nil, proto.TLSInvalidRecord, "", ""},
		{"record version 4.1", func() []byte { r := valid.record(); r[1] = 4; return r }(), nil, proto.TLSInvalidRecord, "", ""},
		{"record too long", []byte{22, 3, 1, 0x48, 0x01}, nil, proto.TLSInvalidRecord, "", ""},
		{"empty handshake record", []byte{22, 3, 1, 0, 0}, nil, proto.TLSInvalidRecord, "", ""},
		{"server hello from client", record(recHandshake, handshakeMsg(msgServerHello, valid.body())), nil, proto.TLSUnexpectedHandshake, "", ""},
		{"hello too large", record(recHandshake, []byte{1, 0, 0x80, 0x00}), nil, proto.TLSHandshakeTooLarge, "", ""},
		{"sslv2", []byte{0x80, 0x2e, 0x01, 0x03, 0x01}, nil, proto.TLSSSLv2Hello, "", ""},
		{"truncated then closed", truncated, nil, none, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := parse(one(tc.in), nil)
			var fatal proto.FindingKind
			for _, f := range r.findings {
				if f.Fatal {
					fatal = f.Kind
				}
			}
			if fatal != tc.fatal {
				t.Errorf("fatal %v, want %v:\n%s", fatal, tc.fatal, r)
			}
			for _, k := range tc.want {
				if !r.has(k) {
					t.Errorf("missing %v:\n%s", k, r)
				}
			}
			if len(tc.want) == 0 && tc.fatal == none && len(r.findings) > 0 {
				t.Errorf("unexpected findings:\n%s", r)
			}
			if tc.vers != "" {
				w := fmt.Sprintf("client sni=%q version=%s ", tc.sni, tc.vers)
				if !strings.Contains(r.String(), w) {
					t.Errorf("log lacks %q:\n%s", w, r)
				}
			}
		})
	}
}

// TestServerAlert: a server that refuses the ClientHello with an alert
// ends the inspection too.
func TestServerAlert(t *testing.T) {
	ch := prototest.ClientHello(t, &stdtls.Config{ServerName: "x.example"})
	r, done := parse(one(ch), one([]byte{21, 3, 3, 0, 2, 2, 40}))
	if !done || len(r.findings) != 0 {
		t.Fatalf("done=%v:\n%s", done, r)
	}
}

func TestVersionName(t *testing.T) {
	for v, want := range map[uint16]string{0x0300: "SSLv3", 0x0301: "TLSv1", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3", 0x7f1c: "0x7f1c"} {
		if got := VersionName(v); got != want {
			t.Errorf("VersionName(%#x) = %q, want %q", v, got, want)
		}
	}
}

func TestParseAllocs(t *testing.T) {
	toServer, toClient := prototest.Handshake(t, &stdtls.Config{ServerName: "alloc.example.com", NextProtos: []string{"h2"}, InsecureSkipVerify: true}, nil)
	r := &countSink{}
	p := NewParser(r)
	allocs := testing.AllocsPerRun(100, func() {
		p.Reset(r)
		p.Feed(proto.ToServer, toServer)
		p.Feed(proto.ToClient, toClient)
	})
	if allocs != 0 || r.n == 0 {
		t.Fatalf("%.1f allocations per handshake (%d hellos)", allocs, r.n)
	}
}

type countSink struct{ n int }

func (s *countSink) ClientHello(h *ClientHello) { s.n += len(h.SNI) }
func (s *countSink) ServerHello(*ServerHello)   { s.n++ }
func (s *countSink) Finding(proto.Finding)      {}

func BenchmarkClientHello(b *testing.B) {
	ch := prototest.ClientHello(b, &stdtls.Config{ServerName: "bench.example.com", NextProtos: []string{"h2", "http/1.1"}})
	s := &countSink{}
	p := NewParser(s)
	b.SetBytes(int64(len(ch)))
	b.ReportAllocs()
	for b.Loop() {
		p.Reset(s)
		p.Feed(proto.ToServer, ch)
	}
}

// FuzzClientHello feeds arbitrary bytes as the client's (and, from the
// same input, the server's) first bytes, whole and in chunks derived from
// the input: no panic, and the same events either way.
func FuzzClientHello(f *testing.F) {
	toServer, toClient := prototest.Handshake(f, &stdtls.Config{ServerName: "fuzz.example.com", NextProtos: []string{"h2"}, InsecureSkipVerify: true}, nil)
	f.Add(toServer, toClient, []byte{7, 1})
	f.Add(refragment(toServer, 3), toClient[:100], []byte{0})
	f.Add(helloBuilder{version: VersionTLS12, exts: [][]byte{sniExt("a.example", "b"), versionsExt(0x0304)}}.record(), []byte{21, 3, 3, 0, 2, 2, 40}, []byte{1})
	for _, h := range []helloBuilder{
		{version: VersionTLS10, exts: [][]byte{sniExt("192.0.2.1"), ext(extALPN, []byte{0, 3, 2, 'h', '2'}), ext(extECH, nil)}},
		{version: VersionTLS12, exts: [][]byte{sniExt("x"), sniExt("y"), versionsExt(0x1a1a, VersionTLS13)}},
		{version: VersionSSL30, noExts: true},
	} {
		f.Add(refragment(h.record(), 9), toClient, []byte{2, 5})
	}
	f.Fuzz(func(t *testing.T, cs, sc, seed []byte) {
		want, wdone := parse(one(cs), one(sc))
		got, gdone := parse(prototest.RandomChunks(cs, seed), prototest.RandomChunks(sc, seed))
		if got.String() != want.String() || gdone != wdone {
			t.Fatalf("chunked (done %v):\n%s\nwhole (done %v):\n%s", gdone, got, wdone, want)
		}
	})
}

func TestECH(t *testing.T) {
	plain, _ := parse(one(helloBuilder{version: VersionTLS12, exts: [][]byte{sniExt("public.example")}}.record()), nil)
	ech, _ := parse(one(helloBuilder{version: VersionTLS12, exts: [][]byte{sniExt("public.example"), ext(extECH, []byte{0, 1, 2})}}.record()), nil)
	if !strings.Contains(plain.String(), "ech=false") || !strings.Contains(ech.String(), "ech=true") {
		t.Fatalf("plain:\n%s\nech:\n%s", plain, ech)
	}
}
