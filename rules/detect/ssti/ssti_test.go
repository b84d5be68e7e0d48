package ssti

import "testing"

func TestMatch(t *testing.T) {
	attacks := []string{
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
	benign := []string{
		"{{name}}",
		"${price}",
		"Hello {{ user.first_name }}",
		"*{margin:0}",
		"{% $NUM_VIEWS|STRING_FORMAT:\"%D\" %} VUES",
		"#{id}",
		"a@(b)",
		"email me at a@b.c",
	}
	d := New()
	for _, s := range attacks {
		if hit, _ := d.Match([]byte(s)); !hit {
			t.Errorf("attack missed: %q", s)
		}
	}
	for _, s := range benign {
		if hit, why := d.Match([]byte(s)); hit {
			t.Errorf("benign value reported (%s): %q", why, s)
		}
	}
}

func FuzzMatch(f *testing.F) {
	for _, s := range []string{
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
		"{{name}}",
		"${price}",
		"Hello {{ user.first_name }}",
		"*{margin:0}",
		"{% $NUM_VIEWS|STRING_FORMAT:\"%D\" %} VUES",
		"#{id}",
		"a@(b)",
		"email me at a@b.c",
	} {
		f.Add([]byte(s))
	}
	d := New()
	f.Fuzz(func(t *testing.T, b []byte) {
		in := string(b)
		d.Match(b)
		if string(b) != in {
			t.Fatalf("Match changed its input")
		}
	})
}

// BenchmarkMatch measures a mix of benign values, the common case.
func BenchmarkMatch(b *testing.B) {
	values := [][]byte{
		[]byte("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"),
		[]byte("Hello, I would like to order 3 items; please call me at (555) 123-4567 & thanks!"),
		[]byte("{\"name\":\"Seán O'Brien\",\"note\":\"leave at door #4\"}"),
		[]byte("annual-report.v2.final.pdf"),
		[]byte("session=9f8e7d6c5b4a; theme=dark"),
	}
	d := New()
	var n int64
	for _, v := range values {
		n += int64(len(v))
	}
	b.SetBytes(n)
	b.ReportAllocs()
	for b.Loop() {
		for _, v := range values {
			d.Match(v)
		}
	}
}
