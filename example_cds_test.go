package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/edsync/edsync/internal/testutil"
)

// routeClusters are the clusters a bootstrap's routes and TCP proxies name:
// its "cluster: NAME" lines after static_resources (node has one too).
var routeClusters = regexp.MustCompile(`(?m)^\s*(?:route: \{)?cluster: ([^\s}]+)`)

// checkCDSExample checks a CDS example: edsync runs with its settings
// (args, the templates included), the CDS file it writes names every
// cluster the bootstrap routes to, and the bootstrap's node,
// dynamic_resources and admin are what `envoy-config --cds` prints for
// those settings. out and cds are where the settings put the files; the
// run writes them into a temporary folder instead.
func checkCDSExample(t *testing.T, bootstrapName, bootstrap string, out, cds string, settings []string) {
	t.Helper()
	// The paths the settings give, as a dry run prints them.
	code, stdout, stderr := edsync(t, slices.Concat(settings, []string{"--from-dir", "examples/endpointslices", "--dry-run", "--once"})...)
	if code != 0 {
		t.Fatalf("edsync with the example's settings: exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stdout, "# "+cds+"\n") || !strings.Contains(stdout, `"path": "`+out+`/`) {
		t.Errorf("the dry run printed no CDS file %s whose clusters read from %s", cds, out)
	}
	// What it holds, written as Envoy reads it.
	dir := t.TempDir()
	code, _, stderr = edsync(t, slices.Concat(settings, []string{"--from-dir", "examples/endpointslices", "--once",
		"--output-dir", dir, "--cds-file", filepath.Join(dir, filepath.Base(cds)), "--http-addr", "off"})...)
	if code != 0 {
		t.Fatalf("edsync --once with the example's settings: exit %d\n%s", code, stderr)
	}
	clusters, _ := testutil.ReadCDSAsEnvoy(t, filepath.Join(dir, filepath.Base(cds)))

	boot := parseBootstrap(t, bootstrapName, []byte(bootstrap))
	_, static, _ := strings.Cut(bootstrap, "static_resources:")
	routes := routeClusters.FindAllStringSubmatch(static, -1)
	if len(routes) == 0 {
		t.Fatalf("%s routes to no cluster", bootstrapName)
	}
	for _, m := range routes {
		if clusters[m[1]] == nil {
			t.Errorf("%s routes to %s, which the CDS file does not hold (it has %d clusters)", bootstrapName, m[1], len(clusters))
		}
	}
	if len(boot.GetStaticResources().GetClusters()) > 0 {
		t.Errorf("%s lists clusters of its own: they come from the CDS file", bootstrapName)
	}

	_, printed, stderr := edsync(t, slices.Concat([]string{"envoy-config", "--cds", "--envoy-node-id", boot.Node.GetId(),
		"--envoy-node-cluster", boot.Node.GetCluster()}, settings)...)
	want := parseBootstrap(t, "envoy-config --cds: "+stderr, []byte(printed))
	want.StaticResources = boot.StaticResources // the listeners are the example's own
	if diff := cmp.Diff(want, boot, protocmp.Transform()); diff != "" {
		t.Errorf("%s differs from what `edsync envoy-config --cds` prints (-printed +example):\n%s", bootstrapName, diff)
	}
}

func TestKubernetesCDSExample(t *testing.T) {
	var envoyCM, edsyncCM corev1.ConfigMap
	readObject(t, "examples/kubernetes/cds/envoy-bootstrap.yaml", &envoyCM)
	readObject(t, "examples/kubernetes/cds/edsync-config.yaml", &edsyncCM)
	config := filepath.Join(t.TempDir(), "config.yaml")
	writeFile(t, config, edsyncCM.Data["config.yaml"])
	// The sidecar's own args and output folder, with its config file where
	// the test wrote it, and the zone the Pod's label would give.
	t.Setenv("EDSYNC_OUTPUT_DIR", sidecarEnv(t, "EDSYNC_OUTPUT_DIR"))
	args := append(sidecar(t).Args, "--local-zone", "zone-a")
	for i, a := range args {
		if a == "/etc/edsync/config.yaml" {
			args[i] = config
		}
	}
	cfg, err := parseFlags(slices.Concat(args, []string{"--from-dir", "examples/endpointslices", "--dry-run"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.cdsFile == "" || filepath.Dir(cfg.cdsFile) != cfg.outputDir || cfg.render.Cluster.Default == nil || len(cfg.render.Cluster.Templates) == 0 {
		t.Fatalf("the example's config: cds-file %q in %q, templates %v", cfg.cdsFile, cfg.outputDir, cfg.render.Cluster.Templates)
	}
	checkCDSExample(t, "envoy.yaml in examples/kubernetes/cds/envoy-bootstrap.yaml", envoyCM.Data["envoy.yaml"],
		cfg.outputDir, cfg.cdsFile, args)
}

// The VM's CDS variant: cds/edsync.env with the unit's ExecStart (a folder
// of manifests for the kubeconfig) and cds/envoy.yaml.
func TestVMCDSExample(t *testing.T) {
	unit := unitSettings(t, "examples/vm/edsync.service")
	args := strings.Fields(unit["ExecStart"][0])[1:]
	for i := 0; i < len(args); i++ {
		if args[i] == "--kubeconfig" {
			args = slices.Delete(args, i, i+2)
			i--
		}
	}
	setEnvFile(t, "examples/vm/cds/edsync.env")
	cfg, err := parseFlags(slices.Concat(args, []string{"--from-dir", "examples/endpointslices"}))
	if err != nil {
		t.Fatalf("ExecStart with cds/edsync.env: %v", err)
	}
	if filepath.Dir(cfg.cdsFile) != unit["ReadWritePaths"][0] {
		t.Errorf("the CDS file %s is outside the folder the unit lets edsync write, %s", cfg.cdsFile, unit["ReadWritePaths"][0])
	}
	boot, err := os.ReadFile("examples/vm/cds/envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	checkCDSExample(t, "examples/vm/cds/envoy.yaml", string(boot), cfg.outputDir, cfg.cdsFile, args)
}
