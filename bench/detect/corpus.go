package detect

import (
	"bufio"
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"

	"github.com/deepwall/deepwall/internal/ascii"
)

// The public corpora (corpus/SOURCES.md names each list's repository,
// commit and licence; corpus/build.sh rebuilds them from snapshots).
//
//go:embed corpus/attack/*.txt corpus/benign/*.txt
var corpusFS embed.FS

// Placements are where a corpus payload is put in a request: a query
// parameter, a form field, a JSON string, a cookie and a request header.
var placements = []string{"query", "form", "json", "cookie", "header"}

// attackClasses are the attack corpora, in report order.
var attackClasses = []string{"sqli", "xss", "cmdi", "traversal", "lfi", "ssti", "nosqli", "ldapi"}

// corpusCase is one request built from a corpus line.
type corpusCase struct {
	Set, Placement string // class (attacks) or benign set; placement
	Request        []byte
}

// readLines returns the lines of an embedded corpus file.
func readLines(name string) ([]string, error) {
	b, err := corpusFS.ReadFile(path.Join("corpus", name))
	if err != nil {
		return nil, err
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if l := sc.Text(); l != "" {
			out = append(out, l)
		}
	}
	return out, sc.Err()
}

// attackCorpus builds every attack payload in every placement.
func attackCorpus() ([]corpusCase, error) {
	var out []corpusCase
	for _, class := range attackClasses {
		lines, err := readLines("attack/" + class + ".txt")
		if err != nil {
			return nil, err
		}
		for _, p := range placements {
			for _, l := range lines {
				out = append(out, corpusCase{Set: class, Placement: p, Request: placeValue(p, l)})
			}
		}
	}
	return out, nil
}

// benignCorpora builds the public benign sets: libinjection's false
// positives (inputs that fool SQL tokenizers) in every placement, and real
// user agents as the User-Agent of a browser's page view.
func benignCorpora() ([]corpusCase, error) {
	var out []corpusCase
	tok, err := readLines("benign/tokenizer.txt")
	if err != nil {
		return nil, err
	}
	for _, p := range placements {
		for _, l := range tok {
			out = append(out, corpusCase{Set: "tokenizer", Placement: p, Request: placeValue(p, l)})
		}
	}
	uas, err := readLines("benign/useragents.txt")
	if err != nil {
		return nil, err
	}
	for _, ua := range uas {
		out = append(out, corpusCase{Set: "useragents", Placement: "header", Request: request("GET", "/products/12345?ref=home", "", "", [][2]string{{"User-Agent", ua}})})
	}
	return out, nil
}

// placeValue puts value v where p says, encoded as a client sends it:
// list payloads are sent as written (an escape in the list is an escape
// on the wire), only the bytes that would break the placement's syntax
// are percent-encoded (JSON-escaped in a JSON body).
func placeValue(p, v string) []byte {
	switch p {
	case "query":
		return request("GET", "/search?lang=en&q="+escape(v, " #&+\""), "", "", nil)
	case "form":
		return request("POST", "/search", "application/x-www-form-urlencoded", "lang=en&q="+escape(v, " #&+\""), nil)
	case "json":
		js, _ := json.Marshal(map[string]any{"lang": "en", "q": v})
		return request("POST", "/api/search", "application/json", string(js), nil)
	case "cookie":
		return request("GET", "/account", "", "", [][2]string{{"Cookie", "sid=9f8e7d6c5b4a3210; q=" + escape(v, " ;,\"\\")}})
	default:
		return request("GET", "/", "", "", [][2]string{{"User-Agent", escape(v, "")}})
	}
}

