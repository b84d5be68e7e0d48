package dpi_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deepwall/deepwall/ctl/eve"
	"github.com/deepwall/deepwall/internal/agenttest"
	"github.com/deepwall/deepwall/internal/testnet"
)

// Ports of the server namespace in TestPrivilegedInlinePrefix.
const (
	nginxPort   = 80   // nginx, proxying to the recorder on backendPort
	rawPort     = 8080 // the recorder itself, reading every byte
	backendPort = 8081 // the recorder behind nginx, on loopback
)

// startNginx runs nginx in ns on ServerIP:nginxPort as a reverse proxy to
// a recorder on 127.0.0.1:backendPort: the recorder sees every request
// nginx acted on. nginx passes requests with methods it does not know
// (any run of A-Z, '_' and '-') to the backend, as it does in production.
func startNginx(tb testing.TB, ns *testnet.NS, backend *recorder) {
	tb.Helper()
	testnet.RequireTools(tb, "apt-get install nginx-light", "nginx")
	bin, _ := exec.LookPath("nginx")
	ln := testnet.Listen(tb, ns, "tcp", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), backendPort))
	go testnet.Serve(ln, backend.serve)
	dir := tb.TempDir()
	conf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 256; }
http {
	access_log %[1]s/access.log;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	server {
		listen %[2]s;
		location / { proxy_pass http://127.0.0.1:%[3]d; }
	}
}
`, dir, netip.AddrPortFrom(testnet.ServerIP, nginxPort), backendPort)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", path)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	ns.Start(tb, cmd)
	for deadline := time.Now().Add(5 * time.Second); ; {
		err := ns.Do(func() error {
			c, err := net.DialTimeout("tcp", netip.AddrPortFrom(testnet.ServerIP, nginxPort).String(), time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("nginx does not listen: %v\n%s", err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// outcome is what a client saw of one request.
type outcome struct {
	port   uint16
	status string // "200", "400", "reset", "closed", "waits"
}

// sendPrefixed writes prefix then req to server from ns, the prefix in a
// segment of its own when pause > 0 (sent that long before req), and
// reads the status line of the answer.
func sendPrefixed(tb testing.TB, ns *testnet.NS, server netip.AddrPort, prefix, req string, pause time.Duration) outcome {
	tb.Helper()
	c := testnet.Dial(tb, ns, "tcp", server)
	defer c.Close()
	_ = c.(*net.TCPConn).SetNoDelay(true)
	o := outcome{port: uint16(c.LocalAddr().(*net.TCPAddr).Port)}
	_ = c.SetDeadline(time.Now().Add(pause + 3*time.Second))
	var err error
	if pause > 0 && prefix != "" {
		if _, err = io.WriteString(c, prefix); err == nil {
			time.Sleep(pause)
			_, err = io.WriteString(c, req)
		}
	} else {
		_, err = io.WriteString(c, prefix+req)
	}
	var line string
	if err == nil {
		line, err = bufio.NewReader(c).ReadString('\n')
	}
	var ne net.Error
	switch {
	case err == nil && len(line) >= 12:
		o.status = line[9:12]
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE):
		o.status = "reset"
	case errors.As(err, &ne) && ne.Timeout():
		o.status = "waits"
	default:
		o.status = "closed"
	}
	return o
}

// verdict says what the engine did to the connection from client port
// port to nginx, from the agent's log past offset from: its blocking
// alerts and drop events, or "forwarded".
func verdict(tb testing.TB, log string, from int, port uint16) string {
	tb.Helper()
	time.Sleep(450 * time.Millisecond) // the log is flushed every 200 ms
	data, _ := os.ReadFile(log)
	var out []string
	for _, line := range bytes.Split(data[min(from, len(data)):], []byte("\n")) {
		var ev eve.Event
		if json.Unmarshal(line, &ev) != nil || ev.SrcPort != port || ev.DestPort != nginxPort {
			continue
		}
		switch {
		case ev.Alert != nil && ev.Alert.Action == "blocked":
			out = append(out, fmt.Sprintf("block %d", ev.Alert.SignatureID))
		case ev.Drop != nil && ev.Drop.Reason != "tcp.hold":
			out = append(out, ev.Drop.Reason)
		}
	}
	if len(out) == 0 {
		return "forwarded"
	}
	return strings.Join(out, ",")
}

// logSize is the length of the agent's log now.
func logSize(log string) int {
	fi, err := os.Stat(log)
	if err != nil {
		return 0
	}
	return int(fi.Size())
}

// prefixCases are bytes before the request line, as nginx 1.22 treats
// them: it skips CR and LF (any number, also a lone CR), takes any run of
// A-Z, '_' and '-' as a method it passes on, and answers 400 to anything
// else. served says nginx acts on the request behind the prefix; then the
// engine must see the request (benign: it passes byte-exact; attack:
// blocked). Otherwise the engine may block or apply the policy for
// unidentified traffic. edit, when set, reshapes the request line as well
// (what nginx accepts of an unknown method's line).
var prefixCases = []struct {
	name, prefix string
	served       bool
	benign       bool // a benign request behind the prefix passes the engine
	edit         func(string) string
}{
	{"none", "", true, true, nil},
	{"CRLF", "\r\n", true, true, nil},
	{"LF", "\n", true, true, nil},
	{"lone CR", "\r", true, true, nil},
	{"CR CR LF", "\r\r\n", true, true, nil},
	{"many empty lines", strings.Repeat("\r\n", 40), true, false, nil},
	{"space", " ", false, false, nil},
	{"tab", "\t", false, false, nil},
	{"spaces and tab", "  \t", false, false, nil},
	{"VT FF", "\v\f", false, false, nil},
	{"NUL", "\x00", false, true, nil},
	{"CR NUL", "\r\x00", false, true, nil},
	{"lower-case letters", "abc", false, true, nil},
	{"upper-case letters", "XYZ", true, true, nil},
	{"long upper-case run", strings.Repeat("X", 60), true, true, nil},
	{"upper-case run past the identification bound", strings.Repeat("X", 600), true, true, nil},
	{"partial method", "GE", true, true, nil},
	{"partial method, space", "GE ", false, false, nil},
	{"partial method, CRLF", "GE\r\n", false, false, nil},
	{"underscore", "_", true, true, nil},
	{"dash", "-", true, true, nil},
	{"binary", "\x01\x02\xff\xfe", false, true, nil},
	{"TLS record header", "\x16\x03\x01\x00\x05hello", false, true, nil},
	{"PROXY v1 line", "PROXY TCP4 198.18.0.1 198.18.0.2 40000 80\r\n", false, true, nil},
	{"PROXY v2 signature", "\r\n\r\n\x00\r\nQUIT\n", false, true, nil},
	{"CRLF then a space", "\r\n ", false, false, nil},
	{"unknown method, two spaces after it", "XYZ", true, true, func(r string) string { return strings.Replace(r, " ", "  ", 1) }},
	{"unknown method, two spaces before the version", "XYZ", true, true, func(r string) string { return strings.Replace(r, " HTTP/1.1", "  HTTP/1.1", 1) }},
	{"unknown method, a space after the version", "XYZ", true, true, func(r string) string { return strings.Replace(r, "HTTP/1.1\r\n", "HTTP/1.1 \r\n", 1) }},
	// The parser refuses the version (http.invalid_version): blocked.
	{"unknown method, HTTP/1.10", "XYZ", true, false, func(r string) string { return strings.Replace(r, "HTTP/1.1", "HTTP/1.10", 1) }},
}

// TestPrivilegedInlinePrefix sends, through the live inline path (XDP and
// NFQUEUE), an attack and a benign request behind each of prefixCases, in
// one segment and with the prefix in a segment of its own, to nginx
// proxying to a recorder (what the application acted on) and to a
// recorder reading every byte. The attack never reaches the application
// behind nginx; a benign request the engine lets through arrives
// byte-exact. The table of what nginx and the engine did is logged.
func TestPrivilegedInlinePrefix(t *testing.T) {
	testnet.RequirePrivileged(t)
	forInlineModes(t, testInlinePrefix)
}

func testInlinePrefix(t *testing.T, topo *testnet.Topology, a *agenttest.Agent) {
	backend := &recorder{read: map[string][]byte{}}
	startNginx(t, topo.Server, backend)
	raw := &recorder{read: map[string][]byte{}}
	go testnet.Serve(testnet.Listen(t, topo.Server, "tcp", netip.AddrPortFrom(testnet.ServerIP, rawPort)), raw.serve)
	const marker = "UNION%20SELECT"
	attack := "GET /item?id=1%27%20UNION%20SELECT%20password%20FROM%20users-- HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n"
	benign := "GET /index.html?user=alice HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n"
	nginx := netip.AddrPortFrom(testnet.ServerIP, nginxPort)
	rawAddr := netip.AddrPortFrom(testnet.ServerIP, rawPort)

	type row struct {
		name         string
		split        bool
		attack, good outcome
		engine       string
		rawGood      bool
	}
	var rows []row
	for _, pc := range prefixCases {
		for _, split := range []bool{false, true} {
			if split && pc.prefix == "" {
				continue
			}
			var pause time.Duration
			if split {
				pause = 50 * time.Millisecond
			}
			r := row{name: pc.name, split: split}
			attack, benign := attack, benign
			if pc.edit != nil {
				attack, benign = pc.edit(attack), pc.edit(benign)
			}
			from := logSize(a.Log)
			r.attack = sendPrefixed(t, topo.Client, nginx, pc.prefix, attack, pause)
			r.engine = verdict(t, a.Log, from, r.attack.port)
			r.good = sendPrefixed(t, topo.Client, nginx, pc.prefix, benign, pause)
			g := sendPrefixed(t, topo.Client, rawAddr, pc.prefix, benign, pause)
			time.Sleep(20 * time.Millisecond)
			got := string(raw.of(&net.TCPAddr{IP: testnet.ClientIP.AsSlice(), Port: int(g.port)}))
			r.rawGood = got == pc.prefix+benign
			if pc.benign && !r.rawGood {
				t.Errorf("%s (split %v): the recorder read %q, want the benign request byte-exact", pc.name, split, got)
			}
			if pc.benign && pc.served && r.good.status != "200" {
				t.Errorf("%s (split %v): the benign request through nginx: %s", pc.name, split, r.good.status)
			}
			rows = append(rows, r)
		}
	}
	// A pause longer than the hold inside a method nginx is still reading.
	held := row{name: "partial method, pause past the hold", split: true}
	from := logSize(a.Log)
	held.attack = sendPrefixed(t, topo.Client, nginx, "G", attack[1:], 1500*time.Millisecond)
	held.engine = verdict(t, a.Log, from, held.attack.port)
	rows = append(rows, held)

	time.Sleep(200 * time.Millisecond)
	for _, reqs := range backend.read {
		if bytes.Contains(reqs, []byte(marker)) {
			t.Errorf("the application behind nginx received the attack: %q", reqs)
		}
	}
	var tab strings.Builder
	fmt.Fprintf(&tab, "\n%-36s %-6s %-7s %-40s %s\n", "prefix", "split", "attack", "engine on the attack", "benign: nginx, raw byte-exact")
	for _, r := range rows {
		fmt.Fprintf(&tab, "%-36s %-6v %-7s %-40s %s, %v\n", r.name, r.split, r.attack.status, r.engine, r.good.status, r.rawGood)
	}
	t.Log(tab.String())
}
