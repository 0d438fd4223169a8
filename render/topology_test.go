package render

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/encoding/protojson"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func node(n string) epOpt { return func(e *discoveryv1.Endpoint) { e.NodeName = ptr.To(n) } }

// hint sets the zones (and nodes, after a "node:" prefix) the controller
// hinted the endpoint for.
func hint(targets ...string) epOpt {
	return func(e *discoveryv1.Endpoint) {
		e.Hints = &discoveryv1.EndpointHints{}
		for _, t := range targets {
			if n, ok := strings.CutPrefix(t, "node:"); ok {
				e.Hints.ForNodes = append(e.Hints.ForNodes, discoveryv1.ForNode{Name: n})
			} else {
				e.Hints.ForZones = append(e.Hints.ForZones, discoveryv1.ForZone{Name: t})
			}
		}
	}
}

// layout summarises a CLA as one line per LocalityLbEndpoints:
// "p<priority> <region>/<zone>/<sub-zone> w<weight>: <ip> <ip> ...".
func layout(cla *endpointv3.ClusterLoadAssignment) []string {
	var out []string
	for _, l := range cla.Endpoints {
		var ips []string
		for _, lb := range l.LbEndpoints {
			ips = append(ips, lb.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
		}
		loc := l.GetLocality()
		out = append(out, fmt.Sprintf("p%d %s/%s/%s w%d: %s", l.Priority, loc.GetRegion(), loc.GetZone(), loc.GetSubZone(),
			l.GetLoadBalancingWeight().GetValue(), strings.Join(ips, " ")))
	}
	return out
}

// threeZones: two endpoints in zone a (one on node n1), one in b, one in c,
// each hinted for its own zone, and the one on n1 also for n1.
func threeZones(hinted bool) *discoveryv1.EndpointSlice {
	h := func(targets ...string) epOpt {
		if !hinted {
			return func(*discoveryv1.Endpoint) {}
		}
		return hint(targets...)
	}
	return slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080),
		ep("10.0.0.1", zone("a"), node("n1"), h("a", "node:n1")),
		ep("10.0.0.2", zone("a"), node("n2"), h("a", "node:n2")),
		ep("10.0.1.1", zone("b"), node("n3"), h("b", "node:n3")),
		ep("10.0.2.1", zone("c"), node("n4"), h("c", "node:n4")))
}

