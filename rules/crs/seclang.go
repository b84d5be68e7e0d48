// Package crs translates ModSecurity rule sets written in SecLang — the
// OWASP Core Rule Set (CRS) v4 above all — into deepwall rules: SecRule
// chains become condition lists, operators become regexes, phrase lists
// or detectors, variables become fields, transformations become
// transforms, and the CRS anomaly scoring becomes rule scores with the
// inbound and outbound threshold rules. What cannot be translated is
// listed with its file, line and reason; nothing is dropped silently.
package crs

import (
	"errors"
	"fmt"
	"strings"
)

// Bounds on SecLang input.
const (
	MaxFileSize   = 8 << 20 // bytes of one .conf or .data file
	MaxDirectives = 1 << 16 // directives in one file
	MaxArgs       = 8       // arguments of one directive
	MaxActions    = 256     // actions of one rule
	MaxLineLen    = 1 << 20 // bytes of one logical (joined) line
)

// Errors of the SecLang parser.
var (
	ErrSyntax   = errors.New("seclang syntax error")
	ErrTooLarge = errors.New("seclang input too large")
)

// Directive is one SecLang directive: its name, its arguments with
// quotes removed, and the line it starts on.
type Directive struct {
	Name string
	Args []string
	Line int
}

// Action is one action of a rule's action list: "t:lowercase" is
// {Name: "t", Value: "lowercase"}.
type Action struct {
	Name, Value string
}

// ParseSecLang splits a SecLang file into directives: comments and blank
// lines are skipped, lines ending in a backslash continue on the next
// line, arguments are bare words or double-quoted strings (\" is a
// quote, other backslashes are kept, as Apache and ModSecurity read
// them).
func ParseSecLang(name string, data []byte) ([]Directive, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s: %w: %d bytes (limit %d)", name, ErrTooLarge, len(data), MaxFileSize)
	}
	var out []Directive
	lines := strings.Split(string(data), "\n")
	for i := 0; i < len(lines); i++ {
		start := i + 1
		line := strings.TrimRight(lines[i], "\r")
		var b strings.Builder
		for strings.HasSuffix(line, "\\") && i+1 < len(lines) {
			b.WriteString(line[:len(line)-1])
			if b.Len() > MaxLineLen {
				return nil, fmt.Errorf("%s:%d: %w: logical line over %d bytes", name, start, ErrTooLarge, MaxLineLen)
			}
			i++
			line = strings.TrimRight(lines[i], "\r")
		}
		b.WriteString(line)
		text := strings.TrimSpace(b.String())
		if text == "" || text[0] == '#' {
			continue
		}
		args, err := splitArgs(text)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, start, err)
		}
		if len(out) == MaxDirectives {
			return nil, fmt.Errorf("%s:%d: %w: more than %d directives", name, start, ErrTooLarge, MaxDirectives)
		}
		out = append(out, Directive{Name: args[0], Args: args[1:], Line: start})
	}
	return out, nil
}

// splitArgs splits a directive line into words.
func splitArgs(s string) ([]string, error) {
	var args []string
	for i := 0; i < len(s); {
		c := s[i]
		if c == ' ' || c == '\t' {
			i++
			continue
		}
		if len(args) > MaxArgs {
			return nil, fmt.Errorf("%w: more than %d arguments", ErrSyntax, MaxArgs)
		}
		if c == '"' {
			arg, n, ok := unquote(s[i:])
			if !ok {
				return nil, fmt.Errorf("%w: unterminated quoted argument", ErrSyntax)
			}
			args = append(args, arg)
			i += n
			continue
		}
		j := i
		for j < len(s) && s[j] != ' ' && s[j] != '\t' {
			j++
		}
		args = append(args, s[i:j])
		i = j
	}
	if len(args) == 0 {
		return nil, fmt.Errorf("%w: empty directive", ErrSyntax)
	}
	return args, nil
}

// unquote reads the quoted string at the start of s, whose first byte is
// the quote; a backslash before the quote escapes it. It returns the text
// between the quotes, the bytes read, and false when the quote is not
// closed.
func unquote(s string) (string, int, bool) {
	q := s[0]
	var b strings.Builder
	for j := 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && j+1 < len(s) && s[j+1] == q:
			b.WriteByte(q)
			j++
		case s[j] == q:
			return b.String(), j + 1, true
		default:
			b.WriteByte(s[j])
		}
	}
	return "", 0, false
}

// ParseActions splits a rule's action list: actions are separated by
// commas, a value follows the first colon and may be single-quoted (\'
// inside is a quote).
func ParseActions(s string) ([]Action, error) {
	var out []Action
	for i := 0; i < len(s); {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == ',') {
			i++
		}
		if i >= len(s) {
			break
		}
		if len(out) == MaxActions {
			return nil, fmt.Errorf("%w: more than %d actions", ErrSyntax, MaxActions)
		}
		j := i
		for j < len(s) && s[j] != ':' && s[j] != ',' {
			j++
		}
		a := Action{Name: strings.TrimSpace(s[i:j])}
		i = j
		if i < len(s) && s[i] == ':' {
			i++
			for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
				i++
			}
			if i < len(s) && s[i] == '\'' {
				v, n, ok := unquote(s[i:])
				if !ok {
					return nil, fmt.Errorf("%w: unterminated quoted value of action %q", ErrSyntax, a.Name)
				}
				a.Value = v
				i += n
			} else {
				j := i
				for j < len(s) && s[j] != ',' {
					j++
				}
				a.Value = strings.TrimSpace(s[i:j])
				i = j
			}
		}
		if a.Name == "" {
			return nil, fmt.Errorf("%w: empty action", ErrSyntax)
		}
		out = append(out, a)
	}
	return out, nil
}
