package e2e

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/edsync/edsync/test/e2e/harness"
	"github.com/edsync/edsync/writer"
)

// latencyChanges is how many Pod status changes the latency scenario times.
const latencyChanges = 200

// TestLatency times 200 Pod status changes, one at a time, from the status
// write returning to the rename of the file that carries it (what Envoy
// reloads on), with edsync's default --debounce of 50ms. It reports p50, p99
// and max (t.Logf, and the file named by EDSYNC_E2E_LATENCY_OUT if set); it
// asserts only that every change arrived with the right content, never on
// timing.
func TestLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the latency scenario makes 200 changes")
	}
	ctx := t.Context()
	c := cluster
	const ns, svc, node = "default", "latency", "node-latency"
	if err := c.CreateNode(ctx, node, "zone-a"); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": svc}
	if _, err := c.CreateService(ctx, ns, svc, labels, harness.TCPPort("http", 80, intstr.FromInt32(8080))); err != nil {
		t.Fatal(err)
	}
	// Pod a stays ready; Pod b's Ready condition is toggled.
	pods := []struct{ name, ip string }{{"latency-a", "10.58.0.1"}, {"latency-b", "10.58.0.2"}}
	for _, p := range pods {
		if _, err := c.CreatePod(ctx, harness.Pod{Namespace: ns, Name: p.name, Labels: labels, Node: node}); err != nil {
			t.Fatal(err)
		}
		if err := c.SetPodStatus(ctx, ns, p.name, p.ip, true); err != nil {
			t.Fatal(err)
		}
	}
	bothReady := []string{"10.58.0.1:8080 HEALTHY", "10.58.0.2:8080 HEALTHY"}
	onlyA := []string{"10.58.0.1:8080 HEALTHY"}

	const clusterName = "default/latency/http"
	file := edsFile(t, clusterName, writer.FormatJSON)
	out := t.TempDir()
	files := harness.WatchDir(t, out)
	// The default --debounce, 50ms; only this Service.
	e := c.StartEdsync(t, "--output-dir", out, "--service", ns+"/"+svc)
	files.WaitEndpoints(t, file, clusterName, settle, bothReady...)
	// WaitEndpoints may return before the watcher has recorded the rename
	// that it read: the first change must not pick up the initial write.
	if err := files.WaitCaughtUp(settle); err != nil {
		t.Fatal(err)
	}

	loadBefore := loadAvg()
	latencies := make([]time.Duration, 0, latencyChanges)
	extra := 0 // renames that did not bring the expected content
	began := time.Now()
	for i := range latencyChanges {
		ready := i%2 == 1 // the first change makes b not ready
		want := onlyA
		if ready {
			want = bothReady
		}
		from := files.Len()
		if err := c.SetPodStatus(ctx, ns, pods[1].name, pods[1].ip, ready); err != nil {
			t.Fatal(err)
		}
		written := time.Now()
		for {
			a, next, ok := files.Next(file, from, settle)
			if !ok {
				data, _ := os.ReadFile(files.Dir + "/" + file)
				t.Fatalf("change %d (%s ready=%v): no rename of %s brought endpoints\n  %s\nwithin %v; the file held:\n%s",
					i+1, pods[1].name, ready, file, strings.Join(want, "\n  "), settle, data)
			}
			from = next
			if a.Err != nil {
				t.Fatalf("change %d: reading %s right after its rename: %v", i+1, file, a.Err)
			}
			cla, err := harness.ParseEDS(a.Data, clusterName)
			if err != nil {
				t.Fatalf("change %d: %s is not a file Envoy would accept: %v\ncontent:\n%s", i+1, file, err, a.Data)
			}
			if got := harness.Endpoints(cla); !slices.Equal(got, want) {
				extra++
				t.Logf("change %d: a rename brought\n  %s\nwhile waiting for\n  %s", i+1, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
				continue
			}
			latencies = append(latencies, a.At.Sub(written))
			break
		}
	}
	total := time.Since(began)
	loadAfter := loadAvg()

	sorted := slices.Clone(latencies)
	slices.Sort(sorted)
	pct := func(p float64) time.Duration {
		k := int(float64(len(sorted))*p+0.999999) - 1
		return sorted[max(0, min(k, len(sorted)-1))]
	}
	report := fmt.Sprintf("edsync e2e latency, status write returned -> file renamed, --debounce 50ms: n=%d p50=%v p99=%v max=%v min=%v (%d extra renames; %v in all)\nload average before: %s\nload average after:  %s\n",
		len(sorted), pct(0.50).Round(100*time.Microsecond), pct(0.99).Round(100*time.Microsecond),
		sorted[len(sorted)-1].Round(100*time.Microsecond), sorted[0].Round(100*time.Microsecond),
		extra, total.Round(time.Millisecond), loadBefore, loadAfter)
	t.Log(strings.TrimSpace(report))
	if path := os.Getenv("EDSYNC_E2E_LATENCY_OUT"); path != "" {
		var b strings.Builder
		b.WriteString(report)
		b.WriteString("each change, in order (ms):\n")
		for i, d := range latencies {
			fmt.Fprintf(&b, "%d %.3f\n", i+1, float64(d.Microseconds())/1000)
		}
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Errorf("EDSYNC_E2E_LATENCY_OUT: %v", err)
		}
	}

	if err := e.Stop(10 * time.Second); err != nil {
		t.Errorf("edsync exited with %v after SIGTERM, want 0\n%s", err, e.Stderr())
	}
}

// loadAvg is the machine's load average as /proc/loadavg gives it, for the
// report: the figures mean little without it.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return err.Error()
	}
	return strings.TrimSpace(string(b))
}
