package render

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// An explicit cluster list publishes only its clusters, under its names,
// each selecting endpoints by its own options from the same slices.
func TestExplicitClusters(t *testing.T) {
	r, err := New(Options{Clusters: []ClusterSpec{
		{Service: web, Port: "http", Name: "web"},
		{Service: web, Port: "admin", Selection: Selection{Terminating: TerminatingDrop, NotReady: NotReadyUnhealthy}},
		{Service: ServiceKey{Namespace: "default", Name: "absent"}, Name: "absent"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(r.Declared(), ","), "absent,default/web/admin,web"; got != want {
		t.Errorf("Declared = %s, want %s", got, want)
	}
	s := slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080), port("admin", 9000), port("metrics", 9090),
		ep("10.0.0.1"), ep("10.0.0.2", terminating()), ep("10.0.0.3", notReady()))
	got, skips := r.Service(web, []*discoveryv1.EndpointSlice{s})
	if len(skips) != 0 {
		t.Errorf("skips: %+v", skips)
	}
	assertCLAs(t, got, []*endpointv3.ClusterLoadAssignment{
		cla("default/web/admin", locality("",
			lb("10.0.0.1", 9000, corev3.HealthStatus_HEALTHY, ""),
			lb("10.0.0.3", 9000, corev3.HealthStatus_UNHEALTHY, ""))),
		cla("web", locality("",
			lb("10.0.0.1", 8080, corev3.HealthStatus_HEALTHY, ""),
			lb("10.0.0.2", 8080, corev3.HealthStatus_DRAINING, ""))),
	})
	// A Service with no spec is not published at all.
	api := ServiceKey{Namespace: "default", Name: "api"}
	if got, _ := r.Service(api, []*discoveryv1.EndpointSlice{s}); len(got) != 0 {
		t.Errorf("unlisted Service published %d clusters", len(got))
	}
}

// A selection that drops the healthiest copy of a duplicated ip:port
// publishes the next copy it keeps, as if the dropped one were not there.
func TestSelectionBeforeDuplicates(t *testing.T) {
	r, err := New(Options{Terminating: TerminatingDrop, NotReady: NotReadyUnhealthy})
	if err != nil {
		t.Fatal(err)
	}
	a := slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080), ep("10.0.0.1", terminating()))
	b := slice("web-b", discoveryv1.AddressTypeIPv4, port("http", 8080), ep("10.0.0.1", notReady()))
	got, _ := r.Service(web, []*discoveryv1.EndpointSlice{a, b})
	assertCLAs(t, got, []*endpointv3.ClusterLoadAssignment{
		cla("default/web/http", locality("", lb("10.0.0.1", 8080, corev3.HealthStatus_UNHEALTHY, ""))),
	})
}

func TestExplicitClustersRejected(t *testing.T) {
	for name, specs := range map[string][]ClusterSpec{
		"same name":    {{Service: web, Port: "http", Name: "x"}, {Service: web, Port: "admin", Name: "x"}},
		"same port":    {{Service: web, Port: "http", Name: "x"}, {Service: web, Port: "http", Name: "y"}},
		"no service":   {{Name: "x"}},
		"named as tpl": {{Service: web, Port: "http"}, {Service: ServiceKey{Namespace: "other", Name: "web"}, Name: "default/web/http"}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := New(Options{Clusters: specs}); err == nil {
				t.Error("New accepted the list")
			}
		})
	}
}
