package ctl

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/deepwall/deepwall/ctl/api"
	"github.com/spf13/cobra"
)

func newProtectCommand() *cobra.Command {
	var sock, out, selector string
	var req api.ProtectRequest
	cmd := &cobra.Command{
		Use:   "protect TARGET | --selector SELECTOR",
		Short: "Put deepwall inline in front of a running container",
		Long: `protect puts the running agent in front of a container without restarting it
or changing its address. TARGET is a network namespace name (ip netns), a
namespace path (/proc/PID/ns/net, /var/run/netns/NAME), a PID, or a
container's name, id or unique id prefix: RUNTIME:REF with RUNTIME docker,
podman or containerd (containerd:[NAMESPACE/]ID), or bare when only one
runtime knows it. The agent asks Docker and podman through their API
sockets (deepwall run --docker-socket, --podman-socket) and reads
containerd's shim state. A container's name in rules (container:NAME) is its
runtime name, also when it is given by PID or namespace path, so that it
stays the same across restarts; --name overrides it.

--selector protects every running container the selector matches, and every
one that starts later, each under its runtime name, until unprotect
--selector: terms label:KEY=VALUE (or label:KEY), name:GLOB, image:GLOB,
runtime:docker|podman|containerd, comma-separated, all must match. A
container protected by name or id (not a namespace or a PID no runtime
runs) is followed too: protected again when it restarts or is re-created
under its name.

Refused, saying why and listing the container's interfaces: an unknown
RUNTIME, a name several runtimes or containers answer to (they are named),
and containers whose network cannot be put inline: network mode none, host,
slirp4netns or pasta (user-mode stacks with no veth), or another container's
namespace (protect that one).

The host side of the container's veth becomes deepwall's inner port; a new
veth pair dwo<N>/dwp<N> is created and dwp<N> takes the old veth's place: on
the same bridge with the same port settings, or with its routes, neighbour
entries, addresses and sysctls (routed setups such as Calico). The container
keeps eth0, its MAC and its IP; established connections survive. An agent in
NFQUEUE mode (no XDP) also joins the two ports with a bridge dwb<N> and
queues what crosses it.

--mode: protect (enforce, default), monitor (evaluate every rule, log what
would be blocked, block nothing) or discover (learn the container's flows
into proposed allow rules, block nothing). On a container already protected
(TARGET may then be its protected name), protect --mode changes its mode
without dropping traffic.`,
		Example: `  deepwall protect web
  deepwall protect docker:shop-db --mode monitor
  deepwall protect podman:3f4e5a6b          # podman, by id prefix
  deepwall protect --selector 'label:tier=web,runtime:podman' --mode monitor
  deepwall protect /proc/4242/ns/net --iface eth1 --name api --fail-closed
  deepwall protect web --mode protect      # change the mode of a protected container`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			target, err := targetOrSelector(args, selector)
			if err != nil {
				return err
			}
			req.Target = target
			var st api.PortStatus
			if err := api.NewClient(sock).Do(cmd.Context(), http.MethodPost, "/v1/ports", nil, &req, &st); err != nil {
				return err
			}
			if out == "json" {
				return printJSON(cmd.OutOrStdout(), st)
			}
			w := cmd.OutOrStdout()
			switch {
			case st.Kind == "selector":
				fmt.Fprintf(w, "%s: %s; mode %s\n", st.Name, st.Reason, st.Mode)
			case st.Changed == "protected":
				fmt.Fprintf(w, "protected %s (%s): %s inner %s, outer %s, %s in its place (%s); mode %s\n",
					st.Name, st.Target, st.Iface, st.Inner, st.Outer, st.Place, st.Wiring, st.Mode)
			case st.Changed == "mode":
				fmt.Fprintf(w, "%s: mode %s\n", st.Name, st.Mode)
			default:
				fmt.Fprintf(w, "%s: already protected, mode %s\n", st.Name, st.Mode)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Iface, "iface", api.DefaultIface, "the container's interface")
	f.StringVar(&req.Mode, "mode", api.ModeProtect, "protection mode: discover, monitor or protect")
	f.BoolVar(&req.FailClosed, "fail-closed", false, "while no agent runs, drop the container's uninspected traffic")
	f.StringVar(&req.Name, "name", "", "the container's name in rules (container:NAME); default from the target")
	f.StringVar(&selector, "selector", "", "protect every container, running or started later, that matches: label:KEY=VALUE, name:GLOB, image:GLOB, runtime:NAME (comma-separated, all must match)")
	socketFlag(cmd, &sock)
	outputFlag(cmd, &out)
	return cmd
}

// selectorTarget is the TARGET that names a selector.
const selectorTarget = "selector:"

// targetOrSelector is the TARGET of protect or unprotect: the argument,
// or selector:SELECTOR; one of them.
func targetOrSelector(args []string, selector string) (string, error) {
	switch {
	case len(args) == 1 && selector != "":
		return "", errors.New("give TARGET or --selector, not both")
	case len(args) == 1:
		return args[0], nil
	case selector != "":
		return selectorTarget + selector, nil
	}
	return "", errors.New("give TARGET or --selector")
}

func newUnprotectCommand() *cobra.Command {
	var sock, out, selector string
	cmd := &cobra.Command{
		Use:   "unprotect NAME|TARGET | --selector SELECTOR",
		Short: "Take deepwall out from in front of a container",
		Long: `unprotect puts the container's wiring back exactly as it was (bridge port and
its settings, routes, neighbour entries, addresses), detaches deepwall and
removes the veth pair it added. A container waiting to be protected again
(pending, failed) is forgotten. --selector removes a selector's protection
and unprotects the containers it protected (one of them cannot be
unprotected alone: its selector would take it back).`,
		Example: `  deepwall unprotect web
  deepwall unprotect --selector label:tier=web`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			target, err := targetOrSelector(args, selector)
			if err != nil {
				return err
			}
			var st api.PortStatus
			if err := api.NewClient(sock).Do(cmd.Context(), http.MethodDelete, "/v1/ports/"+url.PathEscape(target), nil, nil, &st); err != nil {
				return err
			}
			if out == "json" {
				return printJSON(cmd.OutOrStdout(), st)
			}
			if st.Kind == "selector" || st.Inner == "" {
				fmt.Fprintf(cmd.OutOrStdout(), "unprotected %s\n", st.Name)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "unprotected %s: %s back in place, %s and %s removed\n", st.Name, st.Inner, st.Outer, st.Place)
			return nil
		},
	}
	cmd.Flags().StringVar(&selector, "selector", "", "remove the protection by this selector (as given to protect --selector) and unprotect its containers")
	socketFlag(cmd, &sock)
	outputFlag(cmd, &out)
	return cmd
}

