package pipeline

import (
	"context"
	"log/slog"
	"slices"
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
	o.NewSource = func(store *watch.Store, objects *watch.Objects) (Source, error) {
		return watch.NewDir(watch.DirOptions{Dir: f.in, Store: store, Logger: o.Logger,
			Objects: objects, WatchServices: f.watchServices, Nodes: f.nodes})
	}
	return startTest(t, f.out, o)
}

// testPipeline runs a pipeline in the background and reports each flush on
// a channel, so tests wait on flushes, not on time.
type testPipeline struct {
	p       *Pipeline
	flushes chan Report
	notices chan render.ServiceKey
	done    chan error
	cancel  context.CancelFunc
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
		flushes: make(chan Report, 100),
		notices: make(chan render.ServiceKey, 100),
		done:    make(chan error, 1),
	}
}

// hook returns o with the flush and notify hooks feeding tp.
func (tp *testPipeline) hook(o Options) Options {
	o.OnFlush = func(r Report) { tp.flushes <- r }
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
	ctx, cancel := context.WithCancel(t.Context())
	tp.cancel = cancel
	go func() { tp.done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-tp.done
	})
}

// nextFlush returns the next flush or retry.
func (tp *testPipeline) nextFlush(t *testing.T) Report {
	t.Helper()
	select {
	case r := <-tp.flushes:
		return r
	case err := <-tp.done:
		t.Fatalf("pipeline stopped: %v", err)
	case <-time.After(time.Minute): // a failure guard, not a timing assertion
		t.Fatal("no flush")
	}
	return Report{}
}

// waitFlush returns the next flush that wrote the cluster.
func (tp *testPipeline) waitFlush(t *testing.T, cluster string) Report {
	t.Helper()
	deadline := time.After(30 * time.Second) // a failure guard, not a timing assertion
	for {
		select {
		case r := <-tp.flushes:
			if slices.Contains(r.Clusters, cluster) {
				return r
			}
		case err := <-tp.done:
			t.Fatalf("pipeline stopped: %v", err)
		case <-deadline:
			t.Fatalf("no flush wrote %s", cluster)
		}
	}
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
