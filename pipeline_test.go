package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/edsync/edsync/render"
	"github.com/edsync/edsync/writer"
)

// readAsEnvoy parses a file the way Envoy's file-based EDS does: format by
// extension, one DiscoveryResponse holding exactly one CLA, which must pass
// validation.
func readAsEnvoy(t *testing.T, path string) *endpointv3.ClusterLoadAssignment {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var resp discoveryv3.DiscoveryResponse
	switch filepath.Ext(path) {
	case ".pb":
		err = proto.Unmarshal(data, &resp)
	case ".yaml", ".yml":
		var js []byte
		if js, err = yaml.YAMLToJSON(data); err == nil {
			err = protojson.Unmarshal(js, &resp)
		}
	default:
		err = protojson.Unmarshal(data, &resp)
	}
	if err != nil {
		t.Fatalf("%s: Envoy would reject it: %v", path, err)
	}
	if len(resp.Resources) != 1 {
		t.Fatalf("%s: %d resources, Envoy wants exactly 1", path, len(resp.Resources))
	}
	var cla endpointv3.ClusterLoadAssignment
	if err := resp.Resources[0].UnmarshalTo(&cla); err != nil {
		t.Fatalf("%s: resource is not a ClusterLoadAssignment: %v", path, err)
	}
	if err := cla.ValidateAll(); err != nil {
		t.Fatalf("%s: invalid CLA: %v", path, err)
	}
	return &cla
}

// addresses lists "ip:port health" of a CLA's endpoints in file order.
func addresses(cla *endpointv3.ClusterLoadAssignment) []string {
	var out []string
	for _, l := range cla.Endpoints {
		for _, lb := range l.LbEndpoints {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			out = append(out, fmt.Sprintf("%s:%d %s", sa.GetAddress(), sa.GetPortValue(), lb.HealthStatus))
		}
	}
	return out
}

const sliceManifest = `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: %[1]s-1
  namespace: default
  labels: {kubernetes.io/service-name: %[1]s}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
%[2]s`

func manifest(svc string, ips ...string) string {
	var eps strings.Builder
	for _, ip := range ips {
		fmt.Fprintf(&eps, "- addresses: [%q]\n  conditions: {ready: true}\n", ip)
	}
	if len(ips) == 0 {
		eps.WriteString("[]\n")
	}
	return fmt.Sprintf(sliceManifest, svc, eps.String())
}

// replaceFile swaps a manifest in by rename, as editors and kubectl do.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".new-"+filepath.Base(path))
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// testPipeline runs edsync's pipeline on a folder of manifests and reports
// each flush on a channel, so tests wait on flushes, not on time.
type testPipeline struct {
	p       *pipeline
	in, out string
	flushes chan flushReport
	notices chan render.ServiceKey
	done    chan error
	cancel  context.CancelFunc
}

