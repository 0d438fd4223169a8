// Package metrics is edsync's Prometheus metrics: it implements the
// pipeline's Metrics, counts config reloads, and serves /metrics. Every
// series is created at start, so that it exists (at 0) before its first
// event and alerts on increase() work.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/edsync/edsync/pipeline"
	"github.com/edsync/edsync/render"
	"github.com/edsync/edsync/status"
	"github.com/edsync/edsync/watch"
	"github.com/edsync/edsync/writer"
)

// Label values, each created at start.
var (
	eventTypes  = []string{watch.EventAdd, watch.EventUpdate, watch.EventDelete}
	skipReasons = []string{
		watch.ReasonInvalidManifest, watch.ReasonNoServiceLabel, watch.ReasonOtherKind,
		render.ReasonFQDN, render.ReasonAddressType, render.ReasonNoAddress, render.ReasonInvalidAddress,
		render.ReasonInvalidPort, render.ReasonInvalidEndpoint, render.ReasonNameConflict, render.ReasonInvalidCLA,
		render.ReasonInvalidAnnotation, render.ReasonNoServicePort, render.ReasonAddressConflict,
		render.ReasonAddressNotAllowed, render.ReasonNamespaceLimit, pipeline.ReasonFileTooLarge,
	}
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
	// edsync's own share: the debounce plus render and write, a few
	// milliseconds. Fine steps above the default debounce, so that "50 ms
	// plus how much" can be read off; coarse ones for the max-delay and
	// for a slow disk.
	// A new Service's cluster waits for --cds-debounce (3 s by default).
	cdsAddedBuckets    = []float64{.1, .25, .5, 1, 2, 3, 4, 5, 7.5, 10, 15, 30, 60, 120, 300}
	eventToFileBuckets = []float64{.001, .0025, .005, .01, .025, .05, .055, .06, .07, .08, .1, .15, .25, .5, .75, 1, 2.5, 5, 10}
)

// Metrics holds edsync's Prometheus metrics, registered on a registry of
// its own (no global state: tests build as many as they like). Its methods
// may be called from any goroutine.
type Metrics struct {
	reg *prometheus.Registry

	sliceEvents        map[string]prometheus.Counter // by watch.Event*, resolved once: counted per slice event
	publishedServices  prometheus.Gauge
	publishedClusters  prometheus.Gauge
	endpointsHealthy   prometheus.Gauge
	endpointsDraining  prometheus.Gauge
	endpointsUnhealthy prometheus.Gauge
	filesWritten       prometheus.Counter
	filesUnchanged     prometheus.Counter
	filesFailed        prometheus.Counter
	renderDuration     prometheus.Histogram
	writeDuration      prometheus.Histogram
	debounceDelay      prometheus.Histogram
	skipped            *prometheus.CounterVec
	lastWriteSuccess   prometheus.Gauge
	networkProgramming prometheus.Histogram
	eventToFile        prometheus.Histogram
	cdsClusters        prometheus.Gauge
	cdsWrites          map[string]prometheus.Counter
	cdsClusterAdded    prometheus.Histogram
	inotifyNeeded      prometheus.Gauge
	inotifyLimit       map[string]prometheus.Gauge // by sysctl

	sourceUp, sourceSynced, sourceStale, sourceLastOK, sourceEndpoints *prometheus.GaugeVec

	configReloads             *prometheus.CounterVec
	configLastReloadOK        prometheus.Gauge
	configLastReloadSuccessTS prometheus.Gauge

	// The read-back of Envoy (readback.go).
	envoyFiles      map[status.State]prometheus.Gauge
	envoyApply      prometheus.Histogram
	envoyRejections prometheus.Counter
	envoyAdminUp    prometheus.Gauge
}

var _ pipeline.Metrics = (*Metrics)(nil)

