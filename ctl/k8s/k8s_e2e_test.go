package k8s_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/ctl/eve"
	"github.com/deepwall/deepwall/ctl/k8s"
	"github.com/deepwall/deepwall/ctl/k8s/apis/deepwall/v1alpha1"
	"github.com/deepwall/deepwall/internal/agenttest"
	"github.com/deepwall/deepwall/internal/kubetest"
	"github.com/deepwall/deepwall/internal/testctr"
	"github.com/deepwall/deepwall/internal/testnet"
)

func TestMain(m *testing.M) {
	code := m.Run()
	agenttest.Cleanup()
	os.Exit(code)
}

// agentUser is the DaemonSet's service account as RBAC sees it: the test
// binds deploy/kubernetes/rbac.yaml's role to it, so the agents run with
// exactly the permissions the manifests give.
var agentUser = kubetest.User{Name: "system:serviceaccount:deepwall:deepwall-agent", Groups: []string{"system:serviceaccounts"}}

// clientIP is the address of the pods' client.
var clientIP = netip.MustParseAddr("198.18.0.1")

// enforceTimeout bounds how long a change may take to reach every node.
const enforceTimeout = 90 * time.Second

// cluster is the test's cluster: a control plane, containerd running the
// pods (its k8s.io namespace, as CRI does), one agent per node.
type cluster struct {
	cp     *kubetest.ControlPlane
	kc     kubernetes.Interface
	dc     dynamic.Interface
	cd     *testctr.Containerd
	client *testnet.NS
	agents map[string]*agenttest.Agent
	pods   map[string]*pod
}

type pod struct {
	name, node string
	ip         netip.Addr
}

func (c *cluster) startAgent(t *testing.T, node string) {
	t.Helper()
	a := c.agents[node]
	a.Start(t, c.cd.Host.NS, "--workers", "1", "--kubernetes", "--kubeconfig", c.cp.Kubeconfig(t, agentUser), "--node-name", node,
		"--containerd-state", c.cd.State)
}

