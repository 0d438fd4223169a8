package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/edsync/edsync/render"
)

// KubeNodesOptions configures NewKubeNodes.
type KubeNodesOptions struct {
	Client  kubernetes.Interface
	Nodes   NodeOptions
	Objects *Objects
	Logger  *slog.Logger
}

// KubeNodes is the Source of Nodes: one informer on every Node
// (NodeOptions.All), or on the one Node named (a field selector
// metadata.name=NAME, so the API server sends that Node only). Nodes are
// slimmed to their topology labels (SlimNode) and handed to Objects.
type KubeNodes struct {
	opts     NodeOptions
	objects  *Objects
	log      *slog.Logger
	synced   chan struct{}
	started  atomic.Bool
	informer informer
}

var _ Source = (*KubeNodes)(nil)

// NewKubeNodes sets up the informer; Run starts it.
func NewKubeNodes(o KubeNodesOptions) (*KubeNodes, error) {
	switch {
	case o.Client == nil:
		return nil, errors.New("watch: node source: no client")
	case o.Objects == nil:
		return nil, errors.New("watch: node source: no objects")
	case !o.Nodes.enabled():
		return nil, errors.New("watch: node source: neither every Node nor a Node name")
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	k := &KubeNodes{opts: o.Nodes, objects: o.Objects, log: log.With("component", "watch.nodes"), synced: make(chan struct{})}
	var field string
	if !o.Nodes.All {
		field = fields.OneTermEqualSelector(metav1.ObjectNameField, o.Nodes.Name).String()
		k.log = k.log.With("node", o.Nodes.Name)
	}
	health := newAPIHealth(k.log, "Nodes", "nodes")
	api := o.Client.CoreV1().Nodes()
	lw := observedListWatch(health, func(lo *metav1.ListOptions) { lo.FieldSelector = field },
		func(ctx context.Context, lo metav1.ListOptions) (runtime.Object, error) { return api.List(ctx, lo) },
		api.Watch)
	subZone := o.Nodes.subZoneLabel()
	slim := func(obj any) (any, error) {
		if n, ok := obj.(*corev1.Node); ok {
			return SlimNode(n, subZone), nil
		}
		return obj, nil
	}
	var err error
	k.informer, err = newInformer(o.Client, lw, &corev1.Node{}, slim, health, cache.ResourceEventHandlerFuncs{
		AddFunc:    k.put,
		UpdateFunc: func(_, obj any) { k.put(obj) },
		DeleteFunc: k.delete,
	})
	if err != nil {
		return nil, fmt.Errorf("watch: node source: %w", err)
	}
	return k, nil
}

// Synced is closed once the informer has listed and every Node is in Objects.
func (k *KubeNodes) Synced() <-chan struct{} { return k.synced }

// Run starts the informer and blocks until ctx ends; it returns nil.
func (k *KubeNodes) Run(ctx context.Context) error {
	if !k.started.CompareAndSwap(false, true) {
		return errors.New("watch: node source: Run called twice")
	}
	k.log.Info("watching Nodes", "all", k.opts.All)
	runInformers(ctx, k.log, []informer{k.informer}, k.synced, func() {
		_, n := k.objects.Len()
		k.log.Info("Nodes synced", "nodes", n)
	})
	return nil
}

// The handlers only record: Objects drops updates that change no label
// edsync reads, which are most Node updates.
func (k *KubeNodes) put(obj any) {
	n, ok := obj.(*corev1.Node)
	if !ok || !k.opts.wants(n.Name) {
		return
	}
	k.objects.SetNode(k.opts.nodeOf(n))
}

func (k *KubeNodes) delete(obj any) {
	switch o := obj.(type) {
	case *corev1.Node:
		k.objects.DeleteNode(o.Name)
	case cache.DeletedFinalStateUnknown:
		k.objects.DeleteNode(o.Key) // a Node's key is its name
	}
}

// KubeServicesOptions configures NewKubeServices. Namespaces and Services
// scope the watch as in KubeOptions; Services are filtered on the client
// side (a field selector cannot name several Services).
type KubeServicesOptions struct {
	Client     kubernetes.Interface
	Namespaces []string
	Services   []render.ServiceKey
	Objects    *Objects
	Logger     *slog.Logger
}

// KubeServices is the Source of Service objects: one informer per
// namespace scope, like the EndpointSlice informers. Services are slimmed
// to their edsync.io/ annotations and ports (SlimService) and handed to
// Objects as render.ServiceInfo.
type KubeServices struct {
	client     kubernetes.Interface
	namespaces []string
	objects    *Objects
	// filter is what the handlers keep; SetServices replaces it.
	filter  atomic.Pointer[filter]
	log     *slog.Logger
	synced  chan struct{}
	started atomic.Bool

	move    sync.Mutex // serializes SetServices, and Run's stop with them
	stopped bool       // Run has returned: no more moves
	// handlers is held (read) by the event handlers, (write) by a move's
	// hand-over, as in Kube.
	handlers sync.RWMutex
	mu       sync.Mutex // guards scopes, runCtx and moved
	scopes   []*serviceScope
	runCtx   context.Context
	moved    chan struct{}
}

// serviceScope is the informer of one namespace ("" for all). joining and
// retired are as in kubeScope: the handler of either writes nothing.
type serviceScope struct {
	namespace        string
	informer         informer
	joining, retired atomic.Bool
}

var _ Source = (*KubeServices)(nil)

// NewKubeServices sets up the informers; Run starts them.
func NewKubeServices(o KubeServicesOptions) (*KubeServices, error) {
	switch {
	case o.Client == nil:
		return nil, errors.New("watch: service source: no client")
	case o.Objects == nil:
		return nil, errors.New("watch: service source: no objects")
	}
	// The label selector is the EndpointSlices': Services are not filtered
	// by it (a slice's labels need not be its Service's).
	f, err := newFilter(o.Namespaces, "", o.Services)
	if err != nil {
		return nil, fmt.Errorf("watch: service source: %w", err)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	k := &KubeServices{client: o.Client, namespaces: o.Namespaces, objects: o.Objects,
		log: log.With("component", "watch.services"), synced: make(chan struct{}), moved: make(chan struct{})}
	k.filter.Store(f)
	for _, ns := range f.namespaceScopes() {
		sc, err := k.newScope(ns)
		if err != nil {
			return nil, err
		}
		k.scopes = append(k.scopes, sc)
	}
	return k, nil
}

func (k *KubeServices) newScope(ns string) (*serviceScope, error) {
	slim := func(obj any) (any, error) {
		if s, ok := obj.(*corev1.Service); ok {
			return SlimService(s), nil
		}
		return obj, nil
	}
	health := newAPIHealth(k.log.With("namespace", displayNamespace(ns)), "Services", "services")
	api := k.client.CoreV1().Services(ns)
	lw := observedListWatch(health, func(*metav1.ListOptions) {},
		func(ctx context.Context, lo metav1.ListOptions) (runtime.Object, error) { return api.List(ctx, lo) },
		api.Watch)
	sc := &serviceScope{namespace: ns}
	inf, err := newInformer(k.client, lw, &corev1.Service{}, slim, health, cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.put(sc, obj) },
		UpdateFunc: func(_, obj any) { k.put(sc, obj) },
		DeleteFunc: func(obj any) { k.delete(sc, obj) },
	})
	if err != nil {
		return nil, fmt.Errorf("watch: service source: namespace %q: %w", ns, err)
	}
	sc.informer = inf
	return sc, nil
}