// New makes the metrics and registers them, with the Go runtime and
// process collectors, on a new registry; version is edsync_build_info's.
func New(version string) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := factory{reg}
	f.gauge("edsync_build_info", "Always 1; the label says which edsync runs.", "version").WithLabelValues(version).Set(1)
	m := &Metrics{
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
		eventToFile: f.histogram("edsync_event_to_file_seconds",
			"edsync's own share of a change's latency: from the arrival of a Service's first unwritten change (a slice, Service or Node event) "+
				"to the rename of its file, the debounce included; only changes that led to a write, not the initial sync.", eventToFileBuckets),
		sourceUp: f.gauge("edsync_source_up",
			"1 if the source's API server answers (config file sources), else 0.", "source"),
		sourceSynced: f.gauge("edsync_source_synced",
			"1 once the source's first list is done, else 0.", "source"),
		sourceStale: f.gauge("edsync_source_stale",
			"1 while the source has been unreachable longer than --source-stale-after and its endpoints are removed.", "source"),
		sourceEndpoints: f.gauge("edsync_source_endpoints",
			"Endpoints of the slices placed as the source, every condition counted (0 while its endpoints are removed as stale).", "source"),
		sourceLastOK: f.gauge("edsync_source_last_ok_timestamp_seconds",
			"Unix time the source's API server last answered a list or watch.", "source"),
		inotifyNeeded: f.gauge("edsync_envoy_inotify_instances_needed",
			"inotify instances (and watches) an Envoy reading every file edsync publishes needs: one per cluster file, one for the CDS file; "+
				"Envoy aborts when fs.inotify.max_user_instances does not allow them.").WithLabelValues(),
		cdsClusters: f.gauge("edsync_cds_clusters",
			"Clusters in the CDS file (--cds-file), as last written.").WithLabelValues(),
		cdsClusterAdded: f.histogram("edsync_cds_cluster_added_seconds",
			"Time from the arrival of the change that published a new cluster (a Service's first slice) to the rename of the CDS file naming it; "+
				"--cds-debounce included.", cdsAddedBuckets),
		configReloads: f.counter("edsync_config_reloads_total",
			"Reloads of the --config file, by result (success, failure).", "result"),
		configLastReloadOK: f.gauge("edsync_config_last_reload_successful",
			"1 if the last load of the --config file succeeded, 0 if it failed (the running config stays).").WithLabelValues(),
		configLastReloadSuccessTS: f.gauge("edsync_config_last_reload_success_timestamp_seconds",
			"Unix time of the last successful load of the --config file.").WithLabelValues(),
	}
	endpoints := f.gauge("edsync_published_endpoints",
		"Endpoints in the cluster files, by health status (healthy, draining, unhealthy).", "health")
	m.endpointsHealthy = endpoints.WithLabelValues("healthy")
	m.endpointsDraining = endpoints.WithLabelValues("draining")
	m.endpointsUnhealthy = endpoints.WithLabelValues("unhealthy")
	writes := f.counter("edsync_cluster_writes_total",
		"Cluster files handled by flushes and retries, by result: written (renamed into place), unchanged (bytes already right), failed.", "result")
	m.filesWritten = writes.WithLabelValues("written")
	m.filesUnchanged = writes.WithLabelValues("unchanged")
	m.filesFailed = writes.WithLabelValues("failed")
	cdsWrites := f.counter("edsync_cds_writes_total",
		"Writes of the CDS file (--cds-file), by result: written (renamed into place), unchanged (bytes already right), failed (the old file stays; retried).", "result")
	m.cdsWrites = make(map[string]prometheus.Counter, 3)
	for _, r := range []string{pipeline.CDSResultWritten, pipeline.CDSResultUnchanged, pipeline.CDSResultFailed} {
		m.cdsWrites[r] = cdsWrites.WithLabelValues(r)
	}
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
	limit := f.gauge("edsync_inotify_limit",
		"The node's inotify limits, by sysctl (max_user_instances, max_user_watches), as last read; 0 when unknown.", "sysctl")
	m.inotifyLimit = map[string]prometheus.Gauge{
		"max_user_instances": limit.WithLabelValues("max_user_instances"),
		"max_user_watches":   limit.WithLabelValues("max_user_watches"),
	}
	m.readBack(f)
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

// Ready registers edsync_ready, read at each scrape from ready (the
// pipeline's, as /readyz/files asks it): 1 once every file of the first
// full sync is written, else 0. /readyz is the kubelet's, not Prometheus':
// an alert on an edsync that never gets there needs this. Called once,
// when metrics are served.
func (m *Metrics) Ready(ready func() error) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "edsync_ready",
		Help: "1 once every file of the first full sync is written (as /readyz/files answers 200), else 0.",
	}, func() float64 {
		if ready() != nil {
			return 0
		}
		return 1
	}))
}

