package plan

import (
	"strings"
	"testing"

	"github.com/deepwall/deepwall/dpi/proto"
	"github.com/deepwall/deepwall/internal/ruletest"
	"github.com/deepwall/deepwall/rules"
)

// TestFieldKinds walks every field of the rule language: each must have a
// slot in Set.Block (block fields) or a stream kind of its own (stream
// fields), or rules on it would never be inspected.
func TestFieldKinds(t *testing.T) {
	streams := map[StreamKind]rules.Field{}
	for _, name := range rules.FieldNames() {
		if strings.HasPrefix(name, "http.header.<") {
			continue
		}
		f, err := rules.ParseField(name)
		if err != nil {
			t.Fatal(err)
		}
		if f.Stream() {
			k := streamKindOf(f.Kind)
			if prev, ok := streams[k]; ok {
				t.Errorf("stream fields %s and %s share stream kind %d", prev, f, k)
			}
			streams[k] = f
			continue
		}
		if int(f.Kind) >= numFieldKinds {
			t.Errorf("field %s: kind %d, but Set.Block has %d slots (numFieldKinds)", f, f.Kind, numFieldKinds)
		}
	}
	if len(streams) != int(NumStreamKinds) {
		t.Errorf("%d stream fields, %d stream kinds", len(streams), NumStreamKinds)
	}
}

func TestNew(t *testing.T) {
	c := ruletest.DefaultPack(t)
	s, err := New(c, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Release)
	if len(s.Scratch) != 2 {
		t.Errorf("%d scratch spaces, want 2", len(s.Scratch))
	}
	ids := map[uint32]bool{}
	groups := 0
	for _, fps := range [][]*Field{s.Block[:], s.Headers, s.Stream[:]} {
		for _, fp := range fps {
			if fp == nil {
				continue
			}
			if ids[fp.ID] {
				t.Errorf("field %s: ID %d used twice", fp.Field, fp.ID)
			}
			ids[fp.ID] = true
			groups += len(fp.Groups)
		}
	}
	if groups != len(c.Groups) {
		t.Errorf("%d groups planned, the set has %d", groups, len(c.Groups))
	}
	if !s.App(proto.HTTP1).Fields || s.App(proto.Protocol(255)) != s.App(proto.Unknown) {
		t.Error("App")
	}
}
