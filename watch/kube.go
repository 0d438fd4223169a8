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

	// move serializes SetServices calls, and Run's stop with them.
	move    sync.Mutex
	stopped bool // Run has returned: no more moves
	// handlers is held (read) by every event handler for its whole body,
	// and (write) by a move while it hands the Store over to the new
	// scopes, so that no event of a scope lands half-way.
	handlers sync.RWMutex
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
	// list, retired once a move has replaced it: the handler of either
	// writes nothing. The Store takes a joining scope's view from its
	// cache when the move completes (see SetServices).
	joining, retired atomic.Bool
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

// informer is one client-go informer with the registration of its handler,
// and, once started, how to stop it.
type informer struct {
	informer cache.SharedIndexInformer
	reg      cache.ResourceEventHandlerRegistration
	cancel   context.CancelFunc
	done     chan struct{}
}

// stale reports whether an event about obj (stored under key, nil for a
// delete) is older than what the informer's cache holds now. The cache is
// updated before each event is handed to the handler, with the same
// object, so an event whose object is no longer the cached one has a newer
// one queued behind it. Applying it would put an older version back, for
// a moment, over the view a move took from the cache (see SetServices).
func (inf *informer) stale(key string, obj any) bool {
	got, ok, err := inf.informer.GetStore().GetByKey(key)
	if err != nil {
		return false
	}
	if obj == nil {
		return ok // deleted, then created again
	}
	return !ok || got != obj
}

// start runs the informer until ctx ends or stopInformers.
func (inf *informer) start(ctx context.Context) {
	ctx, inf.cancel = context.WithCancel(ctx)
	inf.done = make(chan struct{})
	go func() {
		defer close(inf.done)
		inf.informer.RunWithContext(ctx)
	}()
}

// waitSynced waits until every informer's handler has handled its initial
// list, or ctx ends.
func waitSynced(ctx context.Context, infs []*informer) error {
	for _, inf := range infs {
		select {
		case <-inf.reg.HasSyncedChecker().Done():
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// stopInformers stops started informers and waits (briefly) for them.
// client-go's streaming list sleeps out its retry backoff (up to ~30 s)
// without watching for cancellation, so an informer that cannot reach the
// API server may take that long to stop: longer than a Pod's grace period.
// Wait briefly, then let such an informer finish on its own.
func stopInformers(log *slog.Logger, infs []*informer) {
	for _, inf := range infs {
		inf.cancel()
	}
	grace := time.After(informerStopGrace)
	for _, inf := range infs {
		select {
		case <-inf.done:
		case <-grace:
			log.Debug("an informer is still in client-go's retry backoff; not waiting for it")
			return
		}
	}
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
		ks.informer.start(ctx)
	}
	k.mu.Unlock()
	k.log.Info("watching EndpointSlices", "informers", len(scopes))
	var wg sync.WaitGroup
	wg.Go(func() {
		if infs := untilSynced(ctx, k.current); infs != nil {
			k.log.Info("EndpointSlices synced", "informers", len(infs), "slices", k.store.Len())
			close(k.synced)
		}
	})
	<-ctx.Done()
	// A move in progress sees ctx end and gives up; none starts after.
	k.move.Lock()
	k.stopped = true
	k.mu.Lock()
	scopes = k.scopes
	k.mu.Unlock()
	k.move.Unlock()
	stopInformers(k.log, informersOf(scopes))
	wg.Wait()
	return nil
}

// untilSynced waits until the informers current returns have all listed,
// starting over whenever the channel it returns with them is closed (a
// move replaced them). It returns those informers, or nil if ctx ends.
func untilSynced(ctx context.Context, current func() ([]*informer, <-chan struct{})) []*informer {
	for {
		infs, moved := current()
		wait, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-moved:
				cancel()
			case <-wait.Done():
			}
		}()
		err := waitSynced(wait, infs)
		cancel()
		switch {
		case err == nil:
			return infs
		case ctx.Err() != nil:
			return nil
		}
	}
}

// current returns the running scopes' informers and the channel closed by
// the next move.
func (k *Kube) current() ([]*informer, <-chan struct{}) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return informersOf(k.scopes), k.moved
}

// informersOf returns the scopes' informers.
func informersOf(scopes []*kubeScope) []*informer {
	out := make([]*informer, len(scopes))
	for i, ks := range scopes {
		out[i] = &ks.informer
	}
	return out
}

