package k8s

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing/fstest"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/ctl/eve"
	"github.com/deepwall/deepwall/ctl/k8s/apis/deepwall/v1alpha1"
	"github.com/deepwall/deepwall/rules"
)

// Kinds of policy, as the status and the logs name them.
const (
	kindPolicy        = "deepwallpolicy"
	kindClusterPolicy = "clusterdeepwallpolicy"
)

// File names of the node's rule set as the controller sends it (PUT
// /v1/rules): the top-level file includes the default pack and each
// policy's rules, so rule errors name the policy's file.
const (
	mainRulesFile    = "kubernetes.yaml"
	defaultRulesFile = "default.yaml"
)

// maxNameLen is the longest protection name rules accept
// (rules.ValidContainerName); longer NAMESPACE.POD names are cut and end
// in a hash of the whole.
const maxNameLen = 128

var everything = labels.Everything()

// errIngress refuses a policy with an ingress ACL: the schema has it, this
// agent does not enforce it yet (the kernel ACL judges each direction
// without connection state, so a default deny in would also drop the
// replies to the pod's own connections).
var errIngress = errors.New("spec.ingress: not enforced by this agent version; remove it (rules with src/dst and container:NAMESPACE.POD express an ACL)")

// policy is a DeepwallPolicy or a ClusterDeepwallPolicy as the pass sees it.
type policy struct {
	kind, namespace, name, uid string
	generation                 int64
	spec                       v1alpha1.PolicySpec
	nsSelector                 *metav1.LabelSelector // cluster policies only
	status                     v1alpha1.PolicyStatus
}

func (p *policy) String() string {
	if p.namespace == "" {
		return p.kind + "/" + p.name
	}
	return p.kind + "/" + p.namespace + "/" + p.name
}

// rulesFile is the policy's file in the node's rule set.
func (p *policy) rulesFile() string {
	if p.namespace == "" {
		return "clusterdeepwallpolicy/" + p.name + ".yaml"
	}
	return "deepwallpolicy/" + p.namespace + "/" + p.name + ".yaml"
}

// accepted is a policy's last valid form: what the node enforces for it.
// An invalid change leaves the node enforcing the form before it.
type accepted struct {
	generation int64
	spec       v1alpha1.PolicySpec
	nsSelector *metav1.LabelSelector
	rules      string
}

// nodeState is what the controller remembers between passes.
type nodeState struct {
	accepted map[string]accepted // by policy uid
	// rulesDigest is the digest of the rule set last sent to the agent,
	// result its answer.
	rulesDigest string
	result      api.ChangeResult
	// reported is the key of the last Event written per policy uid
	// (policyEvent).
	reported map[string]string
}

// want is a pod's protection as the policies that select it ask for it.
type want struct {
	pod        string // NAMESPACE/NAME
	k8s        *eve.K8s
	target     string // RUNTIME:REF
	id         string // the container id in Target
	mode       string
	failClosed bool
	iface      string
	policies   []string // uids
}

// modeRank orders modes: the strongest of the selecting policies wins.
var modeRank = map[string]int{v1alpha1.ModeDiscover: 1, v1alpha1.ModeMonitor: 2, v1alpha1.ModeProtect: 3}

// ProtectionName is the name a pod is protected under, and the NAME of
// container:NAME in rules: NAMESPACE.POD (a namespace has no dots, so it
// is unambiguous), cut to 128 bytes with a hash of the whole when longer.
func ProtectionName(namespace, pod string) string {
	n := namespace + "." + pod
	if len(n) <= maxNameLen {
		return n
	}
	sum := sha256.Sum256([]byte(n))
	return n[:maxNameLen-13] + "-" + hex.EncodeToString(sum[:6])
}

// podTarget is how the agent finds a pod's network namespace: through
// the runtime that runs its containers (all of them share the pod
// sandbox's namespace), named by the kubelet's containerID. containerd's
// CRI runs them in its k8s.io namespace.
func podTarget(pod *corev1.Pod) (target, id string, ok bool) {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.State.Running == nil || cs.ContainerID == "" {
			continue
		}
		rt, cid, found := strings.Cut(cs.ContainerID, "://")
		if !found || cid == "" {
			continue
		}
		switch rt {
		case "containerd":
			return "containerd:k8s.io/" + cid, cid, true
		case "docker":
			return "docker:" + cid, cid, true
		}
	}
	return "", "", false
}

