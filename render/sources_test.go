package render

import (
	"slices"
	"strings"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
)

// from labels a slice as read from the named source.
func from(source string) sliceOpt {
	return func(s *discoveryv1.EndpointSlice) { s.Labels[LabelSource] = source }
}

// twoSources renders Service default/web's port http from slices, with
// sources east (preferred) and west.
func twoSources(t *testing.T, o Options, slices ...*discoveryv1.EndpointSlice) ([]string, []Skip) {
	t.Helper()
	o.Sources = map[string]Source{
		"east": {Priority: 0, Region: "us-east"},
		"west": {Priority: 1, Region: "us-west", Weight: 2},
	}
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	clusters, skips := r.Service(ServiceKey{Namespace: "default", Name: "web"}, slices)
	if len(clusters) != 1 {
		t.Fatalf("%d clusters", len(clusters))
	}
	if err := clusters[0].CLA().ValidateAll(); err != nil {
		t.Fatal(err)
	}
	return layout(clusters[0].CLA()), skips
}

// One Service from two sources is one cluster: each source's endpoints at
// its priority, in its region, its localities weighted by its weight; the
// topology's levels inside each source's; priorities contiguous.
func TestSourcesPlaceEndpoints(t *testing.T) {
	east := slice("web-east", discoveryv1.AddressTypeIPv4, from("east"), port("http", 8080),
		ep("10.0.0.1", zone("a")), ep("10.0.0.2", zone("b")))
	west := slice("web-west", discoveryv1.AddressTypeIPv4, from("west"), port("http", 8080),
		ep("10.1.0.1", zone("a")), ep("10.1.0.2", zone("a")))

	got, _ := twoSources(t, Options{}, east, west)
	want := []string{"p0 us-east/a/ w1: 10.0.0.1", "p0 us-east/b/ w1: 10.0.0.2", "p1 us-west/a/ w4: 10.1.0.1 10.1.0.2"}
	if !slices.Equal(got, want) {
		t.Errorf("placement\n got %v\nwant %v", got, want)
	}

	// Zone topology inside each source: east's local zone, east's others,
	// west's local zone (west has no other zone: no empty level).
	got, _ = twoSources(t, Options{Topology: TopologyZone, LocalZone: "a"}, west, east)
	want = []string{"p0 us-east/a/ w1: 10.0.0.1", "p1 us-east/b/ w1: 10.0.0.2", "p2 us-west/a/ w4: 10.1.0.1 10.1.0.2"}
	if !slices.Equal(got, want) {
		t.Errorf("zone topology inside sources\n got %v\nwant %v", got, want)
	}

	// The preferred source scaled to zero: the other is priority 0.
	empty := slice("web-east", discoveryv1.AddressTypeIPv4, from("east"), port("http", 8080))
	got, _ = twoSources(t, Options{}, empty, west)
	if want := []string{"p0 us-west/a/ w4: 10.1.0.1 10.1.0.2"}; !slices.Equal(got, want) {
		t.Errorf("east at zero\n got %v\nwant %v", got, want)
	}
}

// An ip:port two sources publish is a conflict: the preferred source's copy
// is kept whatever the order the slices come in, and the conflict reported.
func TestSourcesAddressConflict(t *testing.T) {
	east := slice("web-east", discoveryv1.AddressTypeIPv4, from("east"), port("http", 8080), ep("10.0.0.1"), ep("10.0.0.9"))
	west := slice("web-west", discoveryv1.AddressTypeIPv4, from("west"), port("http", 8080), ep("10.0.0.9", terminating()), ep("10.1.0.1"))
	for _, order := range [][]*discoveryv1.EndpointSlice{{east, west}, {west, east}} {
		got, skips := twoSources(t, Options{}, order...)
		want := []string{"p0 us-east// w2: 10.0.0.1 10.0.0.9", "p1 us-west// w2: 10.1.0.1"}
		if !slices.Equal(got, want) {
			t.Errorf("placement\n got %v\nwant %v", got, want)
		}
		if len(skips) != 1 || skips[0].Reason != ReasonAddressConflict ||
			!strings.Contains(skips[0].Detail, "10.0.0.9:8080 in sources east and west") {
			t.Errorf("skips %v: want the one conflict", skips)
		}
	}
}

// A slice without the label, or of an unknown source, is placed as with
// one source; without Sources the label means nothing.
func TestSourcesDefaults(t *testing.T) {
	plain := slice("web-1", discoveryv1.AddressTypeIPv4, port("http", 8080), ep("10.0.0.1"))
	other := slice("web-2", discoveryv1.AddressTypeIPv4, from("mars"), port("http", 8080), ep("10.0.0.2"))
	got, _ := twoSources(t, Options{}, plain, other)
	if want := []string{"p0 // w2: 10.0.0.1 10.0.0.2"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if _, err := New(Options{Sources: map[string]Source{"x": {Priority: -1}}}); err == nil {
		t.Error("a negative priority was accepted")
	}
}

// A conflict is reported whether or not the preferred copy is published:
// not ready, it is left out and the other source's copy is the host.
func TestSourcesConflictWithAnUnreadyCopy(t *testing.T) {
	east := slice("web-east", discoveryv1.AddressTypeIPv4, from("east"), port("http", 8080), ep("10.0.0.9", notReady()))
	west := slice("web-west", discoveryv1.AddressTypeIPv4, from("west"), port("http", 8080), ep("10.0.0.9"))
	got, skips := twoSources(t, Options{}, east, west)
	if want := []string{"p0 us-west// w2: 10.0.0.9"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if len(skips) != 1 || skips[0].Reason != ReasonAddressConflict {
		t.Errorf("skips %v: want the conflict", skips)
	}
}

// The Nodes render knows are those of the source they come from: another
// source's endpoint on a node of the same name gets none of its topology.
func TestSourcesNodesAreLocal(t *testing.T) {
	r, err := New(Options{NodesFrom: "east", Sources: map[string]Source{"east": {Region: "us-east"}, "west": {Priority: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	r.SetNode("worker", &NodeTopology{Region: "r-east", SubZone: "rack-1"})
	onWorker := func(e *discoveryv1.Endpoint) { e.NodeName = new("worker") }
	clusters, _ := r.Service(ServiceKey{Namespace: "default", Name: "web"}, []*discoveryv1.EndpointSlice{
		slice("web-east", discoveryv1.AddressTypeIPv4, from("east"), port("http", 8080), ep("10.0.0.1", onWorker)),
		slice("web-west", discoveryv1.AddressTypeIPv4, from("west"), port("http", 8080), ep("10.1.0.1", onWorker)),
	})
	if got, want := layout(clusters[0].CLA()), []string{"p0 us-east//rack-1 w1: 10.0.0.1", "p1 // w1: 10.1.0.1"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if _, err := New(Options{Sources: map[string]Source{"x": {Weight: 1 << 31}}}); err == nil {
		t.Error("a weight that overflows the locality weights was accepted")
	}
}
