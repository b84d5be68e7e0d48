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
	"unicode/utf8"

	"github.com/deepwall/deepwall/internal/atomicfile"
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
	// Command and Policy record an authorisation decision (op "access",
	// or a refused change under the op it would have had): the API
	// command asked for and the policy line that decided
	// ("/etc/deepwall/api-policy:3", "default:2", "no line matched").
	Command string `json:"command,omitempty"`
	Policy  string `json:"policy,omitempty"`
	Prev    string `json:"prev"`
}

// OpAccess is the op of an authorisation decision's entry: an allowed
// API call, or a refused read (a refused change keeps its own op).
const OpAccess = "access"

// HeadFile is the file in the agent's state directory that records the
// chain's head after every append, so that removing or editing the last
// entries is noticed too (audit verify --state reads it).
const HeadFile = "audit.head"

// genesisHash is Prev of the first entry.
var genesisHash = hex.EncodeToString(make([]byte, sha256.Size))

// Bounds of one entry. The writer bounds what goes into a line and
// refuses a line above MaxEntry; the reader accepts lines up to
// maxLegacyLine, far above MaxEntry, so a log this package wrote always
// reads back, logs of earlier versions too.
const (
	// MaxEntry bounds one line as written (JSON, without the newline):
	// the free-text fields are cut to maxText bytes each (at most 6
	// bytes of JSON per byte escaped) and the others are small.
	MaxEntry = 64 << 10
	// maxText bounds Detail and Error before escaping; a longer text is
	// cut and ends with its full length and SHA-256 (see clampText).
	maxText = 4 << 10
	// MaxRuleIDs is how many rule ids RuleIDs lists; a longer list is
	// recorded by its count and the SHA-256 of all of them.
	MaxRuleIDs = 64
	// maxLegacyLine bounds one line read back. Earlier versions wrote
	// the ids of a change without a cap, and every id came from the
	// request (at most 32 MiB, api.MaxRequestBytes), so their lines fit;
	// reading one holds the line in memory once, then the buffer is
	// reused.
	maxLegacyLine = 64 << 20
)

// ErrEntryTooLarge is returned by Append for an entry whose line would
// exceed MaxEntry (which clamping makes impossible for the fields the
// agent fills; it is kept as the writer's guarantee to the reader).
var ErrEntryTooLarge = errors.New("audit entry too large")

// Log appends chained entries to a file; each append is synced to disk
// before the change it records is reported done.
type Log struct {
	mu       sync.Mutex
	f        *os.File
	path     string
	head     string // hash of the last line
	headFile string // where head is recorded after every append ("": nowhere)
}

// RecordHead makes every Append write the chain's new head to path
// (atomically, under the same lock as the append, so concurrent appends
// never leave an older head behind).
func (a *Log) RecordHead(path string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.headFile = path
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
	e.Detail, e.Error = clampText(e.Detail), clampText(e.Error)
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	if len(line) > MaxEntry {
		return fmt.Errorf("audit log %s: %w (%d bytes, at most %d)", a.path, ErrEntryTooLarge, len(line), MaxEntry)
	}
	if _, err := a.f.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("audit log %s: %w", a.path, err)
	}
	if err := a.f.Sync(); err != nil {
		return fmt.Errorf("audit log %s: %w", a.path, err)
	}
	a.head = hashLine(line)
	if a.headFile != "" {
		if err := atomicfile.Write(a.headFile, []byte(a.head+"\n"), 0o600); err != nil {
			return fmt.Errorf("audit head %s: %w", a.headFile, err)
		}
	}
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
	var buf []byte
	for {
		line, err := readLine(br, buf[:0], maxLegacyLine)
		buf = line
		if errors.Is(err, errLineTooLong) {
			res.Broken = &Break{Line: res.Entries + 1, Reason: fmt.Sprintf("line longer than %d bytes", maxLegacyLine)}
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

// errLineTooLong: a line above the reader's bound.
var errLineTooLong = errors.New("line too long")

// readLine appends the next line of br, with its newline, to buf: a
// line of any length up to max bytes, whatever br's buffer size.
func readLine(br *bufio.Reader, buf []byte, max int) ([]byte, error) {
	for {
		frag, err := br.ReadSlice('\n')
		if len(buf)+len(frag) > max {
			return buf, errLineTooLong
		}
		buf = append(buf, frag...)
		if !errors.Is(err, bufio.ErrBufferFull) {
			return buf, err
		}
	}
}

// RuleIDs is the detail of a change of rules ids: "rules [1 2 3]" when
// there are at most MaxRuleIDs, else the first MaxRuleIDs, the count and
// the SHA-256 of the whole list (the ids in decimal, one per line), so an
// entry stays small whatever the change and still pins down its ids; the
// rule set itself is in the store under the entry's to_version, and
// rules_hash is its hash.
func RuleIDs(ids []uint32) string {
	if len(ids) <= MaxRuleIDs {
		return fmt.Sprintf("rules %v", ids)
	}
	h := sha256.New()
	for _, id := range ids {
		fmt.Fprintf(h, "%d\n", id)
	}
	return fmt.Sprintf("rules %v and %d more (%d ids, sha256 %x)", ids[:MaxRuleIDs], len(ids)-MaxRuleIDs, len(ids), h.Sum(nil))
}

// clampText cuts s to maxText bytes (at a rune boundary) and appends
// its full length and SHA-256, so the entry still identifies it.
func clampText(s string) string {
	if len(s) <= maxText {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	cut := maxText
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s... (%d bytes, sha256 %x)", s[:cut], len(s), sum)
}

func hashLine(line []byte) string {
	sum := sha256.Sum256(line)
	return hex.EncodeToString(sum[:])
}
