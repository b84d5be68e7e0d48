package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Group and Version name the API.
const (
	Group   = "deepwall.io"
	Version = "v1alpha1"
)

// Resources of the API (plural, as in URLs and RBAC rules).
var (
	PolicyResource        = schema.GroupVersionResource{Group: Group, Version: Version, Resource: "deepwallpolicies"}
	ClusterPolicyResource = schema.GroupVersionResource{Group: Group, Version: Version, Resource: "clusterdeepwallpolicies"}
)

// Protection modes and fail policies, as `deepwall protect` has them.
const (
	ModeDiscover = "discover"
	ModeMonitor  = "monitor"
	ModeProtect  = "protect"

	FailOpen   = "open"
	FailClosed = "closed"
)

// Condition types and reasons of a node's status entry.
const (
	// ConditionApplied is True when the node enforces the policy's
	// current generation.
	ConditionApplied = "Applied"

	ReasonApplied      = "Applied"
	ReasonInvalidRules = "InvalidRules"
	ReasonProtectError = "ProtectError"
	ReasonRulesError   = "RulesError"
)

// DeepwallPolicy puts deepwall in front of the pods its selector matches
// in its namespace, with a protection mode, a fail policy, rules in
// deepwall's rule language and an ACL in Kubernetes terms.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=dwp,categories=deepwall
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.mode`
// +kubebuilder:printcolumn:name="Fail",type=string,JSONPath=`.spec.failPolicy`
// +kubebuilder:printcolumn:name="Nodes",type=string,JSONPath=`.status.nodes[*].node`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type DeepwallPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   PolicySpec   `json:"spec"`
	Status PolicyStatus `json:"status,omitempty"`
}

// DeepwallPolicyList is a list of DeepwallPolicy.
//
// +kubebuilder:object:root=true
type DeepwallPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DeepwallPolicy `json:"items"`
}

// ClusterDeepwallPolicy is a DeepwallPolicy for pods of every namespace
// its namespace selector matches.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=cdwp,categories=deepwall
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.mode`
// +kubebuilder:printcolumn:name="Fail",type=string,JSONPath=`.spec.failPolicy`
// +kubebuilder:printcolumn:name="Nodes",type=string,JSONPath=`.status.nodes[*].node`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterDeepwallPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ClusterPolicySpec `json:"spec"`
	Status PolicyStatus      `json:"status,omitempty"`
}

// ClusterDeepwallPolicyList is a list of ClusterDeepwallPolicy.
//
// +kubebuilder:object:root=true
type ClusterDeepwallPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterDeepwallPolicy `json:"items"`
}

