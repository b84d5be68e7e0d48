// Package cmdi is the command injection detector (rule language: detect:
// cmdi), the shell analogue of libinjection: a tokenizer that reads a
// decoded value as sh and cmd.exe would — command separators (; | || &
// && newline), substitutions ($(...), backticks), brace lists
// ({cat,/etc/passwd}), redirections, quoting and escapes removed inside a
// word (c”at, c"a"t, w\h\o\a\m\i), variables expanded as a shell without
// them set would ($IFS and ${IFS} to a space, ${PATH:0:1} to '/', $@ $1
// $x to nothing) — and reports a known command word in command position
// with the evidence its class needs: an unambiguous command (whoami,
// wget, powershell) after a separator; an English word that is also a
// command (cat, find, sleep) only with a shell-like argument; at the start
// of a value only with a path prefix, obfuscation or such an argument.
package cmdi

import (
	"bytes"

	"github.com/deepwall/deepwall/rules/detect/internal/norm"
	"github.com/deepwall/deepwall/rules/transform"
)

// Named limits.
const (
	maxLen   = 4096 // bytes of a value tokenized (the rest is not read)
	maxWords = 256  // words kept per value
)

// Detector holds the reusable buffers of one worker. Not safe for
// concurrent use.
type Detector struct {
	dec   norm.Decoder
	low   []byte
	buf   []byte // the words' unquoted text, back to back
	words [maxWords]word
	n     int
	cur   word // the word being built by tokenize
}

// New returns a detector.
func New() *Detector { return &Detector{} }

// word is one shell word as the tokenizer rebuilt it: buf[start:end].
type word struct {
	start, end int
	cmdPos     bool // in command position: at the value's start or after a separator
	atStart    bool // the value's first word
	strongSep  bool // after ; | & && || newline, a backtick or $(
	obfuscated bool // quotes, escapes or variables were removed from it
	redir      bool // a redirection operator (< > >>), not a word
}

// Match reports whether value holds a command injection; reason names the
// command found.
func (d *Detector) Match(value []byte) (bool, string) {
	if len(value) > maxLen {
		value = value[:maxLen]
	}
	if !candidate(value) {
		d.low = transform.Lowercase.Append(d.low[:0], bytes.TrimSpace(value))
		if standalone[string(d.low)] {
			return true, commandName[string(d.low)]
		}
		return false, ""
	}
	v := d.dec.Decode(value)
	d.low = transform.Lowercase.Append(d.low[:0], v)
	if name, ok := d.scan(d.low, false); ok {
		return true, name
	}
	// Code that hands a string to a shell (system('cat /etc/passwd'),
	// exec("sleep 5")): read again with quotes as separators.
	if bytes.ContainsAny(d.low, `'"`) {
		if name, ok := d.scan(d.low, true); ok {
			return true, name
		}
	}
	return false, ""
}

// scan tokenizes v (quotes as separators when quoteSep) and judges each
// word in command position.
func (d *Detector) scan(v []byte, quoteSep bool) (string, bool) {
	d.tokenize(v, quoteSep)
	for k := 0; k < d.n; k++ {
		w := &d.words[k]
		if !w.cmdPos || w.redir {
			continue
		}
		args := k + 1
		for args < d.n && !d.words[args].cmdPos {
			args++
		}
		if name, ok := d.judge(w, d.words[k+1:args]); ok {
			return name, true
		}
	}
	return "", false
}

// candidate is a cheap pre-test: a value without a byte that can separate
// words, start a substitution, a quote trick, a path or an encoding is a
// single word and not tokenized.
func candidate(b []byte) bool {
	for _, c := range b {
		switch c {
		case ';', '|', '&', '\n', '\r', '`', '$', '(', '{', '\'', '"', '\\', '/', '%', '<', '>', ' ', '\t', '+', '^':
			return true
		}
	}
	return false
}

