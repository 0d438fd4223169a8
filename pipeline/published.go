package pipeline

import (
	"log/slog"

	"github.com/edsync/edsync/render"
)

// publishedFiles is what the pipeline remembers of each cluster file it keeps:
// the Service it belongs to (to render it again when the file is lost, and
// to credit a write to its Service's changes) and its endpoint counts.
//
// The totals are kept incrementally: a flush adjusts them by the difference
// for the clusters it renders, never walking all of them. Owned by the
// pipeline's goroutine.
type publishedFiles struct {
	clusters map[string]publishedCluster
	// nonEmpty counts, per Service, its clusters holding an endpoint.
	nonEmpty map[render.ServiceKey]int
	total    Published
	status   Status // told of each change
	log      *slog.Logger
}

// publishedCluster is what is remembered of one cluster's file.
type publishedCluster struct {
	service   render.ServiceKey // zero for a declared cluster no Service has
	endpoints endpointCounts
	nodeLocal render.NodeLocal
}

// endpointCounts counts a cluster's endpoints by health.
type endpointCounts = render.HealthCounts

func addCounts(t *Published, c endpointCounts, sign int) {
	t.Healthy += sign * c.Healthy
	t.Draining += sign * c.Draining
	t.Unhealthy += sign * c.Unhealthy
}

// counts reports whether the cluster makes its Service published: it has
// a Service and an endpoint.
func (c publishedCluster) counts() bool {
	return c.service != (render.ServiceKey{}) && c.endpoints != endpointCounts{}
}

func newPublished(status Status, log *slog.Logger) publishedFiles {
	if status == nil {
		status = noStatus{}
	}
	return publishedFiles{
		clusters: make(map[string]publishedCluster),
		nonEmpty: make(map[render.ServiceKey]int),
		status:   status,
		log:      log,
	}
}

// publish records the content handed to the writer for one cluster. svc is
// zero for a cluster of no Service.
func (p *publishedFiles) publish(name string, svc render.ServiceKey, counts endpointCounts, nodeLocal render.NodeLocal) {
	next := publishedCluster{service: svc, endpoints: counts, nodeLocal: nodeLocal}
	prev, had := p.clusters[name]
	if had && prev == next {
		return
	}
	p.clusters[name] = next
	p.status.Published(name, svc, counts, nodeLocal)
	p.logNodeLocal(name, svc, prev, next)
	if !had {
		p.total.Clusters++
	}
	addCounts(&p.total, prev.endpoints, -1)
	addCounts(&p.total, next.endpoints, +1)
	// A cluster changes Service only when a restart changes the template;
	// still, count it as leaving one and joining the other.
	was, is := had && prev.counts(), next.counts()
	if was && is && prev.service == next.service {
		return
	}
	if was {
		p.addServiceCluster(prev.service, -1)
	}
	if is {
		p.addServiceCluster(next.service, +1)
	}
}

// logNodeLocal says once, when a cluster comes to it, that its Service's
// internalTrafficPolicy: Local leaves it no endpoint (publish calls it only
// when the cluster changed, so an empty cluster staying empty is not said
// again), or cannot apply.
func (p *publishedFiles) logNodeLocal(name string, svc render.ServiceKey, prev, next publishedCluster) {
	switch {
	case next.nodeLocal == render.NodeLocalOn && next.endpoints == endpointCounts{}:
		p.log.Info("internalTrafficPolicy Local: no endpoint of the Service on this Node, so its cluster has none (no other Node's, as kube-proxy)",
			"cluster", name, "service", svc.String())
	case next.nodeLocal == render.NodeLocalNoNode && prev.nodeLocal != render.NodeLocalNoNode:
		p.log.Warn("internalTrafficPolicy Local cannot apply: no local Node is known (--node-name); every endpoint is published",
			"cluster", name, "service", svc.String())
	}
}

// forget drops a cluster whose file is emptied and that no Service
// publishes any more: the totals no longer count it, and nothing is kept
// for it.
func (p *publishedFiles) forget(name string) {
	prev, had := p.clusters[name]
	if !had {
		return
	}
	delete(p.clusters, name)
	p.status.Forget(name)
	p.total.Clusters--
	addCounts(&p.total, prev.endpoints, -1)
	if prev.counts() {
		p.addServiceCluster(prev.service, -1)
	}
}

// addServiceCluster adds d to the Service's count of non-empty clusters;
// the Service is published while the count is above 0.
func (p *publishedFiles) addServiceCluster(svc render.ServiceKey, d int) {
	n := p.nonEmpty[svc] + d
	switch {
	case n <= 0:
		delete(p.nonEmpty, svc)
		p.total.Services--
		return
	case n == 1 && d > 0:
		p.total.Services++
	}
	p.nonEmpty[svc] = n
}

// serviceOf returns the Service of a published cluster (zero if none).
func (p *publishedFiles) serviceOf(cluster string) render.ServiceKey {
	return p.clusters[cluster].service
}
