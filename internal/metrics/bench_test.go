package metrics

import (
	"testing"
	"time"

	"github.com/edsync/edsync/pipeline"
	"github.com/edsync/edsync/watch"
	"github.com/edsync/edsync/writer"
)

// BenchmarkOneEvent is what Prometheus adds to one slice event's flush (the
// pipeline's benchmarks run without it): the calls the loop makes for a
// slice update that rewrites one file.
func BenchmarkOneEvent(b *testing.B) {
	m := New("bench")
	res := writer.Result{Written: 1}
	now := time.Now()
	pub := pipeline.Published{Services: 10000, Clusters: 10000, Healthy: 100000}
	for b.Loop() {
		m.SliceEvent(watch.EventUpdate)
		m.DebounceDelay(50 * time.Millisecond)
		m.RenderDuration(20 * time.Microsecond)
		m.Wrote(res, 60*time.Microsecond, now)
		m.NetworkProgramming(80 * time.Millisecond)
		pub.Healthy++
		m.Published(pub)
	}
}
