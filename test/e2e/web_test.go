package e2e

import (
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/edsync/edsync/test/e2e/harness"
	"github.com/edsync/edsync/writer"
)

// How long a file may take to reach the expected content. Generous for a
// loaded 2-core machine; a passing run takes well under a second per step.
const settle = 30 * time.Second

// TestReadyPodsReachTheFile is the smallest full path: Pods made ready, the
// EndpointSlice controller's slice, edsync's informer, the file Envoy reads.
func TestReadyPodsReachTheFile(t *testing.T) {
	ctx := t.Context()
	c := cluster
	const ns, svc, node = "default", "web", "node-web"

	if err := c.CreateNode(ctx, node, "zone-a"); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "web"}
	if _, err := c.CreateService(ctx, ns, svc, labels, harness.TCPPort("http", 80, intstr.FromInt32(8080))); err != nil {
		t.Fatal(err)
	}

	out := t.TempDir()
	files := harness.WatchDir(t, out) // before edsync starts: no rename goes unseen
	e := c.StartEdsync(t, "--output-dir", out, "--debounce", "50ms")

	var want []string
	for i := 1; i <= 3; i++ {
		name, ip := fmt.Sprintf("web-%d", i), fmt.Sprintf("10.1.0.%d", i)
		if _, err := c.CreatePod(ctx, harness.Pod{Namespace: ns, Name: name, Labels: labels, Node: node}); err != nil {
			t.Fatal(err)
		}
		if err := c.SetPodStatus(ctx, ns, name, ip, true); err != nil {
			t.Fatal(err)
		}
		want = append(want, ip+":8080 HEALTHY")
	}

	const clusterName = "default/web/http"
	file := edsFile(t, clusterName, writer.FormatJSON)
	files.WaitEndpoints(t, file, clusterName, settle, want...)
	if files.Renames(file) == 0 {
		t.Errorf("%s never arrived by a rename into %s: Envoy would not have reloaded it", file, out)
	}

	// SIGTERM: flush what is pending, exit 0.
	if err := e.Stop(10 * time.Second); err != nil {
		t.Errorf("edsync exited with %v after SIGTERM, want 0\n%s", err, e.Stderr())
	}
}