func serviceInformers(scopes []*serviceScope) []*informer {
	out := make([]*informer, len(scopes))
	for i, sc := range scopes {
		out[i] = &sc.informer
	}
	return out
}

func (k *KubeServices) current() ([]*informer, <-chan struct{}) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return serviceInformers(k.scopes), k.moved
}

// Synced is closed once every informer has listed and every Service is in Objects.
func (k *KubeServices) Synced() <-chan struct{} { return k.synced }

// Run starts the informers and blocks until ctx ends; it returns nil.
func (k *KubeServices) Run(ctx context.Context) error {
	if !k.started.CompareAndSwap(false, true) {
		return errors.New("watch: service source: Run called twice")
	}
	ctx = klog.NewContext(ctx, logr.FromSlogHandler(k.log.Handler()))
	k.mu.Lock()
	k.runCtx = ctx
	for _, sc := range k.scopes {
		sc.informer.start(ctx)
	}
	n := len(k.scopes)
	k.mu.Unlock()
	k.log.Info("watching Services", "informers", n)
	var wg sync.WaitGroup
	wg.Go(func() {
		if infs := untilSynced(ctx, k.current); infs != nil {
			services, _ := k.objects.Len()
			k.log.Info("Services synced", "informers", len(infs), "services", services)
			close(k.synced)
		}
	})
	<-ctx.Done()
	k.move.Lock()
	k.stopped = true
	infs, _ := k.current()
	k.move.Unlock()
	stopInformers(k.log, infs)
	wg.Wait()
	return nil
}

