package crs

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/deepwall/deepwall/internal/ruletest"
	"github.com/deepwall/deepwall/rules"
)

// foldCase is a SecLang source, a rule of it, the field values given to
// it and whether the rule hits them.
type foldCase struct {
	name string
	src  string
	id   uint32
	vals map[string][]string
	want bool
}

// evalSecLang imports src, compiles it at paranoia level 4 and reports
// whether rule id hits on the given field values.
func evalSecLang(tb testing.TB, src string, id uint32, vals map[string][]string) bool {
	tb.Helper()
	res, err := Import(fstest.MapFS{"t.conf": &fstest.MapFile{Data: []byte(src)}}, Options{})
	if err != nil {
		tb.Fatal(err)
	}
	for _, n := range res.Untranslated {
		if n.ID == id {
			tb.Fatalf("rule %d untranslated: %s\n%s", id, n.Reason, res.YAML)
		}
	}
	set, err := rules.Parse("t.yaml", res.YAML)
	if err != nil {
		tb.Fatalf("%v\n%s", err, res.YAML)
	}
	set.ParanoiaLevel = rules.MaxParanoia
	c, err := rules.Compile(set)
	if err != nil {
		tb.Fatalf("%v\n%s", err, res.YAML)
	}
	tb.Cleanup(func() { c.Close() })
	s, err := c.NewScratch()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Free() })
	v := ruletest.Values{}
	for name, vs := range vals {
		f, err := rules.ParseField(name)
		if err != nil {
			tb.Fatal(err)
		}
		for _, x := range vs {
			v[f] = append(v[f], ruletest.Value{Data: []byte(x)})
		}
	}
	hits, err := ruletest.EvalValues(c, v, s)
	if err != nil {
		tb.Fatal(err)
	}
	for _, r := range hits {
		if r.ID == id {
			return true
		}
	}
	return false
}

const score = `setvar:'tx.inbound_anomaly_score_pl1=+%{tx.critical_anomaly_score}'`

