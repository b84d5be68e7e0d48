// Package resolve finds a container's network namespace from what a user
// names it by: a namespace name or path, a pid, or a Docker or containerd
// id or name. What it reads (runtime state files, the Docker Engine API)
// belongs to other programs, so every read is bounded and every namespace
// file is checked before it is opened.
package resolve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/deepwall/deepwall/rules"
)

// Target is a container to protect, resolved to its network namespace.
type Target struct {
	// Spec is what the user wrote; it is resolved again after a restart.
	Spec string `json:"spec"`
	// Kind is how it was found: netns, path, pid, docker, containerd.
	Kind string `json:"kind"`
	// Name is the container's name in rules (container:NAME).
	Name string `json:"name"`
	// Path is the namespace file to open; PID the process it belongs to
	// (0 for named namespaces and paths).
	Path string `json:"path"`
	PID  int    `json:"pid,omitempty"`
}

// Resolver says where the container runtimes keep what target resolution
// reads. Absent runtimes are not an error: their step is skipped.
type Resolver struct {
	NetnsDir        string // named namespaces (ip netns)
	ProcDir         string
	DockerSocket    string // Engine API over a unix socket
	DockerRoot      string // containers/<id>/config.v2.json
	ContainerdState string // <namespace>/<id>/init.pid of the v2 runtime shim
	// isNetns checks a namespace file; nil is checkNetns (tests of the
	// resolution steps put plain files where namespaces would be).
	isNetns func(path string) error
}

// Default is where the runtimes keep their state on a standard host.
var Default = Resolver{NetnsDir: "/run/netns", ProcDir: "/proc", DockerSocket: "/var/run/docker.sock",
	DockerRoot: "/var/lib/docker", ContainerdState: "/run/containerd/io.containerd.runtime.v2.task"}

// Errors of target resolution.
var (
	// ErrNoTarget: nothing answers to the target's name.
	ErrNoTarget = errors.New("no such container or network namespace")
	// ErrAmbiguous: the name matches several containers.
	ErrAmbiguous = errors.New("ambiguous container name")
	// ErrNotNetns: the target's namespace file is not a network namespace.
	ErrNotNetns = errors.New("not a network namespace")
)

// Limits of target resolution (what it reads is another program's).
const (
	maxTargetLen = 256
	// maxStateFile bounds a config.v2.json or an Engine API answer (a
	// container with many labels and mounts is tens of KiB).
	maxStateFile = 4 << 20
	// maxPIDFile bounds a shim's init.pid (a decimal number).
	maxPIDFile = 64
	// maxRuntimeScan bounds the entries of a runtime's state directory read.
	maxRuntimeScan = 65536
	// maxAPIHeader bounds the Engine API's response header.
	maxAPIHeader = 64 << 10
	// maxErrorEcho bounds what of a runtime's error answer ours quotes.
	maxErrorEcho = 200
	// maxContainerID bounds an id or name read from a runtime.
	maxContainerID = 256
	// maxPID is the kernel's PID_MAX_LIMIT (64-bit): no process has a
	// larger pid.
	maxPID           = 1 << 22
	dockerAPITimeout = 3 * time.Second
)

