package rules

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/deepwall/deepwall/internal/testutil"
	"github.com/deepwall/deepwall/rules/transform"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func mustParse(tb testing.TB, name, src string) *Set {
	tb.Helper()
	s, err := Parse(name, []byte(src))
	if err != nil {
		tb.Fatalf("Parse(%s): %v", name, err)
	}
	return s
}

func TestParseExample(t *testing.T) {
	s, err := ParseFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Rules) != 4 || s.ACLDefault != ActionAllow {
		t.Fatalf("got %d rules, default %v", len(s.Rules), s.ACLDefault)
	}
	r := s.Rules[2]
	want := &Match{
		Field:      Field{Kind: FieldHTTPArgs},
		Regex:      `union\s+(all\s+)?select`,
		Caseless:   true,
		Transforms: []transform.Transform{transform.URLDecode, transform.Lowercase},
	}
	got := *r.Match
	got.src = scalarSource{}
	got.at = nil
	if !reflect.DeepEqual(&got, want) {
		t.Errorf("rule 942100 match = %+v, want %+v", got, *want)
	}
	if r.ID != 942100 || r.Name != "SQL injection: UNION SELECT" || r.Action != ActionBlock || r.Severity != SeverityHigh || r.Category != "sqli" {
		t.Errorf("rule 942100 = %+v", r)
	}
	if r.Pos != (Position{"testdata/example.yaml", 13, 5}) {
		t.Errorf("rule 942100 at %v", r.Pos)
	}
	if r := s.Rules[0]; r.Proto != ProtoTCP || !reflect.DeepEqual(r.DstPorts, []PortRange{{23, 23}}) || !r.IsACL() {
		t.Errorf("rule 10 = %+v", r)
	}
	if r := s.Rules[1]; !reflect.DeepEqual(r.Dst, []netip.Prefix{netip.MustParsePrefix("198.18.0.2/32")}) || !reflect.DeepEqual(r.AppProtoNot, []string{"http"}) || r.IsACL() {
		t.Errorf("rule 20 = %+v", r)
	}
	if m := s.Rules[3].Match; m.Validate != "luhn" || m.Field.Kind != FieldHTTPResponseBody || s.Rules[3].Action != ActionAlert {
		t.Errorf("rule 5001 = %+v %+v", s.Rules[3], m)
	}
}

func TestParseEveryKey(t *testing.T) {
	s, err := ParseFile("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if s.ACLDefault != ActionBlock || len(s.Rules) != 11 {
		t.Fatalf("default %v, %d rules", s.ACLDefault, len(s.Rules))
	}
	byID := map[uint32]*Rule{}
	for _, r := range s.Rules {
		byID[r.ID] = r
	}
	r1 := byID[1]
	wantSrc := []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24"), netip.MustParsePrefix("2001:2::/48")}
	if r1.Action != ActionAllow || r1.Severity != SeverityLow || r1.Category != "acl" || r1.Proto != ProtoUDP ||
		!reflect.DeepEqual(r1.Src, wantSrc) ||
		!reflect.DeepEqual(r1.Dst, []netip.Prefix{netip.MustParsePrefix("198.19.0.53/32")}) ||
		!reflect.DeepEqual(r1.SrcPorts, []PortRange{{1024, 65535}}) ||
		!reflect.DeepEqual(r1.DstPorts, []PortRange{{53, 53}, {5353, 5353}, {8000, 8080}}) ||
		r1.Description != "Containers may resolve names through the cluster resolver only.\n" {
		t.Errorf("rule 1 = %+v", r1)
	}
	if r := byID[3]; !r.Disabled || r.Proto != ProtoGRE {
		t.Errorf("rule 3 = %+v", r)
	}
	if r := byID[4]; !reflect.DeepEqual(r.AppProtoNot, []string{"tls", "http2"}) || len(r.Dst) != 2 || !r.Layer7() {
		t.Errorf("rule 4 = %+v", r)
	}
	if m := byID[6].Match; !m.Caseless || !m.Multiline || !m.DotAll || !m.UTF8 || m.Field.Kind != FieldTLSSNI {
		t.Errorf("rule 6 match = %+v", m)
	}
	if m := byID[7].Match; m.Field != (Field{Kind: FieldHTTPHeader, Name: "x-admin-token"}) || !reflect.DeepEqual(m.Transforms, []transform.Transform{transform.URLDecode}) {
		t.Errorf("rule 7 match = %+v", m)
	}
	if m := byID[8].Match; m.Detect != "sqli" || m.Regex != "" {
		t.Errorf("rule 8 match = %+v", m)
	}
	if r := byID[16]; r == nil || r.Match.Field.Kind != FieldPayloadToClient {
		t.Errorf("rule 0x10 = %+v", r)
	}
	if got := s.Enabled(); len(got) != 10 {
		t.Errorf("Enabled() = %d rules, want 10", len(got))
	}
}

