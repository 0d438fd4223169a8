package main

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/edsync/edsync/internal/testutil"
)

// Without the flags, the folder's Nodes and Services change nothing: the
// default output stays what it was.
func TestFolderNodesAndServicesIgnoredByDefault(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	replaceFile(t, filepath.Join(in, "web.yaml"), testutil.TopoSlice)
	tp := startPipeline(t, configForTest(t, "--from-dir", in, "--output-dir", out))
	tp.WaitCluster(t, "shop/web/http")
	plain := testutil.Placement(readAsEnvoy(t, filepath.Join(out, "shop_web_http", "eds.json")))

	in2, out2 := t.TempDir(), t.TempDir()
	replaceFile(t, filepath.Join(in2, "web.yaml"), testutil.TopoSlice)
	replaceFile(t, filepath.Join(in2, "nodes.yaml"), testutil.TopoNodes("z1"))
	replaceFile(t, filepath.Join(in2, "service.yaml"), testutil.TopoService(`edsync.io/overprovisioning-factor: "200"`))
	tp2 := startPipeline(t, configForTest(t, "--from-dir", in2, "--output-dir", out2))
	tp2.WaitCluster(t, "shop/web/http")
	cla := readAsEnvoy(t, filepath.Join(out2, "shop_web_http", "eds.json"))
	if got := testutil.Placement(cla); !slices.Equal(got, plain) || cla.GetPolicy() != nil {
		t.Errorf("with Nodes and a Service in the folder: %q, policy %v; want %q and none", got, cla.GetPolicy(), plain)
	}
}

// The flags of the Node and Service informers take effect at restart; the
// render options of the Topology category are live.
func TestTopologyFlagsOnReload(t *testing.T) {
	base := []string{"--dry-run", "--node-name", "n1"}
	a := configForTest(t, base...)
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--topology", "zone", "--local-zone", "z1", "--region", "r", "--endpoint-metadata", "--endpoint-metadata-key", "k"}, nil},
		{[]string{"--node-name", "n2"}, []string{"node-name"}},
		{[]string{"--node-topology", "--subzone-label", "example.com/rack"}, []string{"node-topology", "subzone-label"}},
		{[]string{"--watch-services"}, []string{"watch-services"}},
	} {
		b := configForTest(t, append(slices.Clone(base), tc.args...)...)
		if got := restartOnly(a, b); !slices.Equal(got, tc.want) {
			t.Errorf("%q: restart-only changes %q, want %q", tc.args, got, tc.want)
		}
	}
}
