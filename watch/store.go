package watch

import (
	"cmp"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/edsync/edsync/render"
)

// Reasons an object is skipped, the keys of Store.Skipped.
const (
	// ReasonInvalidManifest: a manifest file (or one document in it) could
	// not be read as EndpointSlices; the file's last good objects stay.
	ReasonInvalidManifest = "invalid-manifest"
	// ReasonNoServiceLabel: a slice without the kubernetes.io/service-name
	// label (or without a namespace) belongs to no Service.
	ReasonNoServiceLabel = "no-service-label"
	// ReasonOtherKind: an object of another kind in a manifest file (a
	// Deployment, a v1 Endpoints, a v1beta1 slice), left out; the rest of
	// the file is read.
	ReasonOtherKind = "other-kind"
)

// Kinds of slice events, as the sources hand them to the Store: the values
// StoreOptions.OnEvent receives.
const (
	EventAdd    = "add"
	EventUpdate = "update"
	EventDelete = "delete"
)

// StoreOptions configures NewStoreWith. Every field may be left zero.
type StoreOptions struct {
	// Notify is called, outside the Store's lock, once for each Service
	// whose slice set changed. Sources call it from their own goroutines,
	// several at once with several informers, so it must be safe for
	// concurrent use and should only mark the key dirty.
	Notify func(render.ServiceKey)
	// OnEvent and OnSkip are told of each slice a source hands over (kind
	// EventAdd, EventUpdate or EventDelete of a slice the Store knew) and
	// of each object skipped (a Reason*), for metrics. They are called
	// under the Store's lock: they must be quick and must not call back.
	OnEvent func(kind string)
	OnSkip  func(reason string)
	// TriggerTimesSince, if not zero, makes the Store remember per Service
	// the endpoints.kubernetes.io/last-change-trigger-time of every changed
	// slice version whose trigger time is not before it, for
	// TakeTriggerTimes. Objects changed before it, such as those of the
	// initial list (their trigger times may be hours old), are left out, as
	// kube-proxy does. Trigger times come from a Pod's condition or a
	// Service's creation, to the second: a time in the same second as
	// TriggerTimesSince counts, else the changes of the first second after
	// a start would be lost.
	TriggerTimesSince time.Time
}

// Store holds the current EndpointSlices by Service. Sources write it from
// their own goroutines; the pipeline reads it. It is safe for concurrent use.
type Store struct {
	notify       func(render.ServiceKey)
	onEvent      func(string)
	onSkip       func(string)
	triggerSince time.Time

	mu        sync.Mutex
	byID      map[string]entry
	byService map[render.ServiceKey]serviceSlices
	// unlabeled remembers the slices skipped for want of a Service label,
	// so that an unchanged re-delivery is not counted twice.
	unlabeled map[string]*discoveryv1.EndpointSlice
	skipped   map[string]uint64
	// endpoints counts the endpoints of the stored slices by their
	// render.LabelSource (slices without it are not counted).
	endpoints map[string]int
	// triggers holds, per Service, the trigger times of its changed slice
	// versions not yet taken (only with TriggerTimesSince).
	triggers map[render.ServiceKey][]time.Time
}

type entry struct {
	key   render.ServiceKey
	slice *discoveryv1.EndpointSlice
}

// NewStore returns an empty Store that calls notify (may be nil) as
// StoreOptions.Notify says.
func NewStore(notify func(render.ServiceKey)) *Store {
	return NewStoreWith(StoreOptions{Notify: notify})
}

// NewStoreWith returns an empty Store configured by o.
func NewStoreWith(o StoreOptions) *Store {
	s := &Store{
		notify:       o.Notify,
		onEvent:      o.OnEvent,
		onSkip:       o.OnSkip,
		triggerSince: o.TriggerTimesSince.Truncate(time.Second),
		byID:         map[string]entry{},
		byService:    map[render.ServiceKey]serviceSlices{},
		unlabeled:    map[string]*discoveryv1.EndpointSlice{},
		skipped:      map[string]uint64{},
		triggers:     map[render.ServiceKey][]time.Time{},
		endpoints:    map[string]int{},
	}
	if s.notify == nil {
		s.notify = func(render.ServiceKey) {}
	}
	if s.onEvent == nil {
		s.onEvent = func(string) {}
	}
	if s.onSkip == nil {
		s.onSkip = func(string) {}
	}
	return s
}

