package pipeline

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	"github.com/edsync/edsync/internal/testutil"
	"github.com/edsync/edsync/render"
	"github.com/edsync/edsync/writer"
)

// checkedCDS writes the CDS file after checking Envoy's ordering rules
// against the disk at that very moment (the pipeline's goroutine writes
// every file, so nothing moves meanwhile): every cluster it names has its
// EDS file, and every cluster it drops still has its endpoints (its file
// is emptied only after).
type checkedCDS struct {
	t     *testing.T
	w     *writer.CDS
	dir   string
	named map[string]bool
	// versions holds the sets of clusters of the writes that replaced the
	// file.
	versions [][]string
}

func (c *checkedCDS) Version() string { return c.w.Version() }

func newCheckedCDS(t *testing.T, dir string) *checkedCDS {
	w, err := writer.NewCDS(writer.CDSOptions{Path: filepath.Join(dir, "cds+clusters.json")})
	if err != nil {
		t.Fatal(err)
	}
	return &checkedCDS{t: t, w: w, dir: dir, named: map[string]bool{}}
}

func (c *checkedCDS) Write(clusters []*clusterv3.Cluster) (bool, error) {
	c.t.Helper()
	now := make(map[string]bool, len(clusters))
	var names []string
	for _, cl := range clusters {
		path := cl.GetEdsClusterConfig().GetEdsConfig().GetPathConfigSource().GetPath()
		if path != filepath.Join(c.dir, fileName(c.t, cl.Name)) {
			c.t.Errorf("cluster %s reads %s, not its file in the output folder", cl.Name, path)
		}
		// ReadAsEnvoy fails the test if the file is missing or invalid.
		testutil.ReadAsEnvoy(c.t, path)
		now[cl.Name] = true
		names = append(names, cl.Name)
	}
	for name := range c.named {
		if now[name] {
			continue
		}
		path := filepath.Join(c.dir, fileName(c.t, name))
		if n := len(testutil.Addresses(testutil.ReadAsEnvoy(c.t, path))); n == 0 {
			c.t.Errorf("cluster %s leaves the CDS file after its EDS file was emptied", name)
		}
	}
	written, err := c.w.Write(clusters)
	if err == nil {
		c.named = now
		if written {
			c.versions = append(c.versions, names)
		}
	}
	return written, err
}