// SetServices moves the watch to these Services (Namespaces and Selector
// stay), without a gap: the informers of the namespaces whose selector
// changes are started, and once they have listed, the Store takes their
// view and those they replace stop; a namespace whose Services stay keeps
// its informer, and nothing is listed again there. The slices of Services
// no longer watched leave the Store (their Services are notified). It
// returns once the move is done, or with an error if ctx ends first (the
// watch and the Store then stay as they were). Before Run, it only changes
// what Run will start.
func (k *Kube) SetServices(ctx context.Context, services []render.ServiceKey) error {
	k.move.Lock()
	defer k.move.Unlock()
	if k.stopped {
		return errors.New("watch: kube source: stopped")
	}
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
		k.log.Info("moving the EndpointSlice watch", "informers_added", len(add), "informers_stopping", len(drop))
		for _, ks := range add {
			ks.joining.Store(true)
			ks.informer.start(runCtx)
		}
		wait, cancel := context.WithCancel(ctx)
		stop := context.AfterFunc(runCtx, cancel)
		err := waitSynced(wait, informersOf(add))
		stop()
		cancel()
		if err != nil {
			stopInformers(k.log, informersOf(add))
			return fmt.Errorf("watch: kube source: the new informers did not sync: %w", err)
		}
	}

	// The hand-over, with no event handler running: the replaced scopes
	// write nothing more (an event they still hold is older than what the
	// new scopes have listed), and the Store takes the new scopes' view
	// from their caches, which are at least as new as any event they have
	// delivered. Their later events apply on top.
	k.handlers.Lock()
	for _, ks := range drop {
		ks.retired.Store(true)
	}
	k.filter.Store(f)
	listed := map[string]bool{} // namespace/name of every slice the new scopes hold
	for _, ks := range add {
		for _, obj := range ks.informer.informer.GetStore().List() {
			if sl, ok := obj.(*discoveryv1.EndpointSlice); ok && f.match(sl) {
				id := sl.Namespace + "/" + sl.Name
				listed[id] = true
				k.store.Upsert(id, sl)
			}
		}
		ks.joining.Store(false)
	}
	addedNS := map[string]bool{}
	for _, ks := range add {
		addedNS[ks.namespace] = true
	}
	k.store.Retain(func(sl *discoveryv1.EndpointSlice) bool {
		if !f.match(sl) {
			return false
		}
		// In a namespace a new scope serves, what it does not hold is
		// gone (or was never its): a replaced scope may have missed the
		// delete. "" serves every namespace.
		if addedNS[sl.Namespace] || addedNS[""] {
			return listed[sl.Namespace+"/"+sl.Name]
		}
		return true
	})
	k.handlers.Unlock()

	k.mu.Lock()
	k.scopes = slices.Concat(keep, add)
	close(k.moved)
	k.moved = make(chan struct{})
	k.mu.Unlock()
	stopInformers(k.log, informersOf(drop))
	return nil
}

// informerStopGrace bounds how long Run waits for informers after cancel.
const informerStopGrace = 500 * time.Millisecond

// The handlers only write the Store: the pipeline does the rest.

func (k *Kube) onAdd(ks *kubeScope, obj any) {
	k.handlers.RLock()
	defer k.handlers.RUnlock()
	sl, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok || ks.idle() || ks.informer.stale(sl.Namespace+"/"+sl.Name, sl) {
		return
	}
	k.put(sl)
}

func (k *Kube) onUpdate(ks *kubeScope, oldObj, newObj any) {
	k.handlers.RLock()
	defer k.handlers.RUnlock()
	sl, ok := newObj.(*discoveryv1.EndpointSlice)
	if !ok || ks.idle() || ks.informer.stale(sl.Namespace+"/"+sl.Name, sl) {
		return
	}
	if old, ok := oldObj.(*discoveryv1.EndpointSlice); ok && old.ResourceVersion != "" && old.ResourceVersion == sl.ResourceVersion {
		return
	}
	k.put(sl)
}

func (k *Kube) onDelete(ks *kubeScope, obj any) {
	k.handlers.RLock()
	defer k.handlers.RUnlock()
	if ks.idle() {
		return
	}
	var id string
	switch o := obj.(type) {
	case *discoveryv1.EndpointSlice:
		id = o.Namespace + "/" + o.Name
	case cache.DeletedFinalStateUnknown:
		// The watch missed the delete; the relist found the object gone.
		// Key is namespace/name, the Store's id.
		id = o.Key
	default:
		return
	}
	if !ks.informer.stale(id, nil) {
		k.store.Delete(id)
	}
}

// idle reports whether the scope's events are not the Store's: it is
// joining or retired.
func (ks *kubeScope) idle() bool { return ks.joining.Load() || ks.retired.Load() }

func (k *Kube) put(sl *discoveryv1.EndpointSlice) {
	id := sl.Namespace + "/" + sl.Name
	if !k.filter.Load().match(sl) {
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
