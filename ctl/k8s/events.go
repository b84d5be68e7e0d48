package k8s

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/deepwall/deepwall/ctl/eve"
	"github.com/deepwall/deepwall/ctl/k8s/apis/deepwall/v1alpha1"
)

// Kubernetes Events. The controller writes core/v1 Events through
// client-go's record.EventBroadcaster, whose correlator folds an event
// identical to an earlier one into its count (a patch, not a new
// object), combines more than 10 distinct messages of one reason on one
// object within 10 minutes into one, and lets each object have 25 events
// at once and one more per 5 minutes. Blocked flows come from hostile
// traffic, so before the recorder they are also bounded here (blockLimiter):
// the recorder's queue then never overflows and the API server sees at
// most nodeBlockBurst events at once and nodeBlockRate per second from
// a node under any attack, whatever the correlator keeps.
const (
	// eventComponent is the Events' source (with the node as host).
	eventComponent = "deepwall-agent"
	// ReasonBlocked is a pod's Event when deepwall blocked a flow of it.
	ReasonBlocked = "Blocked"
	// maxEventMessage bounds an Event's message: events.k8s.io's limit
	// of a note, the same Event's other form.
	maxEventMessage = 1024

	// A pod's Blocked events: blockBurst at once, then one per blockEvery.
	blockBurst = 5
	blockEvery = 30 * time.Second
	// A node's Blocked events, all pods together.
	nodeBlockBurst = 20
	nodeBlockRate  = rate.Limit(1) // per second
	// maxBlockPods bounds the per-pod limiters; past it they all start
	// again (the node's limiter still holds). Keys are the node's own
	// protected pods, which the kubelet bounds (110 by default).
	maxBlockPods = 1024
)

// blockLimiter bounds the Blocked Events per pod and per node.
type blockLimiter struct {
	mu   sync.Mutex
	node *rate.Limiter
	pods map[string]*rate.Limiter
}

func newBlockLimiter() *blockLimiter {
	return &blockLimiter{node: rate.NewLimiter(nodeBlockRate, nodeBlockBurst), pods: map[string]*rate.Limiter{}}
}

// allow reports whether pod may have a Blocked Event at now, and takes
// the pod's and the node's token when it may.
func (l *blockLimiter) allow(pod string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	pl := l.pods[pod]
	if pl == nil {
		if len(l.pods) >= maxBlockPods {
			clear(l.pods)
		}
		pl = rate.NewLimiter(rate.Every(blockEvery), blockBurst)
		l.pods[pod] = pl
	}
	// Both or neither: a pod refused its own token spends none of the
	// node's, and the reverse.
	if pl.TokensAt(now) < 1 || l.node.TokensAt(now) < 1 {
		return false
	}
	return pl.AllowN(now, 1) && l.node.AllowN(now, 1)
}

// podEvents is what ObserveEvent needs, set while the controller runs.
type podEvents struct {
	rec  record.EventRecorder
	pods listersv1.PodLister
}

// ObserveEvent is the agent's verdict log tap (agent.Config.EventTap):
// a blocked alert of a pod the controller protects becomes a Warning
// Event on the pod, within the bounds of blockLimiter. It does not block
// and keeps nothing of ev.
func (c *Controller) ObserveEvent(ev *eve.Event) {
	if ev.EventType != eve.EventAlert || ev.Alert == nil || ev.Alert.Action != "blocked" || ev.K8s == nil {
		return
	}
	pe := c.podEvents.Load()
	if pe == nil {
		return
	}
	// The pod comes from the node's cache: names in ev only select one
	// of the node's own pods.
	pod, err := pe.pods.Pods(ev.K8s.Namespace).Get(ev.K8s.Pod)
	if err != nil || !c.blocks.allow(ev.K8s.Namespace+"/"+ev.K8s.Pod, time.Now()) {
		return
	}
	pe.rec.Event(pod, corev1.EventTypeWarning, ReasonBlocked, blockMessage(ev, pod))
}

