package pipeline

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	"github.com/edsync/edsync/render"
	"github.com/edsync/edsync/writer"
)

// CDSWriter writes the CDS file (writer.CDS): the whole set of clusters
// each time.
type CDSWriter interface {
	Write(clusters []*clusterv3.Cluster) (written bool, err error)
	// Version is the version_info of what the file holds.
	Version() string
}

// cdsMaxDelayFactor caps how long CDS changes that keep coming wait: at
// most this many debounce periods after the first.
const cdsMaxDelayFactor = 10

// cdsState is the CDS file's side of the pipeline. The file names a
// cluster only once its EDS file is on disk (Envoy refuses a cluster whose
// path does not exist), and a cluster leaves the file before its EDS file
// is emptied (an emptied file would drop the cluster's traffic while Envoy
// still routes to it). Changes are debounced on their own, longer than
// the endpoints: each CDS change makes Envoy warm clusters, and a Service
// that comes and goes within the debounce changes nothing.
type cdsState struct {
	w        CDSWriter
	debounce time.Duration
	local    string // Options.LocalCluster: never in the file

	// up holds the clusters to publish, with what their entries take from
	// Kubernetes: published and not gone, or declared.
	up map[string]render.Upstream
	// onDisk holds those of them whose EDS file has been written.
	onDisk map[string]bool
	// named is what the CDS file on disk holds; until namedKnown (the
	// first write), the file of an earlier run may hold any cluster.
	named      map[string]render.Upstream
	namedKnown bool
	// held are the emptied CLAs of gone clusters that the CDS file may
	// still name: written once a CDS file without them is on disk.
	held map[string]writer.Cluster
	// since holds, for each cluster to publish that the file does not name
	// yet, when its Service's change arrived (CDSClusterAdded).
	since map[string]time.Time
	// first and last are the times of the first and last change not yet
	// written (zero: none); retryAt is set after a failed write.
	first, last, retryAt time.Time
	retryDelay           time.Duration
}

func newCDSState(o Options) *cdsState {
	if o.CDS == nil {
		return nil
	}
	return &cdsState{
		w: o.CDS, debounce: o.CDSDebounce, local: o.LocalCluster,
		up: make(map[string]render.Upstream), onDisk: make(map[string]bool),
		named: make(map[string]render.Upstream), held: make(map[string]writer.Cluster),
		since:      make(map[string]time.Time),
		retryDelay: retryMin,
	}
}

// changed notes a change of the set the CDS file should hold.
func (s *cdsState) changed(now time.Time) {
	if s.first.IsZero() {
		s.first = now
	}
	s.last = now
}

// publish notes a cluster to publish, with its upstream settings; arrived
// is when the change that published it arrived.
func (s *cdsState) publish(name string, up render.Upstream, now, arrived time.Time) {
	old, ok := s.up[name]
	if ok && old == up {
		return
	}
	s.up[name] = up
	s.changed(now)
	if _, named := s.named[name]; !ok && !named && s.namedKnown {
		s.since[name] = arrived
	}
}

// hold takes out of the batch the emptied CLAs of released clusters that
// the CDS file may still name: they wait in held for a CDS file without
// them. A cluster published again drops its held CLA: its new content is
// in the batch.
func (p *Pipeline) cdsHold(batch []writer.Cluster) []writer.Cluster {
	s := p.cds
	if s == nil {
		return batch
	}
	now := p.now()
	// Only a name's last entry counts, as for the files: a cluster name
	// one Service gave up and another took in the same flush is in the
	// batch twice, released first, then live.
	last := make(map[string]int, len(batch))
	for i, c := range batch {
		last[c.Name] = i
	}
	out := batch[:0]
	for i, c := range batch {
		if last[c.Name] != i {
			continue
		}
		if !c.Release {
			delete(s.held, c.Name)
			out = append(out, c)
			continue
		}
		if _, ok := s.up[c.Name]; ok {
			delete(s.up, c.Name)
			delete(s.onDisk, c.Name)
			delete(s.since, c.Name)
			s.changed(now)
		}
		if _, named := s.named[c.Name]; named || !s.namedKnown {
			s.held[c.Name] = c
			continue
		}
		out = append(out, c)
	}
	return out
}

// cdsWritten notes the EDS files now on disk: their clusters may enter the
// CDS file.
func (p *Pipeline) cdsWritten(names []string) {
	s := p.cds
	if s == nil {
		return
	}
	now := p.now()
	for _, name := range names {
		if _, ok := s.up[name]; ok && !s.onDisk[name] && !p.writer.IsPending(name) {
			s.onDisk[name] = true
			s.changed(now)
		}
	}
}

// cdsDue returns when the CDS file is to be written next, if it is.
func (p *Pipeline) cdsDue() (time.Time, bool) {
	s := p.cds
	if s == nil || s.first.IsZero() {
		return time.Time{}, false
	}
	if !s.retryAt.IsZero() {
		return s.retryAt, true
	}
	due := s.last.Add(s.debounce)
	if limit := s.first.Add(cdsMaxDelayFactor * s.debounce); limit.Before(due) {
		due = limit
	}
	return due, true
}

