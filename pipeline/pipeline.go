// Package pipeline is edsync's loop: the one goroutine that owns the state
// between the sources and the files. Sources mark Services dirty; the loop
// debounces them, renders each dirty Service's clusters and writes them in
// one batch, retries failed writes, writes again files lost behind its back
// and prunes emptied ones. It imports watch, render and writer, and reports
// to a Metrics interface of its own; the edsync command builds its Options
// from the flags and config file (app.go) and runs it.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/edsync/edsync/render"
	"github.com/edsync/edsync/watch"
	"github.com/edsync/edsync/writer"
)

// Options are what a pipeline is built from. Renderer and Writer are
// required, and NewSource unless the test drives flushes itself.
type Options struct {
	Logger *slog.Logger // nil: discard
	// Clock is the pipeline's time: debounce, retries, pruning, durations.
	// Nil is time.Now.
	Clock func() time.Time
	// NewSource makes the source from the Store the pipeline reads (and
	// the Objects, nil unless WatchObjects): the pipeline makes both, as
	// they tell it of each change. Nothing is written before the source
	// is synced: a partial cache would publish partial endpoint sets and
	// drop traffic.
	NewSource func(store *watch.Store, objects *watch.Objects) (watch.Source, error)
	// WatchObjects says a source reads Services or Nodes.
	WatchObjects bool

	Renderer *render.Renderer
	Writer   *writer.Writer
	// Declared are the clusters whose files must exist (--cluster and the
	// config file's list), sorted.
	Declared           []string
	Debounce, MaxDelay time.Duration

	// NodeName (--node-name) and NodeTopology (--node-topology) are fixed
	// for the life of the pipeline, as the informers they need; LocalZone
	// (--local-zone) may change with Reconfigure.
	NodeName     string
	NodeTopology bool
	LocalZone    string

	// Once makes Run return after the first full flush; SyncTimeout then
	// bounds the wait for the first sync.
	Once        bool
	SyncTimeout time.Duration
	DryRun      bool // files are printed: logs say "printed", not "written"
	// PruneAfter is how long the emptied file of a cluster no Service
	// publishes and nobody declared stays; 0 keeps it.
	PruneAfter time.Duration
	// SummaryEvery is the least time between two Info lines summing up
	// flushes (the others are logged at Debug); 0 is 10 s.
	SummaryEvery time.Duration
	Metrics      Metrics // nil: none
	// Status is told what the files hold (nil: nothing).
	Status Status

	// CDS, if set, gets the CDS file: an EDS cluster for each cluster
	// published or declared, once its file is on disk (see cdsState), as
	// the Renderer's ClusterOptions make them; CDSDebounce is the quiet
	// time its changes wait for.
	CDS         CDSWriter
	CDSDebounce time.Duration
	// LocalCluster (--local-cluster) is left out of the CDS file: Envoy
	// wants its cluster_manager.local_cluster_name among the bootstrap's
	// static clusters, and refuses a CDS cluster of a static one's name.
	LocalCluster string

	// InotifyLimits reads the inotify limits that bound an Envoy reading
	// the files (writer.ReadInotifyLimits); nil does not check them.
	InotifyLimits func() (writer.InotifyLimits, error)

	// Test hooks. OnFlush is told of each flush and retry, on the
	// pipeline's goroutine, so tests wait on the flush sequence instead
	// of sleeping; OnNotify of each Service marked dirty, on the source's
	// goroutine; OnPrune of the clusters whose emptied files were removed.
	OnFlush  func(Report)
	OnNotify func(render.ServiceKey)
	OnPrune  func([]string)
}

// Report describes one flush or retry.
type Report struct {
	Seq     int  // counts the flushes and retries of this pipeline, from 1
	Initial bool // the first full flush, or (with Reload) one after a config reload
	Reload  bool // the full flush after Reconfigure
	Retry   bool // a retry of failed writes, not a flush
	// CDS: a write of the CDS file, not a flush; CDSClusters are the
	// clusters it holds, sorted, and Result counts the one file (plus the
	// emptied EDS files of the clusters it dropped, if any).
	CDS         bool
	CDSClusters []string
	Services    int      // Services rendered
	Clusters    []string // names handed to the writer, sorted
	writer.Result
}

