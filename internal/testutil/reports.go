package testutil

import (
	"context"
	"slices"
	"testing"
	"time"
)

// Reports runs a pipeline for a test and follows the reports of its
// flushes, so that tests wait on the flush sequence, not on time. R is
// pipeline.Report, which this package cannot name: the pipeline's own tests
// import it.
type Reports[R any] struct {
	c        chan R
	done     chan error
	stopped  bool
	cancel   context.CancelFunc
	clusters func(R) []string
}

// NewReports returns a follower; clusters gives a report's cluster names.
func NewReports[R any](clusters func(R) []string) *Reports[R] {
	return &Reports[R]{c: make(chan R, 100), done: make(chan error, 1), clusters: clusters}
}

// Report is the pipeline's flush hook.
func (r *Reports[R]) Report(rep R) { r.c <- rep }

// Run runs run (the pipeline's Run) until the test ends or Stop.
func (r *Reports[R]) Run(t testing.TB, run func(context.Context) error) {
	ctx, cancel := context.WithCancel(t.Context())
	r.cancel = cancel
	go func() { r.done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if !r.stopped {
			<-r.done
		}
	})
}

// Stop cancels the run and returns what it returned.
func (r *Reports[R]) Stop() error {
	r.cancel()
	r.stopped = true
	return <-r.done
}

// Next returns the next report.
func (r *Reports[R]) Next(t testing.TB) R {
	t.Helper()
	return r.Wait(t, "flush", func(R) bool { return true })
}

// Wait returns the next report for which ok is true; what names it in the
// failure.
func (r *Reports[R]) Wait(t testing.TB, what string, ok func(R) bool) R {
	t.Helper()
	deadline := time.After(time.Minute) // a failure guard, not a timing assertion
	for {
		select {
		case rep := <-r.c:
			if ok(rep) {
				return rep
			}
		case err := <-r.done:
			r.stopped = true
			t.Fatalf("pipeline stopped: %v", err)
		case <-deadline:
			t.Fatalf("no %s", what)
		}
	}
}

// WaitCluster returns the next report of a flush that wrote cluster.
func (r *Reports[R]) WaitCluster(t testing.TB, cluster string) R {
	t.Helper()
	return r.Wait(t, "flush wrote "+cluster, func(rep R) bool { return slices.Contains(r.clusters(rep), cluster) })
}