func TestParseInclude(t *testing.T) {
	s, err := ParseFile("testdata/include/main.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint32
	for _, r := range s.Rules {
		ids = append(ids, r.ID)
	}
	// Included rules come where the include: key stands, globs in name order.
	if !reflect.DeepEqual(ids, []uint32{1, 2, 3, 4}) {
		t.Errorf("rule order %v", ids)
	}
	if s.Rules[3].Pos.File != filepath.Join("testdata/include/sub", "../leaf.yaml") {
		t.Errorf("leaf rule at %v", s.Rules[3].Pos)
	}
	if len(s.Files) != 5 {
		t.Errorf("files %v", s.Files)
	}

	fsys := fstest.MapFS{
		"etc/main.yaml":    {Data: []byte("include: [teams/a.yaml]\nrules:\n  - {id: 1, action: block, proto: tcp}\n")},
		"etc/teams/a.yaml": {Data: []byte("rules:\n  - {id: 2, action: alert, match: {field: dns.query, regex: 'x\\.example$'}}\n")},
	}
	s, err = ParseFS(fsys, "etc/main.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Rules) != 2 || s.Rules[0].ID != 2 {
		t.Errorf("ParseFS rules %+v", s.Rules)
	}
}

func TestParseIncludeLimits(t *testing.T) {
	tests := []struct {
		file, want string
	}{
		{"testdata/cycle/a.yaml", "testdata/cycle/b.yaml:1:10: include cycle: a.yaml -> b.yaml -> a.yaml"},
		{"testdata/deep/d0.yaml", fmt.Sprintf("include \"d9.yaml\": includes nest deeper than %d files", MaxIncludeDepth)},
	}
	for _, tc := range tests {
		_, err := ParseFile(tc.file)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseFile(%s) = %v, want %q", tc.file, err, tc.want)
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseFile(%s) error is not ErrInvalid", tc.file)
		}
	}
	if _, err := ParseFile("testdata/nope.yaml"); err == nil || errors.Is(err, ErrInvalid) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// TestParseErrors checks one error per snippet: its exact position and
// message.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"unknown key", "rules:\n  - id: 7\n    action: block\n    dst_prot: 80\n", `t.yaml:4:5: rule 7: unknown key "dst_prot" in a rule; did you mean "dst_port"?`},
		{"key under match", "rules:\n  - id: 7\n    action: block\n    regex: x\n", `t.yaml:4:5: rule 7: unknown key "regex" in a rule; "regex" belongs under match:`},
		{"rule key in match", "rules:\n  - id: 7\n    action: block\n    match: {field: http.uri, regex: x, action: alert}\n", `t.yaml:4:40: rule 7: unknown key "action" in match:; "action" belongs to the rule, not under match:`},
		{"top key", "rulez: []\n", `t.yaml:1:1: unknown key "rulez" in the top level; did you mean "rules"?`},
		{"duplicate key", "rules:\n  - id: 7\n    action: block\n    action: alert\n", `t.yaml:4:5: rule 7: duplicate key "action" (first at line 3)`},
		{"no id", "rules:\n  - action: block\n", `t.yaml:2:5: rule #1: rule has no id:`},
		{"no action", "rules:\n  - id: 3\n", `t.yaml:2:5: rule 3: rule has no action: (block, alert or allow)`},
		{"id zero", "rules:\n  - id: 0\n    action: block\n", `t.yaml:2:9: rule #1: id 0 is out of range: ids are 1 to 4294967295 (0 means no rule)`},
		{"id string", "rules:\n  - id: abc\n    action: block\n", `t.yaml:2:9: rule #1: id must be a whole number from 1 to 4294967295`},
		{"id too big", "rules:\n  - id: 4294967296\n    action: block\n", `t.yaml:2:9: rule #1: id 4294967296 is out of range`},
		{"duplicate id", "rules:\n  - id: 5\n    action: block\n  - id: 5\n    action: alert\n", `t.yaml:4:9: rule 5: duplicate id 5 (first used at t.yaml:2:9)`},
		{"action", "rules:\n  - id: 1\n    action: deny\n", `t.yaml:3:13: rule 1: action must be block, alert or allow, not "deny"`},
		{"severity", "rules:\n  - id: 1\n    action: block\n    severity: urgent\n", `t.yaml:4:15: rule 1: severity must be low, medium, high or critical, not "urgent"`},
		{"category", "rules:\n  - id: 1\n    action: block\n    category: SQL Injection\n", `t.yaml:4:15: rule 1: category "SQL Injection" must be 1-32 lower-case letters, digits, '_' or '-'`},
		{"enabled", "rules:\n  - id: 1\n    action: block\n    enabled: no\n", `t.yaml:4:14: rule 1: enabled must be true or false`},
		{"proto", "rules:\n  - id: 1\n    action: block\n    proto: tpc\n", `t.yaml:4:12: rule 1: unknown proto "tpc" (did you mean "tcp"?)`},
		{"cidr", "rules:\n  - id: 1\n    action: block\n    dst: 198.18.0.0/33\n", `t.yaml:4:10: rule 1: dst: "198.18.0.0/33" is not a valid CIDR`},
		{"host bits", "rules:\n  - id: 1\n    action: block\n    src: [198.18.0.1/16]\n", `t.yaml:4:11: rule 1: src: "198.18.0.1/16" has host bits set; did you mean 198.18.0.0/16?`},
		{"bad ip", "rules:\n  - id: 1\n    action: block\n    src: [198.18.0.1, 2001::g]\n", `t.yaml:4:23: rule 1: src: "2001::g" is not an IP address or CIDR`},
		{"zone", "rules:\n  - id: 1\n    action: block\n    src: fe80::1%eth0\n", `t.yaml:4:10: rule 1: src: "fe80::1%eth0" has a zone; zones are not supported`},
		{"empty list", "rules:\n  - id: 1\n    action: block\n    dst: []\n", `t.yaml:4:10: rule 1: dst is an empty list; leave the key out to match anything`},
		{"port range reversed", "rules:\n  - id: 1\n    action: block\n    dst_port: 9000-8000\n", `t.yaml:4:15: rule 1: dst_port: range "9000-8000" is empty: 9000 is above 8000`},
		{"port too big", "rules:\n  - id: 1\n    action: block\n    src_port: [80, 65536]\n", `t.yaml:4:20: rule 1: src_port: "65536": port 65536 is above 65535`},
		{"port range too big", "rules:\n  - id: 1\n    action: block\n    dst_port: \"1-70000\"\n", `t.yaml:4:15: rule 1: dst_port: "1-70000": port 70000 is above 65535`},
		{"port word", "rules:\n  - id: 1\n    action: block\n    dst_port: http\n", `t.yaml:4:15: rule 1: dst_port: "http": "http" is not a port number`},
		{"app proto", "rules:\n  - id: 1\n    action: block\n    app_proto: [htpp]\n", `t.yaml:4:17: rule 1: unknown application protocol "htpp" in app_proto (did you mean "http"?)`},
		{"app proto twice", "rules:\n  - id: 1\n    action: block\n    app_proto: [dns, dns]\n", `t.yaml:4:22: rule 1: app_proto lists "dns" twice`},
		{"field", "rules:\n  - id: 1\n    action: block\n    match: {field: http.bodyy, regex: x}\n", `t.yaml:4:20: rule 1: unknown field "http.bodyy" (did you mean "http.body"?)`},
		{"header name", "rules:\n  - id: 1\n    action: block\n    match: {field: \"http.header.a b\", regex: x}\n", `t.yaml:4:20: rule 1: invalid header name "a b" in field "http.header.a b"`},
		{"no field", "rules:\n  - id: 1\n    action: block\n    match: {regex: x}\n", `t.yaml:4:12: rule 1: match has no field:`},
		{"match not map", "rules:\n  - id: 1\n    action: block\n    match: x\n", `t.yaml:4:12: rule 1: match must be a mapping with field: and regex: (or phrases:, detect:, count:), or a list of them`},
		{"flag", "rules:\n  - id: 1\n    action: block\n    match: {field: http.uri, regex: x, flags: [nocase]}\n", `t.yaml:4:48: rule 1: unknown flag "nocase"; known: caseless, dotall, multiline, utf8`},
		{"transform", "rules:\n  - id: 1\n    action: block\n    match: {field: http.uri, regex: x, transforms: [urldecode]}\n", `t.yaml:4:53: rule 1: unknown transform "urldecode" (did you mean "url_decode"?)`},
		{"too many transforms", "rules:\n  - id: 1\n    action: block\n    match: {field: http.uri, regex: x, transforms: [lowercase, lowercase, lowercase, lowercase, lowercase, lowercase, lowercase, lowercase, lowercase]}\n", `t.yaml:4:52: rule 1: more than 8 transforms in one chain`},
		{"validator", "rules:\n  - id: 1\n    action: alert\n    match: {field: http.body, regex: x, validate: luhnn}\n", `t.yaml:4:51: rule 1: unknown validator "luhnn" (did you mean "luhn"?)`},
		{"detector", "rules:\n  - id: 1\n    action: block\n    match: {field: http.args, detect: sqlinjection}\n", `t.yaml:4:39: rule 1: unknown detector "sqlinjection": detect is one of sqli, xss, invalid_utf8, invalid_url_encoding`},
		{"acl default", "acl_default: deny\n", `t.yaml:1:14: acl_default must be allow or block, not "deny"`},
		{"rules not list", "rules: {id: 1}\n", `t.yaml:1:8: rules: must be a list of rules (each starting with '- ')`},
		{"rule not map", "rules:\n  - 5\n", `t.yaml:2:5: rule #1: a rule must be a mapping of keys (id:, action:, ...)`},
		{"top not map", "[1, 2]\n", `t.yaml:1:1: the top level of a rule file must be a mapping with rules:, include: and acl_default:`},
		{"yaml syntax", "rules:\n  - id: 1\n    action: block\n   proto: tcp\n", `t.yaml:4:4: yaml: did not find expected '-' indicator`},
		{"two documents", "rules: []\n---\nrules: []\n", `t.yaml:2:1: a rule file holds one YAML document; remove the second '---'`},
		{"merge key", "rules:\n  - id: 1\n    <<: {action: block}\n", `t.yaml:3:5: rule 1: merge keys (<<) are not supported`},
		{"name too long", "rules:\n  - id: 1\n    action: block\n    name: " + strings.Repeat("x", MaxNameLen+1) + "\n", `t.yaml:4:11: rule 1: name is longer than 256 bytes`},
		// name: and name_regex: (more in testdata/bad/names.yaml).
		{"name empty", "rules:\n  - id: 1\n    action: block\n    match: {field: http.arg, regex: x, name: ''}\n", `t.yaml:4:46: rule 1: name: an empty name selects nothing`},
		{"name entry too long", "rules:\n  - id: 1\n    action: block\n    match: {field: http.arg, regex: x, name: " + strings.Repeat("n", MaxValueNameLen+1) + "}\n", `t.yaml:4:46: rule 1: name: an entry is longer than 256 bytes`},
		{"name twice", "rules:\n  - id: 1\n    action: block\n    match: {field: http.cookie, regex: x, name: [sid, SID]}\n", `t.yaml:4:55: rule 1: name: "SID" is listed twice (names are case-insensitive)`},
		{"name too many", "rules:\n  - id: 1\n    action: block\n    match: {field: http.arg, regex: x, name: [" + strings.Repeat("a, ", MaxNames) + "b]}\n", `t.yaml:4:46: rule 1: name: lists more than 64 names`},
		{"name_regex bad", "rules:\n  - id: 1\n    action: block\n    match: {field: http.arg, regex: x, name_regex: 'a('}\n", "t.yaml:4:52: rule 1: name_regex: missing closing ): `a(`"},
		{"name_regex too long", "rules:\n  - id: 1\n    action: block\n    match: {field: http.arg, regex: x, name_regex: " + strings.Repeat("r", MaxValueNameLen+1) + "}\n", `t.yaml:4:52: rule 1: name_regex is longer than 256 bytes`},
		{"name on unnamed field", "rules:\n  - id: 1\n    action: block\n    match: {fields: [http.arg, http.body], regex: x, name: id}\n", `t.yaml:4:60: rule 1: name: selects values by their name, which only http.arg, http.cookie, http.header_value, http.file, http.response_header_value have, not http.body`},
		{"name_regex on unnamed field", "rules:\n  - id: 1\n    action: block\n    match: {field: http.arg_name, regex: x, name_regex: id}\n", `t.yaml:4:57: rule 1: name_regex: selects values by their name, which only http.arg, http.cookie, http.header_value, http.file, http.response_header_value have, not http.arg_name`},
		{"name with count", "rules:\n  - id: 1\n    action: block\n    match: {field: http.arg, count: '> 3', name: id}\n", `t.yaml:4:50: rule 1: name: does not combine with count: (counting the values of one name is not supported)`},
		{"name_regex with count", "rules:\n  - id: 1\n    action: block\n    match: {field: http.cookie, count: '> 3', name_regex: id}\n", `t.yaml:4:59: rule 1: name_regex: does not combine with count:`},
		{"name mapping", "rules:\n  - id: 1\n    action: block\n    match: {field: http.arg, regex: x, name: {a: b}}\n", `t.yaml:4:46: rule 1: name must be a value or a list of values, not a mapping`},
		// Contradictions.
		{"app proto both", "rules:\n  - id: 1\n    action: block\n    app_proto: [http, tls]\n    app_proto_not: [tls]\n", `t.yaml:5:20: rule 1: app_proto and app_proto_not both list "tls", so the rule can never match`},
		{"field vs app proto", "rules:\n  - id: 1\n    action: block\n    app_proto: dns\n    match: {field: http.uri, regex: x}\n", `t.yaml:4:16: rule 1: field http.uri belongs to http, but app_proto is dns, so the rule can never match`},
		{"field vs app proto not", "rules:\n  - id: 1\n    action: block\n    app_proto_not: [http, http2]\n    match: {field: http.uri, regex: x}\n", `t.yaml:4:20: rule 1: field http.uri belongs to http, but app_proto_not excludes http, so the rule can never match`},
		{"field vs proto", "rules:\n  - id: 1\n    action: block\n    proto: udp\n    match: {field: tls.sni, regex: x}\n", `t.yaml:4:12: rule 1: field tls.sni needs tcp, but proto is udp`},
		{"app vs proto", "rules:\n  - id: 1\n    action: block\n    proto: udp\n    app_proto: ssh\n", `t.yaml:5:16: rule 1: app_proto ssh runs over tcp, but proto is udp`},
		{"ports vs proto", "rules:\n  - id: 1\n    action: block\n    proto: icmp\n    dst_port: 80\n", `t.yaml:4:12: rule 1: src_port/dst_port need proto tcp, udp or sctp, but proto is icmp`},
		{"families", "rules:\n  - id: 1\n    action: block\n    src: 198.18.0.1\n    dst: 2001:2::1\n", `t.yaml:5:10: rule 1: src and dst are of different IP families (IPv4 and IPv6), so the rule can never match`},
		{"stream transform", "rules:\n  - id: 1\n    action: alert\n    match: {field: http.response_body, regex: x, transforms: [trim]}\n", `t.yaml:4:62: rule 1: transform trim needs the whole value and cannot run on stream field http.response_body`},
		{"detect field", "rules:\n  - id: 1\n    action: block\n    match: {field: dns.query, detect: xss}\n", `t.yaml:4:20: rule 1: detect: xss works on request fields other than http.method (http.uri, http.args, http.arg, http.header.<name>, http.body, ...), not dns.query`},
		{"validate without regex", "rules:\n  - id: 1\n    action: alert\n    match: {field: http.body, detect: sqli, validate: ssn}\n", `t.yaml:4:55: rule 1: validate needs a regex: whose matches it checks`},
		{"regex and detect", "rules:\n  - id: 1\n    action: block\n    match: {field: http.args, regex: x, detect: sqli}\n", `t.yaml:4:49: rule 1: match has more than one of regex:, phrases:, detect: and count:; use one per condition (a list of conditions for several)`},
		{"neither", "rules:\n  - id: 1\n    action: block\n    match: {field: http.args}\n", `t.yaml:4:12: rule 1: match needs regex:, phrases:, detect: or count:`},
		// Regexes: the column points into the pattern.
		{"regex plain", "rules:\n  - id: 1\n    action: block\n    match:\n      field: http.args\n      regex: union(select\n", `t.yaml:6:19: rule 1: regex: hyperscan: Missing close parenthesis for group started at index 5`},
		{"regex single quoted", "rules:\n  - id: 1\n    action: block\n    match:\n      field: http.args\n      regex: 'it''s [z-a]'\n", `t.yaml:6:24: rule 1: regex: hyperscan: Range out of order in character class at index 8`},
		{"regex double quoted", "rules:\n  - id: 1\n    action: block\n    match:\n      field: http.args\n      regex: \"\\\\d\\tx{3,2}\"\n", `t.yaml:6:21: rule 1: regex: hyperscan: Invalid repeat at index 4`},
		{"regex literal block", "rules:\n  - id: 1\n    action: block\n    match:\n      field: http.args\n      regex: |\n        abc\n        d(ef\n", `t.yaml:8:10: rule 1: regex: hyperscan: Missing close parenthesis for group started at index 5`},
		{"regex empty match", "rules:\n  - id: 1\n    action: block\n    match: {field: http.args, regex: 'a*'}\n", `t.yaml:4:38: rule 1: regex: regex can match the empty string, so it would hit on every input`},
		{"regex empty", "rules:\n  - id: 1\n    action: block\n    match: {field: http.args, regex: ''}\n", `t.yaml:4:38: rule 1: regex is empty`},
		{"regex unconfirmable", "rules:\n  - id: 1\n    action: block\n    match: {field: http.args, regex: '(a)\\1++'}\n", `t.yaml:4:42: rule 1: regex: hyperscan: Possessive quantifiers are not supported; prefilter mode would need a confirming regex, but neither Go's regexp nor regexp2 accept it`},
		{"regex nul", "rules:\n  - id: 1\n    action: block\n    match: {field: http.args, regex: \"ab\\0c\"}\n", `t.yaml:4:41: rule 1: regex: regex contains a NUL byte; write \x00 (at offset 2)`},
		{"regex wide hex", "rules:\n  - id: 1\n    action: block\n    match: {field: http.args, regex: '\\x{263a}'}\n", `t.yaml:4:39: rule 1: regex: hyperscan: Hexadecimal value is greater than \xFF at index 0`},
		{"regex go position", "rules:\n  - id: 1\n    action: block\n    match: {field: http.args, regex: 'ab\\R'}\n", `t.yaml:4:41: rule 1: regex: hyperscan: \R at index 2 not supported`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse("t.yaml", []byte(tc.src))
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			if s != nil {
				t.Error("a set came back with the errors")
			}
			wantError(t, err, tc.want)
		})
	}
}

