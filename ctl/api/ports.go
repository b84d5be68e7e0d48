package api

import (
	"time"

	"github.com/deepwall/deepwall/ctl/eve"
)

// Protection modes of a protected container (NeuVector's names). They are
// not the dataplane mode of `deepwall run` (XDP or NFQUEUE).
const (
	// ModeDiscover learns the container's flows into proposed allow rules
	// and blocks nothing (would-block alerts are logged as in monitor).
	ModeDiscover = "discover"
	// ModeMonitor evaluates every rule and logs what it would block
	// (alert.action "allowed", alert.deepwall.would_block true) without blocking.
	ModeMonitor = "monitor"
	// ModeProtect enforces.
	ModeProtect = "protect"
)

// ProtectionModes lists the protection modes.
var ProtectionModes = []string{ModeDiscover, ModeMonitor, ModeProtect}

// DefaultIface is the container interface a ProtectRequest names when
// it names none.
const DefaultIface = "eth0"

// ProtectRequest is the body of POST /v1/ports: protect a container, or
// change the protection mode of one already protected.
type ProtectRequest struct {
	Target     string `json:"target"`
	Iface      string `json:"iface,omitempty"` // default eth0
	Mode       string `json:"mode,omitempty"`  // default protect
	FailClosed bool   `json:"fail_closed,omitempty"`
	// Name overrides the container's name in rules (container:NAME).
	Name string `json:"name,omitempty"`
	// CNIContainerID is set by deepwall-cni (CNI_CONTAINERID): the
	// target is the namespace of a container being created, whose
	// process does not run yet; the protection's kind is "cni" and,
	// when no runtime knows the namespace, this is its container id.
	CNIContainerID string `json:"cni_container_id,omitempty"`
	// K8s is the pod, set by a --kubernetes agent's controller; events
	// of the protection carry it (EVE k8s). At most MaxK8sLabels labels.
	K8s *eve.K8s `json:"k8s,omitempty"`
}

// MaxK8sLabels bounds a ProtectRequest's pod labels (Kubernetes allows
// more; EVE events carry them all, so they are kept few).
const MaxK8sLabels = 64

// PortStatus is one protected container.
type PortStatus struct {
	Name   string `json:"name"`
	Target string `json:"target"`
	Kind   string `json:"kind"`
	// Runtime, ContainerID and Image are the container as its runtime
	// knows it ("" for a namespace no runtime runs).
	Runtime     string `json:"runtime,omitempty"`
	ContainerID string `json:"container_id,omitempty"`
	Image       string `json:"image,omitempty"`
	// Labels are the container's labels as its runtime reported them.
	Labels map[string]string `json:"labels,omitempty"`
	Iface  string            `json:"iface"`
	Inner  string            `json:"inner"`
	Outer  string            `json:"outer"`
	Place  string            `json:"place"`
	Wiring string            `json:"wiring"` // "bridge NAME" or "routed"
	Mode   string            `json:"mode"`
	// Dataplane is the packet path: xdp, or nfqueue (a joint bridge
	// between the ports, iptables NFQUEUE on it).
	Dataplane  string    `json:"dataplane,omitempty"`
	FailClosed bool      `json:"fail_closed"`
	Addrs      []string  `json:"addrs"`
	Since      time.Time `json:"since"`
	// State is running or stopped (protected); for a protection that
	// follows its container (Follows) while the container is not
	// protected: pending (not running) or failed (Reason says why); for
	// a selector: policy.
	State   string `json:"state"`
	Reason  string `json:"reason,omitempty"`
	Follows bool   `json:"follows,omitempty"`
	// Policy is the selector that protects the container; a selector
	// itself is listed with Kind "selector", State "policy" and its
	// Members (names).
	Policy   string    `json:"policy,omitempty"`
	Members  []string  `json:"members,omitempty"`
	Counters PortCount `json:"counters"`
	// Changed says what a protect call did: "protected", "mode" (changed)
	// or "" (nothing to do).
	Changed string `json:"changed,omitempty"`

	// K8s is the pod (a --kubernetes agent's protection).
	K8s *eve.K8s `json:"k8s,omitempty"`
}

// PortCount is a protected container's traffic counters.
type PortCount struct {
	Inspected uint64 `json:"inspected"`
	Forwarded uint64 `json:"forwarded"`
	Dropped   uint64 `json:"dropped"`
	FastAllow uint64 `json:"fast_path_allowed"`
	FastDrop  uint64 `json:"fast_path_dropped"`
	ACLDrop   uint64 `json:"acl_dropped"`
	ToUser    uint64 `json:"to_user_space"`
}

// PortList is the answer of GET /v1/ports.
type PortList struct {
	Ports []PortStatus `json:"ports"`
}

// LearnedRule is one flow learned in discover mode, proposed as an allow
// rule.
type LearnedRule struct {
	ID        uint32    `json:"id"` // the rule id promote gives it
	Container string    `json:"container"`
	Direction string    `json:"direction"` // "in": the peer connects to the container; "out": the container connects
	Peer      string    `json:"peer"`
	Proto     string    `json:"proto"`
	Port      uint16    `json:"port"` // server port
	App       string    `json:"app,omitempty"`
	Flows     uint64    `json:"flows"`
	First     time.Time `json:"first"`
	Last      time.Time `json:"last"`
	Promoted  bool      `json:"promoted"`
}

// LearnedList is the answer of GET /v1/rules/learned.
type LearnedList struct {
	Rules []LearnedRule `json:"rules"`
}

// PromoteRequest is the body of POST /v1/rules/promote.
type PromoteRequest struct {
	IDs     []uint32 `json:"ids,omitempty"`
	All     bool     `json:"all,omitempty"`
	Comment string   `json:"comment,omitempty"`
}
