package main

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/edsync/edsync/render"

	"github.com/edsync/edsync/internal/syncbuf"
)

// The "web" Service of the topology tests: one endpoint per zone, each on
// its own Node, with an http and an admin port.
const topoSlice = `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080}, {name: admin, port: 9901}]
endpoints:
- {addresses: [10.0.1.1], conditions: {ready: true}, zone: z1, nodeName: n1, targetRef: {kind: Pod, namespace: shop, name: web-a}}
- {addresses: [10.0.2.1], conditions: {ready: true}, zone: z2, nodeName: n2, targetRef: {kind: Pod, namespace: shop, name: web-b}}
`

func topoNodes(localZone string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: NodeList
items:
- metadata: {name: n1, labels: {topology.kubernetes.io/region: r1, topology.kubernetes.io/zone: %s, topology.istio.io/subzone: rack-1}}
- metadata: {name: n2, labels: {topology.kubernetes.io/region: r1, topology.kubernetes.io/zone: z2}}
`, localZone)
}

func topoService(annotations string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
  annotations: {%s}
spec:
  ports: [{name: http, port: 80}, {name: admin, port: 9901}]
`, annotations)
}

// placement describes where each endpoint of a CLA sits:
// "ip priority region/zone/sub-zone weight", in file order.
func placement(cla *endpointv3.ClusterLoadAssignment) []string {
	var out []string
	for _, l := range cla.Endpoints {
		for _, lb := range l.LbEndpoints {
			loc := l.GetLocality()
			out = append(out, fmt.Sprintf("%s p%d %s/%s/%s w%d", lb.GetEndpoint().GetAddress().GetSocketAddress().GetAddress(),
				l.Priority, loc.GetRegion(), loc.GetZone(), loc.GetSubZone(), l.GetLoadBalancingWeight().GetValue()))
		}
	}
	slices.Sort(out)
	return out
}

// The folder's Nodes and Service reach render: the local zone from the
// --node-name Node, the localities' region and sub-zone from every Node,
// the Service's annotations; and the files follow when they change.
func TestPipelineTopologyFromTheFolder(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	replaceFile(t, filepath.Join(in, "web.yaml"), topoSlice)
	replaceFile(t, filepath.Join(in, "nodes.yaml"), topoNodes("z1"))
	replaceFile(t, filepath.Join(in, "service.yaml"), topoService(`edsync.io/overprovisioning-factor: "200", edsync.io/health-check-port: admin`))
	cfg := configForTest(t, "--from-dir", in, "--output-dir", out, "--debounce", "1ms", "--max-delay", "10ms",
		"--topology", "zone", "--node-name", "n1", "--node-topology", "--watch-services", "--endpoint-metadata")
	tp := startPipeline(t, cfg)
	file := filepath.Join(out, "shop_web_http.json")
	tp.waitFlush(t, "shop/web/http")

	cla := readAsEnvoy(t, file)
	want := []string{"10.0.1.1 p0 r1/z1/rack-1 w1", "10.0.2.1 p1 r1/z2/ w1"}
	if got := placement(cla); !slices.Equal(got, want) {
		t.Errorf("first flush: %q, want %q", got, want)
	}
	if got := cla.GetPolicy().GetOverprovisioningFactor().GetValue(); got != 200 {
		t.Errorf("overprovisioning factor %d, want 200 (the annotation)", got)
	}
	lb := cla.Endpoints[0].LbEndpoints[0]
	if got := lb.GetEndpoint().GetHealthCheckConfig().GetPortValue(); got != 9901 {
		t.Errorf("health-check port %d, want 9901 (the admin port, by the annotation)", got)
	}
	if md := lb.GetMetadata().GetFilterMetadata()[render.DefaultMetadataKey].GetFields(); md["pod"].GetStringValue() != "web-a" ||
		md["node"].GetStringValue() != "n1" {
		t.Errorf("endpoint metadata %v, want pod web-a on node n1", md)
	}

	t.Run("the local Node moves zone", func(t *testing.T) {
		replaceFile(t, filepath.Join(in, "nodes.yaml"), topoNodes("z2"))
		tp.waitFlush(t, "shop/web/http")
		want := []string{"10.0.1.1 p1 r1/z1/rack-1 w1", "10.0.2.1 p0 r1/z2/ w1"}
		if got := placement(readAsEnvoy(t, file)); !slices.Equal(got, want) {
			t.Errorf("%q, want %q", got, want)
		}
	})
	t.Run("a bad annotation is counted and left out", func(t *testing.T) {
		const skips = `edsync_skipped_objects_total{reason="` + render.ReasonInvalidAnnotation + `"}`
		before := scrape(t, tp.m)[skips]
		replaceFile(t, filepath.Join(in, "service.yaml"), topoService(`edsync.io/overprovisioning-factor: lots`))
		tp.waitFlush(t, "shop/web/http")
		cla := readAsEnvoy(t, file)
		if cla.GetPolicy().GetOverprovisioningFactor() != nil {
			t.Errorf("policy %v: the bad factor was kept", cla.GetPolicy())
		}
		if got := len(cla.Endpoints); got != 2 {
			t.Errorf("%d localities: the Service must still be published", got)
		}
		if got := scrape(t, tp.m)[skips] - before; got != 1 {
			t.Errorf("invalid-annotation skips +%v, want +1", got)
		}
	})
	t.Run("the Service's topology annotation wins", func(t *testing.T) {
		replaceFile(t, filepath.Join(in, "service.yaml"), topoService(`edsync.io/topology: "off"`))
		tp.waitFlush(t, "shop/web/http")
		want := []string{"10.0.1.1 p0 r1/z1/rack-1 w1", "10.0.2.1 p0 r1/z2/ w1"}
		if got := placement(readAsEnvoy(t, file)); !slices.Equal(got, want) {
			t.Errorf("%q, want %q", got, want)
		}
	})
}

