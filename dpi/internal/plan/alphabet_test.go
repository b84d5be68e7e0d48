package plan

import (
	"math/rand/v2"
	"testing"

	"github.com/deepwall/deepwall/internal/ruletest"
	"github.com/deepwall/deepwall/rules/transform"
)

// TestGroupAlphabet checks the alphabet of every block group of the
// default pack against Hyperscan itself: random values over the alphabet,
// built from the pack's own literals where they fit, never match.
func TestGroupAlphabet(t *testing.T) {
	c := ruletest.DefaultPack(t)
	sc, err := c.NewScratch()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Free()
	cache := alphabetCache{}
	r := rand.New(rand.NewPCG(7, 8))
	withAlpha := 0
	for _, g := range c.Groups {
		if g.Stream {
			continue
		}
		alpha := groupAlphabet(g, cache)
		t.Logf("%s %v: %d patterns, alphabet %q", g.Field, g.Transforms, len(g.Patterns), alpha.Bytes())
		if alpha == 0 {
			continue
		}
		withAlpha++
		bytes := alpha.Bytes()
		words := []string{"select", "union", "sleep", "script", "alert", "whoami", "passwd", "etc", "java", "runtime", "exec", "eval", "system",
			"jndi", "ldap", "php", "input", "phpsessid", "jsessionid", "sqlmap", "nikto", "curl", "wget", "bash", "cmd", "powershell", "file", "http", "localhost", "127.0.0.1", "169.254.169.254",
			"..", "../", "--", "-1", "0x", "1=1", "or", "and", "__proto__", "constructor", "prototype", "child_process", "require", "os.system", "java.lang", "processbuilder"}
		var ws []string
		for _, w := range words {
			if transform.ClassesOf([]byte(w))&^alpha == 0 {
				ws = append(ws, w)
			}
		}
		for i := 0; i < 4000; i++ {
			var v []byte
			for n := 1 + r.IntN(64); len(v) < n; {
				if len(ws) > 0 && r.IntN(3) == 0 {
					v = append(v, ws[r.IntN(len(ws))]...)
				} else {
					v = append(v, bytes[r.IntN(len(bytes))])
				}
			}
			if err := g.ScanBlockPatterns(v, sc, func(id int) {
				t.Fatalf("%s %v: %q matches pattern %q, outside alphabet %q", g.Field, g.Transforms, v, g.Patterns[id].Expression(), alpha.Bytes())
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if withAlpha == 0 {
		t.Fatal("no group of the default pack has an alphabet")
	}
}
