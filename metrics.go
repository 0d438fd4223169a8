package main

import (
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/edsync/edsync/render"
	"github.com/edsync/edsync/watch"
)

// Label values. Every combination is created at start, so that a series
// exists (at 0) before its first event and alerts on increase() work.
var (
	eventTypes     = []string{watch.EventAdd, watch.EventUpdate, watch.EventDelete}
	healthStatuses = [...]string{healthHealthy: "healthy", healthDraining: "draining", healthUnhealthy: "unhealthy"}
	skipReasons    = []string{
		watch.ReasonInvalidManifest, watch.ReasonNoServiceLabel, watch.ReasonOtherKind,
		render.ReasonFQDN, render.ReasonAddressType, render.ReasonNoAddress, render.ReasonInvalidAddress,
		render.ReasonInvalidPort, render.ReasonInvalidEndpoint, render.ReasonNameConflict, render.ReasonInvalidCLA,
		render.ReasonInvalidAnnotation, render.ReasonNoServicePort,
	}
)

// Indexes of healthStatuses: the health of a published endpoint.
const (
	healthHealthy = iota
	healthDraining
	healthUnhealthy
	numHealth
)

// Buckets, in seconds. Render and write of a flush take from tens of
// microseconds (one small Service) to seconds (every Service at start).
var (
	durationBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	// The debounce (default 50 ms) and max-delay (500 ms) bound the wait.
	debounceBuckets = []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	// From the EndpointSlice controller's change to the file's rename: tens
	// of milliseconds when all is well, minutes when something lags.
	programmingBuckets = []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}
)

// metrics holds edsync's Prometheus metrics, registered on a registry of
// its own (no global state: tests build as many as they like).
//
// The published gauges are kept incrementally: published remembers each
// cluster's counts, and a flush adjusts the totals by the difference for
// the clusters it renders, never walking all of them. That part is owned
// by the pipeline's goroutine; the counters may be touched from any.
type metrics struct {
	reg *prometheus.Registry

	sliceEvents        map[string]prometheus.Counter // by watch.Event*, resolved once: counted per slice event
	publishedServices  prometheus.Gauge
	publishedClusters  prometheus.Gauge
	publishedEndpoints [numHealth]prometheus.Gauge
	filesWritten       prometheus.Counter
	filesUnchanged     prometheus.Counter
	filesFailed        prometheus.Counter
	renderDuration     prometheus.Histogram
	writeDuration      prometheus.Histogram
	debounceDelay      prometheus.Histogram
	skipped            *prometheus.CounterVec
	lastWriteSuccess   prometheus.Gauge
	networkProgramming prometheus.Histogram

	configReloads             *prometheus.CounterVec
	configLastReloadOK        prometheus.Gauge
	configLastReloadSuccessTS prometheus.Gauge

	published map[string]publishedCluster
	// nonEmpty counts, per Service, its clusters holding an endpoint.
	nonEmpty map[render.ServiceKey]int
}

// publishedCluster is what the metrics remember of one cluster's file.
type publishedCluster struct {
	service   render.ServiceKey // zero for a declared cluster no Service has
	endpoints [numHealth]int
}

// counts reports whether the cluster makes its Service published: it has
// a Service and an endpoint.
func (c publishedCluster) counts() bool {
	return c.service != (render.ServiceKey{}) && c.endpoints != [numHealth]int{}
}

// newMetrics makes the metrics and registers them, with the Go runtime and
// process collectors, on a new registry.
func newMetrics(version string) *metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := factory{reg}
	f.gauge("edsync_build_info", "Always 1; the label says which edsync runs.", "version").WithLabelValues(version).Set(1)
	m := &metrics{
		reg:         reg,
		sliceEvents: make(map[string]prometheus.Counter, len(eventTypes)),
		publishedServices: f.gauge("edsync_published_services",
			"Services whose cluster files hold at least one endpoint.").WithLabelValues(),
		publishedClusters: f.gauge("edsync_published_clusters",
			"Cluster files edsync keeps up to date, empty ones included.").WithLabelValues(),
		renderDuration: f.histogram("edsync_flush_render_duration_seconds",
			"Time a flush spent rendering its Services.", durationBuckets),
		writeDuration: f.histogram("edsync_flush_write_duration_seconds",
			"Time a flush (or retry) spent writing its files, fsyncs included.", durationBuckets),
		debounceDelay: f.histogram("edsync_debounce_delay_seconds",
			"Time from a Service's first unwritten change to the flush that takes it (--debounce, --max-delay).", debounceBuckets),
		skipped: f.counter("edsync_skipped_objects_total",
			"Objects or parts of objects left out as invalid, by reason.", "reason"),
		lastWriteSuccess: f.gauge("edsync_last_write_success_timestamp_seconds",
			"Unix time of the last file written (renamed into place).").WithLabelValues(),
		networkProgramming: f.histogram("edsync_network_programming_duration_seconds",
			"Time from a change's endpoints.kubernetes.io/last-change-trigger-time on an EndpointSlice to the rename of its Service's file; "+
				"only slice versions that led to a write, not those of the initial list.", programmingBuckets),
		configReloads: f.counter("edsync_config_reloads_total",
			"Reloads of the --config file, by result (success, failure).", "result"),
		configLastReloadOK: f.gauge("edsync_config_last_reload_successful",
			"1 if the last load of the --config file succeeded, 0 if it failed (the running config stays).").WithLabelValues(),
		configLastReloadSuccessTS: f.gauge("edsync_config_last_reload_success_timestamp_seconds",
			"Unix time of the last successful load of the --config file.").WithLabelValues(),
		published: make(map[string]publishedCluster),
		nonEmpty:  make(map[render.ServiceKey]int),
	}
	endpoints := f.gauge("edsync_published_endpoints",
		"Endpoints in the cluster files, by health status (healthy, draining, unhealthy).", "health")
	for i, s := range healthStatuses {
		m.publishedEndpoints[i] = endpoints.WithLabelValues(s)
	}
	writes := f.counter("edsync_cluster_writes_total",
		"Cluster files handled by flushes and retries, by result: written (renamed into place), unchanged (bytes already right), failed.", "result")
	m.filesWritten = writes.WithLabelValues("written")
	m.filesUnchanged = writes.WithLabelValues("unchanged")
	m.filesFailed = writes.WithLabelValues("failed")
	events := f.counter("edsync_endpointslice_events_total",
		"EndpointSlice events the source delivered, by type (add, update, delete).", "type")
	for _, t := range eventTypes {
		m.sliceEvents[t] = events.WithLabelValues(t)
	}
	for _, r := range skipReasons {
		m.skipped.WithLabelValues(r)
	}
	for _, r := range []string{"success", "failure"} {
		m.configReloads.WithLabelValues(r)
	}
	return m
}

