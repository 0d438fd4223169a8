package watch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
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
	client     kubernetes.Interface
	namespaces []string
	selector   string
	store      *Store
	// filter is what the handlers keep; SetServices replaces it.
	filter  atomic.Pointer[filter]
	log     *slog.Logger
	synced  chan struct{}
	started atomic.Bool

	// move serializes SetServices calls.
	move sync.Mutex
	// mu guards scopes, runCtx and moved.
	mu     sync.Mutex
	scopes []*kubeScope
	runCtx context.Context // Run's, nil until Run
	// moved is closed (and replaced) when SetServices changes scopes.
	moved chan struct{}
}

// kubeScope is one informer: a namespace and selector.
type kubeScope struct {
	scope
	informer informer
	health   *apiHealth
	// joining is set while a scope started by SetServices makes its first
	// list: its events for slices the running scopes also cover are left
	// to those (they are current; a list may be older than their last
	// event), so that no slice goes back to an older version.
	joining atomic.Bool
	// target is the filter of the move that started a joining scope (its
	// own slices pass it, not yet the running filter), others the filter
	// of the scopes running before it (what they keep current).
	target, others *filter
	cancel         context.CancelFunc
	done           chan struct{}
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
		client:     o.Client,
		namespaces: o.Namespaces,
		selector:   o.Selector,
		store:      o.Store,
		log:        log.With("component", "watch.kube"),
		synced:     make(chan struct{}),
		moved:      make(chan struct{}),
	}
	k.filter.Store(f)
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
		AddFunc:    func(obj any) { k.onAdd(ks, obj) },
		UpdateFunc: func(oldObj, newObj any) { k.onUpdate(ks, oldObj, newObj) },
		DeleteFunc: func(obj any) { k.onDelete(ks, obj) },
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
	ctx = klog.NewContext(ctx, logr.FromSlogHandler(k.log.Handler()))
	k.mu.Lock()
	k.runCtx = ctx
	scopes := slices.Clone(k.scopes)
	for _, ks := range scopes {
		ks.start(ctx)
	}
	k.mu.Unlock()
	k.log.Info("watching EndpointSlices", "informers", len(scopes))
	go k.waitFirstSync(ctx)
	<-ctx.Done()
	k.mu.Lock()
	scopes = k.scopes
	k.mu.Unlock()
	stopScopes(k.log, scopes)
	return nil
}

// waitFirstSync closes synced once every scope has listed: those of the
// latest SetServices if one ran meanwhile.
func (k *Kube) waitFirstSync(ctx context.Context) {
	for {
		k.mu.Lock()
		scopes, moved := slices.Clone(k.scopes), k.moved
		k.mu.Unlock()
		wait, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-moved:
				cancel()
			case <-wait.Done():
			}
		}()
		err := waitSynced(wait, scopes)
		cancel()
		switch {
		case err == nil:
			k.log.Info("EndpointSlices synced", "informers", len(scopes), "slices", k.store.Len())
			close(k.synced)
			return
		case ctx.Err() != nil:
			return
		}
	}
}

// start runs the scope's informer until ctx ends or stop.
func (ks *kubeScope) start(ctx context.Context) {
	ctx, ks.cancel = context.WithCancel(ctx)
	ks.done = make(chan struct{})
	go func() {
		defer close(ks.done)
		ks.informer.informer.RunWithContext(ctx)
	}()
}

