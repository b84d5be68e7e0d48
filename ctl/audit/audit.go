// Package audit owns the agent's audit log: a hash-chained JSON-lines
// file of every change to the rules and the protected set (who, what,
// the rule-set versions before and after), and its verification.
package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Entry is one line of the audit log: who changed the rules, how, and
// the rule-set version before and after. Prev chains the entries: it is the
// SHA-256 of the previous line's bytes, so editing, removing or reordering
// any line breaks the chain at that point.
type Entry struct {
	Time        time.Time `json:"time"`
	UID         int       `json:"uid"`
	GID         int       `json:"gid"`
	PID         int       `json:"pid"`
	Op          string    `json:"op"`
	FromVersion uint64    `json:"from_version"`
	ToVersion   uint64    `json:"to_version"`
	RulesHash   string    `json:"rules_hash,omitempty"`
	Detail      string    `json:"detail,omitempty"`
	OK          bool      `json:"ok"`
	Error       string    `json:"error,omitempty"`
	Prev        string    `json:"prev"`
}

// HeadFile is the file in the agent's state directory that records the
// chain's head after every append, so that removing or editing the last
// entries is noticed too (audit verify --state reads it).
const HeadFile = "audit.head"

// genesisHash is Prev of the first entry.
var genesisHash = hex.EncodeToString(make([]byte, sha256.Size))

// maxLine bounds one line when reading the log back.
const maxLine = 1 << 20

// Log appends chained entries to a file; each append is synced to disk
// before the change it records is reported done.
type Log struct {
	mu   sync.Mutex
	f    *os.File
	path string
	head string // hash of the last line
}

// Open opens (or creates) the audit log at path and verifies the
// existing chain, so a tampered log is noticed at start rather than
// silently extended.
func Open(path string) (*Log, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	res, err := verify(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("audit log %s: %w", path, err)
	}
	if res.Broken != nil {
		f.Close()
		return nil, fmt.Errorf("audit log %s: %w", path, res.Broken)
	}
	return &Log{f: f, path: path, head: res.Head}, nil
}

// Append chains e to the log and syncs it. It fills e.Prev.
func (a *Log) Append(e Entry) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	e.Prev = a.head
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	if _, err := a.f.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("audit log %s: %w", a.path, err)
	}
	if err := a.f.Sync(); err != nil {
		return fmt.Errorf("audit log %s: %w", a.path, err)
	}
	a.head = hashLine(line)
	return nil
}

// Head returns the hash of the last entry (genesis for an empty log).
func (a *Log) Head() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.head
}

// Close closes the file.
func (a *Log) Close() error { return a.f.Close() }

// Break says where the chain is broken.
type Break struct {
	Line   int // 1-based line whose Prev does not match, or that is unreadable
	Reason string
}

func (b *Break) Error() string { return fmt.Sprintf("line %d: %s", b.Line, b.Reason) }

// ErrBroken is what every *Break matches with errors.Is.
var ErrBroken = errors.New("audit chain broken")

// Is makes errors.Is(err, ErrBroken) true.
func (b *Break) Is(target error) bool { return target == ErrBroken }

// Result is the outcome of Verify.
type Result struct {
	Entries int
	Head    string // hash of the last good line
	Broken  *Break // nil when the whole chain holds
}

// Verify checks the chain of the log at path and reports the first
// broken link. When wantHead is not empty it must equal the hash of the last
// line, which catches an edit or removal of the final entries (the agent
// keeps the head in its store).
func Verify(path, wantHead string) (Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return Result{}, fmt.Errorf("audit log: %w", err)
	}
	defer f.Close()
	res, err := verify(f)
	if err != nil {
		return res, fmt.Errorf("audit log %s: %w", path, err)
	}
	if res.Broken == nil && wantHead != "" && res.Head != wantHead {
		res.Broken = &Break{Line: res.Entries, Reason: "last entry does not match the head recorded by the agent (entries removed or the last one edited)"}
	}
	return res, nil
}

func verify(r io.Reader) (Result, error) {
	res := Result{Head: genesisHash}
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) || len(line) > maxLine {
			res.Broken = &Break{Line: res.Entries + 1, Reason: "line too long"}
			return res, nil
		}
		if len(line) == 0 && err == io.EOF {
			return res, nil
		}
		if err != nil && err != io.EOF {
			return res, err
		}
		n := res.Entries + 1
		if line[len(line)-1] != '\n' {
			res.Broken = &Break{Line: n, Reason: "truncated line (no newline)"}
			return res, nil
		}
		line = bytes.TrimSuffix(line, []byte("\n"))
		var e Entry
		if err := json.Unmarshal(line, &e); err != nil {
			res.Broken = &Break{Line: n, Reason: "not a JSON audit entry: " + err.Error()}
			return res, nil
		}
		if e.Prev != res.Head {
			reason := "previous entry was changed or removed"
			if n == 1 {
				reason = "first entry does not start the chain (entries removed from the start)"
			}
			res.Broken = &Break{Line: n, Reason: reason}
			return res, nil
		}
		res.Head = hashLine(line)
		res.Entries = n
	}
}

func hashLine(line []byte) string {
	sum := sha256.Sum256(line)
	return hex.EncodeToString(sum[:])
}
