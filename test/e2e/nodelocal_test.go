package e2e

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/edsync/edsync/test/e2e/harness"
	"github.com/edsync/edsync/writer"
)

// A Service's internalTrafficPolicy: Local, against the real control plane:
// the real EndpointSlice controller writes every Pod's endpoint with its
// Node, and each edsync (--node-name, --watch-services) publishes only its
// own Node's, none when its Node has none (kube-proxy's rule); the policy
// changed on the live Service to Cluster and back takes effect at once; a
// Service with the default policy is not touched.
func TestInternalTrafficPolicyLocal(t *testing.T) {
	ctx := t.Context()
	c := cluster
	const ns, prefix = "itp", "itp"
	if err := c.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateNodes(ctx, topoNodes(prefix)...); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "cache"}
	for _, name := range []string{"local", "wide"} {
		if _, err := c.CreateServiceSpec(ctx, harness.ServiceSpec{Namespace: ns, Name: name, Selector: labels,
			Ports: []corev1.ServicePort{harness.TCPPort("http", 80, intstr.FromInt32(topoPort))}}); err != nil {
			t.Fatal(err)
		}
	}
	setPolicy := func(p corev1.ServiceInternalTrafficPolicy) {
		t.Helper()
		svc, err := c.Client.CoreV1().Services(ns).Get(ctx, "local", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		svc.Spec.InternalTrafficPolicy = &p
		if _, err := c.Client.CoreV1().Services(ns).Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	setPolicy(corev1.ServiceInternalTrafficPolicyLocal)

	// cache-0 and cache-1 on a1, cache-2 on b1; nothing on c1.
	ip := func(i int) string { return fmt.Sprintf("10.63.0.%d", i+1) }
	place := func(i int, node string) harness.PodOn {
		return harness.PodOn{Name: fmt.Sprintf("cache-%d", i), Node: prefix + "-" + node, IP: ip(i)}
	}
	if err := c.CreatePodsOnNodes(ctx, ns, labels, place(0, "a1"), place(1, "a1"), place(2, "b1")); err != nil {
		t.Fatal(err)
	}

	type run struct {
		node  string
		files *harness.DirWatcher
	}
	var runs []run
	for _, node := range []string{"a1", "b1", "c1"} {
		out := t.TempDir()
		runs = append(runs, run{node: node, files: harness.WatchDir(t, out)})
		c.StartEdsync(t, "--output-dir", out, "--namespace", ns, "--watch-services", "--node-name", prefix+"-"+node)
	}
	all := []string{"P0 /zone-a/ w2: " + ip(0) + " " + ip(1), "P0 /zone-b/ w1: " + ip(2)}
	onNode := map[string][]string{
		"a1": {"P0 /zone-a/ w2: " + ip(0) + " " + ip(1)},
		"b1": {"P0 /zone-b/ w1: " + ip(2)},
		"c1": nil, // none: no fallback to other Nodes
	}
	expect := func(step string, local func(node string) []string) {
		t.Helper()
		for _, r := range runs {
			for svc, want := range map[string][]string{"local": local(r.node), "wide": all} {
				cl := ns + "/" + svc + "/http"
				r.files.WaitLayout(t, edsFile(t, cl, writer.FormatJSON), cl, settle, want...)
			}
		}
		t.Logf("%s: every file as expected", step)
	}
	expect("Local", func(node string) []string { return onNode[node] })
	setPolicy(corev1.ServiceInternalTrafficPolicyCluster)
	expect("changed to Cluster", func(string) []string { return all })
	setPolicy(corev1.ServiceInternalTrafficPolicyLocal)
	expect("back to Local", func(node string) []string { return onNode[node] })
}
