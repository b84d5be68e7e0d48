package ruletest

import (
	"sync"
	"testing"

	"github.com/deepwall/deepwall/rules"
)

var defaultPack struct {
	once sync.Once
	data []byte // the compiled pack, serialised
	err  error
}

// DefaultPack returns the default rule pack compiled, closed when tb ends.
// The pack takes seconds of CPU to compile, so it is compiled once per
// test binary and each call gets its own copy of the databases,
// deserialised from that compile: a test may close or hand over its copy
// without touching another test's.
func DefaultPack(tb testing.TB) *rules.Compiled {
	tb.Helper()
	data := DefaultPackBinary(tb)
	set, err := rules.DefaultPack()
	if err != nil {
		tb.Fatal(err)
	}
	c, err := rules.UnmarshalCompiled(set, data)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// DefaultPackBinary returns the default pack compiled and serialised, the
// form the agent keeps in its state directory's cache file.
func DefaultPackBinary(tb testing.TB) []byte {
	tb.Helper()
	p := &defaultPack
	p.once.Do(func() {
		set, err := rules.DefaultPack()
		if err != nil {
			p.err = err
			return
		}
		c, err := rules.Compile(set)
		if err != nil {
			p.err = err
			return
		}
		defer c.Close()
		p.data, p.err = c.MarshalBinary()
	})
	if p.err != nil {
		tb.Fatalf("default pack: %v", p.err)
	}
	return p.data
}
