package watch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	apiwatch "k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/edsync/edsync/render"
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
	API API
	// Namespaces to watch; empty means all. Each gets its own informer.
	Namespaces []string
	// Selector is a label selector on EndpointSlices, sent to the API server.
	Selector string
	// Services, if set, limits the watch to these Services: each of their
	// namespaces gets one informer whose selector adds
	// `kubernetes.io/service-name in (...)`, so the API server sends only
	// their slices. With Namespaces also set, every Service must be in one.
	Services []render.ServiceKey
	// Source names the source (Kubernetes cluster) when there are several:
	// each slice is labelled render.LabelSource with it, and its Store id
	// is prefixed with it, so that two clusters' slices of one name do not
	// meet. Empty for one source.
	Source string
	Store  *Store
	Logger *slog.Logger
	// Clock times the API server's failures (Health); nil is time.Now.
	Clock func() time.Time
	// MCS reads the EndpointSlices of ServiceImports too (KEP-1645): a
	// slice labelled LabelMCSServiceName is its Service's, and placed by
	// its LabelMCSSourceCluster when that names one of Sources (else as
	// this source's).
	MCS     bool
	Sources []string
}

// Kube is the Source that watches discovery.k8s.io/v1 EndpointSlices with
// client-go informers (resync 0, WatchList where the server has it, a
// transform that slims objects, see Slim).
type Kube struct {
	api        API
	namespaces []string
	selector   string
	source     string
	mcs        bool
	sources    []string // the known source names, for MCS
	clock      func() time.Time
	store      *Store
	// dropped: Drop took the slices out of the Store; the handlers write
	// nothing until Restore (under scopes.handlers).
	dropped bool
	// filter is what the handlers keep; SetServices replaces it.
	filter  atomic.Pointer[filter]
	log     *slog.Logger
	started atomic.Bool
	scopes  *scopeSet[*kubeScope]
}

// kubeScope is one informer: a namespace and selector.
type kubeScope struct {
	scope
	scopeState
	health *apiHealth
}

var _ Source = (*Kube)(nil)

