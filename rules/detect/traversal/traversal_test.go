package traversal

import (
	"testing"

	"github.com/deepwall/deepwall/rules/detect/internal/detecttest"
)

// attacks are values the detector must report, benign ones it must not;
// both seed FuzzMatch.
var attacks = []string{
	"../../../../etc/passwd",
	"..%2f..%2f..%2fetc%2fpasswd",
	"%252e%252e%252fetc%252fpasswd",
	"%c0%ae%c0%ae%c0%afetc%c0%afpasswd",
	`..\\..\\..\\windows\\win.ini`,
	"/etc/shadow",
	"C:/windows/system32/drivers/etc/hosts",
	"..;/..;/WEB-INF/web.xml",
	"....//....//etc/passwd",
	"../../../../etc/passwd%00.html",
	"php://filter/convert.base64-encode/resource=index.php",
	"file:///etc/passwd",
	"zip://uploads/x.zip#shell.php",
	"data://text/plain;base64,PD9waHAgc3lzdGVtKCRfR0VUWydjJ10pOz8+",
	"expect://id",
	"/proc/self/environ",
	"Li4vLi4vLi4vLi4vZXRjL3Bhc3N3ZA==",
}

var benign = []string{
	"annual-report.v2.final.pdf",
	"/users/anna/documents",
	"images/../logo.png",
	"https://example.com/../a",
	"zip:12345",
	"data:text/plain,hello",
	"wait.. what?",
	"error.log",
	"C:\\fakepath\\photo.jpg",
	"1/2 cup sugar",
}

func TestMatch(t *testing.T) {
	detecttest.Check(t, New().Match, attacks, benign)
}

func FuzzMatch(f *testing.F) { detecttest.Fuzz(f, New().Match, attacks, benign) }

// BenchmarkMatch measures a mix of benign values, the common case.
func BenchmarkMatch(b *testing.B) { detecttest.Bench(b, New().Match) }
