package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/edsync/edsync/test/e2e/harness"
	"github.com/edsync/edsync/writer"
)

// sourcePlacement lists a CLA's endpoints as "ip p<priority> <region>",
// sorted.
func sourcePlacement(cla *endpointv3.ClusterLoadAssignment) []string {
	var out []string
	for _, l := range cla.Endpoints {
		for _, lb := range l.LbEndpoints {
			out = append(out, fmt.Sprintf("%s p%d %s", lb.GetEndpoint().GetAddress().GetSocketAddress().GetAddress(),
				l.Priority, l.GetLocality().GetRegion()))
		}
	}
	slices.Sort(out)
	return out
}

// TestTwoClusters runs edsync on two real control planes at once, the
// config file naming both as sources: the same Service in both is one
// cluster, each side at its priority and in its region; with the preferred
// side scaled to zero the other is priority 0; with one API server stopped
// the other's changes keep flowing, and the stopped one's endpoints stay
// until --source-stale-after, then leave. With --mcs, a ServiceImport's
// slice in one cluster is placed as the source its source-cluster names.
func TestTwoClusters(t *testing.T) {
	ctx := t.Context()
	binDir, err := harness.Binaries()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	startCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	west, err := harness.Start(startCtx, harness.Options{BinDir: binDir, Edsync: cluster.Edsync})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		west.StopProcesses()
		if !t.Failed() {
			os.RemoveAll(west.Dir)
		}
	})
	t.Logf("second control plane up in %v (%s)", time.Since(start).Round(time.Millisecond), west.Dir)

	const ns, svc, node = "mc", "web", "node-mc"
	labels := map[string]string{"app": "web"}
	pods := map[*harness.Cluster]string{cluster: "10.20.0.1", west: "10.30.0.1"}
	var kubeconfigs []string
	for _, c := range []*harness.Cluster{cluster, west} {
		if err := c.CreateNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
		if err := c.CreateNode(ctx, node, "zone-a"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.CreateService(ctx, ns, svc, labels, harness.TCPPort("http", 80, intstr.FromInt32(8080))); err != nil {
			t.Fatal(err)
		}
		if _, err := c.CreatePod(ctx, harness.Pod{Namespace: ns, Name: "web-1", Labels: labels, Node: node}); err != nil {
			t.Fatal(err)
		}
		if err := c.SetPodStatus(ctx, ns, "web-1", pods[c], true); err != nil {
			t.Fatal(err)
		}
		kc, err := c.EdsyncKubeconfig(ctx)
		if err != nil {
			t.Fatal(err)
		}
		kubeconfigs = append(kubeconfigs, kc)
	}

	// A ServiceImport's slice in east, as an MCS implementation writes it:
	// endpoints of west's, which --mcs places as west's.
	imported := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-imported-west", Labels: map[string]string{
			"multicluster.kubernetes.io/service-name": svc, "multicluster.kubernetes.io/source-cluster": "west",
			discoveryv1.LabelManagedBy: "mcs-controller.example",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.30.0.7"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
	}
	if _, err := cluster.Client.DiscoveryV1().EndpointSlices(ns).Create(ctx, imported, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	out := t.TempDir()
	config := filepath.Join(t.TempDir(), "edsync.yaml")
	if err := os.WriteFile(config, fmt.Appendf(nil, `namespace: [%s]
sources:
- {name: east, kubeconfig: %s, priority: 0, region: east}
- {name: west, kubeconfig: %s, priority: 1, region: west}
`, ns, kubeconfigs[0], kubeconfigs[1]), 0o644); err != nil {
		t.Fatal(err)
	}
	files := harness.WatchDir(t, out)
	e := cluster.StartEdsyncArgs(t, "--config", config, "--output-dir", out, "--debounce", "50ms", "--mcs",
		"--source-stale-after", "10s", "--sync-timeout", "30s")
	const name = ns + "/" + svc + "/http"
	file := edsFile(t, name, writer.FormatJSON)
	placed := func(step string, want ...string) {
		t.Helper()
		files.WaitFor(t, file, name, settle, func(cla *endpointv3.ClusterLoadAssignment) error {
			if got := sourcePlacement(cla); !slices.Equal(got, want) {
				return fmt.Errorf("%s: want %v, got %v", step, want, got)
			}
			return nil
		})
	}
	placed("both sides, and the imported slice as west's", "10.20.0.1 p0 east", "10.30.0.1 p1 west", "10.30.0.7 p1 west")

	// The preferred side scaled to zero: the other is priority 0.
	if err := cluster.SetPodStatus(ctx, ns, "web-1", "10.20.0.1", false); err != nil {
		t.Fatal(err)
	}
	placed("east at zero", "10.30.0.1 p0 west", "10.30.0.7 p0 west")
	if err := cluster.SetPodStatus(ctx, ns, "web-1", "10.20.0.1", true); err != nil {
		t.Fatal(err)
	}
	placed("east back", "10.20.0.1 p0 east", "10.30.0.1 p1 west", "10.30.0.7 p1 west")

	// West's API server stops: east's changes still flow, and west's
	// endpoint stays until it has been unreachable for 10 s, then leaves.
	if err := west.APIServer.Stop(10 * time.Second); err != nil {
		t.Logf("stopping west's API server: %v", err)
	}
	if _, err := cluster.CreatePod(ctx, harness.Pod{Namespace: ns, Name: "web-2", Labels: labels, Node: node}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.SetPodStatus(ctx, ns, "web-2", "10.20.0.2", true); err != nil {
		t.Fatal(err)
	}
	placed("east's change, west's endpoint kept", "10.20.0.1 p0 east", "10.20.0.2 p0 east", "10.30.0.1 p1 west", "10.30.0.7 p1 west")
	// The imported slice was read from east, which still answers: it stays.
	placed("west stale, removed", "10.20.0.1 p0 east", "10.20.0.2 p0 east", "10.30.0.7 p1 west")

	addr := e.HTTPAddr(t)
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "source east: synced") ||
		!strings.Contains(string(body), "source west: unreachable since") || !strings.Contains(string(body), "endpoints removed") {
		t.Errorf("/readyz: %d %q", resp.StatusCode, body)
	}
	if v := metric(t, "http://"+addr, `edsync_source_stale{source="west"}`); v != 1 {
		t.Errorf(`edsync_source_stale{source="west"} = %v, want 1`, v)
	}
}
