package detect

import (
	"bytes"
	"testing"

	"github.com/deepwall/deepwall/rules"
)

// TestPublicCorpora runs the default pack over the public attack and
// benign corpora (about 12,000 requests, a few seconds) and holds it to
// the rates measured when the corpora were added, so that a pack change
// that loses detection or gains false positives fails here; -v prints the
// tables.
func TestPublicCorpora(t *testing.T) {
	if testing.Short() {
		t.Skip("12,000 requests through the engine")
	}
	att, err := attackCorpus()
	if err != nil {
		t.Fatal(err)
	}
	ben, err := benignCorpora()
	if err != nil {
		t.Fatal(err)
	}
	pack, err := rules.DefaultPack()
	if err != nil {
		t.Fatal(err)
	}
	o, err := newOffline("deepwall-default", pack)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	benignSets := []string{"tokenizer", "useragents"}
	res := runCorpus(o, append(att, ben...), map[string]bool{"tokenizer": true, "useragents": true})
	var md bytes.Buffer
	writeCorpusTables(&md, []*corpusResult{res}, benignSets)
	t.Log("\n" + md.String())
	rate := func(sets ...string) float64 {
		n := res.sum(sets, nil)
		return float64(n[0]) / float64(n[1])
	}
	for _, c := range []struct {
		sets     []string
		min, max float64
	}{
		{attackClasses, 0.92, 1},
		{[]string{"useragents"}, 0, 0.001},
		{[]string{"tokenizer"}, 0, 0.03},
	} {
		if r := rate(c.sets...); r < c.min || r > c.max {
			t.Errorf("%v: %.2f%% blocked, want %.1f%%..%.1f%%", c.sets, 100*r, 100*c.min, 100*c.max)
		}
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"../x":        "../x",
		"%2e%2e%2f":   "%2e%2e%2f",
		"100%":        "100%25",
		"a b&c":       "a%20b%26c",
		"é":           "%C3%A9",
		"x\r\nSet: y": "x%0D%0ASet:%20y",
	} {
		if got := escape(in, " &"); got != want {
			t.Errorf("escape(%q) = %q, want %q", in, got, want)
		}
	}
}
