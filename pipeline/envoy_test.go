//go:build linux

package pipeline

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/edsync/edsync/internal/envoywatch"
	"github.com/edsync/edsync/writer"
)

// Envoy's side of an update: every file-based cluster is an inotify
// instance of Envoy's on the folder of its file (internal/envoywatch says
// how Envoy builds them). These attach such an Envoy to edsync's output.

// TestMain serves as the Envoy-like reader process when the benchmarks
// start this test binary as one (envoywatch.StartProcess).
func TestMain(m *testing.M) {
	if os.Getenv(envoywatch.ProcessEnv) != "" {
		if err := envoywatch.Serve(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// envoyPaths are the files of the given Services' clusters
// ("bench/<svc>/http").
func envoyPaths(tb testing.TB, w *writer.Writer, services []string) []string {
	tb.Helper()
	paths := make([]string, len(services))
	for i, svc := range services {
		var err error
		if paths[i], err = w.Path("bench/" + svc + "/http"); err != nil {
			tb.Fatal(err)
		}
	}
	return paths
}

// skipLimit skips for want of inotify instances.
func skipLimit(tb testing.TB, n int, err error) {
	tb.Helper()
	if errors.Is(err, envoywatch.ErrLimit) {
		tb.Skipf("%d Envoy subscriptions: %v; raise it (sysctl -w fs.inotify.max_user_instances=%d) to run this", n, err, n+1000)
	}
	if err != nil {
		tb.Fatal(err)
	}
}

// envoyOn attaches an Envoy-like reader to the files of the given
// Services' clusters ("bench/<svc>/http").
func envoyOn(tb testing.TB, w *writer.Writer, services []string) *envoywatch.Reader {
	tb.Helper()
	r, err := envoywatch.New(envoyPaths(tb, w, services))
	skipLimit(tb, len(services), err)
	tb.Cleanup(func() { r.Close() })
	return r
}

// With many clusters published and an Envoy reading many of them, one
// Service's update wakes only the Envoy subscription of that Service's
// file in the folders layout, and every one of them in the flat layout
// (what edsync did before folders, and what --layout flat costs).
func TestOneUpdateWakesOneEnvoySubscription(t *testing.T) {
	// Below the default fs.inotify.max_user_instances (128 for the whole
	// user), with room for the other tests' watches.
	const services, watched = 200, 40
	for _, layout := range []writer.Layout{writer.LayoutFolders, writer.LayoutFlat} {
		t.Run(string(layout), func(t *testing.T) {
			w, err := writer.New(writer.Options{Dir: t.TempDir(), Format: writer.FormatJSON, Layout: layout})
			if err != nil {
				t.Fatal(err)
			}
			p, store := newTestPipeline(t, "", Options{Writer: w})
			var names []string
			for i := range services {
				svc := fmt.Sprintf("svc-%d", i)
				store.Upsert("bench/"+svc+"-abcde", benchSlice(svc, svc+"-abcde", i*10, 10))
				if i%(services/watched) == 0 {
					names = append(names, svc)
				}
			}
			flush := func() Report {
				p.takeDirty()
				return p.flush(t.Context(), p.coalescer.Due(time.Now()), false)
			}
			if res := flush(); res.Written != services {
				t.Fatalf("first flush: %d written, want %d: %v", res.Written, services, res.Err)
			}
			r := envoyOn(t, w, names)
			// The events of the files' first writes came before the
			// watches: nothing is queued.
			if c, _, err := r.Poll(0, nil); err != nil || c != (envoywatch.Counts{}) {
				t.Fatalf("before the update: %+v, %v", c, err)
			}

			const changed = 35 // names[7]
			update := benchSlice("svc-35", "svc-35-abcde", 9000, 10)
			update.ResourceVersion = "2"
			store.Upsert("bench/svc-35-abcde", update)
			if res := flush(); res.Written != 1 {
				t.Fatalf("flush: %+v", res.Result)
			}
			// The rename queued the events before it returned.
			c, reloaded, err := r.Poll(0, nil)
			if err != nil {
				t.Fatal(err)
			}
			if want := []int{slices.Index(names, fmt.Sprintf("svc-%d", changed))}; !slices.Equal(reloaded, want) {
				t.Errorf("subscriptions reloaded: %v, want %v (svc-%d's)", reloaded, want, changed)
			}
			want := envoywatch.Counts{Woken: 1, Events: 1, Reloads: 1}
			if layout == writer.LayoutFlat {
				want = envoywatch.Counts{Woken: watched, Events: watched, Reloads: 1}
			}
			if c != want {
				t.Errorf("one update in the %s layout: %+v, want %+v", layout, c, want)
			}
		})
	}
}

// BenchmarkW2Envoy is W2 with Envoy attached: n Services of 10 endpoints
// (json), each cluster file read by an Envoy-like reader (an inotify
// instance per file, on its folder, one event loop, in a process of its
// own as Envoy is, reading as fast as it can beside edsync), and one slice
// update per event
// to a pseudo-random Service. ns/op is edsync's wall time per event, from
// the informer's transform to the renamed file, as in W2; "none" is the
// same without the reader, the baseline; "folders-unread" has the
// subscriptions but no loop reading them (the events queue in the kernel):
// the cost of the watchers to edsync alone, without the reader's wake-ups
// and CPU beside it on this 2-core machine. Also reported per event: events
// (inotify events queued for Envoy: one per subscription on the folder
// of the file), woken (subscriptions woken: fewer than the events when the
// reader, behind, reads several at once), reader-cpu-ns (the event loop's
// CPU; also lowered by such batching: internal/envoywatch's
// BenchmarkUpdate has it per update, one at a time); cpu-ns/op is
// edsync's process's.
//
// Needs fs.inotify.max_user_instances above n (skipped otherwise): sysctl
// -w fs.inotify.max_user_instances=20000. The flat layout at 10,000 takes
// about 5 ms per event: run it with -benchtime 1000x.
func BenchmarkW2Envoy(b *testing.B) {
	for _, reader := range []string{"none", "folders-unread", string(writer.LayoutFolders), string(writer.LayoutFlat)} {
		for _, n := range []int{1000, 10000} {
			b.Run(fmt.Sprintf("%s/%d", reader, n), func(b *testing.B) { benchW2Envoy(b, reader, n) })
		}
	}
}

func benchW2Envoy(b *testing.B, reader string, services int) {
	const perSlice = 10
	layout := writer.Layout(reader)
	if reader == "none" || reader == "folders-unread" {
		layout = writer.LayoutFolders
	}
	p := newBenchPipelineIn(b, writer.FormatJSON, layout)
	cur := make([]*discoveryv1.EndpointSlice, services)
	names := make([]string, services)
	for i := range services {
		names[i] = fmt.Sprintf("svc-%d", i)
		cur[i] = benchSlice(names[i], names[i]+"-abcde", i*perSlice, perSlice)
		p.store.Upsert("bench/"+cur[i].Name, cur[i])
	}
	p.step(b)
	if reader == "none" {
		p.churnLoop(b, cur, 1)
		return
	}
	if reader == "folders-unread" {
		r := envoyOn(b, p.writer, names)
		p.churnLoop(b, cur, 1)
		c, _, err := r.Poll(0, nil) // what the loop would have read
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(c.Events)/float64(b.N), "events/op")
		return
	}
	// Envoy is a process of its own.
	proc, err := envoywatch.StartProcess(os.Args[0], envoyPaths(b, p.writer, names))
	skipLimit(b, services, err)
	p.churnLoop(b, cur, 1)
	c, readerCPU, err := proc.Stop() // reads what is queued first
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(c.Events)/float64(b.N), "events/op")
	b.ReportMetric(float64(c.Woken)/float64(b.N), "woken/op")
	b.ReportMetric(float64(readerCPU)/float64(b.N), "reader-cpu-ns/op")
}

// The reader run as a process of its own (as the benchmarks run it) sees
// what the one in this process sees: one subscription woken and reloaded
// by one Service's update.
func TestEnvoyReaderProcess(t *testing.T) {
	w, err := writer.New(writer.Options{Dir: t.TempDir(), Format: writer.FormatJSON})
	if err != nil {
		t.Fatal(err)
	}
	p, store := newTestPipeline(t, "", Options{Writer: w})
	var names []string
	for i := range 5 {
		svc := fmt.Sprintf("svc-%d", i)
		names = append(names, svc)
		store.Upsert("bench/"+svc+"-abcde", benchSlice(svc, svc+"-abcde", i*10, 2))
	}
	flush := func() Report {
		p.takeDirty()
		return p.flush(t.Context(), p.coalescer.Due(time.Now()), false)
	}
	if res := flush(); res.Written != 5 {
		t.Fatalf("first flush: %+v", res.Result)
	}
	proc, err := envoywatch.StartProcess(os.Args[0], envoyPaths(t, w, names))
	skipLimit(t, len(names), err)
	update := benchSlice("svc-3", "svc-3-abcde", 900, 2)
	update.ResourceVersion = "2"
	store.Upsert("bench/svc-3-abcde", update)
	if res := flush(); res.Written != 1 {
		t.Fatalf("flush: %+v", res.Result)
	}
	c, cpu, err := proc.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if c != (envoywatch.Counts{Woken: 1, Events: 1, Reloads: 1}) || cpu <= 0 {
		t.Errorf("reader process: %+v, cpu %v; want one subscription woken and reloaded, and some CPU", c, cpu)
	}
}