// wantError checks that err is an ErrorList with an error starting with
// want.
func wantError(tb testing.TB, err error, want string) {
	tb.Helper()
	var list ErrorList
	if !errors.As(err, &list) || !errors.Is(err, ErrInvalid) {
		tb.Fatalf("error %T is not an ErrorList", err)
	}
	for _, e := range list {
		if strings.HasPrefix(e.Error(), want) {
			return
		}
	}
	tb.Errorf("errors:\n%v\nwant one starting with:\n%s", err, want)
}

func TestParseValidSnippets(t *testing.T) {
	tests := []struct {
		name, src string
		check     func(*Set) bool
	}{
		{"empty file", "", func(s *Set) bool { return len(s.Rules) == 0 }},
		{"null rules", "rules:\n", func(s *Set) bool { return len(s.Rules) == 0 }},
		{"hex id", "rules:\n  - {id: 0x1F, action: block, proto: tcp}\n", func(s *Set) bool { return s.Rules[0].ID == 31 }},
		{"underscore id", "rules:\n  - {id: 942_100, action: block, proto: tcp}\n", func(s *Set) bool { return s.Rules[0].ID == 942100 }},
		{"proto number", "rules:\n  - {id: 1, action: block, proto: 132}\n", func(s *Set) bool { return s.Rules[0].Proto == ProtoSCTP }},
		{"proto any", "rules:\n  - {id: 1, action: block, proto: any, dst_port: 80}\n", func(s *Set) bool { return s.Rules[0].Proto == 0 }},
		{"mapped v4", "rules:\n  - {id: 1, action: block, dst: '::ffff:198.18.0.0/112'}\n", func(s *Set) bool {
			return s.Rules[0].Dst[0] == netip.MustParsePrefix("198.18.0.0/16")
		}},
		{"single port string", "rules:\n  - {id: 1, action: block, proto: tcp, dst_port: '443'}\n", func(s *Set) bool { return s.Rules[0].DstPorts[0] == PortRange{443, 443} }},
		{"anchors", "x: &web [198.18.0.0/24]\n", nil},
		{"alias list", "rules:\n  - {id: 1, action: block, dst: &web [198.18.0.0/24]}\n  - {id: 2, action: block, src: *web}\n", func(s *Set) bool { return len(s.Rules[1].Src) == 1 }},
		{"header case", "rules:\n  - {id: 1, action: alert, match: {field: http.header.User-Agent, regex: x}}\n", func(s *Set) bool { return s.Rules[0].Match.Field.Name == "user-agent" }},
		{"backreference prefilter", "rules:\n  - {id: 1, action: block, match: {field: http.args, regex: '(\\w+)=\\1'}}\n", func(s *Set) bool { return true }},
		{"lookahead prefilter", "rules:\n  - {id: 1, action: block, match: {field: http.args, regex: 'foo(?=bar)'}}\n", func(s *Set) bool { return true }},
		{"names", "rules:\n  - {id: 1, action: block, match: {field: http.arg, regex: x, name: [_Charset_, id], name_regex: '^q\\d$'}}\n", func(s *Set) bool {
			m := s.Rules[0].Match
			return slices.Equal(m.Names, []string{"_charset_", "id"}) && m.NameRegex == `^q\d$` && m.Selects([]byte("ID")) && m.Selects([]byte("q1")) && !m.Selects([]byte("q"))
		}},
		{"alert l4", "rules:\n  - {id: 1, action: alert, proto: tcp, dst_port: 22}\n", func(s *Set) bool { return !s.Rules[0].IsACL() && !s.Rules[0].Layer7() }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse("t.yaml", []byte(tc.src))
			if tc.check == nil {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(s) {
				t.Errorf("unexpected set %+v", s.Rules)
			}
		})
	}
}