// resolve finds spec's network namespace. spec is one of: an absolute
// path (/proc/PID/ns/net, /var/run/netns/NAME), a PID, a name under
// NetnsDir, docker:ID|NAME, containerd:[NAMESPACE/]ID, or a bare Docker
// or containerd id or name (Docker first).
func (r Resolver) Resolve(ctx context.Context, spec string) (Target, error) {
	t := Target{Spec: spec}
	if spec == "" || len(spec) > maxTargetLen || strings.ContainsFunc(spec, unicode.IsControl) {
		return t, fmt.Errorf("target %.300q: want a netns name or path, a pid, or a container id or name", spec)
	}
	if kind, rest, ok := strings.Cut(spec, ":"); ok && (kind == "docker" || kind == "containerd") {
		var err error
		if kind == "docker" {
			t, err = r.docker(ctx, rest)
		} else {
			t, err = r.containerd(rest)
		}
		t.Spec = spec
		return t, err
	}
	switch {
	case filepath.IsAbs(spec):
		t.Kind, t.Path, t.Name = "path", filepath.Clean(spec), nameFromPath(spec)
		if pid, ok := pidFromPath(r.ProcDir, t.Path); ok {
			t.PID, t.Name = pid, "pid-"+strconv.Itoa(pid)
		}
		return t, r.checkNS(t)
	case isPID(spec):
		t.PID, _ = strconv.Atoi(spec)
		t.Kind, t.Path, t.Name = "pid", filepath.Join(r.ProcDir, spec, "ns", "net"), "pid-"+spec
		return t, r.checkNS(t)
	}
	if !strings.Contains(spec, "/") && spec != "." && spec != ".." {
		p := filepath.Join(r.NetnsDir, spec)
		if _, err := os.Lstat(p); err == nil {
			t.Kind, t.Path, t.Name = "netns", p, spec
			return t, r.checkNS(t)
		}
	}
	dt, derr := r.docker(ctx, spec)
	if derr == nil {
		dt.Spec = spec
		return dt, nil
	}
	ct, cerr := r.containerd(spec)
	if cerr == nil {
		ct.Spec = spec
		return ct, nil
	}
	for _, err := range []error{derr, cerr} {
		if !errors.Is(err, ErrNoTarget) {
			return t, err
		}
	}
	return t, fmt.Errorf("target %q: %w (looked in %s, docker and containerd)", spec, ErrNoTarget, r.NetnsDir)
}

// checkNS checks that the target's path is a network namespace: what
// is not (a TARGET like /etc/shadow, a FIFO, a device) is refused
// naming the target, never read.
func (r Resolver) checkNS(t Target) error {
	check := r.isNetns
	if check == nil {
		check = checkNetns
	}
	if err := check(t.Path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("target %q: %s: %w", t.Spec, t.Path, ErrNoTarget)
		}
		return fmt.Errorf("target %q: %w", t.Spec, err)
	}
	return nil
}

// checkNetns reports whether path is a network namespace file.
func checkNetns(path string) error {
	h, err := OpenNetns(path)
	if err != nil {
		return err
	}
	return h.Close()
}

// OpenNetns opens the network namespace file path. A file that is not on
// nsfs is refused before it is opened: opening a device node can act
// (a watchdog, a tape) and opening a FIFO blocks. The open file must be
// a network namespace (not a mount or pid one).
func OpenNetns(path string) (netns.NsHandle, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil {
		return netns.None(), &os.PathError{Op: "statfs", Path: path, Err: err}
	}
	if fs.Type != unix.NSFS_MAGIC {
		return netns.None(), fmt.Errorf("%s: %w", path, ErrNotNetns)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return netns.None(), &os.PathError{Op: "open", Path: path, Err: err}
	}
	// Checked again on what was opened: path may have changed since.
	if unix.Fstatfs(fd, &fs) != nil || fs.Type != unix.NSFS_MAGIC {
		unix.Close(fd)
		return netns.None(), fmt.Errorf("%s: %w", path, ErrNotNetns)
	}
	if typ, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE); err != nil || typ != unix.CLONE_NEWNET {
		unix.Close(fd)
		return netns.None(), fmt.Errorf("%s: %w", path, ErrNotNetns)
	}
	return netns.NsHandle(fd), nil
}

func isPID(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n > 0 && n <= maxPID && strconv.Itoa(n) == s
}

func pidFromPath(proc, p string) (int, bool) {
	rest, ok := strings.CutPrefix(p, filepath.Clean(proc)+"/")
	if !ok {
		return 0, false
	}
	pid, tail, _ := strings.Cut(rest, "/")
	if !isPID(pid) || tail != "ns/net" {
		return 0, false
	}
	n, _ := strconv.Atoi(pid)
	return n, true
}

// nameFromPath names a namespace file: /var/run/netns/web is web.
func nameFromPath(p string) string {
	b := filepath.Base(p)
	if rules.ValidContainerName(b) {
		return b
	}
	return "netns"
}

// dockerContainer is what deepwall reads of a Docker container, from the
// Engine API (GET /containers/{id}/json) or config.v2.json: both spell
// these fields the same.
type dockerContainer struct {
	ID    string `json:"Id"`
	ID2   string `json:"ID"`
	Name  string `json:"Name"`
	State struct {
		Running bool `json:"Running"`
		Pid     int  `json:"Pid"`
	} `json:"State"`
}

