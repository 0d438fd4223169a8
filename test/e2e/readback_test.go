package e2e

import (
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edsync/edsync/internal/envoyadmin"
	"github.com/edsync/edsync/status"
)

// TestReadBack runs edsync against the real control plane with the Envoy
// stand-in of internal/envoyadmin in Envoy's place (the files loaded on
// each rename, /stats as Envoy answers it): the Pods' endpoints reach the
// file and Envoy reports their version (edsync_envoy_apply_seconds fills,
// the end of the network programming path); a version that Envoy refuses
// (this one refuses more than two endpoints) is rejected, counted and
// shown by `edsync status`, and the next good one applied.
func TestReadBack(t *testing.T) {
	clusterName, file, labels, node, _ := faultService(t, "readback", 61, 2)
	out := t.TempDir()
	path := filepath.Join(out, file)
	// Envoy's bootstrap names the cluster: its folder is there before
	// Envoy starts, its file not yet.
	if err := os.Mkdir(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	envoy := envoyadmin.New()
	envoy.Refuse = func(_ string, hosts int) bool { return hosts > 2 }
	envoy.AddCluster(clusterName, path)
	if err := envoy.Watch(t.Context()); err != nil {
		t.Fatal(err)
	}
	admin := httptest.NewServer(envoy)
	defer admin.Close()

	c := cluster
	e := c.StartEdsync(t, "--output-dir", out, "--service", "default/readback", "--envoy-admin", admin.URL,
		"--envoy-poll-interval", "100ms", "--ready-waits-for-envoy")
	addr := e.HTTPAddr(t)
	base := "http://" + addr
	state := func() (status.Cluster, string) {
		_, body := httpGet(base + "/debug/clusters")
		var s status.Snapshot
		json.Unmarshal([]byte(body), &s)
		for _, cl := range s.Clusters {
			if cl.Name == clusterName {
				return cl, body
			}
		}
		return status.Cluster{}, body
	}
	waitFor(t, "Envoy to apply the file", func() (bool, string) {
		cl, body := state()
		return cl.Envoy.State == status.StateApplied && cl.Endpoints.Healthy == 2, body
	})
	if code, body := httpGet(base + "/readyz"); code != 200 {
		t.Errorf("/readyz with Envoy running the file: %d %s", code, body)
	}
	if n := metric(t, base, "edsync_envoy_apply_seconds_count"); n < 1 {
		t.Errorf("edsync_envoy_apply_seconds_count %v, want the first file's", n)
	}
	if sub, _ := envoy.Cluster(clusterName); sub.Hosts != 2 {
		t.Errorf("Envoy runs %d endpoints, want 2", sub.Hosts)
	}

	// A third Pod: Envoy refuses the file and keeps its two endpoints.
	addPod(t, "readback", labels, node, 61, 3)
	waitFor(t, "Envoy to refuse the file", func() (bool, string) {
		cl, body := state()
		return cl.Envoy.State == status.StateRejected, body
	})
	if n := metric(t, base, "edsync_envoy_rejections_total"); n != 1 {
		t.Errorf("edsync_envoy_rejections_total %v, want 1", n)
	}
	cmd := exec.CommandContext(t.Context(), c.Edsync, "status", "--http-addr", addr)
	outp, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(string(outp), "Envoy rejected 1 file(s): "+clusterName) {
		t.Errorf("edsync status: exit %d (%v)\n%s", code, err, outp)
	}
	if sub, _ := envoy.Cluster(clusterName); sub.Hosts != 2 || sub.Rejected == 0 {
		t.Errorf("Envoy after the refusal: %+v", sub)
	}

	// The third Pod turns not ready: two endpoints again, applied.
	if err := c.SetPodStatus(t.Context(), "default", "readback-3", "10.61.0.3", false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Envoy to apply the next file", func() (bool, string) {
		cl, body := state()
		return cl.Envoy.State == status.StateApplied, body
	})
	out2, err := exec.CommandContext(t.Context(), c.Edsync, "status", "--http-addr", addr).CombinedOutput()
	if err != nil || !strings.Contains(string(out2), "1 clusters: 1 applied") {
		t.Errorf("edsync status once fixed: %v\n%s", err, out2)
	}
}
