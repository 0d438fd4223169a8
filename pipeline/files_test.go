package pipeline

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
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

// A kill between the making of a cluster's folder and the rename of its
// first file into it, or between a prune's removal of an emptied file and
// that of its folder, leaves a cluster folder without a file
// (TestKill9UnderChurn met both). At the next start such a folder is
// handled as a file of a cluster no Service publishes: emptied, then
// pruned with its folder; one whose cluster is published gets its file in
// that folder (an Envoy may watch it); a folder that holds anything else is
// not edsync's and is left alone.
func TestFolderLeftWithoutItsFile(t *testing.T) {
	out := t.TempDir()
	for _, dir := range []string{"bench_gone_http", "bench_web_http", "notes"} {
		if err := os.Mkdir(filepath.Join(out, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	notes := filepath.Join(out, "notes", "todo.txt")
	if err := os.WriteFile(notes, []byte("someone's"), 0o644); err != nil {
		t.Fatal(err)
	}
	webFolder, err := os.Stat(filepath.Join(out, "bench_web_http"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	p, store := newTestPipeline(t, out, Options{Clock: func() time.Time { return now }, PruneAfter: time.Minute})
	store.Upsert("bench/web-1", benchSlice("web", "web-1", 0, 3))
	if r := p.initialFlush(t.Context()); r.Failed > 0 {
		t.Fatal(r.Err)
	}

	if got, err := os.Stat(filepath.Join(out, "bench_web_http")); err != nil || !os.SameFile(got, webFolder) {
		t.Errorf("bench/web/http's folder was made again (%v): an Envoy watching it would never see its file", err)
	}
	if cla := readAsEnvoy(t, filepath.Join(out, "bench_web_http", "eds.json")); len(addresses(cla)) != 3 {
		t.Errorf("bench/web/http: %v", addresses(cla))
	}
	gone := filepath.Join(out, "bench_gone_http", "eds.json")
	if _, err := os.Stat(gone); err != nil {
		t.Fatalf("the folder left without a file was not emptied like a stale file: %v", err)
	}
	if cla := readAsEnvoy(t, gone); cla.ClusterName != "bench/gone/http" || len(cla.Endpoints) != 0 {
		t.Errorf("%s: %v, want the cluster's name and no endpoints", gone, cla)
	}

	now = now.Add(time.Minute)
	p.prune(now)
	if _, err := os.Stat(filepath.Dir(gone)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the folder left without a file is still there after --prune-after: %v", err)
	}
	if data, err := os.ReadFile(notes); err != nil || string(data) != "someone's" {
		t.Errorf("a folder that is not edsync's was touched: %q, %v", data, err)
	}
	if _, err := os.Stat(filepath.Join(out, "notes", "eds.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a file was written into a folder that is not edsync's: %v", err)
	}
}
