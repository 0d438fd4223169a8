package pipeline

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edsync/edsync/render"
	"github.com/edsync/edsync/watch"
)

func TestPipelineFollowsTheFolder(t *testing.T) {
	f := newFolder(t)
	f.opts.Declared = []string{"default/declared"}
	src := filepath.Join(f.in, "web.yaml")
	replaceFile(t, src, manifest("web", "10.0.0.2", "10.0.0.1"))
	tp := f.start(t)
	file := filepath.Join(f.out, "default_web_http", "eds.json")

	r := tp.WaitCluster(t, "default/web/http")
	if !r.Initial {
		t.Errorf("first flush is not the initial one: %+v", r)
	}
	if got, want := addresses(readAsEnvoy(t, file)), []string{"10.0.0.1:8080 HEALTHY", "10.0.0.2:8080 HEALTHY"}; !slices.Equal(got, want) {
		t.Errorf("initial file: %v, want %v", got, want)
	}
	// A declared cluster with no Service is written empty so Envoy can start.
	if cla := readAsEnvoy(t, filepath.Join(f.out, "default_declared", "eds.json")); cla.ClusterName != "default/declared" || len(cla.Endpoints) != 0 {
		t.Errorf("declared cluster file: %v", cla)
	}

	replaceFile(t, src, manifest("web", "10.0.0.3"))
	tp.WaitCluster(t, "default/web/http")
	if got, want := addresses(readAsEnvoy(t, file)), []string{"10.0.0.3:8080 HEALTHY"}; !slices.Equal(got, want) {
		t.Errorf("after the change: %v, want %v", got, want)
	}

	// All slices gone: a CLA with the name and no endpoints clears Envoy's hosts.
	if err := os.Remove(src); err != nil {
		t.Fatal(err)
	}
	tp.WaitCluster(t, "default/web/http")
	if cla := readAsEnvoy(t, file); cla.ClusterName != "default/web/http" || len(cla.Endpoints) != 0 {
		t.Errorf("after the slices went: %v, want the name and no endpoints", cla)
	}
}

// On shutdown, changes still waiting for their debounce are written.
func TestShutdownFlushesPendingChanges(t *testing.T) {
	f := newFolder(t)
	f.opts.Debounce, f.opts.MaxDelay = time.Hour, time.Hour
	src := filepath.Join(f.in, "web.yaml")
	replaceFile(t, src, manifest("web", "10.0.0.1"))
	tp := f.start(t)
	tp.WaitCluster(t, "default/web/http")
	for len(tp.notices) > 0 { // notices of the initial sync
		<-tp.notices
	}

	replaceFile(t, src, manifest("web", "10.0.0.9"))
	select {
	case <-tp.notices: // the change reached the pipeline; its debounce is an hour
	case <-time.After(30 * time.Second):
		t.Fatal("the change never reached the pipeline")
	}
	if err := tp.Stop(); err != nil {
		t.Fatalf("Run returned %v on shutdown, want nil", err)
	}
	if got := addresses(readAsEnvoy(t, filepath.Join(f.out, "default_web_http", "eds.json"))); !slices.Equal(got, []string{"10.0.0.9:8080 HEALTHY"}) {
		t.Errorf("after shutdown the file holds %v, want the pending change", got)
	}
}

// A failed write keeps the old file and is retried until it succeeds.
func TestFailedWriteIsRetried(t *testing.T) {
	f := newFolder(t)
	src := filepath.Join(f.in, "web.yaml")
	replaceFile(t, src, manifest("web", "10.0.0.1"))
	target := filepath.Join(f.out, "default_web_http", "eds.json")
	// A folder where the file should go makes the write fail, even as root.
	if err := os.MkdirAll(target, 0o755); err != nil {
		t.Fatal(err)
	}
	tp := f.start(t)
	r := tp.WaitCluster(t, "default/web/http")
	if r.Failed != 1 {
		t.Fatalf("first flush: %+v, want one failure", r)
	}
	if err := os.Remove(target); err != nil {
		t.Fatal(err)
	}
	tp.Wait(t, "retry of the failed write", func(r Report) bool { return r.Retry && r.Written == 1 })
	if got := addresses(readAsEnvoy(t, target)); !slices.Equal(got, []string{"10.0.0.1:8080 HEALTHY"}) {
		t.Errorf("after the retry: %v", got)
	}
}

// wantErr checks what a probe would say: err nil if want is "", else an
// error containing want.
func wantErr(t *testing.T, probe string, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("%s: %v, want ok", probe, err)
	case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
		t.Errorf("%s: %v, want an error with %q", probe, err, want)
	}
}

