package rules

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/flier/gohs/hyperscan"

	"github.com/deepwall/deepwall/internal/atomicfile"
	"github.com/deepwall/deepwall/rules/transform"
)

// cacheMagic starts a serialised Compiled; cacheFormat changes whenever the
// layout or the way patterns are planned changes, so old caches recompile.
const (
	cacheMagic  = "DWRULES\x00"
	cacheFormat = 2
	// maxCacheSize bounds what UnmarshalCompiled accepts.
	maxCacheSize = 1 << 30
	// sharedDB marks a group whose database is an earlier group's.
	sharedDB = 0xFFFFFFFF
)

// cacheKey names what a serialised Compiled is valid for: the rule set's
// canonical hash, the Hyperscan version, the platform Hyperscan tunes for,
// and the cache format.
func cacheKey(set *Set) [32]byte {
	h := sha256.New()
	sum := set.Hash()
	h.Write(sum[:])
	fmt.Fprintf(h, "|%s|%s|%d", hyperscan.Version(), runtime.GOARCH, cacheFormat)
	// hs_populate_platform only reads CPUID and cannot fail, so gohs's
	// PopulatePlatform, which drops the error, always has a value.
	p := hyperscan.PopulatePlatform()
	fmt.Fprintf(h, "|tune=%d|cpu=%d", p.Tune(), p.CpuFeatures())
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// MarshalBinary serialises the compiled databases with Hyperscan's own
// serialisation, keyed by Key so that UnmarshalCompiled can tell whether
// they still fit the rule set, Hyperscan library and CPU. The rules
// themselves are not included: they come from the Set given to
// UnmarshalCompiled.
func (c *Compiled) MarshalBinary() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(cacheMagic)
	putU32(&b, cacheFormat)
	b.Write(c.Key[:])
	putU32(&b, uint32(len(c.Groups)))
	owner := map[hyperscan.Database]int{}
	for gi, g := range c.Groups {
		putStr(&b, groupKey(g.Field, g.Transforms))
		putU32(&b, uint32(len(g.Rules)))
		for i, r := range g.Rules {
			p := &g.Patterns[i]
			putU32(&b, r.ID)
			putU32(&b, uint32(p.Cond))
			putU32(&b, uint32(p.Phrase+1))
			putU32(&b, uint32(p.Flags))
			putU32(&b, p.MaxWidth)
			var bits byte
			if p.SOM {
				bits |= 1
			}
			if p.Prefilter {
				bits |= 2
			}
			if p.confirm != nil {
				bits |= 4
			}
			b.WriteByte(bits)
		}
		db := g.database()
		if db == nil {
			putU32(&b, 0)
			continue
		}
		// A database shared with an earlier group is written once:
		// 0xFFFFFFFF and the owner's index.
		if o, ok := owner[db]; ok {
			putU32(&b, sharedDB)
			putU32(&b, uint32(o))
			continue
		}
		owner[db] = gi
		raw, err := db.Marshal()
		if err != nil {
			return nil, fmt.Errorf("serialise hyperscan database of %s: %w", groupKey(g.Field, g.Transforms), err)
		}
		putU32(&b, uint32(len(raw)))
		b.Write(raw)
	}
	sum := sha256.Sum256(b.Bytes())
	b.Write(sum[:])
	return b.Bytes(), nil
}

func putU32(b *bytes.Buffer, v uint32) { _ = binary.Write(b, binary.LittleEndian, v) }

func putStr(b *bytes.Buffer, s string) {
	putU32(b, uint32(len(s)))
	b.WriteString(s)
}

