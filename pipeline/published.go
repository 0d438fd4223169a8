package pipeline

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

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
}

// publishedCluster is what is remembered of one cluster's file.
type publishedCluster struct {
	service   render.ServiceKey // zero for a declared cluster no Service has
	endpoints endpointCounts
}

// endpointCounts counts endpoints by health, indexed by the constants below.
type endpointCounts [3]int

const (
	healthy = iota // or UNKNOWN, which Envoy counts as healthy
	draining
	unhealthy
)

func (c endpointCounts) add(t *Published, sign int) {
	t.Healthy += sign * c[healthy]
	t.Draining += sign * c[draining]
	t.Unhealthy += sign * c[unhealthy]
}

// counts reports whether the cluster makes its Service published: it has
// a Service and an endpoint.
func (c publishedCluster) counts() bool {
	return c.service != (render.ServiceKey{}) && c.endpoints != endpointCounts{}
}

func newPublished() publishedFiles {
	return publishedFiles{
		clusters: make(map[string]publishedCluster),
		nonEmpty: make(map[render.ServiceKey]int),
	}
}

// publish records the content handed to the writer for one cluster, whose
// localities' endpoints are hosts. svc is zero for a cluster of no Service.
func (p *publishedFiles) publish(name string, svc render.ServiceKey, hosts [][]render.Host) {
	next := publishedCluster{service: svc}
	for _, l := range hosts {
		for _, h := range l {
			switch h.HealthStatus() {
			case corev3.HealthStatus_DRAINING:
				next.endpoints[draining]++
			case corev3.HealthStatus_UNHEALTHY:
				next.endpoints[unhealthy]++
			default: // HEALTHY, or UNKNOWN which Envoy counts as healthy
				next.endpoints[healthy]++
			}
		}
	}
	prev, had := p.clusters[name]
	if had && prev == next {
		return
	}
	p.clusters[name] = next
	if !had {
		p.total.Clusters++
	}
	prev.endpoints.add(&p.total, -1)
	next.endpoints.add(&p.total, +1)
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

// forget drops a cluster whose file is emptied and that no Service
// publishes any more: the totals no longer count it, and nothing is kept
// for it.
func (p *publishedFiles) forget(name string) {
	prev, had := p.clusters[name]
	if !had {
		return
	}
	delete(p.clusters, name)
	p.total.Clusters--
	prev.endpoints.add(&p.total, -1)
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
