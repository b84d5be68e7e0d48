// Package resolve finds a container's network namespace from what a user
// names it by: a namespace name or path, a pid, or a Docker, podman or
// containerd id or name. What it reads (runtime state files, the Engine
// APIs of Docker and podman) belongs to other programs, so every read is
// bounded and every namespace file is checked before it is opened.
package resolve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/deepwall/deepwall/ctl/eve"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/deepwall/deepwall/rules"
)

// Target is a container to protect, resolved to its network namespace.
type Target struct {
	// Spec is what the user wrote; it is resolved again after a restart.
	Spec string `json:"spec"`
	// Kind is how it was found: netns, path, pid, docker, podman,
	// containerd.
	Kind string `json:"kind"`
	// Name is the container's name in rules (container:NAME): the
	// runtime's name for a container (stable across its restarts), also
	// when it was named by pid or namespace path.
	Name string `json:"name"`
	// Path is the namespace file to open; PID the process it belongs to
	// (0 for named namespaces and paths).
	Path string `json:"path"`
	PID  int    `json:"pid,omitempty"`
	// Runtime and ID are the container runtime that runs the target and
	// its id there ("" when no runtime knows it); Container is its name
	// there (containerd: NAMESPACE/ID), which RUNTIME:CONTAINER finds
	// again after a restart or a re-creation; Image and NetworkMode are
	// as the runtime reported them.
	Runtime     string `json:"runtime,omitempty"`
	Container   string `json:"container,omitempty"`
	ID          string `json:"id,omitempty"`
	Image       string `json:"image,omitempty"`
	NetworkMode string `json:"network_mode,omitempty"`
	// Labels are the container's labels as its runtime reported them
	// (at most maxLabels, each at most maxLabelLen bytes; containerd's
	// only when its API answers).
	Labels map[string]string `json:"labels,omitempty"`
	// Policy is the selector whose protection this is ("": protected by
	// name).
	Policy string `json:"policy,omitempty"`
	// K8s is the pod a --kubernetes agent protects (ProtectRequest.K8s).
	K8s *eve.K8s `json:"k8s,omitempty"`
}

// Resolver says where the container runtimes keep what target resolution
// reads. Absent runtimes are not an error: their step is skipped.
type Resolver struct {
	NetnsDir     string // named namespaces (ip netns)
	ProcDir      string
	DockerSocket string // Docker's Engine API over a unix socket
	DockerRoot   string // containers/<id>/config.v2.json
	// PodmanSocket is podman's API service (podman.socket, or
	// `podman system service`): its Docker-compatible endpoints.
	PodmanSocket    string
	ContainerdState string // <namespace>/<id>/init.pid of the v2 runtime shim
	// ContainerdSocket is containerd's gRPC API: its task start events,
	// and the image and labels of its containers ("" or absent: the
	// shim state alone, and the periodic pass).
	ContainerdSocket string
	// isNetns checks a namespace file; nil is checkNetns (tests of the
	// resolution steps put plain files where namespaces would be).
	isNetns func(path string) error
	// links lists a namespace's interfaces for refusals; nil is
	// netnsLinks (tests have no namespaces).
	links func(path string) []string
	// ctrd caches containerd's container metadata (WithContainerdCache);
	// nil asks every time.
	ctrd *metaCache
}

// Default is where the runtimes keep their state on a standard host.
var Default = Resolver{NetnsDir: "/run/netns", ProcDir: "/proc", DockerSocket: "/var/run/docker.sock",
	DockerRoot: "/var/lib/docker", PodmanSocket: "/run/podman/podman.sock",
	ContainerdState: "/run/containerd/io.containerd.runtime.v2.task", ContainerdSocket: "/run/containerd/containerd.sock"}

// Runtimes are the container runtimes a target may name as RUNTIME:REF.
var Runtimes = []string{"containerd", "docker", "podman"}

