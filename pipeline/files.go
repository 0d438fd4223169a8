package pipeline

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/edsync/edsync/render"
	"github.com/edsync/edsync/writer"
)

// The life of the files themselves: files removed or replaced behind
// edsync's back are written again, and what edsync keeps for a cluster no
// Service publishes any more is bounded: its memory is freed once its file
// is emptied, and the emptied file is removed after --prune-after.

// outputFiles is the pipeline's state for the files; owned by its goroutine
// but for lost, which the folder watch fills.
type outputFiles struct {
	// lost holds the clusters whose files the folder watch found removed
	// or replaced, not yet written again. Guarded by pipeline.mu.
	lost map[string]bool
	// restoring holds, during the flush that writes them again, the lost
	// clusters, so that a declared one no Service renders is written empty.
	restoring []string

	// pruneAfter is --prune-after: how long an emptied file of a cluster
	// no Service publishes and nobody declared stays; 0 keeps it.
	pruneAfter time.Duration
	// prunes holds the emptied files in the order they are due; pruneAt
	// the latest due time per cluster: an item whose time differs is
	// stale (the cluster came back, or was emptied again since).
	prunes  []pruneItem
	pruneAt map[string]time.Time
	// onPrune, a test hook, is told of the clusters whose files were removed.
	onPrune func([]string)
}

type pruneItem struct {
	cluster string
	at      time.Time
}

// watchOutput starts the writer's folder watch for the run; the returned
// function stops it. A dry run writes nothing, and --once exits after its
// one flush: neither has files to keep.
func (p *Pipeline) watchOutput(ctx context.Context) (stop func()) {
	if p.once {
		return func() {}
	}
	fw, err := p.writer.Watch()
	if errors.Is(err, writer.ErrDryRun) {
		return func() {}
	}
	if err != nil {
		// Often the inotify limits, which Envoy's many watches use up.
		p.log.Warn("not watching the output folder: a file removed by someone else is written again only when its cluster changes", "error", err)
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := fw.Run(ctx, p.filesLost); err != nil {
			p.log.Error("output folder watch stopped", "error", err)
		}
	}()
	return func() { cancel(); <-done }
}

// filesLost is told by the folder watch, on its goroutine, of the clusters
// whose files someone removed or replaced.
func (p *Pipeline) filesLost(clusters []string) {
	p.mu.Lock()
	if p.files.lost == nil {
		p.files.lost = make(map[string]bool)
	}
	for _, c := range clusters {
		p.files.lost[c] = true
	}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// restoreLost writes the lost files again at once, rendering the Services
// they belong to: their content is the same as before unless the Service
// changed meanwhile.
func (p *Pipeline) restoreLost(ctx context.Context) {
	p.mu.Lock()
	lost := p.files.lost
	p.files.lost = nil
	p.mu.Unlock()
	if len(lost) == 0 {
		return
	}
	names := slices.Sorted(maps.Keys(lost))
	var keys []render.ServiceKey
	for _, name := range names {
		if key := p.published.serviceOf(name); key != (render.ServiceKey{}) && !slices.Contains(keys, key) {
			keys = append(keys, key)
		}
	}
	// The writer's watch logged them.
	p.files.restoring = names
	p.health.begin(fmt.Sprintf("writing %d lost files again", len(names)))
	p.flush(ctx, keys, false)
	p.health.end()
}

// addLost adds to a flush's batch the lost declared clusters that no
// Service rendered: they are written empty, as at start.
func (p *Pipeline) addLost(batch []writer.Cluster, names map[string]bool) []writer.Cluster {
	for _, name := range p.files.restoring {
		if !names[name] && slices.Contains(p.declared, name) {
			batch = append(batch, p.emptyCluster(name))
			names[name] = true
		}
	}
	p.files.restoring = nil
	return batch
}

// goneCluster is the file content of a cluster no Service publishes any
// more: no endpoints, which clears Envoy's hosts (Envoy rule 7). Unless
// declared, the writer forgets the cluster once that is on disk.
func (p *Pipeline) goneCluster(name string) writer.Cluster {
	c := writer.Cluster{Name: name, CLA: &endpointv3.ClusterLoadAssignment{ClusterName: name}}
	c.Release = !slices.Contains(p.declared, name)
	p.published.publish(name, render.ServiceKey{}, endpointCounts{}, render.NodeLocalOff)
	return c
}

// released notes the outcome of a flush's batch for the files: the
// clusters released are forgotten (publishedFiles) and their files are due
// for pruning; a cluster published again is not pruned.
//
// Only a name's last entry counts, as in the writer: a cluster name one
// Service gave up and another took in the same flush is in the batch twice,
// released first, then live.
func (p *Pipeline) released(batch []writer.Cluster) {
	now := p.now()
	last := make(map[string]int, len(batch))
	for i, c := range batch {
		last[c.Name] = i
	}
	for i, c := range batch {
		if last[c.Name] != i {
			continue
		}
		if !c.Release {
			if p.files.pruneAt != nil {
				delete(p.files.pruneAt, c.Name)
			}
			continue
		}
		p.published.forget(c.Name)
		if p.files.pruneAfter > 0 {
			p.schedulePrune(c.Name, now.Add(p.files.pruneAfter))
		}
	}
}

func (p *Pipeline) schedulePrune(cluster string, at time.Time) {
	if p.files.pruneAt == nil {
		p.files.pruneAt = make(map[string]time.Time)
	}
	p.files.pruneAt[cluster] = at
	p.files.prunes = append(p.files.prunes, pruneItem{cluster: cluster, at: at})
}

// nextPrune returns when the first emptied file is due for removal.
func (p *Pipeline) nextPrune() (time.Time, bool) {
	if len(p.files.prunes) == 0 {
		return time.Time{}, false
	}
	return p.files.prunes[0].at, true
}

// prune removes the emptied files due by now. A file whose cluster was
// published again since is left alone; one whose write is still pending
// (the emptying failed) waits another --prune-after.
func (p *Pipeline) prune(now time.Time) {
	f := &p.files
	var removed []string
	for len(f.prunes) > 0 && !f.prunes[0].at.After(now) {
		it := f.prunes[0]
		f.prunes[0] = pruneItem{}
		f.prunes = f.prunes[1:]
		if at, ok := f.pruneAt[it.cluster]; !ok || !at.Equal(it.at) {
			continue // published again, or emptied again since
		}
		delete(f.pruneAt, it.cluster)
		if slices.Contains(p.declared, it.cluster) {
			continue // declared by a config reload since
		}
		ok, err := p.writer.Remove(it.cluster)
		switch {
		case errors.Is(err, writer.ErrInUse):
			p.schedulePrune(it.cluster, now.Add(f.pruneAfter))
		case err != nil:
			p.log.Warn("emptied file not pruned", "cluster", it.cluster, "error", err)
		case ok:
			removed = append(removed, it.cluster)
		}
	}
	if len(f.prunes) == 0 {
		f.prunes = nil // let the array go
	}
	if len(removed) == 0 {
		return
	}
	p.log.Info("pruned emptied files of clusters no Service publishes", "count", len(removed), "first", removed[0], "prune_after", f.pruneAfter)
	if f.onPrune != nil {
		f.onPrune(removed)
	}
}