// writeCDS writes the CDS file with every cluster to publish whose EDS file
// is on disk, then the emptied files of the clusters it no longer names. A
// failed write is retried (cdsDue) and returned.
func (p *Pipeline) writeCDS(ctx context.Context) error {
	s := p.cds
	if s == nil {
		return nil
	}
	want := make(map[string]render.Upstream, len(s.up))
	for name, up := range s.up {
		if s.onDisk[name] && name != s.local {
			want[name] = up
		}
	}
	opts := p.renderer.ClusterOptions()
	clusters := make([]*clusterv3.Cluster, 0, len(want))
	for _, name := range slices.Sorted(maps.Keys(want)) {
		c, err := p.cdsCluster(name, want[name], opts)
		if err != nil {
			p.log.Error("cluster left out of the CDS file", "cluster", name, "error", err)
			delete(want, name)
			continue
		}
		clusters = append(clusters, c)
	}
	names := slices.Sorted(maps.Keys(want))
	written, err := s.w.Write(clusters)
	now := p.now()
	report := Report{CDS: true, CDSClusters: names}
	defer func() {
		p.seq++
		report.Seq = p.seq
		if p.onFlush != nil {
			p.onFlush(report)
		}
	}()
	if err != nil {
		p.metrics.CDSWrote(CDSResultFailed, 0)
		report.Failed, report.Err = 1, err
		s.changed(now) // keeps the write due (cdsDue)
		s.retryAt = now.Add(s.retryDelay)
		s.retryDelay = min(2*s.retryDelay, retryMax)
		p.log.Error("CDS file not written; retrying", "error", err, "retry_in", s.retryAt.Sub(now))
		return err
	}
	if written {
		report.Written = 1
	} else {
		report.Unchanged = 1
	}
	result := CDSResultUnchanged
	if written {
		result = CDSResultWritten
	}
	p.metrics.CDSWrote(result, len(clusters))
	p.published.status.CDSKept(s.w.Version(), now)
	for name := range want {
		if t, ok := s.since[name]; ok {
			p.metrics.CDSClusterAdded(max(now.Sub(t), 0))
			delete(s.since, name)
		}
	}
	if written {
		// Rare (debounced) and each makes Envoy warm clusters: worth a line.
		added, removed := 0, 0
		for name := range want {
			if _, ok := s.named[name]; !ok {
				added++
			}
		}
		for name := range s.named {
			if _, ok := want[name]; !ok {
				removed++
			}
		}
		p.log.Info("wrote the CDS file", "clusters", len(clusters), "added", added, "removed", removed)
	}
	s.named, s.namedKnown = want, true
	s.first, s.last, s.retryAt, s.retryDelay = time.Time{}, time.Time{}, time.Time{}, retryMin
	if p.synced {
		p.checkReady(writer.Result{})
	}

	// The file names none of the held clusters any more: their EDS files
	// may be emptied now.
	if len(s.held) == 0 {
		return nil
	}
	batch := make([]writer.Cluster, 0, len(s.held))
	for _, name := range slices.Sorted(maps.Keys(s.held)) {
		batch = append(batch, s.held[name])
	}
	clear(s.held)
	start := p.now()
	res := p.writer.Write(ctx, batch)
	p.log.Info("cleared the endpoints of the clusters the CDS file dropped", "clusters", len(batch), p.writtenKey(), res.Written, "failed", res.Failed)
	p.wrote(res, start)
	p.released(batch)
	p.metrics.Published(p.published.total)
	p.checkInotify()
	report.Written += res.Written
	report.Unchanged += res.Unchanged
	report.Failed += res.Failed
	report.WrittenClusters = res.WrittenClusters
	report.Err = res.Err
	for _, c := range batch {
		report.Clusters = append(report.Clusters, c.Name)
	}
	return nil
}

// cdsCluster is the CDS entry of a cluster, if its EDS file is there: Envoy
// refuses a cluster whose path does not exist (and with it the whole
// file), and a file can be lost behind our back and not yet written again.
// A template a reload removed gives way to the default one: the cluster
// (a declared one whose Service went, say) must stay in the file.
func (p *Pipeline) cdsCluster(name string, up render.Upstream, opts render.ClusterOptions) (*clusterv3.Cluster, error) {
	path, err := p.writer.Path(name)
	if err != nil {
		return nil, err
	}
	if !p.dryRun {
		if _, err := os.Stat(path); err != nil {
			delete(p.cds.onDisk, name)
			return nil, fmt.Errorf("its EDS file: %w", err)
		}
	}
	if up.Template != "" && opts.Templates[up.Template] == nil {
		p.log.Warn("cluster template gone; the cluster takes the default one", "cluster", name, "template", up.Template)
		up.Template = ""
	}
	return render.EDSCluster(name, path, up, opts)
}
