// Package hs is the DPI engine's thin, allocation-free binding to
// Hyperscan's scanning API.
//
// The rules package compiles databases with gohs (github.com/flier/gohs),
// whose scan calls allocate on every call (a runtime/cgo.Handle, a boxed
// handler context) and register each handle in a process-wide map that all
// workers contend on. On the packet path that is a few hundred nanoseconds
// and several allocations per scan. This package calls hs_scan,
// hs_scan_stream, hs_reset_stream and hs_close_stream directly: a C callback
// appends each match to a C-allocated batch, and the matches are handed to
// a Go Handler after the scan returns (or when the batch fills, through one
// exported Go function). Nothing is allocated per scan.
//
// Databases stay owned by gohs: Block and StreamDB borrow the
// hs_database_t pointer from a gohs database (falling back to a private
// deserialised copy if gohs's layout ever changes). Scratch spaces are
// clones of a gohs scratch and owned here.
package hs

/*
#cgo pkg-config: libhs
#cgo linux LDFLAGS: -lm -lstdc++
#include <stdlib.h>
#include <stdint.h>
#include <hs.h>

typedef struct {
	unsigned int id;
	unsigned int _pad;
	unsigned long long from, to;
} dw_match;

typedef struct {
	dw_match *m;
	unsigned int n, cap;
	uintptr_t slot;
} dw_ctx;

extern void dwDrain(uintptr_t slot);

static int dw_on_match(unsigned int id, unsigned long long from,
		unsigned long long to, unsigned int flags, void *p) {
	dw_ctx *c = (dw_ctx *)p;
	if (c->n == c->cap) {
		dwDrain(c->slot);
	}
	dw_match *m = &c->m[c->n++];
	m->id = id;
	m->from = from;
	m->to = to;
	return 0;
}

static dw_ctx *dw_new_ctx(unsigned int cap, uintptr_t slot) {
	dw_ctx *c = calloc(1, sizeof(dw_ctx));
	if (!c) return NULL;
	c->m = calloc(cap, sizeof(dw_match));
	if (!c->m) { free(c); return NULL; }
	c->cap = cap;
	c->slot = slot;
	return c;
}

static void dw_free_ctx(dw_ctx *c) {
	if (c) { free(c->m); free(c); }
}

static int dw_scan(const hs_database_t *db, const char *data, unsigned int len,
		hs_scratch_t *s, dw_ctx *c) {
	return hs_scan(db, data, len, 0, s, dw_on_match, c);
}

static int dw_scan_stream(hs_stream_t *st, const char *data, unsigned int len,
		hs_scratch_t *s, dw_ctx *c) {
	return hs_scan_stream(st, data, len, 0, s, dw_on_match, c);
}

static int dw_reset_stream(hs_stream_t *st, hs_scratch_t *s, dw_ctx *c) {
	return hs_reset_stream(st, 0, s, s ? dw_on_match : NULL, c);
}

static int dw_close_stream(hs_stream_t *st, hs_scratch_t *s, dw_ctx *c) {
	return hs_close_stream(st, s, s ? dw_on_match : NULL, c);
}

static int dw_open_stream(const hs_database_t *db, hs_stream_t **st) {
	return hs_open_stream(db, 0, st);
}

static int dw_db_size(const hs_database_t *db, size_t *size) {
	return hs_database_size(db, size);
}

static int dw_stream_size(const hs_database_t *db, size_t *size) {
	return hs_stream_size(db, size);
}

static int dw_clone_scratch(const hs_scratch_t *src, hs_scratch_t **dst) {
	return hs_clone_scratch(src, dst);
}

static int dw_free_scratch(hs_scratch_t *s) {
	return hs_free_scratch(s);
}

static int dw_deserialize(const char *bytes, size_t len, hs_database_t **db) {
	return hs_deserialize_database(bytes, len, db);
}

static int dw_free_db(hs_database_t *db) {
	return hs_free_database(db);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/flier/gohs/hyperscan"
)

// Errors.
var (
	// ErrNoDatabase: the database handle is empty.
	ErrNoDatabase = errors.New("hyperscan: no database")
	// ErrTooManyScanners: MaxScanners scanners are alive.
	ErrTooManyScanners = errors.New("hyperscan: too many scanners")
)

// Error is a Hyperscan error code.
type Error int

func (e Error) Error() string {
	switch e {
	case -1:
		return "hyperscan: invalid parameter"
	case -2:
		return "hyperscan: memory allocation failed"
	case -3:
		return "hyperscan: scan terminated"
	case -5:
		return "hyperscan: database for another platform"
	case -6:
		return "hyperscan: database of the wrong mode"
	case -7:
		return "hyperscan: bad database"
	case -9:
		return "hyperscan: bad alignment"
	case -10:
		return "hyperscan: scratch in use"
	}
	return fmt.Sprintf("hyperscan: error %d", int(e))
}

// Limits.
const (
	// MaxScanners bounds the scanners alive at once (one per worker, plus
	// tests).
	MaxScanners = 4096
	// DefaultBatch is the matches one scan collects before handing them
	// to the Handler in the middle of the scan.
	DefaultBatch = 256
)

// DB is a Hyperscan database the engine scans with. The zero value is
// empty.
type DB struct {
	p   *C.hs_database_t
	own bool // a private copy, freed by Release
}

// Block returns the database of a gohs block-mode database.
func Block(db hyperscan.BlockDatabase) (DB, error) { return borrow(db) }

// Stream returns the database of a gohs stream-mode database.
func Stream(db hyperscan.StreamDatabase) (DB, error) { return borrow(db) }

// borrow finds the hs_database_t inside a gohs database. gohs keeps it in
// an unexported field a few embedded pointers deep; the walk is checked
// against hs_database_size, and when it fails the database is serialised
// and deserialised into a private copy instead.
func borrow(db hyperscan.Database) (DB, error) {
	if db == nil || reflect.ValueOf(db).IsNil() {
		return DB{}, ErrNoDatabase
	}
	want, err := db.Size()
	if err != nil {
		return DB{}, fmt.Errorf("hyperscan: database size: %w", err)
	}
	if p := findDB(reflect.ValueOf(db)); p != nil {
		var size C.size_t
		if C.dw_db_size(p, &size) == 0 && int(size) == want {
			return DB{p: p}, nil
		}
	}
	return borrowCopy(db)
}

// borrowCopy deserialises a private copy of db.
func borrowCopy(db hyperscan.Database) (DB, error) {
	data, err := db.Marshal()
	if err != nil {
		return DB{}, fmt.Errorf("hyperscan: serialise database: %w", err)
	}
	var p *C.hs_database_t
	if rc := C.dw_deserialize((*C.char)(unsafe.Pointer(unsafe.SliceData(data))), C.size_t(len(data)), &p); rc != 0 {
		return DB{}, fmt.Errorf("hyperscan: deserialise database: %w", Error(rc))
	}
	return DB{p: p, own: true}, nil
}

// findDB walks embedded pointers to gohs's baseDatabase and returns its db
// field, or nil when the layout is not the expected one.
func findDB(v reflect.Value) *C.hs_database_t {
	for depth := 0; depth < 8; depth++ {
		if v.Kind() == reflect.Interface {
			v = v.Elem()
		}
		if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
			return nil
		}
		s := v.Elem()
		if f, ok := s.Type().FieldByName("db"); ok && len(f.Index) == 1 {
			if fv := s.Field(f.Index[0]); fv.Kind() == reflect.Pointer {
				return (*C.hs_database_t)(unsafe.Pointer(fv.Pointer()))
			}
			return nil
		}
		if s.NumField() == 0 || !s.Type().Field(0).Anonymous {
			return nil
		}
		v = s.Field(0)
	}
	return nil
}

// Release frees a private copy; a borrowed database belongs to gohs.
func (d *DB) Release() {
	if d.own && d.p != nil {
		C.dw_free_db(d.p)
	}
	*d = DB{}
}

// StreamSize is the bytes of stream state one open stream of d takes.
func (d DB) StreamSize() int {
	var size C.size_t
	if d.p == nil || C.dw_stream_size(d.p, &size) != 0 {
		return 0
	}
	return int(size)
}

// Scratch is a Hyperscan scratch space owned by one worker.
type Scratch struct {
	p *C.hs_scratch_t
}

// CloneScratch clones a gohs scratch (valid for every database it was
// allocated or grown for). A nil s gives a nil Scratch: a rule set without
// databases needs none.
func CloneScratch(s *hyperscan.Scratch) (*Scratch, error) {
	if s == nil {
		return nil, nil
	}
	src := *(**C.hs_scratch_t)(unsafe.Pointer(s)) // hyperscan.Scratch{s hs.Scratch}
	want, err := s.Size()
	if err != nil {
		return nil, fmt.Errorf("hyperscan: scratch size: %w", err)
	}
	var size C.size_t
	if src == nil || C.hs_scratch_size(src, &size) != 0 || int(size) != want {
		return nil, errors.New("hyperscan: unexpected gohs scratch layout")
	}
	var dst *C.hs_scratch_t
	if rc := C.dw_clone_scratch(src, &dst); rc != 0 {
		return nil, fmt.Errorf("hyperscan: clone scratch: %w", Error(rc))
	}
	return &Scratch{p: dst}, nil
}

// Free frees the scratch space.
func (s *Scratch) Free() {
	if s != nil && s.p != nil {
		C.dw_free_scratch(s.p)
		s.p = nil
	}
}

// Handler receives the matches of a scan, in the order Hyperscan reported
// them: pattern id and the match's start (when the pattern was compiled
// with SOM, else 0) and end offsets.
type Handler interface {
	Match(id uint, from, to uint64)
}

// OpenStream is a Hyperscan stream (C memory). The zero value is closed.
type OpenStream struct {
	p *C.hs_stream_t
}

// Open reports whether the stream is open.
func (s OpenStream) Open() bool { return s.p != nil }

// Scanner scans with one scratch space, from one goroutine at a time. It
// holds a C-allocated match batch; Close frees it.
type Scanner struct {
	ctx  *C.dw_ctx
	slot int
	h    Handler
}

var (
	registry   [MaxScanners]atomic.Pointer[Scanner]
	registryMu sync.Mutex
)

// NewScanner returns a scanner that hands matches over in batches of
// batch (DefaultBatch when 0).
func NewScanner(batch int) (*Scanner, error) {
	if batch <= 0 {
		batch = DefaultBatch
	}
	s := &Scanner{slot: -1}
	registryMu.Lock()
	for i := range registry {
		if registry[i].Load() == nil {
			s.slot = i
			registry[i].Store(s)
			break
		}
	}
	registryMu.Unlock()
	if s.slot < 0 {
		return nil, ErrTooManyScanners
	}
	s.ctx = C.dw_new_ctx(C.uint(batch), C.uintptr_t(s.slot))
	if s.ctx == nil {
		s.Close()
		return nil, Error(-2)
	}
	return s, nil
}

// Close frees the scanner's C memory.
func (s *Scanner) Close() {
	if s.ctx != nil {
		C.dw_free_ctx(s.ctx)
		s.ctx = nil
	}
	if s.slot >= 0 {
		registryMu.Lock()
		registry[s.slot].Store(nil)
		registryMu.Unlock()
		s.slot = -1
	}
}

// flush hands the collected matches to the handler.
func (s *Scanner) flush() {
	n := int(s.ctx.n)
	s.ctx.n = 0
	if n == 0 || s.h == nil {
		return
	}
	ms := unsafe.Slice(s.ctx.m, int(s.ctx.cap))[:n]
	for i := range ms {
		m := &ms[i]
		s.h.Match(uint(m.id), uint64(m.from), uint64(m.to))
	}
}

//export dwDrain
func dwDrain(slot C.uintptr_t) {
	if s := registry[int(slot)].Load(); s != nil {
		s.flush()
	}
}

func (s *Scanner) done(rc C.int) error {
	s.flush()
	s.h = nil
	if rc != 0 {
		return Error(rc)
	}
	return nil
}

func cdata(b []byte) (*C.char, C.uint) {
	return (*C.char)(unsafe.Pointer(unsafe.SliceData(b))), C.uint(len(b))
}

// Scan scans data with block-mode database db. Empty data is not scanned
// (no rule pattern matches the empty string).
func (s *Scanner) Scan(db DB, sc *Scratch, data []byte, h Handler) error {
	if len(data) == 0 {
		return nil
	}
	if db.p == nil || sc == nil {
		return ErrNoDatabase
	}
	s.h = h
	p, n := cdata(data)
	return s.done(C.dw_scan(db.p, p, n, sc.p, s.ctx))
}

// Open opens a stream of stream-mode database db.
func (s *Scanner) Open(db DB) (OpenStream, error) {
	if db.p == nil {
		return OpenStream{}, ErrNoDatabase
	}
	var st *C.hs_stream_t
	if rc := C.dw_open_stream(db.p, &st); rc != 0 {
		return OpenStream{}, Error(rc)
	}
	return OpenStream{p: st}, nil
}

// ScanStream scans the next piece of stream st.
func (s *Scanner) ScanStream(st OpenStream, sc *Scratch, data []byte, h Handler) error {
	if len(data) == 0 {
		return nil
	}
	if st.p == nil || sc == nil {
		return ErrNoDatabase
	}
	s.h = h
	p, n := cdata(data)
	return s.done(C.dw_scan_stream(st.p, p, n, sc.p, s.ctx))
}

// Reset ends the stream's data (matches at the end of data go to h) and
// makes it a fresh stream of the same database, without freeing it. With
// a nil h or sc end-of-data matches are discarded.
func (s *Scanner) Reset(st OpenStream, sc *Scratch, h Handler) error {
	if st.p == nil {
		return ErrNoDatabase
	}
	var scp *C.hs_scratch_t
	if sc != nil && h != nil {
		scp = sc.p
	}
	s.h = h
	return s.done(C.dw_reset_stream(st.p, scp, s.ctx))
}

// CloseStream ends and frees the stream; matches at the end of data go to
// h (discarded with a nil h or sc). st must not be used afterwards.
func (s *Scanner) CloseStream(st *OpenStream, sc *Scratch, h Handler) error {
	if st.p == nil {
		return nil
	}
	var scp *C.hs_scratch_t
	if sc != nil && h != nil {
		scp = sc.p
	}
	s.h = h
	rc := C.dw_close_stream(st.p, scp, s.ctx)
	st.p = nil
	return s.done(rc)
}
