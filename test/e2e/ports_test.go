package e2e

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/edsync/edsync/test/e2e/harness"
	"github.com/edsync/edsync/writer"
)

// TestNamedTargetPortPerPod: the Service's targetPort is the name "http",
// and two groups of Pods give that name different container ports (8080 and
// 9090). The EndpointSlice controller puts each group in its own slice with
// its own port number; the one cluster's file carries each endpoint with its
// own Pod's port.
func TestNamedTargetPortPerPod(t *testing.T) {
	ctx := t.Context()
	c := cluster
	const ns, svc, node = "default", "named", "node-named"

	if err := c.CreateNode(ctx, node, ""); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": svc}
	if _, err := c.CreateService(ctx, ns, svc, labels, harness.TCPPort("web", 80, intstr.FromString("http"))); err != nil {
		t.Fatal(err)
	}
	const clusterName = ns + "/" + svc + "/web"
	file := edsFile(t, clusterName, writer.FormatJSON)

	out := t.TempDir()
	files := harness.WatchDir(t, out)
	c.StartEdsync(t, "--output-dir", out, "--debounce", "50ms", "--service", ns+"/"+svc)

	groups := []struct {
		prefix string
		port   int32
		ipBase string
	}{{"old", 8080, "10.30.0."}, {"new", 9090, "10.30.1."}}
	var want []string
	for _, g := range groups {
		for i := 1; i <= 3; i++ {
			name, ip := fmt.Sprintf("%s-%s-%d", svc, g.prefix, i), fmt.Sprintf("%s%d", g.ipBase, i)
			p := harness.Pod{Namespace: ns, Name: name, Labels: labels, Node: node,
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: g.port, Protocol: corev1.ProtocolTCP}}}
			if _, err := c.CreatePod(ctx, p); err != nil {
				t.Fatal(err)
			}
			if err := c.SetPodStatus(ctx, ns, name, ip, true); err != nil {
				t.Fatal(err)
			}
			want = append(want, fmt.Sprintf("%s:%d HEALTHY", ip, g.port))
		}
	}
	files.WaitExactly(t, file, clusterName, settle, want)

	// The controller made one slice per port number: the case edsync must
	// merge into one cluster.
	slices, err := c.ServiceSlices(ctx, ns, svc)
	if err != nil {
		t.Fatal(err)
	}
	ports := map[int32]int{}
	for _, sl := range slices {
		for _, p := range sl.Ports {
			if p.Port != nil && len(sl.Endpoints) > 0 {
				ports[*p.Port] += len(sl.Endpoints)
			}
		}
	}
	if ports[8080] != 3 || ports[9090] != 3 {
		t.Errorf("want slices with 3 endpoints on port 8080 and 3 on 9090, API server has %v", ports)
	}

	// One group goes away: the other keeps its own port.
	for i := 1; i <= 3; i++ {
		if err := c.DeletePod(ctx, ns, fmt.Sprintf("%s-old-%d", svc, i), true); err != nil {
			t.Fatal(err)
		}
	}
	files.WaitExactly(t, file, clusterName, settle, want[3:])
}