// A config reload makes a new renderer: it is told the Services, Nodes and
// local zone the old one knew before its full flush, so the files keep
// them; and the reload's own render options apply.
func TestReloadKeepsServicesAndNodes(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	replaceFile(t, filepath.Join(in, "web.yaml"), topoSlice)
	replaceFile(t, filepath.Join(in, "nodes.yaml"), topoNodes("z1"))
	replaceFile(t, filepath.Join(in, "service.yaml"), topoService(`edsync.io/overprovisioning-factor: "200"`))
	args := []string{"--from-dir", in, "--output-dir", out, "--debounce", "1ms", "--max-delay", "10ms",
		"--topology", "zone", "--node-name", "n1", "--node-topology", "--watch-services"}
	tp := startPipeline(t, configForTest(t, args...))
	file := filepath.Join(out, "shop_web_http.json")
	tp.waitFlush(t, "shop/web/http")

	next := configForTest(t, append(args, "--region", "r9", "--topology", "hints")...)
	if err := apply(tp.p, next, new(slog.LevelVar)); err != nil {
		t.Fatal(err)
	}
	tp.waitReloadFlush(t)
	cla := readAsEnvoy(t, file)
	// No hints on the slice: hints mode gives no preference; the Nodes'
	// region and sub-zone and the Service's factor stay.
	want := []string{"10.0.1.1 p0 r1/z1/rack-1 w1", "10.0.2.1 p0 r1/z2/ w1"}
	if got := placement(cla); !slices.Equal(got, want) {
		t.Errorf("after the reload: %q, want %q", got, want)
	}
	if got := cla.GetPolicy().GetOverprovisioningFactor().GetValue(); got != 200 {
		t.Errorf("after the reload: overprovisioning factor %d, want 200", got)
	}

	// And back to zone, with a fixed --local-zone that wins over the Node's.
	next = configForTest(t, append(args, "--local-zone", "z2")...)
	if err := apply(tp.p, next, new(slog.LevelVar)); err != nil {
		t.Fatal(err)
	}
	tp.waitReloadFlush(t)
	want = []string{"10.0.1.1 p1 r1/z1/rack-1 w1", "10.0.2.1 p0 r1/z2/ w1"}
	if got := placement(readAsEnvoy(t, file)); !slices.Equal(got, want) {
		t.Errorf("after the reload with --local-zone z2: %q, want %q", got, want)
	}
}

