package watch

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/edsync/edsync/render"
)

// slice builds an EndpointSlice for ns/name of Service service (no label
// when service is ""), with one ready endpoint per address.
func slice(ns, name, service, rv string, addrs ...string) *discoveryv1.EndpointSlice {
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: rv},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
	}
	if service != "" {
		sl.Labels = map[string]string{discoveryv1.LabelServiceName: service}
	}
	for _, a := range addrs {
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{a},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
		})
	}
	return sl
}

// recorder collects notified keys; safe for concurrent use.
type recorder struct {
	mu   sync.Mutex
	keys []render.ServiceKey
}

func (r *recorder) notify(k render.ServiceKey) {
	r.mu.Lock()
	r.keys = append(r.keys, k)
	r.mu.Unlock()
}

// take returns the keys notified since the last take, sorted.
func (r *recorder) take() []render.ServiceKey {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.keys
	r.keys = nil
	slices.SortFunc(out, compareKeys)
	return out
}

func TestStore(t *testing.T) {
	web, api := svc("ns", "web"), svc("ns", "api")
	type step struct {
		upsert *discoveryv1.EndpointSlice // nil: delete
		id     string
		notify []render.ServiceKey
	}
	tests := []struct {
		name         string
		steps        []step
		wantSlices   map[render.ServiceKey][]string // names
		wantServices []render.ServiceKey
		wantSkipped  map[string]uint64
	}{
		{
			name: "add two slices of one service",
			steps: []step{
				{upsert: slice("ns", "web-b", "web", "1", "10.0.0.2"), id: "ns/web-b", notify: []render.ServiceKey{web}},
				{upsert: slice("ns", "web-a", "web", "2", "10.0.0.1"), id: "ns/web-a", notify: []render.ServiceKey{web}},
			},
			wantSlices:   map[render.ServiceKey][]string{web: {"web-a", "web-b"}},
			wantServices: []render.ServiceKey{web},
		},
		{
			name: "same resourceVersion is ignored",
			steps: []step{
				{upsert: slice("ns", "web-a", "web", "7", "10.0.0.1"), id: "ns/web-a", notify: []render.ServiceKey{web}},
				{upsert: slice("ns", "web-a", "web", "7", "10.9.9.9"), id: "ns/web-a"},
			},
			wantSlices:   map[render.ServiceKey][]string{web: {"web-a"}},
			wantServices: []render.ServiceKey{web},
		},
		{
			name: "new resourceVersion with same content is not a change",
			steps: []step{
				{upsert: slice("ns", "web-a", "web", "7", "10.0.0.1"), id: "ns/web-a", notify: []render.ServiceKey{web}},
				{upsert: slice("ns", "web-a", "web", "8", "10.0.0.1"), id: "ns/web-a"},
				{upsert: slice("ns", "web-a", "web", "9", "10.0.0.2"), id: "ns/web-a", notify: []render.ServiceKey{web}},
			},
			wantSlices:   map[render.ServiceKey][]string{web: {"web-a"}},
			wantServices: []render.ServiceKey{web},
		},
		{
			name: "no resourceVersion: identical re-read is not a change",
			steps: []step{
				{upsert: slice("ns", "web-a", "web", "", "10.0.0.1"), id: "ns/web-a", notify: []render.ServiceKey{web}},
				{upsert: slice("ns", "web-a", "web", "", "10.0.0.1"), id: "ns/web-a"},
				{upsert: slice("ns", "web-a", "web", "", "10.0.0.3"), id: "ns/web-a", notify: []render.ServiceKey{web}},
			},
			wantSlices:   map[render.ServiceKey][]string{web: {"web-a"}},
			wantServices: []render.ServiceKey{web},
		},
		{
			name: "label change moves the slice and notifies both",
			steps: []step{
				{upsert: slice("ns", "x", "web", "1", "10.0.0.1"), id: "ns/x", notify: []render.ServiceKey{web}},
				{upsert: slice("ns", "x", "api", "2", "10.0.0.1"), id: "ns/x", notify: []render.ServiceKey{api, web}},
			},
			wantSlices:   map[render.ServiceKey][]string{api: {"x"}, web: nil},
			wantServices: []render.ServiceKey{api},
		},
		{
			name: "losing the label drops the slice and counts it",
			steps: []step{
				{upsert: slice("ns", "x", "web", "1", "10.0.0.1"), id: "ns/x", notify: []render.ServiceKey{web}},
				{upsert: slice("ns", "x", "", "2", "10.0.0.1"), id: "ns/x", notify: []render.ServiceKey{web}},
				{upsert: slice("ns", "x", "", "2", "10.0.0.1"), id: "ns/x"}, // re-delivery: not counted again
				{upsert: slice("ns", "y", "", "", "10.0.0.2"), id: "ns/y"},
			},
			wantSlices:  map[render.ServiceKey][]string{web: nil},
			wantSkipped: map[string]uint64{ReasonNoServiceLabel: 2},
		},
		{
			name: "gaining the label adds the slice",
			steps: []step{
				{upsert: slice("ns", "x", "", "1", "10.0.0.1"), id: "ns/x"},
				{upsert: slice("ns", "x", "web", "2", "10.0.0.1"), id: "ns/x", notify: []render.ServiceKey{web}},
			},
			wantSlices:   map[render.ServiceKey][]string{web: {"x"}},
			wantServices: []render.ServiceKey{web},
			wantSkipped:  map[string]uint64{ReasonNoServiceLabel: 1},
		},
		{
			name: "delete notifies; deleting an unknown id does not",
			steps: []step{
				{upsert: slice("ns", "web-a", "web", "1", "10.0.0.1"), id: "ns/web-a", notify: []render.ServiceKey{web}},
				{upsert: slice("ns", "web-b", "web", "2", "10.0.0.2"), id: "ns/web-b", notify: []render.ServiceKey{web}},
				{id: "ns/web-a", notify: []render.ServiceKey{web}},
				{id: "ns/nope"},
			},
			wantSlices:   map[render.ServiceKey][]string{web: {"web-b"}},
			wantServices: []render.ServiceKey{web},
		},
		{
			name: "deleting the last slice forgets the service",
			steps: []step{
				{upsert: slice("ns", "web-a", "web", "1", "10.0.0.1"), id: "ns/web-a", notify: []render.ServiceKey{web}},
				{id: "ns/web-a", notify: []render.ServiceKey{web}},
			},
			wantSlices: map[render.ServiceKey][]string{web: nil},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rec recorder
			s := NewStore(rec.notify)
			for i, st := range tt.steps {
				if st.upsert != nil {
					s.Upsert(st.id, st.upsert)
				} else {
					s.Delete(st.id)
				}
				if got := rec.take(); !slices.Equal(got, st.notify) {
					t.Errorf("step %d: notified %v, want %v", i, got, st.notify)
				}
			}
			for key, want := range tt.wantSlices {
				var got []string
				for _, sl := range s.Slices(key) {
					got = append(got, sl.Name)
				}
				if !slices.Equal(got, want) {
					t.Errorf("Slices(%s) = %v, want %v", key, got, want)
				}
			}
			if got := s.Services(); !slices.Equal(got, tt.wantServices) {
				t.Errorf("Services() = %v, want %v", got, tt.wantServices)
			}
			got := s.Skipped()
			if len(got) != len(tt.wantSkipped) {
				t.Errorf("Skipped() = %v, want %v", got, tt.wantSkipped)
			}
			for r, n := range tt.wantSkipped {
				if got[r] != n {
					t.Errorf("Skipped()[%s] = %d, want %d", r, got[r], n)
				}
			}
		})
	}
}

