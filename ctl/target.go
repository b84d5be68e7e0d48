package ctl

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
	"regexp"
	"strconv"
	"strings"
	"time"
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

// Where the container runtimes keep what target resolution reads. Absent
// runtimes are not an error: their step is skipped.
type targetResolver struct {
	NetnsDir        string // named namespaces (ip netns)
	ProcDir         string
	DockerSocket    string // Engine API over a unix socket
	DockerRoot      string // containers/<id>/config.v2.json
	ContainerdState string // <namespace>/<id>/init.pid of the v2 runtime shim
}

var defaultResolver = targetResolver{NetnsDir: "/run/netns", ProcDir: "/proc", DockerSocket: "/var/run/docker.sock",
	DockerRoot: "/var/lib/docker", ContainerdState: "/run/containerd/io.containerd.runtime.v2.task"}

// Errors of target resolution.
var (
	// ErrNoTarget: nothing answers to the target's name.
	ErrNoTarget = errors.New("no such container or network namespace")
	// ErrAmbiguous: the name matches several containers.
	ErrAmbiguous = errors.New("ambiguous container name")
)

// Limits of target resolution (what it reads is another program's).
const (
	maxTargetLen     = 256
	maxStateFile     = 4 << 20
	maxRuntimeScan   = 65536
	dockerAPITimeout = 3 * time.Second
)

// containerNameRE is what a container name in rules may be.
var containerNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// resolve finds spec's network namespace. spec is one of: an absolute
// path (/proc/PID/ns/net, /var/run/netns/NAME), a PID, a name under
// NetnsDir, docker:ID|NAME, containerd:[NAMESPACE/]ID, or a bare Docker
// or containerd id or name (Docker first).
func (r targetResolver) resolve(ctx context.Context, spec string) (Target, error) {
	t := Target{Spec: spec}
	if spec == "" || len(spec) > maxTargetLen || strings.ContainsAny(spec, "\x00\n") {
		return t, fmt.Errorf("target %q: want a netns name or path, a pid, or a container id or name", spec)
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
	if !strings.Contains(spec, "/") {
		p := filepath.Join(r.NetnsDir, spec)
		if _, err := os.Stat(p); err == nil {
			t.Kind, t.Path, t.Name = "netns", p, spec
			return t, nil
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

func (r targetResolver) checkNS(t Target) error {
	if _, err := os.Stat(t.Path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("target %s: %s: %w", t.Spec, t.Path, ErrNoTarget)
		}
		return fmt.Errorf("target %s: %w", t.Spec, err)
	}
	return nil
}

func isPID(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n > 0 && strconv.Itoa(n) == s
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
	if containerNameRE.MatchString(b) {
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

func (c *dockerContainer) id() string {
	if c.ID != "" {
		return c.ID
	}
	return c.ID2
}

// docker resolves a Docker container id, id prefix or name: through the
// Engine API when its socket answers, else through the state files.
func (r targetResolver) docker(ctx context.Context, ref string) (Target, error) {
	t := Target{Kind: "docker"}
	if ref == "" || strings.ContainsAny(ref, "/?#%") {
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
	if !containerNameRE.MatchString(t.Name) {
		t.Name = shortID(c.id())
	}
	return t, r.checkNS(t)
}

// errNoRuntime: the runtime is not installed here (not an error to report).
var errNoRuntime = errors.New("runtime not present")

func (r targetResolver) dockerAPI(ctx context.Context, ref string) (*dockerContainer, error) {
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
	}}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/containers/"+url.PathEscape(ref)+"/json", nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, errNoRuntime // socket present but nobody answers: try the files
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxStateFile))
	if err != nil {
		return nil, fmt.Errorf("docker api: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, fmt.Errorf("docker container %q: %w", ref, ErrNoTarget)
	default:
		return nil, fmt.Errorf("docker api: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	var c dockerContainer
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, fmt.Errorf("docker api: container %s: %w", ref, err)
	}
	return &c, nil
}

// dockerFiles finds the container among DockerRoot/containers/*/config.v2.json
// by full id, unique id prefix or name.
func (r targetResolver) dockerFiles(ref string) (*dockerContainer, error) {
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
		b, err := readBounded(filepath.Join(dir, e.Name(), "config.v2.json"))
		if err != nil {
			continue
		}
		var c dockerContainer
		if json.Unmarshal(b, &c) != nil {
			continue
		}
		id := c.id()
		if id == "" {
			id = e.Name()
		}
		switch {
		case id == ref || strings.TrimPrefix(c.Name, "/") == ref:
			return &c, nil
		case len(ref) >= 4 && strings.HasPrefix(id, ref):
			found = append(found, &c)
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
func (r targetResolver) containerd(ref string) (Target, error) {
	t := Target{Kind: "containerd"}
	if r.ContainerdState == "" {
		return t, fmt.Errorf("containerd container %q: %w", ref, ErrNoTarget)
	}
	ns, id, ok := strings.Cut(ref, "/")
	if !ok {
		ns, id = "", ref
	}
	if id == "" || strings.ContainsAny(id, "/\\") || id == "." || id == ".." || ns == "." || ns == ".." {
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
		for _, e := range entries {
			namespaces = append(namespaces, e.Name())
		}
	}
	var pids []int
	for _, n := range namespaces {
		b, err := readBounded(filepath.Join(r.ContainerdState, n, id, "init.pid"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err == nil && pid > 0 {
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
	if !containerNameRE.MatchString(t.Name) {
		t.Name = shortID(id)
	}
	return t, r.checkNS(t)
}

func shortID(id string) string {
	if len(id) > 12 {
		id = id[:12]
	}
	if containerNameRE.MatchString(id) {
		return id
	}
	return "container"
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxStateFile))
}
