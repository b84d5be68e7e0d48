package k8s

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/deepwall/deepwall/ctl/api"
	"github.com/deepwall/deepwall/ctl/k8s/apis/deepwall/v1alpha1"
)

// Timing of the loop. A pass runs on every change of a policy, a pod of
// the node or a namespace, and at least every resyncEvery: protections
// the agent lost (a container restarted under a new id) and ConfigMaps
// (not watched) are caught up then.
const (
	resyncEvery = 30 * time.Second
	// callTimeout bounds one pass's calls to the agent and the API server.
	callTimeout = 2 * time.Minute
	// nodeKey is the work queue's only key: a pass reconciles the whole node.
	nodeKey = "node"
)

// Config configures a node's controller.
type Config struct {
	// Kubeconfig is a kubeconfig file; "" uses the pod's service account
	// (in-cluster).
	Kubeconfig string
	// Node is this node's name (spec.nodeName of its pods).
	Node string
	// Namespace holds the ConfigMaps ClusterDeepwallPolicy rules name.
	Namespace string
	// Agent is the agent's API.
	Agent  *api.Client
	Logger *slog.Logger
}

// Controller reconciles one node.
type Controller struct {
	cfg   Config
	rest  *rest.Config
	kube  kubernetes.Interface
	dyn   dynamic.Interface
	queue workqueue.TypedRateLimitingInterface[string]

	pods      listersv1.PodLister
	nss       listersv1.NamespaceLister
	policies  cache.GenericLister
	cpolicies cache.GenericLister
	synced    []cache.InformerSynced

	// recorder writes the policies' Events (the pass's goroutine);
	// podEvents the pods' ones, from the verdict log's writer
	// (ObserveEvent), set while Run watches.
	recorder  record.EventRecorder
	podEvents atomic.Pointer[podEvents]
	blocks    *blockLimiter

	node nodeState
}

// RESTConfig loads the client configuration: the kubeconfig file, or the
// in-cluster service account when path is "".
func RESTConfig(path string) (*rest.Config, error) {
	if path == "" {
		c, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster configuration (no --kubeconfig): %w", err)
		}
		return c, nil
	}
	c, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	return c, nil
}

// New makes a node's controller; it reads the kubeconfig now (before the
// agent's sandbox) and talks to nobody until Run.
func New(cfg Config) (*Controller, error) {
	if cfg.Node == "" {
		return nil, errors.New("kubernetes: no node name (--node-name, or NODE_NAME from the downward API)")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	rc, err := RESTConfig(cfg.Kubeconfig)
	if err != nil {
		return nil, err
	}
	rc.UserAgent = "deepwall-agent/" + cfg.Node
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return &Controller{cfg: cfg, rest: rc, kube: kube, dyn: dyn, blocks: newBlockLimiter()}, nil
}

// Run watches and reconciles until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	c.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "deepwall"})
	defer c.queue.ShutDown()
	enqueue := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.queue.Add(nodeKey) },
		UpdateFunc: func(any, any) { c.queue.Add(nodeKey) },
		DeleteFunc: func(any) { c.queue.Add(nodeKey) },
	}
	// The node's pods only: the field selector keeps every other node's
	// pods out of this agent's cache and watch.
	podf := informers.NewSharedInformerFactoryWithOptions(c.kube, resyncEvery,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", c.cfg.Node).String()
		}))
	nsf := informers.NewSharedInformerFactory(c.kube, resyncEvery)
	dynf := dynamicinformer.NewDynamicSharedInformerFactory(c.dyn, resyncEvery)
	pi := podf.Core().V1().Pods()
	ni := nsf.Core().V1().Namespaces()
	pol := dynf.ForResource(v1alpha1.PolicyResource)
	cpol := dynf.ForResource(v1alpha1.ClusterPolicyResource)
	for _, inf := range []cache.SharedIndexInformer{pi.Informer(), ni.Informer(), pol.Informer(), cpol.Informer()} {
		if _, err := inf.AddEventHandler(enqueue); err != nil {
			return fmt.Errorf("kubernetes: watch: %w", err)
		}
		c.synced = append(c.synced, inf.HasSynced)
	}
	c.pods, c.nss = pi.Lister(), ni.Lister()
	c.policies, c.cpolicies = pol.Lister(), cpol.Lister()
	podf.Start(ctx.Done())
	nsf.Start(ctx.Done())
	dynf.Start(ctx.Done())
	defer podf.Shutdown()
	defer nsf.Shutdown()
	defer dynf.Shutdown()
	c.cfg.Logger.Info("kubernetes: watching", "node", c.cfg.Node, "server", c.rest.Host)
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return ctx.Err()
	}
	// Events: core/v1 through the broadcaster's correlator (events.go).
	eb := record.NewBroadcaster(record.WithContext(ctx))
	defer eb.Shutdown()
	eb.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.kube.CoreV1().Events("")})
	c.recorder = eb.NewRecorder(scheme.Scheme, corev1.EventSource{Component: eventComponent, Host: c.cfg.Node})
	c.podEvents.Store(&podEvents{rec: c.recorder, pods: c.pods})
	defer c.podEvents.Store(nil)
	c.queue.Add(nodeKey)
	go func() {
		<-ctx.Done()
		c.queue.ShutDown()
	}()
	for c.next(ctx) {
	}
	return nil
}

