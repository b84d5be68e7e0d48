package ldapi

import "testing"

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
