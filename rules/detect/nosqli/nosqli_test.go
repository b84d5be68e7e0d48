package nosqli

import (
	"testing"

	"github.com/deepwall/deepwall/rules/detect/internal/detecttest"
)

// attacks are values the detector must report, benign ones it must not;
// both seed FuzzMatch.
var attacks = []string{
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

var benign = []string{
	"costs $5 and $10",
	"\"RETURN ADDRESS LABELS\" STICKER",
	"price in $",
	"{\"name\":\"x\",\"amount\":\"$12\"}",
	"this.is fine",
}

func TestMatch(t *testing.T) {
	detecttest.Check(t, New().Match, attacks, benign)
}

func FuzzMatch(f *testing.F) { detecttest.Fuzz(f, New().Match, attacks, benign) }

// BenchmarkMatch measures a mix of benign values, the common case.
func BenchmarkMatch(b *testing.B) { detecttest.Bench(b, New().Match) }
