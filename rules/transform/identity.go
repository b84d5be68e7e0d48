package transform

// ByteClasses is a set of byte classes: one bit per class of bytes that
// some transform changes or that a pattern may need. ClassesOf gives the
// classes present in a value in one pass; Transform.Identity and the
// engine's alphabet checks then decide from it, without looking at the
// bytes again, that a transform leaves the value as it is or that a group
// of patterns cannot match it.
type ByteClasses uint32

// The byte classes. Every byte belongs to exactly one class.
const (
	ClassLower      ByteClasses = 1 << iota // a-z
	ClassDigit                              // 0-9
	ClassUpper                              // A-Z
	ClassUnderline                          // _
	ClassDash                               // -
	ClassDot                                // .
	ClassPercent                            // %
	ClassPlus                               // +
	ClassAmp                                // &
	ClassBackslash                          // \
	ClassNUL                                // 0x00
	ClassSpace                              // ' '
	ClassOtherSpace                         // \t \n \v \f \r
	ClassQuote                              // ' " ^ (cmd_line drops them)
	ClassComma                              // ,
	ClassSemicolon                          // ;
	ClassSlash                              // /
	ClassStar                               // *
	ClassEquals                             // =
	ClassColon                              // :
	ClassLT                                 // <
	ClassGT                                 // >
	ClassParen                              // ( )
	ClassHigh                               // 0x80-0xff
	ClassHash                               // #
	ClassAt                                 // @
	ClassQuestion                           // ?
	ClassBang                               // !
	ClassDollar                             // $
	ClassBacktick                           // `
	ClassOther                              // every other byte: controls, [ ] { } | ~
	numClasses                  = iota
	AllClasses      ByteClasses = 1<<numClasses - 1
)

// classTable maps each byte to its class.
var classTable = func() (t [256]ByteClasses) {
	for c := 0; c < 256; c++ {
		t[c] = ClassOther
	}
	set := func(cl ByteClasses, bytes string) {
		for i := 0; i < len(bytes); i++ {
			t[bytes[i]] = cl
		}
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = ClassLower
		t[c-'a'+'A'] = ClassUpper
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = ClassDigit
	}
	for c := 0x80; c < 256; c++ {
		t[c] = ClassHigh
	}
	set(ClassUnderline, "_")
	set(ClassDash, "-")
	set(ClassDot, ".")
	set(ClassPercent, "%")
	set(ClassPlus, "+")
	set(ClassAmp, "&")
	set(ClassBackslash, `\`)
	set(ClassNUL, "\x00")
	set(ClassSpace, " ")
	set(ClassOtherSpace, "\t\n\v\f\r")
	set(ClassQuote, `'"^`)
	set(ClassComma, ",")
	set(ClassSemicolon, ";")
	set(ClassSlash, "/")
	set(ClassStar, "*")
	set(ClassEquals, "=")
	set(ClassColon, ":")
	set(ClassLT, "<")
	set(ClassGT, ">")
	set(ClassParen, "()")
	set(ClassHash, "#")
	set(ClassAt, "@")
	set(ClassQuestion, "?")
	set(ClassBang, "!")
	set(ClassDollar, "$")
	set(ClassBacktick, "`")
	return t
}()

// ClassesOf returns the classes of the bytes of b.
func ClassesOf(b []byte) ByteClasses {
	var m ByteClasses
	for _, c := range b {
		m |= classTable[c]
	}
	return m
}

// Bytes returns the bytes that belong to the classes of m.
func (m ByteClasses) Bytes() []byte {
	var out []byte
	for c := 0; c < 256; c++ {
		if classTable[c]&m != 0 {
			out = append(out, byte(c))
		}
	}
	return out
}

const whitespace = ClassSpace | ClassOtherSpace

// identityIfNone lists, per transform, the classes whose absence makes the
// transform leave its input unchanged; transforms missing here (decoders
// of whole-value encodings, expanding ones) never claim so.
var identityIfNone = [numTransforms]ByteClasses{
	URLDecode:          ClassPercent | ClassPlus,
	Lowercase:          ClassUpper,
	HTMLEntityDecode:   ClassAmp,
	RemoveNulls:        ClassNUL,
	CompressWhitespace: whitespace,
	RemoveWhitespace:   whitespace,
	Trim:               whitespace,
	NormalizePath:      ClassSlash | ClassDot,
	NormalizePathWin:   ClassSlash | ClassDot | ClassBackslash,
	JSDecode:           ClassBackslash,
	CmdLine:            ClassUpper | ClassBackslash | ClassQuote | ClassComma | ClassSemicolon | whitespace,
	ReplaceComments:    ClassSlash,
}

// Identity reports whether t leaves every input whose byte classes are
// within m unchanged (Append would copy it as it is): the engine then
// skips the step and keeps the input.
func (t Transform) Identity(m ByteClasses) bool {
	if !t.Valid() {
		return false
	}
	need := identityIfNone[t]
	return need != 0 && m&need == 0
}

// cmdLineSpecial are the bytes cmd_line does more with than lower-casing.
const cmdLineSpecial = ClassBackslash | ClassQuote | ClassComma | ClassSemicolon | whitespace

// Effect returns the transform that acts as t on every input whose byte
// classes are within m: 0 when t changes nothing (Identity), Lowercase for
// cmd_line on input without quotes, backslashes, separators or
// whitespace, else t. Chains that differ only in such steps give the same
// bytes, which the engine then computes once.
func (t Transform) Effect(m ByteClasses) Transform {
	if t.Identity(m) {
		return 0
	}
	if t == CmdLine && m&cmdLineSpecial == 0 {
		return Lowercase
	}
	return t
}