// Pipeline is the state between the sources and the files: the dirty set,
// the coalescer, the renderer and the writer, owned by the one goroutine
// that calls Run. Source handlers only mark a Service dirty.
type Pipeline struct {
	log         *slog.Logger
	store       sliceStore
	source      watch.Source
	coalescer   *watch.Coalescer
	renderer    *render.Renderer
	writer      *writer.Writer
	declared    []string // --cluster: files that must exist
	once        bool
	dryRun      bool
	syncTimeout time.Duration
	now         func() time.Time
	onFlush     func(Report)
	onNotify    func(render.ServiceKey)
	metrics     Metrics
	health      *health
	// topo holds the Services and Nodes handed to the renderer.
	topo topology
	// published is what the files hold, per cluster and summed.
	published publishedFiles
	// summaryEvery is the least time between two Info lines summing up
	// flushes (the others are logged at Debug).
	summaryEvery time.Duration

	mu sync.Mutex
	// dirty holds the Services marked since the loop last looked, with
	// when their first and last changes arrived: the debounce and the
	// event-to-file latency count from the arrival, not from when the
	// loop (busy writing) got to them.
	dirty map[render.ServiceKey]arrivals
	next  *Live // from a config reload, not yet installed
	wake  chan struct{}
	// reloading is set while the full flush after a reload runs.
	reloading bool

	seq int
	// Owned by Run's goroutine.
	synced      bool // the initial flush is done
	ready       bool // every file of the initial flush is written
	summary     flushCounts
	lastSummary time.Time
	// waiting holds the declared clusters published empty since the initial
	// flush, with the Service ports last warned of (see declaredlog.go).
	waiting map[string]string
	// triggers holds the EndpointSlice trigger times of the Services
	// flushed whose files are not written yet (a failed write).
	triggers map[render.ServiceKey][]time.Time
	// received holds when the first unwritten change of each Service
	// flushed arrived, until its file is renamed (EventToFile).
	received map[render.ServiceKey]time.Time
	// files: lost files and the pruning of emptied ones (files.go).
	files outputFiles
	// cds is the CDS file's state; nil without one.
	cds *cdsState
	// inotify is Envoy's inotify budget (inotify.go).
	inotify inotifyBudget
}

// sliceStore is what the pipeline reads of watch.Store; tests drive a real
// one.
type sliceStore interface {
	Slices(render.ServiceKey) []*discoveryv1.EndpointSlice
	Services() []render.ServiceKey
	TakeTriggerTimes(render.ServiceKey) []time.Time
}

// New makes a pipeline, its Store and Objects, and its source.
func New(o Options) (*Pipeline, error) {
	if o.Renderer == nil || o.Writer == nil {
		return nil, errors.New("pipeline: a Renderer and a Writer are required")
	}
	p := newPipeline(o)
	store := watch.NewStoreWith(watch.StoreOptions{
		Notify:            p.notify,
		OnEvent:           p.metrics.SliceEvent,
		OnSkip:            p.metrics.Skipped,
		TriggerTimesSince: p.now(),
	})
	p.store = store
	var objects *watch.Objects
	if o.WatchObjects {
		objects = watch.NewObjects(p.objectsChanged)
		p.topo.objects = objects
	}
	if o.NewSource != nil {
		src, err := o.NewSource(store, objects)
		if err != nil {
			return nil, err
		}
		if src == nil {
			return nil, errors.New("pipeline: NewSource returned no source")
		}
		p.source = src
	}
	return p, nil
}

// newPipeline makes a pipeline without its store or source: New's first
// half, and what tests that drive flushes themselves start from.
func newPipeline(o Options) *Pipeline {
	p := &Pipeline{
		log:          o.Logger,
		coalescer:    watch.NewCoalescer(o.Debounce, o.MaxDelay),
		renderer:     o.Renderer,
		writer:       o.Writer,
		declared:     o.Declared,
		once:         o.Once,
		dryRun:       o.DryRun,
		syncTimeout:  o.SyncTimeout,
		now:          o.Clock,
		onFlush:      o.OnFlush,
		onNotify:     o.OnNotify,
		metrics:      o.Metrics,
		summaryEvery: o.SummaryEvery,
		dirty:        make(map[render.ServiceKey]arrivals),
		wake:         make(chan struct{}, 1),
		triggers:     make(map[render.ServiceKey][]time.Time),
		received:     make(map[render.ServiceKey]time.Time),
		files:        outputFiles{pruneAfter: o.PruneAfter, onPrune: o.OnPrune},
		inotify:      inotifyBudget{read: o.InotifyLimits},
	}
	p.topo = topology{
		nodeName:     o.NodeName,
		nodeTopology: o.NodeTopology,
		localZone:    o.LocalZone,
		services:     make(map[render.ServiceKey]*render.ServiceInfo),
		nodes:        make(map[string]*render.NodeTopology),
	}
	p.cds = newCDSState(o)
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.published = newPublished(o.Status, p.log)
	if p.now == nil {
		p.now = time.Now
	}
	if p.metrics == nil {
		p.metrics = noMetrics{}
	}
	if p.summaryEvery == 0 {
		p.summaryEvery = 10 * time.Second
	}
	p.health = newHealth(p.now)
	p.coalescer.OnTake = p.taken
	return p
}