// ours reports whether the controller made a protection: those carry
// their pod (ProtectRequest.K8s). The controller releases those no
// policy selects; protections made otherwise (by hand, deepwall-cni, a
// selector) are left alone.
func ours(p api.PortStatus) bool { return p.K8s != nil }

// podRef is the pod as EVE events name it: its labels, at most
// api.MaxK8sLabels of them (the first in key order).
func podRef(pod *corev1.Pod) *eve.K8s {
	ref := &eve.K8s{Namespace: pod.Namespace, Pod: pod.Name}
	keys := make([]string, 0, len(pod.Labels))
	for k := range pod.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		if i == api.MaxK8sLabels {
			break
		}
		if ref.Labels == nil {
			ref.Labels = map[string]string{}
		}
		ref.Labels[k] = pod.Labels[k]
	}
	return ref
}

// selects reports whether the accepted form of a policy selects a pod.
func selects(a accepted, namespace string, nsLabels map[string]string, pod *corev1.Pod) bool {
	if a.nsSelector == nil {
		if namespace != pod.Namespace {
			return false
		}
	} else {
		sel, err := metav1.LabelSelectorAsSelector(a.nsSelector)
		if err != nil || !sel.Matches(labels.Set(nsLabels)) {
			return false
		}
	}
	sel, err := metav1.LabelSelectorAsSelector(&a.spec.PodSelector)
	return err == nil && sel.Matches(labels.Set(pod.Labels))
}

// buildRules composes the node's rule set: the default pack, then each
// policy's rules in the order given. It returns the request and, per
// policy uid, why its rules were refused; a refused policy is left out
// (its previously accepted rules, if any, are used by the caller).
func buildRules(order []*policy, text map[string]string) (api.RulesRequest, map[string]error) {
	req := api.RulesRequest{Main: mainRulesFile, Files: map[string]string{defaultRulesFile: string(rules.DefaultPackYAML())},
		Comment: "kubernetes policies"}
	includes := []string{defaultRulesFile}
	refused := map[string]error{}
	main := func(inc []string) string {
		var b strings.Builder
		b.WriteString("include:\n")
		for _, f := range inc {
			fmt.Fprintf(&b, "  - %q\n", f)
		}
		return b.String()
	}
	for _, p := range order {
		t, ok := text[p.uid]
		if !ok || strings.TrimSpace(t) == "" {
			continue
		}
		f := p.rulesFile()
		trial := fstest.MapFS{}
		for name, data := range req.Files {
			trial[name] = &fstest.MapFile{Data: []byte(data)}
		}
		trial[f] = &fstest.MapFile{Data: []byte(t)}
		inc := append(slices.Clone(includes), f)
		trial[mainRulesFile] = &fstest.MapFile{Data: []byte(main(inc))}
		if _, err := rules.ParseFS(trial, mainRulesFile); err != nil {
			refused[p.uid] = err
			continue
		}
		req.Files[f] = t
		includes = inc
	}
	req.Files[mainRulesFile] = main(includes)
	return req, refused
}

