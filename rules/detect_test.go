package rules

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/corazawaf/libinjection-go"

	"github.com/deepwall/deepwall/rules/internal/randtext"
)

// sqlWords are SQL keywords, functions and operators spelt as words: the
// tokens that give libinjection's fingerprints their letters.
var sqlWords = strings.Fields(`union select or and not xor like rlike regexp sleep benchmark
	waitfor delay insert update delete drop from where having order by group limit offset
	null true false char concat version database user if case when then else end exec
	execute declare cast convert substring ascii load_file outfile dumpfile into into_outfile
	information_schema sysobjects pg_sleep dbms_pipe utl_inaddr sp_password xp_cmdshell
	count ifnull is in between exists all any some distinct as on join inner outer left right
	admin 1 0 1e1 0x41 0b1 x y z e q n u b`)

// TestSQLiPrecheck checks that values plainToken accepts are never SQLi for
// libinjection, over every keyword above alone, joined, and with random
// letters, digits and underscores around them.
func TestSQLiPrecheck(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	alnum := []byte("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
	var cases [][]byte
	for _, a := range sqlWords {
		cases = append(cases, []byte(a), []byte(strings.ToUpper(a)))
		for _, b := range sqlWords {
			cases = append(cases, []byte(a+b), []byte(a+"_"+b), []byte("x"+a+b))
		}
	}
	for i := 0; i < 200000; i++ {
		cases = append(cases, randtext.Over(r, alnum, sqlWords, 32))
	}
	for i := 0; i < 20000; i++ {
		cases = append(cases, randtext.Over(r, []byte("0123456789"), nil, 24))
	}
	checked := 0
	for _, c := range cases {
		if len(c) == 0 || !plainToken(c) {
			continue
		}
		checked++
		if hit, fp := libinjection.IsSQLi(string(c)); hit {
			t.Fatalf("plainToken(%q) but libinjection says SQLi (%s)", c, fp)
		}
	}
	if checked < 100000 {
		t.Fatalf("only %d plain tokens checked", checked)
	}
	for _, s := range []string{"1 or 1", "1union", "a'b", "a.b", "0x1", "1e5", "a-b", "@a", "", " a"} {
		if len(s) > 0 && plainToken([]byte(s)) {
			t.Errorf("plainToken(%q) = true", s)
		}
	}
}

// TestXSSPrecheck checks that IsXSS's shortcut (no '<' and no '=') never
// hides a value libinjection reports: random values built from attribute
// names, quotes, whitespace, '/', '>' and URL schemes.
func TestXSSPrecheck(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	words := []string{"onerror", "onload", "style", "href", "src", "xmlns", "xlink", "javascript:", "vbscript:", "data:",
		"alert(1)", "\"", "'", "`", " ", "\t", "\n", "\v", "/", ">", "!--", "[if", "xml", "import", "entity", "script", "svg", "\x00"}
	alphabet := []byte("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 \t\n\"'`/>!?%&;:()[]{}-_.\\\x00\x80")
	for i := 0; i < 300000; i++ {
		v := randtext.Over(r, alphabet, words, 40)
		if len(v) == 0 {
			continue
		}
		if got, want := IsXSS(v), libinjection.IsXSS(string(v)); got != want {
			t.Fatalf("IsXSS(%q) = %v, libinjection says %v", v, got, want)
		}
	}
	for _, s := range []string{`" onerror=alert(1)`, "<script>", "x onload=y", "<!DOCTYPE html>", "` onmouseover=x"} {
		if !IsXSS([]byte(s)) {
			t.Errorf("IsXSS(%q) = false", s)
		}
	}
}
