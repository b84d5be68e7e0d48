package detect

import (
	"testing"
)

// BenchmarkBenignCRS measures the imported CRS (paranoia level 1) over
// the benign corpus, one request per iteration, one core.
func BenchmarkBenignCRS(b *testing.B) {
	set, _, err := CRSRules(1)
	if err != nil {
		b.Fatal(err)
	}
	o, err := NewOffline("crs", set)
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close()
	corpus := BenignCorpus(64)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		o.Run(corpus[i%len(corpus)].Request)
	}
}
