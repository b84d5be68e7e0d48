package grpc

import (
	"os"
	"slices"
	"testing"

	"github.com/deepwall/deepwall/dpi/proto/internal/prototest"
)

// fuzzLimits are small so that the fuzzer reaches every bound.
var fuzzLimits = Limits{MaxMessage: 256, MaxDecoded: 512, MaxDepth: 6, MaxFields: 64}

func walkSeeds(f *testing.F) [][]byte {
	inner := pbString(nil, 1, "1 UNION SELECT password")
	seeds := [][]byte{
		pbInt(pbBytes(pbString(nil, 1, "widget"), 2, inner), 3, 42),
		pbString(nil, 7, "\n "+string(make([]byte, 32))),
		{0x0a, 0x7f, 'a'},
		{0x0b, 0x0c},
	}
	// The captured call's client bytes, message and all.
	if b, err := os.ReadFile("../http2/testdata/conv/grpc.0.c2s"); err == nil {
		seeds = append(seeds, b)
	}
	return seeds
}

// FuzzWalk walks arbitrary bytes: no panic, paths within MaxDepth,
// values inside the message, at most MaxFields fields yielded.
func FuzzWalk(f *testing.F) {
	for _, s := range walkSeeds(f) {
		f.Add(s)
	}
	w := NewWalker(fuzzLimits)
	f.Fuzz(func(t *testing.T, msg []byte) {
		n := 0
		w.Walk(msg, func(fl Field) bool {
			n++
			if len(fl.Path) > fuzzLimits.MaxDepth || len(fl.Value) == 0 || len(fl.Value) > len(msg) {
				t.Fatalf("field %v of %d bytes", fl.Path, len(fl.Value))
			}
			return true
		})
		if n > fuzzLimits.MaxFields {
			t.Fatalf("%d fields", n)
		}
	})
}

// FuzzReader splits arbitrary DATA into messages, whole and in chunks:
// the same messages and findings either way, buffers within MaxMessage.
func FuzzReader(f *testing.F) {
	for _, s := range walkSeeds(f) {
		f.Add(frame(0, s), []byte{3, 1}, false)
	}
	f.Add(frame(1, gz(f, []byte("compressed"))), []byte{2}, true)
	sc := NewScratch(fuzzLimits)
	f.Fuzz(func(t *testing.T, data, seed []byte, gzip bool) {
		enc := EncodingIdentity
		if gzip {
			enc = EncodingGzip
		}
		run := func(chunks [][]byte) *handler {
			var r Reader
			r.Reset(enc)
			h := &handler{}
			for _, c := range chunks {
				r.Feed(sc, c, h)
				if len(r.buf) > fuzzLimits.MaxMessage {
					t.Fatalf("%d bytes buffered", len(r.buf))
				}
			}
			r.End(h)
			return h
		}
		want, got := run([][]byte{data}), run(prototest.RandomChunks(data, seed))
		if !slices.Equal(want.msgs, got.msgs) || !slices.Equal(want.findings, got.findings) {
			t.Fatalf("chunked %s, whole %s", got, want)
		}
	})
}
