package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	// The typed configs the example bootstrap names, so its Anys resolve.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"

	"github.com/edsync/edsync/writer"
)

// The example Envoy bootstrap must be valid, and each of its EDS clusters
// must read a file that edsync, run on the example slices with
// --output-dir /var/run/edsync, writes with the CLA that cluster expects.
func TestExampleEnvoyConfigMatchesWhatEdsyncWrites(t *testing.T) {
	data, err := os.ReadFile("examples/envoy/envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	boot := parseBootstrap(t, "examples/envoy/envoy.yaml", data)

	out := t.TempDir()
	if code, _, stderr := edsync(t, "--from-dir", "examples/endpointslices", "--once", "--output-dir", out); code != 0 {
		t.Fatalf("edsync: exit %d\n%s", code, stderr)
	}
	var eds int
	for _, c := range boot.GetStaticResources().GetClusters() {
		if c.GetType().String() != "EDS" {
			continue
		}
		eds++
		want := c.GetEdsClusterConfig().GetServiceName()
		path := c.GetEdsClusterConfig().GetEdsConfig().GetPathConfigSource().GetPath()
		if want == "" || path == "" {
			t.Errorf("cluster %s: want eds_cluster_config.service_name and a path_config_source", c.Name)
			continue
		}
		file, err := writer.LayoutFolders.Path("", want, writer.FormatJSON)
		if err != nil {
			t.Fatal(err)
		}
		if path != filepath.Join("/var/run/edsync", file) {
			t.Errorf("cluster %s reads %s; edsync writes %s to /var/run/edsync/%s", c.Name, path, want, file)
			continue
		}
		cla := readAsEnvoy(t, filepath.Join(out, file))
		if cla.ClusterName != want {
			t.Errorf("cluster %s: file holds %q, Envoy expects %q", c.Name, cla.ClusterName, want)
		}
		if len(addresses(cla)) == 0 {
			t.Errorf("cluster %s: no endpoints in %s", c.Name, file)
		}
	}
	if eds != 4 {
		t.Errorf("found %d EDS clusters in the example, want 4", eds)
	}
}

// The README's first two lines of commands are what a newcomer runs.
func TestReadmeStartsWithTheTwoCommands(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "    ") || strings.HasPrefix(line, "$ ") {
			cmds = append(cmds, strings.TrimSpace(strings.TrimPrefix(line, "$ ")))
		}
		if len(cmds) == 2 {
			break
		}
	}
	want := []string{
		"go run . --from-dir examples/endpointslices --dry-run --once --output-dir /var/run/edsync",
		"go test ./... && go test -C test/e2e -count=1 -timeout 60m",
	}
	if !slices.Equal(cmds, want) {
		t.Errorf("README's first commands are %q, want %q", cmds, want)
	}
}
