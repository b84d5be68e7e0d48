// Package cni is deepwall-cni, a chained CNI plugin (spec 1.0): the
// runtime calls it after the plugin that made the container's interface
// (bridge, ptp), before the container's process starts. On ADD it asks the
// running agent, over its API socket, to put the interface's host-side
// veth inline, so the container's very first packet is inspected; on DEL
// it releases it; CHECK reports whether it is inline. It owns the
// plugin's network configuration keys and the mapping of a CNI attachment
// to a protection (its name, target and interface); protecting is the
// agent's (ctl/agent/protect).
package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/rules"
)

// Type is the plugin's name: its binary in the runtime's CNI path and
// its "type" in a conflist.
const Type = "deepwall-cni"

// Time limits of the calls to the agent: a protect takes well under a
// second (docs/containers.md); the runtime waits for ADD meanwhile.
const (
	addTimeout   = 30 * time.Second
	delTimeout   = 30 * time.Second
	checkTimeout = 10 * time.Second
	// idLen is how much of CNI_CONTAINERID names an attachment whose
	// runtime gives no name.
	idLen = 12
)

// errPluginNotAvailable is spec 1.1's well-known error of a STATUS that
// cannot service ADD (not named in the library's types).
const errPluginNotAvailable uint = 50

// Errors of the plugin.
var (
	// errNoPrevResult is ADD or CHECK called without the result of a
	// previous plugin: deepwall-cni is chained, it makes no interface.
	errNoPrevResult = errors.New("no prevResult: " + Type + " must be chained after the plugin that makes the interface (bridge, ptp)")
	// errNotInline is CHECK of an attachment the agent does not protect.
	errNotInline = errors.New("not inline")
)

// netConf is the plugin's entry in a conflist.
type netConf struct {
	types.NetConf
	// Socket is the agent's API socket (default api.DefaultSocket).
	Socket string `json:"socket,omitempty"`
	// FailClosed (default true): when the container cannot be put inline
	// (no agent, or the agent refuses), ADD fails and the container does
	// not start; false: ADD succeeds, unprotected, and says so on
	// stderr. It is also the protection's fail policy (the agent's
	// absence on the protected veth drops its traffic).
	FailClosed *bool `json:"failClosed,omitempty"`
	// Mode is the protection mode (default protect).
	Mode string `json:"mode,omitempty"`
}

func (c *netConf) failClosed() bool { return c.FailClosed == nil || *c.FailClosed }

// Funcs are the plugin's commands for skel.PluginMainFuncs, writing
// results to stdout and to log what a fail-open ADD or a DEL let through
// (the runtime shows the plugin's stderr in its logs).
func Funcs(stdout, log io.Writer) skel.CNIFuncs {
	return skel.CNIFuncs{
		Add:   func(a *skel.CmdArgs) error { return cmdAdd(a, stdout, log) },
		Del:   func(a *skel.CmdArgs) error { return cmdDel(a, log) },
		Check: cmdCheck,
		// GC (spec 1.1) has nothing to do: the agent releases the
		// protections of namespaces that are gone by itself (every
		// second and at start).
		GC:     func(*skel.CmdArgs) error { return nil },
		Status: cmdStatus,
	}
}

// About is what the plugin prints when called with no CNI_COMMAND.
const About = Type + ": puts a container's interface inline in deepwall's agent (chained CNI plugin; " + Type + " install copies it to /opt/cni/bin)"

// Versions are the CNI spec versions the plugin speaks.
var Versions = version.PluginSupports("0.4.0", "1.0.0", "1.1.0")

// parse reads the plugin's configuration and its previous result.
func parse(stdin []byte, needPrev bool) (*netConf, error) {
	conf := &netConf{}
	if err := json.Unmarshal(stdin, conf); err != nil {
		return nil, fmt.Errorf("parse network configuration: %w", err)
	}
	if conf.Socket == "" {
		conf.Socket = api.DefaultSocket
	}
	if conf.Mode == "" {
		conf.Mode = api.ModeProtect
	}
	if needPrev {
		if conf.RawPrevResult == nil {
			return nil, errNoPrevResult
		}
		if err := version.ParsePrevResult(&conf.NetConf); err != nil {
			return nil, fmt.Errorf("parse prevResult: %w", err)
		}
	}
	return conf, nil
}

