package pipeline

import (
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edsync/edsync/internal/syncbuf"
	"github.com/edsync/edsync/internal/testutil"
	"github.com/edsync/edsync/render"
	"github.com/edsync/edsync/watch"
)

// Shorter names for the shared fixtures.
var (
	topoSlice   = testutil.TopoSlice
	topoNodes   = testutil.TopoNodes
	topoService = testutil.TopoService
	placement   = testutil.Placement
)

// The folder's Nodes and Service reach render: the local zone from the
// --node-name Node, the localities' region and sub-zone from every Node,
// the Service's annotations; and the files follow when they change.
func TestPipelineTopologyFromTheFolder(t *testing.T) {
	f := newFolder(t)
	in, out := f.in, f.out
	replaceFile(t, filepath.Join(in, "web.yaml"), topoSlice)
	replaceFile(t, filepath.Join(in, "nodes.yaml"), topoNodes("z1"))
	replaceFile(t, filepath.Join(in, "service.yaml"), topoService(`edsync.io/overprovisioning-factor: "200", edsync.io/health-check-port: admin`))
	skips := &countSkips{}
	f.opts.Metrics = skips
	f.render = render.Options{Topology: render.TopologyZone, LocalNode: "n1", EndpointMetadata: true}
	f.watchServices, f.nodes = true, watch.NodeOptions{Name: "n1", All: true}
	tp := f.start(t)
	file := filepath.Join(out, "shop_web_http", "eds.json")
	tp.WaitCluster(t, "shop/web/http")

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
		tp.WaitCluster(t, "shop/web/http")
		want := []string{"10.0.1.1 p1 r1/z1/rack-1 w1", "10.0.2.1 p0 r1/z2/ w1"}
		if got := placement(readAsEnvoy(t, file)); !slices.Equal(got, want) {
			t.Errorf("%q, want %q", got, want)
		}
	})
	t.Run("a bad annotation is counted and left out", func(t *testing.T) {
		before := skips.get(render.ReasonInvalidAnnotation)
		replaceFile(t, filepath.Join(in, "service.yaml"), topoService(`edsync.io/overprovisioning-factor: lots`))
		tp.WaitCluster(t, "shop/web/http")
		cla := readAsEnvoy(t, file)
		if cla.GetPolicy().GetOverprovisioningFactor() != nil {
			t.Errorf("policy %v: the bad factor was kept", cla.GetPolicy())
		}
		if got := len(cla.Endpoints); got != 2 {
			t.Errorf("%d localities: the Service must still be published", got)
		}
		if got := skips.get(render.ReasonInvalidAnnotation) - before; got != 1 {
			t.Errorf("invalid-annotation skips +%v, want +1", got)
		}
	})
	t.Run("the Service's topology annotation wins", func(t *testing.T) {
		replaceFile(t, filepath.Join(in, "service.yaml"), topoService(`edsync.io/topology: "off"`))
		tp.WaitCluster(t, "shop/web/http")
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
	f := newFolder(t)
	in, out := f.in, f.out
	replaceFile(t, filepath.Join(in, "web.yaml"), topoSlice)
	replaceFile(t, filepath.Join(in, "nodes.yaml"), topoNodes("z1"))
	replaceFile(t, filepath.Join(in, "service.yaml"), topoService(`edsync.io/overprovisioning-factor: "200"`))
	f.render = render.Options{Topology: render.TopologyZone, LocalNode: "n1"}
	f.watchServices, f.nodes = true, watch.NodeOptions{Name: "n1", All: true}
	tp := f.start(t)
	file := filepath.Join(out, "shop_web_http", "eds.json")
	tp.WaitCluster(t, "shop/web/http")

	reconfigure := func(o render.Options, localZone string) {
		t.Helper()
		ren, err := render.New(o)
		if err != nil {
			t.Fatal(err)
		}
		tp.p.Reconfigure(Live{Renderer: ren, Debounce: time.Millisecond, MaxDelay: 10 * time.Millisecond, LocalZone: localZone})
		tp.waitReloadFlush(t)
	}
	reconfigure(render.Options{Topology: render.TopologyHints, LocalNode: "n1", Region: "r9"}, "")
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
	reconfigure(render.Options{Topology: render.TopologyZone, LocalNode: "n1", LocalZone: "z2"}, "z2")
	want = []string{"10.0.1.1 p1 r1/z1/rack-1 w1", "10.0.2.1 p0 r1/z2/ w1"}
	if got := placement(readAsEnvoy(t, file)); !slices.Equal(got, want) {
		t.Errorf("after the reload with --local-zone z2: %q, want %q", got, want)
	}
}

// waitReloadFlush waits for the full flush after a config reload.
func (tp *testPipeline) waitReloadFlush(t *testing.T) {
	t.Helper()
	for f := tp.Next(t); !f.Reload; f = tp.Next(t) {
	}
}

// A --node-name whose Node is missing gives a clear warning and no
// preference, then the preference once the Node appears.
func TestMissingLocalNode(t *testing.T) {
	f := newFolder(t)
	in, out := f.in, f.out
	replaceFile(t, filepath.Join(in, "web.yaml"), topoSlice)
	var logs syncbuf.Buffer
	f.opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	f.render = render.Options{Topology: render.TopologyZone, LocalNode: "n1"}
	f.nodes = watch.NodeOptions{Name: "n1"}
	tp := f.start(t)
	file := filepath.Join(out, "shop_web_http", "eds.json")
	tp.WaitCluster(t, "shop/web/http")
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "Node is not found") {
		t.Errorf("no warning about the missing Node in:\n%s", logs.String())
	}
	want := []string{"10.0.1.1 p0 /z1/ w1", "10.0.2.1 p0 /z2/ w1"}
	if got := placement(readAsEnvoy(t, file)); !slices.Equal(got, want) {
		t.Errorf("without the Node: %q, want %q (no preference)", got, want)
	}

	// Without --node-topology the Node gives the local zone only.
	replaceFile(t, filepath.Join(in, "nodes.yaml"), topoNodes("z2"))
	tp.WaitCluster(t, "shop/web/http")
	want = []string{"10.0.1.1 p1 /z1/ w1", "10.0.2.1 p0 /z2/ w1"}
	if got := placement(readAsEnvoy(t, file)); !slices.Equal(got, want) {
		t.Errorf("once the Node appears: %q, want %q", got, want)
	}
}