// TestPrivilegedKubernetes: a real API server and etcd, three agents as
// three nodes, six pods as real containerd containers on a bridge with
// Pod objects bound to the nodes; a DeepwallPolicy selects the app=web
// pods: attacks to them are blocked on every node and the others are
// untouched; relabelling moves pods in and out; an invalid change is
// refused in the status and changes nothing; a killed agent restarted
// reconciles to the same state; deleting the policy releases every pod.
func TestPrivilegedKubernetes(t *testing.T) {
	testnet.RequirePrivileged(t)
	kubetest.Bins(t)
	cd := testctr.NewContainerd(t)
	cd.Namespace = "k8s.io" // as containerd's CRI: the agents resolve containerd:k8s.io/ID
	cp := kubetest.Start(t, cd.Host.NS, agentUser)
	kc, dc := cp.Clients(t)
	cp.Apply(t, filepath.Join("..", "..", "deploy", "kubernetes", "namespace.yaml"), filepath.Join("..", "..", "deploy", "kubernetes", "rbac.yaml"))
	crds, _ := filepath.Glob(filepath.Join("..", "..", "deploy", "kubernetes", "crds", "*.yaml"))
	cp.Apply(t, crds...)

	c := &cluster{cp: cp, kc: kc, dc: dc, cd: cd, agents: map[string]*agenttest.Agent{}, pods: map[string]*pod{}}
	c.client = cd.Host.AddBridged(t, "client", clientIP).NS
	nodes := []string{"node-1", "node-2", "node-3"}
	ip := 10
	for _, node := range nodes {
		for _, app := range []string{"web", "db"} {
			name := fmt.Sprintf("%s-%s", app, node)
			ip++
			c.runPod(t, name, node, app, netip.AddrFrom4([4]byte{198, 18, 0, byte(ip)}))
		}
	}
	for _, p := range c.pods {
		waitAnswer(t, c.client, p.ip, benignPath, true)
	}
	t.Cleanup(func() { agenttest.RemovePins(t, cd.Host.NS) })
	for _, node := range nodes {
		c.agents[node] = agenttest.New(t.TempDir())
		c.startAgent(t, node)
	}

	// A policy: the web pods, protect, with a rule of its own.
	start := time.Now()
	c.apply(t, "web", map[string]any{
		"podSelector": map[string]any{"matchLabels": map[string]any{"app": "web"}},
		"mode":        "protect",
		"rules":       map[string]any{"inline": canaryRule},
	})
	c.waitProtected(t, []string{"web-node-1", "web-node-2", "web-node-3"})
	t.Logf("policy applied -> every web pod protected on 3 nodes: %v", time.Since(start).Round(time.Millisecond))
	st := c.waitStatus(t, "web", func(n v1alpha1.NodeStatus) bool {
		cond := meta.FindStatusCondition(n.Conditions, v1alpha1.ConditionApplied)
		return cond != nil && cond.Status == metav1.ConditionTrue && n.ObservedGeneration == 1 && len(n.Pods) == 1 && n.RulesVersion > 0
	})
	for _, n := range st.Nodes {
		t.Logf("status %s: rules version %d (%s), pods %v", n.Node, n.RulesVersion, n.RulesHash, n.Pods)
	}
	firstBlocks := time.Now()
	c.checkEnforced(t, []string{"web-node-1", "web-node-2", "web-node-3"})
	c.waitAlert(t, "node-2", eve.K8s{Namespace: "default", Pod: "web-node-2", Labels: map[string]string{"app": "web"}})
	// Events: the policy applied by every node; the blocks of a pod on
	// the pod, from its node, bounded however many there are.
	c.waitEvents(t, "DeepwallPolicy", "web", corev1.EventTypeNormal, v1alpha1.ReasonApplied, "generation 1 applied", nodes)
	canaryBlocked := fmt.Sprintf("rule 9400000 blocked tcp/http from %s to port %d: the policy's own rule", clientIP, testctr.HTTPPort)
	c.waitEvents(t, "Pod", "web-node-2", corev1.EventTypeWarning, k8s.ReasonBlocked, canaryBlocked, []string{"node-2"})
	c.checkBlockedBound(t, "web-node-1", firstBlocks)

	// Relabel: db-node-1 comes under the policy, web-node-2 leaves it.
	c.label(t, "db-node-1", "web")
	c.label(t, "web-node-2", "other")
	c.waitProtected(t, []string{"web-node-1", "db-node-1", "web-node-3"})
	c.checkEnforced(t, []string{"web-node-1", "db-node-1", "web-node-3"})

	// An invalid change: refused in every node's status, nothing changes.
	before := c.rulesVersions(t)
	c.apply(t, "web", map[string]any{
		"podSelector": map[string]any{"matchLabels": map[string]any{"app": "db"}},
		"mode":        "monitor",
		"rules":       map[string]any{"inline": "rules:\n  - {id: 9400001, action: blok}\n"},
	})
	st = c.waitStatus(t, "web", func(n v1alpha1.NodeStatus) bool {
		cond := meta.FindStatusCondition(n.Conditions, v1alpha1.ConditionApplied)
		return cond != nil && cond.Reason == v1alpha1.ReasonInvalidRules && n.ObservedGeneration == 2
	})
	t.Logf("invalid change refused: %s", meta.FindStatusCondition(st.Nodes[0].Conditions, v1alpha1.ConditionApplied).Message)
	c.waitEvents(t, "DeepwallPolicy", "web", corev1.EventTypeWarning, v1alpha1.ReasonInvalidRules, "deepwallpolicy/default/web.yaml:2:", nodes)
	if after := c.rulesVersions(t); !maps(before, after) {
		t.Errorf("rule set versions changed by an invalid policy: %v -> %v", before, after)
	}
	c.waitProtected(t, []string{"web-node-1", "db-node-1", "web-node-3"})
	c.checkEnforced(t, []string{"web-node-1", "db-node-1", "web-node-3"})
	// What the schema refuses never reaches the agents.
	err := c.applyErr("bad", map[string]any{"podSelector": map[string]any{}, "mode": "enforce"})
	if err == nil || !strings.Contains(err.Error(), "mode") {
		t.Errorf("mode enforce: %v, want refused by the schema", err)
	}
	err = c.applyErr("bad", map[string]any{"podSelector": map[string]any{},
		"ingress": []any{map[string]any{"from": []any{map[string]any{"cidr": "198.18.0.1/24"}}}}})
	if err == nil || !strings.Contains(err.Error(), "host bits") {
		t.Errorf("cidr 198.18.0.1/24: %v, want refused by the CEL rule", err)
	}
	// Back to a valid form.
	c.apply(t, "web", map[string]any{
		"podSelector": map[string]any{"matchLabels": map[string]any{"app": "web"}},
		"mode":        "protect",
		"rules":       map[string]any{"inline": canaryRule},
	})
	c.waitStatus(t, "web", func(n v1alpha1.NodeStatus) bool {
		cond := meta.FindStatusCondition(n.Conditions, v1alpha1.ConditionApplied)
		return cond != nil && cond.Status == metav1.ConditionTrue && n.ObservedGeneration == 3
	})

	// Kill one agent and start it again: it reconciles to the same state.
	c.agents["node-1"].Kill(t)
	c.startAgent(t, "node-1")
	c.waitProtected(t, []string{"web-node-1", "db-node-1", "web-node-3"})
	c.checkEnforced(t, []string{"web-node-1", "db-node-1", "web-node-3"})

	// Delete: every node releases.
	if err := dc.Resource(v1alpha1.PolicyResource).Namespace("default").Delete(context.Background(), "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	c.waitProtected(t, nil)
	for name, p := range c.pods {
		if !waitAnswer(t, c.client, p.ip, attackPath, true) {
			t.Errorf("%s: attack not answered after the policy was deleted", name)
		}
	}
}

// The HTTP requests of the checks: a SQL injection (the default pack),
// the policy's own rule, and a benign one.
const (
	attackPath = "/?id=1%20UNION%20SELECT%20password%20FROM%20users"
	canaryPath = "/deepwall-k8s-canary"
	benignPath = "/"
	canaryRule = "rules:\n  - {id: 9400000, name: the policy's own rule, action: block, match: {field: http.path, regex: deepwall-k8s-canary}}\n"
)

// runPod runs a containerd container (an httpd) in a namespace bridged
// with ip and makes its Pod object bound to node, Running, with the
// container's id as the kubelet reports it.
func (c *cluster) runPod(t *testing.T, name, node, app string, ip netip.Addr) {
	t.Helper()
	ct := c.cd.Run(t, name, ip)
	ctx := context.Background()
	p, err := c.kc.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": app}},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "httpd", Image: "localhost/deepwall-test:1"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip.String(), PodIPs: []corev1.PodIP{{IP: ip.String()}},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "httpd", Image: "localhost/deepwall-test:1", ImageID: "localhost/deepwall-test:1",
			ContainerID: "containerd://" + ct.ID, Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}}}}
	if _, err := c.kc.CoreV1().Pods("default").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.pods[name] = &pod{name: name, node: node, ip: ip}
}

