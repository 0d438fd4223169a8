package pipeline

import (
	"time"

	"github.com/edsync/edsync/render"
	"github.com/edsync/edsync/writer"
)

// Metrics is what the pipeline reports as it works. It knows no metrics
// library: internal/metrics implements it with Prometheus.
type Metrics interface {
	// SliceEvent (a watch.Event*) and Skipped (a Reason* of watch or
	// render) may be called from any goroutine: the Store calls them
	// under its lock, so they must be quick and must not call back.
	SliceEvent(kind string)
	Skipped(reason string)

	// The others are called from the pipeline's goroutine.

	// DebounceDelay is the time from a Service's first unwritten change to
	// the flush that takes it.
	DebounceDelay(time.Duration)
	// RenderDuration is the time a flush spent rendering its Services.
	RenderDuration(time.Duration)
	// Wrote is the outcome of one Write or Retry, which took took and
	// ended at end.
	Wrote(res writer.Result, took time.Duration, end time.Time)
	// NetworkProgramming is the time from a change's trigger time on an
	// EndpointSlice to the rename of its Service's file.
	NetworkProgramming(time.Duration)
	// EventToFile is edsync's own share of a change's latency: from the
	// arrival of a Service's first unwritten change (an EndpointSlice
	// event, a Service or Node change that alters its file) to the rename
	// of its file; the debounce is part of it.
	EventToFile(time.Duration)
	// CDSWrote is the outcome of a write of the CDS file (one of the
	// CDSResult* values) and, unless it failed, the clusters it holds.
	CDSWrote(result string, clusters int)
	// CDSClusterAdded is the time from the arrival of the first change of
	// a Service that published a new cluster to the rename of the CDS file
	// naming that cluster.
	CDSClusterAdded(time.Duration)
	// Published is what the files hold, reported once at the end of each
	// flush (a scrape during a long flush sees the previous totals).
	Published(Published)
	// InotifyBudget is what an Envoy reading every published file needs
	// (an inotify instance and a watch per file) and the limits as last
	// read (zero when unknown), after each flush.
	InotifyBudget(needed int, limits writer.InotifyLimits)
}

// Published sums up what the cluster files hold, as handed to the writer
// (a failed write is retried with that content, so it is what the files
// are about to hold).
type Published struct {
	// Services have a cluster file holding at least one endpoint.
	Services int
	// Clusters are the files edsync keeps up to date, empty ones included.
	Clusters int
	// Endpoints by health status; UNKNOWN counts as healthy, as in Envoy.
	Healthy, Draining, Unhealthy int
}

// Status is told what the files hold as they are written: the status view
// (package status) behind /debug/clusters and the read-back of Envoy.
// Called from the pipeline's goroutine; it must be quick.
type Status interface {
	// Kept: the files of a Write or Retry that hold their content, at at.
	Kept(kept []writer.Kept, at time.Time)
	// Published: a cluster's Service and endpoints as handed to the writer.
	Published(cluster string, svc render.ServiceKey, counts render.HealthCounts, nodeLocal render.NodeLocal)
	// Forget: a cluster whose file is emptied and no longer kept.
	Forget(cluster string)
	// CDSKept: the CDS file holds version since at.
	CDSKept(version string, at time.Time)
}

type noStatus struct{}

func (noStatus) Kept([]writer.Kept, time.Time)                                              {}
func (noStatus) Published(string, render.ServiceKey, render.HealthCounts, render.NodeLocal) {}
func (noStatus) Forget(string)                                                              {}
func (noStatus) CDSKept(string, time.Time)                                                  {}

type noMetrics struct{}

func (noMetrics) SliceEvent(string)                             {}
func (noMetrics) Skipped(string)                                {}
func (noMetrics) DebounceDelay(time.Duration)                   {}
func (noMetrics) RenderDuration(time.Duration)                  {}
func (noMetrics) Wrote(writer.Result, time.Duration, time.Time) {}
func (noMetrics) NetworkProgramming(time.Duration)              {}
func (noMetrics) EventToFile(time.Duration)                     {}
func (noMetrics) CDSWrote(string, int)                          {}
func (noMetrics) CDSClusterAdded(time.Duration)                 {}

// The results of a CDS file write.
const (
	CDSResultWritten   = "written"
	CDSResultUnchanged = "unchanged"
	CDSResultFailed    = "failed"
)

func (noMetrics) Published(Published)                     {}
func (noMetrics) InotifyBudget(int, writer.InotifyLimits) {}
