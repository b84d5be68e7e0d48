package http2

import (
	"flag"
	"fmt"
	"strings"
	"testing"

	"github.com/deepwall/deepwall/dpi/proto/internal/prototest"
	"github.com/deepwall/deepwall/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestConversations parses the captured conversations (testdata/conv)
// and compares what the Sink received with testdata/golden; it also cuts
// each direction at every byte boundary and in random chunks, and wants
// the same events.
func TestConversations(t *testing.T) {
	sc := NewScratch(Limits{}, nil)
	for _, c := range loadConversations(t) {
		t.Run(c.name, func(t *testing.T) {
			cs, ss := c.c2s[c.h1c:], c.s2c[c.h1s:]
			whole := func() string {
				r := newRecorder(t)
				run(NewParser(r, sc), c, [][]byte{cs}, [][]byte{ss})
				return r.String()
			}()
			var b strings.Builder
			if c.upgraded {
				fmt.Fprintf(&b, "upgrade after %d/%d bytes of HTTP/1, requests %q, settings %q\n", c.h1c, c.h1s, c.h1Requests, c.settings)
			}
			b.WriteString(whole)
			testutil.Golden(t, "testdata/golden/"+c.name+".txt", []byte(b.String()), *update)
			p := NewParser(nil, sc)
			for _, seed := range [][]byte{{1}, {3, 7}, {200, 1, 9}} {
				r := newRecorder(t)
				p.Reset(r, sc)
				run(p, c, prototest.RandomChunks(cs, seed), prototest.RandomChunks(ss, seed))
				if got := r.String(); got != whole {
					t.Fatalf("chunks %v:\n%s\nwhole:\n%s", seed, got, whole)
				}
			}
			if len(cs)+len(ss) > 4096 {
				return
			}
			for cut := range len(cs) + len(ss) {
				r := newRecorder(t)
				p.Reset(r, sc)
				cc, scs := [][]byte{cs}, [][]byte{ss}
				if cut < len(cs) {
					cc = [][]byte{cs[:cut], cs[cut:]}
				} else {
					k := cut - len(cs)
					scs = [][]byte{ss[:k], ss[k:]}
				}
				run(p, c, cc, scs)
				if got := r.String(); got != whole {
					t.Fatalf("cut at %d:\n%s\nwhole:\n%s", cut, got, whole)
				}
			}
		})
	}
}