// Alive returns nil while the loop runs and is not stuck, else why not:
// what /healthz reports. Safe from any goroutine.
func (p *Pipeline) Alive() error { return p.health.alive() }

// Ready returns nil once every file of the first full flush is written,
// else why not: what /readyz reports. Safe from any goroutine.
func (p *Pipeline) Ready() error { return p.health.readiness() }

// taken records how long a Service's changes waited for their flush, and
// when the first of them arrived until its file is written; the initial
// flush takes what the sync marked, which waited for nothing.
func (p *Pipeline) taken(key render.ServiceKey, first time.Time) {
	if !p.synced {
		return
	}
	p.metrics.DebounceDelay(p.now().Sub(first))
	// A Service whose last write failed keeps its earlier arrival.
	if _, ok := p.received[key]; !ok {
		p.received[key] = first
	}
}

// arrivals are the times of a dirty Service's first and last change since
// the loop last took the dirty set.
type arrivals struct{ first, last time.Time }

// notify marks a Service dirty. Sources call it from their goroutines.
func (p *Pipeline) notify(key render.ServiceKey) {
	now := p.now()
	p.mu.Lock()
	a, ok := p.dirty[key]
	if !ok {
		a.first = now
	}
	a.last = now
	p.dirty[key] = a
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	if p.onNotify != nil {
		p.onNotify(key)
	}
}

// Live is what a config reload changes in a running pipeline.
type Live struct {
	Renderer           *render.Renderer
	Declared           []string
	Debounce, MaxDelay time.Duration
	LocalZone          string // --local-zone
}

