package ldapi

import (
	"testing"

	"github.com/deepwall/deepwall/rules/detect/internal/detecttest"
)

func TestMatch(t *testing.T) {
	attacks := []string{
		"*)(uid=*))(|(uid=*",
		"*(|(objectclass=*))",
		"admin*)((|userpassword=*)",
		"%2A%28%7C%28mail%3D%2A%29%29",
		"*)(&",
		"x' or name()='username' or 'x'='y",
		"*))%00",
		"*()|&'",
	}
	benign := []string{
		"(555) 123-4567",
		"(DICKEY DICKIE*)",
		"S3cr3t!@#$%^&*()_+-=",
		"smile :)(",
		"(a)(b)",
		"x*y",
	}
	detecttest.Check(t, New().Match, attacks, benign)
}

func FuzzMatch(f *testing.F) {
	for _, s := range []string{
		"*)(uid=*))(|(uid=*",
		"*(|(objectclass=*))",
		"admin*)((|userpassword=*)",
		"%2A%28%7C%28mail%3D%2A%29%29",
		"*)(&",
		"*))%00",
		"*()|&'",
		"(555) 123-4567",
		"(DICKEY DICKIE*)",
		"S3cr3t!@#$%^&*()_+-=",
		"smile :)(",
		"(a)(b)",
		"x*y",
	} {
		f.Add([]byte(s))
	}
	detecttest.Fuzz(f, New().Match)
}

// BenchmarkMatch measures a mix of benign values, the common case.
func BenchmarkMatch(b *testing.B) { detecttest.Bench(b, New().Match) }
