package e2e

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/edsync/edsync/test/e2e/harness"
	"github.com/edsync/edsync/writer"
)

// TestCDSFollowsServices: with --cds-file, a Service created after edsync
// started appears in the CDS file once its EDS file is there (the folder's
// renames say in which order), with HTTP/2 for its kubernetes.io/h2c port;
// deleting it takes its cluster out of the CDS file first, and only then
// empties its EDS file.
func TestCDSFollowsServices(t *testing.T) {
	ctx := t.Context()
	c := cluster
	const ns, svc, node = "cds", "grpc", "node-cds"
	if err := c.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateNode(ctx, node, "zone-a"); err != nil {
		t.Fatal(err)
	}

	out := t.TempDir()
	const cdsName = "cds+clusters.json"
	files := harness.WatchDir(t, out)
	e := c.StartEdsync(t, "--output-dir", out, "--namespace", ns, "--cds-file", out+"/"+cdsName,
		"--cds-debounce", "200ms", "--debounce", "50ms")

	// waitCDS waits for a rename of the CDS file, from index from on, whose
	// clusters satisfy ok; it returns them and the index after it.
	waitCDS := func(what string, from int, ok func(map[string]*clusterv3.Cluster) bool) (map[string]*clusterv3.Cluster, int) {
		t.Helper()
		for {
			a, next, arrived := files.Next(cdsName, from, settle)
			if !arrived {
				t.Fatalf("%s: no such CDS file after %v\n%s", what, settle, e.Stderr())
			}
			clusters, err := harness.ParseCDS(a.Data)
			if err != nil {
				t.Fatalf("%s: %s is not a file Envoy would accept: %v\n%s", what, cdsName, err, a.Data)
			}
			if ok(clusters) {
				return clusters, next
			}
			from = next
		}
	}
	// The first CDS file holds nothing: the namespace has no Service yet.
	_, from := waitCDS("first CDS file", 0, func(m map[string]*clusterv3.Cluster) bool { return len(m) == 0 })

	labels := map[string]string{"app": svc}
	port := harness.TCPPort("grpc", 9090, intstr.FromInt32(9090))
	port.AppProtocol = ptr.To("kubernetes.io/h2c")
	if _, err := c.CreateService(ctx, ns, svc, labels, port); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreatePod(ctx, harness.Pod{Namespace: ns, Name: "grpc-1", Labels: labels, Node: node}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetPodStatus(ctx, ns, "grpc-1", "10.9.0.1", true); err != nil {
		t.Fatal(err)
	}
	const name = ns + "/" + svc + "/grpc"
	file := edsFile(t, name, writer.FormatJSON)
	clusters, added := waitCDS("the new Service's cluster", from, func(m map[string]*clusterv3.Cluster) bool { return m[name] != nil })
	// The EDS file arrived before the CDS file that names it, with the
	// endpoint.
	edsBefore := -1
	for i, a := range files.Arrivals()[:added] {
		if a.Name == file {
			edsBefore = i
		}
	}
	if edsBefore < 0 {
		t.Fatalf("the CDS file named %s before its EDS file %s arrived", name, file)
	}
	cla, err := harness.ParseEDS(files.Arrivals()[edsBefore].Data, name)
	if err != nil || len(harness.Endpoints(cla)) != 1 {
		t.Errorf("the EDS file before the CDS file: %v, %v", harness.Endpoints(cla), err)
	}
	cl := clusters[name]
	if p := cl.GetEdsClusterConfig().GetEdsConfig().GetPathConfigSource().GetPath(); p != out+"/"+file {
		t.Errorf("cluster %s reads %s, want %s", name, p, out+"/"+file)
	}
	var opts httpv3.HttpProtocolOptions
	if a := cl.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]; a == nil || a.UnmarshalTo(&opts) != nil ||
		opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		t.Errorf("cluster %s of an h2c port has no HTTP/2 options: %v", name, cl)
	}

	// Delete the Service and, as the garbage collector (not run here)
	// would, its slices.
	if err := c.Client.CoreV1().Services(ns).Delete(ctx, svc, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Client.DiscoveryV1().EndpointSlices(ns).DeleteCollection(ctx, metav1.DeleteOptions{},
		metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc}); err != nil {
		t.Fatal(err)
	}
	_, removed := waitCDS("the cluster removed", added, func(m map[string]*clusterv3.Cluster) bool { return m[name] == nil })
	files.WaitEndpoints(t, file, name, settle) // emptied
	for i, a := range files.Arrivals() {
		if a.Name != file || i < added {
			continue
		}
		cla, err := harness.ParseEDS(a.Data, name)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(harness.Endpoints(cla)); n == 0 && i < removed {
			t.Errorf("the EDS file was emptied (rename %d) before the CDS file dropped its cluster (rename %d)", i, removed-1)
		}
	}
	t.Logf("the CDS file was renamed into place %d times", files.Renames(cdsName))
}
