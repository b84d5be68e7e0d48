// Package sql owns the lexical classification of SQL text sent by database
// clients (MySQL COM_QUERY and prepared statements, PostgreSQL simple and
// extended queries): the statements of a query, each one's verb (its first
// keyword, lower case) and class (DDL, DCL, DML, DQL, TCL). It does not
// parse SQL: it skips comments, string literals and quoted identifiers well
// enough to find where statements start, which is what a database firewall
// policy ("only SELECT and INSERT", "no DDL", "no stacked queries") needs.
package sql

import (
	"bytes"

	"github.com/deepwall/deepwall/internal/ascii"
)

// Limits.
const (
	// MaxStatements bounds the statements reported per query; the rest
	// are not classified (Query.More says there were more).
	MaxStatements = 16
	// maxVerb bounds a verb's length; longer words are not verbs.
	maxVerb = 16
)

// Class is a statement class.
type Class uint8

// Statement classes.
const (
	ClassOther Class = iota // a verb of no class below (SET, SHOW, EXPLAIN, USE, CALL, ...)
	ClassDQL                // SELECT, VALUES, TABLE, WITH
	ClassDML                // INSERT, UPDATE, DELETE, REPLACE, MERGE, UPSERT, COPY, LOAD
	ClassDDL                // CREATE, ALTER, DROP, TRUNCATE, RENAME, COMMENT
	ClassDCL                // GRANT, REVOKE
	ClassTCL                // BEGIN, START, COMMIT, ROLLBACK, SAVEPOINT, RELEASE
)

var classNames = [...]string{"other", "dql", "dml", "ddl", "dcl", "tcl"}

// String returns the class as rules match it: "dql", "dml", "ddl", "dcl",
// "tcl" or "other".
func (c Class) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return "other"
}

var verbClasses = map[string]Class{
	"select": ClassDQL, "values": ClassDQL, "table": ClassDQL, "with": ClassDQL,
	"insert": ClassDML, "update": ClassDML, "delete": ClassDML, "replace": ClassDML,
	"merge": ClassDML, "upsert": ClassDML, "copy": ClassDML, "load": ClassDML,
	"create": ClassDDL, "alter": ClassDDL, "drop": ClassDDL, "truncate": ClassDDL,
	"rename": ClassDDL, "comment": ClassDDL,
	"grant": ClassDCL, "revoke": ClassDCL,
	"begin": ClassTCL, "start": ClassTCL, "commit": ClassTCL, "rollback": ClassTCL,
	"savepoint": ClassTCL, "release": ClassTCL, "end": ClassTCL, "abort": ClassTCL,
}

// Statement is one statement of a query.
type Statement struct {
	// Verb is the statement's first keyword, lower case, at most maxVerb
	// bytes (empty when the statement starts with something else).
	Verb  []byte
	Class Class
}

// Query is a classified query. Its Verb slices point into its own
// buffer: a Query is reused from query to query without allocating.
type Query struct {
	Statements []Statement
	// More: the query had more than MaxStatements statements.
	More  bool
	buf   [MaxStatements * maxVerb]byte
	stmts [MaxStatements]Statement
}

// Multi reports whether the query holds several statements.
func (q *Query) Multi() bool { return len(q.Statements) > 1 || q.More }

// Classify splits text into statements and classifies each. Statements
// are separated by ';' outside quotes and comments; empty statements are
// not counted. A DQL statement whose text holds INTO (SELECT ... INTO
// OUTFILE, SELECT INTO new_table) is DML. WITH ... takes the class of
// its main verb when it is INSERT, UPDATE or DELETE.
func (q *Query) Classify(text []byte) {
	q.Statements, q.More = q.stmts[:0], false
	i := 0
	for i < len(text) {
		i = skipSpace(text, i)
		if i >= len(text) {
			break
		}
		if text[i] == ';' {
			i++
			continue
		}
		// A statement starts at i.
		if len(q.Statements) == MaxStatements {
			q.More = true
			return
		}
		n := len(q.Statements)
		dst := q.buf[n*maxVerb : n*maxVerb : (n+1)*maxVerb]
		w := word(text, i)
		st := Statement{}
		if len(w) > 0 && len(w) <= maxVerb && ascii.Lower(w[0]) >= 'a' && ascii.Lower(w[0]) <= 'z' {
			for _, c := range w {
				dst = append(dst, ascii.Lower(c))
			}
			st.Verb = dst
			st.Class = verbClasses[string(dst)]
		}
		end, into, dmlVerb := scanStatement(text, i+len(w))
		if st.Class == ClassDQL && (into || dmlVerb) {
			st.Class = ClassDML
		}
		q.Statements = append(q.Statements, st)
		i = end
	}
}

