package resolve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path"
	"slices"
	"strings"
	"unicode"
)

// Selectors pick running containers by what their runtimes say of them,
// for protections that cover every matching container, present and
// future (deepwall protect --selector).

// Limits of selectors and container listings.
const (
	maxSelectorLen   = 512
	maxSelectorTerms = 16
	// maxListed bounds the containers one listing returns per runtime.
	maxListed = 4096
	// maxLabels bounds the labels of one container: one with more is
	// not believed (a listing skips it, a resolution refuses it).
	maxLabels = 256
	// maxLabelLen bounds a label's key and its value.
	maxLabelLen = 4096
)

// checkLabels refuses labels past maxLabels or maxLabelLen.
func checkLabels(labels map[string]string) error {
	if len(labels) > maxLabels {
		return fmt.Errorf("%d labels, at most %d", len(labels), maxLabels)
	}
	for k, v := range labels {
		if len(k) > maxLabelLen || len(v) > maxLabelLen {
			return fmt.Errorf("label %.64q: longer than %d bytes", k, maxLabelLen)
		}
	}
	return nil
}

// ErrSelector: a selector that does not parse.
var ErrSelector = errors.New("invalid selector")

// Selector is a conjunction of terms: label:KEY=VALUE (or label:KEY,
// present), name:GLOB, image:GLOB, runtime:NAME. GLOB is path.Match's.
type Selector struct {
	text  string
	terms []selTerm
}

type selTerm struct{ kind, key, value string }

// ParseSelector parses a comma-separated list of terms.
func ParseSelector(s string) (Selector, error) {
	sel := Selector{text: s}
	if s == "" || len(s) > maxSelectorLen || strings.ContainsFunc(s, unicode.IsControl) {
		return sel, fmt.Errorf("%w %.64q: want label:KEY=VALUE, name:GLOB, image:GLOB or runtime:NAME, comma-separated (at most %d bytes)",
			ErrSelector, s, maxSelectorLen)
	}
	for _, term := range strings.Split(s, ",") {
		kind, arg, ok := strings.Cut(strings.TrimSpace(term), ":")
		if !ok || arg == "" {
			return sel, fmt.Errorf("%w: term %.64q: want KIND:VALUE", ErrSelector, term)
		}
		t := selTerm{kind: kind, value: arg}
		switch kind {
		case "label":
			t.key, t.value, _ = strings.Cut(arg, "=")
			if t.key == "" {
				return sel, fmt.Errorf("%w: term %.64q: no label key", ErrSelector, term)
			}
			if !strings.Contains(arg, "=") {
				t.value = "\x00" // any value
			}
		case "name", "image":
			if _, err := path.Match(arg, ""); err != nil {
				return sel, fmt.Errorf("%w: term %.64q: %v", ErrSelector, term, err)
			}
		case "runtime":
			if !slices.Contains(Runtimes, arg) {
				return sel, fmt.Errorf("%w: term %.64q: %w %.32q (known: %s)", ErrSelector, term, ErrUnknownRuntime, arg,
					strings.Join(Runtimes, ", "))
			}
		default:
			return sel, fmt.Errorf("%w: term %.64q: want label, name, image or runtime", ErrSelector, term)
		}
		sel.terms = append(sel.terms, t)
	}
	if len(sel.terms) > maxSelectorTerms {
		return sel, fmt.Errorf("%w: %d terms, at most %d", ErrSelector, len(sel.terms), maxSelectorTerms)
	}
	return sel, nil
}

// String is the selector as written.
func (s Selector) String() string { return s.text }

// Matches reports whether every term matches c.
func (s Selector) Matches(c Listed) bool {
	if len(s.terms) == 0 {
		return false
	}
	for _, t := range s.terms {
		var ok bool
		switch t.kind {
		case "label":
			v, has := c.Labels[t.key]
			ok = has && (t.value == "\x00" || v == t.value)
		case "name":
			ok, _ = path.Match(t.value, c.Name)
		case "image":
			ok, _ = path.Match(t.value, c.Image)
		case "runtime":
			ok = c.Runtime == t.value
		}
		if !ok {
			return false
		}
	}
	return true
}

