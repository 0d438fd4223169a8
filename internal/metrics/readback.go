package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edsync/edsync/readback"
	"github.com/edsync/edsync/status"
)

var _ readback.Metrics = (*Metrics)(nil)

// applyBuckets: from a file's rename to the poll that sees Envoy run its
// version. Envoy loads a file within milliseconds; what is measured is
// bounded below by the poll interval (1 s by default), and a slow or
// absent Envoy shows as minutes.
var applyBuckets = []float64{.1, .25, .5, 1, 1.5, 2, 3, 5, 10, 30, 60, 120, 300, 600}

var envoyStates = []status.State{status.StateApplied, status.StatePending, status.StateRejected, status.StateUnknown}

func (m *Metrics) readBack(f factory) {
	files := f.gauge("edsync_envoy_files",
		"Files by what Envoy did with them, as the last read-back of its admin saw (--envoy-admin): applied, pending, rejected (Envoy keeps its previous endpoints), unknown (Envoy has no such cluster, or its admin does not answer).", "state")
	m.envoyFiles = make(map[status.State]prometheus.Gauge, len(envoyStates))
	for _, s := range envoyStates {
		m.envoyFiles[s] = files.WithLabelValues(string(s))
	}
	m.envoyApply = f.histogram("edsync_envoy_apply_seconds",
		"Time from a file's rename to the read-back that saw Envoy run its version: the end of the network programming path (resolution: the poll interval).", applyBuckets)
	m.envoyRejections = f.counter("edsync_envoy_rejections_total",
		"Versions of files (the CDS file's included) that Envoy refused, each counted once.").WithLabelValues()
	m.envoyAdminUp = f.gauge("edsync_envoy_admin_up",
		"1 if Envoy's admin answered the last read-back, else 0 (also 0 without --envoy-admin).").WithLabelValues()
}

// The methods of readback.Metrics, which documents them.

func (m *Metrics) States(counts map[status.State]int) {
	for s, g := range m.envoyFiles {
		g.Set(float64(counts[s]))
	}
}

func (m *Metrics) Applied(d time.Duration) { m.envoyApply.Observe(d.Seconds()) }
func (m *Metrics) Rejected()               { m.envoyRejections.Inc() }

func (m *Metrics) AdminUp(up bool) {
	v := 0.0
	if up {
		v = 1
	}
	m.envoyAdminUp.Set(v)
}
