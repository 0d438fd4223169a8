package pipeline

import (
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/edsync/edsync/internal/testutil"
	"github.com/edsync/edsync/render"
	"github.com/edsync/edsync/watch"
	"github.com/edsync/edsync/writer"
)

// Shorter names for the shared helpers.
var (
	readAsEnvoy = testutil.ReadAsEnvoy
	addresses   = testutil.Addresses
	manifest    = testutil.Manifest
	replaceFile = testutil.ReplaceFile
)

// newTestPipeline makes a pipeline as New does, writing JSON into out with
// a default renderer, no debounce and discarded logs unless o says
// otherwise. Without o.NewSource the test drives its store and flushes.
func newTestPipeline(tb testing.TB, out string, o Options) (*Pipeline, *watch.Store) {
	tb.Helper()
	if o.Renderer == nil {
		ren, err := render.New(render.Options{})
		if err != nil {
			tb.Fatal(err)
		}
		o.Renderer = ren
	}
	if o.Writer == nil {
		w, err := writer.New(writer.Options{Dir: out, Format: writer.FormatJSON})
		if err != nil {
			tb.Fatal(err)
		}
		o.Writer = w
	}
	p, err := New(o)
	if err != nil {
		tb.Fatal(err)
	}
	return p, p.store.(*watch.Store)
}

// folder is a pipeline's set-up on a folder of manifests (in) and an output
// folder (out): change opts, render and the Service and Node settings of
// the folder's source, then start it.
type folder struct {
	in, out       string
	opts          Options
	render        render.Options
	watchServices bool
	nodes         watch.NodeOptions
}

func newFolder(t *testing.T) *folder {
	return &folder{in: t.TempDir(), out: t.TempDir(), opts: Options{
		Debounce: time.Millisecond, MaxDelay: 10 * time.Millisecond, SyncTimeout: time.Minute,
	}}
}

// start runs the pipeline on the folder, its source a watch.Dir.
func (f *folder) start(t *testing.T) *testPipeline {
	t.Helper()
	o := f.opts
	ren, err := render.New(f.render)
	if err != nil {
		t.Fatal(err)
	}
	o.Renderer = ren
	o.WatchObjects = f.watchServices || f.nodes.All || f.nodes.Name != ""
	o.NodeName, o.NodeTopology = f.nodes.Name, f.nodes.All
	o.NewSource = func(store *watch.Store, objects *watch.Objects) (watch.Source, error) {
		return watch.NewDir(watch.DirOptions{Dir: f.in, Store: store, Logger: o.Logger,
			Objects: objects, WatchServices: f.watchServices, Nodes: f.nodes})
	}
	return startTest(t, f.out, o)
}

// testPipeline is a running pipeline and the reports of its flushes.
type testPipeline struct {
	p *Pipeline
	*testutil.Reports[Report]
	notices chan render.ServiceKey
}

// startTest runs, until the test ends, a pipeline made by newTestPipeline.
func startTest(t *testing.T, out string, o Options) *testPipeline {
	t.Helper()
	tp := newRun()
	p, _ := newTestPipeline(t, out, tp.hook(o))
	tp.run(t, p)
	return tp
}

func newRun() *testPipeline {
	return &testPipeline{
		Reports: testutil.NewReports(func(r Report) []string { return r.Clusters }),
		notices: make(chan render.ServiceKey, 100),
	}
}

// hook returns o with the flush and notify hooks feeding tp.
func (tp *testPipeline) hook(o Options) Options {
	o.OnFlush = tp.Report
	o.OnNotify = func(k render.ServiceKey) {
		select {
		case tp.notices <- k:
		default:
		}
	}
	return o
}

// run runs p until the test ends.
func (tp *testPipeline) run(t *testing.T, p *Pipeline) {
	tp.p = p
	tp.Run(t, p.Run)
}

// countSkips is a Metrics that counts the skips by reason.
type countSkips struct {
	noMetrics
	mu    sync.Mutex
	count map[string]int
}

func (c *countSkips) Skipped(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.count == nil {
		c.count = make(map[string]int)
	}
	c.count[reason]++
}

func (c *countSkips) get(reason string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count[reason]
}

// discard is a logger that drops everything.
var discard = slog.New(slog.DiscardHandler)