// parseDockerContainer decodes a config.v2.json or an Engine API answer
// (at most maxStateFile bytes, read by the caller) into the few fields
// deepwall uses, and checks them: a pid the kernel could have, bounded
// id and name.
func parseDockerContainer(b []byte) (*dockerContainer, error) {
	var c dockerContainer
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, err
	}
	if c.State.Pid < 0 || c.State.Pid > maxPID {
		return nil, fmt.Errorf("pid %d out of range", c.State.Pid)
	}
	if len(c.ID) > maxContainerID || len(c.ID2) > maxContainerID || len(c.Name) > maxContainerID {
		return nil, fmt.Errorf("id or name longer than %d bytes", maxContainerID)
	}
	return &c, nil
}

// answers reports whether c is the container ref names (id, id prefix or
// name): a socket that answers with another container is not believed.
func (c *dockerContainer) answers(ref string) bool {
	return strings.HasPrefix(c.id(), ref) || strings.TrimPrefix(c.Name, "/") == ref
}

func (c *dockerContainer) id() string {
	if c.ID != "" {
		return c.ID
	}
	return c.ID2
}

// docker resolves a Docker container id, id prefix or name: through the
// Engine API when its socket answers, else through the state files.
func (r Resolver) docker(ctx context.Context, ref string) (Target, error) {
	t := Target{Kind: "docker"}
	if ref == "" || ref == "." || ref == ".." || strings.ContainsAny(ref, "/?#%") || strings.ContainsFunc(ref, unicode.IsControl) {
		return t, fmt.Errorf("docker container %q: %w", ref, ErrNoTarget)
	}
	c, err := r.dockerAPI(ctx, ref)
	if errors.Is(err, errNoRuntime) {
		c, err = r.dockerFiles(ref)
	}
	if err != nil {
		return t, err
	}
	if !c.State.Running || c.State.Pid <= 0 {
		return t, fmt.Errorf("docker container %s is not running: %w", ref, ErrNoTarget)
	}
	t.PID, t.Path = c.State.Pid, filepath.Join(r.ProcDir, strconv.Itoa(c.State.Pid), "ns", "net")
	t.Name = strings.TrimPrefix(c.Name, "/")
	if !rules.ValidContainerName(t.Name) {
		t.Name = shortID(c.id())
	}
	return t, r.checkNS(t)
}

// errNoRuntime: the runtime is not installed here (not an error to report).
var errNoRuntime = errors.New("runtime not present")

func (r Resolver) dockerAPI(ctx context.Context, ref string) (*dockerContainer, error) {
	if r.DockerSocket == "" {
		return nil, errNoRuntime
	}
	if _, err := os.Stat(r.DockerSocket); err != nil {
		return nil, errNoRuntime
	}
	ctx, cancel := context.WithTimeout(ctx, dockerAPITimeout)
	defer cancel()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", r.DockerSocket)
	}, MaxResponseHeaderBytes: maxAPIHeader, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/containers/"+url.PathEscape(ref)+"/json", nil)
	if err != nil {
		return nil, err
	}
	client := &http.Client{Transport: tr, Timeout: dockerAPITimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		return nil, errNoRuntime // socket present but nobody answers: try the files
	}
	defer resp.Body.Close()
	body, err := readAllBounded(resp.Body, maxStateFile)
	if err != nil {
		return nil, fmt.Errorf("docker api: container %q: %w", ref, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, fmt.Errorf("docker container %q: %w", ref, ErrNoTarget)
	default:
		return nil, fmt.Errorf("docker api: %d: %q", resp.StatusCode, echo(body))
	}
	c, err := parseDockerContainer(body)
	if err != nil {
		return nil, fmt.Errorf("docker api: container %q: %w", ref, err)
	}
	if !c.answers(ref) {
		return nil, fmt.Errorf("docker api: asked for container %q, got %.64q", ref, c.id())
	}
	return c, nil
}

// echo is what an error quotes of a runtime's answer: Docker's message,
// or the start of the body.
func echo(body []byte) string {
	var m struct {
		Message string `json:"message"`
	}
	s := string(body)
	if json.Unmarshal(body, &m) == nil && m.Message != "" {
		s = m.Message
	}
	s = strings.TrimSpace(s)
	if len(s) > maxErrorEcho {
		s = s[:maxErrorEcho] + "..."
	}
	return s
}

