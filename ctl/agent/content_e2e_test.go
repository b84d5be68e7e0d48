package agent_test

import (
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deepwall/deepwall/ctl/eve"
	"github.com/deepwall/deepwall/ctl/internal/demo"
	"github.com/deepwall/deepwall/internal/testnet"
	"github.com/deepwall/deepwall/internal/testutil"
)

// recordingServer serves HTTP in the server namespace and records every
// request that reaches the application, its body decoded as an
// application that honours Content-Encoding gzip reads it; /account.gz
// is a gzipped page with a card number (not recorded).
type recordingServer struct {
	mu   sync.Mutex
	seen []string // "METHOD target body"
}

func (s *recordingServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

func startRecordingServer(tb testing.TB, topo *testnet.Topology) (*recordingServer, netip.AddrPort) {
	tb.Helper()
	rs := &recordingServer{}
	addr := netip.AddrPortFrom(testnet.ServerIP, 80)
	ln := testnet.Listen(tb, topo.Server, "tcp", addr)
	page := testutil.Encode(tb, "gzip", []byte("<p>Card on file: "+demo.Card+"</p>\n"))
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/account.gz" {
			// A page with a card number, gzipped as servers send it.
			w.Header().Set("Content-Encoding", "gzip")
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write(page)
			return
		}
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			if zr, err := gzip.NewReader(r.Body); err == nil {
				body = zr
			}
		}
		b, _ := io.ReadAll(body)
		rs.mu.Lock()
		rs.seen = append(rs.seen, r.Method+" "+r.RequestURI+" "+string(b))
		rs.mu.Unlock()
		fmt.Fprintf(w, "ok %d", len(b))
	})}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return rs, addr
}

// TestPrivilegedAgentContentDecoding: through the live inline path, a SQL
// injection in a gzip request body and one behind empty lines before the
// request line never reach the application (the connection is reset and
// the alert logged), while a benign gzip body arrives intact; a card
// number in a gzip response is alerted, masked.
func TestPrivilegedAgentContentDecoding(t *testing.T) { forModes(t, testAgentContentDecoding) }

func testAgentContentDecoding(t *testing.T, m agentMode) {
	topo := m.topology(t)
	rs, server := startRecordingServer(t, topo)
	a := startAgent(t, topo, t.TempDir())
	t.Cleanup(func() { a.stop(t) })

	form := "Content-Type: application/x-www-form-urlencoded"
	gz := func(s string) string { return string(testutil.Encode(t, "gzip", []byte(s))) }
	benign := "user=alice&remember=1"
	res := rawRequest(t, topo, server, request("POST", "/benign", gz(benign), form, "Content-Encoding: gzip"))
	if res.status != 200 || string(res.body) != fmt.Sprintf("ok %d", len(benign)) {
		t.Fatalf("benign gzip POST: %+v", res)
	}
	attacks := []struct{ name, req string }{
		{"gzip body", request("POST", "/gzip", gz("id=1' UNION SELECT password FROM users--"), form, "Content-Encoding: gzip")},
		{"empty lines", "\r\n\r\n" + get("/lines?id=1%27%20UNION%20SELECT%20password%20FROM%20users--")},
	}
	ports := map[string]uint16{}
	for _, at := range attacks {
		res := rawRequest(t, topo, server, at.req)
		if res.status != 0 || !res.reset {
			t.Errorf("%s: status %d, reset %v, err %v", at.name, res.status, res.reset, res.err)
		}
		ports[at.name] = res.port
	}
	a.waitEvents(t, "a blocking alert per attack", func(evs []eve.Event) bool {
		for _, p := range ports {
			if len(blockedIDs(evs, p)) == 0 {
				return false
			}
		}
		return true
	})
	t.Run("card number in a gzip response", func(t *testing.T) {
		res := rawRequest(t, topo, server, get("/account.gz"))
		if res.status != 200 {
			t.Fatalf("DLP alert rules must not block: %+v", res)
		}
		a.waitCardAlert(t, res.port)
	})
	seen := rs.requests()
	for _, r := range seen {
		if !strings.HasPrefix(r, "POST /benign ") {
			t.Errorf("the application received %q", r)
		}
	}
	if len(seen) != 1 || seen[0] != "POST /benign "+benign {
		t.Errorf("the application received %q", seen)
	}
}