// Handler serves the metrics, as Prometheus scrapes them.
func (m *Metrics) Handler() http.Handler {
	return promhttp.InstrumentMetricHandler(m.reg, promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
}

// Gather makes Metrics a prometheus.Gatherer: what a scrape reads.
func (m *Metrics) Gather() ([]*dto.MetricFamily, error) { return m.reg.Gather() }

// The methods of pipeline.Metrics, which documents them.

func (m *Metrics) SliceEvent(kind string) { m.sliceEvents[kind].Inc() }
func (m *Metrics) Skipped(reason string)  { m.skipped.WithLabelValues(reason).Inc() }

func (m *Metrics) DebounceDelay(d time.Duration)      { m.debounceDelay.Observe(d.Seconds()) }
func (m *Metrics) RenderDuration(d time.Duration)     { m.renderDuration.Observe(d.Seconds()) }
func (m *Metrics) NetworkProgramming(d time.Duration) { m.networkProgramming.Observe(d.Seconds()) }
func (m *Metrics) EventToFile(d time.Duration)        { m.eventToFile.Observe(d.Seconds()) }
func (m *Metrics) CDSClusterAdded(d time.Duration)    { m.cdsClusterAdded.Observe(d.Seconds()) }

// CDSWrote counts a write of the CDS file and, unless it failed, sets the
// clusters it holds.
func (m *Metrics) CDSWrote(result string, clusters int) {
	m.cdsWrites[result].Inc()
	if result != pipeline.CDSResultFailed {
		m.cdsClusters.Set(float64(clusters))
	}
}

// Wrote counts the outcome of one Write or Retry and when it last renamed
// a file.
func (m *Metrics) Wrote(res writer.Result, took time.Duration, end time.Time) {
	m.writeDuration.Observe(took.Seconds())
	m.filesWritten.Add(float64(res.Written))
	m.filesUnchanged.Add(float64(res.Unchanged))
	m.filesFailed.Add(float64(res.Failed))
	if res.Written > 0 {
		m.lastWriteSuccess.Set(seconds(end))
	}
}

// InotifyBudget records what an Envoy reading every file needs and the
// inotify limits as last read.
func (m *Metrics) InotifyBudget(needed int, limits writer.InotifyLimits) {
	m.inotifyNeeded.Set(float64(needed))
	m.inotifyLimit["max_user_instances"].Set(float64(limits.Instances))
	m.inotifyLimit["max_user_watches"].Set(float64(limits.Watches))
}

// Published sets the published gauges.
func (m *Metrics) Published(p pipeline.Published) {
	m.publishedServices.Set(float64(p.Services))
	m.publishedClusters.Set(float64(p.Clusters))
	m.endpointsHealthy.Set(float64(p.Healthy))
	m.endpointsDraining.Set(float64(p.Draining))
	m.endpointsUnhealthy.Set(float64(p.Unhealthy))
}

// ConfigLoadedAtStart records the config edsync started with: the last
// load succeeded (a bad config at start is a usage error, exit 2).
func (m *Metrics) ConfigLoadedAtStart(now time.Time) {
	m.configLastReloadOK.Set(1)
	m.configLastReloadSuccessTS.Set(seconds(now))
}

// ConfigReloaded records a reload of the --config file, err nil for a
// success; on failure the running config stays.
func (m *Metrics) ConfigReloaded(err error, now time.Time) {
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

// Sources sets the gauges of the config file's sources from their status.
func (m *Metrics) Sources(status []watch.SourceStatus) {
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	for _, st := range status {
		m.sourceUp.WithLabelValues(st.Name).Set(b(st.Up))
		m.sourceSynced.WithLabelValues(st.Name).Set(b(st.Synced))
		m.sourceStale.WithLabelValues(st.Name).Set(b(st.Stale))
		m.sourceEndpoints.WithLabelValues(st.Name).Set(float64(st.Endpoints))
		if !st.LastOK.IsZero() {
			m.sourceLastOK.WithLabelValues(st.Name).Set(seconds(st.LastOK))
		}
	}
}
