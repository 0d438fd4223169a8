package pipeline

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// A file removed from the output folder, or replaced by someone else, is
// written again at once, though its cluster did not change: Envoy cannot
// start on a missing file. The declared cluster with no Service too.
func TestRemovedFilesAreWrittenAgain(t *testing.T) {
	f := newFolder(t)
	f.opts.Declared = []string{"default/declared"}
	replaceFile(t, filepath.Join(f.in, "web.yaml"), manifest("web", "10.0.0.1"))
	tp := f.start(t)
	web := filepath.Join(f.out, "default_web_http", "eds.json")
	declared := filepath.Join(f.out, "default_declared", "eds.json")
	tp.WaitCluster(t, "default/web/http")

	if err := os.Remove(web); err != nil {
		t.Fatal(err)
	}
	if r := tp.WaitCluster(t, "default/web/http"); r.Written != 1 {
		t.Errorf("flush after the removal: %+v, want default/web/http written", r)
	}
	if got := addresses(readAsEnvoy(t, web)); !slices.Equal(got, []string{"10.0.0.1:8080 HEALTHY"}) {
		t.Errorf("rewritten file holds %v", got)
	}

	// Renamed away, then replaced by a file of someone else's.
	if err := os.Rename(declared, declared+".bak"); err != nil {
		t.Fatal(err)
	}
	if r := tp.WaitCluster(t, "default/declared"); r.Written != 1 {
		t.Errorf("flush after the rename: %+v, want default/declared written", r)
	}
	if cla := readAsEnvoy(t, declared); cla.ClusterName != "default/declared" || len(cla.Endpoints) != 0 {
		t.Errorf("declared cluster file: %v", cla)
	}
	replaceFile(t, web, "{}")
	tp.WaitCluster(t, "default/web/http")
	if got := addresses(readAsEnvoy(t, web)); !slices.Equal(got, []string{"10.0.0.1:8080 HEALTHY"}) {
		t.Errorf("file replaced by another: rewritten with %v", got)
	}
}
