package e2e

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/edsync/edsync/test/e2e/harness"
)

// topoPort is the Pods' port in the topology scenarios.
const topoPort = 8080

// topoNodes are four Nodes in three zones and two regions, named
// prefix-a1 .. prefix-c1; a1 and a2 share zone-a and its sub-zone.
func topoNodes(prefix string) []harness.Node {
	return []harness.Node{
		{Name: prefix + "-a1", Region: "region-1", Zone: "zone-a", SubZone: "rack-a"},
		{Name: prefix + "-a2", Region: "region-1", Zone: "zone-a", SubZone: "rack-a"},
		{Name: prefix + "-b1", Region: "region-1", Zone: "zone-b", SubZone: "rack-b"},
		{Name: prefix + "-c1", Region: "region-2", Zone: "zone-c", SubZone: "rack-c"},
	}
}

// TestTopologyHintsFromController proves the Kubernetes side that edsync's
// topology modes rely on, with no edsync at all: the real EndpointSlice
// controller of kube-controller-manager v1.37 (no extra controller or flag:
// trafficDistribution is GA, PreferSameNode GA and locked on since 1.35)
// copies each Node's zone onto its Pods' endpoints and, for a Service with
// trafficDistribution, hints each ready endpoint for its own zone
// (PreferClose, deprecated in 1.37 for its new name PreferSameZone: both are
// covered) and its own node as well (PreferSameNode). Hints follow Pods that
// move between zones; a terminating (not ready) endpoint has none, and a
// Service without trafficDistribution gets none.
func TestTopologyHintsFromController(t *testing.T) {
	ctx := t.Context()
	c := cluster
	const ns, prefix = "topo-k8s", "hints"
	if err := c.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	nodes := topoNodes(prefix)
	if err := c.CreateNodes(ctx, nodes...); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "web"}
	for name, td := range map[string]string{
		"close":    corev1.ServiceTrafficDistributionPreferClose,
		"samezone": corev1.ServiceTrafficDistributionPreferSameZone,
		"samenode": corev1.ServiceTrafficDistributionPreferSameNode,
		"plain":    "",
	} {
		if _, err := c.CreateServiceSpec(ctx, harness.ServiceSpec{Namespace: ns, Name: name, Selector: labels,
			Ports: []corev1.ServicePort{harness.TCPPort("http", 80, intstr.FromInt32(topoPort))}, TrafficDistribution: td}); err != nil {
			t.Fatal(err)
		}
	}

	// pods: name -> node suffix and IP.
	ip := func(i int) string { return fmt.Sprintf("10.61.0.%d", i+1) }
	node := map[string]string{"a1": prefix + "-a1", "a2": prefix + "-a2", "b1": prefix + "-b1", "c1": prefix + "-c1"}
	zone := map[string]string{"a1": "zone-a", "a2": "zone-a", "b1": "zone-b", "c1": "zone-c"}
	type pod struct {
		i     int
		on    string // node suffix
		state string // ready or terminating
	}
	create := func(pods ...pod) {
		t.Helper()
		var rp []harness.PodOn
		for _, p := range pods {
			rp = append(rp, harness.PodOn{Name: fmt.Sprintf("web-%d", p.i), Node: node[p.on], IP: ip(p.i)})
		}
		if err := c.CreatePodsOnNodes(ctx, ns, labels, rp...); err != nil {
			t.Fatal(err)
		}
	}
	services := []string{"close", "samezone", "samenode", "plain"}
	// expect waits until each Service's slices show pods with the hints
	// the controller gives for that Service's trafficDistribution.
	expect := func(step string, pods ...pod) {
		t.Helper()
		want := map[string][]string{}
		for _, p := range pods {
			base := fmt.Sprintf("%s node=%s zone=%s %s", ip(p.i), node[p.on], zone[p.on], p.state)
			if p.state != "ready" {
				for _, svc := range services {
					want[svc] = append(want[svc], base+" hints=-")
				}
				continue
			}
			want["close"] = append(want["close"], base+" hints=zones:"+zone[p.on])
			want["samezone"] = append(want["samezone"], base+" hints=zones:"+zone[p.on])
			want["samenode"] = append(want["samenode"], base+" hints=zones:"+zone[p.on]+" nodes:"+node[p.on])
			want["plain"] = append(want["plain"], base+" hints=-")
		}
		for _, svc := range services {
			if err := c.WaitSliceTopology(ctx, ns, svc, settle, want[svc]...); err != nil {
				t.Fatalf("%s: Service %s: %v", step, svc, err)
			}
		}
		t.Logf("%s: hints as expected on %v", step, services)
	}

	create(pod{0, "a1", "ready"}, pod{1, "a2", "ready"}, pod{2, "b1", "ready"}, pod{3, "c1", "ready"})
	expect("start", pod{0, "a1", "ready"}, pod{1, "a2", "ready"}, pod{2, "b1", "ready"}, pod{3, "c1", "ready"})

	// A Pod moves from zone-b to zone-c: force-deleted there, created here.
	if err := c.DeletePod(ctx, ns, "web-2", true); err != nil {
		t.Fatal(err)
	}
	create(pod{4, "c1", "ready"})
	expect("moved b1 -> c1", pod{0, "a1", "ready"}, pod{1, "a2", "ready"}, pod{3, "c1", "ready"}, pod{4, "c1", "ready"})

	// Deleted without force: terminating, not ready, and so not hinted.
	if err := c.DeletePod(ctx, ns, "web-1", false); err != nil {
		t.Fatal(err)
	}
	expect("web-1 terminating", pod{0, "a1", "ready"}, pod{1, "a2", "terminating"}, pod{3, "c1", "ready"}, pod{4, "c1", "ready"})
}
