package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/tools/cache"

	"github.com/edsync/edsync/render"
)

// KubeNodesOptions configures NewKubeNodes.
type KubeNodesOptions struct {
	API     API
	Nodes   NodeOptions
	Objects *Objects
	Logger  *slog.Logger
}

// KubeNodes is the Source of Nodes: one informer on every Node
// (NodeOptions.All), or on the one Node named (a field selector
// metadata.name=NAME, so the API server sends that Node only). Nodes are
// slimmed to their topology labels (SlimNode) and handed to Objects.
type KubeNodes struct {
	opts    NodeOptions
	objects *Objects
	log     *slog.Logger
	started atomic.Bool
	// scopes is the one informer, never moved: a scopeSet runs it as it
	// runs the moving ones of Kube and KubeServices.
	scopes *scopeSet[*nodeScope]
}

type nodeScope struct{ scopeState }

var _ Source = (*KubeNodes)(nil)

// NewKubeNodes sets up the informer; Run starts it.
func NewKubeNodes(o KubeNodesOptions) (*KubeNodes, error) {
	switch {
	case o.API == nil:
		return nil, errors.New("watch: node source: no API")
	case o.Objects == nil:
		return nil, errors.New("watch: node source: no objects")
	case !o.Nodes.enabled():
		return nil, errors.New("watch: node source: neither every Node nor a Node name")
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	k := &KubeNodes{opts: o.Nodes, objects: o.Objects, log: log.With("component", "watch.nodes")}
	var field string
	if !o.Nodes.All {
		field = fields.OneTermEqualSelector(metav1.ObjectNameField, o.Nodes.Name).String()
		k.log = k.log.With("node", o.Nodes.Name)
	}
	health := newAPIHealth(k.log, "Nodes", "nodes")
	lw := observedListWatch(health, func(lo *metav1.ListOptions) { lo.FieldSelector = field }, o.API.Nodes())
	subZone := o.Nodes.subZoneLabel()
	slim := func(obj any) (any, error) {
		if n, ok := obj.(*corev1.Node); ok {
			return SlimNode(n, subZone), nil
		}
		return obj, nil
	}
	inf, err := newInformer(o.API, lw, &corev1.Node{}, slim, health, cache.ResourceEventHandlerFuncs{
		AddFunc:    k.put,
		UpdateFunc: func(_, obj any) { k.put(obj) },
		DeleteFunc: k.delete,
	})
	if err != nil {
		return nil, fmt.Errorf("watch: node source: %w", err)
	}
	k.scopes = newScopeSet(k.log, "Node", []*nodeScope{{scopeState{informer: inf}}})
	return k, nil
}

// Synced is closed once the informer has listed and every Node is in Objects.
func (k *KubeNodes) Synced() <-chan struct{} { return k.scopes.synced }

// Run starts the informer and blocks until ctx ends; it returns nil.
func (k *KubeNodes) Run(ctx context.Context) error {
	if !k.started.CompareAndSwap(false, true) {
		return errors.New("watch: node source: Run called twice")
	}
	k.log.Info("watching Nodes", "all", k.opts.All)
	k.scopes.run(ctx, func(int) {
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
	API        API
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
	api        API
	namespaces []string
	objects    *Objects
	// filter is what the handlers keep; SetServices replaces it.
	filter  atomic.Pointer[filter]
	log     *slog.Logger
	started atomic.Bool
	scopes  *scopeSet[*serviceScope]
}

// serviceScope is the informer of one namespace ("" for all).
type serviceScope struct {
	namespace string
	scopeState
}

var _ Source = (*KubeServices)(nil)

// NewKubeServices sets up the informers; Run starts them.
func NewKubeServices(o KubeServicesOptions) (*KubeServices, error) {
	switch {
	case o.API == nil:
		return nil, errors.New("watch: service source: no API")
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
	k := &KubeServices{api: o.API, namespaces: o.Namespaces, objects: o.Objects, log: log.With("component", "watch.services")}
	k.filter.Store(f)
	var list []*serviceScope
	for _, ns := range f.namespaceScopes() {
		sc, err := k.newScope(ns)
		if err != nil {
			return nil, err
		}
		list = append(list, sc)
	}
	k.scopes = newScopeSet(k.log, "Service", list)
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
	lw := observedListWatch(health, func(*metav1.ListOptions) {}, k.api.Services(ns))
	sc := &serviceScope{namespace: ns}
	inf, err := newInformer(k.api, lw, &corev1.Service{}, slim, health, cache.ResourceEventHandlerFuncs{
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

// Synced is closed once every informer has listed and every Service is in Objects.
func (k *KubeServices) Synced() <-chan struct{} { return k.scopes.synced }

// Run starts the informers and blocks until ctx ends; it returns nil.
func (k *KubeServices) Run(ctx context.Context) error {
	if !k.started.CompareAndSwap(false, true) {
		return errors.New("watch: service source: Run called twice")
	}
	infs, _ := k.scopes.current()
	k.log.Info("watching Services", "informers", len(infs))
	k.scopes.run(ctx, func(n int) {
		services, _ := k.objects.Len()
		k.log.Info("Services synced", "informers", n, "services", services)
	})
	return nil
}

// SetServices moves the watch to these Services, as Kube.SetServices does
// for their slices: the informers of new namespaces start and list, then,
// with no handler running, those of namespaces no longer needed are
// retired, the filter moves and Objects takes the view of every informer
// kept or added from its cache (the Services now watched, and no more).
// If the new informers cannot list before ctx ends, nothing changes.
func (k *KubeServices) SetServices(ctx context.Context, services []render.ServiceKey) error {
	f, err := newFilter(k.namespaces, "", services)
	if err != nil {
		return fmt.Errorf("watch: service source: %w", err)
	}
	plan := func(current []*serviceScope) (keep, add []*serviceScope, err error) {
		for _, ns := range f.namespaceScopes() {
			if i := slices.IndexFunc(current, func(sc *serviceScope) bool { return sc.namespace == ns }); i >= 0 {
				keep = append(keep, current[i])
				continue
			}
			sc, err := k.newScope(ns)
			if err != nil {
				return nil, nil, err
			}
			add = append(add, sc)
		}
		return keep, add, nil
	}
	handOver := func(keep, add, drop []*serviceScope) {
		old := k.filter.Swap(f)
		// What only a retired informer held leaves first; then every kept
		// or added informer hands over what it holds now.
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
		}
	}
	if err := k.scopes.move(ctx, plan, func() { k.filter.Store(f) }, handOver); err != nil {
		return fmt.Errorf("watch: service source: %w", err)
	}
	return nil
}

func (k *KubeServices) put(sc *serviceScope, obj any) {
	k.scopes.handlers.RLock()
	defer k.scopes.handlers.RUnlock()
	s, ok := obj.(*corev1.Service)
	if !ok || sc.idle() || sc.informer.stale(s.Namespace+"/"+s.Name, s) {
		return
	}
	key := render.ServiceKey{Namespace: s.Namespace, Name: s.Name}
	if !k.filter.Load().matchService(key) {
		return
	}
	k.objects.SetService(key, serviceInfoOf(s))
}

func (k *KubeServices) delete(sc *serviceScope, obj any) {
	k.scopes.handlers.RLock()
	defer k.scopes.handlers.RUnlock()
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
	if sc.idle() || sc.informer.stale(key.String(), nil) {
		return
	}
	k.objects.SetService(key, nil)
}