func TestTopology(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  Options
		slice *discoveryv1.EndpointSlice
		want  []string
	}{
		{"off: one level, localities weighted by endpoints", Options{LocalZone: "a"}, threeZones(true), []string{
			"p0 /a/ w2: 10.0.0.1 10.0.0.2", "p0 /b/ w1: 10.0.1.1", "p0 /c/ w1: 10.0.2.1"}},
		{"zone: local zone first", Options{Topology: TopologyZone, LocalZone: "b"}, threeZones(false), []string{
			"p0 /b/ w1: 10.0.1.1", "p1 /a/ w2: 10.0.0.1 10.0.0.2", "p1 /c/ w1: 10.0.2.1"}},
		{"zone: no endpoint in the local zone: one level from 0", Options{Topology: TopologyZone, LocalZone: "z"}, threeZones(false), []string{
			"p0 /a/ w2: 10.0.0.1 10.0.0.2", "p0 /b/ w1: 10.0.1.1", "p0 /c/ w1: 10.0.2.1"}},
		{"zone: local zone unknown: no preference", Options{Topology: TopologyZone}, threeZones(false), []string{
			"p0 /a/ w2: 10.0.0.1 10.0.0.2", "p0 /b/ w1: 10.0.1.1", "p0 /c/ w1: 10.0.2.1"}},
		{"hints: hinted for the local zone first", Options{Topology: TopologyHints, LocalZone: "a"}, threeZones(true), []string{
			"p0 /a/ w2: 10.0.0.1 10.0.0.2", "p1 /b/ w1: 10.0.1.1", "p1 /c/ w1: 10.0.2.1"}},
		{"hints: node, then zone, then the rest", Options{Topology: TopologyHints, LocalZone: "a", LocalNode: "n1"}, threeZones(true), []string{
			"p0 /a/ w1: 10.0.0.1", "p1 /a/ w1: 10.0.0.2", "p2 /b/ w1: 10.0.1.1", "p2 /c/ w1: 10.0.2.1"}},
		{"hints: node level empty: zone at 0", Options{Topology: TopologyHints, LocalZone: "b", LocalNode: "n9"}, threeZones(true), []string{
			"p0 /b/ w1: 10.0.1.1", "p1 /a/ w2: 10.0.0.1 10.0.0.2", "p1 /c/ w1: 10.0.2.1"}},
		{"hints: none for the local zone: one level", Options{Topology: TopologyHints, LocalZone: "z"}, threeZones(true), []string{
			"p0 /a/ w2: 10.0.0.1 10.0.0.2", "p0 /b/ w1: 10.0.1.1", "p0 /c/ w1: 10.0.2.1"}},
		{"hints: an endpoint without hints: no preference (kube-proxy's rule)", Options{Topology: TopologyHints, LocalZone: "a"},
			slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080),
				ep("10.0.0.1", zone("a"), hint("a")), ep("10.0.1.1", zone("b"))), []string{
				"p0 /a/ w1: 10.0.0.1", "p0 /b/ w1: 10.0.1.1"}},
		{"hints: a not-ready endpoint without hints does not count", Options{Topology: TopologyHints, LocalZone: "a", NotReady: NotReadyUnhealthy},
			slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080),
				ep("10.0.0.1", zone("a"), hint("a")), ep("10.0.1.1", zone("b"), hint("b")), ep("10.0.1.2", zone("b"), notReady())), []string{
				"p0 /a/ w1: 10.0.0.1", "p1 /b/ w2: 10.0.1.1 10.0.1.2"}},
		{"fixed region", Options{Region: "eu"}, threeZones(false), []string{
			"p0 eu/a/ w2: 10.0.0.1 10.0.0.2", "p0 eu/b/ w1: 10.0.1.1", "p0 eu/c/ w1: 10.0.2.1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := New(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := r.Service(web, []*discoveryv1.EndpointSlice{tc.slice})
			assertValid(t, got)
			if l := layout(got[0].CLA()); !slices.Equal(l, tc.want) {
				t.Errorf("layout:\n  %s\nwant:\n  %s", strings.Join(l, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

func assertValid(t *testing.T, clusters []Cluster) {
	t.Helper()
	if len(clusters) == 0 {
		t.Fatal("no cluster rendered")
	}
	for _, c := range clusters {
		if err := c.CLA().ValidateAll(); err != nil {
			t.Errorf("%s: %v", c.Name, err)
		}
	}
}

// Region and sub-zone come from the endpoint's Node; a Node without a
// region label leaves the fixed one. A change of Node or local zone is
// reported, so the caller renders again, and shows in the next render.
func TestNodesAndLocal(t *testing.T) {
	r, _ := New(Options{Region: "fallback", Topology: TopologyZone})
	if !r.SetNode("n1", &NodeTopology{Region: "eu", SubZone: "rack1"}) || !r.SetNode("n3", &NodeTopology{SubZone: "rack9"}) {
		t.Fatal("new Nodes reported as no change")
	}
	if r.SetNode("n1", &NodeTopology{Region: "eu", SubZone: "rack1"}) || r.SetNode("gone", nil) {
		t.Error("no change reported as a change")
	}
	got, _ := r.Service(web, []*discoveryv1.EndpointSlice{threeZones(false)})
	want := []string{
		"p0 eu/a/rack1 w1: 10.0.0.1", "p0 fallback/a/ w1: 10.0.0.2", "p0 fallback/b/rack9 w1: 10.0.1.1", "p0 fallback/c/ w1: 10.0.2.1"}
	if l := layout(got[0].CLA()); !slices.Equal(l, want) {
		t.Errorf("layout:\n  %s\nwant:\n  %s", strings.Join(l, "\n  "), strings.Join(want, "\n  "))
	}
	if !r.SetLocal("c", "") || r.SetLocal("c", "") {
		t.Error("SetLocal: change not reported, or no change reported")
	}
	got, _ = r.Service(web, []*discoveryv1.EndpointSlice{threeZones(false)})
	if l := layout(got[0].CLA()); l[0] != "p0 fallback/c/ w1: 10.0.2.1" || !strings.HasPrefix(l[1], "p1 ") {
		t.Errorf("after SetLocal(c): %v", l)
	}
}

func info(ann map[string]string, ports ...ServicePort) *ServiceInfo {
	return &ServiceInfo{Annotations: ann, Ports: ports}
}

// The Service's annotations: health-check port (number, or a name resolved
// in each slice) and hostname on every endpoint, the overprovisioning
// factor as the CLA policy, the topology mode overriding the flag. A bad
// value is reported and left out; the Service is rendered without it.
func TestServiceAnnotations(t *testing.T) {
	r, _ := New(Options{LocalZone: "b"})
	changed, skips := r.SetService(web, info(map[string]string{
		AnnotationHealthCheckPort:        "health",
		AnnotationHealthCheckHostname:    "web.example",
		AnnotationOverprovisioningFactor: "200",
		AnnotationTopology:               "zone",
		"other.io/ignored":               "x",
	}))
	if !changed || len(skips) != 0 {
		t.Fatalf("SetService = %v, %+v", changed, skips)
	}
	a := slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080), port("health", 9000),
		ep("10.0.0.1", zone("a")))
	b := slice("web-b", discoveryv1.AddressTypeIPv4, port("http", 8080), port("health", 9001),
		ep("10.0.1.1", zone("b")))
	got, _ := r.Service(web, []*discoveryv1.EndpointSlice{a, b})
	assertValid(t, got)
	http := got[slices.IndexFunc(got, func(c Cluster) bool { return c.Name == "default/web/http" })].CLA()
	if f := http.GetPolicy().GetOverprovisioningFactor().GetValue(); f != 200 {
		t.Errorf("overprovisioning factor %d, want 200", f)
	}
	if l := layout(http); !slices.Equal(l, []string{"p0 /b/ w1: 10.0.1.1", "p1 /a/ w1: 10.0.0.1"}) {
		t.Errorf("topology annotation not followed: %v", l)
	}
	for _, l := range http.Endpoints {
		for _, lb := range l.LbEndpoints {
			hc := lb.GetEndpoint().GetHealthCheckConfig()
			wantPort := map[string]uint32{"10.0.0.1": 9000, "10.0.1.1": 9001}[lb.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()]
			if hc.GetPortValue() != wantPort || hc.GetHostname() != "web.example" {
				t.Errorf("health check config %v, want port %d hostname web.example", hc, wantPort)
			}
		}
	}

	// Same settings: no change. Bad values: reported, left out, the
	// Service still rendered.
	if changed, _ := r.SetService(web, info(map[string]string{
		AnnotationHealthCheckPort: "health", AnnotationHealthCheckHostname: "web.example",
		AnnotationOverprovisioningFactor: "200", AnnotationTopology: "zone"})); changed {
		t.Error("the same settings reported as a change")
	}
	changed, skips = r.SetService(web, info(map[string]string{
		AnnotationHealthCheckPort:             "70000",
		AnnotationOverprovisioningFactor:      "1.4",
		AnnotationTopology:                    "nearest",
		AnnotationPrefix + "helth-check-port": "80",
		AnnotationHealthCheckHostname:         "ok.example",
	}))
	if !changed || len(skips) != 4 {
		t.Fatalf("SetService with 4 bad annotations = %v, %+v", changed, skips)
	}
	for _, s := range skips {
		if s.Reason != ReasonInvalidAnnotation || s.Object != "default/web" || !strings.Contains(s.Detail, "ignored") {
			t.Errorf("skip %+v", s)
		}
	}
	got, _ = r.Service(web, []*discoveryv1.EndpointSlice{a, b})
	assertValid(t, got)
	http = got[slices.IndexFunc(got, func(c Cluster) bool { return c.Name == "default/web/http" })].CLA()
	if http.Policy != nil || len(http.Endpoints) != 2 || http.Endpoints[0].Priority != 0 || http.Endpoints[1].Priority != 0 {
		t.Errorf("bad annotations not left out: %v", layout(http))
	}
	if hc := http.Endpoints[0].LbEndpoints[0].GetEndpoint().GetHealthCheckConfig(); hc.GetPortValue() != 0 || hc.GetHostname() != "ok.example" {
		t.Errorf("health check config %v: want the good hostname only", hc)
	}
}

// A Service's owner cannot inflate every endpoint of its files through
// the health-check host name (the API server allows 256 KiB of
// annotations): only a DNS name is taken, and the skip's detail repeats
// the start of the value only.
func TestHealthCheckHostnameBounded(t *testing.T) {
	r, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	web := ServiceKey{Namespace: "default", Name: "web"}
	for _, value := range []string{
		strings.Repeat("\x01", 200<<10), // control characters, no whitespace
		strings.Repeat("a", 254),        // past 253 bytes
		"web.example/../x", "web example", "-web.example",
	} {
		// From a good value, so that the settings change (an unchanged
		// Service reports nothing again).
		r.SetService(web, &ServiceInfo{Annotations: map[string]string{AnnotationHealthCheckHostname: "good.example"}})
		_, skips := r.SetService(web, &ServiceInfo{Annotations: map[string]string{AnnotationHealthCheckHostname: value}})
		if len(skips) != 1 || skips[0].Reason != ReasonInvalidAnnotation || len(skips[0].Detail) > 1024 {
			t.Errorf("%.20q...: skips %+v; want one invalid-annotation skip, its detail bounded", value, skips)
		}
	}
	for _, value := range []string{"web.example", "Web.Example.COM", strings.Repeat("a", 63) + ".example"} {
		if _, skips := r.SetService(web, &ServiceInfo{Annotations: map[string]string{AnnotationHealthCheckHostname: value}}); len(skips) != 0 {
			t.Errorf("%q refused: %+v", value, skips)
		}
	}
}

// The Service port's number is there for the name template; when it
// changes, the cluster of the old name is emptied.
func TestPortNumberInTemplate(t *testing.T) {
	r, err := New(Options{ClusterNameTemplate: "{{.Service}}-{{.PortNumber}}"})
	if err != nil {
		t.Fatal(err)
	}
	s := slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080), ep("10.0.0.1"))
	r.SetService(web, info(nil, ServicePort{Name: "http", Port: 80, Protocol: "TCP"}))
	got, _ := r.Service(web, []*discoveryv1.EndpointSlice{s})
	if len(got) != 1 || got[0].Name != "web-80" {
		t.Fatalf("clusters %v, want web-80", names(got))
	}
	if changed, _ := r.SetService(web, info(nil, ServicePort{Name: "http", Port: 81, Protocol: "TCP"})); !changed {
		t.Fatal("a new port number is no change")
	}
	got, _ = r.Service(web, []*discoveryv1.EndpointSlice{s})
	if n := names(got); !slices.Equal(n, []string{"web-80", "web-81"}) || len(got[0].CLA().Endpoints) != 0 {
		t.Errorf("clusters %v (first %v): want web-80 emptied and web-81", n, got[0].CLA())
	}
}

// Without the Service object the port number is unknown: the port waits
// rather than being published under a name with 0 in it (reported once
// while it waits), and a listed cluster must then have a name of its own.
func TestPortNumberUnknown(t *testing.T) {
	r, _ := New(Options{ClusterNameTemplate: "{{.Service}}-{{.PortNumber}}"})
	s := slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080), ep("10.0.0.1"))
	got, skips := r.Service(web, []*discoveryv1.EndpointSlice{s})
	if len(got) != 0 || len(skips) != 1 || skips[0].Reason != ReasonNoServicePort || skips[0].Object != "default/web" ||
		!strings.Contains(skips[0].Detail, "no Service object") {
		t.Fatalf("Service not read yet: clusters %v, skips %v; want none and one no-service-port skip", names(got), skips)
	}
	s2 := slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080), ep("10.0.0.2"))
	if got, skips := r.Service(web, []*discoveryv1.EndpointSlice{s2}); len(got) != 0 || len(skips) != 0 {
		t.Fatalf("still no Service: clusters %v, skips %v; want none, the wait was reported", names(got), skips)
	}
	r.SetService(web, info(nil, ServicePort{Name: "http", Port: 80}))
	if got, _ := r.Service(web, []*discoveryv1.EndpointSlice{s}); !slices.Equal(names(got), []string{"web-80"}) {
		t.Fatalf("clusters %v, want web-80", names(got))
	}
	r.SetService(web, nil) // the Service deleted, its slices not yet
	got, skips = r.Service(web, []*discoveryv1.EndpointSlice{s})
	if !slices.Equal(names(got), []string{"web-80"}) || len(got[0].CLA().Endpoints) != 0 {
		t.Errorf("clusters %v: want web-80 emptied and no web-0", names(got))
	}
	if len(skips) != 0 {
		t.Errorf("skips %v: a deleted Service's clusters are emptied, nothing to report", skips)
	}
	// A Service object without the slices' port name: reported once too.
	r.SetService(web, info(nil, ServicePort{Name: "https", Port: 443}))
	if _, skips := r.Service(web, []*discoveryv1.EndpointSlice{s}); len(skips) != 1 || !strings.Contains(skips[0].Detail, "no TCP port") {
		t.Errorf("skips %v: want one for the port the Service lacks", skips)
	}
	if _, err := New(Options{ClusterNameTemplate: "{{.Service}}-{{.PortNumber}}",
		Clusters: []ClusterSpec{{Service: web, Port: "http"}}}); err == nil || !strings.Contains(err.Error(), "give the cluster a name") {
		t.Errorf("a listed cluster named by .PortNumber: %v", err)
	}
}

