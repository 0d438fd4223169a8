package pipeline

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"

	"github.com/edsync/edsync/internal/benchdata"
	"github.com/edsync/edsync/render"
	"github.com/edsync/edsync/watch"
	"github.com/edsync/edsync/writer"
)

// The workloads of docs/performance.md, run through the pipeline's own path:
// Store.Upsert (what the informer handler does) -> dirty set -> coalescer
// (debounce 0) -> render -> writer, to the file renamed into place. Only the
// pipeline goroutine's timer is bypassed, so what is measured is the work.

// benchSlice is a slice of namespace bench as docs/performance.md defines
// it: IPv4, one port http/8080/TCP, n ready endpoints with addresses from
// base, in the plain shape (address and ready only).
func benchSlice(svc, name string, base, n int) *discoveryv1.EndpointSlice {
	return shapedSlice(benchdata.Plain, svc, 0, name, base, n)
}

// shapedSlice is benchSlice in a shape, for Service number index.
func shapedSlice(shape benchdata.Shape, svc string, index int, name string, base, n int) *discoveryv1.EndpointSlice {
	// What the informer's transform keeps is what the store holds: its
	// trigger times from before the start (the pipeline's store counts
	// none of those) are dropped.
	return watch.SlimSince(benchdata.Slice(shape, "bench", svc, index, name, base, n), time.Now())
}

func benchAddr(a int) string { return benchdata.Addr(a) }

// churn returns the next version of s, as the API server would send it: one
// endpoint changed, half the time its address, otherwise its ready flag. It
// is made outside the measured time; the loop then runs the informer's
// transform (watch.Slim) on it, as edsync does on every object it receives.
func churn(rng *rand.Rand, s *discoveryv1.EndpointSlice, rv int, nextAddr *int) *discoveryv1.EndpointSlice {
	c := *s
	c.ResourceVersion = fmt.Sprint(rv)
	c.Endpoints = slices.Clone(s.Endpoints) // endpoints' fields are replaced, never mutated
	i := rng.IntN(len(c.Endpoints))
	e := &c.Endpoints[i]
	if rng.IntN(2) == 0 {
		// A new Pod: a new address, and, in the controller's shape, the
		// Pod's own name, uid and Node.
		*nextAddr++
		if e.TargetRef != nil {
			*e = benchdata.Endpoint(benchdata.Controller, c.Namespace, c.Labels[discoveryv1.LabelServiceName], 0, *nextAddr)
		} else {
			e.Addresses = []string{benchAddr(*nextAddr)}
		}
	} else {
		e.Conditions.Ready = ptr.To(!*e.Conditions.Ready)
	}
	return &c
}

// benchDir is the output folder of a benchmark: on tmpfs (/dev/shm) by
// default, as with an emptyDir of medium Memory, so that the figures are
// edsync's own work and not this VM's disk (whose create and fsync calls
// cost 0.3 to 2 ms of kernel time here, varying run to run). Set
// EDSYNC_BENCH_DIR to a folder to measure a disk instead.
func benchDir(b *testing.B) string {
	parent := os.Getenv("EDSYNC_BENCH_DIR")
	if parent == "" {
		if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
			parent = "/dev/shm"
		}
	}
	if parent == "" {
		return b.TempDir()
	}
	dir, err := os.MkdirTemp(parent, "edsync-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// cpuTime is the process's user+system CPU time so far: benchmarks report
// it per event, because waiting on the disk is not work.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type benchPipeline struct {
	*Pipeline
	store *watch.Store
	dir   string // the output folder
}

func newBenchPipeline(b *testing.B, format writer.Format) benchPipeline {
	return newBenchPipelineIn(b, format, writer.LayoutFolders)
}

func newBenchPipelineIn(b *testing.B, format writer.Format, layout writer.Layout) benchPipeline {
	b.Helper()
	dir := benchDir(b)
	w, err := writer.New(writer.Options{Dir: dir, Format: format, Layout: layout, Logger: discard})
	if err != nil {
		b.Fatal(err)
	}
	p, store := newTestPipeline(b, "", Options{Writer: w})
	return benchPipeline{p, store, dir}
}

// step flushes what is dirty, as the pipeline goroutine does when its timer fires.
func (p benchPipeline) step(b *testing.B) writer.Result {
	p.takeDirty()
	res := p.flush(b.Context(), p.coalescer.Due(time.Now()), false)
	if res.Failed > 0 {
		b.Fatal(res.Err)
	}
	return res.Result
}

