package pipeline

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/edsync/edsync/internal/syncbuf"
	"github.com/edsync/edsync/writer"
)

// inotifyMetrics records what the pipeline reports of Envoy's inotify need.
type inotifyMetrics struct {
	noMetrics
	needed int
	limits writer.InotifyLimits
}

func (m *inotifyMetrics) InotifyBudget(needed int, limits writer.InotifyLimits) {
	m.needed, m.limits = needed, limits
}

// An Envoy reading every file needs an inotify instance per file: when
// the files published pass fs.inotify.max_user_instances (or
// max_user_watches), edsync warns once, naming the sysctl and the number
// needed, and once more only after the need came back within the limits
// and crossed them again. The limits are read at start and again only
// while the need passes them (an operator may raise them): when it grows,
// or a minute after the last read.
func TestInotifyBudget(t *testing.T) {
	logs := &syncbuf.Buffer{}
	limits := writer.InotifyLimits{Instances: 3, Watches: 100}
	reads := 0
	m := &inotifyMetrics{}
	now := time.Unix(1_700_000_000, 0)
	p, store := newTestPipeline(t, t.TempDir(), Options{
		Logger:  slog.New(slog.NewJSONHandler(logs, nil)),
		Metrics: m,
		Clock:   func() time.Time { return now },
		InotifyLimits: func() (writer.InotifyLimits, error) {
			reads++
			return limits, nil
		},
	})
	services := 0
	publish := func(n int) {
		t.Helper()
		for ; services < n; services++ {
			svc := fmt.Sprintf("svc-%d", services)
			store.Upsert("bench/"+svc+"-abcde", benchSlice(svc, svc+"-abcde", services*10, 1))
		}
		p.takeDirty()
		p.flush(t.Context(), p.coalescer.Due(now), false)
	}
	warnings := func() int { return strings.Count(logs.String(), "needs more than fs.inotify") }

	steps := []struct {
		services          int
		raise             writer.InotifyLimits // new limits before the step, if set
		later             time.Duration        // time passed before the step
		warned, reads     int
		wantWithinAgainAt bool
	}{
		{services: 2, warned: 0, reads: 1}, // within: read once, at start
		{services: 3, warned: 0, reads: 1}, // at the limit is within
		{services: 4, warned: 1, reads: 2}, // crossed: read again, still 3: warned
		{services: 6, warned: 1, reads: 3}, // still over: read again, no second warning
		{services: 6, warned: 1, reads: 3}, // no growth within a minute: no read
		// Raised meanwhile: seen a minute on, said once.
		{services: 6, later: time.Minute, raise: writer.InotifyLimits{Instances: 1024, Watches: 100}, warned: 1, reads: 4, wantWithinAgainAt: true},
		{services: 8, warned: 1, reads: 4},   // within: no read
		{services: 101, warned: 2, reads: 5}, // past max_user_watches this time
	}
	for i, s := range steps {
		if s.raise != (writer.InotifyLimits{}) {
			limits = s.raise
		}
		now = now.Add(s.later)
		if s.services == services { // no new Service: a flush all the same
			store.Upsert("bench/svc-0-abcde", benchSlice("svc-0", "svc-0-abcde", 7000+i, 1))
		}
		publish(s.services)
		if got := warnings(); got != s.warned {
			t.Fatalf("step %d (%d files): %d warnings, want %d:\n%s", i, s.services, got, s.warned, logs)
		}
		if reads != s.reads {
			t.Errorf("step %d: limits read %d times, want %d", i, reads, s.reads)
		}
		if m.needed != s.services || m.limits != limits {
			t.Errorf("step %d: metrics %d needed, limits %+v; want %d, %+v", i, m.needed, m.limits, s.services, limits)
		}
		if s.wantWithinAgainAt && !strings.Contains(logs.String(), "within the inotify limits again") {
			t.Errorf("step %d: not said that the need is within the limits again", i)
		}
	}
	for _, want := range []string{`"sysctl":"fs.inotify.max_user_instances","limit":3,"needed":4`, `"sysctl":"fs.inotify.max_user_watches","limit":100,"needed":101`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no warning with %s:\n%s", want, logs)
		}
	}
}

// Limits that cannot be read (not Linux, no /proc) are said once and not
// checked; the need is still reported.
func TestInotifyBudgetUnknown(t *testing.T) {
	logs := &syncbuf.Buffer{}
	m := &inotifyMetrics{}
	p, store := newTestPipeline(t, t.TempDir(), Options{
		Logger:        slog.New(slog.NewJSONHandler(logs, nil)),
		Metrics:       m,
		InotifyLimits: func() (writer.InotifyLimits, error) { return writer.InotifyLimits{}, errors.New("no /proc") },
	})
	for i := range 3 {
		svc := fmt.Sprintf("svc-%d", i)
		store.Upsert("bench/"+svc+"-abcde", benchSlice(svc, svc+"-abcde", i*10, 1))
		p.takeDirty()
		p.flush(t.Context(), p.coalescer.Due(time.Now()), false)
	}
	if n := strings.Count(logs.String(), "inotify limits unknown"); n != 1 || strings.Contains(logs.String(), "needs more than") {
		t.Errorf("%d lines saying the limits are unknown, want 1:\n%s", n, logs)
	}
	if m.needed != 3 {
		t.Errorf("needed %d, want 3", m.needed)
	}
}
