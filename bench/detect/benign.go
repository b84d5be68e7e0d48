package detect

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net/url"
	"sort"
	"strings"
	"time"
)

// benign is one generated ordinary request.
type benign struct {
	Template string
	Request  []byte
}

// The benign corpus is generated from these templates (documented in
// docs/detection.md); each draws its values from the word lists below with
// a fixed seed, so the corpus is the same on every machine.
var benignTemplates = []struct {
	name string
	gen  func(r *rand.Rand) (method, uri, ctype, body string, extra [][2]string)
}{
	{"json-api", func(r *rand.Rand) (string, string, string, string, [][2]string) {
		body := fmt.Sprintf(`{"customer":{"name":%q,"email":%q,"address":%q},"items":[{"sku":"%s-%d","qty":%d,"note":%q}],"coupon":%q,"comment":%q}`,
			pick(r, names), pick(r, emails), pick(r, addresses), strings.ToUpper(pick(r, words)[:3]), r.IntN(9999), 1+r.IntN(5),
			pick(r, notes), pick(r, coupons), pick(r, sentences))
		return "POST", "/api/v1/orders", "application/json", body, nil
	}},
	{"json-get", func(r *rand.Rand) (string, string, string, string, [][2]string) {
		q := url.Values{"q": {pick(r, searches)}, "page": {fmt.Sprint(1 + r.IntN(20))}, "sort": {pick(r, []string{"price_asc", "-created_at", "relevance"})}}
		return "GET", "/api/v2/search?" + q.Encode(), "", "", [][2]string{{"Accept", "application/json"}, {"Authorization", "Bearer " + token(r, 40)}}
	}},
	{"form-post", func(r *rand.Rand) (string, string, string, string, [][2]string) {
		v := url.Values{"name": {pick(r, names)}, "email": {pick(r, emails)}, "subject": {pick(r, subjects)},
			"message": {pick(r, sentences) + " " + pick(r, sentences)}, "phone": {pick(r, phones)}, "newsletter": {"on"}}
		return "POST", "/contact", "application/x-www-form-urlencoded", v.Encode(), [][2]string{{"Origin", "https://shop.example"}}
	}},
	{"login", func(r *rand.Rand) (string, string, string, string, [][2]string) {
		v := url.Values{"username": {pick(r, emails)}, "password": {pick(r, passwords)}, "remember": {"1"}, "csrf_token": {token(r, 32)}}
		return "POST", "/account/login?next=%2Faccount%2Forders", "application/x-www-form-urlencoded", v.Encode(), nil
	}},
	{"upload", func(r *rand.Rand) (string, string, string, string, [][2]string) {
		bnd := "----WebKitFormBoundary" + token(r, 16)
		file := pick(r, filenames)
		content := base64.StdEncoding.EncodeToString([]byte(pick(r, sentences) + pick(r, sentences)))
		if strings.HasSuffix(file, ".txt") || strings.HasSuffix(file, ".csv") {
			content = "id,name,price\n1," + pick(r, words) + ",9.99\n2," + pick(r, words) + ",19.50\n"
		}
		body := "--" + bnd + "\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\n" + pick(r, subjects) + "\r\n" +
			"--" + bnd + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + file + "\"\r\nContent-Type: " + mimeOf(file) + "\r\n\r\n" + content + "\r\n" +
			"--" + bnd + "--\r\n"
		return "POST", "/documents/upload", "multipart/form-data; boundary=" + bnd, body, nil
	}},
	{"page-view", func(r *rand.Rand) (string, string, string, string, [][2]string) {
		path := pick(r, paths)
		if r.IntN(2) == 0 {
			path += "?" + url.Values{"utm_source": {pick(r, []string{"newsletter", "google", "t.co"})}, "ref": {pick(r, words)}}.Encode()
		}
		return "GET", path, "", "", [][2]string{{"Referer", "https://shop.example/" + pick(r, words)}}
	}},
	{"search", func(r *rand.Rand) (string, string, string, string, [][2]string) {
		return "GET", "/search?" + url.Values{"q": {pick(r, searches)}, "lang": {pick(r, []string{"en", "de-DE", "fr", "pt-BR"})}}.Encode(), "", "", nil
	}},
	{"graphql", func(r *rand.Rand) (string, string, string, string, [][2]string) {
		body := fmt.Sprintf(`{"operationName":"Product","variables":{"id":"%d","locale":"en-US"},"query":"query Product($id: ID!) { product(id: $id) { name price reviews(first: 5) { author rating text } } }"}`, r.IntN(100000))
		return "POST", "/graphql", "application/json", body, nil
	}},
}