// Errors of target resolution.
var (
	// ErrNoTarget: nothing answers to the target's name.
	ErrNoTarget = errors.New("no such container or network namespace")
	// ErrAmbiguous: the name matches several containers.
	ErrAmbiguous = errors.New("ambiguous container name")
	// ErrNotNetns: the target's namespace file is not a network namespace.
	ErrNotNetns = errors.New("not a network namespace")
	// ErrUnknownRuntime: RUNTIME:REF names no runtime deepwall knows.
	ErrUnknownRuntime = errors.New("unknown runtime")
	// ErrNetworkMode: the container's network cannot be put inline
	// (none, host, a user-mode stack, another container's namespace).
	ErrNetworkMode = errors.New("network mode cannot be protected")
)

// Limits of target resolution (what it reads is another program's).
const (
	maxTargetLen = 256
	// maxStateFile bounds a config.v2.json or an Engine API answer (a
	// container with many labels and mounts is tens of KiB).
	maxStateFile = 4 << 20
	// maxPIDFile bounds a shim's init.pid (a decimal number).
	maxPIDFile = 64
	// maxCgroupFile bounds /proc/PID/cgroup (a line per v1 hierarchy).
	maxCgroupFile = 64 << 10
	// maxRuntimeScan bounds the entries of a runtime's state directory read.
	maxRuntimeScan = 65536
	// maxAPIHeader bounds the Engine API's response header.
	maxAPIHeader = 64 << 10
	// maxErrorEcho bounds what of a runtime's error answer ours quotes.
	maxErrorEcho = 200
	// maxContainerID bounds an id or name read from a runtime.
	maxContainerID = 256
	// maxLinksShown bounds the interfaces a refusal lists.
	maxLinksShown = 16
	// maxPID is the kernel's PID_MAX_LIMIT (64-bit): no process has a
	// larger pid.
	maxPID           = 1 << 22
	dockerAPITimeout = 3 * time.Second
)

// Resolve finds spec's network namespace. spec is one of: an absolute
// path (/proc/PID/ns/net, /var/run/netns/NAME), a PID, a name under
// NetnsDir, RUNTIME:REF (docker:ID|NAME, podman:ID|NAME,
// containerd:[NAMESPACE/]ID), or a bare container id, id prefix or name,
// which must then be one runtime's only.
func (r Resolver) Resolve(ctx context.Context, spec string) (Target, error) {
	t := Target{Spec: spec}
	if spec == "" || len(spec) > maxTargetLen || strings.ContainsFunc(spec, unicode.IsControl) {
		return t, fmt.Errorf("target %.300q: want a netns name or path, a pid, or a container id or name", spec)
	}
	if kind, rest, ok := strings.Cut(spec, ":"); ok && !filepath.IsAbs(spec) && !r.isNamedNetns(spec) {
		if !slices.Contains(Runtimes, kind) {
			return t, fmt.Errorf("target %q: %w %.64q (known: %s)", spec, ErrUnknownRuntime, kind, strings.Join(Runtimes, ", "))
		}
		t, err := r.runtime(ctx, kind, rest)
		t.Spec = spec
		return t, err
	}
	switch {
	case filepath.IsAbs(spec):
		t.Kind, t.Path, t.Name = "path", filepath.Clean(spec), nameFromPath(spec)
		if pid, ok := pidFromPath(r.ProcDir, t.Path); ok {
			t.PID, t.Name = pid, "pid-"+strconv.Itoa(pid)
		}
		if err := r.checkNS(t); err != nil {
			return t, err
		}
		if t.PID == 0 {
			r.nameByNetns(ctx, &t)
		} else {
			r.nameByPID(ctx, &t)
		}
		return t, nil
	case isPID(spec):
		t.PID, _ = strconv.Atoi(spec)
		t.Kind, t.Path, t.Name = "pid", filepath.Join(r.ProcDir, spec, "ns", "net"), "pid-"+spec
		if err := r.checkNS(t); err != nil {
			return t, err
		}
		r.nameByPID(ctx, &t)
		return t, nil
	}
	if r.isNamedNetns(spec) {
		t.Kind, t.Path, t.Name = "netns", filepath.Join(r.NetnsDir, spec), spec
		if err := r.checkNS(t); err != nil {
			return t, err
		}
		r.nameByNetns(ctx, &t)
		return t, nil
	}
	// A bare name: every runtime is asked, and must be the only one to
	// know it.
	var found []Target
	var errs []error
	for _, kind := range Runtimes {
		ft, err := r.runtime(ctx, kind, spec)
		switch {
		case err == nil || ft.ID != "": // found (perhaps refused: its error is the answer)
			ft.Spec = spec
			found = append(found, ft)
			errs = append(errs, err)
		case !errors.Is(err, ErrNoTarget):
			errs = append(errs, err)
		}
	}
	switch {
	case len(found) == 1:
		return found[0], errs[0]
	case len(found) > 1:
		var names []string
		for _, f := range found {
			names = append(names, fmt.Sprintf("%s %s (%s)", f.Runtime, shortID(f.ID), f.Name))
		}
		return t, fmt.Errorf("target %q: %w: %s; write RUNTIME:%s", spec, ErrAmbiguous, strings.Join(names, ", "), spec)
	case len(errs) > 0:
		return t, errors.Join(errs...)
	}
	return t, fmt.Errorf("target %q: %w (looked in %s)", spec, ErrNoTarget, r.lookedIn())
}

