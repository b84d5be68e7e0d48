// Package testctr runs real containers for end-to-end tests: podman (with
// runc, its API service on a socket of the test's) started from a tiny
// root filesystem that scripts/dev.sh builds and caches (a static busybox
// serving "ok" with httpd on :8080). No image registry is needed.
//
// Everything a runtime creates on the host side (its networks' bridges,
// the containers' veth host ends, iptables rules) is created in a network
// namespace of the test's (Podman.NS, a testnet namespace), never in the
// root namespace: every podman command runs there, and the namespace and
// everything in it goes at cleanup. Each container gets a network of its
// own in 198.18.0.0/15; containers and networks are removed with
// tb.Cleanup, and those a killed test binary left are removed by the next.
package testctr

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/deepwall/deepwall/internal/testnet"
)

// The test image.
const (
	// RootfsFile is the root filesystem's tar under the user's cache
	// directory ($XDG_CACHE_HOME or ~/.cache), as scripts/dev.sh builds
	// it; its name changes with its content.
	RootfsFile = "deepwall/testrootfs-1.tar"
	// Image is the name podman imports the root filesystem as.
	Image = "localhost/deepwall-test:1"
	// HTTPPort is where the image's default command serves "ok".
	HTTPPort = 8080
)

// Limits and pacing of the runtime commands.
const (
	cmdTimeout     = 60 * time.Second
	serviceTimeout = 15 * time.Second
	// namePrefix marks what tests create (containers, networks), with the
	// creating process's pid after it, as testnet names namespaces.
	namePrefix = "dwt-"
	// subnetBase..+subnetCount are the third octets of the /24s given to
	// the containers' networks, 198.19.X.0/24 (testnet's topologies use
	// 198.18.0.0/16).
	subnetBase  = 128
	subnetCount = 120
)