// Word lists of the templates: punctuation, non-ASCII text, SQL and shell
// words used innocently.
var (
	names     = []string{"Jane Doe", "Seán O'Brien", "Zoë Müller-Lüdenscheidt", "José Álvarez", "李小龍", "Renée d'Arc", "Mary-Kate Smith Jr.", "Ólafur Arnalds", "Nguyễn Văn An", "Ana & Bob"}
	emails    = []string{"jane.doe@example.com", "s.obrien+shop@mail.example.ie", "zoe_m@example.de", "user123@example.org", "first.last@sub.example.co.uk"}
	addresses = []string{"12 Main St., Apt #4", "Königstraße 1, 70173 Stuttgart", "1600 Amphitheatre Pkwy (Building 40)", "Flat 3/2, 10 Queen's Rd", "Rue de l'Église 5"}
	notes     = []string{"leave at the door", "gift wrap, please!", "call before delivery: 555-0100", "no plastic bags :)", "2nd floor, ring twice", "50% off? great"}
	coupons   = []string{"SPRING24", "WELCOME-10", "", "VIP_2024", "FREESHIP"}
	sentences = []string{
		"Where is my order? It was due on Monday.", "I'd like to return the shoes (size 42) - they're too small.",
		"Great product, 5/5 — would buy again!", "Can you update my address to: 12 Main St., Apt #4?",
		"The app crashes when I select \"dark mode\" & restart.", "Please drop the second item from my order.",
		"Is the union station store open on Sundays?", "My script for the school play needs 3 copies.",
		"Price was $19.99 + tax; I was charged twice.", "Über-cool design, aber die Lieferung dauerte 2 Wochen.",
		"Où est ma commande n° 12345 ?", "¿Tienen esta camiseta en talla M?", "Delete my account, please; I no longer use it.",
		"I'm having trouble with the login page -- it says \"invalid\".", "Order #A-1234: 2x mug, 1x t-shirt (XL).",
		"Select the blue one, not the red one.", "From Monday to Friday, 9-5.", "Thanks!!! :-)",
	}
	subjects  = []string{"Order question", "Return request #5521", "Feedback: great service!", "Billing (urgent)", "Partnership / collaboration"}
	phones    = []string{"+1 (555) 010-0199", "+49 711 123456", "555.0100", "+44 20 7946 0958"}
	passwords = []string{"correct horse battery staple", "P@ssw0rd!2024", "s3cr3t'pass\"word", "Tr0ub4dor&3", "hunter2"}
	searches  = []string{"running shoes", "select comfort mattress", "union jack t-shirt", "drop earrings", "script fonts", "c++ programming book",
		"50% off", "usb-c cable 2m", "o'reilly books", "rock & roll vinyl", "where to buy tea?", "café crème", "1/2 inch drill bit", "or else movie"}
	words     = []string{"summer", "sale", "newsletter", "blog", "shoes", "account", "profile", "winter", "outlet", "kids"}
	paths     = []string{"/", "/index.html", "/products/12345", "/category/shoes/running", "/blog/2024/10/how-we-ship", "/static/app.3f9a2c.js", "/images/logo.svg", "/help/faq#returns", "/account/orders"}
	filenames = []string{"report (final).pdf", "photo_2024-05-01.jpg", "résumé.docx", "prices.csv", "notes.txt", "IMG 0042.PNG"}
	browsers  = [][][2]string{
		{{"User-Agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"},
			{"Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"},
			{"Accept-Language", "en-US,en;q=0.9,de;q=0.8"}, {"Accept-Encoding", "gzip, deflate, br, zstd"},
			{"Sec-Ch-Ua", `"Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99"`}, {"Sec-Ch-Ua-Mobile", "?0"},
			{"Sec-Ch-Ua-Platform", `"Windows"`}, {"Sec-Fetch-Dest", "document"}, {"Sec-Fetch-Mode", "navigate"}, {"Sec-Fetch-Site", "same-origin"},
			{"Sec-Fetch-User", "?1"}, {"Upgrade-Insecure-Requests", "1"}},
		{{"User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"},
			{"Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}, {"Accept-Language", "fr-FR,fr;q=0.8,en-US;q=0.5,en;q=0.3"},
			{"Accept-Encoding", "gzip, deflate, br"}, {"DNT", "1"}, {"Sec-GPC", "1"}, {"Upgrade-Insecure-Requests", "1"}},
		{{"User-Agent", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"},
			{"Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}, {"Accept-Language", "pt-BR,pt;q=0.9"}, {"Accept-Encoding", "gzip, deflate, br"}},
	}
)

func pick(r *rand.Rand, l []string) string { return l[r.IntN(len(l))] }

func token(r *rand.Rand, n int) string {
	const a = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = a[r.IntN(len(a))]
	}
	return string(b)
}

func mimeOf(f string) string {
	switch {
	case strings.HasSuffix(f, ".pdf"):
		return "application/pdf"
	case strings.HasSuffix(strings.ToLower(f), ".jpg"), strings.HasSuffix(strings.ToLower(f), ".png"):
		return "image/jpeg"
	case strings.HasSuffix(f, ".csv"):
		return "text/csv"
	case strings.HasSuffix(f, ".docx"):
		return "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
	}
	return "text/plain"
}

// longCookie is a browser's cookie header of about 3 KB: a session,
// analytics, consent and preference cookies.
func longCookie(r *rand.Rand) string {
	parts := []string{"session=" + token(r, 64), "_ga=GA1.2." + fmt.Sprint(r.Int64N(1e10)) + ".1712345678", "_gid=GA1.2.98765.1712345678",
		"consent=" + url.QueryEscape(`{"necessary":true,"analytics":false,"marketing":false}`), "prefs=theme%3Ddark%26lang%3Den-US",
		"cart=" + base64.URLEncoding.EncodeToString([]byte(`[{"sku":"A-1","qty":2},{"sku":"B-22","qty":1}]`)),
		"_fbp=fb.1.1712345678.123456789", "AWSALB=" + token(r, 120), "csrftoken=" + token(r, 32), "recently_viewed=12345%2C67890%2C24680"}
	for len(strings.Join(parts, "; ")) < 3000 {
		parts = append(parts, "ab_"+token(r, 6)+"="+token(r, 48))
	}
	return strings.Join(parts, "; ")
}

// benignCorpus generates n requests, cycling through the templates with
// browser header sets and long cookies.
func benignCorpus(n int) []benign {
	r := rand.New(rand.NewPCG(2026, 8))
	out := make([]benign, 0, n)
	for i := 0; i < n; i++ {
		t := benignTemplates[i%len(benignTemplates)]
		method, uri, ctype, body, extra := t.gen(r)
		var b strings.Builder
		b.WriteString(method + " " + uri + " HTTP/1.1\r\nHost: shop.example\r\n")
		for _, h := range browsers[r.IntN(len(browsers))] {
			b.WriteString(h[0] + ": " + h[1] + "\r\n")
		}
		for _, h := range extra {
			b.WriteString(h[0] + ": " + h[1] + "\r\n")
		}
		if r.IntN(3) > 0 {
			b.WriteString("Cookie: " + longCookie(r) + "\r\n")
		}
		if body != "" {
			b.WriteString("Content-Type: " + ctype + "\r\nContent-Length: " + fmt.Sprint(len(body)) + "\r\n")
		}
		b.WriteString("Connection: keep-alive\r\n\r\n" + body)
		out = append(out, benign{Template: t.name, Request: []byte(b.String())})
	}
	return out
}

// fpResult is one runner over the benign corpus.
type fpResult struct {
	Runner   string         `json:"runner"`
	Requests int            `json:"requests"`
	Blocked  int            `json:"blocked"`
	Rate     float64        `json:"false_positive_rate"`
	ByRule   map[uint32]int `json:"rules,omitempty"` // rules that matched, with counts
	ByTmpl   map[string]int `json:"blocked_by_template,omitempty"`
	Seconds  float64        `json:"seconds"`
	ReqPerS  float64        `json:"requests_per_second"`
}

// runBenign runs the corpus through r.
func runBenign(r runner, corpus []benign) *fpResult {
	res := &fpResult{Runner: r.Name(), Requests: len(corpus), ByRule: map[uint32]int{}, ByTmpl: map[string]int{}}
	start := time.Now()
	for _, b := range corpus {
		o := r.Run(b.Request)
		if o.Blocked {
			res.Blocked++
			res.ByTmpl[b.Template]++
		}
		for id := range o.IDs {
			res.ByRule[id]++
		}
	}
	res.Seconds = time.Since(start).Seconds()
	if res.Seconds > 0 {
		res.ReqPerS = float64(len(corpus)) / res.Seconds
	}
	if len(corpus) > 0 {
		res.Rate = float64(res.Blocked) / float64(len(corpus))
	}
	return res
}

// topRules formats the rules that matched most.
func (f *fpResult) topRules(n int) string { return topRules(f.ByRule, n) }

// topRules formats the n rules of counts that matched most ("id×count",
// most first, then by id).
func topRules(counts map[uint32]int, n int) string {
	type kv struct {
		id uint32
		n  int
	}
	var l []kv
	for id, c := range counts {
		l = append(l, kv{id, c})
	}
	sort.Slice(l, func(i, j int) bool { return l[i].n > l[j].n || l[i].n == l[j].n && l[i].id < l[j].id })
	var s []string
	for i := 0; i < len(l) && i < n; i++ {
		s = append(s, fmt.Sprintf("%d×%d", l[i].id, l[i].n))
	}
	return strings.Join(s, " ")
}
