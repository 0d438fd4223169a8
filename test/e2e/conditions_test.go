package e2e

import (
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/edsync/edsync/test/e2e/harness"
	"github.com/edsync/edsync/writer"
)

// TestEndpointConditions follows the endpoint conditions that the real
// EndpointSlice controller sets, through three edsync processes at once,
// each with its own output folder:
//
//   - default: terminating (ready=false, serving=true) -> DRAINING,
//     not ready -> left out;
//   - --terminating drop: terminating -> left out;
//   - --not-ready unhealthy: not ready -> UNHEALTHY (terminating still DRAINING).
//
// A Pod deleted without force stays terminating (no kubelet confirms it); a
// force-deleted Pod (grace 0) is gone at once.
func TestEndpointConditions(t *testing.T) {
	ctx := t.Context()
	c := cluster
	const ns, svc, node, port = "default", "cond", "node-cond", 8080

	if err := c.CreateNode(ctx, node, ""); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": svc}
	if _, err := c.CreateService(ctx, ns, svc, labels, harness.TCPPort("http", 80, intstr.FromInt32(port))); err != nil {
		t.Fatal(err)
	}
	const clusterName = ns + "/" + svc + "/http"
	file := edsFile(t, clusterName, writer.FormatJSON)

	type run struct {
		name  string
		files *harness.DirWatcher
	}
	var runs []run
	for _, r := range []struct {
		name  string
		flags []string
	}{
		{"default", nil},
		{"terminating-drop", []string{"--terminating", "drop"}},
		{"not-ready-unhealthy", []string{"--not-ready", "unhealthy"}},
	} {
		out := t.TempDir()
		files := harness.WatchDir(t, out)
		args := append([]string{"--output-dir", out, "--debounce", "50ms", "--service", ns + "/" + svc}, r.flags...)
		c.StartEdsync(t, args...)
		runs = append(runs, run{r.name, files})
	}
	// expect waits until each run's file holds its expected endpoints.
	expect := func(step string, want map[string][]string) {
		t.Helper()
		for _, r := range runs {
			t.Logf("%s: waiting for %s: %v", step, r.name, want[r.name])
			r.files.WaitExactly(t, file, clusterName, settle, want[r.name])
		}
	}

	ip := map[string]string{"serving": "10.40.0.1", "terminating": "10.40.0.2", "forced": "10.40.0.3", "notready": "10.40.0.4"}
	ep := func(pod, health string) string { return fmt.Sprintf("%s:%d %s", ip[pod], port, health) }
	podName := func(pod string) string { return svc + "-" + pod }
	for _, pod := range []string{"serving", "terminating", "forced", "notready"} {
		if _, err := c.CreatePod(ctx, harness.Pod{Namespace: ns, Name: podName(pod), Labels: labels, Node: node}); err != nil {
			t.Fatal(err)
		}
		if err := c.SetPodStatus(ctx, ns, podName(pod), ip[pod], pod != "notready"); err != nil {
			t.Fatal(err)
		}
	}
	ready3 := []string{ep("serving", "HEALTHY"), ep("terminating", "HEALTHY"), ep("forced", "HEALTHY")}
	expect("start", map[string][]string{
		"default":             ready3,
		"terminating-drop":    ready3,
		"not-ready-unhealthy": append(ready3[:3:3], ep("notready", "UNHEALTHY")),
	})

	// Deleted without force: stays terminating, still serving.
	if err := c.DeletePod(ctx, ns, podName("terminating"), false); err != nil {
		t.Fatal(err)
	}
	expect("graceful delete", map[string][]string{
		"default":             {ep("serving", "HEALTHY"), ep("terminating", "DRAINING"), ep("forced", "HEALTHY")},
		"terminating-drop":    {ep("serving", "HEALTHY"), ep("forced", "HEALTHY")},
		"not-ready-unhealthy": {ep("serving", "HEALTHY"), ep("terminating", "DRAINING"), ep("forced", "HEALTHY"), ep("notready", "UNHEALTHY")},
	})

	// Force-deleted: gone at once.
	if err := c.DeletePod(ctx, ns, podName("forced"), true); err != nil {
		t.Fatal(err)
	}
	expect("force delete", map[string][]string{
		"default":             {ep("serving", "HEALTHY"), ep("terminating", "DRAINING")},
		"terminating-drop":    {ep("serving", "HEALTHY")},
		"not-ready-unhealthy": {ep("serving", "HEALTHY"), ep("terminating", "DRAINING"), ep("notready", "UNHEALTHY")},
	})

	// Readiness flips both ways: the not-ready Pod becomes ready, the
	// serving one turns Ready=False.
	if err := c.SetPodStatus(ctx, ns, podName("notready"), ip["notready"], true); err != nil {
		t.Fatal(err)
	}
	if err := c.SetPodStatus(ctx, ns, podName("serving"), ip["serving"], false); err != nil {
		t.Fatal(err)
	}
	expect("readiness flipped", map[string][]string{
		"default":             {ep("notready", "HEALTHY"), ep("terminating", "DRAINING")},
		"terminating-drop":    {ep("notready", "HEALTHY")},
		"not-ready-unhealthy": {ep("serving", "UNHEALTHY"), ep("terminating", "DRAINING"), ep("notready", "HEALTHY")},
	})

	// The terminating Pod force-deleted as well: gone.
	if err := c.DeletePod(ctx, ns, podName("terminating"), true); err != nil {
		t.Fatal(err)
	}
	expect("terminating pod force-deleted", map[string][]string{
		"default":             {ep("notready", "HEALTHY")},
		"terminating-drop":    {ep("notready", "HEALTHY")},
		"not-ready-unhealthy": {ep("serving", "UNHEALTHY"), ep("notready", "HEALTHY")},
	})
}
