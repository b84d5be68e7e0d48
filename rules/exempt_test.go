package rules

import (
	"reflect"
	"strings"
	"testing"
)

// TestExemptsParse checks that exempts: and field-qualified except:
// entries are read as written.
func TestExemptsParse(t *testing.T) {
	s, err := ParseFile("testdata/exempts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.Rule(10001).Exempts, []IDRange{{942100, 942100}, {941000, 941999}}; !reflect.DeepEqual(got, want) {
		t.Errorf("exempts %v, want %v", got, want)
	}
	m := s.Rule(942100).Match
	if got := m.ExceptNames(FieldHTTPArg); !reflect.DeepEqual(got, []string{"password"}) {
		t.Errorf("http.arg except %v", got)
	}
	if got := m.ExceptNames(FieldHTTPCookie); !reflect.DeepEqual(got, []string{"_ga"}) {
		t.Errorf("http.cookie except %v", got)
	}
	tests := []struct {
		k    FieldKind
		name string
		want bool
	}{
		{FieldHTTPArg, "PassWord", true}, {FieldHTTPArg, "_ga", false},
		{FieldHTTPCookie, "_GA", true}, {FieldHTTPCookie, "password", false},
		{FieldHTTPHeaderValue, "password", false},
	}
	for _, tc := range tests {
		if got := m.Excluded(tc.k, []byte(tc.name)); got != tc.want {
			t.Errorf("Excluded(%s, %q) = %v, want %v", Field{Kind: tc.k}, tc.name, got, tc.want)
		}
	}
	// A plain entry is a header of http.header_value, as before.
	h := mustParse(t, "h.yaml", "rules:\n  - {id: 1, action: block, match: {fields: [http.header_value, http.arg], regex: x, except: [Cookie]}}\n").Rule(1).Match
	if !h.Excluded(FieldHTTPHeaderValue, []byte("cookie")) || h.Excluded(FieldHTTPArg, []byte("cookie")) {
		t.Errorf("plain except: applies to %v", h.Except)
	}
	c, err := Compile(s)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.Exempts() {
		t.Error("Exempts() false with a scoped exclusion")
	}
}

// TestExemptsErrors checks every error of exempts: and except:, with its
// position; the ones that need the whole set come from Validate (and so
// from Compile and the agent's merge of an added file).
func TestExemptsErrors(t *testing.T) {
	const scored = "  - {id: 942100, action: alert, score: 5, match: {field: http.arg, regex: x}}\n"
	tests := []struct {
		name, src, want string
		set             bool // the error comes from Validate, not Parse
	}{
		{"on block", "rules:\n  - {id: 1, action: block, exempts: 2, match: {field: http.path, regex: x}}\n",
			"t.yaml:2:37: rule 1: exempts: belongs to an allow rule (a scoped exclusion), but the action is block", false},
		{"no match", "rules:\n  - {id: 1, action: allow, exempts: 2, src: 198.18.0.1}\n",
			"t.yaml:2:37: rule 1: an allow rule with exempts: needs a match:", false},
		{"own id", "rules:\n  - {id: 5, action: allow, exempts: '1-9', match: {field: http.path, regex: x}}\n",
			`t.yaml:2:37: rule 5: exempts: 1-9 holds the rule's own id`, false},
		{"empty range", "rules:\n  - {id: 1, action: allow, exempts: '9-3', match: {field: http.path, regex: x}}\n",
			`t.yaml:2:37: rule 1: exempts: range "9-3" is empty: 9 is above 3`, false},
		{"not an id", "rules:\n  - {id: 1, action: allow, exempts: [2, x], match: {field: http.path, regex: x}}\n",
			`t.yaml:2:41: rule 1: exempts: "x": "x" is not a rule id`, false},
		{"id zero", "rules:\n  - {id: 1, action: allow, exempts: [0], match: {field: http.path, regex: x}}\n",
			`t.yaml:2:38: rule 1: exempts: "0": "0" is not a rule id`, false},
		{"unknown id", "rules:\n" + scored + "  - {id: 1, action: allow, exempts: [942100, 942101], match: {field: http.path, regex: x}}\n",
			"t.yaml:3:37: rule 1: exempts: no rule 942101 in the set", true},
		{"empty id range", "rules:\n" + scored + "  - {id: 1, action: allow, exempts: '941000-941999', match: {field: http.path, regex: x}}\n",
			"t.yaml:3:37: rule 1: exempts: no rule of the set has an id in 941000-941999", true},
		{"allow rule", "rules:\n  - {id: 2, action: allow, match: {field: http.path, regex: y}}\n  - {id: 1, action: allow, exempts: 2, match: {field: http.path, regex: x}}\n",
			"t.yaml:3:37: rule 1: exempts: rule 2 is an allow rule; only block and alert rules are exempted", true},
		{"acl rule", "rules:\n  - {id: 2, action: block, proto: tcp, dst_port: 23}\n  - {id: 1, action: allow, exempts: 2, match: {field: http.path, regex: x}}\n",
			"t.yaml:3:37: rule 1: exempts: rule 2 is an ACL rule (no layer-7 condition), decided before layer 7", true},
		{"except without the field", "rules:\n  - {id: 1, action: block, match: {field: http.arg, regex: x, except: [http.cookie:_ga]}}\n",
			`t.yaml:2:71: rule 1: except: "http.cookie:_ga" skips values of http.cookie, and the condition has no http.cookie field`, false},
		{"plain except without headers", "rules:\n  - {id: 1, action: block, match: {field: http.arg, regex: x, except: [password]}}\n",
			`t.yaml:2:71: rule 1: except: "password" skips values of http.header_value, and the condition has no http.header_value field`, false},
		{"except header name", "rules:\n  - {id: 1, action: block, match: {field: http.header_value, regex: x, except: ['a b']}}\n",
			`t.yaml:2:80: rule 1: except: "a b" is not a header name`, false},
		{"except no name", "rules:\n  - {id: 1, action: block, match: {field: http.arg, regex: x, except: ['http.arg:']}}\n",
			`t.yaml:2:71: rule 1: except: "http.arg:" names no value`, false},
		{"except with count", "rules:\n  - {id: 1, action: block, match: {field: http.arg, count: '> 3', except: [http.arg:a]}}\n",
			`t.yaml:2:75: rule 1: except: "http.arg:a" with count:`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse("t.yaml", []byte(tc.src))
			if tc.set {
				if err != nil {
					t.Fatalf("Parse: %v (the file alone is valid)", err)
				}
				err = s.Validate()
				if _, cerr := Compile(s); cerr == nil || !strings.Contains(cerr.Error(), tc.want) {
					t.Errorf("Compile: %v, want %q", cerr, tc.want)
				}
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			wantError(t, err, tc.want)
		})
	}
}

