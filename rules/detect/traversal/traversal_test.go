package traversal

import "testing"

func TestMatch(t *testing.T) {
	attacks := []string{
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
	benign := []string{
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
