package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/edsync/edsync/test/e2e/harness"
	"github.com/edsync/edsync/writer"
)

// TestMetricsAndProbes: /readyz turns 200 once the files exist, and a Pod's
// readiness change shows in edsync_network_programming_duration_seconds,
// timed from the EndpointSlice controller's trigger time to the rename.
func TestMetricsAndProbes(t *testing.T) {
	ctx := t.Context()
	c := cluster
	const ns, svc, node = "metrics", "web", "node-metrics"
	if err := c.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateNode(ctx, node, "zone-m"); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "web"}
	if _, err := c.CreateService(ctx, ns, svc, labels, harness.TCPPort("http", 80, intstr.FromInt32(8080))); err != nil {
		t.Fatal(err)
	}
	for i, ready := range []bool{true, false} {
		name := fmt.Sprintf("web-%d", i)
		if _, err := c.CreatePod(ctx, harness.Pod{Namespace: ns, Name: name, Labels: labels, Node: node}); err != nil {
			t.Fatal(err)
		}
		if err := c.SetPodStatus(ctx, ns, name, fmt.Sprintf("10.7.0.%d", i+1), ready); err != nil {
			t.Fatal(err)
		}
	}
	const clusterName = ns + "/web/http"
	file := edsFile(t, clusterName, writer.FormatJSON)

	out := t.TempDir()
	files := harness.WatchDir(t, out)
	e := c.StartEdsync(t, "--output-dir", out, "--service", ns+"/"+svc)
	base := "http://" + e.HTTPAddr(t)

	// Ready means the files exist: poll /readyz, then look.
	waitFor(t, "/readyz to answer 200", func() (bool, string) {
		code, body := httpGet(base + "/readyz")
		return code == http.StatusOK, fmt.Sprintf("%d %q", code, body)
	})
	if _, err := os.Stat(filepath.Join(out, file)); err != nil {
		t.Fatalf("/readyz is 200 but %s: %v", file, err)
	}
	if code, body := httpGet(base + "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d %q", code, body)
	}
	files.WaitEndpoints(t, file, clusterName, settle, "10.7.0.1:8080 HEALTHY")
	before := metric(t, base, "edsync_network_programming_duration_seconds_count")

	// web-1 turns ready: the controller stamps the slice's trigger time,
	// edsync writes the file and counts the latency. Pod conditions carry
	// their transition time to the second, and the controller stamps a
	// trigger time only for a later second than the Pod's last one (and
	// edsync counts none before its start's): wait for the next second.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
	if err := c.SetPodStatus(ctx, ns, "web-1", "10.7.0.2", true); err != nil {
		t.Fatal(err)
	}
	files.WaitEndpoints(t, file, clusterName, settle, "10.7.0.1:8080 HEALTHY", "10.7.0.2:8080 HEALTHY")
	waitFor(t, "the latency to be counted", func() (bool, string) {
		n := metric(t, base, "edsync_network_programming_duration_seconds_count")
		return n > before, fmt.Sprintf("count %v, %v before the change", n, before)
	})
	if sum := metric(t, base, "edsync_network_programming_duration_seconds_sum"); sum <= 0 || sum > settle.Seconds()*10 {
		t.Errorf("latency sum %vs: not a time since the change", sum)
	}
}

func httpGet(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// metric scrapes /metrics and returns the value of the sample named, 0 if absent.
func metric(t *testing.T, base, name string) float64 {
	t.Helper()
	code, body := httpGet(base + "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", sc.Text(), err)
			}
			return f
		}
	}
	return 0
}

// waitFor polls cond until it holds, failing after settle with what it last said.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(settle)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s; last: %s", settle, what, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
