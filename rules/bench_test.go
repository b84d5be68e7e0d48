package rules

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/deepwall/deepwall/internal/rulegen"
	"github.com/flier/gohs/hyperscan"
)

// The generated sets are internal/rulegen's, the same as the dpi
// benchmarks' and the harness's.
func BenchmarkCompile(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			set, err := Parse("gen.yaml", rulegen.Generate(n, 0))
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				c, err := Compile(set)
				if err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/compile")
		})
	}
}

func BenchmarkParse(b *testing.B) {
	data := rulegen.Generate(1000, 0)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Parse("gen.yaml", data); err != nil {
			b.Fatal(err)
		}
	}
}

// browserHeaders are the request headers of a current desktop browser.
var browserHeaders = [][2]string{
	{"Host", "shop.example.com"},
	{"User-Agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"},
	{"Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"},
	{"Accept-Language", "de-DE,de;q=0.9,en-US;q=0.8,en;q=0.7,fr;q=0.6"},
	{"Accept-Encoding", "gzip, deflate, br, zstd"},
	{"sec-ch-ua", `"Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99"`},
	{"sec-ch-ua-mobile", "?0"},
	{"sec-ch-ua-platform", `"Windows"`},
	{"Sec-Fetch-Site", "same-origin"},
	{"Sec-Fetch-Mode", "navigate"},
	{"Referer", "https://shop.example.com/search?q=caf%C3%A9+cr%C3%A8me&sort=price_asc&page=2"},
	{"Cookie", "_ga=GA1.2.1234567890.1700000000; _gid=GA1.2.987654321.1700000000; session=eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c; prefs=%7B%22theme%22%3A%22dark%22%2C%22lang%22%3A%22de%22%7D; cart=" + strings.Repeat("Zm9vYmFyYmF6cXV4", 180)},
	{"If-None-Match", `W/"5e-18f3a1b2c4d"`},
	{"Upgrade-Insecure-Requests", "1"},
}

// httpBuffer is about 64 KiB of ordinary HTTP traffic: requests with
// browser headers, query strings, form and JSON bodies, and a response.
func httpBuffer() []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < 64<<10; i++ {
		fmt.Fprintf(&b, "GET /api/v1/users/%d/orders?status=open&sort=-created_at&page=%d&q=caf%%C3%%A9+cr%%C3%%A8me HTTP/1.1\r\n", i, i%7)
		for _, h := range browserHeaders {
			b.WriteString(h[0] + ": " + h[1] + "\r\n")
		}
		b.WriteString("\r\n")
		fmt.Fprintf(&b, `{"customer":{"name":"José Müller","email":"jose%d@example.com"},"items":[{"sku":"ABC-%d","qty":2,"price":19.99}],"note":"Please deliver after 5pm; ring twice & leave at the door."}`, i, i)
		b.WriteString("\r\nHTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html><body><p>Order 1234567890123 shipped on 2024-01-15. Call +1 (555) 123-4567.</p></body></html>\r\n")
	}
	return b.Bytes()
}

func gbps(bytes int64, d time.Duration) float64 {
	return float64(bytes) * 8 / d.Seconds() / 1e9
}

// scanAll runs buf through every database of c once.
func scanAll(tb testing.TB, c *Compiled, s *hyperscan.Scratch, buf []byte) {
	var n int
	h := func(uint, uint64, uint64, uint, any) error { n++; return nil }
	for _, g := range c.Groups {
		if g.Block != nil {
			if err := g.Block.Scan(buf, s, h, nil); err != nil {
				tb.Fatal(err)
			}
			continue
		}
		st, err := g.Streaming.Open(0, s, h, nil)
		if err != nil {
			tb.Fatal(err)
		}
		if err := st.Scan(buf); err != nil {
			tb.Fatal(err)
		}
		st.Close()
	}
}