func TestParseErrorBound(t *testing.T) {
	var b strings.Builder
	b.WriteString("rules:\n")
	for i := 0; i < 3*MaxErrors; i++ {
		fmt.Fprintf(&b, "  - {id: %d, action: nope}\n", i+1)
	}
	_, err := Parse("many.yaml", []byte(b.String()))
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("error %v", err)
	}
	if len(list) != MaxErrors+1 || !strings.Contains(list[len(list)-1].Msg, "too many errors") {
		t.Errorf("%d errors, last %v", len(list), list[len(list)-1])
	}
}

// TestGoldenErrors compares the errors of each file in testdata/bad with
// its .golden file (go test -run TestGoldenErrors -update rewrites them).
func TestGoldenErrors(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad rule files: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := ParseFile(f)
			if err == nil {
				t.Fatal("no error")
			}
			got := err.Error() + "\n"
			testutil.Golden(t, strings.TrimSuffix(f, ".yaml")+".golden", []byte(got), *update)
		})
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		d    int
	}{
		{"", "", 0}, {"abc", "abc", 0}, {"dst_prot", "dst_port", 1}, {"acton", "action", 1},
		{"actoin", "action", 1}, {"kitten", "sitting", 3}, {"", "abc", 3},
	}
	for _, tc := range tests {
		if d := editDistance(tc.a, tc.b); d != tc.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, d, tc.d)
		}
	}
}

