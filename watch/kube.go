package watch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edsync/edsync/render"
	"github.com/go-logr/logr"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	apiwatch "k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// Source feeds a Store.
type Source interface {
	// Run feeds the store until ctx ends; it returns nil on cancel.
	Run(ctx context.Context) error
	// Synced is closed once the store holds the source's first full view.
	Synced() <-chan struct{}
}

// KubeOptions configures NewKube.
type KubeOptions struct {
	Client kubernetes.Interface
	// Namespaces to watch; empty means all. Each gets its own informer.
	Namespaces []string
	// Selector is a label selector on EndpointSlices, sent to the API server.
	Selector string
	// Services, if set, limits the watch to these Services: each of their
	// namespaces gets one informer whose selector adds
	// `kubernetes.io/service-name in (...)`, so the API server sends only
	// their slices. With Namespaces also set, every Service must be in one.
	Services []render.ServiceKey
	Store    *Store
	Logger   *slog.Logger
}

// Kube is the Source that watches discovery.k8s.io/v1 EndpointSlices with
// client-go informers (resync 0, WatchList where the server has it, a
// transform that slims objects, see Slim).
type Kube struct {
	store   *Store
	filter  *filter
	log     *slog.Logger
	synced  chan struct{}
	started atomic.Bool
	scopes  []*kubeScope
}

// kubeScope is one informer: a namespace and selector.
type kubeScope struct {
	scope
	informer informer
	health   *apiHealth
}

var _ Source = (*Kube)(nil)

// NewKube validates o and sets up the informers; Run starts them.
func NewKube(o KubeOptions) (*Kube, error) {
	if o.Client == nil {
		return nil, errors.New("watch: kube source: no client")
	}
	if o.Store == nil {
		return nil, errors.New("watch: kube source: no store")
	}
	f, err := newFilter(o.Namespaces, o.Selector, o.Services)
	if err != nil {
		return nil, fmt.Errorf("watch: kube source: %w", err)
	}
	scopes, err := f.scopes()
	if err != nil {
		return nil, fmt.Errorf("watch: kube source: %w", err)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	k := &Kube{
		store:  o.Store,
		filter: f,
		log:    log.With("component", "watch.kube"),
		synced: make(chan struct{}),
	}
	for _, sc := range scopes {
		ks, err := k.newScope(o.Client, sc)
		if err != nil {
			return nil, fmt.Errorf("watch: kube source: namespace %q: %w", sc.namespace, err)
		}
		k.scopes = append(k.scopes, ks)
	}
	return k, nil
}

func (k *Kube) newScope(client kubernetes.Interface, sc scope) (*kubeScope, error) {
	log := k.log.With("namespace", displayNamespace(sc.namespace), "selector", sc.selector)
	ks := &kubeScope{scope: sc, health: newAPIHealth(log, "EndpointSlices", "endpointslices.discovery.k8s.io")}
	api := client.DiscoveryV1().EndpointSlices(sc.namespace)
	lw := observedListWatch(ks.health, func(o *metav1.ListOptions) { o.LabelSelector = sc.selector },
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return api.List(ctx, o) },
		api.Watch)
	inf, err := newInformer(client, lw, &discoveryv1.EndpointSlice{}, transform, ks.health, cache.ResourceEventHandlerFuncs{
		AddFunc:    k.onAdd,
		UpdateFunc: k.onUpdate,
		DeleteFunc: k.onDelete,
	})
	if err != nil {
		return nil, err
	}
	ks.informer = inf
	return ks, nil
}

// observedListWatch wraps list and watch calls so that health sees each
// outcome, with tweak applied to the options of both.
func observedListWatch(h *apiHealth, tweak func(*metav1.ListOptions),
	list func(context.Context, metav1.ListOptions) (runtime.Object, error),
	watch func(context.Context, metav1.ListOptions) (apiwatch.Interface, error),
) *cache.ListWatch {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			tweak(&o)
			obj, err := list(ctx, o)
			h.observe(ctx, "list", err)
			return obj, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (apiwatch.Interface, error) {
			tweak(&o)
			w, err := watch(ctx, o)
			h.observe(ctx, "watch", err)
			return w, err
		},
	}
}