// lookedIn says where a bare name was looked for, naming the runtimes
// that are not there.
func (r Resolver) lookedIn() string {
	where := []string{r.NetnsDir}
	for _, e := range []struct{ name, socket string }{{"docker", r.DockerSocket}, {"podman", r.PodmanSocket}} {
		if e.socket == "" {
			continue
		}
		if _, err := os.Stat(e.socket); err != nil {
			where = append(where, fmt.Sprintf("%s (no API at %s)", e.name, e.socket))
		} else {
			where = append(where, e.name)
		}
	}
	return strings.Join(append(where, "containerd"), ", ")
}

// isNamedNetns reports whether spec is a namespace under NetnsDir.
func (r Resolver) isNamedNetns(spec string) bool {
	if strings.Contains(spec, "/") || spec == "." || spec == ".." || r.NetnsDir == "" {
		return false
	}
	_, err := os.Lstat(filepath.Join(r.NetnsDir, spec))
	return err == nil
}

// runtime resolves ref with one runtime (kind, one of Runtimes).
func (r Resolver) runtime(ctx context.Context, kind, ref string) (Target, error) {
	switch kind {
	case "docker":
		return r.engine(ctx, engine{name: "docker", socket: r.DockerSocket, root: r.DockerRoot}, ref)
	case "podman":
		return r.engine(ctx, engine{name: "podman", socket: r.PodmanSocket}, ref)
	}
	return r.containerd(ctx, ref)
}

// nameByPID names a target given by pid or namespace path after the
// container its process is in, when a runtime knows it: the name stays
// the same across the container's restarts, the pid does not.
func (r Resolver) nameByPID(ctx context.Context, t *Target) {
	if t.PID == 0 {
		return
	}
	id := containerIDOf(r.ProcDir, t.PID)
	if id == "" {
		return
	}
	for _, kind := range Runtimes {
		ft, err := r.runtime(ctx, kind, id)
		if err == nil && ft.PID == t.PID && rules.ValidContainerName(ft.Name) {
			t.Name, t.Runtime, t.ID, t.Container, t.Image, t.NetworkMode, t.Labels = ft.Name, ft.Runtime, ft.ID, ft.Container, ft.Image, ft.NetworkMode, ft.Labels
			return
		}
	}
}

