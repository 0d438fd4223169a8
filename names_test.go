package main

import (
	"strings"
	"testing"

	"github.com/edsync/edsync/writer"
)

// A cluster name whose file name would pass the file system's 255 bytes is
// published under a shortened file name, and a restart that no longer
// publishes it still knows that file by the cluster_name inside it and
// empties it like any stale file.
func TestLongClusterNamesArePublished(t *testing.T) {
	out := t.TempDir()
	long := "{{.Namespace}}/{{.Service}}{{with .Port}}/{{.}}{{end}}/" + strings.Repeat("x", 250)
	args := []string{"--from-dir", "examples/endpointslices", "--once", "--output-dir", out, "--cluster-name-template", long}
	if code, _, stderr := edsync(t, args...); code != 0 {
		t.Fatalf("first run: exit %d\n%s", code, stderr)
	}
	web := "shop/web/http/" + strings.Repeat("x", 250)
	path, err := writer.LayoutFolders.Path(out, web, writer.FormatJSON)
	if err != nil {
		t.Fatal(err)
	}
	if cla := readAsEnvoy(t, path); cla.ClusterName != web || len(addresses(cla)) != 4 {
		t.Fatalf("%s: cluster %q with %v, want %q with 4 endpoints", path, cla.ClusterName, addresses(cla), web)
	}

	if code, _, stderr := edsync(t, append(args, "--service", "cache/redis")...); code != 0 {
		t.Fatalf("second run: exit %d\n%s", code, stderr)
	}
	if cla := readAsEnvoy(t, path); cla.ClusterName != web || len(cla.Endpoints) != 0 {
		t.Errorf("after a restart without shop/web: %q with %v, want it emptied", cla.ClusterName, addresses(cla))
	}
}
