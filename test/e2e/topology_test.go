package e2e

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/edsync/edsync/test/e2e/harness"
	"github.com/edsync/edsync/writer"
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

	// Pod i is web-i at 10.61.0.(i+1), on the Node named by its suffix.
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

// TestTopologyPriorities runs edsync's topology modes against the real
// EndpointSlice controller's zones and hints (see
// TestTopologyHintsFromController) with four Nodes in three zones, and
// follows Pods moving between zones. Four edsync processes read the same
// Services, each into its own folder:
//
//   - "hints": --topology hints --node-name <prefix>-a1 --node-topology
//     --watch-services: localities carry region, zone and sub-zone from the
//     Nodes (and follow a sub-zone label edit); PreferClose puts zone-a at
//     priority 0 and the rest at 1, PreferSameNode puts the Pods on a1 first
//     (0), the rest of zone-a next (1) and the other zones last (2); a
//     Service with no hints gets no preference, and a terminating endpoint
//     (never hinted) does not cancel the others' hints, as in kube-proxy.
//     The edsync.io/topology annotation overrides the mode per Service
//     ("zone" on one without hints, "off" on one with, then edited); an
//     invalid value is logged and counted and the Service is rendered in
//     the global mode. The other edsync.io/ annotations give the CLA policy
//     and the endpoints' health check port and host name.
//   - "zone": --topology zone --node-name <prefix>-b1 --region region-x:
//     zone-b first whatever the hints; no --node-topology, so every locality
//     has the fixed region and no sub-zone; no --watch-services, so no
//     annotation counts.
//   - "local-zone": --topology zone --local-zone zone-c, no Node read at
//     all; --endpoint-metadata puts each endpoint's Pod, namespace, Node
//     and zone in its metadata.
//   - "off": no flag: every endpoint at priority 0, still in weighted
//     localities by zone (no region, no sub-zone).
//
// Every locality's load_balancing_weight is its endpoint count, and
// priorities stay contiguous from 0 when a level empties (the local zone or
// node losing its last Pod).
func TestTopologyPriorities(t *testing.T) {
	ctx := t.Context()
	c := cluster
	const ns, prefix = "topo", "topo"
	if err := c.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateNodes(ctx, topoNodes(prefix)...); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "web"}
	const annotation = "edsync.io/topology"
	for _, s := range []harness.ServiceSpec{
		{Name: "close", TrafficDistribution: corev1.ServiceTrafficDistributionPreferClose, Annotations: map[string]string{
			"edsync.io/overprovisioning-factor": "200", "edsync.io/health-check-port": "http", "edsync.io/health-check-hostname": "web.example"}},
		{Name: "samenode", TrafficDistribution: corev1.ServiceTrafficDistributionPreferSameNode},
		{Name: "plain"},
		{Name: "override", Annotations: map[string]string{annotation: "zone"}},
		{Name: "optout", TrafficDistribution: corev1.ServiceTrafficDistributionPreferClose, Annotations: map[string]string{annotation: "off"}},
		{Name: "bad", TrafficDistribution: corev1.ServiceTrafficDistributionPreferClose, Annotations: map[string]string{annotation: "nearest"}},
	} {
		s.Namespace, s.Selector = ns, labels
		s.Ports = []corev1.ServicePort{harness.TCPPort("http", 80, intstr.FromInt32(topoPort))}
		if _, err := c.CreateServiceSpec(ctx, s); err != nil {
			t.Fatal(err)
		}
	}

	// Pod i is web-i at 10.62.0.(i+1).
	ip := func(i int) string { return fmt.Sprintf("10.62.0.%d", i+1) }
	place := func(i int, node string) harness.PodOn {
		return harness.PodOn{Name: fmt.Sprintf("web-%d", i), Node: prefix + "-" + node, IP: ip(i)}
	}
	if err := c.CreatePodsOnNodes(ctx, ns, labels,
		place(0, "a1"), place(1, "a1"), place(2, "a2"), place(3, "b1"), place(4, "c1")); err != nil {
		t.Fatal(err)
	}

	type run struct {
		name  string
		files *harness.DirWatcher
		e     *harness.Edsync
		addr  string
	}
	var runs []*run
	for _, r := range []struct {
		name  string
		flags []string
	}{
		{"hints", []string{"--topology", "hints", "--node-name", prefix + "-a1", "--node-topology", "--watch-services"}},
		{"zone", []string{"--topology", "zone", "--node-name", prefix + "-b1", "--region", "region-x"}},
		{"local-zone", []string{"--topology", "zone", "--local-zone", "zone-c", "--endpoint-metadata"}},
		{"off", nil},
	} {
		out := t.TempDir()
		ru := &run{name: r.name, files: harness.WatchDir(t, out)}
		args := append([]string{"--output-dir", out, "--namespace", ns}, r.flags...)
		ru.e = c.StartEdsync(t, args...)
		ru.addr = ru.e.HTTPAddr(t)
		runs = append(runs, ru)
	}

	// loc is one expected Layout line: the locality of pods at prio, its
	// weight their count.
	loc := func(prio int, locality string, pods ...int) string {
		var ips []string
		for _, i := range pods {
			ips = append(ips, ip(i))
		}
		slices.Sort(ips)
		return fmt.Sprintf("P%d %s w%d: %s", prio, locality, len(pods), strings.Join(ips, " "))
	}
	const (
		a  = "region-1/zone-a/rack-a"
		b  = "region-1/zone-b/rack-b"
		cz = "region-2/zone-c/rack-c"
		xa = "region-x/zone-a/" // --region, no --node-topology
		xb = "region-x/zone-b/"
		xc = "region-x/zone-c/"
		na = "/zone-a/" // neither
		nb = "/zone-b/"
		nc = "/zone-c/"
	)
	// expect waits until every run's file of each Service holds its layout.
	expect := func(step string, want map[string]map[string][]string) {
		t.Helper()
		for _, r := range runs {
			for svc, layout := range want[r.name] {
				cl := ns + "/" + svc + "/http"
				r.files.WaitLayout(t, edsFile(t, cl, writer.FormatJSON), cl, settle, layout...)
			}
		}
		t.Logf("%s: every file as expected", step)
	}

	// a1: web-0, web-1; a2: web-2; b1: web-3; c1: web-4.
	zoneA := []string{loc(0, a, 0, 1, 2), loc(1, b, 3), loc(1, cz, 4)}
	expect("start", map[string]map[string][]string{
		"hints": {
			"close":    zoneA,
			"samenode": {loc(0, a, 0, 1), loc(1, a, 2), loc(2, b, 3), loc(2, cz, 4)},
			"plain":    {loc(0, a, 0, 1, 2), loc(0, b, 3), loc(0, cz, 4)},
			"override": zoneA,
			"optout":   {loc(0, a, 0, 1, 2), loc(0, b, 3), loc(0, cz, 4)},
			"bad":      zoneA,
		},
		"zone": {
			"close":    {loc(0, xb, 3), loc(1, xa, 0, 1, 2), loc(1, xc, 4)},
			"samenode": {loc(0, xb, 3), loc(1, xa, 0, 1, 2), loc(1, xc, 4)},
			"plain":    {loc(0, xb, 3), loc(1, xa, 0, 1, 2), loc(1, xc, 4)},
		},
		"local-zone": {
			"close": {loc(0, nc, 4), loc(1, na, 0, 1, 2), loc(1, nb, 3)},
		},
		"off": {
			"close":    {loc(0, na, 0, 1, 2), loc(0, nb, 3), loc(0, nc, 4)},
			"samenode": {loc(0, na, 0, 1, 2), loc(0, nb, 3), loc(0, nc, 4)},
		},
	})

	// close's other annotations, read with --watch-services only: the
	// overprovisioning factor as the CLA's policy, the health check port
	// (by name: the slices' port "http", 8080) and host name on every
	// endpoint. --endpoint-metadata: each endpoint's Pod, namespace, Node
	// and zone under envoy.lb.
	podNode := map[string]string{ip(0): "a1", ip(1): "a1", ip(2): "a2", ip(3): "b1", ip(4): "c1"}
	podZone := map[string]string{"a1": "zone-a", "a2": "zone-a", "b1": "zone-b", "c1": "zone-c"}
	closeFile := edsFile(t, ns+"/close/http", writer.FormatJSON)
	for _, r := range runs {
		r.files.WaitFor(t, closeFile, ns+"/close/http", settle, func(cla *endpointv3.ClusterLoadAssignment) error {
			var wantPolicy uint32
			if r.name == "hints" {
				wantPolicy = 200
			}
			if got := cla.GetPolicy().GetOverprovisioningFactor().GetValue(); got != wantPolicy {
				return fmt.Errorf("run %s: overprovisioning factor %d, want %d", r.name, got, wantPolicy)
			}
			for _, locality := range cla.GetEndpoints() {
				for _, lb := range locality.GetLbEndpoints() {
					ep := lb.GetEndpoint()
					addr := ep.GetAddress().GetSocketAddress().GetAddress()
					hc := ep.GetHealthCheckConfig()
					if r.name == "hints" && (hc.GetPortValue() != topoPort || hc.GetHostname() != "web.example") ||
						r.name != "hints" && hc != nil {
						return fmt.Errorf("run %s: %s: health check config %v", r.name, addr, hc)
					}
					meta := map[string]string{}
					for k, v := range lb.GetMetadata().GetFilterMetadata()["envoy.lb"].GetFields() {
						meta[k] = v.GetStringValue()
					}
					want := map[string]string{}
					if r.name == "local-zone" {
						i := slices.Index([]string{ip(0), ip(1), ip(2), ip(3), ip(4)}, addr)
						want = map[string]string{"pod": fmt.Sprintf("web-%d", i), "namespace": ns,
							"node": prefix + "-" + podNode[addr], "zone": podZone[podNode[addr]]}
					}
					if !maps.Equal(meta, want) {
						return fmt.Errorf("run %s: %s: envoy.lb metadata %v, want %v", r.name, addr, meta, want)
					}
				}
			}
			return nil
		})
	}
	t.Logf("Service settings and endpoint metadata as expected")

	// The invalid annotation: logged and counted, and (above) the Service
	// is rendered in the global mode rather than dropped.
	hints := runs[0]
	hints.e.WaitLog(t, settle, "invalid-annotation", ns+"/bad")
	if n := metric(t, "http://"+hints.addr, `edsync_skipped_objects_total{reason="invalid-annotation"}`); n < 1 {
		t.Errorf(`edsync_skipped_objects_total{reason="invalid-annotation"} = %v, want >= 1`, n)
	}

	// A Pod moves from zone-b to zone-c: the "zone" run's local zone is
	// left empty, so everything is at priority 0.
	if err := c.DeletePod(ctx, ns, "web-3", true); err != nil {
		t.Fatal(err)
	}
	if err := c.CreatePodsOnNodes(ctx, ns, labels, place(5, "c1")); err != nil {
		t.Fatal(err)
	}
	zoneA = []string{loc(0, a, 0, 1, 2), loc(1, cz, 4, 5)}
	expect("moved b1 -> c1", map[string]map[string][]string{
		"hints": {
			"close":    zoneA,
			"samenode": {loc(0, a, 0, 1), loc(1, a, 2), loc(2, cz, 4, 5)},
			"plain":    {loc(0, a, 0, 1, 2), loc(0, cz, 4, 5)},
			"override": zoneA,
			"optout":   {loc(0, a, 0, 1, 2), loc(0, cz, 4, 5)},
			"bad":      zoneA,
		},
		"zone": {
			"close": {loc(0, xa, 0, 1, 2), loc(0, xc, 4, 5)},
			"plain": {loc(0, xa, 0, 1, 2), loc(0, xc, 4, 5)},
		},
		"local-zone": {
			"close": {loc(0, nc, 4, 5), loc(1, na, 0, 1, 2)},
		},
		"off": {
			"close": {loc(0, na, 0, 1, 2), loc(0, nc, 4, 5)},
		},
	})

	// A Pod moves from a2 to b1: zone-a keeps only a1's Pods, so
	// PreferSameNode's zone level is empty and the other zones move up to 1.
	if err := c.DeletePod(ctx, ns, "web-2", true); err != nil {
		t.Fatal(err)
	}
	if err := c.CreatePodsOnNodes(ctx, ns, labels, place(6, "b1")); err != nil {
		t.Fatal(err)
	}
	zoneA = []string{loc(0, a, 0, 1), loc(1, b, 6), loc(1, cz, 4, 5)}
	expect("moved a2 -> b1", map[string]map[string][]string{
		"hints": {
			"close":    zoneA,
			"samenode": zoneA,
			"plain":    {loc(0, a, 0, 1), loc(0, b, 6), loc(0, cz, 4, 5)},
			"override": zoneA,
			"optout":   {loc(0, a, 0, 1), loc(0, b, 6), loc(0, cz, 4, 5)},
			"bad":      zoneA,
		},
		"zone": {
			"close": {loc(0, xb, 6), loc(1, xa, 0, 1), loc(1, xc, 4, 5)},
			"plain": {loc(0, xb, 6), loc(1, xa, 0, 1), loc(1, xc, 4, 5)},
		},
		"local-zone": {
			"close": {loc(0, nc, 4, 5), loc(1, na, 0, 1), loc(1, nb, 6)},
		},
		"off": {
			"close": {loc(0, na, 0, 1), loc(0, nb, 6), loc(0, nc, 4, 5)},
		},
	})

	// The annotations change while edsync runs (--watch-services follows
	// them): optout turns to zone, bad is fixed to off.
	if err := c.AnnotateService(ctx, ns, "optout", annotation, "zone"); err != nil {
		t.Fatal(err)
	}
	if err := c.AnnotateService(ctx, ns, "bad", annotation, "off"); err != nil {
		t.Fatal(err)
	}
	expect("annotations changed", map[string]map[string][]string{
		"hints": {
			"optout": zoneA,
			"bad":    {loc(0, a, 0, 1), loc(0, b, 6), loc(0, cz, 4, 5)},
		},
	})

	// web-0 on a1 is deleted without force: terminating, DRAINING in the
	// file, and the controller no longer hints it. As in kube-proxy, which
	// looks only at ready endpoints' hints, the ready ones keep their
	// priorities; where the draining one goes does not matter (Envoy sends
	// it nothing).
	if err := c.DeletePod(ctx, ns, "web-0", false); err != nil {
		t.Fatal(err)
	}
	wantReady := []string{"P0 " + a + ": " + ip(1), "P1 " + b + ": " + ip(6), "P1 " + cz + ": " + ip(4) + " " + ip(5)}
	for _, svc := range []string{"close", "samenode"} {
		cl := ns + "/" + svc + "/http"
		hints.files.WaitFor(t, edsFile(t, cl, writer.FormatJSON), cl, settle, func(cla *endpointv3.ClusterLoadAssignment) error {
			got, draining := readyLayout(cla)
			if !slices.Equal(got, wantReady) || !slices.Equal(draining, []string{ip(0)}) {
				return fmt.Errorf("want ready endpoints\n  %s\nand %s DRAINING; got\n  %s\ndraining %v\n(all: %s)",
					strings.Join(wantReady, "\n  "), ip(0), strings.Join(got, "\n  "), draining, strings.Join(harness.Layout(cla), "; "))
			}
			return nil
		})
	}
	t.Logf("web-0 terminating: the ready endpoints keep their priorities")

	// A Node's sub-zone label changes: with --node-topology the locality of
	// its endpoints follows (the other runs do not read it).
	if err := c.LabelNode(ctx, prefix+"-c1", harness.LabelSubZone, "rack-c2"); err != nil {
		t.Fatal(err)
	}
	expect("c1 relabelled", map[string]map[string][]string{
		"hints": {
			"plain": {"P0 " + a + " w2: " + ip(0) + "(DRAINING) " + ip(1), loc(0, b, 6), loc(0, "region-2/zone-c/rack-c2", 4, 5)},
		},
	})
}

