package dpi

import (
	"bytes"
	"hash/maphash"
)

// Bounds of a worker's quiet-value cache.
const (
	// quietSets and quietWays shape the cache: quietSets sets of
	// quietWays entries (a value's hash picks its set).
	quietSets = 1024
	quietWays = 2
	// quietMaxLen is the longest value the cache keeps: header names,
	// header values up to long user agents and Accept lists, cookie and
	// argument names and values. Longer values are always inspected.
	quietMaxLen = 256
)

// quietEntry is one remembered value: its bytes are quietCache.data at
// the entry's index.
type quietEntry struct {
	hash uint64
	gen  uint64 // ruleset generation (0: empty entry)
	fp   uint32 // plan.Field.ID
	n    uint32 // len of the value
}

// quietCache remembers values of block fields that a full inspection
// found quiet: no pattern of any group of the field's plan reported a
// match (not even one its confirmation then rejected) and no detector
// hit. Inspecting such a value again — the same header names, user agents,
// cookie names... on every request — transforms and scans it for nothing;
// the worker replays the (empty) result instead. The answer is exact: an
// entry matches only the same ruleset generation, field plan and bytes,
// and a value is remembered only when nothing about the result depended on
// anything else (see worker.scanValue). The hash seed is random per worker,
// so crafted values cannot be aimed at one set; a miss costs a hash and a
// bounded copy.
type quietCache struct {
	seed maphash.Seed
	ent  [quietSets * quietWays]quietEntry
	// next is, per set, the way the next insertion replaces (the one not
	// used last).
	next [quietSets]uint8
	data [quietSets * quietWays][quietMaxLen]byte
}

func newQuietCache() *quietCache { return &quietCache{seed: maphash.MakeSeed()} }

// hash returns the key hash of value.
func (q *quietCache) hash(value []byte) uint64 { return maphash.Bytes(q.seed, value) }

// has reports whether value (hash h) of field plan fp under ruleset
// generation gen is known to be quiet.
func (q *quietCache) has(h, gen uint64, fp uint32, value []byte) bool {
	set := int(h % quietSets)
	for way := range quietWays {
		i := set*quietWays + way
		e := &q.ent[i]
		if e.hash == h && e.gen == gen && e.fp == fp && int(e.n) == len(value) && bytes.Equal(q.data[i][:e.n], value) {
			q.next[set] = uint8((way + 1) % quietWays)
			return true
		}
	}
	return false
}

// add remembers value (hash h, at most quietMaxLen bytes) as quiet.
func (q *quietCache) add(h, gen uint64, fp uint32, value []byte) {
	if len(value) > quietMaxLen || gen == 0 {
		return
	}
	set := int(h % quietSets)
	way := int(q.next[set])
	i := set*quietWays + way
	q.ent[i] = quietEntry{hash: h, gen: gen, fp: fp, n: uint32(copy(q.data[i][:], value))}
	q.next[set] = uint8((way + 1) % quietWays)
}
