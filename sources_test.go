package main

import (
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/edsync/edsync/internal/testutil"
	"github.com/edsync/edsync/pipeline"
	"github.com/edsync/edsync/render"
)

// apiSlice is an EndpointSlice of Service ns/name with one ready endpoint
// on port http 8080.
func apiSlice(ns, name, ip string) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
	}
}

// With a clusters: list and no service:, the API server is asked only for
// the listed Services' slices (and, with watch-services, Services in their
// namespaces); a reload that lists others moves the watches: the new
// namespace is listed, the unchanged one is not listed again.
func TestWatchFollowsTheClusters(t *testing.T) {
	client := fake.NewClientset(apiSlice("ns1", "web", "10.0.0.1"), apiSlice("ns1", "api", "10.0.0.2"), apiSlice("ns2", "db", "10.0.0.3"))
	var mu sync.Mutex
	var lists []string
	client.PrependReactor("list", "endpointslices", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetNamespace() == "blocked" {
			return true, nil, errors.New("no list for you")
		}
		return false, nil, nil
	})
	for _, resource := range []string{"endpointslices", "services"} {
		client.PrependReactor("list", resource, func(a k8stesting.Action) (bool, runtime.Object, error) {
			la := a.(k8stesting.ListActionImpl)
			mu.Lock()
			lists = append(lists, resource+" "+la.GetNamespace()+"|"+la.GetListOptions().LabelSelector)
			mu.Unlock()
			return false, nil, nil
		})
	}
	takeLists := func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := slices.Sorted(slices.Values(lists))
		lists = nil
		return out
	}
	dir, out := t.TempDir(), t.TempDir()
	config := func(content string) *config {
		path := filepath.Join(dir, "edsync.yaml")
		writeFile(t, path, content)
		return configForTest(t, "--config", path, "--output-dir", out, "--debounce", "1ms", "--max-delay", "10ms", "--watch-services")
	}
	cfg := config("clusters: [{service: ns1/web, port: http, name: web}]\n")
	if got, want := watchedServices(cfg), []render.ServiceKey{{Namespace: "ns1", Name: "web"}}; !slices.Equal(got, want) {
		t.Errorf("watchedServices = %v, want %v", got, want)
	}
	tp := startPipelineWith(t, cfg, slog.New(slog.DiscardHandler), testutil.ClientsetAPI(client))
	tp.WaitCluster(t, "web")
	if got, want := takeLists(), []string{"endpointslices ns1|kubernetes.io/service-name in (web)", "services ns1|"}; !slices.Equal(got, want) {
		t.Errorf("lists at start = %q, want %q", got, want)
	}

	next := config("clusters: [{service: ns1/web, port: http, name: web}, {service: ns2/db, port: http, name: db}]\n")
	if err := apply(tp.p, tp.api, next, new(slog.LevelVar)); err != nil {
		t.Fatal(err)
	}
	r := tp.Wait(t, "the full flush after the reload", func(r pipeline.Report) bool { return r.Reload })
	if !slices.Contains(r.Clusters, "db") || r.Written != 1 {
		t.Errorf("reload flush %+v: want db written (its slices listed before it), web unchanged", r)
	}
	if got := readAsEnvoy(t, filepath.Join(out, "db", "eds.json")); !slices.Equal(addresses(got), []string{"10.0.0.3:8080 HEALTHY"}) {
		t.Errorf("db's file: %v", addresses(got))
	}
	if got, want := takeLists(), []string{"endpointslices ns2|kubernetes.io/service-name in (db)", "services ns2|"}; !slices.Equal(got, want) {
		t.Errorf("lists of the reload = %q, want %q (ns1 is not listed again)", got, want)
	}

	// A reload whose watch cannot move in time is refused as a move error
	// (tried again later) and changes nothing: the Services' watch moved
	// first and moves back, db's file stays.
	takeLists()
	blocked := config("sync-timeout: 300ms\nclusters: [{service: ns1/web, port: http, name: web}, {service: blocked/x, port: http, name: x}]\n")
	if err := apply(tp.p, tp.api, blocked, new(slog.LevelVar)); !errors.As(err, new(moveError)) {
		t.Fatalf("apply with a namespace that cannot be listed = %v, want a moveError", err)
	}
	if got, want := tp.api.current, watchedServices(next); !slices.Equal(got, want) {
		t.Errorf("watched after a failed move: %v, want %v (as before)", got, want)
	}
	if got := takeLists(); !slices.Contains(got, "services ns2|") {
		t.Errorf("lists of the failed move %q: want the Services of ns2 listed again (moved back)", got)
	}

	// An explicit service: list wins over the clusters: list.
	if got, want := watchedServices(config("service: [ns1/web, ns1/api]\nclusters: [{service: ns1/web, port: http, name: web}]\n")),
		[]render.ServiceKey{{Namespace: "ns1", Name: "web"}, {Namespace: "ns1", Name: "api"}}; !slices.Equal(got, want) {
		t.Errorf("watchedServices with service: = %v, want %v", got, want)
	}
	// Without either, every slice: --cluster declares files, it does not narrow.
	if got := watchedServices(configForTest(t, "--dry-run", "--cluster", "ns1/web/http")); got != nil {
		t.Errorf("watchedServices with --cluster only = %v, want none", got)
	}
}