// BenchmarkPackScan measures the raw Hyperscan scan rate of the default
// pack's databases over an HTTP-like buffer, per database and for all of
// them in turn (the bytes/s of "all" count the buffer once).
func BenchmarkPackScan(b *testing.B) {
	c, _ := compiledPack(b)
	s := scratch(b, c)
	buf := httpBuffer()
	h := func(uint, uint64, uint64, uint, any) error { return nil }
	for _, g := range c.Groups {
		name := strings.ReplaceAll(groupKey(g.Field, nil), ".", "_")
		if g.Stream {
			name += "/stream"
		}
		name += fmt.Sprintf("/%drules", len(g.Rules))
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				if g.Block != nil {
					g.Block.Scan(buf, s, h, nil)
				} else {
					st, _ := g.Streaming.Open(0, s, h, nil)
					st.Scan(buf)
					st.Close()
				}
			}
			b.ReportMetric(gbps(int64(len(buf))*int64(b.N), b.Elapsed()), "Gbit/s")
		})
	}
	b.Run("all", func(b *testing.B) {
		b.SetBytes(int64(len(buf)))
		for b.Loop() {
			scanAll(b, c, s, buf)
		}
		b.ReportMetric(gbps(int64(len(buf))*int64(b.N), b.Elapsed()), "Gbit/s")
	})
}

// packGoRegexps compiles the default pack's regexes with Go's regexp (the
// ones it accepts) with the same flags.
func packGoRegexps(tb testing.TB, c *Compiled) (res []*regexp.Regexp, skipped int) {
	for _, g := range c.Groups {
		for _, r := range g.Rules {
			if r.Match.Regex == "" {
				skipped++ // a phrase of a phrase list: no regex of its own
				continue
			}
			cf, err := newConfirmer(r.Match)
			if gc, ok := cf.(goConfirmer); err == nil && ok {
				res = append(res, gc.re)
			} else {
				skipped++
			}
		}
	}
	return res, skipped
}

// BenchmarkPackGoRegexp runs the same patterns with Go's regexp over the
// same buffer, one pattern at a time as a Go WAF would.
func BenchmarkPackGoRegexp(b *testing.B) {
	c, _ := compiledPack(b)
	res, skipped := packGoRegexps(b, c)
	buf := httpBuffer()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		for _, re := range res {
			re.Match(buf)
		}
	}
	b.ReportMetric(gbps(int64(len(buf))*int64(b.N), b.Elapsed()), "Gbit/s")
	b.ReportMetric(float64(len(res)), "patterns")
	b.ReportMetric(float64(skipped), "skipped")
}

// BenchmarkPackRatio times both engines over the same buffer and patterns
// and reports how many times faster Hyperscan is (only the patterns Go
// accepts go into either side).
func BenchmarkPackRatio(b *testing.B) {
	c, _ := compiledPack(b)
	res, _ := packGoRegexps(b, c)
	var pats hyperscan.Patterns
	for i, re := range res {
		p := hyperscan.NewPattern(strings.TrimPrefix(re.String(), "(?m)"), hyperscan.SingleMatch|hyperscan.MultiLine)
		p.Id = i
		pats = append(pats, p)
	}
	db, err := hyperscan.NewBlockDatabase(pats...)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	s, err := hyperscan.NewScratch(db)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Free()
	buf := httpBuffer()
	h := func(uint, uint64, uint64, uint, any) error { return nil }
	for b.Loop() {
		start := time.Now()
		const hsRounds = 200
		for i := 0; i < hsRounds; i++ {
			db.Scan(buf, s, h, nil)
		}
		hsT := time.Since(start) / hsRounds
		start = time.Now()
		for _, re := range res {
			re.Match(buf)
		}
		goT := time.Since(start)
		b.ReportMetric(gbps(int64(len(buf)), hsT), "hs-Gbit/s")
		b.ReportMetric(gbps(int64(len(buf)), goT), "go-Gbit/s")
		b.ReportMetric(float64(goT)/float64(hsT), "ratio")
	}
}

