package resolve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/deepwall/deepwall/rules"
)

// The Docker Engine API, as Docker serves it and as podman's API service
// serves it too (its Docker-compatible endpoints, at podman's own
// socket): one container inspect, GET /containers/{ref}/json, answers by
// name, full id or unique id prefix.

// engine is one runtime speaking the Engine API.
type engine struct {
	name   string // docker, podman
	socket string
	// root is Docker's state directory, read when the socket does not
	// answer ("" for podman, whose state is a database of its own).
	root string
}

// dockerContainer is what deepwall reads of a container from the Engine
// API (GET /containers/{id}/json) or Docker's config.v2.json: both spell
// these fields the same.
type dockerContainer struct {
	ID    string `json:"Id"`
	ID2   string `json:"ID"`
	Name  string `json:"Name"`
	State struct {
		Running bool `json:"Running"`
		Pid     int  `json:"Pid"`
	} `json:"State"`
	Config struct {
		Image  string            `json:"Image"`
		Labels map[string]string `json:"Labels"`
	} `json:"Config"`
	HostConfig struct {
		NetworkMode string `json:"NetworkMode"`
	} `json:"HostConfig"`
}

// parseDockerContainer decodes a config.v2.json or an Engine API answer
// (at most maxStateFile bytes, read by the caller) into the few fields
// deepwall uses, and checks them: a pid the kernel could have, bounded
// id, name, image and network mode.
func parseDockerContainer(b []byte) (*dockerContainer, error) {
	var c dockerContainer
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, err
	}
	if c.State.Pid < 0 || c.State.Pid > maxPID {
		return nil, fmt.Errorf("pid %d out of range", c.State.Pid)
	}
	for _, s := range []string{c.ID, c.ID2, c.Name, c.Config.Image, c.HostConfig.NetworkMode} {
		if len(s) > maxContainerID {
			return nil, fmt.Errorf("id, name, image or network mode longer than %d bytes", maxContainerID)
		}
	}
	if err := checkLabels(c.Config.Labels); err != nil {
		return nil, err
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

// engine resolves a container id, id prefix or name with e: through its
// API when its socket answers, else (Docker) through its state files.
// A container found whose network cannot be put inline is returned with
// its ID and an ErrNetworkMode error.
func (r Resolver) engine(ctx context.Context, e engine, ref string) (Target, error) {
	t := Target{Kind: e.name, Runtime: e.name}
	if ref == "" || ref == "." || ref == ".." || strings.ContainsAny(ref, "/?#%") || strings.ContainsFunc(ref, unicode.IsControl) {
		return t, fmt.Errorf("%s container %q: %w", e.name, ref, ErrNoTarget)
	}
	c, err := r.engineAPI(ctx, e, ref)
	if errors.Is(err, errNoRuntime) {
		if e.root == "" {
			return t, fmt.Errorf("%s container %q: %w (no API at %s)", e.name, ref, ErrNoTarget, e.socket)
		}
		c, err = r.dockerFiles(ref)
	}
	if err != nil {
		return t, err
	}
	if !c.State.Running || c.State.Pid <= 0 {
		return t, fmt.Errorf("%s container %s is not running: %w", e.name, ref, ErrNoTarget)
	}
	t.ID, t.Image, t.NetworkMode, t.Labels = c.id(), c.Config.Image, c.HostConfig.NetworkMode, c.Config.Labels
	t.PID, t.Path = c.State.Pid, filepath.Join(r.ProcDir, strconv.Itoa(c.State.Pid), "ns", "net")
	t.Name = strings.TrimPrefix(c.Name, "/")
	t.Container = t.Name
	if !rules.ValidContainerName(t.Name) {
		t.Name = shortID(c.id())
		t.Container = c.id()
	}
	if why := unprotectable(t.NetworkMode); why != "" {
		return t, fmt.Errorf("%s container %s: %w: network mode %.64q: %s (interfaces seen: %s)", e.name, t.Name,
			ErrNetworkMode, t.NetworkMode, why, r.linksOf(t.Path))
	}
	return t, r.checkNS(t)
}

// unprotectable says why a container in network mode cannot be put
// inline, or "" when it can: deepwall goes between the container's veth
// and the host, and these modes have none.
func unprotectable(mode string) string {
	switch {
	case mode == "none":
		return "the container has no network interface but lo"
	case mode == "host":
		return "the container shares the host's network namespace: it has no interface of its own"
	case mode == "slirp4netns" || strings.HasPrefix(mode, "slirp4netns:") || mode == "pasta" || strings.HasPrefix(mode, "pasta:"):
		return "the container's traffic leaves through a user-mode network stack (a tap device and a host process), not a veth"
	case strings.HasPrefix(mode, "container:"):
		return "the container shares another container's network namespace: protect that container"
	}
	return ""
}

// linksOf lists the interfaces in the namespace at path, for refusals.
func (r Resolver) linksOf(path string) string {
	list := r.links
	if list == nil {
		list = netnsLinks
	}
	names := list(path)
	if len(names) == 0 {
		return "none readable"
	}
	if len(names) > maxLinksShown {
		names = append(names[:maxLinksShown], fmt.Sprintf("and %d more", len(names)-maxLinksShown))
	}
	return strings.Join(names, ", ")
}

// netnsLinks lists the interfaces in the network namespace at path.
func netnsLinks(path string) []string {
	h, err := OpenNetns(path)
	if err != nil {
		return nil
	}
	defer h.Close()
	return Interfaces(h)
}

// Interfaces lists the names of the interfaces in the network namespace
// h (nil when it cannot be read): what a refusal to protect shows.
func Interfaces(h netns.NsHandle) []string {
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		return nil
	}
	defer nh.Close()
	links, err := nh.LinkList()
	if err != nil {
		return nil
	}
	names := make([]string, 0, len(links))
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	return names
}