// waitReloadFlush waits for the full flush after a config reload.
func (tp *testPipeline) waitReloadFlush(t *testing.T) {
	t.Helper()
	for f := tp.nextFlush(t); !f.Reload; f = tp.nextFlush(t) {
	}
}

// Without the flags, the folder's Nodes and Services change nothing: the
// default output stays what it was.
func TestFolderNodesAndServicesIgnoredByDefault(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	replaceFile(t, filepath.Join(in, "web.yaml"), topoSlice)
	tp := startPipeline(t, configForTest(t, "--from-dir", in, "--output-dir", out))
	tp.waitFlush(t, "shop/web/http")
	plain := placement(readAsEnvoy(t, filepath.Join(out, "shop_web_http.json")))

	in2, out2 := t.TempDir(), t.TempDir()
	replaceFile(t, filepath.Join(in2, "web.yaml"), topoSlice)
	replaceFile(t, filepath.Join(in2, "nodes.yaml"), topoNodes("z1"))
	replaceFile(t, filepath.Join(in2, "service.yaml"), topoService(`edsync.io/overprovisioning-factor: "200"`))
	tp2 := startPipeline(t, configForTest(t, "--from-dir", in2, "--output-dir", out2))
	tp2.waitFlush(t, "shop/web/http")
	cla := readAsEnvoy(t, filepath.Join(out2, "shop_web_http.json"))
	if got := placement(cla); !slices.Equal(got, plain) || cla.GetPolicy() != nil {
		t.Errorf("with Nodes and a Service in the folder: %q, policy %v; want %q and none", got, cla.GetPolicy(), plain)
	}
}

// A --node-name whose Node is missing gives a clear warning and no
// preference, then the preference once the Node appears.
func TestMissingLocalNode(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	replaceFile(t, filepath.Join(in, "web.yaml"), topoSlice)
	cfg := configForTest(t, "--from-dir", in, "--output-dir", out, "--debounce", "1ms", "--max-delay", "10ms",
		"--topology", "zone", "--node-name", "n1")
	var logs syncbuf.Buffer
	tp := startPipelineLog(t, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	file := filepath.Join(out, "shop_web_http.json")
	tp.waitFlush(t, "shop/web/http")
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "Node is not found") {
		t.Errorf("no warning about the missing Node in:\n%s", logs.String())
	}
	want := []string{"10.0.1.1 p0 /z1/ w1", "10.0.2.1 p0 /z2/ w1"}
	if got := placement(readAsEnvoy(t, file)); !slices.Equal(got, want) {
		t.Errorf("without the Node: %q, want %q (no preference)", got, want)
	}

	// Without --node-topology the Node gives the local zone only.
	replaceFile(t, filepath.Join(in, "nodes.yaml"), topoNodes("z2"))
	tp.waitFlush(t, "shop/web/http")
	want = []string{"10.0.1.1 p1 /z1/ w1", "10.0.2.1 p0 /z2/ w1"}
	if got := placement(readAsEnvoy(t, file)); !slices.Equal(got, want) {
		t.Errorf("once the Node appears: %q, want %q", got, want)
	}
}

// The flags of the Node and Service informers take effect at restart; the
// render options of the Topology category are live.
func TestTopologyFlagsOnReload(t *testing.T) {
	base := []string{"--dry-run", "--node-name", "n1"}
	a := configForTest(t, base...)
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--topology", "zone", "--local-zone", "z1", "--region", "r", "--endpoint-metadata", "--endpoint-metadata-key", "k"}, nil},
		{[]string{"--node-name", "n2"}, []string{"node-name"}},
		{[]string{"--node-topology", "--subzone-label", "example.com/rack"}, []string{"node-topology", "subzone-label"}},
		{[]string{"--watch-services"}, []string{"watch-services"}},
	} {
		b := configForTest(t, append(slices.Clone(base), tc.args...)...)
		if got := restartOnly(a, b); !slices.Equal(got, tc.want) {
			t.Errorf("%q: restart-only changes %q, want %q", tc.args, got, tc.want)
		}
	}
}
