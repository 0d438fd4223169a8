package e2e

import (
	"bufio"
	"cmp"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/google/pprof/profile"

	"github.com/edsync/edsync/test/e2e/harness"
)

// TestFleet is a benchmark, not a test: what N edsyncs cost the API server
// and the node, per way of scoping them (docs/performance.md, Fleet). It
// runs only when EDSYNC_FLEET names the numbers of edsyncs, e.g.
//
//	EDSYNC_FLEET=10,50 go test -C test/e2e -run TestFleet -count=1 -timeout 60m -v
//
// EDSYNC_FLEET_MODES=scoped (or unscoped) runs one mode only: 50 unscoped
// edsyncs hold 100,000 endpoints each, 10 GB between them.
//
// The cluster gets 2,000 Services without selectors, each with one
// EndpointSlice of 50 endpoints (100,000 endpoints). Per mode and N: N
// edsyncs start together; reported are the API server's CPU seconds until
// all are ready, per edsync; the time until all are ready; edsync's RSS
// (mean and max); then 50 slice updates per second for a minute, spread over
// every Service: the API server's CPU above what the same churn costs with
// no edsync, per 100 edsyncs, two ways (the process's CPU time, which
// the churn's own cost blurs by tens of millicores between runs, and a CPU
// profile of the API server: the time in the stacks that serve watches,
// which edsync's watches add to); and two latency p99s over the files the
// updates reached: edsync_network_programming (the update's trigger time to
// the file's rename: the API server's and the watch's share included) and
// edsync_event_to_file (edsync's own share: the slice event's arrival to
// the rename). Modes: unscoped (--namespace fleet: every slice),
// scoped (a config file whose clusters: list names one Service, so the API
// server sends that Service's slices only). Node-shared is one edsync per
// node whatever the number of Envoys: the unscoped row with N = 1.
func TestFleet(t *testing.T) {
	spec := os.Getenv("EDSYNC_FLEET")
	if spec == "" {
		t.Skip("a benchmark: set EDSYNC_FLEET=10,50 (numbers of edsyncs) to run it")
	}
	var sizes []int
	for _, f := range strings.Split(spec, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			t.Fatalf("EDSYNC_FLEET=%q: want numbers of edsyncs, e.g. 10,50", spec)
		}
		sizes = append(sizes, n)
	}
	const ns, services, perSlice, rate, churnFor = "fleet", 2000, 50, 50, time.Minute
	ctx := t.Context()
	c := cluster
	client := bulkClient(t, c.Config)
	if err := c.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	parallel(t, services, func(i int) error {
		name := fmt.Sprintf("svc-%d", i)
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}} // headless: no IP to allocate
		if _, err := client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			return err
		}
		_, err := client.DiscoveryV1().EndpointSlices(ns).Create(ctx, fleetSlice(ns, i, perSlice, 0), metav1.CreateOptions{})
		return err
	})
	t.Logf("created %d Services and slices (%d endpoints) in %s", services, services*perSlice, time.Since(start).Round(time.Second))

	// churn updates rate slices a second for d, round-robin over random
	// Services, each with a fresh trigger time.
	version := make([]int, services)
	churn := func(d time.Duration) {
		tick := time.NewTicker(time.Second / rate)
		defer tick.Stop()
		rng := rand.New(rand.NewPCG(1, 2))
		end := time.Now().Add(d)
		var wg sync.WaitGroup
		for time.Now().Before(end) {
			<-tick.C
			i := rng.IntN(services)
			version[i]++
			s := fleetSlice(ns, i, perSlice, version[i])
			wg.Go(func() {
				if _, err := client.DiscoveryV1().EndpointSlices(ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
					t.Errorf("update %s: %v", s.Name, err)
				}
			})
		}
		wg.Wait()
	}
	apiCPU := func() time.Duration { return procCPU(t, c.APIServer.PID()) }

	// measureChurn runs the churn while profiling the API server: its CPU
	// time in all, and in the stacks that serve watches.
	measureChurn := func() (total, watches time.Duration) {
		cpu0 := apiCPU()
		var wg sync.WaitGroup
		wg.Go(func() { watches = watchCPU(t, client.CoreV1().RESTClient(), churnFor) })
		churn(churnFor)
		wg.Wait()
		return apiCPU() - cpu0, watches
	}
	baseline, baselineWatches := measureChurn()
	t.Logf("API server under the churn alone: %.3f cores, %.1f millicores serving watches",
		baseline.Seconds()/churnFor.Seconds(), baselineWatches.Seconds()/churnFor.Seconds()*1000)
	perEdsync := func(cpu time.Duration, n int) float64 { // millicores per 100 edsyncs
		return cpu.Seconds() / churnFor.Seconds() * 1000 / float64(n) * 100
	}

	type row struct {
		mode                       string
		n                          int
		syncCPUPer                 time.Duration
		ready                      time.Duration
		rssMean, rssMax            float64 // MB
		churnPer100, watchesPer100 float64 // API server millicores
		programmingP99, ownP99     quantiles
	}
	var rows []row
	run := func(mode string, n int) {
		dir := t.TempDir()
		edsyncs := make([]*edsyncRun, n)
		cpu0 := apiCPU()
		t0 := time.Now()
		for i := range n {
			out := filepath.Join(dir, fmt.Sprintf("out-%d", i))
			args := []string{"--output-dir", out, "--http-addr", "127.0.0.1:0", "--debounce", "50ms"}
			switch mode {
			case "unscoped":
				args = append(args, "--namespace", ns)
			case "scoped":
				cfg := filepath.Join(dir, fmt.Sprintf("edsync-%d.yaml", i))
				body := fmt.Sprintf("clusters: [{service: %s/svc-%d, port: http, name: svc-%d}]\n", ns, i%services, i%services)
				if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--config", cfg)
			}
			edsyncs[i] = &edsyncRun{e: c.StartEdsync(t, args...)}
		}
		for _, r := range edsyncs {
			r.addr = r.e.HTTPAddr(t)
			r.waitReady(t)
		}
		ready := time.Since(t0)
		syncCPU := apiCPU() - cpu0
		var rss []float64
		for _, r := range edsyncs {
			rss = append(rss, procRSSMB(t, r.e.PID()))
		}
		total, watches := measureChurn()
		programming, own := map[float64]float64{}, map[float64]float64{}
		for _, r := range edsyncs {
			r.addHistograms(t, map[string]map[float64]float64{
				"edsync_network_programming_duration_seconds": programming,
				"edsync_event_to_file_seconds":                own,
			})
			if err := r.e.Stop(10 * time.Second); err != nil {
				t.Errorf("edsync stopped with %v", err)
			}
		}
		rows = append(rows, row{
			mode: mode, n: n, syncCPUPer: syncCPU / time.Duration(n), ready: ready,
			rssMean: mean(rss), rssMax: slices.Max(rss),
			churnPer100:    perEdsync(total-baseline, n),
			watchesPer100:  perEdsync(watches-baselineWatches, n),
			programmingP99: quantile(programming, 0.99),
			ownP99:         quantile(own, 0.99),
		})
		r := rows[len(rows)-1]
		t.Logf("%s N=%d: sync %.3f API CPU-s per edsync, ready in %s, RSS %.1f MB mean %.1f max; "+
			"churn, per 100 edsyncs: %.1f API millicores (process), %.1f (serving watches); p99 %s (network programming), %s (edsync's own)",
			r.mode, r.n, r.syncCPUPer.Seconds(), r.ready.Round(100*time.Millisecond), r.rssMean, r.rssMax,
			r.churnPer100, r.watchesPer100, r.programmingP99, r.ownP99)
	}
	modes := strings.Split(cmp.Or(os.Getenv("EDSYNC_FLEET_MODES"), "unscoped,scoped"), ",")
	if slices.Contains(modes, "unscoped") {
		run("unscoped", 1) // node-shared: one per node
	}
	for _, n := range sizes {
		for _, mode := range modes {
			run(mode, n)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n| mode | edsyncs | API server CPU to sync, per edsync | time until all ready | edsync RSS mean / max "+
		"| API server under churn per 100 edsyncs: process / serving watches | latency p99: network programming / edsync's own |\n"+
		"|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %d | %.3f CPU-s | %s | %.1f / %.1f MB | %.0f / %.1f millicores | %s / %s |\n", r.mode, r.n, r.syncCPUPer.Seconds(),
			r.ready.Round(100*time.Millisecond), r.rssMean, r.rssMax, r.churnPer100, r.watchesPer100, r.programmingP99, r.ownP99)
	}
	t.Log(b.String())
}