// BenchmarkSOM measures what start-of-match reporting costs, on the DLP
// patterns over a response full of digits: with SOM (as validated patterns
// are compiled) and with SINGLEMATCH (as plain patterns are).
func BenchmarkSOM(b *testing.B) {
	exprs := []string{
		`\b(?:4|5[1-5]|2[2-7]|3[47]|3[0689]|6[045]|35)\d(?:[ -]?\d){10,17}\b`,
		`\b\d{3}-\d{2}-\d{4}\b`,
		`\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b`,
	}
	var body bytes.Buffer
	for i := 0; body.Len() < 64<<10; i++ {
		fmt.Fprintf(&body, `{"id":%d,"order":"4%015d","phone":"555-%02d-%04d","amount":%d.%02d,"ref":"DE%02d %04d %04d"},`, i, i*7919, i%100, i, i, i%100, i%100, i, i)
	}
	buf := body.Bytes()
	for _, mode := range []struct {
		name string
		flag hyperscan.CompileFlag
	}{{"som", hyperscan.SomLeftMost}, {"singlematch", hyperscan.SingleMatch}, {"plain", 0}} {
		for _, stream := range []bool{false, true} {
			name := mode.name + "/block"
			if stream {
				name = mode.name + "/stream"
			}
			b.Run(name, func(b *testing.B) {
				var pats hyperscan.Patterns
				for i, e := range exprs {
					p := hyperscan.NewPattern(e, mode.flag)
					p.Id = i
					pats = append(pats, p)
				}
				m := hyperscan.BlockMode
				if stream {
					m = hyperscan.StreamMode
					if mode.flag == hyperscan.SomLeftMost {
						m |= hyperscan.SomHorizonSmallMode
					}
				}
				db, err := (&hyperscan.DatabaseBuilder{Patterns: pats, Mode: m}).Build()
				if err != nil {
					b.Fatal(err)
				}
				defer db.Close()
				s, _ := hyperscan.NewScratch(db)
				defer s.Free()
				events := 0
				h := func(uint, uint64, uint64, uint, any) error { events++; return nil }
				if size, err := db.Size(); err == nil {
					b.ReportMetric(float64(size), "db-bytes")
				}
				if sdb, ok := db.(hyperscan.StreamDatabase); ok {
					if ss, err := sdb.StreamSize(); err == nil {
						b.ReportMetric(float64(ss), "stream-bytes")
					}
				}
				b.SetBytes(int64(len(buf)))
				for b.Loop() {
					events = 0
					if bdb, ok := db.(hyperscan.BlockDatabase); ok {
						bdb.Scan(buf, s, h, nil)
					} else {
						st, _ := db.(hyperscan.StreamDatabase).Open(0, s, h, nil)
						for i := 0; i < len(buf); i += 1460 {
							st.Scan(buf[i:min(i+1460, len(buf))])
						}
						st.Close()
					}
				}
				b.ReportMetric(gbps(int64(len(buf))*int64(b.N), b.Elapsed()), "Gbit/s")
				b.ReportMetric(float64(events), "events/scan")
			})
		}
	}
}

// BenchmarkPackLoad compares compiling the default pack with restoring it
// from its serialised form (what a restart with unchanged rules does).
func BenchmarkPackLoad(b *testing.B) {
	set, err := DefaultPack()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("compile", func(b *testing.B) {
		for b.Loop() {
			c, err := Compile(set)
			if err != nil {
				b.Fatal(err)
			}
			c.Close()
		}
	})
	c, err := Compile(set)
	if err != nil {
		b.Fatal(err)
	}
	data, err := c.MarshalBinary()
	c.Close()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("unmarshal", func(b *testing.B) {
		b.ReportMetric(float64(len(data)), "bytes")
		for b.Loop() {
			c, err := UnmarshalCompiled(set, data)
			if err != nil {
				b.Fatal(err)
			}
			c.Close()
		}
	})
}