func startPipeline(t *testing.T, cfg *config) *testPipeline {
	t.Helper()
	p, err := build(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return runPipeline(t, p, cfg.fromDir, cfg.outputDir)
}

// runPipeline runs p in the background for the test.
func runPipeline(t *testing.T, p *pipeline, in, out string) *testPipeline {
	t.Helper()
	tp := &testPipeline{
		p: p, in: in, out: out,
		flushes: make(chan flushReport, 100),
		notices: make(chan render.ServiceKey, 100),
		done:    make(chan error, 1),
	}
	p.onFlush = func(r flushReport) { tp.flushes <- r }
	p.onNotify = func(k render.ServiceKey) {
		select {
		case tp.notices <- k:
		default:
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	tp.cancel = cancel
	go func() { tp.done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-tp.done
	})
	return tp
}

func testConfig(t *testing.T) *config {
	in, out := t.TempDir(), t.TempDir()
	return &config{fromDir: in, outputDir: out, format: writer.FormatJSON, debounce: time.Millisecond,
		maxDelay: 10 * time.Millisecond, syncTimeout: time.Minute}
}

// nextFlush returns the next flush or retry.
func (tp *testPipeline) nextFlush(t *testing.T) flushReport {
	t.Helper()
	select {
	case r := <-tp.flushes:
		return r
	case err := <-tp.done:
		t.Fatalf("pipeline stopped: %v", err)
	case <-time.After(time.Minute): // a failure guard, not a timing assertion
		t.Fatal("no flush")
	}
	return flushReport{}
}

// waitFlush returns the next flush that wrote the cluster.
func (tp *testPipeline) waitFlush(t *testing.T, cluster string) flushReport {
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

func TestPipelineFollowsTheFolder(t *testing.T) {
	cfg := testConfig(t)
	cfg.clusters = []string{"default/declared"}
	src := filepath.Join(cfg.fromDir, "web.yaml")
	replaceFile(t, src, manifest("web", "10.0.0.2", "10.0.0.1"))
	tp := startPipeline(t, cfg)
	file := filepath.Join(cfg.outputDir, "default_web_http.json")

	r := tp.waitFlush(t, "default/web/http")
	if !r.Initial {
		t.Errorf("first flush is not the initial one: %+v", r)
	}
	if got, want := addresses(readAsEnvoy(t, file)), []string{"10.0.0.1:8080 HEALTHY", "10.0.0.2:8080 HEALTHY"}; !slices.Equal(got, want) {
		t.Errorf("initial file: %v, want %v", got, want)
	}
	// A declared cluster with no Service is written empty so Envoy can start.
	if cla := readAsEnvoy(t, filepath.Join(cfg.outputDir, "default_declared.json")); cla.ClusterName != "default/declared" || len(cla.Endpoints) != 0 {
		t.Errorf("declared cluster file: %v", cla)
	}

	replaceFile(t, src, manifest("web", "10.0.0.3"))
	tp.waitFlush(t, "default/web/http")
	if got, want := addresses(readAsEnvoy(t, file)), []string{"10.0.0.3:8080 HEALTHY"}; !slices.Equal(got, want) {
		t.Errorf("after the change: %v, want %v", got, want)
	}

	// All slices gone: a CLA with the name and no endpoints clears Envoy's hosts.
	if err := os.Remove(src); err != nil {
		t.Fatal(err)
	}
	tp.waitFlush(t, "default/web/http")
	if cla := readAsEnvoy(t, file); cla.ClusterName != "default/web/http" || len(cla.Endpoints) != 0 {
		t.Errorf("after the slices went: %v, want the name and no endpoints", cla)
	}
}

// On shutdown, changes still waiting for their debounce are written.
func TestShutdownFlushesPendingChanges(t *testing.T) {
	cfg := testConfig(t)
	cfg.debounce, cfg.maxDelay = time.Hour, time.Hour
	src := filepath.Join(cfg.fromDir, "web.yaml")
	replaceFile(t, src, manifest("web", "10.0.0.1"))
	tp := startPipeline(t, cfg)
	tp.waitFlush(t, "default/web/http")
	for len(tp.notices) > 0 { // notices of the initial sync
		<-tp.notices
	}

	replaceFile(t, src, manifest("web", "10.0.0.9"))
	select {
	case <-tp.notices: // the change reached the pipeline; its debounce is an hour
	case <-time.After(30 * time.Second):
		t.Fatal("the change never reached the pipeline")
	}
	tp.cancel()
	if err := <-tp.done; err != nil {
		t.Fatalf("Run returned %v on shutdown, want nil", err)
	}
	tp.done <- nil // for the cleanup
	if got := addresses(readAsEnvoy(t, filepath.Join(cfg.outputDir, "default_web_http.json"))); !slices.Equal(got, []string{"10.0.0.9:8080 HEALTHY"}) {
		t.Errorf("after shutdown the file holds %v, want the pending change", got)
	}
}

// A failed write keeps the old file and is retried until it succeeds.
func TestFailedWriteIsRetried(t *testing.T) {
	cfg := testConfig(t)
	src := filepath.Join(cfg.fromDir, "web.yaml")
	replaceFile(t, src, manifest("web", "10.0.0.1"))
	target := filepath.Join(cfg.outputDir, "default_web_http.json")
	// A folder where the file should go makes the write fail, even as root.
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	tp := startPipeline(t, cfg)
	r := tp.waitFlush(t, "default/web/http")
	if r.Failed != 1 {
		t.Fatalf("first flush: %+v, want one failure", r)
	}
	if err := os.Remove(target); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case r := <-tp.flushes:
			if r.Retry && r.Written == 1 {
				if got := addresses(readAsEnvoy(t, target)); !slices.Equal(got, []string{"10.0.0.1:8080 HEALTHY"}) {
					t.Errorf("after the retry: %v", got)
				}
				return
			}
		case <-time.After(time.Minute):
			t.Fatal("the failed write was not retried")
		}
	}
}

func statFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() || e.Name() == writer.LockFileName { // the lock is rewritten by each run
			continue
		}
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		st := info.Sys().(*syscall.Stat_t)
		out[e.Name()] = fmt.Sprintf("inode %d mtime %d", st.Ino, info.ModTime().UnixNano())
	}
	return out
}

// Restarting over its own output rewrites nothing; a file left from an
// earlier run for a cluster no longer published is emptied, not left stale.
func TestRestartRewritesNothingAndEmptiesStaleFiles(t *testing.T) {
	out := t.TempDir()
	args := []string{"--from-dir", "examples/endpointslices", "--once", "--output-dir", out, "--format", "pb"}
	if code, _, stderr := edsync(t, args...); code != 0 {
		t.Fatalf("first run: exit %d\n%s", code, stderr)
	}
	before := statFiles(t, out)
	if len(before) != 4 {
		t.Fatalf("first run wrote %d files, want 4: %v", len(before), before)
	}
	if code, _, stderr := edsync(t, args...); code != 0 {
		t.Fatalf("second run: exit %d\n%s", code, stderr)
	}
	if after := statFiles(t, out); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("restart rewrote files:\nbefore %v\nafter  %v", before, after)
	}

	// Now publish only shop/web: the other clusters' files are emptied, but
	// a file that is not edsync's (Envoy's own config in the same folder)
	// is left alone although its name decodes like a cluster's.
	foreign := filepath.Join(out, "envoy.pb")
	if err := os.WriteFile(foreign, []byte("not a CLA"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := edsync(t, append(args, "--service", "shop/web")...); code != 0 {
		t.Fatalf("third run: exit %d\n%s", code, stderr)
	}
	if data, err := os.ReadFile(foreign); err != nil || string(data) != "not a CLA" {
		t.Errorf("a file that is not edsync's was replaced: %q, %v", data, err)
	}
	if cla := readAsEnvoy(t, filepath.Join(out, "cache_redis.pb")); cla.ClusterName != "cache/redis" || len(cla.Endpoints) != 0 {
		t.Errorf("stale cluster: %v, want the name and no endpoints", cla)
	}
	if cla := readAsEnvoy(t, filepath.Join(out, "shop_web_http.pb")); len(addresses(cla)) != 4 {
		t.Errorf("shop/web/http: %v", addresses(cla))
	}
}
