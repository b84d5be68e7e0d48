package transform

import "testing"

func TestValidators(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"luhn", "4111111111111111", true},
		{"luhn", "4111 1111 1111 1111", true},
		{"luhn", "5500-0000-0000-0004", true},
		{"luhn", "378282246310005", true},
		{"luhn", " 6011111111111117,", true},
		{"luhn", "4111111111111112", false},
		{"luhn", "0000000000000000", false},
		{"luhn", "4111  1111 1111 1111", false},
		{"luhn", "4111x1111111111111", false},
		{"luhn", "411111111111", false},         // 12 digits
		{"luhn", "41111111111111111111", false}, // 20 digits
		{"luhn", "", false},
		{"ssn", "536-22-8726", true},
		{"ssn", "536 22 8726", true},
		{"ssn", "536228726", true},
		{"ssn", "000-22-8726", false},
		{"ssn", "666-22-8726", false},
		{"ssn", "912-22-8726", false},
		{"ssn", "536-00-8726", false},
		{"ssn", "536-22-0000", false},
		{"ssn", "078-05-1120", false},
		{"ssn", "123-45-6789", false},
		{"ssn", "536-228-726", false},
		{"ssn", "536--22-8726", false},
		{"ssn", "5362287261", false},
		{"iban", "DE89 3704 0044 0532 0130 00", true},
		{"iban", "GB82WEST12345698765432", true},
		{"iban", "gb82west12345698765432", true},
		{"iban", "GB82WEST12345698765433", false},
		{"iban", "DE00 1234 5678 9012 3456 78", false},
		{"iban", "GB82", false},
		{"iban", "1282WEST12345698765432", false},
		{"iban", "GB82WEST1234569876543212345678901234567", false},
		{"jwt", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", true},
		{"jwt", "eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0.eyJhIjoxfQ.", true},
		{"jwt", "eyJmb28iOiJiYXIifQ.eyJzdWIiOiIxIn0.c2ln", false}, // header without alg
		{"jwt", "abc.def.ghi", false},
		{"jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0", false}, // two parts
		{"jwt", "eyJhbGciOiJIUzI1NiJ9.e+J.sig", false},
		{"jwt", "a.b.c.d", false},
	}
	for _, tc := range tests {
		v, ok := LookupValidator(tc.name)
		if !ok {
			t.Fatalf("no validator %q", tc.name)
		}
		if got := v([]byte(tc.in)); got != tc.want {
			t.Errorf("%s(%q) = %v, want %v", tc.name, tc.in, got, tc.want)
		}
	}
	if _, ok := LookupValidator("crc32"); ok {
		t.Error("LookupValidator(crc32) found something")
	}
}

func TestValidatorsNoAlloc(t *testing.T) {
	in := []byte("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U 4111 1111 1111 1111 DE89 3704 0044 0532 0130 00 536-22-8726")
	for _, name := range ValidatorNames() {
		v, _ := LookupValidator(name)
		if a := testing.AllocsPerRun(100, func() { v(in); v(in[:140]) }); a != 0 {
			t.Errorf("%s allocates %.1f times per call", name, a)
		}
	}
}

// FuzzValidators runs every validator on arbitrary bytes: they must not
// panic, and a valid card number must stay valid with separators trimmed.
func FuzzValidators(f *testing.F) {
	for _, s := range []string{"4111 1111 1111 1111", "536-22-8726", "DE89 3704 0044 0532 0130 00", "eyJhbGciOiJub25lIn0.eyJhIjoxfQ.x", "", "-", "a.b.c"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, name := range ValidatorNames() {
			v, _ := LookupValidator(name)
			v(b)
		}
		if validLuhn(b) {
			var digits []byte
			for _, c := range b {
				if isDigit(c) {
					digits = append(digits, c)
				}
			}
			if !validLuhn(digits) {
				t.Fatalf("luhn accepts %q but not its digits %q", b, digits)
			}
		}
	})
}