func newPortsCommand() *cobra.Command {
	var sock, out string
	cmd := &cobra.Command{
		Use:   "ports",
		Short: "List the protected containers",
		Long: `ports asks the running agent for the containers it protects: each one's
name and target, addresses, the inner and outer ports, how it is wired
(bridge or route), its mode (discover, monitor, protect) and fail policy,
its state, and its counters (frames inspected, fast-path allows and drops,
ACL drops) since it was put inline.

A container protected as a runtime's container (by name, id or pid of a
Docker, podman or containerd container) stays protected across its
restarts and re-creations under the same name: while it is not protected
again its state is pending (not running) or failed, with the reason
printed below the table.`,
		Example: `  deepwall ports -o json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(out); err != nil {
				return err
			}
			var list api.PortList
			if err := api.NewClient(sock).Do(cmd.Context(), http.MethodGet, "/v1/ports", nil, nil, &list); err != nil {
				return err
			}
			if out == "json" {
				return printJSON(cmd.OutOrStdout(), list)
			}
			printPorts(cmd.OutOrStdout(), list)
			return nil
		},
	}
	socketFlag(cmd, &sock)
	outputFlag(cmd, &out)
	return cmd
}

func printPorts(w io.Writer, list api.PortList) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTARGET\tADDRS\tINNER\tOUTER\tWIRING\tMODE\tFAIL\tSTATE\tINSPECTED\tFAST ALLOW/DROP\tACL DROP\tSINCE")
	for _, p := range list.Ports {
		fail := "open"
		if p.FailClosed {
			fail = "closed"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d/%d\t%d\t%s\n", p.Name, p.Target, strings.Join(p.Addrs, ","),
			p.Inner, p.Outer, p.Wiring, p.Mode, fail, p.State, p.Counters.Inspected, p.Counters.FastAllow, p.Counters.FastDrop,
			p.Counters.ACLDrop, p.Since.Local().Format(time.DateTime))
	}
	tw.Flush()
	for _, p := range list.Ports {
		if p.Reason != "" {
			fmt.Fprintf(w, "%s: %s: %s\n", p.Name, p.State, p.Reason)
		}
	}
}
