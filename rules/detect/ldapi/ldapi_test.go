package ldapi

import (
	"testing"

	"github.com/deepwall/deepwall/rules/detect/internal/detecttest"
)

// attacks are values the detector must report, benign ones it must not;
// both seed FuzzMatch.
var attacks = []string{
	"*)(uid=*))(|(uid=*",
	"*(|(objectclass=*))",
	"admin*)((|userpassword=*)",
	"%2A%28%7C%28mail%3D%2A%29%29",
	"*)(&",
	"x' or name()='username' or 'x'='y",
	"*))%00",
	"*()|&'",
}

var benign = []string{
	"(555) 123-4567",
	"(DICKEY DICKIE*)",
	"S3cr3t!@#$%^&*()_+-=",
	"smile :)(",
	"(a)(b)",
	"x*y",
}

func TestMatch(t *testing.T) {
	detecttest.Check(t, New().Match, attacks, benign)
}

func FuzzMatch(f *testing.F) { detecttest.Fuzz(f, New().Match, attacks, benign) }

// BenchmarkMatch measures a mix of benign values, the common case.
func BenchmarkMatch(b *testing.B) { detecttest.Bench(b, New().Match) }