func TestStoreSlicesIsFresh(t *testing.T) {
	s := NewStore(nil)
	s.Upsert("ns/a", slice("ns", "a", "web", "1", "10.0.0.1"))
	s.Upsert("ns/b", slice("ns", "b", "web", "1", "10.0.0.2"))
	got := s.Slices(svc("ns", "web"))
	got[0] = nil
	if again := s.Slices(svc("ns", "web")); again[0] == nil {
		t.Error("Slices shares its result between calls")
	}
}

// TestStoreSlicesInOrder: under random adds, updates (some moving a slice
// to another Service), and deletes, Slices gives each Service's current
// slices sorted by name, then id, as a map of them would.
func TestStoreSlicesInOrder(t *testing.T) {
	s := NewStore(nil)
	rng := rand.New(rand.NewPCG(1, 2))
	type stored struct {
		svc string
		sl  *discoveryv1.EndpointSlice
	}
	model := map[string]stored{}
	for round := range 2000 {
		// Two sources may hold slices of one name: ids differ, names do not.
		name := fmt.Sprintf("s%d", rng.IntN(30))
		id := fmt.Sprintf("src%d/ns/%s", rng.IntN(2), name)
		if rng.IntN(4) == 0 {
			s.Delete(id)
			delete(model, id)
		} else {
			svcName := fmt.Sprintf("web%d", rng.IntN(3))
			sl := slice("ns", name, svcName, fmt.Sprint(round), "10.0.0.1")
			s.Upsert(id, sl)
			model[id] = stored{svcName, sl}
		}
		for k := range 3 {
			svcName := fmt.Sprintf("web%d", k)
			var ids []string
			for id, st := range model {
				if st.svc == svcName {
					ids = append(ids, id)
				}
			}
			slices.SortFunc(ids, func(a, b string) int {
				return cmp.Or(strings.Compare(model[a].sl.Name, model[b].sl.Name), strings.Compare(a, b))
			})
			var want []*discoveryv1.EndpointSlice
			for _, id := range ids {
				want = append(want, model[id].sl)
			}
			if got := s.Slices(svc("ns", svcName)); !slices.Equal(got, want) {
				t.Fatalf("round %d, %s: %d slices, want %d (or another order)", round, svcName, len(got), len(want))
			}
		}
	}
}