// NewKube validates o and sets up the informers; Run starts them.
func NewKube(o KubeOptions) (*Kube, error) {
	if o.API == nil {
		return nil, errors.New("watch: kube source: no API")
	}
	if o.Store == nil {
		return nil, errors.New("watch: kube source: no store")
	}
	f, err := newFilter(o.Namespaces, o.Selector, o.Services)
	if err != nil {
		return nil, fmt.Errorf("watch: kube source: %w", err)
	}
	f.mcs = o.MCS
	scopes, err := f.scopes()
	if err != nil {
		return nil, fmt.Errorf("watch: kube source: %w", err)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	k := &Kube{
		api:        o.API,
		namespaces: o.Namespaces,
		selector:   o.Selector,
		source:     o.Source,
		mcs:        o.MCS,
		sources:    o.Sources,
		clock:      o.Clock,
		store:      o.Store,
		log:        log.With("component", "watch.kube"),
	}
	if o.Source != "" {
		k.log = k.log.With("source", o.Source)
	}
	if k.clock == nil {
		k.clock = time.Now
	}
	k.filter.Store(f)
	var list []*kubeScope
	for _, sc := range scopes {
		ks, err := k.newScope(sc)
		if err != nil {
			return nil, fmt.Errorf("watch: kube source: namespace %q: %w", sc.namespace, err)
		}
		list = append(list, ks)
	}
	k.scopes = newScopeSet(k.log, "EndpointSlice", list)
	return k, nil
}

func (k *Kube) newScope(sc scope) (*kubeScope, error) {
	log := k.log.With("namespace", displayNamespace(sc.namespace), "selector", sc.selector)
	ks := &kubeScope{scope: sc, health: newAPIHealth(log, "EndpointSlices", "endpointslices.discovery.k8s.io")}
	ks.health.now = k.clock
	api := k.api.EndpointSlices(sc.namespace)
	lw := observedListWatch(ks.health, func(o *metav1.ListOptions) { o.LabelSelector = sc.selector }, api)
	inf, err := newInformer(k.api, lw, &discoveryv1.EndpointSlice{}, k.transform, ks.health, cache.ResourceEventHandlerFuncs{
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
func observedListWatch(h *apiHealth, tweak func(*metav1.ListOptions), api ListWatch) *cache.ListWatch {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			tweak(&o)
			obj, err := api.List(ctx, o)
			h.observe(ctx, "list", err)
			return obj, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (apiwatch.Interface, error) {
			tweak(&o)
			w, err := api.Watch(ctx, o)
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
func newInformer(api API, lw *cache.ListWatch, obj runtime.Object, transform cache.TransformFunc,
	health *apiHealth, handler cache.ResourceEventHandler,
) (informer, error) {
	inf := cache.NewSharedIndexInformerWithOptions(
		// Passing the client lets the reflector use WatchList (streamed
		// initial list) when the client supports it, as generated
		// informers do.
		cache.ToListWatcherWithWatchListSemantics(lw, api),
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

// Synced is closed once every informer has listed and its handler has
// put the initial objects into the Store.
func (k *Kube) Synced() <-chan struct{} { return k.scopes.synced }

// Run starts the informers and blocks until ctx ends, then waits (briefly)
// for them to stop and returns nil. client-go's own logs for these informers go to
// the Logger (klog verbosity V(n) becomes slog level -n).
func (k *Kube) Run(ctx context.Context) error {
	if !k.started.CompareAndSwap(false, true) {
		return errors.New("watch: kube source: Run called twice")
	}
	infs, _ := k.scopes.current()
	k.log.Info("watching EndpointSlices", "informers", len(infs))
	k.scopes.run(ctx, func(n int) {
		k.log.Info("EndpointSlices synced", "informers", n, "slices", k.store.Len())
	})
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
	f, err := newFilter(k.namespaces, k.selector, services)
	if err != nil {
		return fmt.Errorf("watch: kube source: %w", err)
	}
	f.mcs = k.mcs
	want, err := f.scopes()
	if err != nil {
		return fmt.Errorf("watch: kube source: %w", err)
	}
	plan := func(current []*kubeScope) (keep, add []*kubeScope, err error) {
		for _, sc := range want {
			if i := slices.IndexFunc(current, func(ks *kubeScope) bool { return ks.scope == sc }); i >= 0 {
				keep = append(keep, current[i])
				continue
			}
			ks, err := k.newScope(sc)
			if err != nil {
				return nil, nil, fmt.Errorf("namespace %q: %w", sc.namespace, err)
			}
			add = append(add, ks)
		}
		return keep, add, nil
	}
	// The hand-over: the retired scopes write nothing more (an event they
	// still hold is older than what the new scopes have listed), and the
	// Store takes the new scopes' view from their caches, which are at
	// least as new as any event they have delivered; their later events
	// apply on top (older ones are stale, see informer.stale).
	handOver := func(_, add, _ []*kubeScope) {
		k.filter.Store(f)
		listed := map[string]bool{} // namespace/name of every slice the new scopes hold
		addedNS := map[string]bool{}
		for _, ks := range add {
			addedNS[ks.namespace] = true
			if k.dropped {
				continue // Restore puts them in when the source answers
			}
			for _, obj := range ks.informer.informer.GetStore().List() {
				if sl, ok := obj.(*discoveryv1.EndpointSlice); ok && f.match(sl) {
					id := k.id(sl.Namespace + "/" + sl.Name)
					listed[id] = true
					k.store.Upsert(id, sl)
				}
			}
		}
		k.store.Retain(func(sl *discoveryv1.EndpointSlice) bool {
			if k.source != "" && sl.Labels[labelReadFrom] != k.source {
				return true // another source's
			}
			if !f.match(sl) {
				return false
			}
			// In a namespace a new scope serves, what it does not hold is
			// gone (or was never its): a replaced scope may have missed
			// the delete. "" serves every namespace.
			if addedNS[sl.Namespace] || addedNS[""] {
				return listed[k.id(sl.Namespace+"/"+sl.Name)]
			}
			return true
		})
	}
	if err := k.scopes.move(ctx, plan, func() { k.filter.Store(f) }, handOver); err != nil {
		return fmt.Errorf("watch: kube source: %w", err)
	}
	return nil
}

// Source is the source's name (KubeOptions.Source).
func (k *Kube) Source() string { return k.source }

// Health says whether the source's API server answers: downSince is when
// it stopped (zero while every informer's last list or watch succeeded),
// err the last failure, lastOK the last time one succeeded.
func (k *Kube) Health() (downSince time.Time, err error, lastOK time.Time) {
	for _, ks := range k.scopes.scopes() {
		d, e, ok := ks.health.state()
		if !d.IsZero() && (downSince.IsZero() || d.Before(downSince)) {
			downSince, err = d, e
		}
		if ok.After(lastOK) {
			lastOK = ok
		}
	}
	return downSince, err, lastOK
}

// Drop removes the source's slices from the Store, as if they were gone:
// for a source whose API server has been unreachable too long. Its
// informers keep their caches and keep trying; Restore brings the slices
// back.
func (k *Kube) Drop() {
	k.scopes.handlers.Lock()
	defer k.scopes.handlers.Unlock()
	k.dropped = true
	k.store.Retain(func(sl *discoveryv1.EndpointSlice) bool {
		return k.source != "" && sl.Labels[labelReadFrom] != k.source
	})
}

// Restore puts the source's slices back from its informers' caches, after
// Drop: a relist that finds them unchanged tells no handler.
func (k *Kube) Restore() {
	k.scopes.handlers.Lock()
	defer k.scopes.handlers.Unlock()
	k.dropped = false
	f := k.filter.Load()
	for _, ks := range k.scopes.scopes() {
		for _, obj := range ks.informer.informer.GetStore().List() {
			if sl, ok := obj.(*discoveryv1.EndpointSlice); ok && f.match(sl) {
				k.store.Upsert(k.id(sl.Namespace+"/"+sl.Name), sl)
			}
		}
	}
}

// informerStopGrace bounds how long Run waits for informers after cancel.
const informerStopGrace = 500 * time.Millisecond

// The handlers only write the Store: the pipeline does the rest.

func (k *Kube) onAdd(ks *kubeScope, obj any) {
	k.scopes.handlers.RLock()
	defer k.scopes.handlers.RUnlock()
	sl, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok || ks.idle() || k.dropped || ks.informer.stale(sl.Namespace+"/"+sl.Name, sl) {
		return
	}
	k.put(sl)
}

func (k *Kube) onUpdate(ks *kubeScope, oldObj, newObj any) {
	k.scopes.handlers.RLock()
	defer k.scopes.handlers.RUnlock()
	sl, ok := newObj.(*discoveryv1.EndpointSlice)
	if !ok || ks.idle() || k.dropped || ks.informer.stale(sl.Namespace+"/"+sl.Name, sl) {
		return
	}
	if old, ok := oldObj.(*discoveryv1.EndpointSlice); ok && old.ResourceVersion != "" && old.ResourceVersion == sl.ResourceVersion {
		return
	}
	k.put(sl)
}

func (k *Kube) onDelete(ks *kubeScope, obj any) {
	k.scopes.handlers.RLock()
	defer k.scopes.handlers.RUnlock()
	if ks.idle() || k.dropped {
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
		k.store.Delete(k.id(id))
	}
}

func (k *Kube) put(sl *discoveryv1.EndpointSlice) {
	id := k.id(sl.Namespace + "/" + sl.Name)
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
// they enter the informer's cache, so only the slim copy stays in memory,
// and labels them with the source, if named.
func (k *Kube) transform(obj any) (any, error) {
	sl, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return obj, nil
	}
	out := SlimSince(sl, k.store.triggerSince)
	source := k.source
	mcsName, imported := out.Labels[LabelMCSServiceName]
	// Idempotent: client-go may hand the transform an object it made.
	imported = imported && k.mcs && (out.Labels[discoveryv1.LabelServiceName] == "" || out.Labels[labelImported] != "")
	if imported {
		if from := out.Labels[LabelMCSSourceCluster]; slices.Contains(k.sources, from) {
			source = from
		}
	}
	if source != "" || imported {
		// Slim's label map may be shared (interned): a copy.
		labels := make(map[string]string, len(out.Labels)+3)
		maps.Copy(labels, out.Labels)
		if source != "" {
			labels[render.LabelSource] = source
			labels[labelReadFrom] = k.source
		}
		if imported {
			// The slice of a ServiceImport is its Service's.
			labels[discoveryv1.LabelServiceName] = mcsName
			labels[labelImported] = "true"
		}
		out.Labels = labels
	}
	return out, nil
}

// The labels of the EndpointSlices of a ServiceImport (Multi-Cluster
// Services, KEP-1645).
const (
	LabelMCSServiceName   = "multicluster.kubernetes.io/service-name"
	LabelMCSSourceCluster = "multicluster.kubernetes.io/source-cluster"
)

// labelReadFrom names the source that read a slice: the one whose Retain
// and Drop it belongs to. With MCS, render.LabelSource may name another
// (the cluster the endpoints are in).
const labelReadFrom = "edsync.io/read-from"

// labelImported marks a ServiceImport's slice the transform gave its
// Service's label, so that a second pass finds it imported too.
const labelImported = "edsync.io/imported"

// id is the Store's id of the slice namespace/name: prefixed with the
// source, if named.
func (k *Kube) id(nsName string) string {
	if k.source == "" {
		return nsName
	}
	return k.source + "/" + nsName
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
	// downSince is the time of the first failure since the last success
	// (zero while up); lastOK that of the last success.
	downSince, lastOK time.Time
	now               func() time.Time
}

func newAPIHealth(log *slog.Logger, what, resource string) *apiHealth {
	return &apiHealth{log: log, what: what, resource: resource, now: time.Now}
}

// state returns when the API server stopped answering (zero: it answers)
// and the last error, and when it last answered.
func (h *apiHealth) state() (downSince time.Time, err error, lastOK time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.downSince, h.lastErr, h.lastOK
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
		h.failures, h.lastErr, h.downSince, h.lastOK = 0, nil, time.Time{}, h.now()
		return
	}
	if h.failures == 0 {
		h.downSince = h.now()
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
