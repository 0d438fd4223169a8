package pipeline

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edsync/edsync/render"
	"github.com/edsync/edsync/watch"
	"github.com/edsync/edsync/writer"
)

// serviceChurn drives a pipeline through Service churn as preview environments and
// CI namespaces cause it: each cycle creates one short-lived Service, deletes
// the oldest once alive are up, flushes as the pipeline's timer would, and
// advances a fake clock by a second (the prune timer's clock).
type serviceChurn struct {
	p     *Pipeline
	store *watch.Store
	dir   string
	now   time.Time
	alive int
	n     int // Services created
}

func newChurn(tb testing.TB, dir string, alive int, pruneAfter time.Duration, declared ...string) *serviceChurn {
	tb.Helper()
	c := &serviceChurn{dir: dir, now: time.Unix(1_700_000_000, 0), alive: alive}
	c.p, c.store = newTestPipeline(tb, dir, Options{
		Declared:   declared,
		Clock:      func() time.Time { return c.now },
		PruneAfter: pruneAfter,
	})
	return c
}

func churnService(i int) string { return fmt.Sprintf("preview-%d", i) }

// cycle creates a Service of 3 endpoints, deletes the oldest alive one past
// c.alive, and flushes.
func (c *serviceChurn) cycle(tb testing.TB) {
	svc := churnService(c.n)
	c.store.Upsert("bench/"+svc+"-abcde", benchSlice(svc, svc+"-abcde", c.n*3, 3))
	if old := c.n - c.alive; old >= 0 {
		c.store.Delete("bench/" + churnService(old) + "-abcde")
	}
	c.n++
	c.step(tb)
}

// step flushes what is dirty and prunes what is due, then lets a second pass.
func (c *serviceChurn) step(tb testing.TB) {
	c.p.takeDirty()
	if r := c.p.flush(tb.Context(), c.p.coalescer.Due(c.now), false); r.Failed > 0 {
		tb.Fatal(r.Err)
	}
	c.now = c.now.Add(time.Second)
	c.p.prune(c.now)
}

// files lists the cluster files in the output folder.
func (c *serviceChurn) files(tb testing.TB) []string {
	tb.Helper()
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		tb.Fatal(err)
	}
	// The clusters' folders: an emptied cluster's is pruned with its
	// file. (.tmp/ and the lock are hidden.)
	var out []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out
}

// Service churn leaves edsync's state bounded: after thousands of
// short-lived Services, no more than the Services alive, the clusters
// emptied within --prune-after and the declared ones have files, memory in
// the writer and the published counts, or prune entries; the coalescer, the store and
// the pending trigger times hold nothing more. Declared clusters are never
// pruned, and 0 keeps every emptied file.
func TestServiceChurnIsBounded(t *testing.T) {
	const alive, cycles, pruneAfter = 20, 400, 30 * time.Second
	// A declared cluster of a churned Service, and one no Service has.
	declared := []string{"bench/" + churnService(3) + "/http", "bench/declared"}
	c := newChurn(t, t.TempDir(), alive, pruneAfter, declared...)
	c.p.flush(t.Context(), nil, true) // writes the declared clusters
	for range cycles {
		c.cycle(t)
	}
	// Alive: 20 Services; emptied within the last 30 s: 30 or 31; declared: 2.
	const most = alive + int(pruneAfter/time.Second) + 1 + 2
	check := func(step string, files, published, tracked, prunes int) {
		t.Helper()
		if got := len(c.files(t)); got > files {
			t.Errorf("%s: %d files in the output folder, want at most %d", step, got, files)
		}
		if got := len(c.p.published.clusters); got > published {
			t.Errorf("%s: %d published clusters kept, want at most %d", step, got, published)
		}
		if got := c.p.writer.Tracked(); got > tracked {
			t.Errorf("%s: the writer keeps %d clusters, want at most %d", step, got, tracked)
		}
		if got := len(c.p.files.pruneAt); got > prunes || len(c.p.files.prunes) > prunes {
			t.Errorf("%s: %d clusters (%d items) waiting to be pruned, want at most %d", step, got, len(c.p.files.prunes), prunes)
		}
		if n := c.p.coalescer.Len() + len(c.p.triggers) + len(c.p.dirty); n > 0 {
			t.Errorf("%s: %d keys left in the coalescer, triggers and dirty set", step, n)
		}
		if got := c.store.Len(); got > alive {
			t.Errorf("%s: the store holds %d slices, want at most %d", step, got, alive)
		}
	}
	check("under churn", most, alive+2, alive+2, 31)
	if got := len(c.files(t)); got < alive+30 {
		t.Errorf("under churn: %d files, want the %d emptied within --prune-after kept too", got, 30)
	}
	if got := c.p.published.clusters; len(got) < alive {
		t.Errorf("%d published clusters known, fewer than the %d Services alive", len(got), alive)
	}

	// Every Service gone and --prune-after passed: the declared files stay.
	for i := c.n - alive; i < c.n; i++ {
		c.store.Delete("bench/" + churnService(i) + "-abcde")
	}
	c.step(t)
	c.now = c.now.Add(pruneAfter)
	c.p.prune(c.now)
	check("all gone", 2, 2, 2, 0)
	want := map[string]bool{"bench_preview-3_http": true, "bench_declared": true}
	for _, f := range c.files(t) {
		if !want[f] {
			t.Errorf("%s left after --prune-after", f)
		}
	}

	// A Service that comes back before its file is pruned keeps its file.
	back := newChurn(t, t.TempDir(), 1, pruneAfter)
	back.cycle(t)
	back.store.Delete("bench/" + churnService(0) + "-abcde")
	back.step(t)
	back.store.Upsert("bench/"+churnService(0)+"-abcde", benchSlice(churnService(0), churnService(0)+"-abcde", 0, 3))
	back.step(t)
	back.now = back.now.Add(2 * pruneAfter)
	back.p.prune(back.now)
	if got := back.files(t); len(got) != 1 || !strings.HasPrefix(got[0], "bench_preview-0_") {
		t.Errorf("a Service back before --prune-after: files %q, want its file kept", got)
	}

	// --prune-after 0 keeps the emptied files, but not their memory.
	keep := newChurn(t, t.TempDir(), 5, 0)
	for range 100 {
		keep.cycle(t)
	}
	if got := len(keep.files(t)); got != 100 {
		t.Errorf("--prune-after 0: %d files, want all 100 kept", got)
	}
	if got := keep.p.writer.Tracked(); got > 5 {
		t.Errorf("--prune-after 0: the writer keeps %d clusters, want at most 5", got)
	}
}