// /healthz follows the loop: not started, idle, busy, busy too long, stopped.
func TestHealthzSaysWhenTheLoopIsStuck(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	h := newHealth(func() time.Time { return now })

	wantErr(t, "/healthz", h.alive(), "has not started")
	h.start()
	wantErr(t, "/healthz", h.alive(), "")
	h.begin("a flush of 3 Services")
	now = now.Add(stuckAfter)
	wantErr(t, "/healthz", h.alive(), "")
	now = now.Add(time.Second)
	wantErr(t, "/healthz", h.alive(), "busy with a flush of 3 Services for 1m1s")
	h.end()
	wantErr(t, "/healthz", h.alive(), "")
	h.stop("source: folder is gone")
	wantErr(t, "/healthz", h.alive(), "stopped: source: folder is gone")
}

// manualSource is a source whose first sync the test decides.
type manualSource struct {
	running chan struct{}
	synced  chan struct{}
}

func (s *manualSource) Run(ctx context.Context) error {
	close(s.running)
	<-ctx.Done()
	return nil
}

func (s *manualSource) Synced() <-chan struct{} { return s.synced }

func TestReadyzWaitsForTheFirstSync(t *testing.T) {
	out := t.TempDir()
	src := &manualSource{running: make(chan struct{}), synced: make(chan struct{})}
	o := Options{Declared: []string{"default/declared"}, NewSource: func(*watch.Store, *watch.Objects) (watch.Source, error) { return src, nil }}
	tp := newRun()
	p, _ := newTestPipeline(t, out, tp.hook(o))
	wantErr(t, "/readyz", p.Ready(), "not ready: the pipeline has not started")

	tp.run(t, p)
	<-src.running
	wantErr(t, "/readyz", tp.p.Ready(), "not ready: waiting for the first full sync")
	wantErr(t, "/healthz", tp.p.Alive(), "") // waiting is not being stuck

	close(src.synced)
	tp.WaitCluster(t, "default/declared")
	wantErr(t, "/readyz", tp.p.Ready(), "")
}

// A failed write of the first flush keeps edsync not ready until a retry
// writes it; once ready, a later failure changes nothing (the old files
// keep serving).
func TestReadyzAfterAFailedInitialWrite(t *testing.T) {
	f := newFolder(t)
	src := filepath.Join(f.in, "web.yaml")
	replaceFile(t, src, manifest("web", "10.0.0.1"))
	target := filepath.Join(f.out, "default_web_http", "eds.json")
	if err := os.MkdirAll(target, 0o755); err != nil { // a folder in the way fails the write, even as root
		t.Fatal(err)
	}
	tp := f.start(t)

	if r := tp.WaitCluster(t, "default/web/http"); r.Failed != 1 {
		t.Fatalf("first flush: %+v, want one failure", r)
	}
	wantErr(t, "/readyz", tp.p.Ready(), "not every file of the first flush is written (1 pending); retrying (the reasons are in edsync's log)")

	if err := os.Remove(target); err != nil {
		t.Fatal(err)
	}
	for r := tp.Next(t); !r.Retry || r.Written != 1; r = tp.Next(t) {
	}
	wantErr(t, "/readyz", tp.p.Ready(), "")

	// Fail a later write: still ready. Not with a folder in the file's
	// way: the output folder watch writes a removed file again at once, so
	// the folder would race with that write. A file where the temp folder
	// should be fails every write instead.
	tmp := filepath.Join(f.out, ".tmp")
	if err := os.RemoveAll(tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tmp, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	replaceFile(t, src, manifest("web", "10.0.0.2"))
	if r := tp.WaitCluster(t, "default/web/http"); r.Failed != 1 {
		t.Fatalf("later flush: %+v, want one failure", r)
	}
	wantErr(t, "/readyz", tp.p.Ready(), "")
}

// A pipeline without a source is refused, not a crash on Run.
func TestNoSource(t *testing.T) {
	p, _ := newTestPipeline(t, t.TempDir(), Options{})
	if err := p.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "no source") {
		t.Errorf("Run without a source: %v, want an error", err)
	}
	ren, err := render.New(render.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(Options{Renderer: ren, Writer: p.writer, NewSource: func(*watch.Store, *watch.Objects) (watch.Source, error) { return nil, nil }})
	if err == nil || !strings.Contains(err.Error(), "no source") {
		t.Errorf("New with a nil source: %v, want an error", err)
	}
	if _, err := New(Options{Renderer: ren}); err == nil {
		t.Error("New without a Writer: want an error")
	}
}