// Upsert stores the slice under id ("namespace/name"). A slice whose Service
// label changed moves: both the old and the new Service are notified. A
// slice without the label is dropped (its old Service notified) and counted
// as skipped with ReasonNoServiceLabel.
//
// Nothing is notified when the stored object has the same non-empty
// resourceVersion, nor when the content that rendering reads (labels,
// annotations, address type, endpoints, ports) is equal: the
// latter covers manifests re-read from files, which carry no
// resourceVersion. The stored pointer is still replaced by the newer object
// so that the Store never pins an object the informer has let go.
//
// sl must not be mutated after the call. A nil sl is a Delete.
func (s *Store) Upsert(id string, sl *discoveryv1.EndpointSlice) {
	if sl == nil {
		s.Delete(id)
		return
	}
	key, ok := render.ServiceOf(sl)

	s.mu.Lock()
	old, had := s.byID[id]
	prev, seen := s.unlabeled[id]
	if had || seen {
		s.onEvent(EventUpdate)
	} else {
		s.onEvent(EventAdd)
	}
	if !ok {
		var changed []render.ServiceKey
		if had {
			s.removeLocked(id, old.key)
			changed = append(changed, old.key)
		}
		if !seen || !sameObject(prev, sl) {
			s.skipLocked(ReasonNoServiceLabel)
		}
		s.unlabeled[id] = sl
		s.mu.Unlock()
		s.notifyAll(changed)
		return
	}
	delete(s.unlabeled, id)

	if had && old.key == key {
		s.countLocked(old.slice, -1)
		s.countLocked(sl, 1)
		s.byID[id] = entry{key: key, slice: sl}
		s.byService[key] = s.byService[key].replace(id, old.slice, sl)
		same := sameObject(old.slice, sl)
		if !same {
			s.triggerLocked(key, sl)
		}
		s.mu.Unlock()
		if !same {
			s.notify(key)
		}
		return
	}

	var changed []render.ServiceKey
	if had {
		s.removeLocked(id, old.key)
		changed = append(changed, old.key)
	}
	s.byID[id] = entry{key: key, slice: sl}
	s.countLocked(sl, 1)
	s.byService[key] = s.byService[key].insert(id, sl)
	changed = append(changed, key)
	s.triggerLocked(key, sl)
	s.mu.Unlock()
	s.notifyAll(changed)
}

// Delete removes the slice stored under id and notifies its Service.
// Deleting an unknown id does nothing.
func (s *Store) Delete(id string) {
	s.mu.Lock()
	_, seen := s.unlabeled[id]
	delete(s.unlabeled, id)
	old, had := s.byID[id]
	if had {
		s.removeLocked(id, old.key)
	}
	if had || seen {
		s.onEvent(EventDelete)
	}
	s.mu.Unlock()
	if had {
		s.notify(old.key)
	}
}

// Retain removes every slice for which keep is false (a watch that no longer
// covers it: see Kube.SetServices) and notifies each Service that lost one.
// These are not counted as delete events: the objects still exist. keep is
// called under the Store's lock: it must not call the Store.
func (s *Store) Retain(keep func(*discoveryv1.EndpointSlice) bool) {
	s.mu.Lock()
	lost := map[render.ServiceKey]bool{}
	for id, e := range s.byID {
		if !keep(e.slice) {
			s.removeLocked(id, e.key)
			lost[e.key] = true
		}
	}
	for id, sl := range s.unlabeled {
		if !keep(sl) {
			delete(s.unlabeled, id)
		}
	}
	s.mu.Unlock()
	s.notifyAll(slices.SortedFunc(maps.Keys(lost), compareKeys))
}

