package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"sigs.k8s.io/yaml"

	"github.com/google/go-cmp/cmp"
)

// parseBootstrap reads an Envoy bootstrap in YAML the way Envoy does
// (YAML -> JSON -> proto with the registered types) and validates it.
func parseBootstrap(t *testing.T, what string, data []byte) *bootstrapv3.Bootstrap {
	t.Helper()
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	var boot bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &boot); err != nil {
		t.Fatalf("%s is not a valid Envoy bootstrap: %v", what, err)
	}
	if err := boot.ValidateAll(); err != nil {
		t.Fatalf("%s fails validation: %v", what, err)
	}
	return &boot
}

// envoyConfig runs `edsync envoy-config` with args and returns the clusters
// it printed, read back as Envoy would: under static_resources of a
// bootstrap, which must validate.
func envoyConfig(t *testing.T, args ...string) (out string, clusters []*clusterv3.Cluster) {
	t.Helper()
	code, out, stderr := edsync(t, append([]string{"envoy-config"}, args...)...)
	if code != 0 {
		t.Fatalf("envoy-config %q: exit %d\n%s", args, code, stderr)
	}
	js, err := yaml.YAMLToJSON([]byte(out))
	if err != nil {
		t.Fatalf("envoy-config printed no YAML: %v\n%s", err, out)
	}
	boot := parseBootstrap(t, "envoy-config's clusters under static_resources",
		[]byte(`{"static_resources": `+string(js)+`}`))
	return out, boot.GetStaticResources().GetClusters()
}

func TestEnvoyConfigExamples(t *testing.T) {
	out, _ := envoyConfig(t, "--from-dir", "examples/endpointslices", "--output-dir", "/var/run/edsync")
	golden(t, filepath.Join("testdata", "envoy-config.examples.yaml"), out)
}

// Each cluster envoy-config prints reads exactly a file that the main
// command writes with the same flags, that file holds the CLA the cluster
// expects, and there is a cluster for every file.
func TestEnvoyConfigPointsAtTheFilesEdsyncWrites(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"defaults", nil},
		{"yaml", []string{"--format", "yaml"}},
		{"pb, template, declared cluster", []string{"--format", "pb",
			"--cluster-name-template", "{{.Service}}.{{.Namespace}}{{with .Port}}:{{.}}{{end}}", "--cluster", "later_one"}},
		{"one service", []string{"--service", "shop/web", "--connect-timeout", "250ms"}},
		// A file name past 255 bytes is shortened; the cluster reads the real file.
		{"long cluster name", []string{"--cluster", "shop/" + strings.Repeat("long-", 60) + "name"}},
		{"flat layout", []string{"--layout", "flat", "--cluster", "shop/" + strings.Repeat("long-", 60) + "name"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			args := append([]string{"--from-dir", "examples/endpointslices", "--output-dir", dir}, tc.args...)
			_, clusters := envoyConfig(t, args...)

			// The main command has no --connect-timeout.
			mainArgs := slices.Clone(args)
			if i := slices.Index(mainArgs, "--connect-timeout"); i >= 0 {
				mainArgs = slices.Delete(mainArgs, i, i+2)
			}
			if code, _, stderr := edsync(t, append(mainArgs, "--once")...); code != 0 {
				t.Fatalf("edsync --once: exit %d\n%s", code, stderr)
			}
			var written []string
			for rel := range statFiles(t, dir) {
				written = append(written, filepath.Join(dir, rel))
			}
			slices.Sort(written)

			var paths []string
			for _, c := range clusters {
				if c.GetType() != clusterv3.Cluster_EDS || c.GetConnectTimeout() == nil {
					t.Errorf("cluster %s: type %v, connect_timeout %v: want EDS with a timeout", c.Name, c.GetType(), c.GetConnectTimeout())
				}
				eds := c.GetEdsClusterConfig()
				src := eds.GetEdsConfig().GetPathConfigSource()
				if src == nil || eds.GetEdsConfig().GetResourceApiVersion().String() != "V3" {
					t.Errorf("cluster %s: eds_config %v: want a V3 path_config_source", c.Name, eds.GetEdsConfig())
					continue
				}
				paths = append(paths, src.Path)
				if _, err := os.Stat(src.Path); err != nil {
					t.Errorf("cluster %s reads %s, which edsync did not write: %v", c.Name, src.Path, err)
					continue
				}
				if cla := readAsEnvoy(t, src.Path); cla.ClusterName != eds.ServiceName || c.Name != eds.ServiceName {
					t.Errorf("cluster %s (service_name %s) reads %s holding %q: Envoy would reject it",
						c.Name, eds.ServiceName, src.Path, cla.ClusterName)
				}
			}
			slices.Sort(paths)
			if !slices.Equal(paths, written) {
				t.Errorf("clusters read %q, edsync wrote %q", paths, written)
			}
			if len(written) == 0 {
				t.Error("nothing written: the test compares nothing")
			}
		})
	}
}

func TestEnvoyConfigUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"relative output dir", []string{"--from-dir", "examples/endpointslices", "--output-dir", "out"}, "absolute"},
		{"no output dir", []string{"--from-dir", "examples/endpointslices"}, "the clusters' paths need edsync's output folder: set --output-dir"},
		{"bad timeout", []string{"--from-dir", "examples/endpointslices", "--output-dir", "/x", "--connect-timeout", "0s"}, "--connect-timeout"},
		{"bad format", []string{"--from-dir", "examples/endpointslices", "--output-dir", "/x", "--format", "xml"}, "xml"},
		{"stray argument", []string{"--output-dir", "/x", "extra"}, "unexpected argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := edsync(t, append([]string{"envoy-config"}, tc.args...)...)
			if code != exitUsage || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tc.want) || stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr %q: want exit 2 and one line mentioning %q", code, stdout, stderr, tc.want)
			}
		})
	}
}

// examples/envoy/envoy.yaml's clusters are what envoy-config prints for the
// examples, so the example cannot drift from edsync's names and paths. The
// one addition allowed is typed_extension_protocol_options (HTTP/2 for the
// gRPC cluster), which envoy-config cannot know.
func TestExampleEnvoyClustersAreEnvoyConfigOutput(t *testing.T) {
	data, err := os.ReadFile("examples/envoy/envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	boot := parseBootstrap(t, "examples/envoy/envoy.yaml", data)
	var got []*clusterv3.Cluster
	for _, c := range boot.GetStaticResources().GetClusters() {
		c = proto.Clone(c).(*clusterv3.Cluster)
		c.TypedExtensionProtocolOptions = nil
		got = append(got, c)
	}
	_, want := envoyConfig(t, "--from-dir", "examples/endpointslices", "--output-dir", "/var/run/edsync")
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("examples/envoy/envoy.yaml's clusters differ from `edsync envoy-config --from-dir examples/endpointslices "+
			"--output-dir /var/run/edsync` (-printed +example):\n%s", diff)
	}
}

// envoy-config's help lists the flags that change which clusters there are,
// their names and paths; the others (a running edsync's timing, endpoints,
// topology, listener) are left out, yet accepted on the command line, from
// EDSYNC_* variables and in the config file, so it runs with the settings
// of the edsync it goes with.
func TestEnvoyConfigHelpListsWhatMatters(t *testing.T) {
	code, help, stderr := edsync(t, "envoy-config", "--help")
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	for _, want := range []string{"--config", "--from-dir", "--kubeconfig", "--service", "--output-dir", "--format",
		"--cluster-name-template", "--cluster ", "--protocol", "--watch-services", "--connect-timeout"} {
		if !strings.Contains(help, want) {
			t.Errorf("envoy-config --help does not list %s", want)
		}
	}
	ignored := []string{"--http-addr", "--once", "--dry-run", "--debounce", "--max-delay", "--terminating", "--not-ready",
		"--address-family", "--topology", "--local-zone", "--node-name", "--node-topology", "--subzone-label", "--region",
		"--endpoint-metadata"}
	for _, flag := range ignored {
		if strings.Contains(help, flag+" ") || strings.Contains(help, flag+"\n") {
			t.Errorf("envoy-config --help lists %s, which it ignores", flag)
		}
	}

	want, _ := envoyConfig(t, "--from-dir", "examples/endpointslices", "--output-dir", "/var/run/edsync")
	config := filepath.Join(t.TempDir(), "edsync.yaml")
	writeFile(t, config, "topology: zone\nnode-topology: true\nsubzone-label: rack\nmax-delay: 2s\nonce: true\n")
	t.Setenv("EDSYNC_NOT_READY", "unhealthy")
	t.Setenv("EDSYNC_HTTP_ADDR", ":9911")
	got, _ := envoyConfig(t, "--config", config, "--from-dir", "examples/endpointslices", "--output-dir", "/var/run/edsync",
		"--debounce", "1s", "--dry-run", "--endpoint-metadata")
	if got != want {
		t.Errorf("with a running edsync's other settings, envoy-config printed:\n%s\nwant:\n%s", got, want)
	}
}

// With no output folder given anywhere, envoy-config has no paths to print:
// one usage line says where to give it; a config file that gives it is
// enough.
func TestEnvoyConfigOutputDirFromConfigFile(t *testing.T) {
	config := filepath.Join(t.TempDir(), "edsync.yaml")
	writeFile(t, config, "output-dir: /var/run/edsync\n")
	got, _ := envoyConfig(t, "--config", config, "--from-dir", "examples/endpointslices")
	want, _ := envoyConfig(t, "--from-dir", "examples/endpointslices", "--output-dir", "/var/run/edsync")
	if got != want {
		t.Errorf("output-dir from the config file:\n%s\nwant:\n%s", got, want)
	}
}

