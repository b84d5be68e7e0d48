package rules

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"regexp/syntax"
	"sort"
	"strings"
	"sync"
	"testing"
	"unicode"

	"github.com/flier/gohs/hyperscan"

	"github.com/deepwall/deepwall/rules/transform"
)

func mustCompile(tb testing.TB, src string) *Compiled {
	tb.Helper()
	c, err := Compile(mustParse(tb, "t.yaml", src))
	if err != nil {
		tb.Fatalf("Compile: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

func scratch(tb testing.TB, c *Compiled) *hyperscan.Scratch {
	tb.Helper()
	s, err := c.NewScratch()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Free() })
	return s
}

func compiledPack(tb testing.TB) (*Compiled, *Set) {
	tb.Helper()
	set, err := DefaultPack()
	if err != nil {
		tb.Fatal(err)
	}
	c, err := Compile(set)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c, set
}

func ruleIDs(rs []*Rule) []uint32 {
	out := make([]uint32, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func TestCompileLayout(t *testing.T) {
	c := mustCompile(t, `
rules:
  - {id: 1, action: block, proto: tcp, dst_port: 23}
  - {id: 2, action: alert, proto: tcp, dst_port: 22}
  - {id: 3, action: allow, src: 198.18.0.0/24}
  - {id: 4, action: block, app_proto_not: [http]}
  - {id: 5, action: block, match: {field: http.args, regex: 'a1', transforms: [url_decode]}}
  - {id: 6, action: block, match: {field: http.args, regex: 'a2', transforms: [url_decode]}}
  - {id: 7, action: block, match: {field: http.args, regex: 'a3'}}
  - {id: 8, action: block, match: {field: http.body, regex: 'b1', transforms: [url_decode]}}
  - {id: 9, action: block, match: {field: http.args, detect: sqli}}
  - {id: 10, action: block, enabled: false, match: {field: http.uri, regex: 'x'}}
  - {id: 11, action: block, enabled: false, proto: udp}
`)
	if got := ruleIDs(c.ACL); !reflect.DeepEqual(got, []uint32{1, 3}) {
		t.Errorf("ACL %v", got)
	}
	if got := ruleIDs(c.L7); !reflect.DeepEqual(got, []uint32{2, 4, 5, 6, 7, 8, 9}) {
		t.Errorf("L7 %v", got)
	}
	if got := ruleIDs(c.Detect); !reflect.DeepEqual(got, []uint32{9}) {
		t.Errorf("Detect %v", got)
	}
	if len(c.Groups) != 3 {
		t.Fatalf("%d groups", len(c.Groups))
	}
	g := c.Groups[0]
	if g.Field.Kind != FieldHTTPArgs || !reflect.DeepEqual(g.Transforms, []transform.Transform{transform.URLDecode}) || g.Stream || g.Block == nil || g.Streaming != nil || len(g.Rules) != 2 {
		t.Errorf("group 0 %+v", g)
	}
	if g := c.Groups[2]; g.Field.Kind != FieldHTTPBody || !g.Stream || g.Streaming == nil || g.Block != nil {
		t.Errorf("group 2 %+v", g)
	}
	for _, p := range c.Groups[0].Patterns {
		if p.Flags&hyperscan.SingleMatch == 0 || p.NeedsConfirm() {
			t.Errorf("plain pattern compiled with %v", p.Flags)
		}
	}
}

// TestCompileBlockFields scans every block field kind.
func TestCompileBlockFields(t *testing.T) {
	c := mustCompile(t, `
rules:
  - {id: 1, action: block, match: {field: http.method, regex: '^(?:TRACE|TRACK)$'}}
  - {id: 2, action: block, match: {field: http.uri, regex: '/admin\b', flags: [caseless]}}
  - {id: 3, action: block, match: {field: http.path, regex: '/\.git/', transforms: [url_decode, normalize_path]}}
  - {id: 4, action: block, match: {field: http.args, regex: 'union select', transforms: [url_decode, compress_whitespace, lowercase]}}
  - {id: 5, action: block, match: {field: http.headers, regex: '^x-debug:\s*1', flags: [caseless, multiline]}}
  - {id: 6, action: block, match: {field: http.header.user-agent, regex: 'sqlmap'}}
  - {id: 7, action: block, match: {field: tls.sni, regex: '\.evil\.example$'}}
  - {id: 8, action: block, match: {field: dns.query, regex: '^[a-z0-9]{30,}\.'}}
  - {id: 9, action: alert, match: {field: http.response_headers, regex: '^server: apache/2\.2', flags: [caseless, multiline]}}
  - {id: 10, action: block, match: {field: tls.sni, regex: 'ünï', flags: [utf8, caseless]}}
`)
	s := scratch(t, c)
	tests := []struct {
		field Field
		in    string
		want  []uint32
	}{
		{Field{Kind: FieldHTTPMethod}, "TRACE", []uint32{1}},
		{Field{Kind: FieldHTTPMethod}, "TRACER", nil},
		{Field{Kind: FieldHTTPURI}, "/ADMIN/users", []uint32{2}},
		{Field{Kind: FieldHTTPURI}, "/administrator", nil},
		{Field{Kind: FieldHTTPPath}, "/static/..%2f.git/config", []uint32{3}},
		{Field{Kind: FieldHTTPPath}, "/a/.gitignore", nil},
		{Field{Kind: FieldHTTPArgs}, "q=UNION%20%20%0aSELECT", []uint32{4}},
		{Field{Kind: FieldHTTPArgs}, "q=union", nil},
		{Field{Kind: FieldHTTPHeaders}, "Host: a\r\nX-Debug: 1\r\n", []uint32{5}},
		{Field{Kind: FieldHTTPHeaders}, "Host: a\r\nX-Not-Debug: 1\r\n", nil},
		{Field{Kind: FieldHTTPHeader, Name: "user-agent"}, "sqlmap/1.7", []uint32{6}},
		{Field{Kind: FieldTLSSNI}, "www.evil.example", []uint32{7}},
		{Field{Kind: FieldTLSSNI}, "www.evil.example.org", nil},
		{Field{Kind: FieldTLSSNI}, "xÜNÏy", []uint32{10}},
		{Field{Kind: FieldDNSQuery}, "agvsbg8gd29ybgqgdghpcybpcyblegzpba.t.example", []uint32{8}},
		{Field{Kind: FieldDNSQuery}, "www.example.com", nil},
		{Field{Kind: FieldHTTPResponseHeaders}, "Content-Type: text/html\r\nServer: Apache/2.2.15\r\n", []uint32{9}},
	}
	for _, tc := range tests {
		t.Run(tc.field.String()+"/"+tc.in, func(t *testing.T) {
			got := ruleIDs(evalField(t, c, s, tc.field, []byte(tc.in), 0))
			if len(got) == 0 {
				got = nil
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("hits %v, want %v", got, tc.want)
			}
		})
	}
}

// scanBlock scans one transformed value with a block-mode group and calls
// fn once for each rule whose hit is confirmed (for rules of several
// conditions or negated ones, a hit is only one condition: see
// ScanBlockPatterns). s must be valid for the group's database
// (Compiled.NewScratch).
func scanBlock(g *Group, data []byte, s *hyperscan.Scratch, fn func(*Rule)) error {
	var seen map[*Rule]bool
	return g.ScanBlockPatterns(data, s, func(id int) {
		r := g.Rules[id]
		if seen == nil {
			seen = map[*Rule]bool{}
		}
		if !seen[r] {
			seen[r] = true
			fn(r)
		}
	})
}

// openStream starts a stream; fn is called once per rule whose hit is
// confirmed. s must be valid for the group's database and must not be used
// concurrently while the stream scans.
func openStream(g *Group, s *hyperscan.Scratch, fn func(*Rule)) (*GroupStream, error) {
	seen := map[*Rule]bool{}
	return g.OpenStreamPatterns(s, func(id int) {
		if r := g.Rules[id]; !seen[r] {
			seen[r] = true
			fn(r)
		}
	})
}

// evalField runs the groups of one field over value, in pieces of size
// chunk for stream groups (0 = whole).
func evalField(tb testing.TB, c *Compiled, s *hyperscan.Scratch, f Field, value []byte, chunk int) []*Rule {
	tb.Helper()
	var hits []*Rule
	add := func(r *Rule) { hits = append(hits, r) }
	var tf transform.Transformer
	for _, g := range c.Groups {
		if g.Field != f {
			continue
		}
		if !g.Stream {
			if err := scanBlock(g, tf.Apply(g.Transforms, value), s, add); err != nil {
				tb.Fatal(err)
			}
			continue
		}
		gs, err := openStream(g, s, add)
		if err != nil {
			tb.Fatal(err)
		}
		st := transform.NewStream(g.Transforms)
		n := chunk
		if n <= 0 {
			n = len(value)
		}
		for i := 0; i < len(value); i += n {
			if err := gs.Write(st.Write(value[i:min(i+n, len(value))])); err != nil {
				tb.Fatal(err)
			}
		}
		if err := gs.Write(st.Close()); err != nil {
			tb.Fatal(err)
		}
		if err := gs.Close(); err != nil {
			tb.Fatal(err)
		}
	}
	return hits
}

// TestCompileStreamSplit: in stream mode a pattern split over several
// writes still matches, including through transforms, validators (SOM)
// and prefilter confirmation.
func TestCompileStreamSplit(t *testing.T) {
	c := mustCompile(t, `
rules:
  - {id: 1, action: block, match: {field: http.body, regex: 'union\s+select', transforms: [url_decode, lowercase]}}
  - {id: 2, action: alert, match: {field: http.response_body, regex: '\b(?:\d[ -]?){13,16}\b', validate: luhn}}
  - {id: 3, action: block, match: {field: payload, regex: '(\w{3,})=\1;'}}
  - {id: 4, action: alert, match: {field: payload.to_client, regex: '-----BEGIN RSA PRIVATE KEY-----'}}
  - {id: 5, action: block, match: {field: http.body, regex: '<script>', transforms: [html_entity_decode, js_decode]}}
`)
	s := scratch(t, c)
	tests := []struct {
		field Field
		in    string
		want  []uint32
	}{
		{Field{Kind: FieldHTTPBody}, "q=x%27+UNION%20%20SELECT+1", []uint32{1}},
		{Field{Kind: FieldHTTPBody}, "q=union+of+selected", nil},
		{Field{Kind: FieldHTTPBody}, `x=&lt;script&#x3e; \x3cscript>`, []uint32{5}},
		{Field{Kind: FieldHTTPResponseBody}, `{"n":"4111 1111 1111 1111"}`, []uint32{2}},
		{Field{Kind: FieldHTTPResponseBody}, `{"n":"4111 1111 1111 1112","m":"12345678901234"}`, nil},
		{Field{Kind: FieldHTTPResponseBody}, `a 4111111111111112 then 5500-0000-0000-0004 ok`, []uint32{2}},
		{Field{Kind: FieldPayload}, "SET abc=abc; x", []uint32{3}},
		{Field{Kind: FieldPayload}, "SET abc=abd; x", nil},
		{Field{Kind: FieldPayloadToClient}, "xx-----BEGIN RSA PRIVATE KEY-----\nMII", []uint32{4}},
	}
	for _, tc := range tests {
		for _, chunk := range []int{0, 1, 2, 3, 5, 7} {
			got := ruleIDs(evalField(t, c, s, tc.field, []byte(tc.in), chunk))
			if len(got) == 0 {
				got = nil
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s %q in %d-byte writes: hits %v, want %v", tc.field, tc.in, chunk, got, tc.want)
			}
		}
	}
	// The patterns went in as planned.
	for _, g := range c.Groups {
		for i, r := range g.Rules {
			p := g.Patterns[i]
			switch r.ID {
			case 2:
				if !p.SOM || p.Flags&hyperscan.SomLeftMost == 0 || p.Flags&hyperscan.SingleMatch != 0 {
					t.Errorf("validated pattern flags %v", p.Flags)
				}
			case 3:
				if !p.Prefilter || p.Flags&hyperscan.PrefilterMode == 0 || p.SOM {
					t.Errorf("back-reference pattern flags %v", p.Flags)
				}
			}
		}
	}
}

// TestConfirmWindow: a confirmation needs bytes from before the current
// write; GroupStream keeps them, and not more than the window.
func TestConfirmWindow(t *testing.T) {
	c := mustCompile(t, `
rules:
  - {id: 1, action: block, match: {field: payload, regex: '(ab+)c\1'}}
`)
	s := scratch(t, c)
	g := c.Groups[0]
	if w := g.Patterns[0].Window(); w != MaxConfirmWindow {
		t.Errorf("window %d, want %d for an unbounded pattern", w, MaxConfirmWindow)
	}
	var hits int
	gs, err := openStream(g, s, func(*Rule) { hits++ })
	if err != nil {
		t.Fatal(err)
	}
	filler := bytes.Repeat([]byte("x"), 3000)
	for _, w := range [][]byte{filler, []byte("ab"), []byte("bbc"), filler[:100], []byte("abb"), []byte("b")} {
		if err := gs.Write(w); err != nil {
			t.Fatal(err)
		}
	}
	gs.Close()
	if hits != 0 {
		t.Errorf("abbc...abbb confirmed (%d hits)", hits)
	}
	gs, _ = openStream(g, s, func(*Rule) { hits++ })
	for _, w := range [][]byte{filler, []byte("ab"), []byte("bbc"), []byte("a"), []byte("bbb"), filler} {
		gs.Write(w)
	}
	gs.Close()
	if hits != 1 {
		t.Errorf("abbbcabbb split over writes: %d hits, want 1", hits)
	}
}

func TestMatchACL(t *testing.T) {
	c := mustCompile(t, `
acl_default: block
rules:
  - {id: 1, action: block, proto: tcp, dst_port: 23}
  - {id: 2, action: allow, proto: tcp, dst: [198.18.0.0/24, "2001:2::/64"], dst_port: [80, 443, "8000-8080"]}
  - {id: 3, action: allow, proto: udp, dst_port: 53}
  - {id: 4, action: allow, proto: icmp}
  - {id: 5, action: block, src: 198.18.0.66}
  - {id: 6, action: allow, src_port: 7000-7001}
`)
	ap := netip.MustParseAddrPort
	tests := []struct {
		proto    uint8
		src, dst string
		want     uint32
		action   Action
	}{
		{ProtoTCP, "198.18.0.1:40000", "198.18.0.2:23", 1, ActionBlock},
		{ProtoTCP, "198.18.0.1:40000", "198.18.0.2:80", 2, ActionAllow},
		{ProtoTCP, "198.18.0.1:40000", "198.18.0.2:8080", 2, ActionAllow},
		{ProtoTCP, "198.18.0.1:40000", "198.18.0.2:8081", 0, ActionBlock},
		{ProtoTCP, "198.18.0.1:40000", "198.18.1.2:80", 0, ActionBlock},
		{ProtoTCP, "[2001:2::1]:40000", "[2001:2::2]:443", 2, ActionAllow},
		{ProtoTCP, "[2001:2::1]:40000", "[2001:2:0:1::2]:443", 0, ActionBlock},
		{ProtoTCP, "[::ffff:198.18.0.1]:40000", "[::ffff:198.18.0.2]:443", 2, ActionAllow},
		{ProtoUDP, "198.18.0.1:40000", "198.18.0.2:53", 3, ActionAllow},
		{ProtoUDP, "198.18.0.1:40000", "198.18.0.2:23", 0, ActionBlock},
		{ProtoICMP, "198.18.0.66:0", "198.18.0.2:0", 4, ActionAllow},
		{ProtoTCP, "198.18.0.66:1", "198.18.0.2:9", 5, ActionBlock},
		{ProtoGRE, "198.18.0.1:7000", "198.18.0.2:0", 0, ActionBlock}, // port conditions never match a protocol without ports
		{ProtoSCTP, "198.18.0.1:7001", "198.18.0.2:1", 6, ActionAllow},
	}
	for _, tc := range tests {
		r := c.MatchACL(tc.proto, ap(tc.src), ap(tc.dst))
		var got uint32
		if r != nil {
			got = r.ID
		}
		a, id := c.ACLVerdict(tc.proto, ap(tc.src), ap(tc.dst))
		if got != tc.want || a != tc.action || id != tc.want {
			t.Errorf("%s %s -> %s: rule %d %v, want %d %v", ProtoString(tc.proto), tc.src, tc.dst, got, a, tc.want, tc.action)
		}
	}
}

func TestMatchFlow(t *testing.T) {
	set := mustParse(t, "t.yaml", `
rules:
  - {id: 1, action: block, dst: 198.18.0.2, dst_port: 80, app_proto_not: http}
  - {id: 2, action: block, src: 198.18.1.0/24, app_proto: [tls, http]}
  - {id: 3, action: alert, proto: tcp, match: {field: http.uri, regex: x}}
`)
	ap := netip.MustParseAddrPort
	web := Flow{Proto: ProtoTCP, Client: ap("198.18.1.5:40000"), Server: ap("198.18.0.2:80")}
	tests := []struct {
		rule uint32
		app  string
		want bool
	}{
		{1, "", false}, {1, "http", false}, {1, "ssh", true}, {1, "unknown", true},
		{2, "tls", true}, {2, "dns", false}, {2, "", false},
		{3, "", true},
	}
	for _, tc := range tests {
		f := web
		f.App = tc.app
		if got := set.Rule(tc.rule).MatchFlow(f); got != tc.want {
			t.Errorf("rule %d app %q: %v, want %v", tc.rule, tc.app, got, tc.want)
		}
	}
	other := web
	other.Server = ap("198.18.0.3:80")
	other.App = "ssh"
	if set.Rule(1).MatchFlow(other) {
		t.Error("rule 1 matched another server")
	}
}

func TestDecide(t *testing.T) {
	c := mustCompile(t, `
rules:
  - {id: 1, action: alert, match: {field: http.uri, regex: a}}
  - {id: 2, action: block, match: {field: http.uri, regex: b}}
  - {id: 3, action: allow, match: {field: http.path, regex: '^/healthz'}}
  - {id: 4, action: block, match: {field: http.uri, regex: c}}
  - {id: 5, action: alert, match: {field: http.uri, regex: d}}
  - {id: 6, action: block, proto: tcp}
`)
	r := c.Set.Rule
	tests := []struct {
		hits          []uint32
		block, exempt uint32
		counted       []uint32
	}{
		{nil, 0, 0, nil},
		{[]uint32{1}, 0, 0, []uint32{1}},
		{[]uint32{4, 2, 1}, 2, 0, []uint32{1, 2, 4}},
		{[]uint32{4, 5}, 4, 0, []uint32{4, 5}},
		{[]uint32{3, 4, 5}, 0, 3, []uint32{3}},
		{[]uint32{2, 3, 4}, 2, 3, []uint32{2, 3}},
		{[]uint32{1, 3}, 0, 3, []uint32{1, 3}},
		{[]uint32{6}, 0, 0, nil}, // an ACL rule is not a layer-7 hit
	}
	for _, tc := range tests {
		block, exempt, counted := decideIDs(c, tc.hits)
		if block != tc.block || exempt != tc.exempt || !reflect.DeepEqual(counted, tc.counted) {
			t.Errorf("hits %v: block %d exempt %d counted %v, want %d %d %v", tc.hits, block, exempt, counted, tc.block, tc.exempt, tc.counted)
		}
	}
	if c.Index(r(4)) != 3 || c.Index(r(6)) != -1 {
		t.Errorf("Index: %d %d", c.Index(r(4)), c.Index(r(6)))
	}
}

// decideIDs decides the rules of ids that hit: the blocking and the
// exempting rule (0 for none) and the hits that count, sorted.
func decideIDs(c *Compiled, ids []uint32) (block, exempt uint32, counted []uint32) {
	var hits []*Rule
	for _, id := range ids {
		hits = append(hits, c.Set.Rule(id))
	}
	d := c.Decide(hits)
	if d.Block != nil {
		block = d.Block.ID
	}
	if d.Exempt != nil {
		exempt = d.Exempt.ID
	}
	for _, h := range hits {
		if c.Counts(d, h) {
			counted = append(counted, h.ID)
		}
	}
	return block, exempt, sortedIDs(counted)
}

func sortedIDs(ids []uint32) []uint32 {
	if len(ids) == 0 {
		return nil
	}
	out := append([]uint32(nil), ids...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func TestCompileRejectsInvalidSet(t *testing.T) {
	set := &Set{Rules: []*Rule{
		{ID: 1, Action: ActionBlock, Match: &Match{Field: Field{Kind: FieldHTTPArgs}, Regex: "a("}},
		{ID: 1, Action: ActionBlock, DstPorts: []PortRange{{9, 3}}},
		{ID: 2, Action: ActionBlock, Match: &Match{Field: Field{Kind: FieldHTTPArgs}, Regex: "ok"}},
	}}
	c, err := Compile(set)
	if c != nil || !errors.Is(err, ErrInvalid) {
		t.Fatalf("Compile = %v, %v", c, err)
	}
	for _, want := range []string{"duplicate id 1", "port range 9-3 is empty", "regex: hyperscan: Missing close parenthesis"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors %q lack %q", err, want)
		}
	}
	if _, err := Compile(nil); err == nil {
		t.Error("Compile(nil) succeeded")
	}
}

func TestCanonical(t *testing.T) {
	a := mustParse(t, "a.yaml", `
# comments and layout do not matter
rules:
  - id: 1
    action: block
    proto: TCP
    dst: ["198.18.0.0/24", 198.18.1.1/32]
    dst_port: [80, "8000-8080"]
  - {id: 2, name: "x", action: alert, match: {field: http.header.User-Agent, regex: 'a''b', flags: caseless}}
`)
	b := mustParse(t, "b.yaml", `acl_default: allow
rules:
- {id: 1, action: block, proto: tcp, dst: [198.18.0.0/24, 198.18.1.1], dst_port: ["80", 8000-8080], severity: medium}
- id: 2
  name: x
  action: alert
  match:
    field: http.header.user-agent
    regex: "a'b"
    flags: [caseless]
`)
	if !bytes.Equal(a.Canonical(), b.Canonical()) || a.Hash() != b.Hash() {
		t.Errorf("equivalent sets differ:\n%s\n---\n%s", a.Canonical(), b.Canonical())
	}
	for _, f := range []string{"testdata/example.yaml", "testdata/full.yaml", "testdata/exempts.yaml", "testdata/include/main.yaml", "packs/default.yaml"} {
		s, err := ParseFile(f)
		if err != nil {
			t.Fatal(err)
		}
		canon := s.Canonical()
		s2, err := Parse("canon.yaml", canon)
		if err != nil {
			t.Fatalf("%s: canonical form does not parse: %v\n%s", f, err, canon)
		}
		if !bytes.Equal(s2.Canonical(), canon) {
			t.Errorf("%s: canonical form not stable", f)
		}
		if len(s2.Rules) != len(s.Rules) {
			t.Errorf("%s: %d rules after round trip, want %d", f, len(s2.Rules), len(s.Rules))
		}
	}
}

func TestCacheRoundTrip(t *testing.T) {
	c, set := compiledPack(t)
	data, err := c.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	c2, err := UnmarshalCompiled(set, data)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if c2.Key != c.Key || len(c2.Groups) != len(c.Groups) {
		t.Fatalf("restored %d groups", len(c2.Groups))
	}
	for i, g := range c.Groups {
		g2 := c2.Groups[i]
		for j := range g.Patterns {
			p, p2 := g.Patterns[j], g2.Patterns[j]
			if p.Flags != p2.Flags || p.SOM != p2.SOM || p.Prefilter != p2.Prefilter || p.MaxWidth != p2.MaxWidth || (p.confirm == nil) != (p2.confirm == nil) {
				t.Errorf("group %d pattern %d: %+v restored as %+v", i, j, p, p2)
			}
		}
	}

	// Another rule set: stale.
	other := mustParse(t, "o.yaml", "rules:\n  - {id: 1, action: block, proto: tcp}\n")
	if _, err := UnmarshalCompiled(other, data); !errors.Is(err, ErrStale) {
		t.Errorf("other set: %v, want ErrStale", err)
	}
	// Damage anywhere: corrupt.
	for _, off := range []int{0, 12, len(data) / 2, len(data) - 1} {
		bad := append([]byte(nil), data...)
		bad[off] ^= 0x40
		if _, err := UnmarshalCompiled(set, bad); !errors.Is(err, ErrCorrupt) {
			t.Errorf("flipped byte %d: %v, want ErrCorrupt", off, err)
		}
	}
	if _, err := UnmarshalCompiled(set, data[:len(data)/3]); !errors.Is(err, ErrCorrupt) {
		t.Errorf("truncated: %v, want ErrCorrupt", err)
	}
}

func TestLoadOrCompile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rules.hsdb")
	set := mustParse(t, "t.yaml", "rules:\n  - {id: 1, action: block, match: {field: http.body, regex: 'evil'}}\n")
	c, cached, err := LoadOrCompileFrom(set, path, nil)
	if err != nil || cached {
		t.Fatalf("first load: cached %v, %v", cached, err)
	}
	c.Close()
	c, cached, err = LoadOrCompileFrom(set, path, nil)
	if err != nil || !cached {
		t.Fatalf("second load: cached %v, %v", cached, err)
	}
	c.Close()
	// A changed set recompiles and replaces the cache.
	set2 := mustParse(t, "t.yaml", "rules:\n  - {id: 1, action: block, match: {field: http.body, regex: 'evil2'}}\n")
	c, cached, err = LoadOrCompileFrom(set2, path, nil)
	if err != nil || cached {
		t.Fatalf("changed set: cached %v, %v", cached, err)
	}
	c.Close()
	if c, cached, _ = LoadOrCompileFrom(set2, path, nil); !cached {
		t.Error("changed set was not cached")
	}
	c.Close()
	// Garbage in the cache file recompiles.
	os.WriteFile(path, []byte("garbage"), 0o600)
	if c, cached, err = LoadOrCompileFrom(set2, path, nil); err != nil || cached {
		t.Errorf("garbage cache: cached %v, %v", cached, err)
	}
	c.Close()
	// An unwritable cache still gives compiled rules.
	c, _, err = LoadOrCompileFrom(set2, filepath.Join(dir, "missing-dir", "x"), nil)
	if c == nil || !errors.Is(err, ErrCacheWrite) {
		t.Errorf("unwritable cache: %v, %v", c, err)
	}
	if c != nil {
		c.Close()
	}
}

func TestDetector(t *testing.T) {
	set := mustParse(t, "t.yaml", `
rules:
  - {id: 1, action: block, match: {field: http.args, detect: sqli, transforms: [url_decode]}}
  - {id: 2, action: block, match: {field: http.body, detect: xss, transforms: [url_decode, js_decode]}}
  - {id: 3, action: block, match: {field: http.header.cookie, detect: sqli, transforms: [url_decode]}}
  - {id: 4, action: block, match: {field: http.headers, detect: sqli}}
  - {id: 5, action: block, match: {field: http.uri, detect: sqli, transforms: [url_decode]}}
  - {id: 6, action: block, match: {field: http.args, detect: libinjection_sqli, transforms: [url_decode]}}
`)
	var d Detector
	tests := []struct {
		rule uint32
		in   string
		want bool
	}{
		{1, "id=1%27%20OR%20%271%27%3D%271", true},
		{1, "a=1&1%27+or+1=1--=x", true}, // in a parameter name
		{1, "name=O%27Brien&city=K%C3%B6ln", false},
		{1, "password=x%27+or+1%3D1--", false}, // password values are skipped
		{2, `{"c":"<img src=x onerror=alert(1)>"}`, true},
		{2, `{"c":"\u003cscript\u003ealert(1)\u003c/script\u003e"}`, true},
		{2, `{"c":"I <3 cats","d":"<b>bold</b>"}`, false},
		{2, "c=%3Csvg%20onload%3Dalert(1)%3E", true},
		{3, "lang=en; id=1' or '1'='1", true},
		{3, "lang=en; sid=abc123; theme=dark", false},
		{4, "Host: a\r\nX-Id: 1' or 1=1--\r\n", true},
		{4, "Host: a\r\nAccept: */*\r\n", false},
		{5, "/p?id=1%27+union+select+1--", true},
		{5, "/p/1?sort=name", false},
		// The fingerprints sqli ignores, libinjection_sqli keeps.
		{1, "q=%22LIKE%22+STAMP", false},
		{6, "q=%22LIKE%22+STAMP", true},
		{1, "q=35%25+cotton+and+65%25+polyester", false},
		{6, "q=35%25+cotton+and+65%25+polyester", true},
		{6, "id=1%27%20OR%20%271%27%3D%271", true},
		{6, "name=O%27Brien", false},
	}
	for _, tc := range tests {
		got, _ := d.Match(set.Rule(tc.rule).Match, []byte(tc.in))
		if got != tc.want {
			t.Errorf("rule %d on %q: %v, want %v", tc.rule, tc.in, got, tc.want)
		}
	}
	if ok, fp := IsSQLi([]byte("1' or '1'='1")); !ok || fp == "" {
		t.Errorf("IsSQLi = %v %q", ok, fp)
	}
	if ok, _ := IsSQLi(nil); ok || IsXSS(nil) {
		t.Error("empty input detected")
	}
}

// TestConfirmBudget: confirmations per value are bounded, and a pathological
// backtracking pattern gives up within its timeout.
func TestConfirmBudget(t *testing.T) {
	c := mustCompile(t, `
rules:
  - {id: 1, action: block, match: {field: http.args, regex: '(\w)x\1'}}
  - {id: 2, action: block, match: {field: payload, regex: '^(a+)+\1$'}}
`)
	s := scratch(t, c)
	p := c.Groups[0].Patterns[0]
	if !p.Prefilter || p.Attempts() != MaxBacktrackAttempts {
		t.Fatalf("pattern %+v, attempts %d", p, p.Attempts())
	}
	// A near miss is "axb"; the real thing is "axa".
	few := strings.Repeat("axb ", MaxBacktrackAttempts-1) + "axa"
	many := strings.Repeat("axb ", MaxBacktrackAttempts*4) + "axa"
	f := Field{Kind: FieldHTTPArgs}
	if got := ruleIDs(evalField(t, c, s, f, []byte(few), 0)); !reflect.DeepEqual(got, []uint32{1}) {
		t.Errorf("within budget: %v", got)
	}
	if got := ruleIDs(evalField(t, c, s, f, []byte(many), 0)); len(got) != 0 {
		t.Errorf("past the budget: %v (the budget is documented to drop later hits)", got)
	}
	// Catastrophic backtracking ends at confirmTimeout (a hang would hit the
	// test timeout); no match is confirmed.
	if got := evalField(t, c, s, Field{Kind: FieldPayload}, []byte(strings.Repeat("a", 3000)+"b"), 0); len(got) != 0 {
		t.Errorf("pathological input confirmed: %v", ruleIDs(got))
	}
}

// hasSplittable reports whether e has an alternation splitRegex may split.
func hasSplittable(e string) bool {
	groups, err := parseGroups(e)
	if err != nil {
		return false
	}
	for _, g := range groups {
		if g.splittable {
			return true
		}
	}
	return false
}

// genFromRegex appends to b a string built by walking re, choosing
// alternatives and repeat counts with r: mostly members of re's language
// (assertions are not enforced, so some are not).
func genFromRegex(r *rand.Rand, re *syntax.Regexp, b *strings.Builder) {
	switch re.Op {
	case syntax.OpLiteral:
		for _, c := range re.Rune {
			if re.Flags&syntax.FoldCase != 0 && c < 0x80 && r.Intn(2) == 0 {
				c = unicode.SimpleFold(c)
			}
			b.WriteRune(c)
		}
	case syntax.OpCharClass:
		var ascii [][2]rune
		for i := 0; i+1 < len(re.Rune); i += 2 {
			if lo := re.Rune[i]; lo < 0x80 {
				ascii = append(ascii, [2]rune{lo, min(re.Rune[i+1], 0x7f)})
			}
		}
		if len(ascii) > 0 {
			rg := ascii[r.Intn(len(ascii))]
			b.WriteRune(rg[0] + rune(r.Intn(int(rg[1]-rg[0])+1)))
		}
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		b.WriteByte(byte(' ' + r.Intn(95)))
	case syntax.OpCapture:
		genFromRegex(r, re.Sub[0], b)
	case syntax.OpConcat:
		for _, s := range re.Sub {
			genFromRegex(r, s, b)
		}
	case syntax.OpAlternate:
		genFromRegex(r, re.Sub[r.Intn(len(re.Sub))], b)
	case syntax.OpStar, syntax.OpPlus, syntax.OpQuest, syntax.OpRepeat:
		lo, hi := re.Min, re.Max
		switch re.Op {
		case syntax.OpStar:
			lo, hi = 0, 3
		case syntax.OpPlus:
			lo, hi = 1, 3
		case syntax.OpQuest:
			lo, hi = 0, 1
		}
		if hi < 0 || hi > lo+3 {
			hi = lo + 3
		}
		for n := lo + r.Intn(hi-lo+1); n > 0; n-- {
			genFromRegex(r, re.Sub[0], b)
		}
	}
}

// regexInputs returns generated members of expr's language (parsed by
// Go with the given flags), mutated copies of them (a byte changed,
// inserted or cut, a prefix or suffix added) and the extra inputs.
func regexInputs(tb testing.TB, expr string, caseless bool, n int, extra ...string) []string {
	tb.Helper()
	flags := syntax.Perl
	if caseless {
		flags |= syntax.FoldCase
	}
	re, err := syntax.Parse(expr, flags)
	if err != nil {
		tb.Fatalf("go cannot parse %q: %v", expr, err)
	}
	r := rand.New(rand.NewSource(int64(len(expr))))
	const noise = "ab\n x;|&$'\"\\()-_.09Zz"
	in := append([]string{""}, extra...)
	for range n {
		var b strings.Builder
		genFromRegex(r, re, &b)
		s := b.String()
		in = append(in, s)
		m := []byte(s)
		switch k := r.Intn(5); {
		case k == 0 && len(m) > 0:
			m[r.Intn(len(m))] = noise[r.Intn(len(noise))]
		case k == 1:
			i := r.Intn(len(m) + 1)
			m = append(m[:i], append([]byte{noise[r.Intn(len(noise))]}, m[i:]...)...)
		case k == 2 && len(m) > 0:
			i := r.Intn(len(m))
			m = append(m[:i], m[i+1:]...)
		case k == 3:
			m = append([]byte(noise[r.Intn(len(noise)):]), m...)
		default:
			m = append(m, noise[:r.Intn(len(noise))]...)
		}
		in = append(in, string(m))
	}
	return in
}

// hsBlockDB builds a block database of exprs, all with id 0.
func hsBlockDB(tb testing.TB, flags hyperscan.CompileFlag, exprs ...string) hyperscan.BlockDatabase {
	tb.Helper()
	var pats hyperscan.Patterns
	for _, e := range exprs {
		pats = append(pats, hyperscan.NewPattern(e, flags|hyperscan.SingleMatch))
	}
	db, err := hyperscan.NewBlockDatabase(pats...)
	if err != nil {
		tb.Fatalf("build %q: %v", exprs, err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

func hsHits(tb testing.TB, db hyperscan.BlockDatabase, s *hyperscan.Scratch, data string) int {
	tb.Helper()
	n := 0
	err := db.Scan([]byte(data), s, func(uint, uint64, uint64, uint, any) error { n++; return nil }, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// TestSplitRegex: splitting as far as it goes gives the expected parts,
// and Hyperscan matches the parts (one id, single match) exactly where it
// matches the whole expression, on generated members of its language and
// near misses.
func TestSplitRegex(t *testing.T) {
	for _, tc := range []struct {
		expr  string
		flags hyperscan.CompileFlag
		parts int // 0: cannot be split
		extra []string
	}{
		{expr: `^(?:ab|cd)$`, parts: 2, extra: []string{"ab", "cd", "ab\n", "xab", "abcd"}},
		{expr: `(?i)(?:^|x)(?:cat|dog|bird)\b`, parts: 6, extra: []string{"CAT", "xdogs", "a bird", "xBird."}},
		{expr: `foo(?:bar|baz(?:qux|quux)?)end`, parts: 3, extra: []string{"foobazend", "foobazquuxend", "foobarquxend"}},
		{expr: `(a|b(c|d))?e`, parts: 3, extra: []string{"e", "bde", "bcd"}},
		{expr: `(?i:ab|CD)x|Y`, parts: 3, extra: []string{"ABx", "cdX", "y", "Y"}},
		{expr: `a\|b|c\(`, parts: 2, extra: []string{"a|b", "c(", "ab"}},
		{expr: `[(|)]x|y\)`, parts: 2, extra: []string{"|x", "(x", "y)", "y"}},
		{expr: `[]|]z|[^]|]w`, parts: 2, extra: []string{"]z", "|z", "aw", "]w"}},
		{expr: `(?:ab|c){1}d|(?:e|f){0,1}g`, parts: 4, extra: []string{"abd", "cd", "g", "eg", "efg"}},
		{expr: `(?P<n>ab|cd)e|(?<m>x|y)z`, parts: 4, extra: []string{"abe", "cde", "xz", "yz"}},
		{expr: `(?s)a.(?:b|c)`, parts: 2, extra: []string{"a\nb", "a\nc", "axc"}},
		{expr: `(?m)^(?:a|b)$`, flags: hyperscan.MultiLine, parts: 2, extra: []string{"x\na\ny", "b", "ab"}},
		{expr: `x(?:a{2}|b{1,3})y`, parts: 2, extra: []string{"xaay", "xbbby", "xbbbby"}},
		{expr: `\x28(?:\x7c|[\x5d\x5b])`, parts: 2, extra: []string{"(|", "([", "(]", "(a"}},
		{expr: `(?:a(?i)b|c)d`}, // (?i) carries into the next alternative
		{expr: `(?i)ab|cd`},     // ... and at the top level
		{expr: `(?:a|b)+c`},     // repeated
		{expr: `(?:a|b){2}c`},
		{expr: `(?:x(?:a|b))*y`},
		{expr: `abc`},
		{expr: `\Q(a|b)\E`},
		{expr: `(?x) a | b`},
		{expr: `(?#c|d)ab|e`},
		{expr: `(?=a|b)\w`},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			parts := splitRegex(tc.expr, func(e string) bool { return !hasSplittable(e) })
			if len(parts) != tc.parts {
				t.Fatalf("%d parts %q, want %d", len(parts), parts, tc.parts)
			}
			if parts == nil {
				return
			}
			whole := hsBlockDB(t, tc.flags, tc.expr)
			split := hsBlockDB(t, tc.flags, parts...)
			s, err := hyperscan.NewScratch(whole)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Free()
			if err := s.Realloc(split); err != nil {
				t.Fatal(err)
			}
			matched := 0
			for _, in := range regexInputs(t, tc.expr, false, 300, tc.extra...) {
				w, p := hsHits(t, whole, s, in), hsHits(t, split, s, in)
				if p > 1 {
					t.Errorf("%q: %d reports of the parts, want at most 1 (single match, one id)", in, p)
				}
				if w != p {
					t.Errorf("%q: whole %d, parts %d", in, w, p)
				}
				matched += w
			}
			if matched == 0 {
				t.Error("no input matched: the comparison proves nothing")
			}
		})
	}
}

// suffixFixture is CRS rule 932235, whole, on a block and a stream field.
var suffixFixture = sync.OnceValues(func() (*splitCase, error) {
	return compileFixture("crs-932235.re")
})

// splitFixture is a part of CRS rule 932230 (Unix commands with the CRS
// evasion classes between letters) that Hyperscan refuses as "Pattern is
// too large", compiled on a block and a stream field, with Go's regexp of
// the same expression.
var splitFixture = sync.OnceValues(func() (*splitCase, error) {
	return compileFixture("crs-932230-part.re")
})

// compileFixture compiles the regex of testdata/split/name, which
// Hyperscan must find too large, on http.args and payload.
func compileFixture(name string) (*splitCase, error) {
	raw, err := os.ReadFile(filepath.Join("testdata", "split", name))
	if err != nil {
		return nil, err
	}
	expr := strings.TrimSpace(string(raw))
	if db, err := hyperscan.NewBlockDatabase(hyperscan.NewPattern(expr, hyperscan.SingleMatch)); err == nil {
		db.Close()
		return nil, fmt.Errorf("%s builds whole: it no longer tests a pattern too large", name)
	}
	q := strings.ReplaceAll(expr, "'", "''")
	set, err := Parse("t.yaml", []byte("rules:\n"+
		"  - {id: 1, action: block, match: {field: http.args, regex: '"+q+"'}}\n"+
		"  - {id: 2, action: block, match: {field: payload, regex: '"+q+"'}}\n"))
	if err != nil {
		return nil, err
	}
	c, err := Compile(set)
	if err != nil {
		return nil, err
	}
	return &splitCase{expr: expr, c: c, re: regexp.MustCompile(expr)}, nil
}

type splitCase struct {
	expr string
	c    *Compiled
	re   *regexp.Regexp
}

// check compares the pattern's parts (its confirmer, over the whole
// input) with Go's regexp, then the compiled rules (prefilter and
// confirmation, ScanBlockPatterns and GroupStream) where the prefilter's hits are
// within the confirmation budget (past it later hits are dropped, as
// documented). Inputs are ASCII: Go folds case over Unicode, Hyperscan
// without utf8 over bytes.
func (sc *splitCase) check(tb testing.TB, s *hyperscan.Scratch, in []byte) bool {
	tb.Helper()
	want := sc.re.Match(in)
	for _, g := range sc.c.Groups {
		p := &g.Patterns[0]
		if got := p.Confirm(in); got != want {
			tb.Fatalf("parts of the pattern %q: hyperscan %v, go regexp %v", in, got, want)
		}
		if g.Stream {
			continue
		}
		hits := 0
		if err := g.Block.Scan(in, s, func(uint, uint64, uint64, uint, any) error { hits++; return nil }, nil); err != nil {
			tb.Fatal(err)
		}
		if hits > p.Attempts() {
			return want
		}
	}
	for _, f := range []struct {
		field Field
		chunk int
	}{{Field{Kind: FieldHTTPArgs}, 0}, {Field{Kind: FieldPayload}, 0}} {
		got := len(evalField(tb, sc.c, s, f.field, in, f.chunk)) > 0
		if got != want {
			tb.Errorf("%s (chunks of %d) %q: hyperscan %v, go regexp %v", f.field, f.chunk, in, got, want)
		}
	}
	return want
}

// overBudget reports whether the block prefilter of c hits in more often
// than its confirmation budget (past it hits are dropped, as documented).
func overBudget(tb testing.TB, c *Compiled, s *hyperscan.Scratch, in []byte) bool {
	tb.Helper()
	for _, g := range c.Groups {
		if g.Stream {
			continue
		}
		hits := 0
		if err := g.Block.Scan(in, s, func(uint, uint64, uint64, uint, any) error { hits++; return nil }, nil); err != nil {
			tb.Fatal(err)
		}
		if hits > g.Patterns[0].Attempts() {
			return true
		}
	}
	return false
}

// TestSplitTooLarge: a regex Hyperscan finds too large is a prefilter
// confirmed by a Hyperscan database of its parts (one for all the groups
// it is in, released with the last), and matches exactly what Go's
// regexp matches, in block and stream mode.
func TestSplitTooLarge(t *testing.T) {
	sc, err := splitFixture()
	if err != nil {
		t.Fatal(err)
	}
	var hc *hsConfirmer
	for _, g := range sc.c.Groups {
		p := &g.Patterns[0]
		c, ok := p.confirm.(*hsConfirmer)
		if !p.Prefilter || !ok || (hc != nil && c != hc) {
			t.Fatalf("%s: prefilter %v, confirmer %T (shared: %v)", g.Field, p.Prefilter, p.confirm, c == hc)
		}
		hc = c
	}
	if hc.refs != len(sc.c.Groups) {
		t.Errorf("confirmer held %d times, want %d", hc.refs, len(sc.c.Groups))
	}
	// Loaded from the cache, the patterns share the same database; closed,
	// the copy gives its holds back.
	raw, err := sc.c.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := UnmarshalCompiled(sc.c.Set, raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range loaded.Groups {
		if c, ok := g.Patterns[0].confirm.(*hsConfirmer); !ok || c != hc {
			t.Errorf("%s after the cache: confirmer %T", g.Field, g.Patterns[0].confirm)
		}
	}
	if hc.refs != 2*len(sc.c.Groups) {
		t.Errorf("confirmer held %d times with the cached copy, want %d", hc.refs, 2*len(sc.c.Groups))
	}
	loaded.Close()
	if hc.refs != len(sc.c.Groups) || splitConfirmers.live[hc.key] != hc {
		t.Errorf("after closing the copy: held %d times, live %v", hc.refs, splitConfirmers.live[hc.key] == hc)
	}
	s := scratch(t, sc.c)
	matched, inputs := 0, regexInputs(t, sc.expr, true, 400,
		"busybox ", "b'u's\"y\\box x", "command -v", "eval(", "env|", "watch x", "gcc -o", "aa-exec x", "arj x", "dbx x", "not a command")
	for _, in := range inputs {
		if sc.check(t, s, []byte(in)) {
			matched++
		}
	}
	if matched < len(inputs)/10 || matched > len(inputs)*9/10 {
		t.Errorf("%d of %d inputs matched: the inputs do not exercise both outcomes", matched, len(inputs))
	}
}

// FuzzSplitTooLarge compares the split pattern (and the suffix-filtered
// 932235) with Go's regexp of the whole on any ASCII input.
func FuzzSplitTooLarge(f *testing.F) {
	for _, s := range []string{"busybox x", "b'u's\"y\\box|", "command", "eval ", "x; gcc -c", "$(env)", "; adduser x"} {
		f.Add([]byte(s))
	}
	sc, err := splitFixture()
	if err != nil {
		f.Fatal(err)
	}
	suf, err := suffixFixture()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, c := range in {
			if c >= 0x80 {
				t.Skip("non-ASCII: Go folds case over Unicode")
			}
		}
		s, err := sc.c.NewScratch()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Free()
		sc.check(t, s, in)
		s2, err := suf.c.NewScratch()
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Free()
		want := suf.re.Match(in)
		for _, f := range []Field{{Kind: FieldHTTPArgs}, {Kind: FieldPayload}} {
			if got := len(evalField(t, suf.c, s2, f, in, 0)) > 0; got != want && !overBudget(t, suf.c, s2, in) {
				t.Errorf("932235 %s %q: hyperscan %v, go regexp %v", f, in, got, want)
			}
		}
	})
}

// TestSuffixFilter: CRS 932235 (a prefix-command list, separators, then a
// command list; too large for Hyperscan) is prefiltered by its suffix from
// the command list on, built exactly, so only values that hold a command
// are confirmed; the rule matches exactly what Go's regexp of the whole
// matches, in block and stream mode.
func TestSuffixFilter(t *testing.T) {
	sc, err := suffixFixture()
	if err != nil {
		t.Fatal(err)
	}
	expr, c := sc.expr, sc.c
	for _, g := range c.Groups {
		p := &g.Patterns[0]
		if !p.Prefilter || p.Flags&hyperscan.PrefilterMode != 0 || p.Expression() == expr || !strings.HasPrefix(p.Expression(), "(?i)(?:") || !strings.HasSuffix(expr, p.Expression()[len("(?i)"):]) {
			t.Fatalf("%s: prefilter %v, flags %v, expression %.40q", g.Field, p.Prefilter, p.Flags, p.Expression())
		}
	}
	re := sc.re
	s := scratch(t, c)
	inputs := regexInputs(t, expr, true, 500, "; cat /etc/passwd", "x=1 wget http://a", "select comfort mattress", "a|nc -e sh", "$(whoami)", "`id`", "; adduser bob", "${IFS}addgroup x", "; zypper in x", "HEAD /")
	matched := 0
	for _, in := range inputs {
		want := re.MatchString(in)
		for _, f := range []Field{{Kind: FieldHTTPArgs}, {Kind: FieldPayload}} {
			if got := len(evalField(t, c, s, f, []byte(in), 0)) > 0; got != want {
				t.Errorf("%s %q: hyperscan %v, go regexp %v", f, in, got, want)
			}
		}
		if want {
			matched++
		}
	}
	if matched < len(inputs)/10 || matched > len(inputs)*9/10 {
		t.Errorf("%d of %d inputs matched: the inputs do not exercise both outcomes", matched, len(inputs))
	}
	// The suffix is the filter: a value without a command is not confirmed.
	g := c.Groups[0]
	hits := 0
	if err := g.Block.Scan([]byte("session=0a1b2c3d; theme=dark; consent={\"ads\":false}"), s, func(uint, uint64, uint64, uint, any) error { hits++; return nil }, nil); err != nil {
		t.Fatal(err)
	}
	if hits != 0 {
		t.Errorf("the suffix filter hit %d times on a cookie header", hits)
	}
}