// TestDecideExempts checks Decide and Counts with scoped exclusions: a
// scoped allow takes only the rules it names out, above or below it,
// and cuts nothing; the cutting allow keeps its meaning beside it.
func TestDecideExempts(t *testing.T) {
	c := mustCompile(t, `
rules:
  - {id: 1, action: block, match: {field: http.uri, regex: a}}
  - {id: 2, action: alert, match: {field: http.uri, regex: b}}
  - {id: 3, action: allow, exempts: [1, 4, "20-29"], match: {field: http.path, regex: '^/editor'}}
  - {id: 4, action: block, match: {field: http.uri, regex: c}}
  - {id: 5, action: block, match: {field: http.uri, regex: d}}
  - {id: 6, action: allow, match: {field: http.path, regex: '^/healthz'}}
  - {id: 7, action: block, match: {field: http.uri, regex: e}}
  - {id: 21, action: alert, match: {field: http.uri, regex: f}}
`)
	r := c.Set.Rule
	tests := []struct {
		hits          []uint32
		block, exempt uint32
		counted       []uint32
	}{
		{[]uint32{1, 4}, 1, 0, []uint32{1, 4}},              // the exclusion did not hit
		{[]uint32{1, 3}, 0, 0, []uint32{3}},                 // above it (an allow rule that hits counts, as in TestDecide)
		{[]uint32{4, 3}, 0, 0, []uint32{3}},                 // below it, either order
		{[]uint32{3, 1, 4, 5}, 5, 0, []uint32{3, 5}},        // a rule it does not name
		{[]uint32{3, 2, 21}, 0, 0, []uint32{2, 3}},          // a range
		{[]uint32{3, 7}, 7, 0, []uint32{3, 7}},              // no cut below it
		{[]uint32{3, 6, 7, 1}, 0, 6, []uint32{3, 6}},        // the cutting allow still cuts
		{[]uint32{6, 5, 3, 4}, 5, 6, []uint32{3, 5, 6}},     // both
		{[]uint32{3, 3, 1, 1}, 0, 0, []uint32{3, 3}},        // repeats
		{[]uint32{21, 2, 5, 3, 1}, 5, 0, []uint32{2, 3, 5}}, // block reported: first not exempted
		{[]uint32{1, 2, 4, 5, 7, 21}, 1, 0, []uint32{1, 2, 4, 5, 7, 21}},
	}
	for _, tc := range tests {
		block, exempt, counted := decideIDs(c, tc.hits)
		if block != tc.block || exempt != tc.exempt || !reflect.DeepEqual(counted, tc.counted) {
			t.Errorf("hits %v: block %d exempt %d counted %v, want %d %d %v", tc.hits, block, exempt, counted, tc.block, tc.exempt, tc.counted)
		}
	}
	for _, tc := range []struct {
		hits []uint32
		r    uint32
		want bool
	}{
		{[]uint32{3}, 1, true}, {[]uint32{3}, 21, true}, {[]uint32{3}, 2, false}, {[]uint32{6}, 7, false}, {nil, 1, false},
	} {
		var hits []*Rule
		for _, id := range tc.hits {
			hits = append(hits, r(id))
		}
		if got := c.Exempted(hits, r(tc.r)); got != tc.want {
			t.Errorf("Exempted(%v, %d) = %v, want %v", tc.hits, tc.r, got, tc.want)
		}
	}
	if mustCompile(t, "rules:\n  - {id: 1, action: block, match: {field: http.uri, regex: a}}\n").Exempts() {
		t.Error("Exempts() true without a scoped exclusion")
	}
}