// attachmentName is the protection's name for an attachment: the
// runtime's name of the container (K8S_POD_NAME, which podman and CRI
// set) or "cni-" and the first 12 characters of CNI_CONTAINERID,
// followed by "-IFNAME" for an interface other than eth0 (a second
// network of the same container). A name rules cannot use
// (rules.ValidContainerName) is replaced by the id's.
func attachmentName(a *skel.CmdArgs) string {
	suffix := ""
	if a.IfName != "" && a.IfName != api.DefaultIface {
		suffix = "-" + a.IfName
	}
	if name := cniArg(a.Args, "K8S_POD_NAME") + suffix; rules.ValidContainerName(name) {
		return name
	}
	id := a.ContainerID
	if len(id) > idLen {
		id = id[:idLen]
	}
	return "cni-" + id + suffix
}

// cniArg returns key's value in CNI_ARGS (KEY=VALUE;KEY=VALUE).
func cniArg(args, key string) string {
	for kv := range strings.SplitSeq(args, ";") {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// cmdAdd puts the attachment's interface inline and writes the previous
// result to stdout unchanged.
func cmdAdd(a *skel.CmdArgs, stdout, log io.Writer) error {
	conf, err := parse(a.StdinData, true)
	if err != nil {
		return err
	}
	name := attachmentName(a)
	if a.Netns == "" {
		return fmt.Errorf("%s: no CNI_NETNS", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), addTimeout)
	defer cancel()
	req := api.ProtectRequest{Target: a.Netns, Iface: a.IfName, Mode: conf.Mode, FailClosed: conf.failClosed(), Name: name,
		CNIContainerID: a.ContainerID}
	var st api.PortStatus
	if err := api.NewClient(conf.Socket).Do(ctx, http.MethodPost, "/v1/ports", nil, req, &st); err != nil {
		err = fmt.Errorf("put %s (%s %s) inline: %w", name, a.Netns, a.IfName, err)
		if conf.failClosed() {
			return err
		}
		fmt.Fprintf(log, "%s: failClosed false: container %s starts UNPROTECTED: %v\n", Type, a.ContainerID, err)
	}
	res, err := conf.PrevResult.GetAsVersion(conf.CNIVersion)
	if err != nil {
		return fmt.Errorf("prevResult as version %s: %w", conf.CNIVersion, err)
	}
	return res.PrintTo(stdout)
}

// cmdDel releases the attachment. DEL always succeeds (the runtime could
// not remove the container otherwise): something the agent does not know
// is released already; what it could not release now (no agent, or a
// refusal, logged) it releases by itself once the namespace is gone.
func cmdDel(a *skel.CmdArgs, log io.Writer) error {
	conf, err := parse(a.StdinData, false)
	if err != nil {
		return err
	}
	name := attachmentName(a)
	ctx, cancel := context.WithTimeout(context.Background(), delTimeout)
	defer cancel()
	err = api.NewClient(conf.Socket).Do(ctx, http.MethodDelete, "/v1/ports/"+url.PathEscape(name), nil, nil, nil)
	if ce := (*api.CallError)(nil); err == nil || errors.As(err, &ce) && ce.Status == http.StatusNotFound {
		return nil
	}
	fmt.Fprintf(log, "%s: release %s: %v (the agent releases it once the namespace is gone)\n", Type, name, err)
	return nil
}

// cmdStatus (spec 1.1) reports whether ADD can succeed: the agent answers,
// or failClosed is false.
func cmdStatus(a *skel.CmdArgs) error {
	conf, err := parse(a.StdinData, false)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	defer cancel()
	if _, err := api.NewClient(conf.Socket).Status(ctx); err != nil && conf.failClosed() {
		return types.NewError(errPluginNotAvailable, "deepwall agent not available", err.Error())
	}
	return nil
}

// cmdCheck fails unless the agent has the attachment inline (state running,
// on this interface). With no agent and failClosed false it succeeds, as
// ADD did.
func cmdCheck(a *skel.CmdArgs) error {
	conf, err := parse(a.StdinData, true)
	if err != nil {
		return err
	}
	name := attachmentName(a)
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	defer cancel()
	var pl api.PortList
	if err := api.NewClient(conf.Socket).Do(ctx, http.MethodGet, "/v1/ports", nil, nil, &pl); err != nil {
		var ce *api.CallError
		if !conf.failClosed() && !errors.As(err, &ce) {
			return nil
		}
		return fmt.Errorf("check %s: %w", name, err)
	}
	for _, p := range pl.Ports {
		if p.Name != name {
			continue
		}
		if p.State != "running" || p.Iface != a.IfName {
			return fmt.Errorf("%s: %w: state %s, interface %s %s", name, errNotInline, p.State, p.Iface, p.Reason)
		}
		return nil
	}
	return fmt.Errorf("%s: %w: the agent at %s does not protect it", name, errNotInline, conf.Socket)
}