// factory makes metrics and registers them on one registry.
type factory struct{ reg *prometheus.Registry }

func (f factory) counter(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(g)
	return g
}

func (f factory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
	f.reg.MustRegister(h)
	return h
}

// sliceEvent and skip are the Store's observers: called from the sources'
// goroutines.
func (m *metrics) sliceEvent(kind string) { m.sliceEvents[kind].Inc() }
func (m *metrics) skip(reason string)     { m.skipped.WithLabelValues(reason).Inc() }

// writes counts the outcome of one Write or Retry and when it last renamed a file.
func (m *metrics) writes(written, unchanged, failed int, now time.Time) {
	m.filesWritten.Add(float64(written))
	m.filesUnchanged.Add(float64(unchanged))
	m.filesFailed.Add(float64(failed))
	if written > 0 {
		m.lastWriteSuccess.Set(seconds(now))
	}
}

// publish records the content handed to the writer for one cluster. A
// failed write is retried with this content, so the gauges follow what the
// files are about to hold. svc is zero for a cluster of no Service.
func (m *metrics) publish(name string, svc render.ServiceKey, cla *endpointv3.ClusterLoadAssignment) {
	next := publishedCluster{service: svc}
	for _, l := range cla.GetEndpoints() {
		for _, lb := range l.GetLbEndpoints() {
			switch lb.GetHealthStatus() {
			case corev3.HealthStatus_DRAINING:
				next.endpoints[healthDraining]++
			case corev3.HealthStatus_UNHEALTHY:
				next.endpoints[healthUnhealthy]++
			default: // HEALTHY, or UNKNOWN which Envoy counts as healthy
				next.endpoints[healthHealthy]++
			}
		}
	}
	prev, had := m.published[name]
	if had && prev == next {
		return
	}
	m.published[name] = next
	if !had {
		m.publishedClusters.Inc()
	}
	for i := range numHealth {
		if d := next.endpoints[i] - prev.endpoints[i]; d != 0 {
			m.publishedEndpoints[i].Add(float64(d))
		}
	}
	// A cluster changes Service only when a restart changes the template;
	// still, count it as leaving one and joining the other.
	was, is := had && prev.counts(), next.counts()
	if was && is && prev.service == next.service {
		return
	}
	if was {
		m.addServiceCluster(prev.service, -1)
	}
	if is {
		m.addServiceCluster(next.service, +1)
	}
}

// forget drops a cluster whose file is emptied and that no Service
// publishes any more: the published gauges no longer count it, and nothing
// is kept for it.
func (m *metrics) forget(name string) {
	prev, had := m.published[name]
	if !had {
		return
	}
	delete(m.published, name)
	m.publishedClusters.Dec()
	for i := range numHealth {
		if n := prev.endpoints[i]; n != 0 {
			m.publishedEndpoints[i].Sub(float64(n))
		}
	}
	if prev.counts() {
		m.addServiceCluster(prev.service, -1)
	}
}

// addServiceCluster adds d to the Service's count of non-empty clusters;
// the Service is published while the count is above 0.
func (m *metrics) addServiceCluster(svc render.ServiceKey, d int) {
	n := m.nonEmpty[svc] + d
	switch {
	case n <= 0:
		delete(m.nonEmpty, svc)
		m.publishedServices.Dec()
		return
	case n == 1 && d > 0:
		m.publishedServices.Inc()
	}
	m.nonEmpty[svc] = n
}

// serviceOf returns the Service of a published cluster (zero if none).
func (m *metrics) serviceOf(cluster string) render.ServiceKey { return m.published[cluster].service }

// configLoadedAtStart records the config edsync started with: the last
// load succeeded (a bad config at start is a usage error, exit 2).
func (m *metrics) configLoadedAtStart(now time.Time) {
	m.configLastReloadOK.Set(1)
	m.configLastReloadSuccessTS.Set(seconds(now))
}

// configReloaded records a reload of the --config file, err nil for a
// success; on failure the running config stays.
func (m *metrics) configReloaded(err error, now time.Time) {
	if err != nil {
		m.configReloads.WithLabelValues("failure").Inc()
		m.configLastReloadOK.Set(0)
		return
	}
	m.configReloads.WithLabelValues("success").Inc()
	m.configLastReloadOK.Set(1)
	m.configLastReloadSuccessTS.Set(seconds(now))
}

func seconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