// waitSynced waits until every scope's handler has handled its initial
// list, or ctx ends.
func waitSynced(ctx context.Context, scopes []*kubeScope) error {
	for _, ks := range scopes {
		select {
		case <-ks.informer.reg.HasSyncedChecker().Done():
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// stopScopes stops the scopes' informers and waits (briefly) for them.
// client-go's streaming list sleeps out its retry backoff (up to ~30 s)
// without watching for cancellation, so an informer that cannot reach
// the API server may take that long to stop: longer than a Pod's grace
// period. Wait briefly, then let such an informer finish on its own.
func stopScopes(log *slog.Logger, scopes []*kubeScope) {
	for _, ks := range scopes {
		ks.cancel()
	}
	grace := time.After(informerStopGrace)
	for _, ks := range scopes {
		select {
		case <-ks.done:
		case <-grace:
			log.Debug("an informer is still in client-go's retry backoff; not waiting for it")
			return
		}
	}
}

// SetServices moves the watch to these Services (Namespaces and Selector
// stay), without a gap: the informers of the namespaces whose selector
// changes are started, and once they have listed, those they replace stop;
// a namespace whose Services stay keeps its informer, and nothing is listed
// again there. The slices of Services no longer watched leave the Store
// (their Services are notified). It returns once the move is done, or with
// an error if ctx ends first (the watch then stays as it was). Before Run,
// it only changes what Run will start.
func (k *Kube) SetServices(ctx context.Context, services []render.ServiceKey) error {
	k.move.Lock()
	defer k.move.Unlock()
	f, err := newFilter(k.namespaces, k.selector, services)
	if err != nil {
		return fmt.Errorf("watch: kube source: %w", err)
	}
	want, err := f.scopes()
	if err != nil {
		return fmt.Errorf("watch: kube source: %w", err)
	}
	k.mu.Lock()
	runCtx, current := k.runCtx, slices.Clone(k.scopes)
	k.mu.Unlock()
	// Only SetServices changes scopes, and one at a time: current stays
	// right while it runs; runCtx may be set meanwhile (checked below).
	var keep, add, drop []*kubeScope
	for _, sc := range want {
		if i := slices.IndexFunc(current, func(ks *kubeScope) bool { return ks.scope == sc }); i >= 0 {
			keep = append(keep, current[i])
			continue
		}
		ks, err := k.newScope(k.client, sc)
		if err != nil {
			return fmt.Errorf("watch: kube source: namespace %q: %w", sc.namespace, err)
		}
		add = append(add, ks)
	}
	for _, ks := range current {
		if !slices.Contains(keep, ks) {
			drop = append(drop, ks)
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
		for _, ks := range add {
			ks.target, ks.others = f, k.filter.Load()
			ks.joining.Store(true)
			ks.start(runCtx)
		}
		k.log.Info("moving the EndpointSlice watch", "informers_added", len(add), "informers_stopping", len(drop))
		wait, cancel := context.WithCancel(ctx)
		stop := context.AfterFunc(runCtx, cancel)
		err := waitSynced(wait, add)
		stop()
		cancel()
		if err != nil {
			stopScopes(k.log, add)
			return fmt.Errorf("watch: kube source: the new informers did not sync: %w", err)
		}
	}
	k.filter.Store(f)
	for _, ks := range add {
		ks.joining.Store(false)
	}
	k.mu.Lock()
	k.scopes = slices.Concat(keep, add)
	close(k.moved)
	k.moved = make(chan struct{})
	k.mu.Unlock()
	stopScopes(k.log, drop)
	k.store.Retain(f.match)
	return nil
}

// informerStopGrace bounds how long Run waits for informers after cancel.
const informerStopGrace = 500 * time.Millisecond

// The handlers only write the Store: the pipeline does the rest.

func (k *Kube) onAdd(ks *kubeScope, obj any) {
	sl, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok || k.leftToOthers(ks, sl) {
		return
	}
	k.put(ks, sl)
}

func (k *Kube) onUpdate(ks *kubeScope, oldObj, newObj any) {
	sl, ok := newObj.(*discoveryv1.EndpointSlice)
	if !ok || k.leftToOthers(ks, sl) {
		return
	}
	if old, ok := oldObj.(*discoveryv1.EndpointSlice); ok && old.ResourceVersion != "" && old.ResourceVersion == sl.ResourceVersion {
		return
	}
	k.put(ks, sl)
}

func (k *Kube) onDelete(ks *kubeScope, obj any) {
	switch o := obj.(type) {
	case *discoveryv1.EndpointSlice:
		if !k.leftToOthers(ks, o) {
			k.store.Delete(o.Namespace + "/" + o.Name)
		}
	case cache.DeletedFinalStateUnknown:
		// The watch missed the delete; the relist found the object gone.
		// Key is namespace/name, the Store's id.
		if sl, ok := o.Obj.(*discoveryv1.EndpointSlice); !ok || !k.leftToOthers(ks, sl) {
			k.store.Delete(o.Key)
		}
	}
}

// leftToOthers reports whether an event of a joining scope is about a slice
// the running scopes cover: they keep it current until the joining scope
// has listed.
func (k *Kube) leftToOthers(ks *kubeScope, sl *discoveryv1.EndpointSlice) bool {
	return ks.joining.Load() && ks.others.match(sl)
}

func (k *Kube) put(ks *kubeScope, sl *discoveryv1.EndpointSlice) {
	id := sl.Namespace + "/" + sl.Name
	f := k.filter.Load()
	if ks.joining.Load() {
		f = ks.target
	}
	if !f.match(sl) {
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