// TestCaptureFold: comparisons on a captured tx variable (@within,
// !@within, !@rx), in a chain and across rules, hold exactly when CRS's
// would.
func TestCaptureFold(t *testing.T) {
	defaults := `SecAction "id:900,pass,nolog,setvar:'tx.allowed_types=|application/json| |text/xml|',setvar:'tx.bad_ext=.bak/ .conf/',setvar:'tx.bad_headers=/proxy/ /x-evil/'"` + "\n"
	ctype := defaults + `SecRule REQUEST_HEADERS:Content-Type "@rx ^[^;\s]+" "id:1,block,capture,t:none,setvar:'tx.content_type=|%{tx.0}|',chain"
  SecRule TX:content_type "!@within %{tx.allowed_types}" "t:lowercase,` + score + `"
`
	ext := defaults + `SecRule REQUEST_BASENAME "@rx \.([^.]+)$" "id:2,block,capture,t:none,t:urlDecodeUni,setvar:'tx.extension=.%{tx.1}/',chain"
  SecRule TX:EXTENSION "@within %{tx.bad_ext}" "t:none,t:lowercase,` + score + `"
`
	hdr := defaults + `SecRule REQUEST_HEADERS_NAMES "@rx ^.*$" "id:3,block,capture,t:none,t:lowercase,setvar:'tx.header_name_3_%{tx.0}=/%{tx.0}/',chain"
  SecRule TX:/^header_name_3_/ "@within %{tx.bad_headers}" "` + score + `"
`
	// Across rules: a pass rule captures, another compares with !@rx.
	part := `SecRule MULTIPART_PART_HEADERS "@rx ^content-type\s*:\s*(.*)$" "id:4,pass,nolog,capture,t:none,t:lowercase,setvar:'tx.part_types_%{tx.multipart_counter}=%{tx.1}'"
SecRule TX:/PART_TYPES_*/ "!@rx ^(?:text|image)/[a-z]+$" "id:5,block,capture,t:none,t:lowercase,` + score + `"
`
	for _, tc := range []foldCase{
		{"content type allowed", ctype, 1, map[string][]string{"http.header.content-type": {"application/json; charset=utf-8"}}, false},
		{"content type allowed, upper case", ctype, 1, map[string][]string{"http.header.content-type": {"Application/JSON"}}, false},
		{"content type not allowed", ctype, 1, map[string][]string{"http.header.content-type": {"application/jsonx"}}, true},
		{"content type prefix of an allowed one", ctype, 1, map[string][]string{"http.header.content-type": {"text/xm"}}, true},
		{"content type without a token", ctype, 1, map[string][]string{"http.header.content-type": {";charset=x"}}, false},
		{"no content type", ctype, 1, map[string][]string{"http.header.host": {"a"}}, false},
		{"restricted extension", ext, 2, map[string][]string{"http.basename": {"index.BAK"}}, true},
		{"restricted extension, encoded", ext, 2, map[string][]string{"http.basename": {"x%2econf"}}, true},
		{"extension not restricted", ext, 2, map[string][]string{"http.basename": {"index.bakx"}}, false},
		{"extension of an earlier dot", ext, 2, map[string][]string{"http.basename": {"a.bak.html"}}, false},
		{"restricted header", hdr, 3, map[string][]string{"http.header_name": {"Accept", "Proxy"}}, true},
		{"header containing a restricted name", hdr, 3, map[string][]string{"http.header_name": {"proxy-x", "xproxy"}}, false},
		{"part type allowed", part, 5, map[string][]string{"http.part_header": {"Content-Disposition: form-data", "Content-Type: text/plain"}}, false},
		{"part type refused", part, 5, map[string][]string{"http.part_header": {"Content-Type: application/evil"}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := evalSecLang(t, tc.src, tc.id, tc.vals); got != tc.want {
				t.Errorf("hit = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestLengthAndMatchedVars: t:length and REQUEST_BODY_LENGTH comparisons,
// and MATCHED_VARS seeing the previous link's transformed values.
func TestLengthAndMatchedVars(t *testing.T) {
	acceptEnc := `SecRule REQUEST_HEADERS:Accept-Encoding "@gt 10" "id:1,block,t:none,t:lowercase,t:length,` + score + `"` + "\n"
	shortUA := `SecRule REQUEST_HEADERS:User-Agent "@lt 3" "id:2,block,t:none,t:length,` + score + `"` + "\n"
	bodyNoType := `SecRule REQUEST_BODY_LENGTH "@gt 0" "id:3,block,t:none,chain"
  SecRule &REQUEST_HEADERS:Content-Type "@eq 0" "t:none,` + score + `"
`
	matched := `SecRule ARGS "@rx clonetransformer" "id:4,block,t:none,t:lowercase,chain"
  SecRule MATCHED_VARS "@rx processbuilder" "` + score + `"
`
	for _, tc := range []foldCase{
		{"length above", acceptEnc, 1, map[string][]string{"http.header.accept-encoding": {"gzip, deflate, br"}}, true},
		{"length equal", acceptEnc, 1, map[string][]string{"http.header.accept-encoding": {"0123456789"}}, false},
		{"length below", shortUA, 2, map[string][]string{"http.header.user-agent": {"ab"}}, true},
		{"length not below", shortUA, 2, map[string][]string{"http.header.user-agent": {"abc"}}, false},
		{"body without content type", bodyNoType, 3, map[string][]string{"http.plain_body": {"x"}}, true},
		{"body with content type", bodyNoType, 3, map[string][]string{"http.plain_body": {"x"}, "http.header.content-type": {"text/plain"}}, false},
		{"empty body", bodyNoType, 3, map[string][]string{"http.header.host": {"a"}}, false},
		{"matched vars lowercased", matched, 4, map[string][]string{"http.arg": {"ProcessBuilder.CloneTransformer"}}, true},
		{"matched vars miss", matched, 4, map[string][]string{"http.arg": {"x.CloneTransformer"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := evalSecLang(t, tc.src, tc.id, tc.vals); got != tc.want {
				t.Errorf("hit = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestFoldRefused: comparisons that cannot be folded stay untranslated
// with a reason.
func TestFoldRefused(t *testing.T) {
	for _, tc := range []struct{ src, reason string }{
		{`SecRule REQUEST_HEADERS:Range "@rx (\d+)-(\d+)" "id:1,block,chain"
  SecRule TX:2 "@lt %{tx.1}" "` + score + `"`, "not captured by the previous link"},
		{`SecRule REQUEST_HEADERS:Referer "@rx ^https?://(.*?)/" "id:4,block,capture,chain"
  SecRule TX:1 "!@endsWith %{request_filename}" "` + score + `"`, "only request_headers.<name>"},
		{`SecRule REQUEST_HEADERS:Referer "@rx ^https?://(.*?)/" "id:5,block,capture,chain"
  SecRule TX:1 "!@endsWith %{request_headers.host}" "t:lowercase,` + score + `"`, "t:lowercase on a captured value"},
		{`SecRule REQUEST_HEADERS:Referer "@rx ^https?://(.*?)/" "id:2,block,capture,setvar:'tx.ref=%{tx.1}',chain"
  SecRule TX:ref "!@endsWith %{request_headers.host}" "` + score + `"`, "not a repeated character class"},
		{`SecRule REQUEST_HEADERS:X "@gt 99999" "id:3,block,t:length,` + score + `"`, "limit"},
	} {
		res, err := Import(fstest.MapFS{"t.conf": &fstest.MapFile{Data: []byte(tc.src)}}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Untranslated) != 1 || !strings.Contains(res.Untranslated[0].Reason, tc.reason) {
			t.Errorf("%s: untranslated %v, want a reason with %q", tc.src, res.Untranslated, tc.reason)
		}
	}
}

// TestCaptureCompare: a capture compared with a request field or another
// group of the same match becomes a compare: of the capturing condition
// (the engine evaluates it: dpi TestCompareAndBodyFields).
func TestCaptureCompare(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{`SecRule ARGS_NAMES "@rx ^jsessionid$" "id:1,block,capture,t:none,t:lowercase,chain"
  SecRule REQUEST_HEADERS:Referer "@rx ^(?:ht|f)tps?://(.*?)/" "capture,chain"
    SecRule TX:1 "!@endsWith %{request_headers.host}" "` + score + `"`,
			"compare: {group: 1, op: ends_with, field: http.header.host, not: true}"},
		{`SecRule REQUEST_HEADERS:Range "@rx (\d+)-(\d+)" "id:2,block,capture,chain"
  SecRule TX:2 "@lt %{tx.1}" "` + score + `"`, "compare: {group: 2, op: lt, with_group: 1}"},
		{`SecRule REQUEST_METHOD "@rx ^(\w+)$" "id:3,block,capture,chain"
  SecRule TX:1 "@streq %{request_protocol}" "` + score + `"`, "compare: {group: 1, op: equals, field: http.protocol}"},
	} {
		res, err := Import(fstest.MapFS{"t.conf": &fstest.MapFile{Data: []byte(tc.src)}}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Untranslated) != 0 || !strings.Contains(string(res.YAML), tc.want) {
			t.Errorf("%s:\nuntranslated %v\n%s\nwant %q", tc.src, res.Untranslated, res.YAML, tc.want)
		}
		if strings.Contains(string(res.YAML), "TX:") {
			t.Errorf("a TX link was kept:\n%s", res.YAML)
		}
	}
}

// TestNamedExclusions: !ARGS:x and !REQUEST_COOKIES:x beside their
// collections become except: entries of those fields; one of a
// collection the condition does not inspect removes nothing and is
// dropped; one by regex is ignored and listed.
func TestNamedExclusions(t *testing.T) {
	src := `SecRule REQUEST_COOKIES|!REQUEST_COOKIES:FCCDCF|ARGS|!ARGS:Password|!REQUEST_COOKIES:/^_ga/ "@rx x" "id:1,block,` + score + `"
SecRule ARGS|!REQUEST_COOKIES:sid "@rx y" "id:2,block,` + score + `"`
	res, err := Import(fstest.MapFS{"t.conf": &fstest.MapFile{Data: []byte(src)}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	out := string(res.YAML)
	if !strings.Contains(out, "except: ['http.cookie:fccdcf', 'http.arg:password']") || strings.Count(out, "except:") != 1 {
		t.Errorf("output:\n%s", out)
	}
	if len(res.Approximations) != 1 || !strings.Contains(res.Approximations[0].Reason, "!REQUEST_COOKIES:/^_ga/") {
		t.Errorf("approximations %v", res.Approximations)
	}
}
