package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/edsync/edsync/test/e2e/harness"
	"github.com/edsync/edsync/writer"
)

// TestReloadMovesTheWatch: edsync publishes the clusters of its config
// file's list and asks the API server only for their Services' slices. A
// reload that adds a Service in another namespace moves the watch: that
// Service's file arrives with its endpoints, while the file of a Service
// listed throughout never lacks its endpoints and is not rewritten; changes
// to both keep arriving afterwards.
func TestReloadMovesTheWatch(t *testing.T) {
	ctx := t.Context()
	c := cluster
	const node = "node-scope"
	if err := c.CreateNode(ctx, node, "zone-s"); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"scope-a", "scope-b"} {
		if err := c.CreateNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	web, db := map[string]string{"app": "web"}, map[string]string{"app": "db"}
	if _, err := c.CreateService(ctx, "scope-a", "web", web, harness.TCPPort("http", 80, intstr.FromInt32(8080))); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateService(ctx, "scope-b", "db", db, harness.TCPPort("http", 80, intstr.FromInt32(8080))); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateReadyPods(ctx, "scope-a", node, "web", web, "10.6.1.1", "10.6.1.2"); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateReadyPods(ctx, "scope-b", node, "db", db, "10.6.2.1"); err != nil {
		t.Fatal(err)
	}

	dir, out := t.TempDir(), t.TempDir()
	config := filepath.Join(dir, "edsync.yaml")
	writeConfig := func(content string) { // replaced by a rename, as editors and ConfigMaps do
		t.Helper()
		if err := os.WriteFile(config+".new", []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(config+".new", config); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig("clusters: [{service: scope-a/web, port: http, name: web}]\n")
	webFile, dbFile := edsFile(t, "web", writer.FormatJSON), edsFile(t, "db", writer.FormatJSON) // web/eds.json, db/eds.json
	files := harness.WatchDir(t, out)
	e := c.StartEdsync(t, "--config", config, "--output-dir", out, "--debounce", "50ms")
	files.WaitEndpoints(t, webFile, "web", settle, "10.6.1.1:8080 HEALTHY", "10.6.1.2:8080 HEALTHY")
	webRenames := files.Renames(webFile)

	writeConfig("clusters: [{service: scope-a/web, port: http, name: web}, {service: scope-b/db, port: http, name: db}]\n")
	files.WaitEndpoints(t, dbFile, "db", settle, "10.6.2.1:8080 HEALTHY")
	e.WaitLog(t, settle, "moving the EndpointSlice watch", "informers_added=1", "informers_stopping=0")
	if got := files.Renames(webFile); got != webRenames {
		t.Errorf("%s renamed %d times by the reload: its bytes did not change", webFile, got-webRenames)
	}

	// Both watches deliver after the move: the kept one and the new one.
	if err := c.CreateReadyPods(ctx, "scope-a", node, "web3", web, "10.6.1.3"); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateReadyPods(ctx, "scope-b", node, "db2", db, "10.6.2.2"); err != nil {
		t.Fatal(err)
	}
	files.WaitEndpoints(t, webFile, "web", settle, "10.6.1.1:8080 HEALTHY", "10.6.1.2:8080 HEALTHY", "10.6.1.3:8080 HEALTHY")
	files.WaitEndpoints(t, dbFile, "db", settle, "10.6.2.1:8080 HEALTHY", "10.6.2.2:8080 HEALTHY")

	// Every version of web's file Envoy could have read had endpoints.
	for _, a := range files.Arrivals() {
		if a.Name != webFile {
			continue
		}
		cla, err := harness.ParseEDS(a.Data, "web")
		if err != nil {
			t.Fatalf("%s at %v: %v", webFile, a.At, err)
		}
		if got := harness.Endpoints(cla); len(got) < 2 || !slices.Contains(got, "10.6.1.1:8080 HEALTHY") {
			t.Errorf("%s at %v held %q: it lost endpoints while the watch moved", webFile, a.At, got)
		}
	}
}