func (s *Store) removeLocked(id string, key render.ServiceKey) {
	old := s.byID[id].slice
	s.countLocked(old, -1)
	delete(s.byID, id)
	if m := s.byService[key].remove(id, old); len(m) > 0 {
		s.byService[key] = m
	} else {
		delete(s.byService, key)
	}
}

func (s *Store) notifyAll(keys []render.ServiceKey) {
	for _, k := range keys {
		s.notify(k)
	}
}

// Slices returns the Service's current slices sorted by name: a fresh
// slice of shared objects that the caller must not mutate. A Service with
// no slices left gives nil; the pipeline then publishes it with no
// endpoints.
func (s *Store) Slices(key render.ServiceKey) []*discoveryv1.EndpointSlice {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.byService[key]
	if len(m) == 0 {
		return nil
	}
	out := make([]*discoveryv1.EndpointSlice, len(m))
	for i, e := range m {
		out[i] = e.slice
	}
	return out
}

// serviceSlices is one Service's slices, sorted by name, then id (two
// sources may hold a slice of one name): Slices copies them in order,
// without sorting on every event. A short sorted array rather than a map:
// most Services have one slice, which an array holds in 32 bytes and a
// map in about 300.
type serviceSlices []storedSlice

type storedSlice struct {
	id    string
	slice *discoveryv1.EndpointSlice
}

// find returns where the slice id named name is, or would be.
func (m serviceSlices) find(id, name string) (int, bool) {
	return slices.BinarySearchFunc(m, storedSlice{id: id}, func(e, _ storedSlice) int {
		return cmp.Or(strings.Compare(e.slice.Name, name), strings.Compare(e.id, id))
	})
}

func (m serviceSlices) insert(id string, sl *discoveryv1.EndpointSlice) serviceSlices {
	i, _ := m.find(id, sl.Name)
	return slices.Insert(m, i, storedSlice{id, sl})
}

// replace puts sl in the place of old, the slice stored as id.
func (m serviceSlices) replace(id string, old, sl *discoveryv1.EndpointSlice) serviceSlices {
	if old.Name != sl.Name { // not from a source: their ids hold the name
		return m.remove(id, old).insert(id, sl)
	}
	if i, ok := m.find(id, old.Name); ok {
		m[i].slice = sl
	}
	return m
}

// remove takes out old, the slice stored as id. The array shrinks with the
// Service: a Service that had many slices keeps no room for them.
func (m serviceSlices) remove(id string, old *discoveryv1.EndpointSlice) serviceSlices {
	i, ok := m.find(id, old.Name)
	if !ok {
		return m
	}
	m = slices.Delete(m, i, i+1)
	if cap(m) > 8 && len(m) < cap(m)/4 {
		m = slices.Clip(slices.Clone(m))
	}
	return m
}

// Services returns every Service that has at least one slice, sorted by
// namespace then name. A Service whose last slice went away drops out
// (after its notify), so the set does not grow without bound.
func (s *Store) Services() []render.ServiceKey {
	s.mu.Lock()
	out := slices.Collect(maps.Keys(s.byService))
	s.mu.Unlock()
	slices.SortFunc(out, compareKeys)
	return out
}

// Len returns the number of slices stored (slices without a Service label
// are not stored).
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}

// Skipped returns a copy of the counters of skipped objects by reason
// (ReasonInvalidManifest, ReasonNoServiceLabel, ReasonOtherKind). The
// counters only grow.
func (s *Store) Skipped() map[string]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.skipped)
}

// Skip counts one skipped object under reason. Sources use it for what
// never reaches Upsert, such as an invalid manifest.
func (s *Store) Skip(reason string) {
	s.mu.Lock()
	s.skipLocked(reason)
	s.mu.Unlock()
}

func (s *Store) skipLocked(reason string) {
	s.skipped[reason]++
	s.onSkip(reason)
}