// FuzzParse feeds arbitrary YAML to the loader: it must not panic, must
// return either a set or an ErrorList with positions, and a set must
// survive a round trip through its canonical form.
func TestParseCompare(t *testing.T) {
	s, err := ParseFile("testdata/compare.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := s.Rule(943110).Conds[1].Compare
	if c == nil || c.Group != 1 || c.Op != CompareEndsWith || c.With != (Field{Kind: FieldHTTPHeader, Name: "host"}) || !c.Not || c.WithGroup != 0 {
		t.Fatalf("943110 compare = %+v", c)
	}
	if c := s.Rule(920190).Match.Compare; c == nil || c.Group != 2 || c.Op != CompareLT || c.WithGroup != 1 || c.With.Kind != 0 {
		t.Fatalf("920190 compare = %+v", c)
	}
	if fs := s.Rule(944100).Match.AllFields(); len(fs) != 3 || fs[0].Kind != FieldHTTPPlainBody || fs[1].Kind != FieldHTTPXMLText || fs[2].Kind != FieldHTTPXMLAttr {
		t.Fatalf("944100 fields = %v", fs)
	}
	canon := s.Canonical()
	for _, want := range []string{"compare: {group: 1, op: ends_with, field: http.header.host, not: true}", "compare: {group: 2, op: lt, with_group: 1}"} {
		if !strings.Contains(string(canon), want) {
			t.Errorf("canonical form lacks %q:\n%s", want, canon)
		}
	}
	// Capture and comparison, as the engine evaluates them.
	m := s.Rule(943110).Conds[1]
	tests := []struct {
		referer, host string
		holds, match  bool
	}{
		{"http://www.attackersite.com/test", "localhost", true, true},
		{"https://localhost/", "localhost", false, true},
		{"https://app.example.com/x", "example.com", false, true}, // ends with the host
		{"https://example.com.evil/x", "example.com", true, true},
		{"ftp:/nothing", "localhost", false, false},
	}
	for _, tc := range tests {
		capture, _, ok := m.Compare.Capture(m, []byte(tc.referer))
		if ok != tc.match {
			t.Errorf("Capture(%q) matched = %v, want %v", tc.referer, ok, tc.match)
			continue
		}
		if ok && m.Compare.Holds(capture, []byte(tc.host)) != tc.holds {
			t.Errorf("%q vs Host %q: holds = %v, want %v", tc.referer, tc.host, !tc.holds, tc.holds)
		}
	}
	r := s.Rule(920190).Match
	for _, tc := range []struct {
		v     string
		holds bool
	}{{"bytes=0-,5-0,5-1", true}, {"bytes=0-100", false}, {"bytes=10-9", true}, {"bytes=10-10", false}} {
		capture, with, ok := r.Compare.Capture(r, []byte(tc.v))
		if !ok || r.Compare.Holds(capture, with) != tc.holds {
			t.Errorf("920190 on %q: ok %v holds %v, want %v", tc.v, ok, r.Compare.Holds(capture, with), tc.holds)
		}
	}
}

func TestParseCompareErrors(t *testing.T) {
	const head = "rules:\n  - id: 1\n    action: alert\n    match:\n"
	tests := []struct {
		name, match, want string
	}{
		{"no regex", "      field: http.header.referer\n      phrases: [x]\n      compare: {group: 0, op: equals, field: http.header.host}\n",
			"t.yaml:7:16: rule 1: compare needs a regex: whose capture it compares"},
		{"unknown op", "      field: http.header.referer\n      regex: '(a)'\n      compare: {group: 1, op: endswith, field: http.header.host}\n",
			`t.yaml:7:31: rule 1: compare op: unknown comparison "endswith" (did you mean "ends_with"?)`},
		{"group too high", "      field: http.header.referer\n      regex: '(a)'\n      compare: {group: 2, op: equals, field: http.header.host}\n",
			"t.yaml:7:24: rule 1: compare: group 2: the regex has 1 capturing groups"},
		{"group range", "      field: http.header.referer\n      regex: '(a)'\n      compare: {group: 100, op: equals, field: http.header.host}\n",
			"t.yaml:7:24: rule 1: compare group 100 is out of range 0 to 99"},
		{"body field", "      field: http.arg\n      regex: '(a)'\n      compare: {group: 1, op: equals, field: http.header.host}\n",
			"t.yaml:5:14: rule 1: compare: with a field captures from request-head fields (headers, cookies, the request line and its parts), not http.arg"},
		{"stream field", "      field: http.body\n      regex: '(a)(b)'\n      compare: {group: 1, op: equals, with_group: 2}\n",
			"t.yaml:5:14: rule 1: compare: needs whole values; it cannot apply to stream fields (http.body)"},
		{"with field", "      field: http.header.referer\n      regex: '(a)'\n      compare: {group: 1, op: equals, field: http.arg}\n",
			"t.yaml:7:46: rule 1: compare field http.arg: compare: compares with one of http.method"},
		{"both", "      field: http.header.referer\n      regex: '(a)(b)'\n      compare: {group: 1, op: lt, field: http.uri, with_group: 2}\n",
			"t.yaml:7:64: rule 1: compare has both field: and with_group:; use one"},
		{"neither", "      field: http.header.referer\n      regex: '(a)'\n      compare: {group: 1, op: lt}\n",
			"t.yaml:7:16: rule 1: compare has no field: (or with_group:)"},
		{"no op", "      field: http.header.referer\n      regex: '(a)'\n      compare: {group: 1, field: http.uri}\n",
			"t.yaml:7:16: rule 1: compare has no op:"},
		{"not and compare", "      field: http.header.referer\n      regex: '(a)'\n      not: true\n      compare: {group: 1, op: equals, field: http.uri}\n",
			"t.yaml:7:12: rule 1: not: and compare: do not combine"},
		{"unknown key", "      field: http.header.referer\n      regex: '(a)'\n      compare: {group: 1, op: equals, feild: http.uri}\n",
			`t.yaml:7:39: rule 1: unknown key "feild" in compare:; did you mean "field"?`},
		{"not a map", "      field: http.header.referer\n      regex: '(a)'\n      compare: [1]\n",
			"t.yaml:7:16: rule 1: compare must be a mapping"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(head+tc.match))
			if err == nil {
				t.Fatal("no error")
			}
			for _, e := range strings.Split(err.Error(), "\n") {
				if strings.HasPrefix(e, tc.want) {
					return
				}
			}
			t.Errorf("errors:\n%v\nwant one starting with:\n%s", err, tc.want)
		})
	}
}

