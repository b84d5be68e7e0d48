package k8s

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/ctl/k8s/apis/deepwall/v1alpha1"
	"github.com/deepwall/deepwall/rules"
)

func TestProtectionName(t *testing.T) {
	for _, tc := range []struct{ ns, pod, want string }{
		{"default", "web-1", "default.web-1"},
		{"shop", "db.primary", "shop.db.primary"},
	} {
		if got := ProtectionName(tc.ns, tc.pod); got != tc.want || !rules.ValidContainerName(got) {
			t.Errorf("ProtectionName(%q, %q) = %q, want %q (valid in rules)", tc.ns, tc.pod, got, tc.want)
		}
	}
	long := ProtectionName("default", strings.Repeat("p", 253))
	if len(long) != maxNameLen || !rules.ValidContainerName(long) || long == ProtectionName("default", strings.Repeat("p", 252)) {
		t.Errorf("long name %q (%d bytes): want %d bytes, valid, distinct", long, len(long), maxNameLen)
	}
}

func TestPodTarget(t *testing.T) {
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	for _, tc := range []struct {
		name   string
		status []corev1.ContainerStatus
		want   string
	}{
		{"containerd", []corev1.ContainerStatus{{ContainerID: "containerd://abc", State: running}}, "containerd:k8s.io/abc"},
		{"docker", []corev1.ContainerStatus{{ContainerID: "docker://abc", State: running}}, "docker:abc"},
		{"not running", []corev1.ContainerStatus{{ContainerID: "containerd://abc"}}, ""},
		{"first running", []corev1.ContainerStatus{{ContainerID: "containerd://a"}, {ContainerID: "containerd://b", State: running}}, "containerd:k8s.io/b"},
		{"cri-o", []corev1.ContainerStatus{{ContainerID: "cri-o://abc", State: running}}, ""},
		{"no id", []corev1.ContainerStatus{{ContainerID: "containerd://", State: running}}, ""},
		{"none", nil, ""},
	} {
		pod := &corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: tc.status}}
		got, _, ok := podTarget(pod)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("%s: podTarget = %q %v, want %q", tc.name, got, ok, tc.want)
		}
	}
}

func TestSelects(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Labels: map[string]string{"tier": "web"}}}
	web := metav1.LabelSelector{MatchLabels: map[string]string{"tier": "web"}}
	db := metav1.LabelSelector{MatchLabels: map[string]string{"tier": "db"}}
	prod := &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}
	for _, tc := range []struct {
		name string
		a    accepted
		ns   string
		nsl  map[string]string
		want bool
	}{
		{"namespaced match", accepted{spec: v1alpha1.PolicySpec{PodSelector: web}}, "shop", nil, true},
		{"other namespace", accepted{spec: v1alpha1.PolicySpec{PodSelector: web}}, "bank", nil, false},
		{"label differs", accepted{spec: v1alpha1.PolicySpec{PodSelector: db}}, "shop", nil, false},
		{"empty selector", accepted{}, "shop", nil, true},
		{"cluster match", accepted{spec: v1alpha1.PolicySpec{PodSelector: web}, nsSelector: prod}, "", map[string]string{"env": "prod"}, true},
		{"cluster namespace differs", accepted{spec: v1alpha1.PolicySpec{PodSelector: web}, nsSelector: prod}, "", map[string]string{"env": "dev"}, false},
		{"cluster every namespace", accepted{spec: v1alpha1.PolicySpec{PodSelector: web}, nsSelector: &metav1.LabelSelector{}}, "", nil, true},
	} {
		if got := selects(tc.a, tc.ns, tc.nsl, pod); got != tc.want {
			t.Errorf("%s: selects = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestBuildRules(t *testing.T) {
	pol := func(uid, ns, name string) *policy {
		return &policy{kind: kindPolicy, uid: uid, namespace: ns, name: name}
	}
	a, b, c, d := pol("a", "shop", "a"), pol("b", "shop", "b"), pol("c", "", "c"), pol("d", "shop", "d")
	c.kind = kindClusterPolicy
	text := map[string]string{
		"a": "rules:\n  - {id: 9001, action: block, proto: tcp, dst_port: 23}\n",
		"b": "rules:\n  - {id: 9001, action: block, proto: tcp, dst_port: 24}\n", // id taken by a
		"c": "rules:\n  - {id: 9002, action: blok}\n",                            // bad action
		"d": "",                                                                  // selection only
	}
	req, refused := buildRules([]*policy{a, b, c, d}, text)
	if len(refused) != 2 || refused["b"] == nil || refused["c"] == nil {
		t.Fatalf("refused %v: want b and c", refused)
	}
	if !strings.Contains(refused["c"].Error(), "clusterdeepwallpolicy/c.yaml") {
		t.Errorf("error %q does not name the policy's file", refused["c"])
	}
	if _, ok := req.Files["deepwallpolicy/shop/a.yaml"]; !ok || len(req.Files) != 3 {
		t.Errorf("files %v: want the main file, the default pack and a's", keys(req.Files))
	}
	fsys, err := (&req).FS()
	if err != nil {
		t.Fatal(err)
	}
	set, err := rules.ParseFS(fsys, req.Main)
	if err != nil {
		t.Fatal(err)
	}
	pack, _ := rules.DefaultPack()
	if len(set.Rules) != len(pack.Rules)+1 {
		t.Errorf("%d rules, want the pack's %d and one", len(set.Rules), len(pack.Rules))
	}
	if digest(req) == digest(api.RulesRequest{Main: req.Main, Files: map[string]string{defaultRulesFile: "x"}}) {
		t.Error("digest does not depend on the files")
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestStatusCurrent: an entry is written once; the same state again is
// not written (no write per pass), a changed one is, and a condition
// keeps its transition time while its status holds.
func TestStatusCurrent(t *testing.T) {
	c := &Controller{cfg: Config{Node: "node-1"}}
	c.node.accepted = map[string]accepted{}
	p := &policy{kind: kindPolicy, namespace: "shop", name: "web", uid: "u", generation: 2}
	st := c.nodeStatus(p, nil, nil, nil, []string{"shop/web-0"})
	if c.statusCurrent(p, &st) {
		t.Fatal("no entry yet: want a write")
	}
	p.status.Nodes = []v1alpha1.NodeStatus{{Node: "node-2"}, st}
	again := c.nodeStatus(p, nil, nil, nil, []string{"shop/web-0"})
	if !c.statusCurrent(p, &again) {
		t.Errorf("same state written again:\n%+v\n%+v", st, again)
	}
	changed := c.nodeStatus(p, errIngress, nil, nil, nil)
	if c.statusCurrent(p, &changed) {
		t.Error("a refused policy's entry not written")
	}
	if cond := changed.Conditions[0]; cond.Status != metav1.ConditionFalse || cond.Reason != v1alpha1.ReasonInvalidRules ||
		!strings.Contains(cond.Message, "nothing changed") {
		t.Errorf("condition %+v", cond)
	}
}
