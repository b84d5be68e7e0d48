// Package store keeps the agent's rule sets on disk: one bbolt file in
// the state directory holding the current set and its recent versions,
// each stored as canonical YAML and re-parsed (so re-validated) when read.
package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/deepwall/deepwall/rules"
)

// Store limits and names.
const (
	File            = "rules.db" // file name in the state directory
	MaxHistory      = 64         // versions kept; older ones are deleted
	MaxComment      = 1024       // bytes of a version's comment
	storeFormat     = "deepwall-rule-store/1"
	storeOpenWait   = 2 * time.Second
	storeFileMode   = 0o600
	storeFormatKey  = "format"
	storeCurrentKey = "current"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrForeign: the store file is a bbolt database of something else.
	ErrForeign = errors.New("not a deepwall rule store")
	// ErrNoRules: the store holds no rule set yet.
	ErrNoRules = errors.New("no rule set stored")
	// ErrNoVersion: the requested version is not (or no longer) in the store.
	ErrNoVersion = errors.New("no such rule set version")
)

var (
	bucketMeta     = []byte("meta")
	bucketVersions = []byte("versions")
)

// Store is the versioned store of the current rule set, one bbolt file in
// a state directory. Every Put of a set that differs from the current one
// is a new version, written in one transaction; the newest MaxHistory
// versions are kept. Safe for concurrent use; one process at a time holds
// the file.
type Store struct {
	db   *bolt.DB
	path string
}

// Version describes one stored rule set.
type Version struct {
	Number  uint64
	Hash    [32]byte // SHA-256 of the canonical YAML (rules.Set.Hash)
	Time    time.Time
	Rules   int
	Comment string
}

// record is a stored version.
type record struct {
	Hash    string    `json:"hash"`
	Time    time.Time `json:"time"`
	Rules   int       `json:"rules"`
	Comment string    `json:"comment,omitempty"`
	YAML    string    `json:"yaml"`
}

// Open opens (creating it if needed) the rule store in dir.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open rule store: %w", err)
	}
	path := filepath.Join(dir, File)
	db, err := bolt.Open(path, storeFileMode, &bolt.Options{Timeout: storeOpenWait})
	if err != nil {
		switch {
		case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum):
			return nil, fmt.Errorf("open rule store %s: not a bbolt database or damaged (%v): %w", path, err, rules.ErrCorrupt)
		case errors.Is(err, berrors.ErrTimeout):
			return nil, fmt.Errorf("open rule store %s: locked by another process: %w", path, err)
		}
		return nil, fmt.Errorf("open rule store %s: %w", path, err)
	}
	s := &Store{db: db, path: path}
	err = db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			// A new file, or someone else's database.
			foreign := false
			_ = tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
				foreign = true
				return nil
			})
			if foreign {
				return fmt.Errorf("%s holds other buckets: %w", path, ErrForeign)
			}
			var err error
			if meta, err = tx.CreateBucket(bucketMeta); err != nil {
				return err
			}
			if _, err = tx.CreateBucket(bucketVersions); err != nil {
				return err
			}
			return meta.Put([]byte(storeFormatKey), []byte(storeFormat))
		}
		if f := meta.Get([]byte(storeFormatKey)); string(f) != storeFormat {
			return fmt.Errorf("%s has format %q, want %q: %w", path, f, storeFormat, ErrForeign)
		}
		if tx.Bucket(bucketVersions) == nil {
			return fmt.Errorf("%s has no versions bucket: %w", path, rules.ErrCorrupt)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open rule store: %w", err)
	}
	return s, nil
}

// Path is the store's file.
func (s *Store) Path() string { return s.path }

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

func u64key(n uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], n)
	return k[:]
}