// nameByNetns names a target given by namespace (podman's and CNI's
// /run/netns/netns-UUID, which change with every restart) after the
// container whose process is in it, when a runtime knows one: the
// processes are scanned for one in that namespace (at most
// maxRuntimeScan) that is in a container's cgroup.
func (r Resolver) nameByNetns(ctx context.Context, t *Target) {
	var want unix.Stat_t
	if unix.Stat(t.Path, &want) != nil {
		return
	}
	entries, err := os.ReadDir(r.ProcDir)
	if err != nil {
		return
	}
	for i, e := range entries {
		if i >= maxRuntimeScan {
			return
		}
		if !isPID(e.Name()) {
			continue
		}
		if !sameFile(filepath.Join(r.ProcDir, e.Name(), "ns", "net"), &want) {
			continue
		}
		pid, _ := strconv.Atoi(e.Name())
		if containerIDOf(r.ProcDir, pid) == "" {
			continue
		}
		c := *t
		c.PID = pid
		r.nameByPID(ctx, &c)
		if c.Runtime != "" {
			t.Name, t.Runtime, t.ID, t.Container, t.Image, t.NetworkMode, t.Labels = c.Name, c.Runtime, c.ID, c.Container, c.Image, c.NetworkMode, c.Labels
			return
		}
	}
}

// containerIDOf reads the container id in pid's cgroup path (docker-ID.scope,
// libpod-ID, /docker/ID, a containerd namespace/ID): the last path
// element's run of 64 hex digits; "" when there is none.
func containerIDOf(proc string, pid int) string {
	b, err := readBounded(filepath.Join(proc, strconv.Itoa(pid), "cgroup"), maxCgroupFile)
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(b)) {
		_, path, ok := strings.Cut(strings.TrimSpace(line), "::")
		if !ok {
			continue
		}
		last := path[strings.LastIndexByte(path, '/')+1:]
		for i := 0; i+64 <= len(last); i++ {
			if isHex(last[i:i+64]) && (i == 0 || !isHex(last[i-1:i])) && (i+64 == len(last) || !isHex(last[i+64:i+65])) {
				return last[i : i+64]
			}
		}
	}
	return ""
}

func isHex(s string) bool {
	for i := range len(s) {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
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
// Its image and labels come from containerd's API when it answers.
func (r Resolver) containerd(ctx context.Context, ref string) (Target, error) {
	t := Target{Kind: "containerd", Runtime: "containerd"}
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
	var inNS string
	for _, n := range namespaces {
		b, err := readBounded(filepath.Join(r.ContainerdState, n, id, "init.pid"), maxPIDFile)
		if err != nil {
			continue
		}
		if s := strings.TrimSpace(string(b)); isPID(s) {
			pid, _ := strconv.Atoi(s)
			pids = append(pids, pid)
			inNS = n
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
	t.Name, t.ID = id, id
	t.Container = inNS + "/" + id
	if !rules.ValidContainerName(t.Name) {
		t.Name = shortID(id)
	}
	if info, ok := r.containerdInfo(ctx, inNS, id); ok {
		t.Image, t.Labels = info.Image, info.Labels
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

// Identify asks every runtime for the container id (a CNI_CONTAINERID:
// the container, or the pod sandbox of a CRI runtime) and returns what
// the runtime that runs it says, if its process is in the network
// namespace at netnsPath: a CNI protection is made before the container
// runs, and named after its runtime once it does.
func (r Resolver) Identify(ctx context.Context, id, netnsPath string) (Target, bool) {
	var want unix.Stat_t
	if id == "" || unix.Stat(netnsPath, &want) != nil {
		return Target{}, false
	}
	for _, kind := range Runtimes {
		t, err := r.runtime(ctx, kind, id)
		if err != nil || t.PID == 0 || !sameFile(t.Path, &want) {
			continue
		}
		return t, true
	}
	return Target{}, false
}

// sameFile reports whether path names the file want was stat'ed from (a
// network namespace: its device and inode).
func sameFile(path string, want *unix.Stat_t) bool {
	var st unix.Stat_t
	return unix.Stat(path, &st) == nil && st.Ino == want.Ino && st.Dev == want.Dev
}