// readyLayout is Layout without weights and with only the HEALTHY
// endpoints (localities left empty dropped), plus the DRAINING endpoints'
// IPs, each sorted. It checks that every locality's weight is its endpoint
// count, draining ones included.
func readyLayout(cla *endpointv3.ClusterLoadAssignment) (ready, draining []string) {
	for _, loc := range cla.GetEndpoints() {
		var ips []string
		for _, lb := range loc.GetLbEndpoints() {
			ip := lb.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()
			switch lb.GetHealthStatus() {
			case corev3.HealthStatus_HEALTHY:
				ips = append(ips, ip)
			case corev3.HealthStatus_DRAINING:
				draining = append(draining, ip)
			}
		}
		l := loc.GetLocality()
		if w := loc.GetLoadBalancingWeight().GetValue(); int(w) != len(loc.GetLbEndpoints()) {
			ready = append(ready, fmt.Sprintf("weight %d for %d endpoints in %s/%s/%s", w, len(loc.GetLbEndpoints()), l.GetRegion(), l.GetZone(), l.GetSubZone()))
		}
		if len(ips) == 0 {
			continue
		}
		slices.Sort(ips)
		ready = append(ready, fmt.Sprintf("P%d %s/%s/%s: %s", loc.GetPriority(), l.GetRegion(), l.GetZone(), l.GetSubZone(), strings.Join(ips, " ")))
	}
	slices.Sort(ready)
	slices.Sort(draining)
	return ready, draining
}