// digest identifies a rule request's content.
func digest(req api.RulesRequest) string {
	h := sha256.New()
	names := make([]string, 0, len(req.Files))
	for n := range req.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(h, "%d:%s%d:%s", len(n), n, len(req.Files[n]), req.Files[n])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// reconcile makes the agent enforce what the policies ask for on this
// node's pods, and reports each policy's state in its status.
func (c *Controller) reconcile(ctx context.Context) error {
	if c.node.accepted == nil {
		c.node.accepted = map[string]accepted{}
	}
	if c.node.reported == nil {
		c.node.reported = map[string]string{}
	}
	pols, err := c.listPolicies()
	if err != nil {
		return err
	}
	sort.Slice(pols, func(i, j int) bool { return pols[i].String() < pols[j].String() })

	// 1. Which form of each policy holds: its rules must parse with the
	// rest of the set, else the form accepted before it stays.
	invalid := map[string]error{}
	text := map[string]string{}
	live := map[string]bool{}
	for _, p := range pols {
		live[p.uid] = true
		if p.spec.Ingress != nil {
			invalid[p.uid] = errIngress
			continue
		}
		t := ""
		if r := p.spec.Rules; r != nil {
			if r.ConfigMapRef != nil {
				t, err = c.configMapRules(ctx, p)
				if err != nil {
					invalid[p.uid] = err
					continue
				}
			} else {
				t = r.Inline
			}
		}
		text[p.uid] = t
	}
	req, refused := buildRules(pols, text)
	for uid, err := range refused {
		invalid[uid] = err
	}
	for _, p := range pols {
		if _, bad := invalid[p.uid]; bad {
			continue
		}
		c.node.accepted[p.uid] = accepted{generation: p.generation, spec: p.spec, nsSelector: p.nsSelector, rules: text[p.uid]}
	}
	maps.DeleteFunc(c.node.accepted, func(uid string, _ accepted) bool { return !live[uid] })
	maps.DeleteFunc(c.node.reported, func(uid string, _ string) bool { return !live[uid] })
	// The set actually sent: each policy's accepted rules (an invalid
	// policy's previous ones). With no invalid policy that is req.
	if len(invalid) > 0 {
		acc := map[string]string{}
		for _, p := range pols {
			if a, ok := c.node.accepted[p.uid]; ok {
				acc[p.uid] = a.rules
			}
		}
		req, _ = buildRules(pols, acc)
	}

	// 2. The rule set.
	var rulesErr error
	if d := digest(req); d != c.node.rulesDigest {
		var res api.ChangeResult
		if err := c.cfg.Agent.Do(ctx, http.MethodPut, "/v1/rules", nil, req, &res); err != nil {
			rulesErr = fmt.Errorf("rules: %w", err)
		} else {
			c.node.rulesDigest, c.node.result = d, res
			c.cfg.Logger.Info("kubernetes: rule set applied", "node", c.cfg.Node, "version", res.ToVersion, "changed", res.Changed, "rules", res.Rules)
		}
	}

	// 3. The pods.
	pods, err := c.podsOfNode()
	if err != nil {
		return err
	}
	wants := map[string]*want{}
	for _, pod := range pods {
		if pod.DeletionTimestamp != nil || pod.Status.Phase != corev1.PodRunning || pod.Spec.HostNetwork {
			continue
		}
		target, id, ok := podTarget(pod)
		if !ok {
			continue
		}
		nsl := c.namespaceLabels(pod.Namespace)
		for _, p := range pols {
			a, ok := c.node.accepted[p.uid]
			if !ok || !selects(a, p.namespace, nsl, pod) {
				continue
			}
			name := ProtectionName(pod.Namespace, pod.Name)
			w := wants[name]
			if w == nil {
				w = &want{pod: pod.Namespace + "/" + pod.Name, target: target, id: id, iface: a.spec.Interface,
					k8s: podRef(pod)}
				wants[name] = w
			}
			mode := a.spec.Mode
			if mode == "" {
				mode = v1alpha1.ModeProtect
			}
			if modeRank[mode] > modeRank[w.mode] {
				w.mode = mode
			}
			w.failClosed = w.failClosed || a.spec.FailPolicy == v1alpha1.FailClosed
			if w.iface == "" {
				w.iface = api.DefaultIface
			}
			w.policies = append(w.policies, p.uid)
		}
	}
	var ports api.PortList
	if err := c.cfg.Agent.Do(ctx, http.MethodGet, "/v1/ports", nil, nil, &ports); err != nil {
		return fmt.Errorf("ports: %w", err)
	}
	have := map[string]api.PortStatus{}
	for _, p := range ports.Ports {
		have[p.Name] = p
	}
	protectErr := map[string]error{} // by policy uid
	protected := map[string][]string{}
	names := make([]string, 0, len(wants))
	for n := range wants {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		w := wants[name]
		cur, ok := have[name]
		if ok && cur.ContainerID != "" && cur.ContainerID != w.id {
			// The pod was made again under its name: the old protection
			// follows a container that is gone.
			if err := c.unprotect(ctx, name); err != nil {
				c.recordProtectErr(protectErr, w, err)
				continue
			}
			ok = false
		}
		if !ok || cur.Mode != w.mode || cur.State == "failed" {
			var st api.PortStatus
			r := api.ProtectRequest{Target: w.target, Iface: w.iface, Mode: w.mode, FailClosed: w.failClosed, Name: name, K8s: w.k8s}
			if err := c.cfg.Agent.Do(ctx, http.MethodPost, "/v1/ports", nil, r, &st); err != nil {
				c.recordProtectErr(protectErr, w, fmt.Errorf("protect pod %s (%s): %w", w.pod, w.target, err))
				continue
			}
			c.cfg.Logger.Info("kubernetes: pod protected", "node", c.cfg.Node, "pod", w.pod, "name", name, "mode", w.mode, "changed", st.Changed)
		}
		for _, uid := range w.policies {
			protected[uid] = append(protected[uid], w.pod)
		}
	}
	var errs []error
	for _, p := range ports.Ports {
		if _, keep := wants[p.Name]; keep || !ours(p) {
			continue
		}
		if err := c.unprotect(ctx, p.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		c.cfg.Logger.Info("kubernetes: pod released", "node", c.cfg.Node, "name", p.Name)
	}

	// 4. Each policy's status entry for this node, and its Event once
	// the entry is written.
	for _, p := range pols {
		st := c.nodeStatus(p, invalid[p.uid], rulesErr, protectErr[p.uid], protected[p.uid])
		if !c.statusCurrent(p, &st) {
			if err := c.applyStatus(ctx, p, st); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		c.reportPolicy(p, st)
	}
	if rulesErr != nil {
		errs = append(errs, rulesErr)
	}
	return errors.Join(errs...)
}

func (c *Controller) recordProtectErr(m map[string]error, w *want, err error) {
	c.cfg.Logger.Warn("kubernetes: protect", "node", c.cfg.Node, "pod", w.pod, "err", err)
	for _, uid := range w.policies {
		m[uid] = errors.Join(m[uid], err)
	}
}

// unprotect releases a protection; one already gone is released.
func (c *Controller) unprotect(ctx context.Context, name string) error {
	err := c.cfg.Agent.Do(ctx, http.MethodDelete, "/v1/ports/"+url.PathEscape(name), nil, nil, nil)
	var ce *api.CallError
	if errors.As(err, &ce) && ce.Status == http.StatusNotFound {
		return nil
	}
	if err != nil {
		return fmt.Errorf("unprotect %s: %w", name, err)
	}
	return nil
}

// maxMessage bounds a condition's message (the API server refuses more
// than 32 KiB).
const maxMessage = 4096

// nodeStatus is this node's status entry for a policy.
func (c *Controller) nodeStatus(p *policy, invalid, rulesErr, protectErr error, pods []string) v1alpha1.NodeStatus {
	sort.Strings(pods)
	st := v1alpha1.NodeStatus{Node: c.cfg.Node, ObservedGeneration: p.generation, Pods: pods,
		RulesVersion: int64(c.node.result.ToVersion), RulesHash: shortHash(c.node.result.Hash)}
	cond := metav1.Condition{Type: v1alpha1.ConditionApplied, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonApplied,
		ObservedGeneration: p.generation}
	switch {
	case invalid != nil:
		cond.Status, cond.Reason = metav1.ConditionFalse, v1alpha1.ReasonInvalidRules
		msg := "refused, nothing changed: " + invalid.Error()
		if a, ok := c.node.accepted[p.uid]; ok {
			msg = fmt.Sprintf("refused, generation %d still enforced: %s", a.generation, invalid.Error())
		}
		cond.Message = msg
	case rulesErr != nil:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, v1alpha1.ReasonRulesError, rulesErr.Error()
	case protectErr != nil:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, v1alpha1.ReasonProtectError, protectErr.Error()
	default:
		cond.Message = fmt.Sprintf("%d pods protected, rule set version %d", len(pods), c.node.result.ToVersion)
	}
	cond.Message = cut(cond.Message, maxMessage)
	st.Conditions = []metav1.Condition{cond}
	return st
}

// statusCurrent reports whether the policy's status already has st (the
// transition time kept when the condition's status is unchanged, so
// that an unchanged entry is not written again).
func (c *Controller) statusCurrent(p *policy, st *v1alpha1.NodeStatus) bool {
	var old *v1alpha1.NodeStatus
	for i := range p.status.Nodes {
		if p.status.Nodes[i].Node == c.cfg.Node {
			old = &p.status.Nodes[i]
		}
	}
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	for i := range st.Conditions {
		st.Conditions[i].LastTransitionTime = now
		if old == nil {
			continue
		}
		if prev := meta.FindStatusCondition(old.Conditions, st.Conditions[i].Type); prev != nil && prev.Status == st.Conditions[i].Status {
			st.Conditions[i].LastTransitionTime = prev.LastTransitionTime
		}
	}
	return old != nil && equality.Semantic.DeepEqual(*old, *st)
}

// shortHash is the first 12 hex digits of a rule-set hash, as `deepwall
// rules history` shows it.
func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