// escape percent-encodes the bytes of special, control bytes, bytes
// above 0x7e and a '%' that does not start an escape.
func escape(v, special string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '%' && i+2 < len(v) && ascii.IsHex(v[i+1]) && ascii.IsHex(v[i+2]):
			b.WriteByte(c)
		case c < 0x20 || c > 0x7e || c == '%' || strings.IndexByte(special, c) >= 0:
			fmt.Fprintf(&b, "%%%02X", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// request is an HTTP/1.1 request from a desktop browser.
func request(method, uri, ctype, body string, headers [][2]string) []byte {
	var b strings.Builder
	b.WriteString(method + " " + uri + " HTTP/1.1\r\nHost: shop.example\r\n")
	ua := "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
	for _, h := range headers {
		if h[0] == "User-Agent" {
			ua = h[1]
		}
	}
	b.WriteString("User-Agent: " + ua + "\r\nAccept: text/html,application/xhtml+xml,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.9\r\n")
	for _, h := range headers {
		if h[0] != "User-Agent" {
			b.WriteString(h[0] + ": " + h[1] + "\r\n")
		}
	}
	if body != "" {
		fmt.Fprintf(&b, "Content-Type: %s\r\nContent-Length: %d\r\n", ctype, len(body))
	}
	b.WriteString("Connection: close\r\n\r\n" + body)
	return []byte(b.String())
}

// corpusResult is one runner on the public corpora.
type corpusResult struct {
	Runner string `json:"runner"`
	// Caught[set][placement] = {blocked, requests}: attack classes and
	// benign sets alike (for benign sets blocked is a false positive).
	Caught map[string]map[string][2]int `json:"blocked"`
	// FPRules counts the rules that blocked benign requests.
	FPRules map[uint32]int `json:"false_positive_rules,omitempty"`
	// Misses keeps a few missed attacks per class for the report.
	Misses map[string][]string `json:"misses,omitempty"`
}

// runCorpus runs cases through r.
func runCorpus(r runner, cases []corpusCase, benignSets map[string]bool) *corpusResult {
	res := &corpusResult{Runner: r.Name(), Caught: map[string]map[string][2]int{}, FPRules: map[uint32]int{}, Misses: map[string][]string{}}
	for _, c := range cases {
		out := r.Run(c.Request)
		m := res.Caught[c.Set]
		if m == nil {
			m = map[string][2]int{}
			res.Caught[c.Set] = m
		}
		n := m[c.Placement]
		n[1]++
		if out.Blocked {
			n[0]++
			if benignSets[c.Set] {
				for id := range out.IDs {
					res.FPRules[id]++
				}
			}
		} else if !benignSets[c.Set] && c.Placement == "query" && len(res.Misses[c.Set]) < 8 {
			res.Misses[c.Set] = append(res.Misses[c.Set], requestLine(c.Request))
		}
		m[c.Placement] = n
	}
	return res
}

func requestLine(req []byte) string {
	l, _, _ := bytes.Cut(req, []byte("\r\n"))
	return string(l)
}

// sum adds the counts of sets over placements (nil: every placement).
func (c *corpusResult) sum(sets []string, pls []string) [2]int {
	var t [2]int
	for _, s := range sets {
		for p, n := range c.Caught[s] {
			if pls == nil || slices.Contains(pls, p) {
				t[0] += n[0]
				t[1] += n[1]
			}
		}
	}
	return t
}

// ratio is n[0] out of n[1], as a percentage.
func ratio(n [2]int) string { return pct(n[0], n[1]) }

// writeCorpusTables writes the per-class, per-placement and benign tables
// of the public corpora, one column per runner.
func writeCorpusTables(w io.Writer, rs []*corpusResult, benignSets []string) {
	if len(rs) == 0 {
		return
	}
	head := func(first string) {
		fmt.Fprintf(w, "| %s |", first)
		for _, r := range rs {
			fmt.Fprintf(w, " %s |", r.Runner)
		}
		fmt.Fprintf(w, "\n|---|%s\n", strings.Repeat("---|", len(rs)))
	}
	fmt.Fprintf(w, "### Public attack corpora, by class (every placement; %% of requests blocked)\n\n")
	head("class")
	for _, cl := range attackClasses {
		fmt.Fprintf(w, "| %s (%d) |", cl, rs[0].sum([]string{cl}, nil)[1])
		for _, r := range rs {
			fmt.Fprintf(w, " %s |", ratio(r.sum([]string{cl}, nil)))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "| **all attacks** (%d) |", rs[0].sum(attackClasses, nil)[1])
	for _, r := range rs {
		fmt.Fprintf(w, " **%s** |", ratio(r.sum(attackClasses, nil)))
	}
	fmt.Fprintf(w, "\n\n### Public attack corpora, by placement (every class)\n\n")
	head("placement")
	for _, p := range placements {
		fmt.Fprintf(w, "| %s |", p)
		for _, r := range rs {
			fmt.Fprintf(w, " %s |", ratio(r.sum(attackClasses, []string{p})))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "\n### Benign corpora: false positives (%% of requests blocked)\n\n")
	head("set")
	for _, s := range benignSets {
		fmt.Fprintf(w, "| %s (%d) |", s, rs[0].sum([]string{s}, nil)[1])
		for _, r := range rs {
			fmt.Fprintf(w, " %s |", ratio(r.sum([]string{s}, nil)))
		}
		fmt.Fprintln(w)
	}
	for _, r := range rs {
		if r.Runner != "deepwall-default" {
			continue
		}
		fmt.Fprintf(w, "\n### %s: class × placement\n\n| class |", r.Runner)
		for _, p := range placements {
			fmt.Fprintf(w, " %s |", p)
		}
		fmt.Fprintf(w, "\n|---|%s\n", strings.Repeat("---|", len(placements)))
		for _, cl := range append(append([]string{}, attackClasses...), benignSets...) {
			fmt.Fprintf(w, "| %s |", cl)
			for _, p := range placements {
				fmt.Fprintf(w, " %s |", ratio(r.sum([]string{cl}, []string{p})))
			}
			fmt.Fprintln(w)
		}
		if top := topRules(r.FPRules, 10); top != "" {
			fmt.Fprintf(w, "\nRules behind its false positives: %s\n", top)
		}
		for _, cl := range attackClasses {
			if m := r.Misses[cl]; len(m) > 0 {
				fmt.Fprintf(w, "\nMissed %s (query, first %d): `%s`\n", cl, len(m), strings.Join(m, "`, `"))
			}
		}
	}
	fmt.Fprintln(w)
}