// blockMessage says what was blocked: the rule, the protocol and the
// peer. It names the pod's port for a flow to the pod and the peer's
// for one from it, never the client's ephemeral port, so that repeated
// blocks of one attack have one message (the correlator counts them).
func blockMessage(ev *eve.Event, pod *corev1.Pod) string {
	proto := strings.ToLower(ev.Proto)
	if ev.AppProto != "" {
		proto += "/" + ev.AppProto
	}
	ips := podIPs(pod)
	podSrc, podDst := slices.Contains(ips, addr(ev.SrcIP)), slices.Contains(ips, addr(ev.DestIP))
	// The flow's server is dest of a to_server packet, src of a to_client one.
	toClient := ev.Direction == "to_client"
	var peer string
	switch {
	case podDst && !toClient, podSrc && toClient:
		// The pod serves: the peer is its client.
		client, port := ev.SrcIP, ev.DestPort
		if toClient {
			client, port = ev.DestIP, ev.SrcPort
		}
		peer = fmt.Sprintf("from %s to port %d", client, port)
	case podSrc, podDst:
		server, port := ev.DestIP, ev.DestPort
		if toClient {
			server, port = ev.SrcIP, ev.SrcPort
		}
		peer = "to " + hostPort(server, port)
	default:
		// The pod's addresses are not (yet) in its status.
		peer = fmt.Sprintf("between %s and %s", ev.SrcIP, hostPort(ev.DestIP, ev.DestPort))
	}
	msg := fmt.Sprintf("rule %d blocked %s %s: %s", ev.Alert.SignatureID, proto, peer, ev.Alert.Signature)
	return cut(msg, maxEventMessage)
}

func hostPort(ip string, port uint16) string {
	return net.JoinHostPort(ip, strconv.Itoa(int(port)))
}

// addr parses an address; the zero Addr when it is none.
func addr(s string) netip.Addr {
	a, _ := netip.ParseAddr(s)
	return a.Unmap()
}

// podIPs are the pod's addresses from its status.
func podIPs(pod *corev1.Pod) []netip.Addr {
	var out []netip.Addr
	for _, ip := range pod.Status.PodIPs {
		if a := addr(ip.IP); a.IsValid() {
			out = append(out, a)
		}
	}
	if a := addr(pod.Status.PodIP); a.IsValid() && !slices.Contains(out, a) {
		out = append(out, a)
	}
	return out
}

// cut bounds s to n bytes without splitting a UTF-8 sequence.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

// policyEvent is the Event a node's status entry for a policy stands
// for: Normal when the condition is true, Warning otherwise, with the
// condition's reason; its key changes only when the node applies
// another generation or the condition's reason or message (for a
// failure) changes, so a pass that writes the same state, or a pod
// relabelled under the policy, makes no Event.
func policyEvent(node string, p *policy, st v1alpha1.NodeStatus) (eventType, reason, message, key string) {
	cond := st.Conditions[0]
	eventType, reason = corev1.EventTypeWarning, cond.Reason
	message = node + ": " + cond.Message
	key = fmt.Sprintf("%d\x00%s\x00%s", p.generation, cond.Reason, cond.Message)
	if cond.Status == "True" {
		eventType = corev1.EventTypeNormal
		message = fmt.Sprintf("%s: generation %d applied: %s", node, p.generation, cond.Message)
		key = fmt.Sprintf("%d\x00%s", p.generation, cond.Reason)
	}
	return eventType, reason, cut(message, maxEventMessage), key
}

// reportPolicy writes a policy's Event when its key changed since the
// last one this agent wrote.
func (c *Controller) reportPolicy(p *policy, st v1alpha1.NodeStatus) {
	if c.recorder == nil || len(st.Conditions) == 0 {
		return
	}
	eventType, reason, message, key := policyEvent(c.cfg.Node, p, st)
	if c.node.reported[p.uid] == key {
		return
	}
	c.node.reported[p.uid] = key
	c.recorder.Event(p.ref(), eventType, reason, message)
}

// ref is the policy as an Event's involvedObject.
func (p *policy) ref() *corev1.ObjectReference {
	kind := "DeepwallPolicy"
	if p.kind == kindClusterPolicy {
		kind = "ClusterDeepwallPolicy"
	}
	return &corev1.ObjectReference{Kind: kind, APIVersion: v1alpha1.SchemeGroupVersion.String(),
		Namespace: p.namespace, Name: p.name, UID: types.UID(p.uid)}
}