// churnLoop is the measured part of W2 and W3: per event, one random slice
// of cur changes one endpoint and goes through to its file: the informer's
// transform, the store, the dirty set, render, encode, write. The events
// are made beforehand, a batch at a time with the timer stopped, so that
// the figures are edsync's work and not the benchmark's.
func (p benchPipeline) churnLoop(b *testing.B, cur []*discoveryv1.EndpointSlice, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, seed))
	rv, nextAddr := 1, 1<<20
	type event struct {
		key string
		obj *discoveryv1.EndpointSlice
	}
	var batch []event
	var cpu time.Duration
	cpu0, events := cpuTime(), 0
	for b.Loop() {
		if len(batch) == 0 {
			b.StopTimer()
			cpu += cpuTime() - cpu0
			for range 1000 {
				i := rng.IntN(len(cur))
				rv++
				cur[i] = churn(rng, cur[i], rv, &nextAddr)
				batch = append(batch, event{"bench/" + cur[i].Name, cur[i]})
			}
			cpu0 = cpuTime()
			b.StartTimer()
		}
		ev := batch[0]
		batch = batch[1:]
		events++
		p.store.Upsert(ev.key, watch.Slim(ev.obj))
		if res := p.step(b); res.Written+res.Unchanged != 1 {
			b.Fatalf("flushed %d files, want 1", res.Written+res.Unchanged)
		}
	}
	cpu += cpuTime() - cpu0
	b.ReportMetric(float64(cpu)/float64(events), "cpu-ns/op")
}

// reportFloor measures, after the loop and in the same folder, the floor
// of one event: one atomic replace of a 1.2 KB file done with the fewest
// system calls (open a new file in a temp folder, write, fsync, close,
// rename it over the target, open the folder, fsync, close), what writing
// a cluster file cannot go below. It reports it (floor-ns) and the
// benchmark's wall time per event as a multiple of it (x-floor): on a
// noisy VM absolute times drift between runs, a ratio to the floor
// measured in the same minute holds. (Through os.CreateTemp and os.File
// the same steps take about 5 µs more on tmpfs: the writer, like this
// floor, uses bare descriptors.)
func (p benchPipeline) reportFloor(b *testing.B) {
	b.StopTimer()
	perEvent := float64(b.Elapsed()) / float64(b.N)
	data := bytes.Repeat([]byte("x"), 1200)
	tmp := filepath.Join(p.dir, ".floor")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		b.Fatal(err)
	}
	target := filepath.Join(p.dir, "floor.json")
	n := min(b.N, 2000)
	start := time.Now()
	for i := range n {
		if err := floorReplace(filepath.Join(tmp, strconv.Itoa(i)), target, data); err != nil {
			b.Fatal(err)
		}
	}
	floor := float64(time.Since(start)) / float64(n)
	b.ReportMetric(floor, "floor-ns")
	b.ReportMetric(perEvent/floor, "x-floor")
}