func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.yaml")
	bad, _ := filepath.Glob("testdata/bad/*.yaml")
	// The default pack is left out: minimising a 20 KB input whose every
	// run asks Hyperscan about 70 regexes stalls the fuzzer.
	for _, p := range append(seeds, bad...) {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	// Includes resolve in a small in-memory tree, never on the machine.
	fsys := fstest.MapFS{"inc.yaml": {Data: []byte("rules:\n  - {id: 77, action: block, proto: tcp}\n")}}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 8192 {
			return
		}
		fsys["fuzz.yaml"] = &fstest.MapFile{Data: data}
		s, err := ParseFS(fsys, "fuzz.yaml")
		if err != nil {
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("error without positions: %v", err)
			}
			for _, e := range list {
				if e.Pos.File == "" || e.Pos.Line < 1 || e.Pos.Column < 1 {
					t.Fatalf("error without a position: %#v", e)
				}
			}
			return
		}
		canon := s.Canonical()
		s2, err := Parse("canon.yaml", canon)
		if err != nil {
			t.Fatalf("canonical form does not parse: %v\n%s", err, canon)
		}
		if c2 := s2.Canonical(); string(c2) != string(canon) {
			t.Fatalf("canonical form not stable:\n%s\n---\n%s", canon, c2)
		}
	})
}

// TestHTTPFieldsOnHTTP2: HTTP/2 streams fill the http.* fields, so a rule
// may name them with app_proto http2; the grpc.* fields are HTTP/2's.
func TestHTTPFieldsOnHTTP2(t *testing.T) {
	for _, src := range []string{
		"rules:\n  - id: 1\n    action: block\n    app_proto: http2\n    match: {field: http.uri, regex: x}\n",
		"rules:\n  - id: 1\n    action: block\n    app_proto_not: http\n    match: {field: http.uri, regex: x}\n",
		"rules:\n  - id: 1\n    action: block\n    match: {field: grpc.string, regex: x}\n",
	} {
		if _, err := Parse("t.yaml", []byte(src)); err != nil {
			t.Errorf("%q: %v", src, err)
		}
	}
	if _, err := Parse("t.yaml", []byte("rules:\n  - id: 1\n    action: block\n    app_proto: http\n    match: {field: grpc.method, regex: x}\n")); err == nil {
		t.Error("grpc.method with app_proto http: no error")
	}
}