// reader reads the serialised form with bounds checks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) u32() uint32 {
	if r.err != nil || len(r.b) < 4 {
		r.fail()
		return 0
	}
	v := binary.LittleEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *reader) bytes(n uint32) []byte {
	if r.err != nil || uint64(len(r.b)) < uint64(n) {
		r.fail()
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) byte1() byte {
	if v := r.bytes(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = fmt.Errorf("compiled rules truncated: %w", ErrCorrupt)
	}
}

// UnmarshalCompiled restores what MarshalBinary wrote for set. It returns
// an error matching ErrStale when data was made for another rule set,
// Hyperscan version or platform (recompile), and ErrCorrupt when data is
// damaged.
func UnmarshalCompiled(set *Set, data []byte) (*Compiled, error) {
	if set == nil {
		return nil, errors.New("load compiled rules: nil set")
	}
	if len(data) < len(cacheMagic)+4+32+32 || len(data) > maxCacheSize || string(data[:len(cacheMagic)]) != cacheMagic {
		return nil, fmt.Errorf("load compiled rules: not a deepwall compiled rule file: %w", ErrCorrupt)
	}
	body, trailer := data[:len(data)-32], data[len(data)-32:]
	if sum := sha256.Sum256(body); !bytes.Equal(sum[:], trailer) {
		return nil, fmt.Errorf("load compiled rules: checksum mismatch: %w", ErrCorrupt)
	}
	r := &reader{b: body[len(cacheMagic):]}
	if v := r.u32(); v != cacheFormat {
		return nil, fmt.Errorf("load compiled rules: format %d, want %d: %w", v, cacheFormat, ErrStale)
	}
	var key [32]byte
	copy(key[:], r.bytes(32))
	if key != cacheKey(set) {
		return nil, fmt.Errorf("load compiled rules: made for another rule set, Hyperscan or CPU: %w", ErrStale)
	}
	if err := set.validate(false); err != nil {
		return nil, err
	}
	c := layout(set)
	c.Key = key
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	n := r.u32()
	if r.err == nil && int(n) != len(c.Groups) {
		return nil, fmt.Errorf("load compiled rules: %d groups, the set has %d: %w", n, len(c.Groups), ErrStale)
	}
	for gi, g := range c.Groups {
		name := string(r.bytes(r.u32()))
		if r.err != nil {
			break
		}
		if name != groupKey(g.Field, g.Transforms) {
			return nil, fmt.Errorf("load compiled rules: group %q where %q was expected: %w", name, groupKey(g.Field, g.Transforms), ErrStale)
		}
		if np := r.u32(); r.err == nil && int(np) != len(g.Rules) {
			return nil, fmt.Errorf("load compiled rules: group %s has %d patterns, want %d: %w", name, np, len(g.Rules), ErrStale)
		}
		for i, rule := range g.Rules {
			id, cond, phrase, flags, width, bits := r.u32(), r.u32(), r.u32(), r.u32(), r.u32(), r.byte1()
			if r.err != nil {
				break
			}
			p := &g.Patterns[i]
			if id != rule.ID || int(cond) != p.Cond || int(phrase)-1 != p.Phrase {
				return nil, fmt.Errorf("load compiled rules: pattern %d of %s is rule %d condition %d, want %d condition %d: %w", i, name, id, cond, rule.ID, p.Cond, ErrStale)
			}
			p.Flags, p.MaxWidth, p.SOM, p.Prefilter = hyperscan.CompileFlag(flags), width, bits&1 != 0, bits&2 != 0
			p.Empty = p.Flags&hyperscan.AllowEmpty != 0
			m := g.Cond(i)
			if m.Validate != "" {
				p.validate, _ = transform.LookupValidator(m.Validate)
			}
			if bits&4 != 0 {
				confirm := newConfirmer
				if p.Prefilter && p.Flags&hyperscan.PrefilterMode != 0 {
					confirm = prefilterConfirmer // a split database for a pattern too large
				}
				cf, err := confirm(m)
				if err != nil {
					return nil, fmt.Errorf("load compiled rules: rule %d: %v: %w", rule.ID, err, ErrStale)
				}
				p.confirm = cf
			}
		}
		n := r.u32()
		if n == sharedDB {
			o := r.u32()
			if r.err != nil {
				break
			}
			if int(o) >= gi || c.Groups[o].Stream != g.Stream || c.Groups[o].database() == nil {
				return nil, fmt.Errorf("load compiled rules: group %s shares the database of group %d: %w", name, o, ErrCorrupt)
			}
			g.Block, g.Streaming, g.shared = c.Groups[o].Block, c.Groups[o].Streaming, true
			continue
		}
		raw := r.bytes(n)
		if r.err != nil {
			break
		}
		if len(raw) == 0 {
			continue
		}
		if g.Stream {
			db, err := hyperscan.UnmarshalStreamDatabase(raw)
			if err != nil {
				return nil, fmt.Errorf("load compiled rules: hyperscan database of %s: %v: %w", name, err, ErrStale)
			}
			g.Streaming = db
		} else {
			db, err := hyperscan.UnmarshalBlockDatabase(raw)
			if err != nil {
				return nil, fmt.Errorf("load compiled rules: hyperscan database of %s: %v: %w", name, err, ErrStale)
			}
			g.Block = db
		}
	}
	if r.err != nil {
		return nil, fmt.Errorf("load compiled rules: %w", r.err)
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("load compiled rules: %d trailing bytes: %w", len(r.b), ErrCorrupt)
	}
	ok = true
	return c, nil
}

// LoadOrCompileFrom returns set compiled, from cacheFile when that holds
// the databases of this very set for this Hyperscan and CPU (cached is
// true), else by compiling with CompileFrom(set, prev) (prev may be nil:
// the groups a change left alone are copied from the running set instead
// of being built again) and rewriting cacheFile atomically. A cache that
// cannot be written yields the compiled rules and an error matching
// ErrCacheWrite, which the caller may log and ignore.
func LoadOrCompileFrom(set *Set, cacheFile string, prev *Compiled) (c *Compiled, cached bool, err error) {
	if data, rerr := os.ReadFile(cacheFile); rerr == nil {
		if c, uerr := UnmarshalCompiled(set, data); uerr == nil {
			return c, true, nil
		} else if errors.Is(uerr, ErrInvalid) {
			return nil, false, uerr
		}
	}
	c, err = CompileFrom(set, prev)
	if err != nil {
		return nil, false, err
	}
	data, err := c.MarshalBinary()
	if err == nil {
		err = atomicfile.Write(cacheFile, data, 0o600)
	}
	if err != nil {
		return c, false, fmt.Errorf("%w %s: %v", ErrCacheWrite, cacheFile, err)
	}
	return c, false, nil
}
