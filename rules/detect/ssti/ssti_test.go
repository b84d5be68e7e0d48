package ssti

import (
	"testing"

	"github.com/deepwall/deepwall/rules/detect/internal/detecttest"
)

// attacks are values the detector must report, benign ones it must not;
// both seed FuzzMatch.
var attacks = []string{
	"{{7*7}}",
	"${7*7}",
	"#{7*7}",
	"<%= 7*7 %>",
	"{{config.items()}}",
	"{{''.__class__.__mro__}}",
	"${T(java.lang.Runtime).getRuntime().exec('id')}",
	"<#assign ex=\"freemarker.template.utility.Execute\"?new()>",
	"#set($x=1)",
	"*{7*7}",
	"@(1+2)",
	"{{self}}",
	"{{request|attr('application')}}",
}

var benign = []string{
	"{{name}}",
	"${price}",
	"Hello {{ user.first_name }}",
	"*{margin:0}",
	"{% $NUM_VIEWS|STRING_FORMAT:\"%D\" %} VUES",
	"#{id}",
	"a@(b)",
	"email me at a@b.c",
}

func TestMatch(t *testing.T) {
	detecttest.Check(t, New().Match, attacks, benign)
}

func FuzzMatch(f *testing.F) { detecttest.Fuzz(f, New().Match, attacks, benign) }

// BenchmarkMatch measures a mix of benign values, the common case.
func BenchmarkMatch(b *testing.B) { detecttest.Bench(b, New().Match) }