// fileName is the path of cluster's file relative to the output folder.
func fileName(t *testing.T, cluster string) string {
	t.Helper()
	name, err := writer.LayoutFolders.Path("", cluster, writer.FormatJSON)
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// cdsMetrics records what the pipeline reports of the CDS file.
type cdsMetrics struct {
	noMetrics
	writes map[string]int
	last   int // clusters in the file
	added  []time.Duration
}

func (m *cdsMetrics) CDSWrote(result string, clusters int) {
	m.writes[result]++
	if result != CDSResultFailed {
		m.last = clusters
	}
}
func (m *cdsMetrics) CDSClusterAdded(d time.Duration) { m.added = append(m.added, d) }

// cdsStep is the loop's work at a moment: flush what is due, write the
// CDS file if due.
func cdsStep(ctx context.Context, p *Pipeline, now time.Time) {
	p.takeDirty()
	if due := p.coalescer.Due(now); len(due) > 0 {
		p.flush(ctx, due, false)
	}
	if at, due := p.cdsDue(); due && !now.Before(at) {
		p.writeCDS(ctx)
	}
}

// The CDS file names a cluster only once its EDS file is on disk, drops it
// before its EDS file is emptied, always names the declared clusters, and
// is not rewritten for a Service that comes and goes within the CDS
// debounce.
func TestCDSOrder(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(1_700_000_000, 0)
	cds := newCheckedCDS(t, dir)
	m := &cdsMetrics{writes: map[string]int{}}
	p, store := newTestPipeline(t, dir, Options{
		Clock:       func() time.Time { return now },
		Declared:    []string{"bench/declared/http"},
		CDS:         cds,
		CDSDebounce: 5 * time.Second,
		Metrics:     m,
	})
	ctx := t.Context()
	store.Upsert("bench/web-1", benchSlice("web", "web-1", 0, 2))
	p.initialFlush(ctx)
	if err := p.writeCDS(ctx); err != nil {
		t.Fatal(err)
	}
	want := func(step string, names ...string) {
		t.Helper()
		got, _ := testutil.ReadCDSAsEnvoy(t, cds.w.Path())
		if len(got) != len(names) {
			t.Errorf("%s: CDS file holds %d clusters, want %v", step, len(got), names)
		}
		for _, n := range names {
			if got[n] == nil {
				t.Errorf("%s: CDS file lacks %s", step, n)
			}
		}
	}
	want("initial", "bench/web/http", "bench/declared/http")

	if m.writes[CDSResultWritten] != 1 || m.last != 2 {
		t.Errorf("after the first write: writes %v, %d clusters", m.writes, m.last)
	}

	// A new Service: its EDS file at once, its cluster after the debounce.
	arrived := now
	store.Upsert("bench/api-1", benchSlice("api", "api-1", 10, 1))
	cdsStep(ctx, p, now)
	testutil.ReadAsEnvoy(t, filepath.Join(dir, fileName(t, "bench/api/http")))
	want("api's EDS file written, CDS debounced", "bench/web/http", "bench/declared/http")
	now = now.Add(5 * time.Second)
	cdsStep(ctx, p, now)
	want("after the debounce", "bench/api/http", "bench/web/http", "bench/declared/http")
	if !slices.Equal(m.added, []time.Duration{now.Sub(arrived)}) || m.last != 3 {
		t.Errorf("cluster added after %v (want [%v]), %d clusters in the file", m.added, now.Sub(arrived), m.last)
	}

	// A Service gone: its file keeps its endpoints until the CDS file
	// drops it (checkedCDS checks), then is emptied.
	store.Delete("bench/web-1")
	cdsStep(ctx, p, now)
	webFile := filepath.Join(dir, fileName(t, "bench/web/http"))
	if n := len(testutil.Addresses(testutil.ReadAsEnvoy(t, webFile))); n != 2 {
		t.Errorf("web's file emptied while the CDS file names it: %d endpoints", n)
	}
	now = now.Add(5 * time.Second)
	cdsStep(ctx, p, now)
	want("web gone", "bench/api/http", "bench/declared/http")
	if n := len(testutil.Addresses(testutil.ReadAsEnvoy(t, webFile))); n != 0 {
		t.Errorf("web's file after the CDS file dropped it: %d endpoints, want 0", n)
	}

	// A Service that comes and goes within the debounce: no new version.
	versions := len(cds.versions)
	store.Upsert("bench/flap-1", benchSlice("flap", "flap-1", 20, 1))
	cdsStep(ctx, p, now)
	now = now.Add(time.Second)
	store.Delete("bench/flap-1")
	cdsStep(ctx, p, now)
	now = now.Add(5 * time.Second)
	cdsStep(ctx, p, now)
	if len(cds.versions) != versions {
		t.Errorf("a flapping Service changed the CDS file: %v", cds.versions[versions:])
	}
	if m.writes[CDSResultUnchanged] != 1 {
		t.Errorf("writes %v, want the flap's one unchanged", m.writes)
	}
	if _, due := p.cdsDue(); due {
		t.Error("a CDS write still due")
	}

	// A cluster whose EDS file fails to write stays out until a retry
	// writes it.
	brokenFile := filepath.Join(dir, fileName(t, "bench/broken/http"))
	if err := os.MkdirAll(brokenFile, 0o755); err != nil {
		t.Fatal(err)
	}
	store.Upsert("bench/broken-1", benchSlice("broken", "broken-1", 30, 1))
	cdsStep(ctx, p, now)
	if !p.writer.IsPending("bench/broken/http") {
		t.Fatal("the write over a folder did not fail")
	}
	now = now.Add(5 * time.Second)
	cdsStep(ctx, p, now)
	want("broken's file not written", "bench/api/http", "bench/declared/http")
	if err := os.Remove(brokenFile); err != nil {
		t.Fatal(err)
	}
	if res := p.retry(ctx); res.Written != 1 {
		t.Fatalf("retry: %+v", res)
	}
	now = now.Add(5 * time.Second)
	cdsStep(ctx, p, now)
	want("broken's file written by the retry", "bench/api/http", "bench/broken/http", "bench/declared/http")
	store.Delete("bench/broken-1")
	cdsStep(ctx, p, now)
	now = now.Add(5 * time.Second)
	cdsStep(ctx, p, now)

	// The declared cluster stays, with no Service.
	want("end", "bench/api/http", "bench/declared/http")
	if !slices.Contains(cds.versions[0], "bench/declared/http") {
		t.Errorf("first version %v lacks the declared cluster", cds.versions[0])
	}
}

// At start the CDS file of an earlier run may name any cluster: a file of
// that run whose cluster is not published any more is emptied only after
// the first CDS write.
func TestCDSFirstWriteBeforeStaleFilesAreEmptied(t *testing.T) {
	dir := t.TempDir()
	cds := newCheckedCDS(t, dir)
	// An earlier run published old/svc/http and named it in its CDS file.
	cds.named["bench/old/http"] = true
	{
		p, store := newTestPipeline(t, dir, Options{})
		store.Upsert("bench/old-1", benchSlice("old", "old-1", 0, 1))
		p.initialFlush(t.Context())
	}
	p, store := newTestPipeline(t, dir, Options{CDS: cds, CDSDebounce: time.Second})
	store.Upsert("bench/web-1", benchSlice("web", "web-1", 10, 1))
	p.initialFlush(t.Context())
	oldFile := filepath.Join(dir, fileName(t, "bench/old/http"))
	if n := len(testutil.Addresses(testutil.ReadAsEnvoy(t, oldFile))); n != 1 {
		t.Fatalf("old's file emptied before the first CDS write: %d endpoints", n)
	}
	if err := p.writeCDS(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := len(testutil.Addresses(testutil.ReadAsEnvoy(t, oldFile))); n != 0 {
		t.Errorf("old's file after the first CDS write: %d endpoints, want 0", n)
	}
}

// failingCDS fails its writes while fail is set.
type failingCDS struct {
	fail  bool
	wrote int
}

func (f *failingCDS) Version() string { return "" }

func (f *failingCDS) Write([]*clusterv3.Cluster) (bool, error) {
	if f.fail {
		return false, errors.New("disk full")
	}
	f.wrote++
	return true, nil
}

// With a CDS file, edsync is ready only once it is written: Envoy refuses
// a bootstrap whose CDS path does not exist.
func TestReadyWaitsForTheCDSFile(t *testing.T) {
	cds := &failingCDS{fail: true}
	p, store := newTestPipeline(t, t.TempDir(), Options{CDS: cds, CDSDebounce: time.Second})
	p.health.start()
	store.Upsert("bench/web-1", benchSlice("web", "web-1", 0, 1))
	p.initialFlush(t.Context())
	if err := p.writeCDS(t.Context()); err == nil {
		t.Fatal("the failing CDS write gave no error")
	}
	if err := p.Ready(); err == nil || !strings.Contains(err.Error(), "CDS file") {
		t.Errorf("ready with no CDS file written: %v", err)
	}
	if _, due := p.cdsDue(); !due {
		t.Error("no retry of the CDS write due")
	}
	cds.fail = false
	if err := p.writeCDS(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := p.Ready(); err != nil {
		t.Errorf("not ready after the CDS file was written: %v", err)
	}
}

// A declared cluster whose Service goes away stays in the CDS file as it
// was: no rewrite, no re-warming in Envoy.
func TestCDSDeclaredClusterOutlivesItsService(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(1_700_000_000, 0)
	cds := newCheckedCDS(t, dir)
	p, store := newTestPipeline(t, dir, Options{
		Clock: func() time.Time { return now }, Declared: []string{"bench/grpc/http"}, CDS: cds, CDSDebounce: time.Second,
	})
	s := benchSlice("grpc", "grpc-1", 0, 1)
	s.Ports[0].AppProtocol = ptrTo("grpc")
	store.Upsert("bench/grpc-1", s)
	p.initialFlush(t.Context())
	if err := p.writeCDS(t.Context()); err != nil {
		t.Fatal(err)
	}
	versions := len(cds.versions)
	store.Delete("bench/grpc-1")
	cdsStep(t.Context(), p, now)
	now = now.Add(time.Second)
	cdsStep(t.Context(), p, now)
	if len(cds.versions) != versions {
		t.Errorf("the declared cluster's entry changed when its Service went: %v", cds.versions[versions:])
	}
	got, _ := testutil.ReadCDSAsEnvoy(t, cds.w.Path())
	if c := got["bench/grpc/http"]; c == nil || c.TypedExtensionProtocolOptions == nil {
		t.Errorf("declared cluster after its Service went: %v", c)
	}
}

func ptrTo[T any](v T) *T { return &v }

// A cluster name one Service gives up and another takes in the same flush
// (a name template that drops the Service) stays in the CDS file: only the
// name's last entry in the batch counts, as for the files.
func TestCDSNameHandedOverInOneFlush(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(1_700_000_000, 0)
	cds := newCheckedCDS(t, dir)
	ren, err := render.New(render.Options{ClusterNameTemplate: "{{.Port}}"})
	if err != nil {
		t.Fatal(err)
	}
	p, store := newTestPipeline(t, dir, Options{Clock: func() time.Time { return now }, Renderer: ren, CDS: cds, CDSDebounce: time.Second})
	store.Upsert("bench/a-1", benchSlice("a", "a-1", 0, 1))
	p.initialFlush(t.Context())
	if err := p.writeCDS(t.Context()); err != nil {
		t.Fatal(err)
	}
	store.Delete("bench/a-1")
	store.Upsert("bench/b-1", benchSlice("b", "b-1", 10, 1))
	for range 2 { // b may be handed the name back for the next flush
		cdsStep(t.Context(), p, now)
	}
	now = now.Add(time.Second)
	cdsStep(t.Context(), p, now)
	got, _ := testutil.ReadCDSAsEnvoy(t, cds.w.Path())
	if got["http"] == nil {
		t.Errorf("the CDS file lost cluster http, which b publishes now: %v", got)
	}
	if a := testutil.Addresses(testutil.ReadAsEnvoy(t, filepath.Join(dir, "http", "eds.json"))); len(a) != 1 || !strings.HasPrefix(a[0], benchAddr(10)+":") {
		t.Errorf("http's file: %v, want b's endpoint", a)
	}
}

// A cluster whose EDS write failed and that a reload renames away must
// not stay in cdsState, nor enter the CDS file when the writer's retry
// later succeeds.
func TestCDSReloadForgetsAFailedCluster(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(1_700_000_000, 0)
	cds := newCheckedCDS(t, dir)
	p, store := newTestPipeline(t, dir, Options{Clock: func() time.Time { return now }, CDS: cds, CDSDebounce: time.Second})
	ctx := t.Context()
	old := filepath.Join(dir, fileName(t, "bench/web/http"))
	if err := os.MkdirAll(old, 0o755); err != nil { // the write fails
		t.Fatal(err)
	}
	store.Upsert("bench/web-1", benchSlice("web", "web-1", 0, 1))
	p.initialFlush(ctx)
	p.writeCDS(ctx)
	ren, err := render.New(render.Options{ClusterNameTemplate: `{{.Namespace}}/renamed-{{.Service}}{{with .Port}}/{{.}}{{end}}`})
	if err != nil {
		t.Fatal(err)
	}
	p.Reconfigure(Live{Renderer: ren})
	p.install()
	p.initialFlush(ctx)
	p.writeCDS(ctx)
	if _, ok := p.cds.up["bench/web/http"]; ok {
		t.Errorf("cdsState.up still holds the renamed-away cluster: %v", p.cds.up)
	}
	os.Remove(old)
	p.retry(ctx)
	now = now.Add(2 * time.Second)
	p.writeCDS(ctx)
	got, _ := testutil.ReadCDSAsEnvoy(t, cds.w.Path())
	if got["bench/web/http"] != nil {
		t.Errorf("the CDS file names bench/web/http, which no Service publishes since the reload: %v", slices.Sorted(maps.Keys(got)))
	}
}

// A declared cluster whose Service went keeps its old entry; a reload that
// drops the template it used must not take it out of the CDS file.
func TestCDSDeclaredClusterOutlivesItsTemplate(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(1_700_000_000, 0)
	cds := newCheckedCDS(t, dir)
	ren, err := render.New(render.Options{Cluster: render.ClusterOptions{Templates: map[string]*clusterv3.Cluster{"tls": {}}}})
	if err != nil {
		t.Fatal(err)
	}
	key := render.ServiceKey{Namespace: "bench", Name: "grpc"}
	ren.SetService(key, &render.ServiceInfo{Annotations: map[string]string{render.AnnotationClusterTemplate: "tls"}})
	declared := []string{"bench/grpc/http"}
	p, store := newTestPipeline(t, dir, Options{Clock: func() time.Time { return now }, Renderer: ren, Declared: declared, CDS: cds, CDSDebounce: time.Second})
	ctx := t.Context()
	store.Upsert("bench/grpc-1", benchSlice("grpc", "grpc-1", 0, 1))
	p.initialFlush(ctx)
	p.writeCDS(ctx)
	store.Delete("bench/grpc-1")
	cdsStep(ctx, p, now)
	now = now.Add(2 * time.Second)
	cdsStep(ctx, p, now)
	ren2, err := render.New(render.Options{}) // the config no longer has "tls"
	if err != nil {
		t.Fatal(err)
	}
	p.Reconfigure(Live{Renderer: ren2, Declared: declared})
	p.install()
	p.initialFlush(ctx)
	p.writeCDS(ctx)
	got, _ := testutil.ReadCDSAsEnvoy(t, cds.w.Path())
	if got["bench/grpc/http"] == nil {
		t.Errorf("declared cluster left the CDS file; file has %v, cdsState.named %v", slices.Sorted(maps.Keys(got)), p.cds.named)
	}
}

// A cluster whose EDS file is lost before the debounced CDS write (and not
// yet written again) stays out of it: Envoy would refuse the whole file.
func TestCDSLeavesOutAClusterWithoutItsFile(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(1_700_000_000, 0)
	cds := newCheckedCDS(t, dir)
	p, store := newTestPipeline(t, dir, Options{Clock: func() time.Time { return now }, CDS: cds, CDSDebounce: time.Second})
	ctx := t.Context()
	p.initialFlush(ctx)
	if err := p.writeCDS(ctx); err != nil {
		t.Fatal(err)
	}
	store.Upsert("bench/web-1", benchSlice("web", "web-1", 0, 1))
	cdsStep(ctx, p, now) // the EDS file is written; the CDS file waits
	if err := os.Remove(filepath.Join(dir, fileName(t, "bench/web/http"))); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Second)
	cdsStep(ctx, p, now) // checkedCDS fails if the file names the cluster
	if got, _ := testutil.ReadCDSAsEnvoy(t, cds.w.Path()); got["bench/web/http"] != nil {
		t.Error("the CDS file names a cluster whose EDS file is gone")
	}
	// Written again (a change, or the folder watch), it comes in.
	next := benchSlice("web", "web-1", 5, 1)
	next.ResourceVersion = "2"
	store.Upsert("bench/web-1", next)
	cdsStep(ctx, p, now)
	now = now.Add(time.Second)
	cdsStep(ctx, p, now)
	if got, _ := testutil.ReadCDSAsEnvoy(t, cds.w.Path()); got["bench/web/http"] == nil {
		t.Error("the cluster did not come back once its file was written again")
	}
}