// scanStatement skips to the end of the statement starting at i (the
// index of its ';' or len(text)) and reports whether a word INTO, or an
// INSERT/UPDATE/DELETE word, appears in it.
func scanStatement(text []byte, i int) (end int, into, dml bool) {
	for i < len(text) {
		c := text[i]
		switch {
		case c == ';':
			return i, into, dml
		case c == '\'' || c == '"' || c == '`':
			i = skipQuoted(text, i, c)
		case c == '-' && i+1 < len(text) && text[i+1] == '-', c == '#':
			i = skipLine(text, i)
		case c == '/' && i+1 < len(text) && text[i+1] == '*':
			i = skipBlock(text, i)
		case c == '$':
			i = skipDollar(text, i)
		case isWord(c):
			w := word(text, i)
			switch {
			case ascii.EqualFold(w, "into"):
				into = true
			case ascii.EqualFold(w, "insert"), ascii.EqualFold(w, "update"), ascii.EqualFold(w, "delete"):
				dml = true
			}
			i += len(w)
		default:
			i++
		}
	}
	return i, into, dml
}

// skipSpace skips whitespace and comments from i. A MySQL executable
// comment (/*! ... */) is not skipped: its content runs.
func skipSpace(text []byte, i int) int {
	for i < len(text) {
		c := text[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' || c == '(':
			i++
		case c == '-' && i+1 < len(text) && text[i+1] == '-', c == '#':
			i = skipLine(text, i)
		case c == '/' && i+2 < len(text) && text[i+1] == '*' && text[i+2] == '!':
			// /*!50000 SELECT ... */: the version digits, then the content.
			i += 3
			for i < len(text) && text[i] >= '0' && text[i] <= '9' {
				i++
			}
		case c == '/' && i+1 < len(text) && text[i+1] == '*':
			i = skipBlock(text, i)
		default:
			return i
		}
	}
	return i
}

func skipLine(text []byte, i int) int {
	for i < len(text) && text[i] != '\n' {
		i++
	}
	return i
}

// skipBlock skips a /* */ comment to its first "*/", as MySQL reads it
// (PostgreSQL nests them; the first "*/" ends a comment no later than
// PostgreSQL's does, so no text is hidden from the classifier).
func skipBlock(text []byte, i int) int {
	if k := bytes.Index(text[i+2:], []byte("*/")); k >= 0 {
		return i + 2 + k + 2
	}
	return len(text)
}

// skipQuoted skips a literal or quoted identifier opened by q at i: a
// doubled quote or a backslash escape stays inside.
func skipQuoted(text []byte, i int, q byte) int {
	i++
	for i < len(text) {
		c := text[i]
		if c == '\\' && q != '`' {
			i += 2
			continue
		}
		if c == q {
			if i+1 < len(text) && text[i+1] == q {
				i += 2
				continue
			}
			return i + 1
		}
		i++
	}
	return i
}

// skipDollar skips a PostgreSQL dollar-quoted string ($$...$$ or
// $tag$...$tag$) at i, or just the '$' (a parameter such as $1).
func skipDollar(text []byte, i int) int {
	j := i + 1
	for j < len(text) && isWord(text[j]) && !(text[j] >= '0' && text[j] <= '9' && j == i+1) {
		j++
	}
	if j >= len(text) || text[j] != '$' {
		return i + 1
	}
	tag := text[i : j+1]
	if k := bytes.Index(text[j+1:], tag); k >= 0 {
		return j + 1 + k + len(tag)
	}
	return len(text)
}

func word(text []byte, i int) []byte {
	j := i
	for j < len(text) && isWord(text[j]) {
		j++
	}
	return text[i:j]
}

func isWord(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}