// Reconfigure hands the pipeline a new configuration, which its goroutine
// installs before its next step, then renders every Service again. Safe
// from any goroutine (the config file's follower calls it).
func (p *Pipeline) Reconfigure(lc Live) {
	p.mu.Lock()
	p.next = &lc
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// install takes the configuration given to Reconfigure, if any. The new
// renderer starts empty, so every Service is rendered again by the full
// flush that follows; the writer skips the files whose bytes stay the same.
// It is first told the Services, Nodes and local zone the old one knew.
func (p *Pipeline) install() bool {
	p.mu.Lock()
	lc := p.next
	p.next = nil
	p.mu.Unlock()
	if lc == nil {
		return false
	}
	p.renderer = lc.Renderer
	p.declared = lc.Declared
	p.coalescer.SetDelays(lc.Debounce, lc.MaxDelay)
	p.topo.localZone = lc.LocalZone
	p.feedRenderer()
	return true
}

// takeDirty moves the dirty keys into the coalescer, after handing the
// renderer the Services and Nodes that changed.
func (p *Pipeline) takeDirty() {
	p.takeObjects()
	p.mu.Lock()
	dirty := p.dirty
	// Not sized like the last one: after the initial sync's burst that
	// would hold room for every Service until the next event.
	p.dirty = make(map[render.ServiceKey]arrivals)
	p.mu.Unlock()
	for key, a := range dirty {
		p.coalescer.Mark(key, a.first)
		if a.last.After(a.first) {
			p.coalescer.Mark(key, a.last)
		}
	}
}

const (
	retryMin = time.Second
	retryMax = 30 * time.Second
	// finalFlushTimeout bounds the flush on shutdown; Kubernetes gives a
	// Pod 30 s between SIGTERM and SIGKILL by default.
	finalFlushTimeout = 10 * time.Second
)

// Run feeds the source's changes through to the files until ctx ends, then
// flushes what is pending and returns nil, or an error if the source fails.
// With Options.Once, it returns after the first full flush: an error if the
// sync timed out or a write failed.
func (p *Pipeline) Run(ctx context.Context) (err error) {
	if p.source == nil {
		return errors.New("pipeline: no source (Options.NewSource)")
	}
	p.health.start()
	defer func() {
		why := "shut down"
		if err != nil {
			why = err.Error()
		}
		p.health.stop(why)
	}()
	srcCtx, stopSource := context.WithCancel(ctx)
	srcErr := make(chan error, 1)
	go func() { srcErr <- p.source.Run(srcCtx) }()
	srcStopped := false
	// Whatever the way out, the source is stopped and waited for, so its
	// handlers no longer touch the store (the Kube source bounds that wait:
	// see watch.Kube.Run).
	defer func() {
		stopSource()
		if !srcStopped {
			<-srcErr
		}
	}()

	var syncTimeout <-chan time.Time
	if p.once {
		t := time.NewTimer(p.syncTimeout)
		defer t.Stop()
		syncTimeout = t.C
	}
	// Nothing is written before the first full sync: a partial cache would
	// publish partial endpoint sets and drop traffic.
	select {
	case <-p.source.Synced():
	case err := <-srcErr:
		srcStopped = true
		if err == nil {
			return nil
		}
		return fmt.Errorf("source: %w", err)
	case <-ctx.Done():
		if p.once {
			// An init container must not report success without the files.
			return fmt.Errorf("stopped before the first sync; nothing written")
		}
		p.log.Info("stopped before the first sync; nothing written")
		return nil
	case <-syncTimeout:
		return fmt.Errorf("first sync did not finish within %s (see the log for why; --sync-timeout sets the limit)", p.syncTimeout)
	}

	p.install() // a reload during the sync
	defer p.watchOutput(ctx)()
	p.health.begin("the initial flush")
	p.takeObjects()
	p.warnNoLocalZone()
	res := p.initialFlush(ctx)
	// Envoy starting now gets its clusters at once: no debounce.
	cdsErr := p.writeCDS(ctx)
	p.health.end()
	if p.once {
		if res.Failed > 0 {
			// Each failure is logged above with its path and reason.
			return fmt.Errorf("%d of %d files failed to write (see the errors above)", res.Failed, len(res.Clusters))
		}
		if cdsErr != nil {
			return cdsErr
		}
		return nil
	}

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var retryAt time.Time
	retryDelay := retryMin
	for {
		if p.install() {
			p.reloading = true
			p.health.begin("the full flush after a config reload")
			p.initialFlush(ctx)
			p.writeCDS(ctx)
			p.health.end()
			p.reloading = false
		}
		p.takeDirty()
		p.restoreLost(ctx)
		switch pending := p.writer.Pending(); {
		case pending == 0:
			retryAt, retryDelay = time.Time{}, retryMin
		case retryAt.IsZero():
			retryAt = p.now().Add(retryDelay)
		}
		wakeAt, ok := p.coalescer.Next()
		if !retryAt.IsZero() && (!ok || retryAt.Before(wakeAt)) {
			wakeAt, ok = retryAt, true
		}
		if at, due := p.summaryDue(); due && (!ok || at.Before(wakeAt)) {
			wakeAt, ok = at, true
		}
		if at, due := p.nextPrune(); due && (!ok || at.Before(wakeAt)) {
			wakeAt, ok = at, true
		}
		if at, due := p.cdsDue(); due && (!ok || at.Before(wakeAt)) {
			wakeAt, ok = at, true
		}
		if ok {
			timer.Reset(max(wakeAt.Sub(p.now()), 0))
		} else {
			timer.Stop()
		}

		select {
		case <-ctx.Done():
			p.health.begin("the final flush")
			p.takeDirty()
			flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalFlushTimeout)
			res := p.flush(flushCtx, p.coalescer.All(), false)
			if p.writer.Pending() > 0 {
				retried := p.retry(flushCtx)
				res.Written += retried.Written
				res.Failed = retried.Failed
			}
			if _, due := p.cdsDue(); due {
				p.writeCDS(flushCtx)
			}
			cancel()
			p.logSummary(p.now(), true)
			p.log.Info("shutting down", "flushed_services", res.Services, p.writtenKey(), res.Written, "failed", res.Failed)
			return nil
		case err := <-srcErr:
			srcStopped = true
			if err != nil {
				return fmt.Errorf("source: %w", err)
			}
			// The source ended without error: only on cancel, which the
			// ctx.Done case handles next.
			srcErr = nil
		case <-p.wake:
		case <-timer.C:
			now := p.now()
			if due := p.coalescer.Due(now); len(due) > 0 {
				p.health.begin(fmt.Sprintf("a flush of %d Services", len(due)))
				p.flush(ctx, due, false)
				p.health.end()
			}
			if !retryAt.IsZero() && !now.Before(retryAt) {
				p.health.begin(fmt.Sprintf("retrying %d failed writes", p.writer.Pending()))
				res := p.retry(ctx)
				p.health.end()
				p.log.Info("retried failed writes", p.writtenKey(), res.Written, "unchanged", res.Unchanged, "failed", res.Failed)
				p.seq++
				if p.onFlush != nil {
					p.onFlush(Report{Seq: p.seq, Retry: true, Result: res})
				}
				retryAt = time.Time{}
				if res.Failed > 0 {
					retryDelay = min(2*retryDelay, retryMax)
				} else {
					retryDelay = retryMin
				}
			}
			if at, due := p.cdsDue(); due && !now.Before(at) {
				p.health.begin("writing the CDS file")
				p.writeCDS(ctx)
				p.health.end()
			}
			p.prune(now)
			p.logSummary(p.now(), false)
		}
	}
}