// tokenize splits v into d.words.
func (d *Detector) tokenize(v []byte, quoteSep bool) {
	d.buf, d.n = d.buf[:0], 0
	d.cur = word{cmdPos: true, atStart: true}
	braces := 0
	inSingle, inDouble := false, false
	for i := 0; i < len(v); i++ {
		c := v[i]
		if inSingle {
			if c == '\'' {
				inSingle, d.cur.obfuscated = false, true
			} else {
				d.buf = append(d.buf, c)
			}
			continue
		}
		if inDouble {
			switch {
			case c == '"':
				inDouble, d.cur.obfuscated = false, true
			case c == '$':
				i = d.dollar(v, i, &d.cur)
			case c == '`':
				d.end(true, true)
			case c == '\\' && i+1 < len(v) && (v[i+1] == '$' || v[i+1] == '`' || v[i+1] == '"' || v[i+1] == '\\'):
				d.buf = append(d.buf, v[i+1])
				i++
			default:
				d.buf = append(d.buf, c)
			}
			continue
		}
		switch c {
		case ' ', '\t', '\v', '\f':
			d.end(false, false)
		case ',':
			if braces > 0 {
				d.end(false, false)
			} else {
				d.buf = append(d.buf, c)
			}
		case '\'', '"':
			switch {
			case quoteSep:
				d.end(true, true)
			case c == '\'':
				inSingle = true
			default:
				inDouble = true
			}
		case '\\':
			if i+1 < len(v) && v[i+1] != '\n' && isWordByte(v[i+1]) && len(d.buf) > d.cur.start && bytes.IndexByte(d.buf[d.cur.start:], ':') < 0 {
				d.buf = append(d.buf, v[i+1]) // w\h\o\a\m\i; not c:\windows
				d.cur.obfuscated = true
				i++
			} else {
				d.buf = append(d.buf, '/') // cmd.exe's path separator
			}
		case '^':
			d.cur.obfuscated = true // cmd.exe's escape: w^h^o^a^m^i
		case '$':
			i = d.dollar(v, i, &d.cur)
		case ';', '\n', '\r', '|', '&', '`':
			d.end(true, true)
			if i+1 < len(v) && (v[i+1] == c) {
				i++ // || &&
			}
		case '(', ')':
			d.end(c == '(', false)
		case '{':
			if braceList(v[i:]) {
				braces++
				d.end(true, false)
			} else {
				d.end(false, false) // a JSON or GraphQL block, not {cat,/etc/passwd}
			}
		case '}':
			if braces > 0 {
				braces--
			}
			d.end(false, false)
		case '<', '>':
			d.redir()
		default:
			d.buf = append(d.buf, c)
		}
	}
	d.end(false, false)
}

