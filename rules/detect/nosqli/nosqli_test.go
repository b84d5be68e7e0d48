package nosqli

import (
	"testing"

	"github.com/deepwall/deepwall/rules/detect/internal/detecttest"
)

func TestMatch(t *testing.T) {
	attacks := []string{
		"[$ne]=1",
		"{\"$gt\": \"\"}",
		"{ $ne: 1 }",
		"', $or: [ {}, { 'a':'a",
		"1, $where: '1 == 1'",
		"user[$regex]",
		"' && this.password.match(/.*/)//",
		"';sleep(5000);",
		"db.users.find({})",
		"|| 1==1",
	}
	benign := []string{
		"costs $5 and $10",
		"\"RETURN ADDRESS LABELS\" STICKER",
		"price in $",
		"{\"name\":\"x\",\"amount\":\"$12\"}",
		"this.is fine",
	}
	detecttest.Check(t, New().Match, attacks, benign)
}

func FuzzMatch(f *testing.F) {
	for _, s := range []string{
		"[$ne]=1",
		"{\"$gt\": \"\"}",
		"{ $ne: 1 }",
		"', $or: [ {}, { 'a':'a",
		"1, $where: '1 == 1'",
		"user[$regex]",
		"' && this.password.match(/.*/)//",
		"';sleep(5000);",
		"db.users.find({})",
		"|| 1==1",
		"costs $5 and $10",
		"\"RETURN ADDRESS LABELS\" STICKER",
		"price in $",
		"{\"name\":\"x\",\"amount\":\"$12\"}",
		"this.is fine",
	} {
		f.Add([]byte(s))
	}
	detecttest.Fuzz(f, New().Match)
}

// BenchmarkMatch measures a mix of benign values, the common case.
func BenchmarkMatch(b *testing.B) { detecttest.Bench(b, New().Match) }
