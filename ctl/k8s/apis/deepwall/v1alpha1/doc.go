// Package v1alpha1 owns deepwall's Kubernetes API: the DeepwallPolicy
// (namespaced) and ClusterDeepwallPolicy custom resources of group
// deepwall.io, their status, and the scheme they register in. The CRD
// manifests in deploy/kubernetes/crds are generated from these types by
// controller-gen (gen.go); edit the types and run `go generate`.
//
// +kubebuilder:object:generate=true
// +groupName=deepwall.io
package v1alpha1