// PolicySpec is what a DeepwallPolicy asks for.
type PolicySpec struct {
	// PodSelector selects the pods the policy protects; an empty selector
	// selects every pod (of the namespace, or of the selected namespaces).
	PodSelector metav1.LabelSelector `json:"podSelector"`

	// Mode is the protection mode: discover learns flows, monitor logs
	// what it would block, protect enforces. Where several policies
	// select a pod the strongest mode wins (protect > monitor > discover).
	//
	// +kubebuilder:validation:Enum=discover;monitor;protect
	// +kubebuilder:default=protect
	// +optional
	Mode string `json:"mode,omitempty"`

	// FailPolicy says what happens to a protected pod's traffic while no
	// agent inspects it: open lets it through, closed drops it. Closed
	// wins where several policies select a pod.
	//
	// +kubebuilder:validation:Enum=open;closed
	// +kubebuilder:default=open
	// +optional
	FailPolicy string `json:"failPolicy,omitempty"`

	// Interface is the pod's interface to put deepwall in front of.
	//
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9_.-]{1,15}$`
	// +kubebuilder:default=eth0
	// +optional
	Interface string `json:"interface,omitempty"`

	// Rules in deepwall's rule language (docs/rules.md), added to the
	// node's rule set while the policy exists.
	//
	// +optional
	Rules *Rules `json:"rules,omitempty"`

	// Ingress, when present, allows only the listed peers to connect to
	// the selected pods (and their replies); an empty list denies every
	// connection to them.
	//
	// +kubebuilder:validation:MaxItems=64
	// +optional
	Ingress []ACLRule `json:"ingress,omitempty"`
}

// ClusterPolicySpec is a PolicySpec with a namespace selector.
type ClusterPolicySpec struct {
	PolicySpec `json:",inline"`

	// NamespaceSelector selects the namespaces whose pods PodSelector
	// chooses from; an empty selector selects every namespace.
	NamespaceSelector metav1.LabelSelector `json:"namespaceSelector"`
}

// Rules are inline rule YAML or a key of a ConfigMap in the policy's
// namespace (a ClusterDeepwallPolicy: the agent's namespace).
//
// +kubebuilder:validation:XValidation:rule="has(self.inline) != has(self.configMapRef)",message="exactly one of inline and configMapRef"
type Rules struct {
	// Inline is a rule file: `rules:` and its list; `include` is refused.
	//
	// +kubebuilder:validation:MaxLength=1048576
	// +optional
	Inline string `json:"inline,omitempty"`

	// ConfigMapRef names the ConfigMap key that holds the rule file.
	//
	// +optional
	ConfigMapRef *ConfigMapKeyRef `json:"configMapRef,omitempty"`
}

// ConfigMapKeyRef names one key of a ConfigMap.
type ConfigMapKeyRef struct {
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// +kubebuilder:validation:MinLength=1
	Key string `json:"key"`
}

// ACLRule allows connections from peers to ports.
type ACLRule struct {
	// From lists the peers allowed; at least one.
	//
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	From []Peer `json:"from"`

	// Ports lists the destination ports; none means every port.
	//
	// +kubebuilder:validation:MaxItems=64
	// +optional
	Ports []Port `json:"ports,omitempty"`
}

// Peer is an address block.
type Peer struct {
	// CIDR is an IPv4 or IPv6 block, host bits zero.
	//
	// +kubebuilder:validation:XValidation:rule="isCIDR(self) && cidr(self) == cidr(self).masked()",message="a CIDR with its host bits zero"
	// +kubebuilder:validation:MaxLength=64
	CIDR string `json:"cidr"`
}

// Port is a protocol and a port or range.
//
// +kubebuilder:validation:XValidation:rule="!has(self.endPort) || (has(self.port) && self.endPort >= self.port)",message="endPort needs port and must not be below it"
type Port struct {
	// +kubebuilder:validation:Enum=TCP;UDP;SCTP
	// +kubebuilder:default=TCP
	// +optional
	Protocol string `json:"protocol,omitempty"`
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port int32 `json:"port,omitempty"`
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	EndPort int32 `json:"endPort,omitempty"`
}

// PolicyStatus is written by the agents, one entry per node.
type PolicyStatus struct {
	// Nodes has one entry per node whose agent acted on the policy. Each
	// agent applies its own entry (server-side apply, field manager
	// deepwall-agent/NODE): nodes never conflict.
	//
	// +listType=map
	// +listMapKey=node
	// +optional
	Nodes []NodeStatus `json:"nodes,omitempty"`
}

// NodeStatus is one node's view of a policy.
type NodeStatus struct {
	// Node is the node's name.
	Node string `json:"node"`
	// ObservedGeneration is the policy generation this entry is about.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// RulesVersion is the version of the node's rule set that carries
	// the policy (deepwall rules history).
	// +optional
	RulesVersion int64 `json:"rulesVersion,omitempty"`
	// RulesHash is that rule set's sha256 (hex, 12 characters).
	// +optional
	RulesHash string `json:"rulesHash,omitempty"`
	// Pods lists the node's pods the policy protects (NAMESPACE/NAME).
	// +optional
	Pods []string `json:"pods,omitempty"`
	// Conditions: Applied.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// SchemeGroupVersion is the API's group and version.
var SchemeGroupVersion = schema.GroupVersion{Group: Group, Version: Version}

// AddToScheme registers the API's types.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(SchemeGroupVersion,
		&DeepwallPolicy{}, &DeepwallPolicyList{},
		&ClusterDeepwallPolicy{}, &ClusterDeepwallPolicyList{})
	metav1.AddToGroupVersion(s, SchemeGroupVersion)
	return nil
}
