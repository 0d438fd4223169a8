package e2e

import (
	"context"
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/edsync/edsync/test/e2e/harness"
	"github.com/edsync/edsync/writer"
)

// TestScale scales one Service's ready Pods 0 -> 3 -> 150 -> 2 -> 0. After
// each step the file holds exactly the ready Pods' ip:port, and at 150 the
// EndpointSlice controller has split them over several slices. Scaling down
// force-deletes Pods (grace 0), so none lingers as terminating.
//
// The subtests run one after the other, never in parallel: "max10" restarts
// the shared kube-controller-manager. Top-level tests that call t.Parallel
// only resume after every sequential test (this one included) has finished.
func TestScale(t *testing.T) {
	t.Run("default", func(t *testing.T) {
		scaleScenario(t, "scale-default", 20, 100)
	})
	t.Run("max10", func(t *testing.T) {
		ctx := t.Context()
		if err := cluster.RestartControllerManager(ctx, 10); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			// Back to the default for the other scenarios. t.Context is
			// done in Cleanup: use a fresh one.
			if err := cluster.RestartControllerManager(context.Background(), 0); err != nil {
				t.Errorf("restoring kube-controller-manager: %v", err)
			}
		})
		scaleScenario(t, "scale-max10", 21, 10)
	})
}

// scaleScenario runs the steps against Service default/svc, its Pods at
// 10.<octet>.x.y, with kube-controller-manager at maxPerSlice.
func scaleScenario(t *testing.T, svc string, octet, maxPerSlice int) {
	ctx := t.Context()
	c := cluster
	const ns, port = "default", 8080
	node := "node-" + svc

	if err := c.CreateNode(ctx, node, ""); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": svc}
	if _, err := c.CreateService(ctx, ns, svc, labels, harness.TCPPort("http", 80, intstr.FromInt32(port))); err != nil {
		t.Fatal(err)
	}
	clusterName := ns + "/" + svc + "/http"
	file := edsFile(t, clusterName, writer.FormatJSON)

	out := t.TempDir()
	files := harness.WatchDir(t, out)
	// --cluster: the file exists (empty) while the Service has no endpoints,
	// as Envoy needs it to start.
	c.StartEdsync(t, "--output-dir", out, "--debounce", "50ms", "--service", ns+"/"+svc, "--cluster", clusterName)

	podName := func(i int) string { return fmt.Sprintf("%s-%d", svc, i) }
	podIP := func(i int) string { return fmt.Sprintf("10.%d.%d.%d", octet, i/200, i%200+1) }
	want := func(pods []int) []string {
		var w []string
		for _, i := range pods {
			w = append(w, fmt.Sprintf("%s:%d HEALTHY", podIP(i), port))
		}
		return w
	}
	var live []int // indexes of the Pods that exist, all ready
	scaleTo := func(n int) {
		t.Helper()
		switch {
		case n > len(live):
			from := len(live)
			err := harness.Parallel(n-from, 16, func(k int) error {
				i := from + k
				if _, err := c.CreatePod(ctx, harness.Pod{Namespace: ns, Name: podName(i), Labels: labels, Node: node}); err != nil {
					return err
				}
				return c.SetPodStatus(ctx, ns, podName(i), podIP(i), true)
			})
			if err != nil {
				t.Fatal(err)
			}
			for i := from; i < n; i++ {
				live = append(live, i)
			}
		case n < len(live):
			gone := live[n:]
			err := harness.Parallel(len(gone), 16, func(k int) error {
				return c.DeletePod(ctx, ns, podName(gone[k]), true)
			})
			if err != nil {
				t.Fatal(err)
			}
			live = live[:n]
		}
	}

	steps := []int{0, 3, 150, 2, 0}
	for _, n := range steps {
		before := files.Renames(file)
		scaleTo(n)
		files.WaitExactly(t, file, clusterName, settle, want(live))
		t.Logf("%d ready pods: file right after %d renames of it (since the step began)", n, files.Renames(file)-before)

		if n != 150 {
			continue
		}
		// The file is right, so the slices hold all 150: check how the
		// controller split them.
		slices, err := c.ServiceSlices(ctx, ns, svc)
		if err != nil {
			t.Fatal(err)
		}
		total, counts := 0, []int{}
		for _, sl := range slices {
			total += len(sl.Endpoints)
			counts = append(counts, len(sl.Endpoints))
			if len(sl.Endpoints) > maxPerSlice {
				t.Errorf("slice %s holds %d endpoints, kube-controller-manager's maximum is %d", sl.Name, len(sl.Endpoints), maxPerSlice)
			}
		}
		minSlices := (150 + maxPerSlice - 1) / maxPerSlice
		if len(slices) < 2 || len(slices) < minSlices || total != 150 {
			t.Errorf("150 ready pods: want >= %d slices holding 150 endpoints, API server has %d slices holding %d (%v)",
				max(2, minSlices), len(slices), total, counts)
		}
		t.Logf("150 ready pods in %d slices: %v", len(slices), counts)
	}
	if files.Renames(file) == 0 {
		t.Errorf("%s never arrived by a rename: Envoy would not have reloaded it", file)
	}
}
