package deb

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/internal/testnet"
	"github.com/deepwall/deepwall/internal/testutil"
)

// Where the package puts things, as the unit and the agent expect them.
const (
	repoRoot   = "../.."
	unitPath   = "/lib/systemd/system/deepwall.service"
	defaults   = "/etc/default/deepwall"
	policyPath = "/etc/deepwall/api-policy"
	stateDir   = "/var/lib/deepwall"
	logDir     = "/var/log/deepwall"
	runDir     = "/run/deepwall"
	socketPath = "/run/deepwall/deepwall.sock"
	pinRoot    = "/sys/fs/bpf/deepwall"
)

// TestPrivilegedDebPackage builds the package with `make deb`, checks it
// with lintian, installs it with dpkg -i, checks what it installed and
// that nothing started, runs the agent the way deepwall.service does
// (systemd is not PID 1 here: the unit's ExecStart with its
// EnvironmentFile, under setpriv with the unit's CapabilityBoundingSet and
// NoNewPrivileges, $NOTIFY_SOCKET waiting for READY=1), protects a pair of
// ports of a namespace topology with it (traffic forwarded, an ACL rule
// added through the installed CLI blocks a port, the shipped API policy
// decides and audits, an edited one is reloaded on SIGHUP), stops it as systemctl
// stop does (SIGTERM), purges the package and checks nothing is left:
// the package's files, the state, log and runtime files, the pins and
// the XDP links on the ports.
func TestPrivilegedDebPackage(t *testing.T) {
	testnet.RequirePrivileged(t)
	testnet.RequireTools(t, "apt-get install dpkg make util-linux lintian", "dpkg", "dpkg-deb", "make", "setpriv", "flock", "lintian")
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", "deepwall").Output(); err == nil && strings.Contains(string(out), "installed") {
		t.Fatalf("package deepwall is installed on this machine already (%s): this test would purge it", out)
	}
	for _, p := range []string{stateDir, logDir, unitPath, defaults, policyPath} {
		if _, err := os.Stat(p); err == nil {
			t.Fatalf("%s exists before the package is installed: this test would remove it", p)
		}
	}

	deb := build(t)
	if out, err := exec.Command("lintian", "--fail-on", "error", "--tag-display-limit", "0", deb).CombinedOutput(); err != nil {
		t.Errorf("lintian: %v\n%s", err, out)
	}

	run(t, "dpkg", "-i", deb)
	purged := false
	t.Cleanup(func() {
		if !purged {
			_, _ = exec.Command("dpkg", "--purge", "deepwall").CombinedOutput()
		}
	})
	files := strings.Fields(run(t, "dpkg", "-L", "deepwall"))
	checkInstalled(t, files)

	topo := testnet.NewTopology(t, testnet.TopologyOptions{})
	// The operator names the ports in /etc/default/deepwall (a conffile:
	// purge removes it edited too). A one-rule set instead of the default
	// pack saves its compile (half a minute on 2 cores).
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte("rules:\n  - {id: 1, action: block, match: {field: http.path, regex: '^/forbidden'}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	shipped := envFile(t, defaults)["DEEPWALL_ARGS"]
	if !strings.Contains(shipped, "--api-policy "+policyPath) {
		t.Errorf("DEEPWALL_ARGS as shipped: %q, want --api-policy %s", shipped, policyPath)
	}
	args := fmt.Sprintf("%s --netns %s --inner %s --outer %s --rules %s", shipped, topo.FW.Name, testnet.InnerIf, testnet.OuterIf, rulesFile)
	if err := os.WriteFile(defaults, []byte("DEEPWALL_ARGS=\""+args+"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	agent := startAsUnit(t)

	// Inline: nothing forwards between inner and outer but the agent.
	for _, port := range []uint16{80, 81} {
		ln := testnet.Listen(t, topo.Server, "tcp4", netip.AddrPortFrom(testnet.ServerIP, port))
		go testnet.Serve(ln, func(c net.Conn) {
			if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
			}
		})
	}
	// reach makes an HTTP request (identified at once: the engine holds
	// a TCP direction's bytes until it knows their protocol) and reports
	// whether the answer came.
	reach := func(port uint16, path string) bool {
		var ok bool
		topo.Client.MustDo(t, func() error {
			c, err := net.DialTimeout("tcp4", netip.AddrPortFrom(testnet.ServerIP, port).String(), 2*time.Second)
			if err == nil {
				_ = c.SetDeadline(time.Now().Add(2 * time.Second))
				if _, err = io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: server\r\n\r\n"); err == nil {
					var resp *http.Response
					if resp, err = http.ReadResponse(bufio.NewReader(c), nil); err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %s", resp.Status)
					}
				}
				c.Close()
			}
			ok = err == nil
			return nil
		})
		return ok
	}
	if !reach(80, "/") || !reach(81, "/") {
		ping, _ := exec.Command("ip", "netns", "exec", topo.Client.Name, "ping", "-c2", "-W1", testnet.ServerIP.String()).CombinedOutput()
		st, _ := exec.Command("/usr/bin/deepwall", "status").CombinedOutput()
		t.Fatalf("no traffic through the agent: %s\n%s\n%s", ping, st, agent.out)
	}
	acl := filepath.Join(t.TempDir(), "acl.yaml")
	if err := os.WriteFile(acl, []byte("rules:\n  - {id: 20, name: no 81, action: block, proto: tcp, dst_port: 81}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "/usr/bin/deepwall", "rules", "add", acl) // default socket, as an operator types it
	if reach(81, "/") {
		t.Error("port 81 reachable after the ACL rule")
	}
	if !reach(80, "/") {
		t.Error("port 80 unreachable after the ACL rule for 81")
	}
	if reach(80, "/forbidden") {
		t.Error("rule 1 (--rules in /etc/default/deepwall) did not block /forbidden")
	}
	status := run(t, "/usr/bin/deepwall", "status", "-o", "json")
	if !strings.Contains(status, `"acl"`) {
		t.Errorf("status has no ACL drops:\n%s", status)
	}
	nsID := inode(t, topo.FW.Path)
	if _, err := os.Stat(filepath.Join(pinRoot, "ns"+nsID+"-"+testnet.InnerIf)); err != nil {
		t.Errorf("no pins while the agent runs: %v", err)
	}
	// The shipped policy decided the calls, and the audit log says so.
	if data, err := os.ReadFile(filepath.Join(logDir, "audit.json")); err != nil {
		t.Errorf("audit log: %v", err)
	} else if !strings.Contains(string(data), `"command":"rules.change","policy":"`+policyPath+`:`) {
		t.Errorf("audit log has no decision of %s for the rule change:\n%s", policyPath, data)
	}

	// systemctl reload (SIGHUP) reads the edited policy again, under the
	// agent's sandbox (a user name is resolved too).
	if err := os.WriteFile(policyPath, []byte("deny status user:root\nallow * role:admin\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := agent.cmd.Process.Signal(unix.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(agent.output(), "api policy reloaded") {
		if time.Now().After(deadline) {
			t.Fatalf("policy not reloaded on SIGHUP:\n%s", agent.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, err := exec.Command("/usr/bin/deepwall", "status").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "refused by "+policyPath+":1") {
		t.Errorf("status after the reloaded policy denies it: %v %s", err, out)
	}

	agent.stop(t)
	run(t, "dpkg", "--purge", "deepwall")
	purged = true
	checkPurged(t, files, nsID, topo)
}

// build runs make deb in the repository and returns the package's path.
func build(t *testing.T) string {
	t.Helper()
	old, _ := filepath.Glob(filepath.Join(repoRoot, "bin", "deepwall_*.deb"))
	for _, f := range old {
		os.Remove(f)
	}
	start := time.Now()
	out, err := exec.Command("make", "-C", repoRoot, "deb").CombinedOutput()
	if err != nil {
		t.Fatalf("make deb: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(repoRoot, "bin", "deepwall_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("make deb made %d packages: %v\n%s", len(debs), debs, out)
	}
	t.Logf("make deb: %s in %v", debs[0], time.Since(start).Round(time.Second))
	return debs[0]
}

// checkInstalled checks the installed files, the directories postinst
// made, the package's Depends against the binary's libraries, and that
// nothing runs.
func checkInstalled(t *testing.T, files []string) {
	t.Helper()
	for _, want := range []string{"/usr/bin/deepwall", unitPath, defaults, policyPath, "/etc/logrotate.d/deepwall",
		"/usr/share/man/man8/deepwall.8.gz", "/usr/share/man/man8/deepwall-rules-add.8.gz",
		"/usr/share/bash-completion/completions/deepwall", "/usr/share/zsh/vendor-completions/_deepwall",
		"/usr/share/fish/vendor_completions.d/deepwall.fish", "/usr/share/doc/deepwall/copyright"} {
		if !slices.Contains(files, want) {
			t.Errorf("package lacks %s", want)
		} else if _, err := os.Stat(want); err != nil {
			t.Error(err)
		}
	}
	if out, err := exec.Command("gzip", "-t", "/usr/share/man/man8/deepwall.8.gz").CombinedOutput(); err != nil {
		t.Errorf("man page: %v %s", err, out)
	}
	for dir, mode := range map[string]os.FileMode{stateDir: 0o700, logDir: 0o750} {
		fi, err := os.Stat(dir)
		if err != nil || !fi.IsDir() || fi.Mode().Perm() != mode {
			t.Errorf("postinst: %s: %v %v, want a directory of mode %v", dir, fi, err, mode)
		}
	}
	if conf := run(t, "dpkg-query", "-W", "-f=${Conffiles}", "deepwall"); !strings.Contains(conf, defaults) || !strings.Contains(conf, policyPath) || !strings.Contains(conf, "/etc/logrotate.d/deepwall") {
		t.Errorf("conffiles: %s", conf)
	}
	// Depends names the package of every library the binary loads.
	depends := run(t, "dpkg-query", "-W", "-f=${Depends}", "deepwall")
	for _, line := range strings.Split(run(t, "ldd", "/usr/bin/deepwall"), "\n") {
		_, lib, ok := strings.Cut(line, "=> ")
		if !ok {
			continue
		}
		lib, _, _ = strings.Cut(lib, " (")
		owner := libOwner(t, lib)
		if !slices.Contains(strings.Split(strings.ReplaceAll(depends, " ", ""), ","), owner) {
			t.Errorf("Depends %q lacks %s (for %s)", depends, owner, lib)
		}
	}
	if pids := agentsRunning(t); len(pids) > 0 {
		t.Errorf("the package started deepwall on install: pids %v", pids)
	}
	if c, err := net.Dial("unix", socketPath); err == nil {
		c.Close()
		t.Errorf("%s answers after install", socketPath)
	}
}

// libOwner names the package that installed the shared library at path:
// dpkg knows each file by the path its package shipped, which with
// merged /usr may differ from what ldd prints by /usr and by symlinks.
func libOwner(t *testing.T, path string) string {
	t.Helper()
	cands := []string{path}
	if real, err := filepath.EvalSymlinks(path); err == nil {
		cands = append(cands, real)
	}
	for _, c := range slices.Clone(cands) {
		if rest, ok := strings.CutPrefix(c, "/usr"); ok {
			cands = append(cands, rest)
		} else {
			cands = append(cands, "/usr"+c)
		}
	}
	for _, c := range cands {
		out, err := exec.Command("dpkg-query", "-S", c).Output()
		if err != nil {
			continue
		}
		pkg, _, _ := strings.Cut(string(out), ":")
		return strings.TrimSpace(pkg)
	}
	t.Fatalf("no package owns %s (tried %v)", path, cands)
	return ""
}

// agentsRunning lists the processes running the installed binary.
func agentsRunning(t *testing.T) []int {
	t.Helper()
	var pids []int
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink("/proc/" + d.Name() + "/exe"); err == nil && strings.HasPrefix(exe, "/usr/bin/deepwall") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// unitAgent is the agent started as the unit starts it.
type unitAgent struct {
	cmd  *exec.Cmd
	out  *testutil.Buffer
	done chan error
}

func (a *unitAgent) output() string { return a.out.String() }

// startAsUnit runs the installed unit's ExecStart as systemd would: the
// EnvironmentFile's variables, $VAR split into words, the bounding set
// and no_new_privs of the unit (setpriv), READY=1 awaited on
// $NOTIFY_SOCKET (Type=notify).
func startAsUnit(t *testing.T) *unitAgent {
	t.Helper()
	unit := unitKeys(t)
	env := map[string]string{}
	for _, f := range unit["EnvironmentFile"] {
		for k, v := range envFile(t, strings.TrimPrefix(f, "-")) {
			env[k] = v
		}
	}
	if len(unit["ExecStart"]) != 1 {
		t.Fatalf("unit has %d ExecStart lines", len(unit["ExecStart"]))
	}
	var argv []string
	for _, w := range strings.Fields(unit["ExecStart"][0]) {
		if name, ok := strings.CutPrefix(w, "$"); ok {
			argv = append(argv, strings.Fields(env[name])...) // unbraced: split into words
			continue
		}
		argv = append(argv, w)
	}
	var caps []string
	for _, c := range strings.Fields(strings.Join(unit["CapabilityBoundingSet"], " ")) {
		caps = append(caps, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
	}
	setpriv := []string{"--bounding-set", "-all," + strings.Join(caps, ","), "--inh-caps", "-all"}
	if slices.Contains(unit["NoNewPrivileges"], "yes") {
		setpriv = append(setpriv, "--no-new-privs")
	}
	notify := filepath.Join(t.TempDir(), "notify")
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	a := &unitAgent{out: &testutil.Buffer{}, done: make(chan error, 1)}
	a.cmd = exec.Command("setpriv", append(append(setpriv, "--"), argv...)...)
	a.cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "NOTIFY_SOCKET=" + notify}
	for k, v := range env {
		a.cmd.Env = append(a.cmd.Env, k+"="+v)
	}
	a.cmd.Stdout, a.cmd.Stderr = a.out, a.out
	t.Logf("ExecStart: setpriv %s", strings.Join(a.cmd.Args[1:], " "))
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.done <- a.cmd.Wait() }()
	t.Cleanup(func() {
		if a.cmd.ProcessState == nil {
			_ = a.cmd.Process.Signal(unix.SIGTERM)
			select {
			case <-a.done:
			case <-time.After(30 * time.Second):
				_ = a.cmd.Process.Kill()
			}
		}
	})
	ready := make(chan struct{})
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := nc.Read(buf)
			if err != nil {
				return
			}
			if slices.Contains(strings.Split(string(buf[:n]), "\n"), "READY=1") {
				close(ready)
				return
			}
		}
	}()
	select {
	case <-ready:
	case err := <-a.done:
		t.Fatalf("agent exited before READY=1: %v\n%s", err, a.out)
	case <-time.After(2 * time.Minute):
		t.Fatalf("no READY=1 within 2 minutes:\n%s", a.out)
	}
	if _, err := api.NewClient(socketPath).Status(context.Background()); err != nil {
		t.Fatalf("status on %s: %v\n%s", socketPath, err, a.out)
	}
	return a
}

// stop sends SIGTERM (systemctl stop) and waits for a clean exit.
func (a *unitAgent) stop(t *testing.T) {
	t.Helper()
	if err := a.cmd.Process.Signal(unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-a.done:
		if err != nil {
			t.Fatalf("agent exit: %v\n%s", err, a.out)
		}
	case <-time.After(30 * time.Second): // TimeoutStopSec
		t.Fatalf("agent did not stop:\n%s", a.out)
	}
}

// unitKeys reads the installed unit's Key=value lines (repeated keys
// accumulate, as systemd's list settings do).
func unitKeys(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			keys[k] = append(keys[k], v)
		}
	}
	return keys
}

// envFile reads KEY="value" lines as systemd's EnvironmentFile does (the
// subset deepwall.default uses: quotes around the value, comments).
func envFile(t *testing.T, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			if uq, err := strconv.Unquote(v); err == nil {
				v = uq
			}
			env[k] = v
		}
	}
	return env
}