// Put stores set as the current rule set and returns its version. When
// set says the same as the current set (same canonical hash) nothing
// changes and changed is false.
func (s *Store) Put(set *rules.Set, comment string) (v Version, changed bool, err error) {
	if len(comment) > MaxComment {
		return Version{}, false, fmt.Errorf("store rules: comment longer than %d bytes", MaxComment)
	}
	if err := set.Validate(); err != nil {
		return Version{}, false, fmt.Errorf("store rules: %w", err)
	}
	canon := set.Canonical()
	hash := sha256.Sum256(canon)
	err = s.db.Update(func(tx *bolt.Tx) error {
		meta, vers := tx.Bucket(bucketMeta), tx.Bucket(bucketVersions)
		cur := binary.BigEndian.Uint64(padU64(meta.Get([]byte(storeCurrentKey))))
		if cur != 0 {
			if rec, err := s.decode(cur, vers.Get(u64key(cur))); err == nil && rec.Hash == hex.EncodeToString(hash[:]) {
				v = recVersion(cur, rec)
				return nil
			}
		}
		next := cur + 1
		if last, _ := vers.Cursor().Last(); last != nil {
			n, ok := keyNum(last)
			if !ok {
				return fmt.Errorf("bad version key %x: %w", last, rules.ErrCorrupt)
			}
			next = max(next, n+1)
		}
		rec := record{Hash: hex.EncodeToString(hash[:]), Time: time.Now().UTC(), Rules: len(set.Rules), Comment: comment, YAML: string(canon)}
		data, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		if err := vers.Put(u64key(next), data); err != nil {
			return err
		}
		if err := meta.Put([]byte(storeCurrentKey), u64key(next)); err != nil {
			return err
		}
		// Keep the newest MaxHistory versions (numbers only grow).
		if next > MaxHistory {
			oldest := next - MaxHistory + 1
			c := vers.Cursor()
			for k, _ := c.First(); k != nil; k, _ = c.First() {
				if n, ok := keyNum(k); ok && n >= oldest {
					break
				}
				if err := vers.Delete(k); err != nil {
					return err
				}
			}
		}
		v, changed = recVersion(next, rec), true
		return nil
	})
	if err != nil {
		return Version{}, false, fmt.Errorf("store rules in %s: %w", s.path, err)
	}
	return v, changed, nil
}

// keyNum reads a version key.
func keyNum(k []byte) (uint64, bool) {
	if len(k) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(k), true
}

func padU64(b []byte) []byte {
	if len(b) != 8 {
		return make([]byte, 8)
	}
	return b
}

func recVersion(n uint64, rec record) Version {
	v := Version{Number: n, Time: rec.Time, Rules: rec.Rules, Comment: rec.Comment}
	h, _ := hex.DecodeString(rec.Hash)
	copy(v.Hash[:], h)
	return v
}

// decode reads a stored version and checks it against its hash.
func (s *Store) decode(n uint64, data []byte) (record, error) {
	var rec record
	if data == nil {
		return rec, fmt.Errorf("version %d: %w", n, ErrNoVersion)
	}
	if err := json.NewDecoder(bytes.NewReader(data)).Decode(&rec); err != nil {
		return rec, fmt.Errorf("%s: version %d: %v: %w", s.path, n, err, rules.ErrCorrupt)
	}
	sum := sha256.Sum256([]byte(rec.YAML))
	if rec.Hash != hex.EncodeToString(sum[:]) {
		return rec, fmt.Errorf("%s: version %d: content does not match its hash: %w", s.path, n, rules.ErrCorrupt)
	}
	return rec, nil
}

// Current returns the current rule set and its version, or ErrNoRules.
func (s *Store) Current() (*rules.Set, Version, error) {
	var n uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		if c := tx.Bucket(bucketMeta).Get([]byte(storeCurrentKey)); len(c) == 8 {
			n = binary.BigEndian.Uint64(c)
		}
		return nil
	})
	if err != nil {
		return nil, Version{}, fmt.Errorf("read rule store %s: %w", s.path, err)
	}
	if n == 0 {
		return nil, Version{}, fmt.Errorf("read rule store %s: %w", s.path, ErrNoRules)
	}
	return s.Get(n)
}

// Get returns version n, or ErrNoVersion when it is not (or no longer)
// stored.
func (s *Store) Get(n uint64) (*rules.Set, Version, error) {
	var rec record
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		rec, err = s.decode(n, tx.Bucket(bucketVersions).Get(u64key(n)))
		return err
	})
	if err != nil {
		return nil, Version{}, fmt.Errorf("read rule store %s: %w", s.path, err)
	}
	set, err := rules.Parse(fmt.Sprintf("%s@v%d", s.path, n), []byte(rec.YAML))
	if err != nil {
		return nil, Version{}, fmt.Errorf("read rule store %s: version %d does not parse (%v): %w", s.path, n, err, rules.ErrCorrupt)
	}
	return set, recVersion(n, rec), nil
}

// History lists the stored versions, newest first.
func (s *Store) History() ([]Version, error) {
	var out []Version
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketVersions).Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			n, ok := keyNum(k)
			if !ok {
				return fmt.Errorf("bad version key %x: %w", k, rules.ErrCorrupt)
			}
			rec, err := s.decode(n, v)
			if err != nil {
				return err
			}
			out = append(out, recVersion(n, rec))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read rule store %s: %w", s.path, err)
	}
	return out, nil
}
