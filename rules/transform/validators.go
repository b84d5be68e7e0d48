package transform

import (
	"bytes"
	"sort"
)

// Validator confirms that the text a regex matched is what the rule is
// after (a card number with a valid check digit, not any 16 digits). It is
// given the matched bytes and must be cheap, allocation-free and total.
type Validator func(match []byte) bool

var validators = map[string]Validator{
	"luhn": validLuhn,
	"ssn":  validSSN,
	"iban": validIBAN,
	"jwt":  validJWT,
}

// LookupValidator returns the validator with the given name.
func LookupValidator(name string) (Validator, bool) {
	v, ok := validators[name]
	return v, ok
}

// ValidatorNames lists the validators of the rule language.
func ValidatorNames() []string {
	out := make([]string, 0, len(validators))
	for n := range validators {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// trimNonDigits drops the bytes a regex may match around a number
// (boundaries, a leading separator).
func trimNonDigits(b []byte) []byte {
	for len(b) > 0 && !isDigit(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && !isDigit(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// validLuhn accepts a payment card number: 13 to 19 digits, optionally
// separated by single spaces or dashes, with a valid Luhn check digit, and
// not one digit repeated. Non-digits around the number are ignored.
func validLuhn(b []byte) bool {
	b = trimNonDigits(b)
	digits, sum := 0, 0
	same := true
	sep := false
	// Walk from the right: every second digit is doubled.
	for i := len(b) - 1; i >= 0; i-- {
		c := b[i]
		if c == ' ' || c == '-' {
			if sep {
				return false // two separators in a row
			}
			sep = true
			continue
		}
		if !isDigit(c) {
			return false
		}
		sep = false
		d := int(c - '0')
		if digits > 0 && c != b[len(b)-1] {
			same = false
		}
		if digits%2 == 1 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		digits++
		if digits > 19 {
			return false
		}
	}
	return digits >= 13 && !same && sum%10 == 0
}

// validSSN accepts a US Social Security number in the 3-2-4 form (dashes,
// spaces or nothing between the groups) whose area, group and serial are
// ones the SSA issues: area not 000, 666 or 900-999, group not 00, serial
// not 0000, and not a number known from advertising (078-05-1120,
// 219-09-9999, 123-45-6789).
func validSSN(b []byte) bool {
	b = trimNonDigits(b)
	var d [9]byte
	n := 0
	for i := 0; i < len(b); i++ {
		c := b[i]
		if isDigit(c) {
			if n == 9 {
				return false
			}
			d[n] = c - '0'
			n++
			continue
		}
		if (c != '-' && c != ' ') || (n != 3 && n != 5) || !isDigit(b[i+1]) {
			return false
		}
	}
	if n != 9 {
		return false
	}
	area := int(d[0])*100 + int(d[1])*10 + int(d[2])
	group := int(d[3])*10 + int(d[4])
	serial := int(d[5])*1000 + int(d[6])*100 + int(d[7])*10 + int(d[8])
	switch {
	case area == 0 || area == 666 || area >= 900, group == 0, serial == 0:
		return false
	case area == 78 && group == 5 && serial == 1120,
		area == 219 && group == 9 && serial == 9999,
		area == 123 && group == 45 && serial == 6789:
		return false
	}
	return true
}

// validIBAN accepts an IBAN (two letters, two check digits, 11 to 30
// alphanumerics, spaces allowed between) whose ISO 13616 mod-97 check holds.
func validIBAN(b []byte) bool {
	// Trim what a regex may catch around it.
	for len(b) > 0 && !isAlnum(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && !isAlnum(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	var chars [34]byte
	n := 0
	for _, c := range b {
		if c == ' ' {
			continue
		}
		if !isAlnum(c) || n == len(chars) {
			return false
		}
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		chars[n] = c
		n++
	}
	if n < 15 || !isUpper(chars[0]) || !isUpper(chars[1]) || !isDigit(chars[2]) || !isDigit(chars[3]) {
		return false
	}
	// Move the first four characters to the end and read letters as 10..35.
	rem := 0
	for i := 0; i < n; i++ {
		c := chars[(i+4)%n]
		if isDigit(c) {
			rem = (rem*10 + int(c-'0')) % 97
		} else {
			rem = (rem*100 + int(c-'A'+10)) % 97
		}
	}
	return rem == 1
}

func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }
func isAlnum(c byte) bool {
	return isDigit(c) || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// maxJWTHeader bounds the JOSE header validJWT decodes.
const maxJWTHeader = 512

// validJWT accepts a JSON Web Token: three base64url segments separated by
// dots, the first decoding to a JSON object with an "alg" member. It tells
// a real token from any dotted base64 (for example a file name).
func validJWT(b []byte) bool {
	// Isolate header.payload.signature.
	var seg [3][]byte
	n, start := 0, 0
	for i := 0; i <= len(b); i++ {
		if i < len(b) && b[i] != '.' {
			if _, ok := b64val(b[i]); !ok || b[i] == '+' || b[i] == '/' {
				return false
			}
			continue
		}
		if n == 3 {
			return false
		}
		seg[n] = b[start:i]
		n++
		start = i + 1
	}
	if n != 3 || len(seg[0]) < 10 || len(seg[1]) < 2 || len(seg[0]) > maxJWTHeader/3*4 {
		return false
	}
	var buf [maxJWTHeader]byte
	var st tstate
	hdr, _ := base64Step(buf[:0], seg[0], &st, true)
	// Skip JSON whitespace, expect an object mentioning "alg".
	i := 0
	for i < len(hdr) && isSpace(hdr[i]) {
		i++
	}
	if i >= len(hdr) || hdr[i] != '{' {
		return false
	}
	return bytes.Contains(hdr[i:], []byte(`"alg"`))
}