// informer is one client-go informer with the registration of its handler.
type informer struct {
	informer cache.SharedIndexInformer
	reg      cache.ResourceEventHandlerRegistration
}

// newInformer makes an informer as every source here wants it: resync 0,
// WatchList where the server has it, objects slimmed by transform before
// they enter its cache, watch errors logged by health.
func newInformer(client kubernetes.Interface, lw *cache.ListWatch, obj runtime.Object, transform cache.TransformFunc,
	health *apiHealth, handler cache.ResourceEventHandler,
) (informer, error) {
	inf := cache.NewSharedIndexInformerWithOptions(
		// Passing the client lets the reflector use WatchList (streamed
		// initial list) when the client supports it, as generated
		// informers do.
		cache.ToListWatcherWithWatchListSemantics(lw, client),
		obj,
		cache.SharedIndexInformerOptions{ResyncPeriod: 0},
	)
	if err := inf.SetTransform(transform); err != nil {
		return informer{}, err
	}
	if err := inf.SetWatchErrorHandlerWithContext(health.watchError); err != nil {
		return informer{}, err
	}
	reg, err := inf.AddEventHandler(handler)
	if err != nil {
		return informer{}, err
	}
	return informer{informer: inf, reg: reg}, nil
}

// runInformers runs the informers until ctx ends, closing synced once every
// handler has handled its informer's initial list (after calling onSynced),
// then waits (briefly) for them to stop. client-go's own logs for these
// informers go to log (klog verbosity V(n) becomes slog level -n).
func runInformers(ctx context.Context, log *slog.Logger, infs []informer, synced chan struct{}, onSynced func()) {
	ctx = klog.NewContext(ctx, logr.FromSlogHandler(log.Handler()))
	var wg sync.WaitGroup
	for _, inf := range infs {
		wg.Go(func() { inf.informer.RunWithContext(ctx) })
	}
	wg.Go(func() {
		for _, inf := range infs {
			select {
			case <-inf.reg.HasSyncedChecker().Done():
			case <-ctx.Done():
				return
			}
		}
		onSynced()
		close(synced)
	})
	<-ctx.Done()
	// client-go's streaming list sleeps out its retry backoff (up to ~30 s)
	// without watching for cancellation, so an informer that cannot reach
	// the API server may take that long to stop: longer than a Pod's grace
	// period. Wait briefly, then let such an informer finish on its own.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(informerStopGrace):
		log.Debug("an informer is still in client-go's retry backoff; not waiting for it")
	}
}

// Synced is closed once every informer has listed and its handler has
// put the initial objects into the Store.
func (k *Kube) Synced() <-chan struct{} { return k.synced }

// Run starts the informers and blocks until ctx ends, then waits (briefly)
// for them to stop and returns nil. client-go's own logs for these informers go to
// the Logger (klog verbosity V(n) becomes slog level -n).
func (k *Kube) Run(ctx context.Context) error {
	if !k.started.CompareAndSwap(false, true) {
		return errors.New("watch: kube source: Run called twice")
	}
	infs := make([]informer, len(k.scopes))
	for i, ks := range k.scopes {
		infs[i] = ks.informer
	}
	k.log.Info("watching EndpointSlices", "informers", len(k.scopes))
	runInformers(ctx, k.log, infs, k.synced, func() {
		k.log.Info("EndpointSlices synced", "informers", len(k.scopes), "slices", k.store.Len())
	})
	return nil
}

// informerStopGrace bounds how long Run waits for informers after cancel.
const informerStopGrace = 500 * time.Millisecond

// The handlers only write the Store: the pipeline does the rest.

func (k *Kube) onAdd(obj any) {
	sl, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return
	}
	k.put(sl)
}

func (k *Kube) onUpdate(oldObj, newObj any) {
	sl, ok := newObj.(*discoveryv1.EndpointSlice)
	if !ok {
		return
	}
	if old, ok := oldObj.(*discoveryv1.EndpointSlice); ok && old.ResourceVersion != "" && old.ResourceVersion == sl.ResourceVersion {
		return
	}
	k.put(sl)
}