// triggerLocked remembers the trigger time of a changed slice version of
// the Service key, if it has one after TriggerTimesSince.
func (s *Store) triggerLocked(key render.ServiceKey, sl *discoveryv1.EndpointSlice) {
	if s.triggerSince.IsZero() {
		return
	}
	v, ok := sl.Annotations[corev1.EndpointsLastChangeTriggerTime]
	if !ok {
		return
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil || t.Before(s.triggerSince) {
		return
	}
	s.triggers[key] = append(s.triggers[key], t)
}

// TakeTriggerTimes removes and returns the trigger times remembered for the
// Service key (see StoreOptions.TriggerTimesSince): one per changed slice
// version since the last call, in the order they arrived.
func (s *Store) TakeTriggerTimes(key render.ServiceKey) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.triggers) == 0 {
		return nil
	}
	t := s.triggers[key]
	delete(s.triggers, key)
	return t
}

// sameObject reports whether b is a re-delivery of a: the same non-empty
// resourceVersion, or equal in everything rendering reads.
func sameObject(a, b *discoveryv1.EndpointSlice) bool {
	if a == b {
		return true
	}
	if a.ResourceVersion != "" && a.ResourceVersion == b.ResourceVersion {
		return true
	}
	return a.Namespace == b.Namespace && a.Name == b.Name &&
		a.AddressType == b.AddressType &&
		maps.Equal(a.Labels, b.Labels) &&
		maps.Equal(a.Annotations, b.Annotations) &&
		slices.EqualFunc(a.Ports, b.Ports, samePort) &&
		slices.EqualFunc(a.Endpoints, b.Endpoints, sameEndpoint)
}

// samePort and sameEndpoint compare field by field: reflection
// (apiequality.Semantic.DeepEqual) costs ten times more, and a Store
// update compares every time. TestEqualityCoversFields fails when a
// Kubernetes bump adds a field these do not know.
func samePort(a, b discoveryv1.EndpointPort) bool {
	return eqPtr(a.Name, b.Name) && eqPtr(a.Protocol, b.Protocol) &&
		eqPtr(a.Port, b.Port) && eqPtr(a.AppProtocol, b.AppProtocol)
}

func sameEndpoint(a, b discoveryv1.Endpoint) bool {
	return slices.Equal(a.Addresses, b.Addresses) &&
		eqPtr(a.Conditions.Ready, b.Conditions.Ready) &&
		eqPtr(a.Conditions.Serving, b.Conditions.Serving) &&
		eqPtr(a.Conditions.Terminating, b.Conditions.Terminating) &&
		eqPtr(a.Hostname, b.Hostname) &&
		eqPtr(a.TargetRef, b.TargetRef) &&
		maps.Equal(a.DeprecatedTopology, b.DeprecatedTopology) &&
		eqPtr(a.NodeName, b.NodeName) &&
		eqPtr(a.Zone, b.Zone) &&
		sameHints(a.Hints, b.Hints)
}

func sameHints(a, b *discoveryv1.EndpointHints) bool {
	if a == nil || b == nil {
		return a == b
	}
	return slices.Equal(a.ForZones, b.ForZones) && slices.Equal(a.ForNodes, b.ForNodes)
}

// eqPtr compares what two pointers point at; nil equals only nil.
func eqPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func compareKeys(a, b render.ServiceKey) int {
	if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}

// countLocked adds (sign 1) or takes away (-1) a slice's endpoints from
// its source's count.
func (s *Store) countLocked(sl *discoveryv1.EndpointSlice, sign int) {
	if sl == nil {
		return
	}
	src := sl.Labels[render.LabelSource]
	if src == "" {
		return
	}
	if n := s.endpoints[src] + sign*len(sl.Endpoints); n != 0 {
		s.endpoints[src] = n
	} else {
		delete(s.endpoints, src)
	}
}

// SourceEndpoints returns the endpoints of the stored slices of a source
// (render.LabelSource), every condition counted.
func (s *Store) SourceEndpoints(source string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.endpoints[source]
}
