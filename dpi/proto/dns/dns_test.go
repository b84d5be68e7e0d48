package dns

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/dpi/proto/internal/prototest"
)

type recorder struct {
	lines    []string
	findings []proto.Finding
	msgs     int
}

func (r *recorder) Message(dir proto.Dir, m *Message) {
	r.msgs++
	var qs []string
	for _, q := range m.Questions {
		qs = append(qs, fmt.Sprintf("%q/%s/%d/%d", q.Name, TypeName(q.Type), q.Class, q.Labels))
	}
	r.lines = append(r.lines, fmt.Sprintf("msg %s id=%d resp=%v op=%d rcode=%s tc=%v counts=%d/%d/%d/%d records=%d off=%d q=%s",
		dir, m.ID, m.Response, m.Opcode, RCodeName(m.RCode), m.Truncated, m.QDCount, m.ANCount, m.NSCount, m.ARCount, m.Records, m.Offset, strings.Join(qs, ",")))
}

func (r *recorder) Finding(f proto.Finding) {
	r.findings = append(r.findings, f)
	r.lines = append(r.lines, fmt.Sprintf("finding %s %s@%d fatal=%v", f.Kind, f.Dir, f.Offset, f.Fatal))
}

func (r *recorder) String() string { return strings.Join(r.lines, "\n") }

func (r *recorder) kinds() []proto.FindingKind {
	var ks []proto.FindingKind
	for _, f := range r.findings {
		ks = append(ks, f.Kind)
	}
	slices.Sort(ks)
	return ks
}

// msg assembles a message by hand: header fields, then raw sections.
func msg(id, flags uint16, qd, an, ns, ar uint16, body ...[]byte) []byte {
	b := make([]byte, 0, 64)
	for _, v := range []uint16{id, flags, qd, an, ns, ar} {
		b = binary.BigEndian.AppendUint16(b, v)
	}
	for _, x := range body {
		b = append(b, x...)
	}
	return b
}