// checkPurged checks that purge left nothing: the package's files and
// directories it alone owned, the state, log and (unless another agent
// holds a lock in it) runtime directories, this agent's socket, locks
// and port records, its pins and the XDP programs on its ports.
func checkPurged(t *testing.T, files []string, nsID string, topo *testnet.Topology) {
	t.Helper()
	if out, _ := exec.Command("dpkg-query", "-W", "-f=${Status}", "deepwall").Output(); strings.Contains(string(out), "installed") {
		t.Errorf("dpkg status after purge: %s", out)
	}
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil && !fi.IsDir() {
			t.Errorf("left after purge: %s", f)
		}
	}
	for _, d := range []string{stateDir, logDir, "/etc/deepwall", defaults, "/usr/share/doc/deepwall"} {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("left after purge: %s", d)
		}
	}
	if _, err := os.Stat(socketPath); err == nil {
		t.Errorf("left after purge: %s", socketPath)
	}
	ours, _ := filepath.Glob(filepath.Join(runDir, "*ns"+nsID+"-*"))
	for _, f := range ours {
		t.Errorf("left after purge: %s", f)
	}
	if _, err := os.Stat(filepath.Join(pinRoot, "ns"+nsID+"-"+testnet.InnerIf)); err == nil {
		t.Errorf("pins left after purge in %s", filepath.Join(pinRoot, "ns"+nsID+"-"+testnet.InnerIf))
	}
	nl := topo.FW.Netlink(t)
	for _, name := range []string{testnet.InnerIf, testnet.OuterIf} {
		l, err := nl.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if x := l.Attrs().Xdp; x != nil && x.Attached {
			t.Errorf("XDP program %d still attached to %s", x.ProgId, name)
		}
	}
	if pids := agentsRunning(t); len(pids) > 0 {
		t.Errorf("deepwall still running after purge: %v", pids)
	}
}

func inode(t *testing.T, path string) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return strconv.FormatUint(st.Ino, 10)
}

// run runs a command and returns its standard output; it fails t on error.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}
