// Package randtext generates the random values that the rule package's
// property tests feed to transforms and detectors: bytes of a chosen
// alphabet mixed with whole words, so escapes and keywords turn up far
// more often than in uniform noise.
package randtext

import "math/rand/v2"

// Over returns a random string of up to n bytes drawn from alphabet and
// the given words.
func Over(r *rand.Rand, alphabet []byte, words []string, n int) []byte {
	var b []byte
	for len(b) < n {
		if len(words) > 0 && r.IntN(3) == 0 {
			b = append(b, words[r.IntN(len(words))]...)
			continue
		}
		b = append(b, alphabet[r.IntN(len(alphabet))])
	}
	return b[:r.IntN(n+1)]
}
