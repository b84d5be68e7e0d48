package ctl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/deepwall/deepwall/dataplane"

	"github.com/spf13/cobra"

	"github.com/deepwall/deepwall/ctl/agent"
	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/ctl/eve"
	"github.com/deepwall/deepwall/ctl/k8s"
	"github.com/deepwall/deepwall/ctl/resolve"
	"github.com/deepwall/deepwall/dataplane/probe"
	"github.com/deepwall/deepwall/dpi"
	"github.com/deepwall/deepwall/rules"
)

func newRunCommand() *cobra.Command {
	var cfg agent.Config
	var level string
	var noSandbox bool
	var syslogs, sockets []string
	var h2Block string
	var kube k8s.Config
	var kubernetes bool
	cmd := &cobra.Command{
		Use:   "run --inner IFACE --outer IFACE",
		Short: "Run the agent inline between two ports until SIGINT/SIGTERM",
		Long: `run puts deepwall inline between two interfaces: its tc programs on both
(XDP with --datapath xdp),
an AF_XDP socket on every queue, the DPI engine with the rule set, final
verdicts written back to the kernel's flow map. It serves the API on a unix
socket (deepwall status, flows, rules ...), writes the verdict log (EVE JSON)
and the audit log, and optionally Prometheus metrics.

Rules: --rules FILE replaces the stored rule set at start; without it the
stored set is used (the default pack when the store is empty). Every change
is a new version in the store (a bbolt file in --state), and survives
restarts.

On SIGINT or SIGTERM the agent detaches from both ports and removes its pins.
If it is killed (SIGKILL, crash) the XDP program stays: ports fail open
(forward uninspected traffic) or, with --fail-closed, drop it, until an agent
starts again and takes over the pinned flows. SIGHUP reopens the verdict log
(for logrotate) and reads --api-policy again (a file that does not parse
leaves the previous policy in force, with an error in the agent's log).

Once started, the agent drops every capability but CAP_NET_ADMIN,
CAP_NET_RAW, CAP_SYS_ADMIN, CAP_IPC_LOCK and CAP_SYS_PTRACE, sets no_new_privs and installs a
seccomp allow-list of the system calls it makes (other calls fail with
EPERM and are logged by the kernel); --no-sandbox leaves it as root with
every call allowed, for debugging.

Every problem found at start (missing interface, no native XDP, another agent
on a port, unwritable log, corrupt store or audit log) is one line on stderr
and exit status 1, with nothing left attached.

Containers: without --inner/--outer the agent starts with no ports and puts
itself in front of containers with deepwall protect. It finds them by name
or id through the runtimes' APIs: Docker at --docker-socket, podman at
--podman-socket (its API service: systemctl enable --now podman.socket, or
podman system service --time=0), containerd in --containerd-state (and
its image and labels at --containerd-socket). Their start events (and a
pass every second) protect again the containers protect follows. A
runtime that is not there is skipped.

Kubernetes: with --kubernetes the agent is its node's controller (run as a
DaemonSet, deploy/kubernetes): it watches the DeepwallPolicy and
ClusterDeepwallPolicy resources and the pods of --node-name, protects each
selected pod under the name NAMESPACE.POD through the runtime that runs it
(the pod's containerID: containerd in --containerd-state, or Docker), owns
the rule set (the default pack plus the policies' rules; rules changed by
hand are replaced when the policies change) and writes the node's entry
of each policy's status, with an Event on the policy when the node applies
or refuses it and a Warning Event (reason Blocked) on a pod when a flow of
it is blocked (bounded per pod and per node). --kubeconfig names the API
server; without it the pod's service account is used.`,
		Example: `  deepwall run --inner veth-app1 --outer veth-app1-br
  deepwall run --netns app1 --inner eth1 --outer eth2 --rules /etc/deepwall/rules.yaml --metrics 127.0.0.1:9464
  deepwall run --inner in0 --outer out0 --fail-closed --admin-group deepwall --viewer-group adm
  deepwall run --inner eth1 --outer eth2 --mode nfqueue   # no XDP: iptables NFQUEUE, same rules and events
  deepwall run --podman-socket /run/podman/podman.sock    # no ports: protect containers (deepwall protect podman:web)
  deepwall run --kubernetes --node-name node-1 --kubeconfig /etc/deepwall/kubeconfig`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var lv slog.Level
			if err := lv.UnmarshalText([]byte(level)); err != nil {
				return fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
			}
			cfg.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: lv}))
			var ok bool
			if cfg.H2Block, ok = dpi.ParseH2BlockPolicy(h2Block); !ok {
				return fmt.Errorf("--h2-block %q: want stream or connection", h2Block)
			}
			if cfg.RulesFile != "" {
				if _, err := os.Stat(cfg.RulesFile); err != nil {
					return fmt.Errorf("--rules: %w", err)
				}
			}
			for _, s := range syslogs {
				o, err := eve.ParseSyslog(s)
				if err != nil {
					return fmt.Errorf("--syslog: %w", err)
				}
				cfg.Outputs = append(cfg.Outputs, o)
			}
			for _, s := range sockets {
				o, err := eve.ParseSocket(s)
				if err != nil {
					return fmt.Errorf("--event-socket: %w", err)
				}
				cfg.Outputs = append(cfg.Outputs, o)
			}
			cfg.Version = Version
			var ctrl *k8s.Controller
			if kubernetes {
				// Before the sandbox: the kubeconfig and in-cluster
				// credentials are read now.
				kube.Agent, kube.Logger = api.NewClient(cfg.Socket), cfg.Logger
				c, err := k8s.New(kube)
				if err != nil {
					return err
				}
				ctrl = c
				cfg.EventTap = c.ObserveEvent
			}
			a, err := agent.Open(cfg)
			var list rules.ErrorList
			if errors.As(err, &list) {
				// As rules validate prints them: one problem per line.
				for _, e := range list {
					fmt.Fprintln(cmd.ErrOrStderr(), e.Error())
				}
				return fmt.Errorf("rule set invalid (%d %s); nothing started", len(list), plural(len(list), "problem"))
			}
			if err != nil {
				return err
			}
			if !noSandbox {
				if err := a.Sandbox(); err != nil {
					_ = a.Close()
					return err
				}
			}
			if ctrl == nil {
				return a.Run(cmd.Context())
			}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- ctrl.Run(ctx) }()
			err = a.Run(ctx)
			cancel()
			if cerr := <-done; err == nil && cerr != nil {
				err = fmt.Errorf("kubernetes: %w", cerr)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Inner, "inner", "", "the port facing the protected container (required)")
	f.StringVar(&cfg.Outer, "outer", "", "the port facing the bridge or host (required)")
	f.StringVar(&cfg.Backend, "mode", probe.BackendAuto, "dataplane: auto (XDP when the ports and kernel support it, else NFQUEUE), xdp, or nfqueue (iptables; set "+probe.HideXDPEnv+"=1 to make auto skip XDP, for tests)")
	f.StringVar((*string)(&cfg.DataPath), "datapath", string(dataplane.PathTC), "eBPF data path: tc (tc programs on the ports keep the containers' TSO and checksum offload; inspected traffic reaches user space through a shadow veth pair per port) or xdp (XDP on the ports: turns the ports' peers' TX checksum offload off)")
	f.StringVar(&cfg.NetNS, "netns", "", "network namespace of the ports: a name in /run/netns or a path (default: the agent's own)")
	f.StringVar(&cfg.RulesFile, "rules", "", "rule file that replaces the stored rule set at start")
	f.StringVar(&cfg.LogPath, "log", eve.DefaultPath, "verdict log (EVE JSON lines)")
	f.Int64Var(&cfg.LogMaxBytes, "log-max-size", eve.DefaultMaxBytes, "rotate the verdict log past this many bytes")
	f.IntVar(&cfg.LogKeep, "log-keep", eve.DefaultKeep, "rotated verdict logs kept")
	f.StringArrayVar(&syslogs, "syslog", nil, "also send every event to syslog as RFC 5424 (facility local5, the JSON as message): unix:///dev/log, udp://HOST:PORT or tcp://HOST:PORT (octet counting); repeatable. A slow or absent receiver never slows inspection: its events are dropped and counted (deepwall_output_events_total)")
	f.StringArrayVar(&sockets, "event-socket", nil, "also write every event as a JSON line to the unix stream socket another program listens on at this path (reconnected when it comes back); repeatable, dropped and counted like --syslog")
	f.Uint16Var(&cfg.CommunityIDSeed, "community-id-seed", 0, "seed of the events' Community ID (community_id); keep the default 0 unless every sensor whose events are joined uses the same other seed")
	f.StringVar(&cfg.AuditPath, "audit-log", "", "audit log of rule changes (default: audit.json beside --log)")
	f.StringVar(&cfg.Socket, "socket", api.DefaultSocket, "API socket")
	f.StringVar(&cfg.StateDir, "state", agent.DefaultStateDir, "state directory: rule store, compiled rules cache")
	f.BoolVar(&cfg.FailClosed, "fail-closed", false, "while no agent runs, drop uninspected traffic instead of forwarding it")
	f.IntVar(&cfg.Workers, "workers", 0, "DPI workers (default: one per CPU)")
	f.BoolVar(&cfg.NoIdentify, "no-identify", false, "identify the application protocol only of flows some rule may apply to (the others pass to the kernel fast path at their first packet, with no app_proto in their events); by default every flow is named")
	f.StringVar(&h2Block, "h2-block", "stream", "what a blocking rule on an HTTP/2 stream resets: stream (RST_STREAM to both peers, the connection's other streams go on; the connection when the stream's frames cannot be rewritten) or connection (TCP reset, as for HTTP/1)")
	f.StringVar(&cfg.MetricsAddr, "metrics", "", "serve Prometheus metrics on this address, e.g. 127.0.0.1:9464 (default off)")
	f.StringVar(&cfg.AdminGroup, "admin-group", "", "group (name or gid) allowed to change rules besides root")
	f.StringVar(&cfg.ViewerGroup, "viewer-group", "", "group (name or gid) allowed read-only API calls")
	f.StringVar(&cfg.APIPolicy, "api-policy", "", "per-command API authorisation file: lines \"allow|deny COMMANDS WHO...\", first match decides (default: --admin-group may do everything, --viewer-group read; docs/api.md)")
	f.StringVar(&cfg.DockerSocket, "docker-socket", resolve.Default.DockerSocket, "Docker's Engine API socket, where protect finds Docker containers by name or id")
	f.StringVar(&cfg.PodmanSocket, "podman-socket", resolve.Default.PodmanSocket, "podman's API socket (podman.socket or `podman system service`), where protect finds podman containers by name or id")
	f.StringVar(&cfg.ContainerdState, "containerd-state", resolve.Default.ContainerdState, "containerd's v2 shim state directory, where protect finds containerd containers by [NAMESPACE/]ID")
	f.StringVar(&cfg.ContainerdSocket, "containerd-socket", resolve.Default.ContainerdSocket, "containerd's API socket: its task start events, and its containers' images and labels")
	f.BoolVar(&kubernetes, "kubernetes", false, "be this node's Kubernetes agent: protect the node's pods the DeepwallPolicy and ClusterDeepwallPolicy resources select, own the rule set (default pack + the policies' rules), report per-node status (docs/kubernetes.md)")
	f.StringVar(&kube.Kubeconfig, "kubeconfig", "", "with --kubernetes: kubeconfig file (default: the pod's service account)")
	f.StringVar(&kube.Node, "node-name", os.Getenv("NODE_NAME"), "with --kubernetes: this node's name, as pods' spec.nodeName has it (default $NODE_NAME)")
	f.StringVar(&kube.Namespace, "kubernetes-namespace", envOr("POD_NAMESPACE", "deepwall"), "with --kubernetes: the namespace of the ConfigMaps ClusterDeepwallPolicy rules name (default $POD_NAMESPACE, else deepwall)")
	f.StringVar(&level, "log-level", "info", "agent log level on stderr: debug, info, warn, error")
	f.BoolVar(&noSandbox, "no-sandbox", false, "keep full root and allow every system call after start-up (debugging only: no capability drop, no seccomp filter)")
	f.StringVar(&cfg.RunDir, "run-dir", agent.DefaultRunDir, "runtime directory (port locks, port records)")
	f.StringVar(&cfg.BPFFS, "bpffs", "", "bpf filesystem for the pins (mounted when needed; default /sys/fs/bpf)")
	_ = f.MarkHidden("run-dir")
	_ = f.MarkHidden("bpffs")
	return cmd
}

// envOr is the environment variable's value, or def when it is unset.
func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}