// SetServices moves the watch to these Services, as Kube.SetServices does
// for their slices: the informers of new namespaces start and list, then,
// with no handler running, those of namespaces no longer needed are
// retired, the filter moves and Objects takes the view of every informer
// kept or added from its cache (the Services now watched, and no more).
// If the new informers cannot list before ctx ends, nothing changes.
func (k *KubeServices) SetServices(ctx context.Context, services []render.ServiceKey) error {
	k.move.Lock()
	defer k.move.Unlock()
	if k.stopped {
		return errors.New("watch: service source: stopped")
	}
	f, err := newFilter(k.namespaces, "", services)
	if err != nil {
		return fmt.Errorf("watch: service source: %w", err)
	}
	k.mu.Lock()
	runCtx, current := k.runCtx, slices.Clone(k.scopes)
	k.mu.Unlock()
	var keep, add, drop []*serviceScope
	for _, ns := range f.namespaceScopes() {
		if i := slices.IndexFunc(current, func(sc *serviceScope) bool { return sc.namespace == ns }); i >= 0 {
			keep = append(keep, current[i])
			continue
		}
		sc, err := k.newScope(ns)
		if err != nil {
			return err
		}
		add = append(add, sc)
	}
	for _, sc := range current {
		if !slices.Contains(keep, sc) {
			drop = append(drop, sc)
		}
	}
	if runCtx == nil {
		k.mu.Lock()
		if runCtx = k.runCtx; runCtx == nil { // still before Run
			k.scopes = slices.Concat(keep, add)
			k.filter.Store(f)
			k.mu.Unlock()
			return nil
		}
		k.mu.Unlock()
	}
	if len(add) > 0 {
		for _, sc := range add {
			sc.joining.Store(true)
			sc.informer.start(runCtx)
		}
		wait, cancel := context.WithCancel(ctx)
		stop := context.AfterFunc(runCtx, cancel)
		err := waitSynced(wait, serviceInformers(add))
		stop()
		cancel()
		if err != nil {
			stopInformers(k.log, serviceInformers(add))
			return fmt.Errorf("watch: service source: the new informers did not sync: %w", err)
		}
	}

	k.handlers.Lock()
	for _, sc := range drop {
		sc.retired.Store(true)
	}
	old := k.filter.Swap(f)
	// What only a retired informer held leaves first; then every kept or
	// added informer hands over what it holds now.
	for _, sc := range drop {
		for _, id := range sc.informer.informer.GetStore().ListKeys() {
			if ns, name, err := cache.SplitMetaNamespaceKey(id); err == nil {
				if key := (render.ServiceKey{Namespace: ns, Name: name}); !f.matchService(key) {
					k.objects.SetService(key, nil)
				}
			}
		}
	}
	for _, sc := range slices.Concat(keep, add) {
		for _, obj := range sc.informer.informer.GetStore().List() {
			s, ok := obj.(*corev1.Service)
			if !ok {
				continue
			}
			switch key := (render.ServiceKey{Namespace: s.Namespace, Name: s.Name}); {
			case f.matchService(key):
				k.objects.SetService(key, serviceInfoOf(s))
			case old.matchService(key):
				k.objects.SetService(key, nil)
			}
		}
		sc.joining.Store(false)
	}
	k.handlers.Unlock()

	k.mu.Lock()
	k.scopes = slices.Concat(keep, add)
	close(k.moved)
	k.moved = make(chan struct{})
	k.mu.Unlock()
	stopInformers(k.log, serviceInformers(drop))
	return nil
}

func (k *KubeServices) put(sc *serviceScope, obj any) {
	k.handlers.RLock()
	defer k.handlers.RUnlock()
	s, ok := obj.(*corev1.Service)
	if !ok || sc.joining.Load() || sc.retired.Load() || sc.informer.stale(s.Namespace+"/"+s.Name, s) {
		return
	}
	key := render.ServiceKey{Namespace: s.Namespace, Name: s.Name}
	if !k.filter.Load().matchService(key) {
		return
	}
	k.objects.SetService(key, serviceInfoOf(s))
}

func (k *KubeServices) delete(sc *serviceScope, obj any) {
	k.handlers.RLock()
	defer k.handlers.RUnlock()
	var key render.ServiceKey
	switch o := obj.(type) {
	case *corev1.Service:
		key = render.ServiceKey{Namespace: o.Namespace, Name: o.Name}
	case cache.DeletedFinalStateUnknown:
		ns, name, err := cache.SplitMetaNamespaceKey(o.Key)
		if err != nil {
			return
		}
		key = render.ServiceKey{Namespace: ns, Name: name}
	default:
		return
	}
	if sc.joining.Load() || sc.retired.Load() || sc.informer.stale(key.String(), nil) {
		return
	}
	k.objects.SetService(key, nil)
}