// envoy-config --cds prints a bootstrap Envoy accepts whose clusters come
// from the CDS file: node id and cluster set, cds_config a path on the file,
// an admin listener; it needs an absolute --cds-file and a usable address.
func TestEnvoyConfigCDSBootstrap(t *testing.T) {
	code, out, stderr := edsync(t, "envoy-config", "--cds", "--cds-file", "/var/run/edsync/cds+clusters.json",
		"--envoy-node-id", "gateway-1", "--envoy-admin-address", "[::1]:9000")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	boot := parseBootstrap(t, "envoy-config --cds", []byte(out))
	if boot.Node.GetId() != "gateway-1" || boot.Node.GetCluster() != "edsync" {
		t.Errorf("node %v", boot.Node)
	}
	cds := boot.GetDynamicResources().GetCdsConfig()
	if cds.GetPathConfigSource().GetPath() != "/var/run/edsync/cds+clusters.json" || cds.GetResourceApiVersion() != corev3.ApiVersion_V3 {
		t.Errorf("cds_config %v", cds)
	}
	if sa := boot.GetAdmin().GetAddress().GetSocketAddress(); sa.GetAddress() != "::1" || sa.GetPortValue() != 9000 {
		t.Errorf("admin %v", boot.Admin)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "set --cds-file"},
		{[]string{"--cds-file", "cds.json"}, "--cds-file must be an absolute path"},
		{[]string{"--cds-file", "/x/cds.json", "--envoy-admin-address", "localhost"}, "--envoy-admin-address"},
		{[]string{"--cds-file", "/x/cds.json", "--envoy-node-id", ""}, "must not be empty"},
	} {
		code, _, stderr := edsync(t, append([]string{"envoy-config", "--cds"}, tc.args...)...)
		if code != exitUsage || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, %q; want %d and one line with %q", tc.args, code, stderr, exitUsage, tc.want)
		}
	}
}

// --local-cluster (zone-aware routing): envoy-config --cds puts it in the
// bootstrap as Envoy wants it, a static EDS cluster on its file named by
// cluster_manager.local_cluster_name, with node.locality from --local-zone
// (a note for Envoy's --service-zone without it); the list of static
// clusters says what to add; and the running edsync leaves it out of the
// CDS file, where Envoy would refuse it.
func TestEnvoyConfigLocalCluster(t *testing.T) {
	const local = "shop/gateway/http"
	args := []string{"envoy-config", "--cds", "--cds-file", "/var/run/edsync/cds+clusters.json", "--output-dir", "/var/run/edsync", "--local-cluster", local}
	code, out, stderr := edsync(t, append(args, "--local-zone", "eu-west-1a", "--region", "eu-west-1")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	boot := parseBootstrap(t, "envoy-config --cds --local-cluster", []byte(out))
	if l := boot.GetNode().GetLocality(); l.GetZone() != "eu-west-1a" || l.GetRegion() != "eu-west-1" {
		t.Errorf("node.locality %v", l)
	}
	if boot.GetClusterManager().GetLocalClusterName() != local {
		t.Errorf("cluster_manager %v", boot.GetClusterManager())
	}
	static := boot.GetStaticResources().GetClusters()
	if len(static) != 1 || static[0].GetName() != local ||
		static[0].GetEdsClusterConfig().GetEdsConfig().GetPathConfigSource().GetPath() != "/var/run/edsync/shop_gateway_http/eds.json" {
		t.Errorf("static clusters %v", static)
	}
	if boot.GetDynamicResources().GetCdsConfig().GetPathConfigSource().GetPath() != "/var/run/edsync/cds+clusters.json" {
		t.Errorf("cds_config %v", boot.GetDynamicResources())
	}

	code, out, stderr = edsync(t, args...)
	if code != 0 {
		t.Fatalf("no zone: exit %d: %s", code, stderr)
	}
	if boot := parseBootstrap(t, "no zone", []byte(out)); boot.GetNode().GetLocality() != nil || !strings.Contains(out, "--service-zone") {
		t.Errorf("without a zone: locality %v; want none and a note about --service-zone:\n%s", boot.GetNode().GetLocality(), out)
	}
	code, _, stderr = edsync(t, "envoy-config", "--cds", "--cds-file", "/var/run/edsync/cds+clusters.json", "--local-cluster", local)
	if code != exitUsage || !strings.Contains(stderr, "--output-dir") {
		t.Errorf("no output folder: exit %d, %q", code, stderr)
	}

	// From the config file, with the zone-aware mode: the static clusters
	// get zone_aware_lb_config.
	config := filepath.Join(t.TempDir(), "edsync.yaml")
	writeFile(t, config, "local-cluster: shop/web/http\ntopology: zone-aware\n")
	out, clusters := envoyConfig(t, "--config", config, "--from-dir", "examples/endpointslices", "--output-dir", "/var/run/edsync")
	if !strings.HasPrefix(out, "# Zone-aware routing") || !strings.Contains(out, "local_cluster_name: shop/web/http") || len(clusters) == 0 {
		t.Errorf("static clusters with --local-cluster:\n%s", out)
	}
	for _, c := range clusters {
		if c.GetCommonLbConfig().GetZoneAwareLbConfig() == nil {
			t.Errorf("%s: no zone_aware_lb_config", c.GetName())
		}
	}
}