// next runs one pass; false when the queue is shut down.
func (c *Controller) next(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	pctx, cancel := context.WithTimeout(ctx, callTimeout)
	err := c.reconcile(pctx)
	cancel()
	if err != nil && ctx.Err() == nil {
		c.cfg.Logger.Warn("kubernetes: reconcile", "node", c.cfg.Node, "err", err)
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	// The safety net between events: protections the runtime's restarts
	// undid, ConfigMaps changed.
	c.queue.AddAfter(key, resyncEvery)
	return true
}

// listPolicies returns every policy, namespaced and cluster-wide.
func (c *Controller) listPolicies() ([]*policy, error) {
	var out []*policy
	for _, src := range []struct {
		kind   string
		lister cache.GenericLister
	}{{kindPolicy, c.policies}, {kindClusterPolicy, c.cpolicies}} {
		objs, err := src.lister.List(everything)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", src.kind, err)
		}
		for _, o := range objs {
			u, ok := o.(*unstructured.Unstructured)
			if !ok {
				continue
			}
			p, err := decodePolicy(src.kind, u)
			if err != nil {
				c.cfg.Logger.Warn("kubernetes: policy not understood", "kind", src.kind, "namespace", u.GetNamespace(), "name", u.GetName(), "err", err)
				continue
			}
			out = append(out, p)
		}
	}
	return out, nil
}

// decodePolicy converts a watched object to a policy.
func decodePolicy(kind string, u *unstructured.Unstructured) (*policy, error) {
	p := &policy{kind: kind, namespace: u.GetNamespace(), name: u.GetName(), uid: string(u.GetUID()), generation: u.GetGeneration()}
	if kind == kindClusterPolicy {
		var o v1alpha1.ClusterDeepwallPolicy
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &o); err != nil {
			return nil, err
		}
		p.spec, p.status = o.Spec.PolicySpec, o.Status
		sel := o.Spec.NamespaceSelector
		p.nsSelector = &sel
	} else {
		var o v1alpha1.DeepwallPolicy
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &o); err != nil {
			return nil, err
		}
		p.spec, p.status = o.Spec, o.Status
	}
	return p, nil
}

// namespaceLabels returns a namespace's labels (nil when it is unknown).
func (c *Controller) namespaceLabels(name string) map[string]string {
	ns, err := c.nss.Get(name)
	if err != nil {
		return nil
	}
	return ns.Labels
}

// configMapRules reads the rule file a policy's ConfigMapRef names.
func (c *Controller) configMapRules(ctx context.Context, p *policy) (string, error) {
	ref := p.spec.Rules.ConfigMapRef
	ns := p.namespace
	if ns == "" {
		ns = c.cfg.Namespace
	}
	cm, err := c.kube.CoreV1().ConfigMaps(ns).Get(ctx, ref.Name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("rules: configmap %s/%s: %w", ns, ref.Name, err)
	}
	text, ok := cm.Data[ref.Key]
	if !ok {
		return "", fmt.Errorf("rules: configmap %s/%s has no key %q", ns, ref.Name, ref.Key)
	}
	return text, nil
}

// applyStatus writes this node's entry of a policy's status by
// server-side apply: the field manager is the node's, and the entry is
// keyed by node name (listType map), so the nodes' writes never conflict
// and no node removes another's entry.
func (c *Controller) applyStatus(ctx context.Context, p *policy, st v1alpha1.NodeStatus) error {
	entry, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&st)
	if err != nil {
		return err
	}
	kind, gvr := "DeepwallPolicy", v1alpha1.PolicyResource
	if p.kind == kindClusterPolicy {
		kind, gvr = "ClusterDeepwallPolicy", v1alpha1.ClusterPolicyResource
	}
	meta := map[string]any{"name": p.name}
	if p.namespace != "" {
		meta["namespace"] = p.namespace
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.SchemeGroupVersion.String(),
		"kind":       kind,
		"metadata":   meta,
		"status":     map[string]any{"nodes": []any{entry}},
	}}
	opts := metav1.ApplyOptions{FieldManager: "deepwall-agent/" + c.cfg.Node, Force: true}
	if p.namespace != "" {
		_, err = c.dyn.Resource(gvr).Namespace(p.namespace).ApplyStatus(ctx, p.name, u, opts)
	} else {
		_, err = c.dyn.Resource(gvr).ApplyStatus(ctx, p.name, u, opts)
	}
	if err != nil {
		return fmt.Errorf("status of %s: %w", p, err)
	}
	return nil
}

// podsOfNode lists the node's pods from the cache.
func (c *Controller) podsOfNode() ([]*corev1.Pod, error) {
	return c.pods.List(everything)
}