// TestStoreConcurrent runs writers and a reader at once under -race.
func TestStoreConcurrent(t *testing.T) {
	var rec recorder
	s := NewStore(rec.notify)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 200 {
				id := "ns/s" + string(rune('a'+w))
				s.Upsert(id, slice("ns", id[3:], "web", string(rune('0'+i%10)), "10.0.0.1"))
				if i%7 == 0 {
					s.Delete(id)
				}
			}
		})
	}
	wg.Go(func() {
		for range 200 {
			_ = s.Slices(svc("ns", "web"))
			_ = s.Services()
		}
	})
	wg.Wait()
}

// Retain drops the slices a watch no longer covers, notifies each Service
// that lost one once, and counts no delete event: the objects still exist.
func TestStoreRetain(t *testing.T) {
	var rec recorder
	events := map[string]int{}
	s := NewStoreWith(StoreOptions{Notify: rec.notify, OnEvent: func(k string) { events[k]++ }})
	s.Upsert("a/web-1", slice("a", "web-1", "web", "1", "10.0.0.1"))
	s.Upsert("a/web-2", slice("a", "web-2", "web", "1", "10.0.0.2"))
	s.Upsert("b/db-1", slice("b", "db-1", "db", "1", "10.0.0.3"))
	s.Upsert("b/none", slice("b", "none", "", "1", "10.0.0.4")) // no Service label
	rec.take()
	clear(events)

	s.Retain(func(sl *discoveryv1.EndpointSlice) bool { return sl.Namespace == "b" && sl.Name == "db-1" })
	if got, want := rec.take(), []render.ServiceKey{svc("a", "web")}; !slices.Equal(got, want) {
		t.Errorf("notified %v, want %v (once)", got, want)
	}
	if got, want := s.Services(), []render.ServiceKey{svc("b", "db")}; !slices.Equal(got, want) || s.Len() != 1 {
		t.Errorf("Services() = %v (Len %d), want %v", got, s.Len(), want)
	}
	if len(events) != 0 {
		t.Errorf("events counted: %v, want none", events)
	}
	// The unlabeled slice was forgotten: seen again, it is counted again.
	before := s.Skipped()[ReasonNoServiceLabel]
	s.Upsert("b/none", slice("b", "none", "", "1", "10.0.0.4"))
	if got := s.Skipped()[ReasonNoServiceLabel]; got != before+1 {
		t.Errorf("no-service-label skips %d -> %d: the unlabeled slice was kept", before, got)
	}
}

// The Store counts the endpoints of each source's slices through every
// change: add, update, move to another Service, delete, Retain.
func TestStoreSourceEndpoints(t *testing.T) {
	s := NewStore(nil)
	from := func(sl *discoveryv1.EndpointSlice, source string) *discoveryv1.EndpointSlice {
		sl.Labels[render.LabelSource] = source
		return sl
	}
	check := func(step string, east, west int) {
		t.Helper()
		if e, w := s.SourceEndpoints("east"), s.SourceEndpoints("west"); e != east || w != west {
			t.Errorf("%s: east %d, west %d; want %d, %d", step, e, w, east, west)
		}
	}
	s.Upsert("east/ns/a", from(slice("ns", "a", "web", "1", "10.0.0.1", "10.0.0.2"), "east"))
	s.Upsert("west/ns/a", from(slice("ns", "a", "web", "1", "10.1.0.1"), "west"))
	s.Upsert("ns/plain", slice("ns", "plain", "web", "1", "10.2.0.1"))
	check("added", 2, 1)
	s.Upsert("east/ns/a", from(slice("ns", "a", "web", "2", "10.0.0.1"), "east"))
	check("updated", 1, 1)
	s.Upsert("east/ns/a", from(slice("ns", "a", "api", "3", "10.0.0.1", "10.0.0.3", "10.0.0.4"), "east"))
	check("moved to another Service", 3, 1)
	s.Delete("west/ns/a")
	check("deleted", 3, 0)
	s.Upsert("west/ns/b", from(slice("ns", "b", "web", "1", "10.1.0.2"), "west"))
	s.Retain(func(sl *discoveryv1.EndpointSlice) bool { return sl.Labels[render.LabelSource] != "east" })
	check("east retained away", 0, 1)
}
