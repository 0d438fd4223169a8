package watch

import (
	"encoding/json"
	"fmt"
	"runtime"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// realisticSlices builds n slices of per endpoints each, shaped like the
// EndpointSlice controller's: managedFields, owner reference, targetRef
// with uid and resourceVersion, node, zone, hints, as JSON (what arrives
// over the wire, so decoding allocates every string afresh).
func realisticSlices(tb testing.TB, n, per int) [][]byte {
	tb.Helper()
	out := make([][]byte, n)
	for i := range n {
		sl := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{
				Name:            fmt.Sprintf("svc%04d-%05x", i/3, i),
				Namespace:       fmt.Sprintf("team-%02d", i%20),
				UID:             "0c4a6a1e-5b7d-4c1f-9a1b-7f3e2d1c0b%02d",
				ResourceVersion: fmt.Sprint(100000 + i),
				Generation:      4,
				Labels: map[string]string{
					discoveryv1.LabelServiceName: fmt.Sprintf("svc%04d", i/3),
					discoveryv1.LabelManagedBy:   "endpointslice-controller.k8s.io",
					"app.kubernetes.io/name":     fmt.Sprintf("svc%04d", i/3),
				},
				Annotations: map[string]string{
					corev1.EndpointsLastChangeTriggerTime: "2026-03-01T10:00:00Z",
				},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: fmt.Sprintf("svc%04d", i/3), UID: "5f2e7d3a-0000-0000-0000-000000000003", Controller: ptr.To(true)}},
				ManagedFields: []metav1.ManagedFieldsEntry{{
					Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "discovery.k8s.io/v1",
					FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:addressType":{},"f:endpoints":{},"f:metadata":{"f:labels":{".":{}}},"f:ports":{}}`)},
				}},
			},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports: []discoveryv1.EndpointPort{
				{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)},
				{Name: ptr.To("metrics"), Port: ptr.To[int32](9090), Protocol: ptr.To(corev1.ProtocolTCP)},
			},
		}
		for j := range per {
			zone := fmt.Sprintf("europe-west1-%c", 'a'+j%3)
			sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{
				Addresses:  []string{fmt.Sprintf("10.%d.%d.%d", i/250, i%250, j)},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
				TargetRef: &corev1.ObjectReference{
					Kind: "Pod", Namespace: sl.Namespace, Name: fmt.Sprintf("svc%04d-7d9f8c6b5-%05x", i/3, j),
					UID: "7b1c1f0e-1234-5678-9abc-def012345678", ResourceVersion: "99999",
				},
				NodeName: ptr.To(fmt.Sprintf("gke-pool-1-node-%03d", (i+j)%200)),
				Zone:     ptr.To(zone),
				Hints:    &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: zone}}},
			})
		}
		b, err := json.Marshal(sl)
		if err != nil {
			tb.Fatal(err)
		}
		out[i] = b
	}
	return out
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestHeapPerEndpoint checks the memory budget (the whole process under
// 1 KB of heap per endpoint) for the part watch owns: slimmed slices held
// by the Store (the informer's cache holds the same objects). It keeps a
// wide margin for the rest of the process.
func TestHeapPerEndpoint(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("allocates ~100 MB transiently; slow under -race")
	}
	const n, per = 500, 100
	raw := realisticSlices(t, n, per)
	store := NewStore(nil)
	before := heapInUse()
	for _, b := range raw {
		var sl discoveryv1.EndpointSlice
		if err := json.Unmarshal(b, &sl); err != nil {
			t.Fatal(err)
		}
		s := Slim(&sl)
		store.Upsert(s.Namespace+"/"+s.Name, s)
	}
	after := heapInUse()
	perEndpoint := float64(after-before) / (n * per)
	t.Logf("heap per endpoint: %.0f B (raw JSON %d B)", perEndpoint, len(raw[0])/per)
	if perEndpoint > 500 {
		t.Errorf("heap per endpoint = %.0f B, want at most 500 B (leaves half of the 1 KB budget to the rest)", perEndpoint)
	}
	runtime.KeepAlive(store)
	runtime.KeepAlive(raw)
}

// BenchmarkSlim decodes and slims one slice of 100 endpoints, the
// informer's per-object cost.
func BenchmarkSlim(b *testing.B) {
	raw := realisticSlices(b, 1, 100)[0]
	b.ReportAllocs()
	for b.Loop() {
		var sl discoveryv1.EndpointSlice
		if err := json.Unmarshal(raw, &sl); err != nil {
			b.Fatal(err)
		}
		_ = Slim(&sl)
	}
}

