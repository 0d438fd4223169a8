package watch

import (
	"slices"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/edsync/edsync/render"
)

// sourcesOf lists, per slice of the Service, "source:name", sorted.
func sourcesOf(sls []*discoveryv1.EndpointSlice) []string {
	var out []string
	for _, sl := range sls {
		out = append(out, sl.Labels[render.LabelSource]+":"+sl.Name)
	}
	slices.Sort(out)
	return out
}

// Two named sources feed one Store: slices of the same name in both
// clusters are two slices, each labelled with its source; a delete in one
// cluster, or a move of one source's watch, leaves the other's alone.
func TestKubeSourcesShareAStore(t *testing.T) {
	east := fake.NewClientset(slice("ns", "web-a", "web", "", "10.0.0.1"))
	west := fake.NewClientset(slice("ns", "web-a", "web", "", "10.1.0.1"), slice("ns", "web-b", "web", "", "10.1.0.2"))
	n := newNotifications()
	store := NewStore(n.notify)
	var srcs []Source
	for name, c := range map[string]*fake.Clientset{"east": east, "west": west} {
		k, err := NewKube(KubeOptions{API: clientsetAPI{c}, Store: store, Source: name})
		if err != nil {
			t.Fatal(err)
		}
		srcs = append(srcs, k)
	}
	g := Group(srcs...)
	runSource(t, g)
	waitClosed(t, g.Synced(), "Synced")
	web := svc("ns", "web")
	want := func(what string, w ...string) {
		t.Helper()
		n.until(t, what, func() bool { return slices.Equal(sourcesOf(store.Slices(web)), w) })
	}
	want("both clusters' slices", "east:web-a", "west:web-a", "west:web-b")
	for _, sl := range store.Slices(web) {
		if sl.Labels[render.LabelSource] == "east" && sl.Endpoints[0].Addresses[0] != "10.0.0.1" {
			t.Errorf("east's web-a holds %v", sl.Endpoints[0].Addresses)
		}
	}

	if err := west.DiscoveryV1().EndpointSlices("ns").Delete(t.Context(), "web-a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	want("west's web-a deleted", "east:web-a", "west:web-b")

	// East's watch moves to another Service: its slices go, west's stay.
	if err := srcs[slices.IndexFunc(srcs, func(s Source) bool { return s.(*Kube).source == "east" })].(*Kube).SetServices(t.Context(), []render.ServiceKey{svc("ns", "api")}); err != nil {
		t.Fatal(err)
	}
	want("east moved away", "west:web-b")
}
