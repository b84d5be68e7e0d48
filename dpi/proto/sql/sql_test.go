package sql

import (
	"fmt"
	"strings"
	"testing"
)

func classify(text string) string {
	var q Query
	q.Classify([]byte(text))
	var b strings.Builder
	for _, s := range q.Statements {
		fmt.Fprintf(&b, "%s:%s ", s.Verb, s.Class)
	}
	if q.Multi() {
		b.WriteString("multi")
	}
	return strings.TrimSpace(b.String())
}

func TestClassify(t *testing.T) {
	tests := []struct{ in, want string }{
		{"SELECT * FROM t", "select:dql"},
		{"  select 1;", "select:dql"},
		{"INSERT INTO t VALUES (1)", "insert:dml"},
		{"CREATE TABLE t (id int); INSERT INTO t VALUES (1); SELECT * FROM t; DROP TABLE t;", "create:ddl insert:dml select:dql drop:ddl multi"},
		{"GRANT ALL ON *.* TO x", "grant:dcl"},
		{"SELECT 1; DROP TABLE users -- x", "select:dql drop:ddl multi"},
		{"SELECT 'a;b', \"c;d\", `e;f` FROM t", "select:dql"},
		{"SELECT 'it''s; not' -- ; no\n", "select:dql"},
		{"SELECT 'a\\'; DROP TABLE t", "select:dql"},
		{"/* c */ DELETE FROM t /* ; */", "delete:dml"},
		{"/*!50000 DROP */ TABLE t", "drop:ddl"},
		{"(SELECT 1) UNION (SELECT 2)", "select:dql"},
		{"SELECT * INTO OUTFILE '/tmp/x' FROM t", "select:dml"},
		{"WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "with:dml"},
		{"SELECT $$a;b$$, $tag$ ; $tag$, $1", "select:dql"},
		{"BEGIN; COMMIT", "begin:tcl commit:tcl multi"},
		{"SHOW TABLES", "show:other"},
		{";;;", ""},
		{"123", ":other"},
		{strings.Repeat("SELECT 1;", MaxStatements+1), strings.Repeat("select:dql ", MaxStatements) + "multi"},
	}
	for _, tt := range tests {
		if got := classify(tt.in); got != tt.want {
			t.Errorf("%q: %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestClassifyAllocs(t *testing.T) {
	var q Query
	text := []byte("CREATE TABLE t (id int); INSERT INTO t VALUES (1); SELECT * FROM t")
	if n := testing.AllocsPerRun(100, func() { q.Classify(text) }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

func FuzzClassify(f *testing.F) {
	f.Add("SELECT 1; DROP TABLE t")
	f.Add("SELECT $$x$$ /* a */ -- b\n'c'")
	f.Fuzz(func(t *testing.T, s string) {
		var q Query
		q.Classify([]byte(s))
		if len(q.Statements) > MaxStatements {
			t.Fatal("too many statements")
		}
	})
}
