// Package k8s owns deepwall's Kubernetes controller: the per-node loop a
// `deepwall run --kubernetes` agent runs beside its API. It watches the
// DeepwallPolicy and ClusterDeepwallPolicy resources (apis/deepwall/v1alpha1),
// the pods scheduled to its node (field selector spec.nodeName) and the
// namespaces, and drives the agent through its own API socket (ctl/api):
// each selected pod protected under the name NAMESPACE.POD through the
// runtime that runs it (Pod status containerID, resolved by ctl/resolve),
// the node's rule set made of the default pack and the policies' rules,
// and each policy's per-node status entry written by server-side apply.
//
// It is built on client-go's informers and a work queue rather than
// controller-runtime: the work is one level-triggered reconcile of the
// whole node (every event enqueues the same key), which needs no manager,
// cache machinery or leader election, and keeps the dependency set to
// client-go.
package k8s