// floorReplace is the floor's atomic replace: tmp written and renamed over
// target, the folder fsynced.
func floorReplace(tmp, target string, data []byte) error {
	fd, err := syscall.Open(tmp, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	if _, err = syscall.Write(fd, data); err == nil {
		err = syscall.Fsync(fd)
	}
	if cerr := syscall.Close(fd); err == nil {
		err = cerr
	}
	if err == nil {
		err = syscall.Rename(tmp, target)
	}
	if err != nil {
		return err
	}
	dir, err := syscall.Open(filepath.Dir(target), syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	err = syscall.Fsync(dir)
	if cerr := syscall.Close(dir); err == nil {
		err = cerr
	}
	return err
}

// shapesAndFormats runs bench for each endpoint shape (the controller's
// first) and each format, as sub-benchmarks SHAPE/FORMAT.
func shapesAndFormats(b *testing.B, formats []writer.Format, bench func(b *testing.B, shape benchdata.Shape, format writer.Format)) {
	for _, shape := range benchdata.Shapes {
		for _, format := range formats {
			b.Run(shape.String()+"/"+string(format), func(b *testing.B) { bench(b, shape, format) })
		}
	}
}

// BenchmarkW1Initial: 10,000 Services of one 10-endpoint slice each, from
// an empty state to every file written. Reports the heap in use afterwards
// per endpoint, the store (the informer's objects) included.
func BenchmarkW1Initial(b *testing.B) {
	shapesAndFormats(b, []writer.Format{writer.FormatJSON, writer.FormatPB}, func(b *testing.B, shape benchdata.Shape, format writer.Format) {
		const services, perSlice = 10000, 10
		var heapPerEndpoint float64
		for b.Loop() {
			b.StopTimer()
			p := newBenchPipeline(b, format)
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			// The objects as the informer decodes them, made with the timer
			// stopped (the controller's shape costs the benchmark three
			// Sprintfs per endpoint, which are not edsync's work), a page of
			// a list at a time (500, client-go's), as the informer holds
			// them: the garbage collector marks one page, not the whole
			// list. Each is dropped once stored.
			const page = 500
			keys, raw := make([]string, page), make([]*discoveryv1.EndpointSlice, page)
			for from := 0; from < services; from += page {
				b.StopTimer()
				for i := range page {
					svc := fmt.Sprintf("svc-%d", from+i)
					keys[i], raw[i] = "bench/"+svc+"-abcde", benchdata.Slice(shape, "bench", svc, from+i, svc+"-abcde", (from+i)*perSlice, perSlice)
				}
				b.StartTimer()
				for i := range page {
					p.store.Upsert(keys[i], watch.SlimSince(raw[i], start))
					raw[i] = nil
				}
			}
			res := p.step(b)

			b.StopTimer()
			if res.Written != services {
				b.Fatalf("wrote %d files, want %d", res.Written, services)
			}
			runtime.GC()
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			heapPerEndpoint = float64(after.HeapAlloc-before.HeapAlloc) / (services * perSlice)
			runtime.KeepAlive(p)
			b.StartTimer()
		}
		b.ReportMetric(heapPerEndpoint, "heap-B/endpoint")
	})
}

// BenchmarkW2Churn: from the W1 state, one slice update per event to a
// pseudo-random Service, changing one endpoint's address or ready flag.
func BenchmarkW2Churn(b *testing.B) {
	shapesAndFormats(b, []writer.Format{writer.FormatJSON, writer.FormatPB}, func(b *testing.B, shape benchdata.Shape, format writer.Format) {
		const services, perSlice = 10000, 10
		p := newBenchPipeline(b, format)
		cur := make([]*discoveryv1.EndpointSlice, services)
		for i := range services {
			svc := fmt.Sprintf("svc-%d", i)
			cur[i] = shapedSlice(shape, svc, i, svc+"-abcde", i*perSlice, perSlice)
			p.store.Upsert("bench/"+cur[i].Name, cur[i])
		}
		p.step(b)
		p.churnLoop(b, cur, 1)
		p.reportFloor(b)
	})
}

// BenchmarkW3BigService: one Service of 10,000 endpoints in 100 slices of
// 100; each event updates one random slice.
func BenchmarkW3BigService(b *testing.B) {
	shapesAndFormats(b, []writer.Format{writer.FormatPB, writer.FormatJSON}, func(b *testing.B, shape benchdata.Shape, format writer.Format) {
		const slices, perSlice = 100, 100
		p := newBenchPipeline(b, format)
		cur := make([]*discoveryv1.EndpointSlice, slices)
		for i := range slices {
			cur[i] = shapedSlice(shape, "big", 0, fmt.Sprintf("big-%03d", i), i*perSlice, perSlice)
			p.store.Upsert("bench/"+cur[i].Name, cur[i])
		}
		p.step(b)
		p.churnLoop(b, cur, 3)
	})
}

// BenchmarkRenderEncode renders one Service of n endpoints (slices of 100)
// from scratch and writes its file (tmpfs), per format: the cold cost of a
// CLA, with nothing cached. (Not in dry-run: that prints pb as text.)
func BenchmarkRenderEncode(b *testing.B) {
	for _, format := range []writer.Format{writer.FormatPB, writer.FormatJSON, writer.FormatYAML} {
		for _, n := range []int{10, 1000, 10000} {
			b.Run(fmt.Sprintf("%s/%d", format, n), func(b *testing.B) {
				var in []*discoveryv1.EndpointSlice
				for i := 0; i < n; i += 100 {
					in = append(in, benchSlice("big", fmt.Sprintf("big-%03d", i/100), i, min(100, n-i)))
				}
				key := render.ServiceKey{Namespace: "bench", Name: "big"}
				dir := benchDir(b)
				for b.Loop() {
					r, err := render.New(render.Options{})
					if err != nil {
						b.Fatal(err)
					}
					w, err := writer.New(writer.Options{Dir: dir, Format: format, Logger: discard})
					if err != nil {
						b.Fatal(err)
					}
					clusters, _ := r.Service(key, in)
					c := clusters[0]
					if res := w.Write(b.Context(), []writer.Cluster{{Name: c.Name, CLA: c.Assignment, Endpoints: c.Hosts}}); res.Written != 1 {
						b.Fatal(res.Err)
					}
					// The next iteration's writer must find no file to compare with.
					b.StopTimer()
					path, _ := w.Path(c.Name)
					if err := os.Remove(path); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
			})
		}
	}
}
