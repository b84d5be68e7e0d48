package dpi

// MaxMatched bounds Alert.Matched.
const MaxMatched = 128

// Mask hides a secret for logging, keeping enough to recognise it. In a
// mostly-digit secret only digits are masked and separators kept: with 12
// digits or more (a card number) the first and last four stay
// (4111********1111, as PCI DSS allows), with fewer (an SSN) only the last
// two (***-**-**20). Other secrets keep their first and last four characters
// when longer than twelve, and two otherwise.
// The result is bounded by MaxMatched.
func Mask(secret []byte) string {
	if len(secret) > MaxMatched*4 {
		secret = secret[:MaxMatched*4]
	}
	digits := 0
	for _, c := range secret {
		if c >= '0' && c <= '9' {
			digits++
		}
	}
	out := make([]byte, len(secret))
	copy(out, secret)
	if digits >= 4 && digits*10 >= len(secret)*7 {
		head, tail := 0, 2
		if digits >= 12 {
			head, tail = 4, 4
		}
		seen := 0
		for i, c := range out {
			if c < '0' || c > '9' {
				continue
			}
			if seen >= head && seen < digits-tail {
				out[i] = '*'
			}
			seen++
		}
	} else {
		keep := 2
		if len(out) > 12 {
			keep = 4
		}
		for i := range out {
			if i >= keep && i < len(out)-keep || len(out) <= 2*keep && i >= keep/2 {
				out[i] = '*'
			}
		}
	}
	if len(out) > MaxMatched {
		out = append(out[:MaxMatched-3], "..."...)
	}
	return string(out)
}
