package nosqli

import "testing"

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