func (c *cluster) label(t *testing.T, name, app string) {
	t.Helper()
	patch := fmt.Sprintf(`{"metadata":{"labels":{"app":%q}}}`, app)
	if _, err := c.kc.CoreV1().Pods("default").Patch(context.Background(), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

func policyObject(name string, spec map[string]any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.SchemeGroupVersion.String(), "kind": "DeepwallPolicy",
		"metadata": map[string]any{"name": name, "namespace": "default"},
		"spec":     spec,
	}}
}

func (c *cluster) applyErr(name string, spec map[string]any) error {
	return c.cp.ApplyObject(c.dc, policyObject(name, spec))
}

func (c *cluster) apply(t *testing.T, name string, spec map[string]any) {
	t.Helper()
	if err := c.applyErr(name, spec); err != nil {
		t.Fatalf("apply policy %s: %v", name, err)
	}
}

// waitStatus waits until every node's entry of the policy satisfies ok.
func (c *cluster) waitStatus(t *testing.T, name string, ok func(v1alpha1.NodeStatus) bool) v1alpha1.PolicyStatus {
	t.Helper()
	deadline := time.Now().Add(enforceTimeout)
	var last v1alpha1.PolicyStatus
	for {
		u, err := c.dc.Resource(v1alpha1.PolicyResource).Namespace("default").Get(context.Background(), name, metav1.GetOptions{})
		if err == nil {
			var p v1alpha1.DeepwallPolicy
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &p); err != nil {
				t.Fatal(err)
			}
			last = p.Status
			good := len(p.Status.Nodes) == len(c.agents)
			for _, n := range p.Status.Nodes {
				good = good && ok(n)
			}
			if good {
				return last
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("policy %s: status not as wanted after %v: %+v", name, enforceTimeout, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitProtected waits until the agents protect exactly the pods named
// (each on its node, running, mode protect), and no other pod.
func (c *cluster) waitProtected(t *testing.T, want []string) {
	t.Helper()
	deadline := time.Now().Add(enforceTimeout)
	for {
		got := map[string][]string{}
		wantBy := map[string][]string{}
		for _, name := range want {
			node := c.pods[name].node
			wantBy[node] = append(wantBy[node], k8s.ProtectionName("default", name))
		}
		for node, a := range c.agents {
			var pl api.PortList
			if err := a.Client.Do(context.Background(), "GET", "/v1/ports", nil, nil, &pl); err != nil {
				got[node] = []string{"error: " + err.Error()}
				continue
			}
			for _, p := range pl.Ports {
				if p.State == "running" && p.Mode == api.ModeProtect {
					got[node] = append(got[node], p.Name)
				} else {
					got[node] = append(got[node], p.Name+" ("+p.State+" "+p.Mode+")")
				}
			}
		}
		same := true
		for _, node := range []string{"node-1", "node-2", "node-3"} {
			slices.Sort(got[node])
			slices.Sort(wantBy[node])
			same = same && slices.Equal(got[node], wantBy[node])
		}
		if same {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("protected %v, want %v after %v\nnode-1's agent:\n%s", got, wantBy, enforceTimeout, c.agents["node-1"].Output())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkEnforced checks every pod from the client: the protected ones
// block the SQL injection and the policy's own rule and answer a benign
// request; the others answer everything.
func (c *cluster) checkEnforced(t *testing.T, protected []string) {
	t.Helper()
	for name, p := range c.pods {
		in := slices.Contains(protected, name)
		if !waitAnswer(t, c.client, p.ip, benignPath, true) {
			t.Errorf("%s (%v): benign request not answered", name, p.ip)
		}
		if got := waitAnswer(t, c.client, p.ip, attackPath, !in); got == in {
			t.Errorf("%s (%v): attack answered %v, want %v", name, p.ip, got, !in)
		}
		if got := waitAnswer(t, c.client, p.ip, canaryPath, !in); got == in {
			t.Errorf("%s (%v): the policy's rule: answered %v, want %v", name, p.ip, got, !in)
		}
	}
}

// waitAnswer asks ip's httpd for path until the answer (an HTTP response,
// any status) is as wanted or 10 s passed, and returns the last result.
func waitAnswer(t *testing.T, client *testnet.NS, ip netip.Addr, path string, want bool) bool {
	t.Helper()
	hc := testnet.HTTPClient(client, false)
	hc.Timeout = 2 * time.Second
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := hc.Get(fmt.Sprintf("http://%s:%d%s", ip, testctr.HTTPPort, path))
		got := err == nil
		if got {
			resp.Body.Close()
		}
		if got == want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitAlert waits for a blocked alert of pod in node's EVE log naming
// the pod in its k8s object.
func (c *cluster) waitAlert(t *testing.T, node string, pod eve.K8s) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, _ := os.ReadFile(c.agents[node].Log)
		for _, line := range strings.Split(string(data), "\n") {
			var ev eve.Event
			if json.Unmarshal([]byte(line), &ev) != nil || ev.Alert == nil || ev.Alert.Action != "blocked" || ev.K8s == nil {
				continue
			}
			if reflect.DeepEqual(*ev.K8s, pod) && ev.Container != nil && ev.Container.Name == k8s.ProtectionName(pod.Namespace, pod.Pod) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no blocked alert with k8s %+v in %s's EVE log:\n%s", pod, node, data)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// eventTimeout bounds how long an Event takes to appear once the state
// it reports is visible (the recorder writes asynchronously).
const eventTimeout = 15 * time.Second

// waitEvents waits until each node of nodes wrote an Event of the type
// and reason on the object whose message contains text, and returns them.
func (c *cluster) waitEvents(t *testing.T, kind, name, eventType, reason, text string, nodes []string) []corev1.Event {
	t.Helper()
	deadline := time.Now().Add(eventTimeout)
	for {
		evs := c.events(t, kind, name)
		var got []corev1.Event
		from := map[string]bool{}
		for _, e := range evs {
			if e.Type == eventType && e.Reason == reason && strings.Contains(e.Message, text) && e.Source.Component == "deepwall-agent" {
				got = append(got, e)
				from[e.Source.Host] = true
			}
		}
		all := true
		for _, n := range nodes {
			all = all && from[n]
		}
		if all {
			t.Logf("%s %s: %s %s from %v: %q", kind, name, eventType, reason, nodes, got[0].Message)
			return got
		}
		if time.Now().After(deadline) {
			var have []string
			for _, e := range evs {
				have = append(have, fmt.Sprintf("%s %s %s (x%d, %s): %s", e.Source.Host, e.Type, e.Reason, e.Count, e.InvolvedObject.Kind, e.Message))
			}
			t.Fatalf("%s %s: no %s %s Event containing %q from each of %v after %v; events:\n%s",
				kind, name, eventType, reason, text, nodes, eventTimeout, strings.Join(have, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// events lists the Events of an object in the default namespace.
func (c *cluster) events(t *testing.T, kind, name string) []corev1.Event {
	t.Helper()
	l, err := c.kc.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{
		FieldSelector: "involvedObject.kind=" + kind + ",involvedObject.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	return l.Items
}

// checkBlockedBound blocks many requests to a protected pod at once and
// checks that its Blocked Events (each repeat counted in its Event's
// count) stay within the pod's bound since its first block, the EVE log
// having every block.
func (c *cluster) checkBlockedBound(t *testing.T, name string, since time.Time) {
	t.Helper()
	const blocks = 3 * k8s.BlockBurst
	p := c.pods[name]
	for range blocks {
		if waitAnswer(t, c.client, p.ip, canaryPath, false) {
			t.Fatalf("%s: the policy's rule not blocked", name)
		}
	}
	// The recorder writes asynchronously: the bound must hold once it
	// has written everything it was given.
	var n int32
	for range 10 {
		time.Sleep(300 * time.Millisecond)
		n = 0
		for _, e := range c.events(t, "Pod", name) {
			if e.Reason == k8s.ReasonBlocked {
				n += e.Count
			}
		}
	}
	// checkEnforced blocked two requests before.
	bound := int32(k8s.BlockBurst + time.Since(since)/k8s.BlockEvery)
	if n < 1 || n > bound {
		t.Errorf("%s: %d Blocked events for at least %d blocks, want 1 to %d", name, n, blocks+2, bound)
	}
	t.Logf("%s: %d blocks -> %d Blocked events", name, blocks+2, n)
}

// rulesVersions is each node's running rule-set version.
func (c *cluster) rulesVersions(t *testing.T) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	for node, a := range c.agents {
		var rl api.RuleList
		if err := a.Client.Do(context.Background(), "GET", "/v1/rules", nil, nil, &rl); err != nil {
			t.Fatal(err)
		}
		out[node] = rl.RuleSet.Version
	}
	return out
}

func maps(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
