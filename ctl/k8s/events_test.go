package k8s

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/deepwall/deepwall/ctl/eve"
	"github.com/deepwall/deepwall/ctl/k8s/apis/deepwall/v1alpha1"
)

func testPod(ips ...string) *corev1.Pod {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-0", UID: "pod-uid"}}
	for _, ip := range ips {
		pod.Status.PodIPs = append(pod.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	if len(ips) > 0 {
		pod.Status.PodIP = ips[0]
	}
	return pod
}

func blockedAlert(src string, sport uint16, dst string, dport uint16, dir string) *eve.Event {
	return &eve.Event{EventType: eve.EventAlert, SrcIP: src, SrcPort: sport, DestIP: dst, DestPort: dport,
		Proto: "TCP", AppProto: "http", Direction: dir,
		Alert: &eve.Alert{Action: "blocked", SignatureID: 942100, Signature: "SQL injection"},
		K8s:   &eve.K8s{Namespace: "shop", Pod: "web-0"}}
}

func TestBlockMessage(t *testing.T) {
	for _, tc := range []struct {
		name string
		ev   *eve.Event
		pod  *corev1.Pod
		want string
	}{
		{"attack on the pod", blockedAlert("198.18.0.1", 40000, "198.18.0.12", 8080, "to_server"), testPod("198.18.0.12"),
			"rule 942100 blocked tcp/http from 198.18.0.1 to port 8080: SQL injection"},
		{"the pod's answer", blockedAlert("198.18.0.12", 8080, "198.18.0.1", 40000, "to_client"), testPod("198.18.0.12"),
			"rule 942100 blocked tcp/http from 198.18.0.1 to port 8080: SQL injection"},
		{"the pod's request", blockedAlert("198.18.0.12", 40000, "203.0.113.7", 443, "to_server"), testPod("198.18.0.12"),
			"rule 942100 blocked tcp/http to 203.0.113.7:443: SQL injection"},
		{"the server's answer to the pod", blockedAlert("203.0.113.7", 443, "198.18.0.12", 40000, "to_client"), testPod("198.18.0.12"),
			"rule 942100 blocked tcp/http to 203.0.113.7:443: SQL injection"},
		{"second address, IPv6", blockedAlert("2001:db8::1", 40000, "2001:db8::12", 80, "to_server"), testPod("198.18.0.12", "2001:db8::12"),
			"rule 942100 blocked tcp/http from 2001:db8::1 to port 80: SQL injection"},
		{"no address in the status", blockedAlert("198.18.0.1", 40000, "198.18.0.12", 8080, "to_server"), testPod(),
			"rule 942100 blocked tcp/http between 198.18.0.1 and 198.18.0.12:8080: SQL injection"},
		{"no address in the status, IPv6", blockedAlert("2001:db8::1", 40000, "2001:db8::12", 80, "to_server"), testPod(),
			"rule 942100 blocked tcp/http between 2001:db8::1 and [2001:db8::12]:80: SQL injection"},
	} {
		if got := blockMessage(tc.ev, tc.pod); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
	// A hostile rule name is cut, on a rune boundary.
	ev := blockedAlert("198.18.0.1", 1, "198.18.0.12", 80, "to_server")
	ev.AppProto = ""
	ev.Alert.Signature = strings.Repeat("é", 2000)
	got := blockMessage(ev, testPod("198.18.0.12"))
	if len(got) > maxEventMessage || !strings.HasPrefix(got, "rule 942100 blocked tcp from") || !strings.HasSuffix(got, "é") {
		t.Errorf("long signature: %d bytes %q...", len(got), got[:40])
	}
}

func TestBlockLimiter(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	l := newBlockLimiter()
	allowed := func(pod string, n int, at time.Time) int {
		got := 0
		for range n {
			if l.allow(pod, at) {
				got++
			}
		}
		return got
	}
	// One pod: its burst, then one per blockEvery.
	if got := allowed("shop/a", 100, t0); got != blockBurst {
		t.Fatalf("one pod, 100 blocks at once: %d events, want %d", got, blockBurst)
	}
	if got := allowed("shop/a", 100, t0.Add(blockEvery)); got != 1 {
		t.Errorf("one pod, %v later: %d events, want 1", blockEvery, got)
	}
	// Many pods: the node's bound (what the pod above took counts).
	total := blockBurst + 1
	for i := range 50 {
		total += allowed(fmt.Sprintf("shop/p%d", i), 10, t0.Add(blockEvery))
	}
	// The node's tokens refilled over blockEvery are capped at its
	// burst, one of which pod a took.
	if total != blockBurst+nodeBlockBurst {
		t.Errorf("50 pods at once: %d events in all, want %d (the node's burst)", total, blockBurst+nodeBlockBurst)
	}
	if got := allowed("shop/q", 10, t0.Add(blockEvery+time.Second)); got != 1 {
		t.Errorf("a second later: %d events, want 1 (the node's rate)", got)
	}
	// A pod refused by the node keeps its own token.
	if got := allowed("shop/q", 10, t0.Add(blockEvery+10*time.Second)); got != blockBurst-1 {
		t.Errorf("pod q after the node refilled: %d events, want %d", got, blockBurst-1)
	}
	// The per-pod table is bounded.
	for i := range 3 * maxBlockPods {
		l.allow(fmt.Sprintf("ns/p%d", i), t0)
	}
	if len(l.pods) > maxBlockPods {
		t.Errorf("%d per-pod limiters, want at most %d", len(l.pods), maxBlockPods)
	}
}

// TestObserveEvent: only blocked alerts of the node's known pods become
// Events, within the pod's bound.
func TestObserveEvent(t *testing.T) {
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	if err := idx.Add(testPod("198.18.0.12")); err != nil {
		t.Fatal(err)
	}
	rec := record.NewFakeRecorder(1000)
	c := &Controller{blocks: newBlockLimiter()}
	attack := blockedAlert("198.18.0.1", 40000, "198.18.0.12", 8080, "to_server")
	c.ObserveEvent(attack) // not running yet: nothing
	c.podEvents.Store(&podEvents{rec: rec, pods: listersv1.NewPodLister(idx)})

	allowed := *attack
	allowed.Alert = &eve.Alert{Action: "allowed", SignatureID: 1}
	flow := *attack
	flow.EventType, flow.Alert = eve.EventFlow, nil
	other := *attack
	other.K8s = &eve.K8s{Namespace: "shop", Pod: "not-on-this-node"}
	bare := *attack
	bare.K8s = nil
	for _, ev := range []*eve.Event{&allowed, &flow, &other, &bare} {
		c.ObserveEvent(ev)
	}
	for range 100 {
		c.ObserveEvent(attack)
	}
	close(rec.Events)
	var got []string
	for e := range rec.Events {
		got = append(got, e)
	}
	want := "Warning Blocked rule 942100 blocked tcp/http from 198.18.0.1 to port 8080: SQL injection"
	if len(got) != blockBurst {
		t.Fatalf("%d events, want %d: %q", len(got), blockBurst, got)
	}
	for _, e := range got {
		if e != want {
			t.Errorf("event %q, want %q", e, want)
		}
	}
}

// TestReportPolicy: a policy's Event is written when the node applies a
// generation or refuses one, not again for the same state or for a pod
// relabelled under it.
func TestReportPolicy(t *testing.T) {
	rec := record.NewFakeRecorder(100)
	c := &Controller{cfg: Config{Node: "node-1"}, recorder: rec}
	c.node.accepted, c.node.reported = map[string]accepted{}, map[string]string{}
	p := &policy{kind: kindPolicy, namespace: "shop", name: "web", uid: "u", generation: 1}
	c.node.result.ToVersion = 4
	bad := errors.New("deepwallpolicy/shop/web.yaml:2:25: action: unknown \"blok\"")
	for _, step := range []struct {
		gen     int64
		invalid error
		pods    []string
		want    string // "" = no event
	}{
		{1, nil, []string{"shop/web-0"}, "Normal Applied node-1: generation 1 applied: 1 pods protected, rule set version 4"},
		{1, nil, []string{"shop/web-0"}, ""},
		{1, nil, []string{"shop/web-0", "shop/web-1"}, ""},
		{2, bad, nil, "Warning InvalidRules node-1: refused, nothing changed: " + bad.Error()},
		{2, bad, nil, ""},
		{3, nil, []string{"shop/web-0"}, "Normal Applied node-1: generation 3 applied: 1 pods protected, rule set version 4"},
	} {
		p.generation = step.gen
		c.reportPolicy(p, c.nodeStatus(p, step.invalid, nil, nil, step.pods))
		var got string
		select {
		case got = <-rec.Events:
		default:
		}
		if got != step.want {
			t.Errorf("generation %d, pods %v:\n got %q\nwant %q", step.gen, step.pods, got, step.want)
		}
	}
	if ref := p.ref(); ref.Kind != "DeepwallPolicy" || ref.APIVersion != v1alpha1.SchemeGroupVersion.String() || ref.Namespace != "shop" || ref.UID != "u" {
		t.Errorf("reference %+v", ref)
	}
	cp := &policy{kind: kindClusterPolicy, name: "all", uid: "c"}
	if ref := cp.ref(); ref.Kind != "ClusterDeepwallPolicy" || ref.Namespace != "" || ref.Name != "all" {
		t.Errorf("cluster policy's reference %+v", ref)
	}
}