// name encodes labels uncompressed.
func name(labels ...string) []byte {
	var b []byte
	for _, l := range labels {
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	return append(b, 0)
}

func qtail(typ uint16) []byte { return []byte{byte(typ >> 8), byte(typ), 0, 1} }

const flagsQuery, flagsResponse = 0x0100, 0x8180

func TestDatagrams(t *testing.T) {
	query := prototest.DNSQuery(t, 0x1234, "www.example.com", dnsmessage.TypeAAAA)
	resp := prototest.DNSResponse(t, 0x1234, "www.example.com", dnsmessage.RCodeSuccess, [4]byte{192, 0, 2, 1}, [4]byte{192, 0, 2, 2})
	nx := prototest.DNSResponse(t, 9, "nope.example", dnsmessage.RCodeNameError)
	long63 := strings.Repeat("a", 63)
	// iodine-style: base32 data filling two labels, a session label, the
	// tunnel domain.
	b32 := strings.Repeat("nbswy3dpeb3w64tm", 4)
	tunnel := b32[:63] + "." + b32[1:58] + ".t.example.com"
	tests := []struct {
		name  string
		dir   proto.Dir
		in    []byte
		want  string // substring of the message line ("" for no message)
		kinds []proto.FindingKind
	}{
		{"query", proto.ToServer, query, `id=4660 resp=false op=0 rcode=NOERROR tc=false counts=1/0/0/0 records=0 off=0 q="www.example.com"/AAAA/1/3`, nil},
		{"response with compression", proto.ToClient, resp, `resp=true op=0 rcode=NOERROR tc=false counts=1/2/0/0 records=2 off=0 q="www.example.com"/A/1/3`, nil},
		{"nxdomain", proto.ToClient, nx, `rcode=NXDOMAIN`, nil},
		{"root query", proto.ToServer, msg(1, flagsQuery, 1, 0, 0, 0, []byte{0}, qtail(2)), `q=""/NS/1/0`, nil},
		{"srv name with underscores", proto.ToServer, msg(1, flagsQuery, 1, 0, 0, 0, name("_ldap", "_tcp", "dc", "example"), qtail(33)), `q="_ldap._tcp.dc.example"/SRV/1/4`, nil},
		{"ip6.arpa has many labels legitimately", proto.ToServer, msg(1, flagsQuery, 1, 0, 0, 0,
			name(append(strings.Split(strings.Repeat("0.", 31)+"1", "."), "ip6", "arpa")...), qtail(12)), `/PTR/1/34`, nil},
		{"header only", proto.ToServer, query[:12], `counts=1/0/0/0 records=0 off=0 q=`, []proto.FindingKind{proto.DNSTruncated}},
		{"short", proto.ToServer, query[:11], "", []proto.FindingKind{proto.DNSTruncated}},
		{"question cut", proto.ToServer, query[:len(query)-2], `counts=1/0/0/0 records=0 off=0 q=`, []proto.FindingKind{proto.DNSTruncated}},
		{"name cut", proto.ToServer, query[:16], `q=`, []proto.FindingKind{proto.DNSTruncated}},
		{"answer cut", proto.ToClient, resp[:len(resp)-3], `records=1`, []proto.FindingKind{proto.DNSTruncated}},
		{"trailing data", proto.ToServer, append(bytes.Clone(query), 0xde, 0xad), `records=0`, []proto.FindingKind{proto.DNSTrailingData}},
		{"no question", proto.ToServer, msg(1, flagsQuery, 0, 0, 0, 0), `counts=0/0/0/0`, []proto.FindingKind{proto.DNSNoQuestion}},
		{"two questions", proto.ToServer, msg(1, flagsQuery, 2, 0, 0, 0, name("a", "example"), qtail(1), name("b", "example"), qtail(28)),
			`q="a.example"/A/1/2,"b.example"/AAAA/1/2`, []proto.FindingKind{proto.DNSManyQuestions}},
		{"pointer to itself", proto.ToServer, msg(1, flagsQuery, 1, 0, 0, 0, []byte{0xc0, 12}, qtail(1)), `q=`, []proto.FindingKind{proto.DNSPointerLoop}},
		{"pointer forward", proto.ToServer, msg(1, flagsQuery, 1, 0, 0, 0, []byte{0xc0, 20}, qtail(1), name("x")), `q=`, []proto.FindingKind{proto.DNSPointerLoop}},
		{"pointer into header", proto.ToServer, msg(1, flagsQuery, 1, 0, 0, 0, []byte{0xc0, 2}, qtail(1)), `q=`, []proto.FindingKind{proto.DNSPointerLoop}},
		{"pointer cycle", proto.ToClient,
			// Answer names: at 29 "a" then pointer to 33, at 33 "b" then pointer to 29.
			msg(1, flagsResponse, 1, 2, 0, 0, name("q"), qtail(1),
				[]byte{1, 'a', 0xc0, 33}, []byte{0, 1, 0, 1, 0, 0, 0, 1, 0, 0},
				[]byte{1, 'b', 0xc0, 19}, []byte{0, 1, 0, 1, 0, 0, 0, 1, 0, 0}),
			`records=`, []proto.FindingKind{proto.DNSPointerLoop}},
		{"label type 0x40", proto.ToServer, msg(1, flagsQuery, 1, 0, 0, 0, []byte{0x41, 'x', 0}, qtail(1)), `q=`, []proto.FindingKind{proto.DNSInvalidLabel}},
		{"name too long", proto.ToServer, msg(1, flagsQuery, 1, 0, 0, 0, name(long63, long63, long63, long63, "x"), qtail(1)), `q=`, []proto.FindingKind{proto.DNSNameTooLong}},
		{"longest legal name", proto.ToServer, msg(1, flagsQuery, 1, 0, 0, 0, name(long63, long63, long63, strings.Repeat("b", 61)), qtail(16)),
			`/TXT/1/4`, []proto.FindingKind{proto.DNSLongName, proto.DNSLongLabel}},
		{"tunnel-like", proto.ToServer, msg(1, flagsQuery, 1, 0, 0, 0, name(strings.Split(tunnel, ".")...), qtail(16)),
			`/TXT/1/5`, []proto.FindingKind{proto.DNSLongName, proto.DNSLongLabel}},
		{"many labels", proto.ToServer, msg(1, flagsQuery, 1, 0, 0, 0, name("a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "example"), qtail(1)),
			`/A/1/12`, []proto.FindingKind{proto.DNSManyLabels}},
		{"binary label", proto.ToServer, msg(1, flagsQuery, 1, 0, 0, 0, name("a\x00\xff.b", "example"), qtail(1)), "a\\x00\\xff.b.example", []proto.FindingKind{proto.DNSLabelChars}},
		{"null query", proto.ToServer, msg(1, flagsQuery, 1, 0, 0, 0, name("x", "example"), qtail(10)), `/NULL/`, []proto.FindingKind{proto.DNSSuspiciousType}},
		{"any query", proto.ToServer, msg(1, flagsQuery, 1, 0, 0, 0, name("example"), qtail(255)), `/ANY/`, []proto.FindingKind{proto.DNSSuspiciousType}},
		{"axfr over udp", proto.ToServer, msg(1, 0, 1, 0, 0, 0, name("example"), qtail(252)), `/AXFR/`, []proto.FindingKind{proto.DNSSuspiciousType}},
		{"traits only on queries", proto.ToClient, msg(1, flagsResponse, 1, 0, 0, 0, name(long63, long63), qtail(10)), `/NULL/`, nil},
		{"opcode 3", proto.ToServer, msg(1, 3<<11, 1, 0, 0, 0, name("x"), qtail(1)), `op=3`, []proto.FindingKind{proto.DNSInvalidOpcode}},
		{"response sent to server", proto.ToServer, resp, `resp=true`, []proto.FindingKind{proto.DNSResponseAsRequest}},
		{"query sent to client", proto.ToClient, query, `resp=false`, []proto.FindingKind{proto.DNSResponseAsRequest}},
		{"record count lies", proto.ToClient, msg(1, flagsResponse, 0, 0xffff, 0, 0), `records=0`, []proto.FindingKind{proto.DNSTruncated}},
		{"too many records", proto.ToClient, func() []byte {
			rr := []byte{0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 0} // root name, A, IN, ttl 1, no rdata
			return msg(1, flagsResponse, 0, MaxRecords+1, 0, 0, bytes.Repeat(rr, MaxRecords+1))
		}(), `records=256`, []proto.FindingKind{proto.DNSTooManyRecords}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{}
			p := NewParser(r, Config{})
			p.Datagram(tc.dir, tc.in)
			log := r.String()
			if tc.want != "" && !strings.Contains(log, tc.want) {
				t.Errorf("log lacks %q:\n%s", tc.want, log)
			}
			if tc.want == "" && len(tc.kinds) > 0 && r.msgs != 0 {
				t.Errorf("message reported for a broken header:\n%s", log)
			}
			want := slices.Clone(tc.kinds)
			slices.Sort(want)
			if got := r.kinds(); !slices.Equal(got, want) {
				t.Errorf("findings %v, want %v:\n%s", got, want, log)
			}
		})
	}
}

// TestAgainstDNSMessage builds messages with dnsmessage and checks the
// question as dnsmessage parses it.
func TestAgainstDNSMessage(t *testing.T) {
	names := []string{"example.com", "a.b.c.d.example.org", "xn--bcher-kva.example", "_sip._udp.example.net", "x"}
	for i, n := range names {
		for _, typ := range []dnsmessage.Type{dnsmessage.TypeA, dnsmessage.TypeMX, dnsmessage.TypeHTTPS} {
			raw := prototest.DNSQuery(t, uint16(i), n, typ)
			var dp dnsmessage.Parser
			if _, err := dp.Start(raw); err != nil {
				t.Fatal(err)
			}
			q, err := dp.Question()
			if err != nil {
				t.Fatal(err)
			}
			var got []Question
			p := NewParser(&funcSink{msg: func(_ proto.Dir, m *Message) {
				for _, q := range m.Questions {
					q.Name = bytes.Clone(q.Name)
					got = append(got, q)
				}
			}}, Config{})
			p.Datagram(proto.ToServer, raw)
			if len(got) != 1 || string(got[0].Name)+"." != q.Name.String() || got[0].Type != uint16(q.Type) || got[0].Class != uint16(q.Class) {
				t.Errorf("%s %v: got %+v, dnsmessage %v", n, typ, got, q)
			}
		}
	}
}

type funcSink struct {
	msg func(proto.Dir, *Message)
}

func (s *funcSink) Message(d proto.Dir, m *Message) {
	if s.msg != nil {
		s.msg(d, m)
	}
}
func (s *funcSink) Finding(proto.Finding) {}

func tcpLog(chunks [][]byte, dir proto.Dir) string {
	r := &recorder{}
	p := NewParser(r, Config{})
	for _, c := range chunks {
		p.Feed(dir, c)
	}
	return r.String()
}

// TestTCPStream feeds several framed messages in every chunking: the
// messages, their offsets and findings must not change.
func TestTCPStream(t *testing.T) {
	q1 := prototest.DNSQuery(t, 1, "one.example", dnsmessage.TypeA)
	q2 := prototest.DNSQuery(t, 2, "two.example", dnsmessage.TypeAAAA)
	q3 := msg(3, flagsQuery, 1, 0, 0, 0, []byte{0xc0, 12}, qtail(1)) // pointer loop
	stream := prototest.TCPFrame(q1, q2, q3)
	want := tcpLog([][]byte{stream}, proto.ToServer)
	for _, w := range []string{`id=1 `, `off=2 q="one.example"/A`, `id=2 `, fmt.Sprintf(`off=%d q="two.example"/AAAA`, 4+len(q1)), `finding dns.pointer_loop`, `id=3 `} {
		if !strings.Contains(want, w) {
			t.Fatalf("whole stream log lacks %q:\n%s", w, want)
		}
	}
	prototest.Chunkings(stream, 200, func(chunks [][]byte) {
		if got := tcpLog(chunks, proto.ToServer); got != want {
			t.Fatalf("%d chunks (first %d bytes):\n%s\nwant\n%s", len(chunks), len(chunks[0]), got, want)
		}
	})

	resp := prototest.DNSResponse(t, 1, "one.example", dnsmessage.RCodeSuccess, [4]byte{198, 18, 0, 1})
	rs := prototest.TCPFrame(resp, resp)
	want = tcpLog([][]byte{rs}, proto.ToClient)
	if strings.Count(want, "records=1") != 2 {
		t.Fatalf("responses:\n%s", want)
	}
	prototest.Chunkings(rs, 0, func(chunks [][]byte) {
		if got := tcpLog(chunks, proto.ToClient); got != want {
			t.Fatalf("%d chunks:\n%s\nwant\n%s", len(chunks), got, want)
		}
	})
}

func TestTCPBadLength(t *testing.T) {
	r := &recorder{}
	p := NewParser(r, Config{})
	p.Feed(proto.ToServer, []byte{0, 5, 1, 2, 3, 4, 5, 0, 20})
	if !p.Stopped(proto.ToServer) || len(r.findings) != 1 || r.findings[0].Kind != proto.DNSInvalidLength || !r.findings[0].Fatal || r.msgs != 0 {
		t.Fatalf("stopped=%v:\n%s", p.Stopped(proto.ToServer), r)
	}
}

func TestNames(t *testing.T) {
	if TypeName(28) != "AAAA" || TypeName(9999) != "TYPE9999" || RCodeName(3) != "NXDOMAIN" || RCodeName(23) != "RCODE23" {
		t.Fatal("names")
	}
}

func TestAllocs(t *testing.T) {
	resp := prototest.DNSResponse(t, 1, "www.example.com", dnsmessage.RCodeSuccess, [4]byte{198, 18, 0, 1})
	stream := prototest.TCPFrame(resp, resp)
	p := NewParser(&funcSink{}, Config{})
	p.Feed(proto.ToClient, stream[:10]) // grows the stream buffer once
	p.Feed(proto.ToClient, stream[10:])
	allocs := testing.AllocsPerRun(100, func() {
		p.Datagram(proto.ToClient, resp)
		p.Feed(proto.ToClient, stream[:10])
		p.Feed(proto.ToClient, stream[10:])
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations", allocs)
	}
}

func BenchmarkDatagram(b *testing.B) {
	resp := prototest.DNSResponse(b, 1, "www.example.com", dnsmessage.RCodeSuccess, [4]byte{198, 18, 0, 1}, [4]byte{198, 18, 0, 2})
	p := NewParser(&funcSink{}, Config{})
	b.SetBytes(int64(len(resp)))
	b.ReportAllocs()
	for b.Loop() {
		p.Datagram(proto.ToClient, resp)
	}
}

// FuzzDNS parses arbitrary bytes as a datagram and as a TCP stream cut
// into chunks derived from the input: no panic, bounded names, the same
// events for every chunking, and for messages dnsmessage accepts, the same
// first question.
func FuzzDNS(f *testing.F) {
	f.Add(prototest.DNSQuery(f, 1, "www.example.com", dnsmessage.TypeA), []byte{3})
	f.Add(prototest.DNSResponse(f, 1, "www.example.com", dnsmessage.RCodeSuccess, [4]byte{1, 2, 3, 4}), []byte{0, 9})
	f.Add(msg(1, flagsResponse, 1, 2, 0, 0, name("q"), qtail(1), []byte{1, 'a', 0xc0, 33, 0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 1, 'b', 0xc0, 19, 0, 1, 0, 1, 0, 0, 0, 1, 0, 0}), []byte{1})
	f.Fuzz(func(t *testing.T, data, seed []byte) {
		var first *Question
		p := NewParser(&funcSink{msg: func(_ proto.Dir, m *Message) {
			for _, q := range m.Questions {
				if len(q.Name) > MaxName {
					t.Fatalf("name of %d bytes", len(q.Name))
				}
			}
			if len(m.Questions) > 0 && first == nil {
				q := m.Questions[0]
				q.Name = bytes.Clone(q.Name)
				first = &q
			}
		}}, Config{})
		p.Datagram(proto.ToServer, data)
		var dp dnsmessage.Parser
		if _, err := dp.Start(data); err == nil {
			if q, err := dp.Question(); err == nil && first != nil {
				if string(first.Name)+"." != q.Name.String() && !(len(first.Name) == 0 && q.Name.String() == ".") {
					t.Fatalf("question %q, dnsmessage %q", first.Name, q.Name.String())
				}
			}
		}
		framed := prototest.TCPFrame(data)
		if len(data) > 0xffff {
			return
		}
		want := tcpLog([][]byte{framed}, proto.ToServer)
		if got := tcpLog(prototest.RandomChunks(framed, seed), proto.ToServer); got != want {
			t.Fatalf("chunked:\n%s\nwhole:\n%s", got, want)
		}
	})
}