// Listed is a running container as a runtime lists it. Name is what
// RUNTIME:NAME resolves (containerd: NAMESPACE/ID).
type Listed struct {
	Runtime, ID, Name, Image string
	Labels                   map[string]string
}

// engineListed is what deepwall reads of GET /containers/json.
type engineListed struct {
	ID     string            `json:"Id"`
	Names  []string          `json:"Names"`
	Image  string            `json:"Image"`
	Labels map[string]string `json:"Labels"`
	State  string            `json:"State"`
}

// List returns the running containers of every runtime present (Docker
// and podman through their APIs, containerd through its shim state,
// without labels or image). A runtime that is absent lists nothing; one
// that fails is reported with what the others listed.
func (r Resolver) List(ctx context.Context) ([]Listed, error) {
	var out []Listed
	var errs []error
	for _, e := range []engine{{name: "docker", socket: r.DockerSocket}, {name: "podman", socket: r.PodmanSocket}} {
		l, err := r.listEngine(ctx, e)
		if err != nil && !errors.Is(err, errNoRuntime) {
			errs = append(errs, err)
		}
		out = append(out, l...)
	}
	return append(out, r.listContainerd(ctx)...), errors.Join(errs...)
}

func (r Resolver) listEngine(ctx context.Context, e engine) ([]Listed, error) {
	body, status, err := r.engineGet(ctx, e, "/containers/json")
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("%s api: list: %d: %q", e.name, status, echo(body))
	}
	return parseEngineList(e.name, body)
}

// parseEngineList decodes a GET /containers/json answer (bounded by the
// caller) into the running containers with a usable name.
func parseEngineList(runtime string, body []byte) ([]Listed, error) {
	var list []engineListed
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, fmt.Errorf("%s api: list: %w", runtime, err)
	}
	var out []Listed
	for _, c := range list {
		if len(out) >= maxListed {
			break
		}
		if c.State != "" && c.State != "running" || len(c.Names) == 0 || checkLabels(c.Labels) != nil {
			continue
		}
		name := strings.TrimPrefix(c.Names[0], "/")
		if name == "" || len(name) > maxContainerID || len(c.ID) > maxContainerID || len(c.Image) > maxContainerID ||
			strings.ContainsAny(name, "/?#%") {
			continue
		}
		out = append(out, Listed{Runtime: runtime, ID: c.ID, Name: name, Image: c.Image, Labels: c.Labels})
	}
	return out, nil
}

// listContainerd lists the containers of the shim state (NAMESPACE/ID
// with an init.pid), with their image and labels when containerd's API
// answers.
func (r Resolver) listContainerd(ctx context.Context) []Listed {
	if r.ContainerdState == "" {
		return nil
	}
	nss, err := os.ReadDir(r.ContainerdState)
	if err != nil {
		return nil
	}
	var out []Listed
	listed := map[string]bool{}
	defer r.ctrd.keep(listed)
	for i, ns := range nss {
		if i >= maxRuntimeScan {
			break
		}
		ids, err := os.ReadDir(r.ContainerdState + "/" + ns.Name())
		if err != nil {
			continue
		}
		for j, id := range ids {
			if j >= maxRuntimeScan || len(out) >= maxListed {
				break
			}
			if _, err := os.Lstat(r.ContainerdState + "/" + ns.Name() + "/" + id.Name() + "/init.pid"); err == nil {
				l := Listed{Runtime: "containerd", ID: id.Name(), Name: ns.Name() + "/" + id.Name()}
				listed[l.Name] = true
				if m, ok := r.containerdInfo(ctx, ns.Name(), id.Name()); ok {
					l.Image, l.Labels = m.Image, m.Labels
				}
				out = append(out, l)
			}
		}
	}
	return out
}