// runFlags are given to every podman run: runc (crun fails on some
// kernels), and explicit limits (podman's defaults read the host's,
// which a test machine may not allow to a container).
var runFlags = []string{"--runtime", "runc", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"}

var seq atomic.Uint32

// Rootfs returns the path of the test root filesystem, skipping tb (or
// failing it with DEEPWALL_REQUIRE_PRIVILEGED=1) when it was not built.
func Rootfs(tb testing.TB) string {
	tb.Helper()
	dir, err := os.UserCacheDir()
	if err == nil {
		p := filepath.Join(dir, RootfsFile)
		if _, err = os.Stat(p); err == nil {
			return p
		}
	}
	missing(tb, fmt.Sprintf("no test root filesystem (%v): scripts/dev.sh test builds it", err))
	return ""
}

// missing skips tb for what the machine lacks, or fails it when
// privileged tests are required (CI must not pass by skipping).
func missing(tb testing.TB, why string) {
	tb.Helper()
	if os.Getenv(testnet.RequireEnv) == "1" {
		tb.Fatalf("runtime test cannot run: %s", why)
	}
	tb.Skipf("runtime test skipped: %s", why)
}

// Podman is podman on this machine, driven from the namespace NS, with
// its API service on Socket.
type Podman struct {
	// NS is the host side of the containers: their networks' bridges
	// and veth host ends.
	NS *testnet.NS
	// Socket is podman's API service (deepwall run --podman-socket).
	Socket string
}

var importOnce sync.Once

// NewPodman starts podman's API service in a new namespace; both go at
// cleanup. It imports the test image once per test binary.
func NewPodman(tb testing.TB) *Podman {
	tb.Helper()
	testnet.RequirePrivileged(tb)
	if _, err := exec.LookPath("podman"); err != nil {
		missing(tb, "podman not installed (scripts/dev.sh test installs it)")
	}
	rootfs := Rootfs(tb)
	p := &Podman{NS: testnet.NewNS(tb, "podman")}
	p.sweep()
	var ierr error
	importOnce.Do(func() {
		if p.run("image", "exists", Image) == nil {
			return
		}
		ierr = p.run("import", rootfs, Image)
	})
	if ierr != nil {
		tb.Fatalf("podman import %s: %v", rootfs, ierr)
	}
	p.Socket = filepath.Join(tb.TempDir(), "podman.sock")
	startDaemon(tb, p.NS, exec.Command("podman", "system", "service", "--time=0", "unix://"+p.Socket), p.Socket)
	return p
}

// startDaemon starts cmd in ns (killed at cleanup) and waits until it
// listens on socket.
func startDaemon(tb testing.TB, ns *testnet.NS, cmd *exec.Cmd, socket string) {
	tb.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	ns.Start(tb, cmd)
	deadline := time.Now().Add(serviceTimeout)
	for {
		if fd, err := unixDial(socket); err == nil {
			unix.Close(fd)
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s did not listen on %s within %v:\n%s", strings.Join(cmd.Args, " "), socket, serviceTimeout, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func unixDial(path string) (int, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// Command runs podman with args in p.NS and returns its standard output,
// trimmed; it fails tb on error.
func (p *Podman) Command(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := p.output(args...)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func (p *Podman) run(args ...string) error {
	_, err := p.output(args...)
	return err
}

func (p *Podman) output(args ...string) (string, error) {
	return runIn(p.NS, exec.Command("podman", args...))
}

// runIn runs cmd in ns, killed after cmdTimeout, and returns its
// standard output, trimmed; an error carries its standard error.
func runIn(ns *testnet.NS, cmd *exec.Cmd) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	timer := time.AfterFunc(cmdTimeout, func() {
		if cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
	})
	err := ns.Do(cmd.Run)
	timer.Stop()
	if err != nil {
		return "", fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// Container is a container a test started.
type Container struct {
	// Name and ID are the runtime's; Network is the container's own
	// network ("" in network modes none and host), IP its address there.
	Name, ID, Network string
	IP                netip.Addr
	PID               int
	// Netns is the container's network namespace file (podman:
	// /run/netns/netns-UUID; "" in network mode host).
	Netns string
	// run is the podman run command that made it (Recreate); hostIf
	// the host end of a containerd container's veth.
	run    []string
	hostIf string
}

// Options says how Run starts a container.
type Options struct {
	// Network is a podman network mode: "" is a bridge network of the
	// container's own; "none", "host" and the like are passed on.
	Network string
	// Cmd is the container's command; nil serves "ok" on HTTPPort.
	Cmd []string
	// Labels are the container's labels.
	Labels map[string]string
}

// Run starts a container (named after role) from the test image, in a
// network of its own unless o says otherwise; container and network are
// removed at cleanup.
func (p *Podman) Run(tb testing.TB, role string, o Options) *Container {
	tb.Helper()
	n := seq.Add(1)
	c := &Container{Name: fmt.Sprintf("%s%d-%s-%d", namePrefix, os.Getpid(), role, n)}
	mode := o.Network
	if mode == "" {
		c.Network = c.Name
		mode = c.Network
		p.createNetwork(tb, c.Network, n)
	}
	cmd := o.Cmd
	if cmd == nil {
		cmd = []string{"/bin/httpd", "-f", "-p", strconv.Itoa(HTTPPort), "-h", "/www"}
	}
	args := append([]string{"run", "-d", "--name", c.Name, "--network", mode}, runFlags...)
	for k, v := range o.Labels {
		args = append(args, "--label", k+"="+v)
	}
	c.run = append(append(args, Image), cmd...)
	c.ID = p.Command(tb, c.run...)
	tb.Cleanup(func() {
		if err := p.run("rm", "-f", "-t", "0", c.Name); err != nil {
			tb.Errorf("remove container %s: %v", c.Name, err)
		}
	})
	p.Inspect(tb, c)
	return c
}

// Recreate removes c and runs it again under the same name, in the same
// network, as a new container (a new id).
func (p *Podman) Recreate(tb testing.TB, c *Container) {
	tb.Helper()
	p.Command(tb, "rm", "-f", "-t", "0", c.Name)
	c.ID = p.Command(tb, c.run...)
	p.Inspect(tb, c)
}

// Inspect reads c's pid and address again (after a restart).
func (p *Podman) Inspect(tb testing.TB, c *Container) {
	tb.Helper()
	out := p.Command(tb, "inspect", "-f", "{{.State.Pid}} {{.NetworkSettings.SandboxKey}}. {{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", c.Name)
	f := strings.Fields(out)
	pid, err := strconv.Atoi(f[0])
	if err != nil || len(f) < 2 {
		tb.Fatalf("inspect %s: %q", c.Name, out)
	}
	c.PID, c.Netns = pid, strings.TrimSuffix(f[1], ".")
	if len(f) > 2 {
		if c.IP, err = netip.ParseAddr(f[2]); err != nil {
			tb.Fatalf("inspect %s: %q", c.Name, out)
		}
	}
}

// createNetwork creates a bridge network with a /24 of 198.19.128.0/17
// that no other network has; it is removed at cleanup.
func (p *Podman) createNetwork(tb testing.TB, name string, n uint32) {
	tb.Helper()
	var err error
	for i := range uint32(subnetCount) {
		octet := subnetBase + (uint32(os.Getpid())+n+i)%subnetCount
		err = p.run("network", "create", "--subnet", fmt.Sprintf("198.19.%d.0/24", octet), name)
		if err == nil {
			tb.Cleanup(func() { p.removeNetwork(tb, name) })
			return
		}
		if !strings.Contains(err.Error(), "already") { // subnet used by another network
			break
		}
	}
	tb.Fatalf("podman network create %s: %v", name, err)
}

func (p *Podman) removeNetwork(tb testing.TB, name string) {
	if err := p.run("network", "rm", "-f", name); err != nil && tb != nil {
		tb.Errorf("remove network %s: %v", name, err)
	}
	// The CNI backend's address allocations (host-local IPAM) outlive it.
	_ = os.RemoveAll(filepath.Join("/var/lib/cni/networks", name))
}

// sweep removes the containers and networks of test binaries that are
// gone (killed by a timeout, their cleanups never ran).
func (p *Podman) sweep() {
	stale := func(name string) bool {
		rest, ok := strings.CutPrefix(name, namePrefix)
		if !ok {
			return false
		}
		pid, err := strconv.Atoi(rest[:max(strings.IndexByte(rest, '-'), 0)])
		return err == nil && pid != os.Getpid() && errors.Is(unix.Kill(pid, 0), unix.ESRCH)
	}
	if out, err := p.output("ps", "-a", "--format", "{{.Names}}"); err == nil {
		for _, name := range strings.Fields(out) {
			if stale(name) {
				_ = p.run("rm", "-f", "-t", "0", name)
			}
		}
	}
	if out, err := p.output("network", "ls", "--format", "{{.Name}}"); err == nil {
		for _, name := range strings.Fields(out) {
			if stale(name) {
				p.removeNetwork(nil, name)
			}
		}
	}
}

// RoleLabel is the label a containerd container of Run or RunIn carries,
// its role as value.
const RoleLabel = "deepwall.test/role"

// Containerd is a containerd daemon of the test's (its own root, state
// and socket) in Host's namespace, running containers with ctr and runc
// in namespaces of Host's as CNI would give them: on Host's bridge.
type Containerd struct {
	Host *testnet.Host
	// Socket is the daemon's API; State its v2 shim state directory
	// (deepwall run --containerd-state); Namespace the containerd
	// namespace its containers are in.
	Socket, State, Namespace string
}

// NewContainerd starts containerd in a new testnet host; both go at
// cleanup.
func NewContainerd(tb testing.TB) *Containerd {
	tb.Helper()
	testnet.RequirePrivileged(tb)
	for _, bin := range []string{"containerd", "ctr", "runc"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing(tb, bin+" not installed (scripts/dev.sh test installs it)")
		}
	}
	Rootfs(tb)
	dir := tb.TempDir()
	c := &Containerd{Host: testnet.NewHost(tb), Socket: filepath.Join(dir, "containerd.sock"),
		State: filepath.Join(dir, "state", "io.containerd.runtime.v2.task"), Namespace: "deepwall-test"}
	// No config file: the package's /etc/containerd/config.toml is the
	// host's daemon's.
	if err := os.WriteFile(filepath.Join(dir, "none.toml"), []byte("version = 2\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	startDaemon(tb, c.Host.NS, exec.Command("containerd", "--config", filepath.Join(dir, "none.toml"),
		"--root", filepath.Join(dir, "root"), "--state", filepath.Join(dir, "state"), "--address", c.Socket), c.Socket)
	return c
}

// ctr runs ctr with args against c's daemon and returns its output.
func (c *Containerd) ctr(args ...string) (string, error) {
	return runIn(c.Host.NS, exec.Command("ctr", append([]string{"--address", c.Socket, "--namespace", c.Namespace}, args...)...))
}

// Run starts a container (its id named after role) serving "ok" on
// HTTPPort, in a namespace bridged on Host with ip, from a copy of the
// test root filesystem; all of it goes at cleanup.
func (c *Containerd) Run(tb testing.TB, role string, ip netip.Addr) *Container {
	tb.Helper()
	id := fmt.Sprintf("%s%d-%s-%d", namePrefix, os.Getpid(), role, seq.Add(1))
	ct := &Container{Name: id, ID: id, IP: ip}
	c.start(tb, ct, role)
	tb.Cleanup(func() {
		if err := c.remove(id); err != nil {
			tb.Errorf("remove containerd container %s: %v", id, err)
		}
	})
	return ct
}

// Recreate removes ct and runs it again under the same id in a new
// namespace, as a CNI runtime does: the bridge plugin's DEL deletes the
// old veth, its ADD bridges a new one.
func (c *Containerd) Recreate(tb testing.TB, ct *Container) {
	tb.Helper()
	if err := c.remove(ct.ID); err != nil {
		tb.Fatal(err)
	}
	h := c.Host.NS.Netlink(tb)
	if l, err := h.LinkByName(ct.hostIf); err == nil {
		if err := h.LinkDel(l); err != nil {
			tb.Fatalf("delete %s: %v", ct.hostIf, err)
		}
	}
	c.start(tb, ct, "re")
}

// start runs ct in a new namespace bridged on Host.
func (c *Containerd) start(tb testing.TB, ct *Container, role string) {
	tb.Helper()
	ns := c.Host.AddBridged(tb, role, ct.IP)
	ct.hostIf = ns.HostIf
	c.run(tb, ct, role, ns.NS.Path, []string{"/bin/httpd", "-f", "-p", strconv.Itoa(HTTPPort), "-h", "/www"})
}

// RunIn starts a container (its id named after role) with cmd in the
// network namespace at netns, as a CNI runtime does once its plugins
// have set the namespace up; it is removed at cleanup.
func (c *Containerd) RunIn(tb testing.TB, role, netns string, cmd ...string) *Container {
	tb.Helper()
	id := fmt.Sprintf("%s%d-%s-%d", namePrefix, os.Getpid(), role, seq.Add(1))
	ct := &Container{Name: id, ID: id, Netns: netns}
	c.run(tb, ct, role, netns, cmd)
	tb.Cleanup(func() {
		if err := c.remove(id); err != nil {
			tb.Errorf("remove containerd container %s: %v", id, err)
		}
	})
	return ct
}

// run runs ct with cmd in the namespace at netns, from a copy of the
// test root filesystem, labelled with its role.
func (c *Containerd) run(tb testing.TB, ct *Container, role, netns string, cmd []string) {
	tb.Helper()
	rootfs := filepath.Join(tb.TempDir(), "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		tb.Fatal(err)
	}
	if out, err := exec.Command("tar", "-xf", Rootfs(tb), "-C", rootfs).CombinedOutput(); err != nil {
		tb.Fatalf("unpack the test root filesystem: %v: %s", err, out)
	}
	args := []string{"run", "-d", "--with-ns", "network:" + netns, "--label", RoleLabel + "=" + role, "--rootfs", rootfs, ct.ID}
	if _, err := c.ctr(append(args, cmd...)...); err != nil {
		tb.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(c.State, c.Namespace, ct.ID, "init.pid"))
	if err != nil {
		tb.Fatal(err)
	}
	if ct.PID, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
		tb.Fatalf("init.pid: %q", b)
	}
}

// remove kills and deletes the container id (its task first).
func (c *Containerd) remove(id string) error {
	_, _ = c.ctr("task", "kill", "-s", "KILL", id)
	var err error
	for range 50 { // the task is deleted once it has exited
		if _, err = c.ctr("task", "rm", id); err == nil || strings.Contains(err.Error(), "not found") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, cerr := c.ctr("container", "rm", id); cerr != nil {
		return errors.Join(err, cerr)
	}
	return nil
}
