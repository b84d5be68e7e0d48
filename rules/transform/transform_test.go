package transform

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

func TestTransforms(t *testing.T) {
	tests := []struct {
		t       Transform
		in, out string
	}{
		{URLDecode, "a%20b+c%2Fd", "a b c/d"},
		{URLDecode, "%3Cscript%3E", "<script>"},
		{URLDecode, "%2527", "%27"},
		{URLDecode, "100%", "100%"},
		{URLDecode, "%zz%4", "%zz%4"},
		{URLDecode, "%u0041%uff0e%uFF0F%u2215%u2024", "A.//."},
		{URLDecode, "%u00e9", "é"},
		{URLDecode, "%ud800x", "%ud800x"},
		{URLDecode, "%c0%ae", "\xc0\xae"},
		{Lowercase, "SeLeCT ÄÖ", "select ÄÖ"},
		{HTMLEntityDecode, "&lt;script&gt;", "<script>"},
		{HTMLEntityDecode, "&#106;&#x61;&#X76;a", "java"},
		{HTMLEntityDecode, "javascript&colon;alert&lpar;1&rpar;", "javascript:alert(1)"},
		{HTMLEntityDecode, "&#0000106&#0000097", "ja"},
		{HTMLEntityDecode, "a&Tab;b&NewLine;c", "a\tb\nc"},
		{HTMLEntityDecode, "&amp &lt", "& <"},
		{HTMLEntityDecode, "&colon &unknown; &#; &#x; & x", "&colon &unknown; &#; &#x; & x"},
		{HTMLEntityDecode, "&#0;&#xd800;&#x110000;", "&#0;&#xd800;&#x110000;"},
		{HTMLEntityDecode, "&nbsp;", "\u00a0"},
		{HTMLEntityDecode, "&#0000000000000000060;x&#x00000000000000000041", "<xA"},
		{HTMLEntityDecode, "&#00000000000000000000;&#x000000000000000000g", "&#00000000000000000000;&#x000000000000000000g"},
		{RemoveNulls, "a\x00b\x00\x00c", "abc"},
		{CompressWhitespace, "a  \t\n b \r\n", "a b "},
		{RemoveWhitespace, " a \tb\nc ", "abc"},
		{NormalizePath, "/a/b/../c/./d//e/", "/a/c/d/e/"},
		{NormalizePath, "/../../etc/passwd", "/etc/passwd"},
		{NormalizePath, "a/../../b", "../b"},
		{NormalizePath, "../..", "../.."},
		{NormalizePath, "/a/b/..", "/a/"},
		{NormalizePath, "/", "/"},
		{NormalizePath, "", ""},
		{NormalizePath, "//x//.//y", "/x/y"},
		{NormalizePathWin, "C:\\a\\..\\b\\.\\c", "C:/b/c"},
		{NormalizePathWin, "\\..\\..\\windows\\win.ini", "/windows/win.ini"},
		{Base64Decode, "aGVsbG8gd29ybGQ=", "hello world"},
		{Base64Decode, "aGVs\nbG8", "hello"},
		{Base64Decode, "P-_-", "?\xef\xfe"},
		{Base64Decode, "YQ==YWI=", "aab"},
		{HexDecode, "414243", "ABC"},
		{HexDecode, "0x41 4", "0xA 4"},
		{HexDecode, "4g1", "4g1"},
		{JSDecode, `\x3cscript\x3e`, "<script>"},
		{JSDecode, `\u0061\u{62}\u{1F600}`, "ab\U0001F600"},
		{JSDecode, `\'\"\\\/`, `'"\/`},
		{JSDecode, `\101\0\400`, "A\x00 0"},
		{JSDecode, `\n\t\r\b\f\v`, "\n\t\r\b\f\v"},
		{JSDecode, `..\..\win.ini`, `..\..\win.ini`},
		{JSDecode, `\x4\u12\u{}\ud800\`, `\x4\u12\u{}\ud800\`},
		{CmdLine, `C^a"t  /E't'c/pa\ss\wd`, "cat/etc/passwd"},
		{CmdLine, "echo;id,uname   (x)", "echo id uname(x)"},
		{CmdLine, "a \t", "a "},
		{ReplaceComments, "union/**/select/*x*/1", "union select 1"},
		{ReplaceComments, "a/*unterminated", "a "},
		{ReplaceComments, "/*!50000select*/ 1", " select  1"},
		{ReplaceComments, "a/b*c", "a/b*c"},
		{Trim, " \t a b \n", "a b"},
		{CSSDecode, `\3c script\3E`, "<script>"},
		{CSSDecode, `j\61vascript:\000061lert`, "javascript:alert"},
		{CSSDecode, "a\\\nb" + `\x\ff1c\0`, "abx<\x00"},
		{CSSDecode, `\e9 \110000`, "é\ufffd"},
		{CSSDecode, `tail\`, "tail"},
		{EscapeSeqDecode, `\x41\101\n\t\q\\`, "AA\n\tq\\"},
		{EscapeSeqDecode, `\x4g\777\`, "x4g\xff\\"},
		{RemoveCommentsChar, "se/*x*/lect--1#2<!--a-->", "sexlect12a"},
		{RemoveCommentsChar, "a-b*c/d", "a-b*c/d"},
		{Utf8ToUnicode, "aé€\U0001F600\xff", "a%u00e9%u20ac%u1f600%ufffd"},
		{Utf8ToUnicode, "plain", "plain"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/%q", tc.t, tc.in), func(t *testing.T) {
			got := tc.t.Append([]byte("pre:"), []byte(tc.in))
			if string(got) != "pre:"+tc.out {
				t.Errorf("%s(%q) = %q, want %q", tc.t, tc.in, got[4:], tc.out)
			}
		})
	}
}

func TestParseTransformNames(t *testing.T) {
	for _, name := range Names() {
		tr, err := Parse(name)
		if err != nil || tr.String() != name {
			t.Errorf("Parse(%q) = %v, %v", name, tr, err)
		}
	}
	if _, err := Parse("urldecode"); err == nil {
		t.Error("Parse(urldecode) succeeded")
	}
	if got := Transform(0).String(); got != "transform(0)" {
		t.Errorf("Transform(0).String() = %q", got)
	}
}

// TestTransformNoAlloc checks the contract: no allocation when dst has
// len(src) spare capacity.
func TestTransformNoAlloc(t *testing.T) {
	src := []byte(`%3Cscript%3E &lt;b&gt; \x41\u0042 /a/../b//c/* x */ aGVsbG8= 414243 C^a"t /etc \3c é-- ` + "\x00 \t ")
	dst := make([]byte, 0, MaxExpansion*len(src))
	for tr := Transform(1); tr < numTransforms; tr++ {
		allocs := testing.AllocsPerRun(100, func() { dst = tr.Append(dst[:0], src) })
		if allocs != 0 {
			t.Errorf("%s allocates %.1f times per call", tr, allocs)
		}
	}
	var tf Transformer
	chain := []Transform{URLDecode, URLDecode, HTMLEntityDecode, JSDecode, RemoveNulls, Lowercase}
	tf.Apply(chain, src)
	if allocs := testing.AllocsPerRun(100, func() { tf.Apply(chain, src) }); allocs != 0 {
		t.Errorf("Transformer.Apply allocates %.1f times per call after warm-up", allocs)
	}
	st := NewStream(chain)
	st.Write(src)
	st.Close()
	if allocs := testing.AllocsPerRun(100, func() { st.Write(src[:20]); st.Write(src[20:]); st.Close() }); allocs != 0 {
		t.Errorf("Stream allocates %.1f times per stream after warm-up", allocs)
	}
}

// streamEqual checks that transforming src in the given pieces gives the
// same bytes as transforming it whole.
func streamEqual(tb testing.TB, chain []Transform, src []byte, cuts []int) {
	tb.Helper()
	var whole Transformer
	want := append([]byte(nil), whole.Apply(chain, src)...)
	st := NewStream(chain)
	var got []byte
	prev := 0
	for _, c := range cuts {
		if c < prev || c > len(src) {
			continue
		}
		got = append(got, st.Write(src[prev:c])...)
		prev = c
	}
	got = append(got, st.Write(src[prev:])...)
	got = append(got, st.Close()...)
	if !bytes.Equal(got, want) {
		tb.Errorf("chain %v on %q cut at %v: stream gives %q, whole gives %q", chain, src, cuts, got, want)
	}
}

func TestStreamTransformerSplits(t *testing.T) {
	inputs := []string{
		"a%20b%u0041%uff0ec%2",
		"&lt;script&gt;&#x6a;&#0000106&colon;&amp",
		`\x3c\u0061\u{1F600}\101\'\`,
		"a   b\t\t c  ",
		`c^a"t  /etc ; ls , (x)  `,
		"union/**/select/*!50000 x*/ /* open",
		"aGVsbG8gd29ybGQ=YWI",
		"41 42 4",
		"A\x00B",
		`\3c scr\69 pt\\x\`,
		`\x41\10\n--<!--#/*`,
		"aé€\xe2\x82",
		// Leading zeros longer than a stream step may hold back.
		"&#0000000000000000060;x&#x00000000000000000041 &#00000000000000000000;&#0000000000000000000",
	}
	for tr := Transform(1); tr < numTransforms; tr++ {
		if tr.BlockOnly() && tr != Utf8ToUnicode {
			continue
		}
		for _, in := range inputs {
			for cut := 0; cut <= len(in); cut++ {
				streamEqual(t, []Transform{tr}, []byte(in), []int{cut})
			}
			// Byte by byte.
			cuts := make([]int, len(in))
			for i := range cuts {
				cuts[i] = i
			}
			streamEqual(t, []Transform{tr}, []byte(in), cuts)
		}
	}
	chain := []Transform{URLDecode, URLDecode, HTMLEntityDecode, JSDecode, RemoveNulls, ReplaceComments, CompressWhitespace, Lowercase}
	in := []byte("id=1%2527%2520UNION/**/SELECT%20&lt;x&gt;\\u0041  %2")
	for cut := 0; cut <= len(in); cut++ {
		streamEqual(t, chain, in, []int{cut})
	}
}

// FuzzTransforms checks every transform on arbitrary input: no panic,
// output never longer than input, dst's prefix kept, and for stream-capable
// transforms the chunked result equal to the whole one.
func FuzzTransforms(f *testing.F) {
	for _, s := range []string{"%41%u0041+", "&#x41;&lt", `\x41\u{41}\1`, "/a/../b", "YWJj", "c^a't", "/*!1 a*/", "  a  ", "4142"} {
		f.Add([]byte(s), uint16(3))
	}
	f.Fuzz(func(t *testing.T, src []byte, cut uint16) {
		for tr := Transform(1); tr < numTransforms; tr++ {
			out := tr.Append([]byte("xy"), src)
			if string(out[:2]) != "xy" {
				t.Fatalf("%s clobbered dst's prefix", tr)
			}
			if grow := len(out) - 2; grow > len(src) && (tr != Utf8ToUnicode || grow > MaxExpansion*len(src)) {
				t.Fatalf("%s grew %d bytes to %d", tr, len(src), grow)
			}
			if !tr.BlockOnly() || tr == Utf8ToUnicode {
				c := int(cut) % (len(src) + 1)
				streamEqual(t, []Transform{tr}, src, []int{c, c + int(cut%7)})
			}
		}
	})
}

func BenchmarkTransformChain(b *testing.B) {
	src := bytes.Repeat([]byte("q=caf%C3%A9+cr%C3%A8me&id=1%2527%2520UNION&x=&lt;b&gt;\\u0041 "), 20)
	chain := []Transform{URLDecode, URLDecode, HTMLEntityDecode, JSDecode, RemoveNulls, Lowercase}
	var tf Transformer
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		tf.Apply(chain, src)
	}
}

func TestTransformRandomStream(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("%uU0123456789abcdefxX&#;lt{}\\/*!. \t=+^'\"-<>\n")
	chains := [][]Transform{
		{URLDecode, HTMLEntityDecode, JSDecode},
		{URLDecode, URLDecode, ReplaceComments, CompressWhitespace, Lowercase},
		{HexDecode, Base64Decode},
		{CmdLine, RemoveWhitespace},
		{CSSDecode, EscapeSeqDecode, RemoveCommentsChar},
	}
	for i := 0; i < 2000; i++ {
		n := r.IntN(40)
		in := make([]byte, n)
		for j := range in {
			in[j] = alphabet[r.IntN(len(alphabet))]
		}
		cuts := []int{r.IntN(n + 1), r.IntN(n + 1), r.IntN(n + 1)}
		sortInts(cuts)
		streamEqual(t, chains[i%len(chains)], in, cuts)
	}
}

func sortInts(a []int) {
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && a[j] < a[j-1]; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
}