// bulkClient is a client for making thousands of objects: client-go's
// default rate limit (5 a second) would take half an hour.
func bulkClient(t *testing.T, config *rest.Config) kubernetes.Interface {
	t.Helper()
	rc := rest.CopyConfig(config)
	rc.QPS, rc.Burst = 1000, 2000
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// fleetSlice is version v of Service svc-i's slice: perSlice ready
// endpoints, one of which moves with v, and the trigger time of now.
func fleetSlice(ns string, i, perSlice, v int) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: fmt.Sprintf("svc-%d-fleet", i),
			Labels:      map[string]string{discoveryv1.LabelServiceName: fmt.Sprintf("svc-%d", i), discoveryv1.LabelManagedBy: "edsync-fleet"},
			Annotations: map[string]string{corev1.EndpointsLastChangeTriggerTime: time.Now().UTC().Format(time.RFC3339Nano)},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for j := range perSlice {
		a := i*perSlice + j
		if j == 0 {
			a = 1<<22 + i*1000 + v%1000 // the endpoint that changes
		}
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{fmt.Sprintf("10.%d.%d.%d", a>>16&255, a>>8&255, a&255)},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
		})
	}
	return s
}

// parallel runs f for 0..n-1 on 16 goroutines and fails on the first error.
func parallel(t *testing.T, n int, f func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	next := make(chan int)
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}

