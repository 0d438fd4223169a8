package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
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
	syncTimeout time.Duration
	now         func() time.Time
	onFlush     func(flushReport)       // test hook, called on the pipeline goroutine
	onNotify    func(render.ServiceKey) // test hook, called after a Service is marked dirty

	mu    sync.Mutex
	dirty map[render.ServiceKey]struct{}
	next  *liveConfig // from a config reload, not yet installed
	wake  chan struct{}
	// reloading is set while the full flush after a reload runs.
	reloading bool

	seq int
}

func newPipeline(p *pipeline) *pipeline {
	p.dirty = make(map[render.ServiceKey]struct{})
	p.wake = make(chan struct{}, 1)
	if p.now == nil {
		p.now = time.Now
	}
	return p
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
	return true
}

// takeDirty moves the dirty keys into the coalescer.
func (p *pipeline) takeDirty() {
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
func (p *pipeline) Run(ctx context.Context) error {
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
	res := p.initialFlush(ctx)
	if p.once {
		if res.Failed > 0 {
			return fmt.Errorf("%d of %d files failed to write: %w", res.Failed, len(res.Clusters), res.Err)
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
			p.initialFlush(ctx)
			p.reloading = false
		}
		p.takeDirty()
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
		if ok {
			timer.Reset(max(wakeAt.Sub(p.now()), 0))
		} else {
			timer.Stop()
		}

		select {
		case <-ctx.Done():
			p.takeDirty()
			flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalFlushTimeout)
			res := p.flush(flushCtx, p.coalescer.All(), false)
			if p.writer.Pending() > 0 {
				retried := p.writer.Retry(flushCtx)
				res.Written += retried.Written
				res.Failed = retried.Failed
			}
			cancel()
			p.log.Info("shutting down", "flushed_services", res.Services, "written", res.Written, "failed", res.Failed)
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
				p.flush(ctx, due, false)
			}
			if !retryAt.IsZero() && !now.Before(retryAt) {
				res := p.writer.Retry(ctx)
				p.log.Info("retried failed writes", "written", res.Written, "unchanged", res.Unchanged, "failed", res.Failed)
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
		}
	}
}

// initialFlush renders every Service the source knows, then makes sure the
// declared clusters exist and that files left from an earlier run (or, after
// a reload, from the previous configuration) for clusters no longer
// published are emptied rather than left stale.
func (p *pipeline) initialFlush(ctx context.Context) flushReport {
	p.takeDirty()
	keys := p.store.Services()
	known := make(map[render.ServiceKey]bool, len(keys))
	for _, k := range keys {
		known[k] = true
	}
	// Services notified during the sync whose slices are all gone again.
	for _, k := range p.coalescer.All() {
		if !known[k] {
			keys = append(keys, k)
		}
	}
	return p.flush(ctx, keys, true)
}

// flush renders the given Services and writes their clusters in one batch.
func (p *pipeline) flush(ctx context.Context, keys []render.ServiceKey, initial bool) flushReport {
	start := p.now()
	var batch []writer.Cluster
	names := make(map[string]bool)
	for _, key := range keys {
		clusters, skips := p.renderer.Service(key, p.store.Slices(key))
		for _, s := range skips {
			p.log.Warn("skipped", "reason", s.Reason, "object", s.Object, "detail", s.Detail)
		}
		for _, c := range clusters {
			batch = append(batch, writer.Cluster{Name: c.Name, CLA: c.CLA})
			names[c.Name] = true
		}
	}
	if initial {
		for _, name := range p.declared {
			if !names[name] {
				p.log.Info("declared cluster has no endpoints yet; writing it empty", "cluster", name)
				batch = append(batch, emptyCluster(name))
				names[name] = true
			}
		}
		for _, name := range p.writer.Known() {
			if !names[name] && p.writer.Owns(name) {
				p.log.Info("cluster no longer published; emptying its file", "cluster", name)
				batch = append(batch, emptyCluster(name))
				names[name] = true
			}
		}
	}
	res := p.writer.Write(ctx, batch)
	// A Service refused a cluster name because another held it gets its
	// turn once that name is free.
	for _, key := range p.renderer.TakeUnblocked() {
		p.notify(key)
	}
	p.seq++
	report := flushReport{Seq: p.seq, Initial: initial, Reload: p.reloading, Services: len(keys), Result: res}
	for _, c := range batch {
		report.Clusters = append(report.Clusters, c.Name)
	}
	slices.Sort(report.Clusters)

	level := slog.LevelDebug
	if initial || res.Written > 0 || res.Failed > 0 {
		level = slog.LevelInfo
	}
	p.log.Log(ctx, level, "flushed", "services", len(keys), "clusters", len(batch),
		"written", res.Written, "unchanged", res.Unchanged, "failed", res.Failed,
		"took", p.now().Sub(start).Round(time.Microsecond))
	if res.Err != nil {
		p.log.Error("write failed; the old files stay", "error", res.Err, "retrying", p.writer.Pending())
	}
	if p.onFlush != nil {
		p.onFlush(report)
	}
	return report
}

func emptyCluster(name string) writer.Cluster {
	return writer.Cluster{Name: name, CLA: &endpointv3.ClusterLoadAssignment{ClusterName: name}}
}
