package render

import (
	"fmt"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
)

// A Service that comes and goes leaves nothing in the Renderer: after
// thousands of short-lived Services (with Service objects, and a name
// conflict now and then), only the Services alive are kept. The clusters
// of a Service that goes come back once, with no endpoints and Gone.
func TestServiceChurnLeavesNothing(t *testing.T) {
	// Ten Services in a row share a cluster name: all but one are refused it.
	r, err := New(Options{ClusterNameTemplate: `{{.Namespace}}/{{.Service | printf "%.7s"}}/{{.Port}}`})
	if err != nil {
		t.Fatal(err)
	}
	const alive, cycles = 10, 2000
	key := func(i int) ServiceKey { return ServiceKey{Namespace: "default", Name: fmt.Sprintf("svc-%04d", i)} }
	current := map[ServiceKey][]*discoveryv1.EndpointSlice{}
	for i := range cycles {
		k := key(i)
		r.SetService(k, &ServiceInfo{Annotations: map[string]string{"edsync.io/overprovisioning-factor": "150"}})
		s := slice(k.Name+"-a", discoveryv1.AddressTypeIPv4, port("http", 8080), ep(fmt.Sprintf("10.%d.%d.1", i/250, i%250)))
		s.Labels[discoveryv1.LabelServiceName] = k.Name
		current[k] = []*discoveryv1.EndpointSlice{s}
		r.Service(k, current[k])
		if i >= alive {
			old := key(i - alive)
			delete(current, old)
			r.SetService(old, nil)
			got, _ := r.Service(old, nil)
			for _, c := range got {
				if !c.Gone || len(c.CLA().Endpoints) != 0 {
					t.Fatalf("%s went: cluster %s gone=%v with %d localities, want Gone and empty", old, c.Name, c.Gone, len(c.CLA().Endpoints))
				}
			}
		}
		for _, k := range r.TakeUnblocked() {
			r.Service(k, current[k])
		}
	}
	if n := len(r.services); n > alive {
		t.Errorf("%d Services kept, want at most %d", n, alive)
	}
	if n := len(r.settings); n > alive {
		t.Errorf("%d Services' settings kept, want at most %d", n, alive)
	}
	if n := len(r.owners); n > alive {
		t.Errorf("%d cluster names owned, want at most %d", n, alive)
	}
	if n := len(r.blocked) + len(r.unblocked); n > alive {
		t.Errorf("%d blocked names and %d unblocked Services kept", len(r.blocked), len(r.unblocked))
	}
}
