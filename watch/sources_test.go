package watch

import (
	"maps"
	"slices"
	"sync"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

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

// mcsSlice is a ServiceImport's slice of Service ns/name, its endpoints in
// the cluster from.
func mcsSlice(ns, sliceName, name, from, ip string) *discoveryv1.EndpointSlice {
	sl := slice(ns, sliceName, "", "", ip)
	sl.Labels = map[string]string{LabelMCSServiceName: name, LabelMCSSourceCluster: from}
	return sl
}

// With MCS, a ServiceImport's slices are their Service's, placed by the
// cluster they name when it is a source (else as the source that read
// them), and a scoped watch lists them by their own label; without MCS
// they belong to no Service. A move of the reading source's watch takes
// them along, whatever source they are placed as.
func TestKubeMCS(t *testing.T) {
	client := fake.NewClientset(
		slice("ns", "web-a", "web", "", "10.0.0.1"),
		mcsSlice("ns", "imported-west", "web", "west", "10.1.0.1"),
		mcsSlice("ns", "imported-mars", "web", "mars", "10.2.0.1"),
	)
	lists := recordLists(client)
	n := newNotifications()
	store := NewStore(n.notify)
	k, err := NewKube(KubeOptions{API: clientsetAPI{client}, Store: store, Source: "east", MCS: true, Sources: []string{"east", "west"},
		Services: []render.ServiceKey{svc("ns", "web")}})
	if err != nil {
		t.Fatal(err)
	}
	runSource(t, k)
	waitClosed(t, k.Synced(), "Synced")
	web := svc("ns", "web")
	n.until(t, "the imported slices", func() bool {
		return slices.Equal(sourcesOf(store.Slices(web)), []string{"east:imported-mars", "east:web-a", "west:imported-west"})
	})
	if got, want := lists(), []string{"ns|!kubernetes.io/service-name,multicluster.kubernetes.io/service-name in (web)", "ns|kubernetes.io/service-name in (web)"}; !slices.Equal(got, want) {
		t.Errorf("lists %q, want %q", got, want)
	}
	// client-go may transform an object twice (a list through watch): the
	// second pass must keep what the first made.
	once, _ := k.transform(mcsSlice("ns", "imported-west", "web", "west", "10.1.0.1"))
	twice, _ := k.transform(once)
	if a, b := once.(*discoveryv1.EndpointSlice).Labels, twice.(*discoveryv1.EndpointSlice).Labels; !maps.Equal(a, b) || b[render.LabelSource] != "west" {
		t.Errorf("transformed once %v, twice %v", a, b)
	}
	if err := k.SetServices(t.Context(), []render.ServiceKey{svc("ns", "api")}); err != nil {
		t.Fatal(err)
	}
	n.until(t, "every slice gone with the move", func() bool { return len(store.Slices(web)) == 0 })

	// Without MCS: no Service.
	plain := NewStore(nil)
	k2, err := NewKube(KubeOptions{API: clientsetAPI{fake.NewClientset(mcsSlice("ns", "imported-west", "web", "west", "10.1.0.1"))}, Store: plain})
	if err != nil {
		t.Fatal(err)
	}
	runSource(t, k2)
	waitClosed(t, k2.Synced(), "Synced")
	if got := plain.Services(); len(got) != 0 {
		t.Errorf("without MCS, an imported slice made Services %v", got)
	}
}

// recordLists records the namespace and label selector of each list of
// EndpointSlices; the function returns them, sorted, since the last call.
func recordLists(client *fake.Clientset) func() []string {
	var mu sync.Mutex
	var lists []string
	client.PrependReactor("list", "endpointslices", func(a k8stesting.Action) (bool, runtime.Object, error) {
		la := a.(k8stesting.ListActionImpl)
		mu.Lock()
		lists = append(lists, la.GetNamespace()+"|"+la.GetListOptions().LabelSelector)
		mu.Unlock()
		return false, nil, nil
	})
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := slices.Sorted(slices.Values(lists))
		lists = nil
		return out
	}
}

// A move while the source is dropped (stale) puts none of its slices back:
// Restore does, when it answers again.
func TestKubeMoveWhileDropped(t *testing.T) {
	c := fake.NewClientset(slice("ns", "web-a", "web", "", "10.0.0.1"), slice("ns", "api-a", "api", "", "10.0.0.2"))
	n := newNotifications()
	store := NewStore(n.notify)
	k, err := NewKube(KubeOptions{API: clientsetAPI{c}, Store: store, Source: "east", Services: []render.ServiceKey{svc("ns", "web")}})
	if err != nil {
		t.Fatal(err)
	}
	runSource(t, k)
	waitClosed(t, k.Synced(), "Synced")
	k.Drop()
	if err := k.SetServices(t.Context(), []render.ServiceKey{svc("ns", "web"), svc("ns", "api")}); err != nil {
		t.Fatal(err)
	}
	if got := store.Services(); len(got) != 0 {
		t.Errorf("a dropped source's slices are back after a move: %v", got)
	}
	k.Restore()
	if got := store.Services(); !slices.Equal(got, []render.ServiceKey{svc("ns", "api"), svc("ns", "web")}) {
		t.Errorf("after Restore: %v", got)
	}
}