// BenchmarkStore upserts 10,000 slices (one changed endpoint each) into a
// Store already holding them, and reads each Service back.
func BenchmarkStore(b *testing.B) {
	const n = 10000
	var slicesA, slicesB []*discoveryv1.EndpointSlice
	for i := range n {
		ns, name, svcName := fmt.Sprintf("team-%02d", i%20), fmt.Sprintf("s%05d", i), fmt.Sprintf("svc%04d", i/2)
		slicesA = append(slicesA, Slim(slice(ns, name, svcName, fmt.Sprint(2*i), "10.0.0.1", "10.0.0.2")))
		slicesB = append(slicesB, Slim(slice(ns, name, svcName, fmt.Sprint(2*i+1), "10.0.0.1", "10.0.0.3")))
	}
	store := NewStore(nil)
	for _, sl := range slicesA {
		store.Upsert(sl.Namespace+"/"+sl.Name, sl)
	}
	b.ReportAllocs()
	flip := false
	for b.Loop() {
		src := slicesA
		if flip = !flip; flip {
			src = slicesB
		}
		for _, sl := range src {
			store.Upsert(sl.Namespace+"/"+sl.Name, sl)
		}
		for _, key := range store.Services() {
			_ = store.Slices(key)
		}
	}
}

// TestNodeNamesShared: endpoints on one Node share one NodeName pointer,
// and once no endpoint holds it the name leaves the pool (Nodes come and go
// under an autoscaler: the pool is bounded by the Nodes in use).
func TestNodeNamesShared(t *testing.T) {
	const node = "node-shared-by-test"
	mk := func(name string) *discoveryv1.EndpointSlice {
		sl := slice("ns", name, "web", "1", "10.0.0.1", "10.0.0.2")
		for i := range sl.Endpoints {
			n := node // a string of its own, as the decoder makes
			sl.Endpoints[i].NodeName = &n
		}
		return Slim(sl)
	}
	known := func() bool { return nodePtrs.has(node) }
	a, b := mk("a"), mk("b")
	if p := a.Endpoints[0].NodeName; p != a.Endpoints[1].NodeName || p != b.Endpoints[0].NodeName || *p != node {
		t.Fatal("endpoints on one Node do not share its name")
	}
	if !known() {
		t.Fatal("the Node is not in the pool")
	}
	runtime.KeepAlive(a)
	runtime.KeepAlive(b)
	a, b = nil, nil
	// Cleanups run after a GC finds the pointer unreachable, on the
	// runtime's own goroutine: collect until it has run.
	for i := 0; known(); i++ {
		if i == 1000 {
			t.Fatal("the Node's name stayed in the pool after its endpoints went")
		}
		runtime.GC()
		runtime.Gosched()
	}
}

// Zones and zone hints are whatever the slices' writers wrote: 20,000
// distinct ones leave nothing behind in the pools once no slice names
// them.
func TestZonePoolsBounded(t *testing.T) {
	const zones = 20000
	before := zonePtrs.len() + hintsPtrs.len()
	var slices []*discoveryv1.EndpointSlice
	for i := range zones {
		sl := slice("ns", fmt.Sprintf("s%d", i), "web", "1", "10.0.0.1")
		z := fmt.Sprintf("zone-%d-of-a-tenant", i)
		sl.Endpoints[0].Zone = &z
		sl.Endpoints[0].Hints = &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: z}}}
		slices = append(slices, Slim(sl))
	}
	if got := zonePtrs.len() + hintsPtrs.len(); got < before+2*zones {
		t.Fatalf("pools hold %d entries with %d zones alive, want %d more than %d", got, zones, 2*zones, before)
	}
	runtime.KeepAlive(slices)
	slices = nil
	// Cleanups run after a GC finds the pointers unreachable, on the
	// runtime's own goroutine: collect until they have run.
	for i := 0; zonePtrs.len()+hintsPtrs.len() > before; i++ {
		if i == 1000 {
			t.Fatalf("pools still hold %d entries after every slice went, %d before", zonePtrs.len()+hintsPtrs.len(), before)
		}
		runtime.GC()
		runtime.Gosched()
	}
}
