package rules

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrInvalid: a rule set failed validation; the error is an ErrorList.
	ErrInvalid = errors.New("invalid rule set")
	// ErrStale: a serialised Compiled does not belong to this rule set, this
	// Hyperscan version or this platform, and must be recompiled.
	ErrStale = errors.New("compiled rules do not match")
	// ErrCorrupt: serialised compiled rules or a rule store entry fail their checksum.
	ErrCorrupt = errors.New("corrupt data")
	// ErrCacheWrite: compiled rules were built but could not be cached.
	ErrCacheWrite = errors.New("write compiled rules cache")
)

// Error is one problem in a rule file.
type Error struct {
	Pos    Position
	RuleID uint32 // 0 when the error is not inside a rule, or the rule has no valid id
	Rule   int    // 1-based index of the rule in its file, 0 when not inside a rule
	Msg    string
	Err    error // underlying cause (for example Hyperscan's compile error), may be nil
}

// Error formats the problem as "file:line:col: rule ID: message" (without
// the position for rules built in Go).
func (e *Error) Error() string {
	var b strings.Builder
	if e.Pos != (Position{}) {
		b.WriteString(e.Pos.String())
		b.WriteString(": ")
	}
	switch {
	case e.RuleID != 0:
		b.WriteString("rule ")
		b.WriteString(strconv.FormatUint(uint64(e.RuleID), 10))
		b.WriteString(": ")
	case e.Rule > 0:
		b.WriteString("rule #")
		b.WriteString(strconv.Itoa(e.Rule))
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// ErrorList is every problem found in a rule set, in file order. It
// matches ErrInvalid with errors.Is.
type ErrorList []*Error

// Error joins the errors, one per line.
func (l ErrorList) Error() string {
	var b strings.Builder
	for i, e := range l {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Is makes errors.Is(err, ErrInvalid) true for an ErrorList.
func (l ErrorList) Is(target error) bool { return target == ErrInvalid }

// Unwrap gives the individual errors.
func (l ErrorList) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}

// errorSink collects errors up to MaxErrors per file.
type errorSink struct {
	list  ErrorList
	files map[string]int
	full  map[string]bool
}

func (s *errorSink) add(e *Error) {
	if s.files == nil {
		s.files, s.full = map[string]int{}, map[string]bool{}
	}
	f := e.Pos.File
	if s.full[f] {
		return
	}
	if s.files[f] >= MaxErrors {
		s.full[f] = true
		s.list = append(s.list, &Error{Pos: e.Pos, Msg: fmt.Sprintf("too many errors (more than %d), giving up on this file", MaxErrors)})
		return
	}
	s.files[f]++
	s.list = append(s.list, e)
}

// saturated reports whether file has reached MaxErrors: the loader stops
// reading its rules then (a file of thousands of aliased bad rules must
// not cost thousands of regex checks).
func (s *errorSink) saturated(file string) bool { return s.full[file] }

func (s *errorSink) errorf(pos Position, r *Rule, format string, args ...any) {
	e := &Error{Pos: pos, Msg: fmt.Sprintf(format, args...)}
	if r != nil {
		e.RuleID, e.Rule = r.ID, ruleIndex(r)
	}
	s.add(e)
}

func (s *errorSink) err() error {
	if len(s.list) == 0 {
		return nil
	}
	l := s.list
	// Files keep the order they were read in; positions sort inside a file.
	order := map[string]int{}
	for _, e := range l {
		if _, ok := order[e.Pos.File]; !ok {
			order[e.Pos.File] = len(order)
		}
	}
	sort.SliceStable(l, func(i, j int) bool {
		a, b := l[i].Pos, l[j].Pos
		if a.File != b.File {
			return order[a.File] < order[b.File]
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
	return l
}

// ruleIndex is the rule's 1-based index in its file, recorded by the
// loader (0 for rules built in Go).
func ruleIndex(r *Rule) int { return r.index }