type edsyncRun struct {
	e    *harness.Edsync
	addr string
}

// waitReady polls /readyz: a measurement, bounded by a failure guard.
func (r *edsyncRun) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + r.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("edsync at %s not ready after 5 minutes", r.addr)
}

// addHistograms adds the histograms of edsync's metrics named in into
// their maps (cumulative bucket counts by upper bound).
func (r *edsyncRun) addHistograms(t *testing.T, into map[string]map[float64]float64) {
	t.Helper()
	resp, err := http.Get("http://" + r.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), `_bucket{le="`)
		b := into[name]
		if !ok || b == nil {
			continue
		}
		le, count, ok := strings.Cut(rest, `"} `)
		if !ok {
			continue
		}
		bound, err1 := strconv.ParseFloat(le, 64)
		n, err2 := strconv.ParseFloat(count, 64)
		if err1 == nil && err2 == nil {
			b[bound] += n
		}
	}
}

// quantiles is a quantile read off a histogram: the bucket holding it, the
// linear estimate inside it (as Prometheus' histogram_quantile), and the
// number of samples.
type quantiles struct {
	lower, upper, estimate float64
	samples                float64
}

func (q quantiles) String() string {
	if q.samples == 0 {
		return "no samples"
	}
	return fmt.Sprintf("%.0f ms (in %g-%g ms, %.0f samples)", q.estimate*1000, q.lower*1000, q.upper*1000, q.samples)
}

// quantile reads quantile q off cumulative bucket counts b.
func quantile(b map[float64]float64, q float64) quantiles {
	bounds := slices.Sorted(maps.Keys(b))
	if len(bounds) == 0 || b[bounds[len(bounds)-1]] == 0 {
		return quantiles{}
	}
	total := b[bounds[len(bounds)-1]] // +Inf
	var lower, below float64
	for _, le := range bounds {
		if b[le] >= q*total {
			if math.IsInf(le, 1) {
				return quantiles{lower: lower, upper: le, estimate: lower, samples: total}
			}
			est := lower + (le-lower)*(q*total-below)/(b[le]-below)
			return quantiles{lower: lower, upper: le, estimate: est, samples: total}
		}
		lower, below = le, b[le]
	}
	return quantiles{lower: lower, upper: lower, estimate: lower, samples: total}
}

// watchCPU takes a CPU profile of the API server over d and returns the
// CPU time of the stacks that serve watches: the watch cache handing each
// event to each watcher, the watchers filtering and encoding it, and the
// HTTP handlers streaming it. It leaves out the garbage collection those
// allocations cause, which the profile does not attribute.
func watchCPU(t *testing.T, client rest.Interface, d time.Duration) time.Duration {
	data, err := client.Get().AbsPath("/debug/pprof/profile").Param("seconds", strconv.Itoa(int(d.Seconds()))).
		Timeout(d + time.Minute).DoRaw(t.Context())
	if err != nil {
		t.Errorf("API server CPU profile: %v", err)
		return 0
	}
	prof, err := profile.ParseData(data)
	if err != nil {
		t.Errorf("API server CPU profile: %v", err)
		return 0
	}
	cpu := slices.IndexFunc(prof.SampleType, func(st *profile.ValueType) bool { return st.Type == "cpu" })
	if cpu < 0 {
		t.Errorf("API server CPU profile has no cpu samples: %v", prof.SampleType)
		return 0
	}
	var total time.Duration
	for _, s := range prof.Sample {
		if servesWatch(s) {
			total += time.Duration(s.Value[cpu])
		}
	}
	return total
}

// watchFuncs match the functions of kube-apiserver that serve watches: the
// cacher's per-watcher dispatch and the watch HTTP handler.
var watchFuncs = regexp.MustCompile(`\(\*cacheWatcher\)\.|\(\*Cacher\)\.dispatchEvent|\(\*WatchServer\)\.|serveWatch`)

func servesWatch(s *profile.Sample) bool {
	for _, loc := range s.Location {
		for _, line := range loc.Line {
			if line.Function != nil && watchFuncs.MatchString(line.Function.Name) {
				return true
			}
		}
	}
	return false
}

func mean(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// procCPU is a process's user + system CPU time, from /proc.
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name (which may hold spaces) end at ')'.
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// procRSSMB is a process's resident set, from /proc, in MB.
func procRSSMB(t *testing.T, pid int) float64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	t.Fatalf("no VmRSS for pid %d", pid)
	return 0
}
