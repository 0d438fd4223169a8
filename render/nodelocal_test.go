package render

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// internalTrafficPolicy: Local publishes only the endpoints on the local
// Node, whatever the topology mode, and none when it has none (no fallback,
// as kube-proxy); the policy changed back to Cluster publishes every one at
// once; with no local Node known the policy cannot apply and every endpoint
// is published, which the cluster says.
func TestInternalTrafficPolicyLocal(t *testing.T) {
	local := &ServiceInfo{Ports: []ServicePort{{Name: "http", Port: 80}}, InternalTrafficPolicy: corev1.ServiceInternalTrafficPolicyLocal}
	clusterWide := &ServiceInfo{Ports: []ServicePort{{Name: "http", Port: 80}}, InternalTrafficPolicy: corev1.ServiceInternalTrafficPolicyCluster}
	render := func(t *testing.T, r *Renderer, s *discoveryv1.EndpointSlice, want []string, wantNodeLocal NodeLocal) {
		t.Helper()
		got, _ := r.Service(web, []*discoveryv1.EndpointSlice{s})
		if len(got) != 1 || got[0].Gone {
			t.Fatalf("got %d clusters (%+v), want one published", len(got), got)
		}
		assertValid(t, got)
		if l := layout(got[0].CLA()); !slices.Equal(l, want) {
			t.Errorf("layout:\n  %s\nwant:\n  %s", strings.Join(l, "\n  "), strings.Join(want, "\n  "))
		}
		if got[0].NodeLocal != wantNodeLocal {
			t.Errorf("NodeLocal = %v, want %v", got[0].NodeLocal, wantNodeLocal)
		}
	}

	for _, mode := range []Topology{TopologyOff, TopologyZone, TopologyHints} {
		t.Run(fmt.Sprint(mode), func(t *testing.T) {
			r, err := New(Options{Topology: mode, LocalZone: "a", LocalNode: "n1"})
			if err != nil {
				t.Fatal(err)
			}
			r.SetService(web, local)
			render(t, r, threeZones(true), []string{"p0 /a/ w1: 10.0.0.1"}, NodeLocalOn)

			// No endpoint on the Node: none, not the others.
			noneHere := slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080),
				ep("10.0.1.1", zone("b"), node("n3")), ep("10.0.2.1", zone("c"), node("n4")), ep("10.0.3.1"))
			render(t, r, noneHere, nil, NodeLocalOn)

			// The policy changed on the live Service: every endpoint.
			if changed, _ := r.SetService(web, clusterWide); !changed {
				t.Fatal("a change of internalTrafficPolicy is no change to render")
			}
			render(t, r, noneHere, []string{"p0 // w1: 10.0.3.1", "p0 /b/ w1: 10.0.1.1", "p0 /c/ w1: 10.0.2.1"}, NodeLocalOff)
			r.SetService(web, local)
			render(t, r, threeZones(true), []string{"p0 /a/ w1: 10.0.0.1"}, NodeLocalOn)
		})
	}

	t.Run("no local Node", func(t *testing.T) {
		r, err := New(Options{LocalZone: "a"})
		if err != nil {
			t.Fatal(err)
		}
		r.SetService(web, local)
		render(t, r, threeZones(false), []string{"p0 /a/ w2: 10.0.0.1 10.0.0.2", "p0 /b/ w1: 10.0.1.1", "p0 /c/ w1: 10.0.2.1"}, NodeLocalNoNode)
		// The Node known later (SetLocal): the policy applies.
		if !r.SetLocal("a", "n2") {
			t.Fatal("SetLocal reports no change")
		}
		render(t, r, threeZones(false), []string{"p0 /a/ w1: 10.0.0.2"}, NodeLocalOn)
	})
}