// dockerFiles finds the container among DockerRoot/containers/*/config.v2.json
// by full id, unique id prefix or name.
func (r Resolver) dockerFiles(ref string) (*dockerContainer, error) {
	dir := filepath.Join(r.DockerRoot, "containers")
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("docker container %q: %w", ref, ErrNoTarget)
		}
		return nil, fmt.Errorf("docker state: %w", err)
	}
	var found []*dockerContainer
	for i, e := range entries {
		if i >= maxRuntimeScan {
			break
		}
		b, err := readBounded(filepath.Join(dir, e.Name(), "config.v2.json"), maxStateFile)
		if err != nil {
			continue
		}
		c, err := parseDockerContainer(b)
		if err != nil {
			continue
		}
		id := c.id()
		if id == "" {
			id = e.Name()
		}
		switch {
		case id == ref || strings.TrimPrefix(c.Name, "/") == ref:
			return c, nil
		case len(ref) >= 4 && strings.HasPrefix(id, ref):
			found = append(found, c)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("docker container %q: %w", ref, ErrNoTarget)
	case 1:
		return found[0], nil
	}
	return nil, fmt.Errorf("docker container %q: %d containers: %w", ref, len(found), ErrAmbiguous)
}

// containerd resolves [NAMESPACE/]ID through the v2 shim's state
// directories (NAMESPACE/ID/init.pid).
func (r Resolver) containerd(ref string) (Target, error) {
	t := Target{Kind: "containerd"}
	if r.ContainerdState == "" {
		return t, fmt.Errorf("containerd container %q: %w", ref, ErrNoTarget)
	}
	ns, id, ok := strings.Cut(ref, "/")
	if !ok {
		ns, id = "", ref
	}
	if id == "" || strings.ContainsAny(id, "/\\") || id == "." || id == ".." || ns == "." || ns == ".." ||
		strings.ContainsFunc(ref, unicode.IsControl) {
		return t, fmt.Errorf("containerd container %q: %w", ref, ErrNoTarget)
	}
	var namespaces []string
	if ns != "" {
		namespaces = []string{ns}
	} else {
		entries, err := os.ReadDir(r.ContainerdState)
		if err != nil {
			return t, fmt.Errorf("containerd container %q: %w", ref, ErrNoTarget)
		}
		for i, e := range entries {
			if i >= maxRuntimeScan {
				break
			}
			namespaces = append(namespaces, e.Name())
		}
	}
	var pids []int
	for _, n := range namespaces {
		b, err := readBounded(filepath.Join(r.ContainerdState, n, id, "init.pid"), maxPIDFile)
		if err != nil {
			continue
		}
		if s := strings.TrimSpace(string(b)); isPID(s) {
			pid, _ := strconv.Atoi(s)
			pids = append(pids, pid)
		}
	}
	switch len(pids) {
	case 0:
		return t, fmt.Errorf("containerd container %q: %w", ref, ErrNoTarget)
	case 1:
	default:
		return t, fmt.Errorf("containerd container %q is in %d namespaces (write NAMESPACE/ID): %w", ref, len(pids), ErrAmbiguous)
	}
	t.PID, t.Path = pids[0], filepath.Join(r.ProcDir, strconv.Itoa(pids[0]), "ns", "net")
	t.Name = id
	if !rules.ValidContainerName(t.Name) {
		t.Name = shortID(id)
	}
	return t, r.checkNS(t)
}

func shortID(id string) string {
	if len(id) > 12 {
		id = id[:12]
	}
	if rules.ValidContainerName(id) {
		return id
	}
	return "container"
}

// errTooBig: a runtime's file or answer is larger than deepwall reads.
var errTooBig = errors.New("larger than the limit")

// readBounded reads a runtime's state file of at most limit bytes. Only
// a regular file is opened (never a device or a FIFO), and not through
// a symbolic link of its own.
func readBounded(path string, limit int64) ([]byte, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	b, err := readAllBounded(f, limit)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// readAllBounded reads r to its end, failing past limit bytes instead of
// cutting (a cut JSON document would be misread or misreported).
func readAllBounded(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w of %d bytes", errTooBig, limit)
	}
	return b, nil
}