// errNoRuntime: the runtime is not installed here (not an error to report).
var errNoRuntime = errors.New("runtime not present")

func (r Resolver) engineAPI(ctx context.Context, e engine, ref string) (*dockerContainer, error) {
	body, status, err := r.engineGet(ctx, e, "/containers/"+url.PathEscape(ref)+"/json")
	if err != nil {
		if errors.Is(err, errTooBig) {
			return nil, fmt.Errorf("%s api: container %q: %w", e.name, ref, err)
		}
		return nil, err
	}
	switch msg := echo(body); {
	case status == http.StatusOK:
	case ambiguousAnswer(msg): // podman: 404 "more than one result"; Docker: 400 "multiple IDs found"
		return nil, fmt.Errorf("%s container %q: %w: %q", e.name, ref, ErrAmbiguous, msg)
	case status == http.StatusNotFound:
		return nil, fmt.Errorf("%s container %q: %w", e.name, ref, ErrNoTarget)
	default:
		return nil, fmt.Errorf("%s api: %d: %q", e.name, status, msg)
	}
	c, err := parseDockerContainer(body)
	if err != nil {
		return nil, fmt.Errorf("%s api: container %q: %w", e.name, ref, err)
	}
	if !c.answers(ref) {
		return nil, fmt.Errorf("%s api: asked for container %q, got %.64q", e.name, ref, c.id())
	}
	return c, nil
}

// engineGet GETs path (escaped by the caller) from e's API and returns
// the answer's body (at most maxStateFile bytes) and status; errNoRuntime
// when the socket is absent or nobody answers on it.
func (r Resolver) engineGet(ctx context.Context, e engine, path string) ([]byte, int, error) {
	if e.socket == "" {
		return nil, 0, errNoRuntime
	}
	if _, err := os.Stat(e.socket); err != nil {
		return nil, 0, errNoRuntime
	}
	ctx, cancel := context.WithTimeout(ctx, dockerAPITimeout)
	defer cancel()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", e.socket)
	}, MaxResponseHeaderBytes: maxAPIHeader, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.name+path, nil)
	if err != nil {
		return nil, 0, err
	}
	client := &http.Client{Transport: tr, Timeout: dockerAPITimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		return nil, 0, errNoRuntime // socket present but nobody answers: try the files
	}
	defer resp.Body.Close()
	body, err := readAllBounded(resp.Body, maxStateFile)
	if err != nil {
		return nil, 0, err
	}
	return body, resp.StatusCode, nil
}

// ambiguousAnswer reports whether an Engine API error says an id prefix
// matched several containers.
func ambiguousAnswer(msg string) bool {
	m := strings.ToLower(msg)
	return strings.Contains(m, "more than one result") || strings.Contains(m, "multiple ids found")
}

// echo is what an error quotes of a runtime's answer: its message, or
// the start of the body.
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