func (k *Kube) onDelete(obj any) {
	switch o := obj.(type) {
	case *discoveryv1.EndpointSlice:
		k.store.Delete(o.Namespace + "/" + o.Name)
	case cache.DeletedFinalStateUnknown:
		// The watch missed the delete; the relist found the object gone.
		// Key is namespace/name, the Store's id.
		k.store.Delete(o.Key)
	}
}

func (k *Kube) put(sl *discoveryv1.EndpointSlice) {
	id := sl.Namespace + "/" + sl.Name
	if !k.filter.match(sl) {
		// The API server applies the same filter; an object that no
		// longer matches (a label change seen by a watch that does not
		// filter) leaves the Store.
		k.store.Delete(id)
		return
	}
	if _, ok := render.ServiceOf(sl); !ok {
		k.log.Debug("EndpointSlice has no "+discoveryv1.LabelServiceName+" label; skipped", "slice", id)
	}
	k.store.Upsert(id, sl)
}

// transform is the informer's transform: it slims EndpointSlices before
// they enter the informer's cache, so only the slim copy stays in memory.
func transform(obj any) (any, error) {
	if sl, ok := obj.(*discoveryv1.EndpointSlice); ok {
		return Slim(sl), nil
	}
	return obj, nil
}

// apiHealth makes failures to reach the API server visible: client-go's
// reflector retries them with backoff and logs most at high klog
// verbosity. It logs the first failure of a run at Warn, later ones
// (each after a backoff of up to ~30s) at Warn with a count, and the
// recovery at Info.
type apiHealth struct {
	log *slog.Logger
	// what is the resource listed, as logs name it ("EndpointSlices");
	// resource its RBAC name ("endpointslices.discovery.k8s.io").
	what, resource string

	mu       sync.Mutex
	failures int
	lastErr  error
}

func newAPIHealth(log *slog.Logger, what, resource string) *apiHealth {
	return &apiHealth{log: log, what: what, resource: resource}
}

func (h *apiHealth) observe(ctx context.Context, verb string, err error) {
	if ctx.Err() != nil {
		return // shutting down
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		if h.failures > 0 {
			h.log.Info("API server reachable again", "verb", verb, "failures", h.failures)
		}
		h.failures, h.lastErr = 0, nil
		return
	}
	h.failures++
	h.lastErr = err
	if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
		// A restarted API server refuses everyone for a moment, until its
		// RBAC caches fill; past that, retrying will not fix it, and
		// without watch the reflector keeps relisting, so files arrive
		// late, not never. Say what to grant once it persists.
		level := slog.LevelWarn
		if h.failures >= 3 {
			level = slog.LevelError
		}
		h.log.Log(ctx, level, "API server refused to "+verb+" "+h.what+"; if this persists, grant list and watch on "+h.resource+" (see examples/kubernetes/rbac.yaml)",
			"err", err, "failures", h.failures)
		return
	}
	h.log.Warn("cannot "+verb+" "+h.what+"; retrying with backoff", "err", err, "failures", h.failures)
}

// watchError is the reflector's WatchErrorHandler: it is called when a
// list-and-watch cycle ends with an error, before a relist. Call failures
// were logged by observe already.
func (h *apiHealth) watchError(ctx context.Context, _ *cache.Reflector, err error) {
	h.mu.Lock()
	logged := h.lastErr != nil && errors.Is(err, h.lastErr)
	h.mu.Unlock()
	switch {
	case ctx.Err() != nil, logged, errors.Is(err, io.EOF):
		h.log.Debug("list and watch ended; relisting", "err", err)
	case apierrors.IsResourceExpired(err), apierrors.IsGone(err):
		h.log.Debug("watch expired; relisting", "err", err)
	default:
		h.log.Warn("list and watch failed; relisting", "err", err)
	}
}

func displayNamespace(ns string) string {
	if ns == "" {
		return "(all)"
	}
	return ns
}
