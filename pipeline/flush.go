package pipeline

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/edsync/edsync/render"
	"github.com/edsync/edsync/writer"
)

// initialFlush renders every Service the source knows, then makes sure the
// declared clusters exist and that files left from an earlier run (or, after
// a reload, from the previous configuration) for clusters no longer
// published are emptied rather than left stale.
func (p *Pipeline) initialFlush(ctx context.Context) Report {
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
func (p *Pipeline) flush(ctx context.Context, keys []render.ServiceKey, initial bool) Report {
	start := p.now()
	var batch []writer.Cluster
	names := make(map[string]bool)
	for _, key := range keys {
		if t := p.store.TakeTriggerTimes(key); len(t) > 0 {
			p.triggers[key] = append(p.triggers[key], t...)
		}
		clusters, skips := p.renderer.Service(key, p.store.Slices(key))
		p.skipped(skips)
		for _, c := range clusters {
			release := c.Gone && !slices.Contains(p.declared, c.Name)
			batch = append(batch, writer.Cluster{Name: c.Name, CLA: c.Assignment, Endpoints: c.Hosts, Release: release})
			names[c.Name] = true
			p.published.publish(c.Name, c.Service, c.Health, c.NodeLocal)
			switch {
			case p.cds == nil || release:
			case c.Gone:
				// A declared cluster whose Service went: it stays in the CDS
				// file as it was (its settings came from that Service).
				if _, ok := p.cds.up[c.Name]; !ok {
					p.cds.publish(c.Name, render.Upstream{}, start, start)
				}
			default:
				p.cds.publish(c.Name, c.Upstream, start, cmp.Or(p.received[key], start))
			}
		}
	}
	if initial {
		clear(p.waiting)
		for _, name := range p.declared {
			if !names[name] {
				p.declaredEmpty(name, keys)
				batch = append(batch, p.emptyCluster(name))
				names[name] = true
				if p.cds != nil {
					if _, ok := p.cds.up[name]; !ok {
						p.cds.publish(name, render.Upstream{}, start, start)
					}
				}
			}
		}
		for _, name := range p.writer.Known() {
			if !names[name] && p.writer.Owns(name) {
				p.log.Info("cluster no longer published; clearing its endpoints", "cluster", name)
				batch = append(batch, p.goneCluster(name))
				names[name] = true
			}
		}
		// After a reload: a cluster whose write failed has no file the
		// writer knows, but a retry would write its old content; and one
		// the CDS file is to hold must leave it.
		stale := p.writer.PendingClusters()
		if p.cds != nil {
			stale = append(stale, slices.Sorted(maps.Keys(p.cds.up))...)
		}
		for _, name := range stale {
			if !names[name] {
				batch = append(batch, p.goneCluster(name))
				names[name] = true
			}
		}
	}
	if !initial && len(p.waiting) > 0 {
		p.checkDeclared(keys, names)
	}
	// After checkDeclared: a declared file written again because it was
	// lost says nothing about its Service's ports.
	batch = p.addLost(batch, names)
	rendered := p.now()
	p.metrics.RenderDuration(rendered.Sub(start))
	// With a CDS file, gone clusters it names keep their EDS files until
	// it no longer does (writeCDS).
	batch = p.cdsHold(batch)
	res := p.writer.Write(ctx, batch)
	p.wrote(res, rendered)
	p.tooLarge(res.TooLarge)
	p.released(batch)
	if p.cds != nil {
		written := make([]string, 0, len(batch))
		for _, c := range batch {
			if !c.Release {
				written = append(written, c.Name)
			}
		}
		p.cdsWritten(written)
	}
	p.metrics.Published(p.published.total)
	p.checkInotify()
	// A Service refused a cluster name because another held it gets its
	// turn once that name is free.
	for _, key := range p.renderer.TakeUnblocked() {
		p.notify(key)
	}
	p.seq++
	report := Report{Seq: p.seq, Initial: initial, Reload: p.reloading, Services: len(keys), Result: res}
	for _, c := range batch {
		report.Clusters = append(report.Clusters, c.Name)
	}
	slices.Sort(report.Clusters)

	// The initial flush and failures are logged at Info; under churn the
	// other flushes would be many lines a second: they are at Debug and
	// summed up at Info at most once per summaryEvery.
	level := slog.LevelDebug
	if initial || res.Failed > 0 {
		level = slog.LevelInfo
	}
	// Each failure was logged by the writer, at Error with its path and
	// reason: here it is only counted.
	p.log.Log(ctx, level, "flushed", "services", len(keys), "clusters", len(batch),
		p.writtenKey(), res.Written, "unchanged", res.Unchanged, "failed", res.Failed,
		"took", p.now().Sub(start))
	if !initial {
		p.summary.add(len(keys), res)
		p.logSummary(p.now(), false)
	}
	if initial {
		// The first full flush is done: from now on readiness follows
		// the writes. Set before onFlush, so a test (or anything) told of
		// the flush sees its effect on /readyz.
		p.synced = true
	}
	if p.synced {
		p.checkReady(res)
	}
	if p.onFlush != nil {
		p.onFlush(report)
	}
	return report
}

// ReasonFileTooLarge is the skip reason of a cluster whose file would be
// over --max-file-size: it is not written, and Envoy keeps the old one.
const ReasonFileTooLarge = "file-too-large"

// tooLarge reports the clusters the writer refused for their size, as a
// skip of their Service: like a bad annotation, it is its owner's to fix,
// and it stops neither the other files nor readiness.
func (p *Pipeline) tooLarge(refused []writer.TooLarge) {
	for _, r := range refused {
		p.skipped([]render.Skip{{Reason: ReasonFileTooLarge, Object: p.published.serviceOf(r.Cluster).String(),
			Detail: fmt.Sprintf("the file of cluster %s would be %d bytes, over --max-file-size (%d); not written, the old file stays", r.Cluster, r.Size, r.Max)}})
	}
}

// retry rewrites the files whose last write failed.
func (p *Pipeline) retry(ctx context.Context) writer.Result {
	start := p.now()
	res := p.writer.Retry(ctx)
	p.wrote(res, start)
	p.cdsWritten(res.WrittenClusters)
	p.checkReady(res)
	return res
}

// wrote records the outcome of a Write or Retry begun at start: counters,
// durations, and the network programming latency of the changes whose
// files were renamed.
func (p *Pipeline) wrote(res writer.Result, start time.Time) {
	now := p.now()
	p.metrics.Wrote(res, now.Sub(start), now)
	p.published.status.Kept(res.Kept, now)
	if len(p.triggers) == 0 && len(p.received) == 0 {
		return
	}
	for _, name := range res.WrittenClusters {
		key := p.published.serviceOf(name)
		for _, t := range p.triggers[key] {
			p.metrics.NetworkProgramming(max(now.Sub(t), 0))
		}
		delete(p.triggers, key)
		if t, ok := p.received[key]; ok {
			p.metrics.EventToFile(max(now.Sub(t), 0))
			delete(p.received, key)
		}
	}
	// With no write pending, the times left belong to changes that gave
	// the same bytes: they led to no write, so they are not counted.
	if p.writer.Pending() == 0 {
		clear(p.triggers)
		clear(p.received)
	}
}

// checkReady makes edsync ready once the initial flush is done and no file
// waits for a retry; until then it says why not.
func (p *Pipeline) checkReady(res writer.Result) {
	if p.ready {
		return
	}
	if n := p.writer.Pending(); n > 0 {
		// The reasons (paths, system errors) are in the log at Error: the
		// probe answers whoever reaches its port, a node's in node-shared
		// mode, and says no more than what to look for.
		p.health.setNotReady(fmt.Sprintf("not every file of the first flush is written (%d pending); retrying (the reasons are in edsync's log)", n))
		return
	}
	if p.cds != nil && (!p.cds.namedKnown || !p.cds.first.IsZero()) {
		// Envoy refuses a bootstrap whose CDS path does not exist, and
		// the first flush's clusters (retried ones included) belong in
		// it: ready once it holds them (writeCDS checks again).
		p.health.setNotReady("the CDS file does not hold every cluster of the first flush yet")
		return
	}
	p.ready = true
	p.health.setReady()
}

func (p *Pipeline) emptyCluster(name string) writer.Cluster {
	c := writer.Cluster{Name: name, CLA: &endpointv3.ClusterLoadAssignment{ClusterName: name}}
	p.published.publish(name, render.ServiceKey{}, endpointCounts{}, render.NodeLocalOff)
	return c
}
