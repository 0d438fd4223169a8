package e2e

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/edsync/edsync/internal/benchdata"
)

// TestShapeRSS is a benchmark, not a test: the memory of a running edsync
// on the API source, after its initial sync of the manifest workload
// (10,000 Services of one 10-endpoint slice each, pb) in both of
// benchdata's shapes: the EndpointSlice controller's and the plain one
// (docs/performance.md, The controller's shape). It runs only when
// EDSYNC_SHAPE_RSS is set:
//
//	EDSYNC_SHAPE_RSS=1 go test -C test/e2e -run TestShapeRSS -count=1 -timeout 60m -v
//
// Each shape's slices go in a namespace of their own; an edsync watches one
// namespace, and five seconds after /readyz turns 200 its VmRSS, the Go
// heap in use and what the runtime holds from the system are read; two
// rounds, the shapes alternating.
func TestShapeRSS(t *testing.T) {
	if os.Getenv("EDSYNC_SHAPE_RSS") == "" {
		t.Skip("a benchmark: set EDSYNC_SHAPE_RSS=1 to run it")
	}
	ctx := t.Context()
	c := cluster
	client := bulkClient(t, c.Config)
	const services, perSlice = benchdata.Files * benchdata.SlicesPerFile, benchdata.EndpointsPerSlice
	for _, shape := range benchdata.Shapes {
		ns := "shape-" + shape.String()
		if err := c.CreateNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		parallel(t, services, func(i int) error {
			svc := fmt.Sprintf("svc-%d", i)
			s := benchdata.Slice(shape, ns, svc, i, svc+"-abcde", i*perSlice, perSlice)
			s.ResourceVersion = ""
			_, err := client.DiscoveryV1().EndpointSlices(ns).Create(ctx, s, metav1.CreateOptions{})
			return err
		})
		t.Logf("%s: created %d slices (%d endpoints) in %s", shape, services, services*perSlice, time.Since(start).Round(time.Second))
	}
	for round := range 2 {
		for _, shape := range benchdata.Shapes {
			out := filepath.Join(t.TempDir(), "out")
			e := c.StartEdsync(t, "--namespace", "shape-"+shape.String(), "--output-dir", out, "--format", "pb", "--http-addr", "127.0.0.1:0")
			r := &edsyncRun{e: e, addr: e.HTTPAddr(t)}
			t0 := time.Now()
			r.waitReady(t)
			ready := time.Since(t0)
			time.Sleep(5 * time.Second) // a measurement point, as for the folder source
			files, err := filepath.Glob(filepath.Join(out, "*", "eds.pb"))
			if err != nil || len(files) != services {
				t.Fatalf("%s: %d files (%v), want %d", shape, len(files), err, services)
			}
			m := goMemStats(t, r.addr)
			t.Logf("round %d, %s: ready in %s; VmRSS %.0f MB, heap in use %.0f MB, from the system %.0f MB",
				round+1, shape, ready.Round(100*time.Millisecond), procRSSMB(t, e.PID()),
				m["go_memstats_heap_alloc_bytes"]/1e6, m["go_memstats_sys_bytes"]/1e6)
			if err := e.Stop(10 * time.Second); err != nil {
				t.Errorf("edsync stopped with %v", err)
			}
		}
	}
}

// goMemStats reads the go_memstats_ gauges of an edsync's /metrics.
func goMemStats(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if ok && strings.HasPrefix(name, "go_memstats_") {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				out[name] = f
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if _, ok := out["go_memstats_heap_alloc_bytes"]; !ok {
		t.Fatal("no go_memstats_heap_alloc_bytes in /metrics")
	}
	return out
}