// A stale copy of an ip:port in another slice, not published, does not
// decide whether the hints are followed.
func TestHintsIgnoreUnpublishedCopies(t *testing.T) {
	r, _ := New(Options{Topology: TopologyHints, LocalZone: "a"})
	a := slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080),
		ep("10.0.0.1", zone("a"), hint("a")), ep("10.0.1.1", zone("b"), hint("b")))
	b := slice("web-b", discoveryv1.AddressTypeIPv4, port("http", 8080), ep("10.0.1.1", zone("c")))
	got, _ := r.Service(web, []*discoveryv1.EndpointSlice{a, b})
	if l := layout(got[0].CLA()); len(l) != 2 || !strings.HasPrefix(l[0], "p0 /a/") || !strings.HasPrefix(l[1], "p1 ") {
		t.Errorf("layout %v: want zone a at p0, the rest at p1", l)
	}
}

// A health-check port name that a slice does not have is reported for
// that slice; its endpoints get no health-check port.
func TestHealthCheckPortNameMissing(t *testing.T) {
	r, _ := New(Options{})
	r.SetService(web, info(map[string]string{AnnotationHealthCheckPort: "health"}))
	s := slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080), ep("10.0.0.1"))
	got, skips := r.Service(web, []*discoveryv1.EndpointSlice{s})
	if len(skips) != 1 || skips[0].Reason != ReasonInvalidAnnotation || skips[0].Object != "default/web-a" {
		t.Errorf("skips %+v: want one invalid-annotation for the slice", skips)
	}
	if hc := got[0].CLA().Endpoints[0].LbEndpoints[0].GetEndpoint().GetHealthCheckConfig(); hc != nil {
		t.Errorf("health check config %v, want none", hc)
	}
}

