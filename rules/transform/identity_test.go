package transform

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/deepwall/deepwall/rules/internal/randtext"
)

// TestTransformIdentity checks that a transform claiming Identity for a
// value's byte classes leaves every such value unchanged, and that
// Transformer.Apply (which skips those steps) gives what applying every
// step gives.
func TestTransformIdentity(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	words := []string{"%2e%2e/", "&lt;", "&#x3c;", "\\x3c", "/*", "*/", "/../", "./", "//", "AbC", "  ", "\t", "\x00", "+", ",;", "'\"^", "\\", ".."}
	for tr := Transform(1); tr < numTransforms; tr++ {
		need := identityIfNone[tr]
		if need == 0 {
			continue
		}
		allowed := (AllClasses &^ need).Bytes()
		for i := 0; i < 3000; i++ {
			var ws []string
			for _, w := range words {
				if ClassesOf([]byte(w))&need == 0 {
					ws = append(ws, w)
				}
			}
			v := randtext.Over(r, allowed, ws, 40)
			if !tr.Identity(ClassesOf(v)) {
				t.Fatalf("%s: Identity false for %q (classes outside %b)", tr, v, need)
			}
			if got := tr.Append(nil, v); !bytes.Equal(got, v) {
				t.Fatalf("%s claims identity but changes %q to %q", tr, v, got)
			}
		}
	}
	cmdAllowed := (AllClasses &^ cmdLineSpecial).Bytes()
	for i := 0; i < 3000; i++ {
		v := randtext.Over(r, cmdAllowed, []string{"AbC", "/", "(", "x/y", "A(b"}, 40)
		if e := CmdLine.Effect(ClassesOf(v)); e != Lowercase && e != 0 {
			t.Fatalf("cmd_line on %q: effect %v", v, CmdLine.Effect(ClassesOf(v)))
		}
		if got, want := CmdLine.Append(nil, v), Lowercase.Append(nil, v); !bytes.Equal(got, want) {
			t.Fatalf("cmd_line(%q) = %q, lowercase gives %q", v, got, want)
		}
	}
	all := AllClasses.Bytes()
	chains := [][]Transform{
		{URLDecode, URLDecode, HTMLEntityDecode, JSDecode, RemoveNulls, Lowercase},
		{URLDecode, URLDecode, RemoveNulls, CmdLine},
		{URLDecode, URLDecode, JSDecode, RemoveNulls, ReplaceComments, CompressWhitespace, Lowercase},
		{URLDecode, URLDecode, NormalizePathWin, Lowercase},
		{Base64Decode, Lowercase, Trim},
	}
	var tf Transformer
	for i := 0; i < 20000; i++ {
		chain := chains[i%len(chains)]
		v := randtext.Over(r, all, words, 48)
		if i%2 == 0 {
			v = randtext.Over(r, []byte("abcXYZ019_-."), words[len(words)-3:], 48)
		}
		want := v
		for _, tr := range chain {
			want = tr.Append(nil, want)
		}
		if got := tf.Apply(chain, v); !bytes.Equal(got, want) {
			t.Fatalf("Apply(%v, %q) = %q, want %q", chain, v, got, want)
		}
	}
}
