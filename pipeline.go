package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/edsync/edsync/render"
	"github.com/edsync/edsync/watch"
	"github.com/edsync/edsync/writer"
)

// The stages, as the pipeline needs them. Interfaces belong here, where they
// are used; tests substitute none of them but the source.
type (
	source interface {
		Run(ctx context.Context) error
		Synced() <-chan struct{}
	}
	sliceStore interface {
		Slices(render.ServiceKey) []*discoveryv1.EndpointSlice
		Services() []render.ServiceKey
		TakeTriggerTimes(render.ServiceKey) []time.Time
	}
)

// flushReport describes one flush, for logs and for tests that wait on the
// flush sequence instead of sleeping.
type flushReport struct {
	Seq      int
	Initial  bool // the first full flush, or (with Reload) one after a config reload
	Reload   bool
	Retry    bool
	Services int
	Clusters []string // names handed to the writer, sorted
	writer.Result
}

// pipeline is the one goroutine that owns the state between the source and
// the files: the dirty set, the coalescer, the renderer and the writer.
// Source handlers only mark a Service dirty.
type pipeline struct {
	log         *slog.Logger
	store       sliceStore
	source      source
	coalescer   *watch.Coalescer
	renderer    *render.Renderer
	writer      *writer.Writer
	declared    []string // --cluster: files that must exist
	once        bool
	dryRun      bool // files are printed: logs say "printed", not "written"
	syncTimeout time.Duration
	now         func() time.Time
	onFlush     func(flushReport)       // test hook, called on the pipeline goroutine
	onNotify    func(render.ServiceKey) // test hook, called after a Service is marked dirty
	metrics     *metrics
	health      *health
	// topo holds the Services and Nodes handed to the renderer.
	topo topology
	// summaryEvery is the least time between two Info lines summing up
	// flushes (the others are logged at Debug).
	summaryEvery time.Duration

	mu    sync.Mutex
	dirty map[render.ServiceKey]struct{}
	next  *liveConfig // from a config reload, not yet installed
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
	// files: lost files and the pruning of emptied ones (files.go).
	files outputFiles
}

func newPipeline(p *pipeline) *pipeline {
	p.dirty = make(map[render.ServiceKey]struct{})
	p.wake = make(chan struct{}, 1)
	p.triggers = make(map[render.ServiceKey][]time.Time)
	p.topo.services = make(map[render.ServiceKey]*render.ServiceInfo)
	p.topo.nodes = make(map[string]*render.NodeTopology)
	if p.now == nil {
		p.now = time.Now
	}
	if p.metrics == nil {
		p.metrics = newMetrics(buildVersion())
	}
	if p.health == nil {
		p.health = newHealth(p.now)
	}
	if p.summaryEvery == 0 {
		p.summaryEvery = 10 * time.Second
	}
	p.coalescer.OnTake = p.taken
	return p
}

// taken records how long a Service's changes waited for their flush; the
// initial flush takes what the sync marked, which waited for nothing.
func (p *pipeline) taken(_ render.ServiceKey, first time.Time) {
	if p.synced {
		p.metrics.debounceDelay.Observe(p.now().Sub(first).Seconds())
	}
}

// notify marks a Service dirty. Sources call it from their goroutines.
func (p *pipeline) notify(key render.ServiceKey) {
	p.mu.Lock()
	p.dirty[key] = struct{}{}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	if p.onNotify != nil {
		p.onNotify(key)
	}
}

// liveConfig is what a config reload changes in a running pipeline.
type liveConfig struct {
	renderer           *render.Renderer
	declared           []string
	debounce, maxDelay time.Duration
	localZone          string // --local-zone
}

// reconfigure hands the pipeline a new configuration, which its goroutine
// installs before its next step. The reloader calls it from its goroutine.
func (p *pipeline) reconfigure(lc *liveConfig) {
	p.mu.Lock()
	p.next = lc
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// install takes the configuration given to reconfigure, if any. The new
// renderer starts empty, so every Service is rendered again by the full
// flush that follows; the writer skips the files whose bytes stay the same.
// It is first told the Services, Nodes and local zone the old one knew.
func (p *pipeline) install() bool {
	p.mu.Lock()
	lc := p.next
	p.next = nil
	p.mu.Unlock()
	if lc == nil {
		return false
	}
	p.renderer = lc.renderer
	p.declared = lc.declared
	p.coalescer.SetDelays(lc.debounce, lc.maxDelay)
	p.topo.localZone = lc.localZone
	p.feedRenderer()
	return true
}

// takeDirty moves the dirty keys into the coalescer, after handing the
// renderer the Services and Nodes that changed.
func (p *pipeline) takeDirty() {
	p.takeObjects()
	p.mu.Lock()
	dirty := p.dirty
	p.dirty = make(map[render.ServiceKey]struct{}, len(dirty))
	p.mu.Unlock()
	now := p.now()
	for key := range dirty {
		p.coalescer.Mark(key, now)
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
// flushes what is pending and returns nil. With once, it returns after the
// first full flush: an error if the sync timed out or a write failed.
func (p *pipeline) Run(ctx context.Context) (err error) {
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
	p.health.end()
	if p.once {
		if res.Failed > 0 {
			// Each failure is logged above with its path and reason.
			return fmt.Errorf("%d of %d files failed to write (see the errors above)", res.Failed, len(res.Clusters))
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
					p.onFlush(flushReport{Seq: p.seq, Retry: true, Result: res})
				}
				retryAt = time.Time{}
				if res.Failed > 0 {
					retryDelay = min(2*retryDelay, retryMax)
				} else {
					retryDelay = retryMin
				}
			}
			p.prune(now)
			p.logSummary(p.now(), false)
		}
	}
}