func names(cs []Cluster) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

// --endpoint-metadata: pod, namespace, node and zone under the key.
func TestEndpointMetadata(t *testing.T) {
	r, _ := New(Options{EndpointMetadata: true})
	s := slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080),
		ep("10.0.0.1", zone("a"), node("n1"), pod("web-1")), ep("10.0.0.2"))
	got, _ := r.Service(web, []*discoveryv1.EndpointSlice{s})
	assertValid(t, got)
	var md []string
	for _, l := range got[0].CLA().Endpoints {
		for _, lb := range l.LbEndpoints {
			b, _ := protojson.Marshal(lb.GetMetadata().GetFilterMetadata()[DefaultMetadataKey])
			var v map[string]string
			if err := json.Unmarshal(b, &v); err != nil {
				t.Fatal(err)
			}
			md = append(md, fmt.Sprint(v))
		}
	}
	// The pod's namespace is the slice's when the reference leaves it out.
	want := []string{"map[]", "map[namespace:default node:n1 pod:web-1 zone:a]"}
	if !slices.Equal(md, want) {
		t.Errorf("metadata %v, want %v", md, want)
	}
}

// A golden CLA per mode, as JSON: the whole message, for review.
func TestTopologyGolden(t *testing.T) {
	r, _ := New(Options{Topology: TopologyHints, LocalZone: "a", LocalNode: "n1", Region: "eu", EndpointMetadata: true})
	r.SetNode("n3", &NodeTopology{Region: "us", SubZone: "rack3"})
	r.SetService(web, info(map[string]string{AnnotationOverprovisioningFactor: "150", AnnotationHealthCheckPort: "9901"}))
	got, _ := r.Service(web, []*discoveryv1.EndpointSlice{threeZones(true)})
	assertValid(t, got)
	js, err := protojson.Marshal(got[0].CLA())
	if err != nil {
		t.Fatal(err)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, js, "", "  "); err != nil {
		t.Fatal(err)
	}
	pretty.WriteByte('\n')
	path := filepath.Join("testdata", "topology-hints.json")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	// protojson's spacing is unstable by design: compare compacted.
	var a, b bytes.Buffer
	if err := json.Compact(&a, want); err != nil {
		t.Fatal(err)
	}
	if err := json.Compact(&b, pretty.Bytes()); err != nil {
		t.Fatal(err)
	}
	if a.String() != b.String() {
		t.Errorf("%s differs (go test -update rewrites it); got:\n%s", path, pretty.String())
	}
}