func isWordByte(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// end closes the current word (if it has text) and prepares the next
// one; sep says the next word is in command position.
func (d *Detector) end(sep, strong bool) {
	cur := &d.cur
	if len(d.buf) > cur.start && d.n < maxWords {
		cur.end = len(d.buf)
		d.words[d.n] = *cur
		d.n++
		*cur = word{start: len(d.buf)}
	} else if !sep && cur.cmdPos {
		return // spaces before a command keep its position
	}
	cur.start = len(d.buf)
	if sep {
		cur.cmdPos, cur.atStart, cur.strongSep = true, false, strong
	}
}

// redir closes the current word and records a redirection operator.
func (d *Detector) redir() {
	d.end(false, false)
	if d.n < maxWords {
		d.words[d.n] = word{start: len(d.buf), end: len(d.buf), redir: true}
		d.n++
	}
}

// dollar expands the variable or substitution at v[i] ('$') as a shell
// with none of them set would and returns the index of its last byte.
func (d *Detector) dollar(v []byte, i int, cur *word) int {
	if i+1 >= len(v) {
		d.buf = append(d.buf, '$')
		return i
	}
	c := v[i+1]
	switch {
	case c == '(':
		d.end(true, true)
		return i + 1
	case c == '{':
		j := i + 2
		for j < len(v) && v[j] != '}' && j-i < 64 {
			j++
		}
		if j >= len(v) || v[j] != '}' {
			d.buf = append(d.buf, '$')
			return i
		}
		name := v[i+2 : j]
		cur.obfuscated = true
		switch {
		case len(name) >= 3 && string(name[:3]) == "ifs":
			d.end(false, false)
		case bytes.IndexByte(name, ':') >= 0:
			d.buf = append(d.buf, '/') // ${PATH:0:1}, ${HOME:0:1}: '/'
		}
		return j
	case c >= '0' && c <= '9', c == '@', c == '*', c == '#', c == '?', c == '!', c == '-':
		cur.obfuscated = true
		return i + 1
	case c >= 'a' && c <= 'z' || c == '_':
		j := i + 1
		for j < len(v) && (v[j] >= 'a' && v[j] <= 'z' || v[j] >= '0' && v[j] <= '9' || v[j] == '_') {
			j++
		}
		cur.obfuscated = true
		if string(v[i+1:j]) == "ifs" {
			d.end(false, false)
		}
		return j - 1
	}
	d.buf = append(d.buf, '$')
	return i
}

// judge decides whether w, a word in command position, is a command
// injection with args (up to the next command) as its arguments.
func (d *Detector) judge(w *word, args []word) (string, bool) {
	text := d.buf[w.start:w.end]
	if len(text) == 0 || len(text) > 64 || bytes.Contains(text, []byte("://")) {
		return "", false // a URL is no command
	}
	name, pathed := text, false
	// A command written with its directory (/bin/cat, /usr/bin/id,
	// ./x, c:/windows/system32/cmd.exe): the basename counts.
	if i := bytes.LastIndexByte(text, '/'); i >= 0 {
		name = text[i+1:]
		pathed = text[0] == '/' || text[0] == '.' || len(text) > 2 && text[1] == ':'
	}
	if len(name) == 0 {
		return "", false
	}
	cmd, cl := lookup(name)
	if cl == notCommand {
		return "", false
	}
	nested := len(name) < len(text) // usr/bin/id after a separator
	if bytes.ContainsAny(name, "?*[") {
		pathed = true
	}
	last := len(args) == 1
	switch {
	case pathed:
		// /bin/cat, /usr/bin/id, /???/c?t: no prose writes these.
		return cmd, true
	case w.obfuscated && (!w.atStart || d.shellArgs(args, false)):
		return cmd, true
	case cl == unambiguous && (!w.atStart && w.strongSep || w.atStart && len(args) == 0 && standalone[cmd]):
		return cmd, true
	case nested && !w.atStart && w.strongSep:
		return cmd, true
	case d.shellArgs(args, numeric[cmd] && (!w.atStart && w.strongSep || last)):
		return cmd, true
	}
	return "", false
}

// standalone commands are an injection even alone in a value: nobody's
// name or search is "ifconfig".
var standalone = map[string]bool{"whoami": true, "ifconfig": true, "ipconfig": true, "systeminfo": true, "netstat": true,
	"tasklist": true, "printenv": true, "lsb_release": true}

// numeric commands take a number as their whole argument (sleep 5).
var numeric = map[string]bool{"sleep": true, "timeout": true, "ping": true, "usleep": true}

// shellArgs reports whether one of args is shell-like.
func (d *Detector) shellArgs(args []word, numbers bool) bool {
	for i := range args {
		if d.shellArg(&args[i], numbers) {
			return true
		}
	}
	return false
}

// shellArg reports an argument only a command line has: an option (-la,
// --help, /c after cmd), a path, a variable, a redirection, an address;
// a number too when numbers count (sleep 5 after a separator).
func (d *Detector) shellArg(arg *word, numbers bool) bool {
	if arg == nil {
		return false
	}
	if arg.redir {
		return true
	}
	a := d.buf[arg.start:arg.end]
	if len(a) == 0 {
		return false
	}
	switch c := a[0]; {
	case c == '-' && isOption(a):
		return true
	case c == '/' || c == '~' || c == '$' || c == '.' && len(a) > 1:
		return true
	case arg.obfuscated:
		return true
	case c == '%' && len(a) > 2 && bytes.IndexByte(a[1:], '%') > 0:
		return true // %SYSTEMROOT%
	}
	if _, cl := lookup(a); cl == unambiguous {
		return true // which curl
	}
	if bytes.ContainsAny(a, `/\`) {
		return true
	}
	if numbers {
		for _, c := range a {
			if (c < '0' || c > '9') && c != '.' {
				return false
			}
		}
		return true
	}
	return false
}

// isOption reports a command-line option: -l, -la, -rf, -n1, --help (a
// longer single-dash word is read as prose: "set -mini").
func isOption(a []byte) bool {
	if len(a) > 2 && a[1] == '-' {
		return a[2] >= 'a' && a[2] <= 'z'
	}
	if len(a) < 2 || len(a) > 4 || a[1] < 'a' || a[1] > 'z' {
		return false
	}
	for _, c := range a[1:] {
		if !isWordByte(c) {
			return false
		}
	}
	return true
}

// braceList reports whether v (at a '{') opens a bash brace expansion:
// a comma before the closing brace and no space in between.
func braceList(v []byte) bool {
	comma := false
	for i := 1; i < len(v) && i < 256; i++ {
		switch v[i] {
		case ',':
			comma = true
		case '}':
			return comma
		case ' ', '\t', '\n', '{':
			return false
		}
	}
	return false
}
