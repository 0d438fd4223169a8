package watch

import (
	"maps"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/edsync/edsync/render"
)

// The Store tells its observers of each slice handed over and each object
// skipped, and keeps the trigger times of changed versions after its start.
func TestStoreObservers(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 5e8, time.UTC)
	events, skips := map[string]int{}, map[string]int{}
	s := NewStoreWith(StoreOptions{
		OnEvent:           func(kind string) { events[kind]++ },
		OnSkip:            func(reason string) { skips[reason]++ },
		TriggerTimesSince: start,
	})
	web := svc("ns", "web")
	triggered := func(rv string, trigger time.Time, addrs ...string) {
		sl := slice("ns", "web-a", "web", rv, addrs...)
		sl.Annotations = map[string]string{corev1.EndpointsLastChangeTriggerTime: trigger.Format(time.RFC3339Nano)}
		s.Upsert("ns/web-a", sl)
	}

	triggered("1", start.Add(-time.Hour), "10.0.0.1")                  // the initial list: too old
	triggered("2", start.Truncate(time.Second), "10.0.0.2")            // the second of the start: kept
	triggered("3", start.Add(time.Second), "10.0.0.3")                 // kept
	triggered("3", start.Add(2*time.Second), "10.0.0.4")               // same resourceVersion: a re-delivery
	triggered("4", start.Add(3*time.Second), "10.0.0.3")               // new trigger time, same endpoints: a change
	s.Upsert("ns/web-b", slice("ns", "web-b", "web", "1", "10.0.0.9")) // no annotation
	s.Upsert("ns/orphan", slice("ns", "orphan", "", "1", "10.0.1.1"))
	s.Upsert("ns/orphan", slice("ns", "orphan", "", "1", "10.0.1.1")) // the same again: counted once
	s.Skip(ReasonInvalidManifest)
	s.Delete("ns/orphan")
	s.Delete("ns/web-b")
	s.Delete("ns/never-seen")

	if want := map[string]int{EventAdd: 3, EventUpdate: 5, EventDelete: 2}; !maps.Equal(events, want) {
		t.Errorf("events %v, want %v", events, want)
	}
	if want := map[string]int{ReasonNoServiceLabel: 1, ReasonInvalidManifest: 1}; !maps.Equal(skips, want) {
		t.Errorf("skips %v, want %v", skips, want)
	}
	want := []time.Time{start.Truncate(time.Second), start.Add(time.Second), start.Add(3 * time.Second)}
	if got := s.TakeTriggerTimes(web); !slices.EqualFunc(got, want, time.Time.Equal) {
		t.Errorf("TakeTriggerTimes = %v, want %v", got, want)
	}
	if got := s.TakeTriggerTimes(web); got != nil {
		t.Errorf("TakeTriggerTimes again = %v, want none", got)
	}
	if got := s.TakeTriggerTimes(render.ServiceKey{Namespace: "ns", Name: "other"}); got != nil {
		t.Errorf("TakeTriggerTimes of another Service = %v", got)
	}
}

// Without TriggerTimesSince nothing is kept.
func TestStoreKeepsNoTriggerTimesUnasked(t *testing.T) {
	s := NewStore(nil)
	sl := slice("ns", "web-a", "web", "1", "10.0.0.1")
	sl.Annotations = map[string]string{corev1.EndpointsLastChangeTriggerTime: time.Now().Format(time.RFC3339Nano)}
	s.Upsert("ns/web-a", sl)
	if got := s.TakeTriggerTimes(svc("ns", "web")); got != nil {
		t.Errorf("TakeTriggerTimes = %v, want none", got)
	}
}

// OnTake sees every key Due and All hand out, with its first change.
func TestCoalescerOnTake(t *testing.T) {
	c := NewCoalescer(10*time.Millisecond, 0)
	firsts := map[render.ServiceKey]time.Time{}
	c.OnTake = func(k render.ServiceKey, first time.Time) { firsts[k] = first }
	c.Mark(svc("ns", "a"), at(0))
	c.Mark(svc("ns", "a"), at(5))
	c.Mark(svc("ns", "b"), at(7))
	c.Due(at(15))
	if want := map[render.ServiceKey]time.Time{svc("ns", "a"): at(0)}; !maps.Equal(firsts, want) {
		t.Errorf("after Due: %v, want %v", firsts, want)
	}
	c.All()
	if !firsts[svc("ns", "b")].Equal(at(7)) || len(firsts) != 2 {
		t.Errorf("after All: %v", firsts)
	}
}
