package pipeline

import (
	"slices"
	"sync"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
)

// latencies is a Metrics that records the debounce delays and edsync's own
// latencies it is told of.
type latencies struct {
	noMetrics
	mu                    sync.Mutex
	debounce, eventToFile []time.Duration
}

func (l *latencies) DebounceDelay(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.debounce = append(l.debounce, d)
}

func (l *latencies) EventToFile(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.eventToFile = append(l.eventToFile, d)
}

// take returns what was recorded since the last call.
func (l *latencies) take() (debounce, eventToFile []time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	debounce, eventToFile = l.debounce, l.eventToFile
	l.debounce, l.eventToFile = nil, nil
	return debounce, eventToFile
}

// The debounce and edsync's own latency count from a change's arrival, not
// from when the loop (busy writing other files) got to it; a change is
// counted once its file is renamed, and a change that left the file as it
// was is not counted at all.
func TestEventToFileCountsFromArrival(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	m := &latencies{}
	p, store := newTestPipeline(t, t.TempDir(), Options{
		Clock:    func() time.Time { return now },
		Debounce: 50 * time.Millisecond,
		Metrics:  m,
	})
	store.Upsert("default/web", benchSliceAt("web", "10.0.0.1", 1))
	if r := p.initialFlush(t.Context()); r.Written != 1 {
		t.Fatalf("initial flush: %+v", r)
	}
	if d, e := m.take(); len(d)+len(e) > 0 {
		t.Fatalf("the initial sync was counted: debounce %v, event to file %v", d, e)
	}

	// step lets the loop take the dirty Services at the given time after
	// the change arrived, and flushes what is due then.
	step := func(arrived time.Time, after time.Duration) Report {
		t.Helper()
		now = arrived.Add(after)
		p.takeDirty()
		due := p.coalescer.Due(now)
		if len(due) == 0 {
			return Report{}
		}
		return p.flush(t.Context(), due, false)
	}

	arrived := now
	store.Upsert("default/web", benchSliceAt("web", "10.0.0.2", 2))
	if r := step(arrived, 30*time.Millisecond); r.Seq != 0 {
		t.Fatalf("flushed 30 ms after the change, before the 50 ms debounce: %+v", r)
	}
	if r := step(arrived, 52*time.Millisecond); r.Written != 1 {
		t.Fatalf("52 ms after the change: %+v, want the file written", r)
	}
	d, e := m.take()
	if !slices.Equal(d, []time.Duration{52 * time.Millisecond}) || !slices.Equal(e, []time.Duration{52 * time.Millisecond}) {
		t.Errorf("debounce delays %v, event-to-file %v; want [52ms] each", d, e)
	}

	// A not-ready endpoint more changes the slice, not the file.
	unready := benchSliceAt("web", "10.0.0.2", 3)
	unready.Endpoints = append(unready.Endpoints, discoveryv1.Endpoint{
		Addresses: []string{"10.0.0.9"}, Conditions: discoveryv1.EndpointConditions{Ready: new(false)},
	})
	arrived = now.Add(time.Second)
	now = arrived
	store.Upsert("default/web", unready)
	if r := step(arrived, 60*time.Millisecond); r.Unchanged != 1 {
		t.Fatalf("a change of no byte: %+v, want the file unchanged", r)
	}
	if _, e := m.take(); len(e) > 0 {
		t.Errorf("a change that wrote nothing was counted: %v", e)
	}

	// The next change is counted from its own arrival, not the one above.
	arrived = now.Add(time.Second)
	now = arrived
	store.Upsert("default/web", benchSliceAt("web", "10.0.0.3", 4))
	if r := step(arrived, 51*time.Millisecond); r.Written != 1 {
		t.Fatalf("next change: %+v, want the file written", r)
	}
	if _, e := m.take(); !slices.Equal(e, []time.Duration{51 * time.Millisecond}) {
		t.Errorf("event-to-file %v, want [51ms]", e)
	}
}