// BenchmarkServiceChurn: short-lived Services created and deleted through
// the pipeline, never more than 50 alive, --prune-after 1m with a clock
// advancing a second per cycle. Reports the heap in use and the files in
// the output folder after b.N cycles: both must stay flat as b.N grows.
func BenchmarkServiceChurn(b *testing.B) {
	c := newChurn(b, benchDir(b), 50, time.Minute)
	for range 200 { // a steady state first
		c.cycle(b)
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	for b.Loop() {
		c.cycle(b)
	}
	b.StopTimer()
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc), "heap-bytes")
	b.ReportMetric(float64(after.HeapAlloc)-float64(before.HeapAlloc), "heap-growth-bytes")
	b.ReportMetric(float64(len(c.files(b))), "files")
	b.ReportMetric(float64(len(c.p.published.clusters)), "clusters")
}

// The running pipeline removes an emptied file once --prune-after has
// passed on its clock, and keeps it until then.
func TestPruneRunsOnThePipelineClock(t *testing.T) {
	f := newFolder(t)
	f.opts.PruneAfter = time.Hour
	src := filepath.Join(f.in, "web.yaml")
	replaceFile(t, src, manifest("web", "10.0.0.1"))
	// Time runs, as the debounce needs; the test moves it on by hours.
	var offset atomic.Int64
	f.opts.Clock = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	pruned := make(chan []string, 10)
	f.opts.OnPrune = func(c []string) { pruned <- c }
	tp := f.start(t)
	file := filepath.Join(f.out, "default_web_http", "eds.json")
	tp.WaitCluster(t, "default/web/http")
	if err := os.Remove(src); err != nil {
		t.Fatal(err)
	}
	tp.WaitCluster(t, "default/web/http")
	if cla := readAsEnvoy(t, file); len(cla.Endpoints) != 0 {
		t.Fatalf("not emptied: %v", cla)
	}

	offset.Store(int64(61 * time.Minute))
	tp.p.objectsChanged() // a wake-up: the loop looks at its timers again
	select {
	case got := <-pruned:
		if !slices.Equal(got, []string{"default/web/http"}) {
			t.Errorf("pruned %q", got)
		}
	case <-time.After(time.Minute): // a failure guard, not a timing assertion
		t.Fatal("the emptied file was not pruned")
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still there after --prune-after: %v", file, err)
	}
}

// A cluster name one Service gives up and another takes in the same flush
// is in the batch twice, released then live: the live one must stay
// published (counted, and known to belong to its new Service, which is how
// a lost file of it is found to render again).
func TestClusterNameHandedOverInOneFlush(t *testing.T) {
	ren, err := render.New(render.Options{ClusterNameTemplate: "{{.Namespace}}/{{.Port}}"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := &serviceChurn{dir: dir, now: time.Unix(1_700_000_000, 0)}
	c.p, c.store = newTestPipeline(t, dir, Options{
		Renderer:   ren,
		Clock:      func() time.Time { return c.now },
		PruneAfter: time.Minute,
	})

	// Both Services name their port's cluster bench/http: a goes and b
	// comes in one flush, which releases the name and hands it to b.
	c.store.Upsert("bench/a-1", benchSlice("a", "a-1", 0, 3))
	c.step(t)
	c.store.Delete("bench/a-1")
	c.store.Upsert("bench/b-1", benchSlice("b", "b-1", 10, 3))
	c.step(t)

	const name = "bench/http"
	if got, want := c.p.published.serviceOf(name), (render.ServiceKey{Namespace: "bench", Name: "b"}); got != want {
		t.Errorf("cluster %s belongs to %v, want %v", name, got, want)
	}
	if _, due := c.p.files.pruneAt[name]; due {
		t.Errorf("cluster %s is due for pruning though b publishes it", name)
	}
	c.now = c.now.Add(2 * time.Minute)
	c.p.prune(c.now)
	file, err := writer.LayoutFolders.Path(dir, name, writer.FormatJSON)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file); err != nil {
		t.Errorf("b's file: %v", err)
	}
}
