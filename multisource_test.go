package main

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/edsync/edsync/internal/testutil"
	"github.com/edsync/edsync/pipeline"
	"github.com/edsync/edsync/render"
	"github.com/edsync/edsync/watch"
)

// The config file's sources are read together: the same Service in both
// is one cluster, each source's endpoints at its priority and in its
// region; an address both publish is the preferred source's, and counted;
// with --mcs, a ServiceImport's slice is placed as the source it names.
func TestSourcesMergeIntoOneCluster(t *testing.T) {
	out := t.TempDir()
	config := filepath.Join(t.TempDir(), "edsync.yaml")
	writeFile(t, config, `
sources:
- {name: east, kubeconfig: /etc/edsync/east.kubeconfig, priority: 0, region: us-east}
- {name: west, kubeconfig: /etc/edsync/west.kubeconfig, context: west, priority: 1, region: us-west, weight: 3}
`)
	cfg := configForTest(t, "--config", config, "--output-dir", out, "--debounce", "1ms", "--max-delay", "10ms", "--mcs")
	both := apiSlice("ns", "web", "10.0.0.9")
	both.Name = "web-2"
	// A ServiceImport's slice in east of endpoints in west.
	imported := apiSlice("ns", "web", "10.1.0.7")
	imported.Name, imported.Labels = "web-imported", map[string]string{
		watch.LabelMCSServiceName: "web", watch.LabelMCSSourceCluster: "west"}
	east := fake.NewClientset(apiSlice("ns", "web", "10.0.0.1"), both, imported)
	west := fake.NewClientset(apiSlice("ns", "web", "10.1.0.1"), both.DeepCopy())
	tp := startPipelineDeps(t, cfg, slog.New(slog.DiscardHandler), pipelineDeps{clients: map[string]watch.API{
		"east": testutil.ClientsetAPI(east), "west": testutil.ClientsetAPI(west),
	}})
	tp.WaitCluster(t, "ns/web/http")
	got := testutil.Placement(testutil.ReadAsEnvoy(t, filepath.Join(out, "ns_web_http", "eds.json")))
	want := []string{"10.0.0.1 p0 us-east// w2", "10.0.0.9 p0 us-east// w2", "10.1.0.1 p1 us-west// w6", "10.1.0.7 p1 us-west// w6"}
	if !slices.Equal(got, want) {
		t.Errorf("placement\n got %v\nwant %v", got, want)
	}
	checkMetrics(t, "the conflict and the sources", tp.m, map[string]float64{
		`edsync_skipped_objects_total{reason="address-conflict"}`: 1,
		`edsync_source_up{source="east"}`:                         1,
		`edsync_source_synced{source="west"}`:                     1,
		`edsync_source_stale{source="west"}`:                      0,
		`edsync_source_endpoints{source="east"}`:                  2,
		`edsync_source_endpoints{source="west"}`:                  3, // the imported slice's too
	})
}

// A remote source publishes only what its allow-list admits, the others
// what --allowed-addresses admits; with neither, the addresses Kubernetes
// refuses (a slice in a remote cluster pointing the gateway at its own
// loopback) are refused. Each refusal is counted.
func TestSourcesAllowedAddresses(t *testing.T) {
	config := filepath.Join(t.TempDir(), "edsync.yaml")
	writeFile(t, config, `
sources:
- {name: east, kubeconfig: /etc/edsync/east.kubeconfig}
- {name: west, kubeconfig: /etc/edsync/west.kubeconfig, priority: 1, allowed-addresses: [10.1.0.0/16]}
`)
	slice := func(name, ip string) *discoveryv1.EndpointSlice {
		sl := apiSlice("ns", "web", ip)
		sl.Name = name
		return sl
	}
	east := fake.NewClientset(slice("e1", "10.0.0.1"), slice("e2", "127.0.0.1"))
	west := fake.NewClientset(slice("w1", "10.1.0.1"), slice("w2", "10.0.0.2"), slice("w3", "169.254.169.254"))
	start := func(t *testing.T, args ...string) []string {
		out := t.TempDir()
		cfg := configForTest(t, append([]string{"--config", config, "--output-dir", out, "--debounce", "1ms", "--max-delay", "10ms"}, args...)...)
		tp := startPipelineDeps(t, cfg, slog.New(slog.DiscardHandler), pipelineDeps{clients: map[string]watch.API{
			"east": testutil.ClientsetAPI(east), "west": testutil.ClientsetAPI(west),
		}})
		tp.WaitCluster(t, "ns/web/http")
		checkMetrics(t, "refused", tp.m, map[string]float64{`edsync_skipped_objects_total{reason="address-not-allowed"}`: 3})
		return testutil.Addresses(testutil.ReadAsEnvoy(t, filepath.Join(out, "ns_web_http", "eds.json")))
	}
	t.Run("default", func(t *testing.T) {
		if got, want := start(t), []string{"10.0.0.1:8080 HEALTHY", "10.1.0.1:8080 HEALTHY"}; !slices.Equal(got, want) {
			t.Errorf("published %q, want %q", got, want)
		}
	})
	// The flag's list is east's; west keeps its own.
	t.Run("flag", func(t *testing.T) {
		if got, want := start(t, "--allowed-addresses", "127.0.0.1,192.168.0.0/16"), []string{"127.0.0.1:8080 HEALTHY", "10.1.0.1:8080 HEALTHY"}; !slices.Equal(got, want) {
			t.Errorf("published %q, want %q", got, want)
		}
	})
}

// A bad sources list is one line and exit code 2.
func TestBadSourcesExit2(t *testing.T) {
	dir := t.TempDir()
	for body, want := range map[string]string{
		"sources: [{name: a, kubeconfig: k}, {name: a, kubeconfig: k}]":        "a second source named a",
		"sources: [{name: A_b, kubeconfig: k}]":                                `name "A_b"`,
		"sources: [{name: a}]":                                                 "give a kubeconfig",
		"sources: [{name: a, in-cluster: true, kubeconfig: k}]":                "not both",
		"sources: [{name: a, kubeconfig: k, priority: 200}]":                   "priority 200",
		"sources: [{name: a, kubeconfig: k, weight: 1000}]":                    "weight 1000",
		"sources: [{name: a, kubeconfig: k, zone: x}]":                         `unknown field "zone"`,
		"sources: [{name: a, kubeconfig: k, selector: '=='}]":                  "selector",
		"sources: [{name: a, kubeconfig: k, allowed-addresses: [10.1.0.0/8]}]": `allowed-addresses: "10.1.0.0/8" has bits set past its length`,
	} {
		path := filepath.Join(dir, "edsync.yaml")
		writeFile(t, path, body)
		code, _, stderr := edsync(t, "--config", path, "--dry-run")
		if code != exitUsage || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, want) {
			t.Errorf("%s: exit %d, %q; want %d and one line with %q", body, code, stderr, exitUsage, want)
		}
	}
	path := filepath.Join(dir, "edsync.yaml")
	writeFile(t, path, "sources: [{name: a, kubeconfig: k}]")
	if code, _, stderr := edsync(t, "--config", path, "--dry-run", "--from-dir", "examples/endpointslices"); code != exitUsage || !strings.Contains(stderr, "drop --from-dir") {
		t.Errorf("sources with --from-dir: exit %d, %q", code, stderr)
	}
}

// A first source down at start (the Services come from it) holds the others
// back for --sync-timeout only.
func TestFirstSourceDownAtStart(t *testing.T) {
	out := t.TempDir()
	config := filepath.Join(t.TempDir(), "edsync.yaml")
	writeFile(t, config, "sources:\n- {name: east, kubeconfig: /k/east}\n- {name: west, kubeconfig: /k/west, priority: 1}\n")
	cfg := configForTest(t, "--config", config, "--output-dir", out, "--debounce", "1ms", "--max-delay", "10ms",
		"--watch-services", "--sync-timeout", "200ms")
	east := fake.NewClientset()
	east.PrependReactor("list", "*", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("connection refused")
	})
	west := fake.NewClientset(apiSlice("ns1", "web", "10.1.0.1"))
	tp := startPipelineDeps(t, cfg, slog.New(slog.DiscardHandler), pipelineDeps{clients: map[string]watch.API{
		"east": testutil.ClientsetAPI(east), "west": testutil.ClientsetAPI(west)}})
	tp.WaitCluster(t, "ns1/web/http")
	if got := testutil.Addresses(testutil.ReadAsEnvoy(t, filepath.Join(out, "ns1_web_http", "eds.json"))); !slices.Equal(got, []string{"10.1.0.1:8080 HEALTHY"}) {
		t.Errorf("west's web: %v", got)
	}
}

// A reload that moves the watches does not wait for an unreachable
// source: the others move (and publish the new Service), and it moves when
// it answers again.
func TestReloadLeavesAnUnreachableSourceBehind(t *testing.T) {
	out := t.TempDir()
	dir := t.TempDir()
	const sources = "sources:\n- {name: east, kubeconfig: /k/east}\n- {name: west, kubeconfig: /k/west, priority: 1}\nsync-timeout: 2s\n"
	config := func(clusters string) *config {
		t.Helper()
		path := filepath.Join(dir, "edsync.yaml")
		writeFile(t, path, sources+"clusters: ["+clusters+"]\n")
		return configForTest(t, "--config", path, "--output-dir", out, "--debounce", "1ms", "--max-delay", "10ms")
	}
	east := fake.NewClientset(apiSlice("ns1", "web", "10.0.0.1"), apiSlice("ns2", "db", "10.0.0.2"))
	west := fake.NewClientset(apiSlice("ns2", "db", "10.1.0.2"))
	var westDown atomic.Bool
	westDown.Store(true) // from the start: its lists fail
	west.PrependReactor("list", "endpointslices", func(k8stesting.Action) (bool, runtime.Object, error) {
		if westDown.Load() {
			return true, nil, errors.New("connection refused")
		}
		return false, nil, nil
	})
	cfg := config("{service: ns1/web, port: http, name: web}")
	tp := startPipelineDeps(t, cfg, slog.New(slog.DiscardHandler), pipelineDeps{clients: map[string]watch.API{
		"east": testutil.ClientsetAPI(east), "west": testutil.ClientsetAPI(west)}})
	tp.WaitCluster(t, "web") // after --sync-timeout, without west

	next := config("{service: ns1/web, port: http, name: web}, {service: ns2/db, port: http, name: db}")
	if err := apply(tp.p, tp.api, next, new(slog.LevelVar)); err != nil {
		t.Fatalf("reload with west unreachable: %v", err)
	}
	tp.Wait(t, "db from east", func(r pipeline.Report) bool {
		return slices.Contains(r.Clusters, "db") && len(testutil.Addresses(testutil.ReadAsEnvoy(t, filepath.Join(out, "db", "eds.json")))) == 1
	})

	// West answers again: its watch catches up, and its db endpoint comes.
	westDown.Store(false)
	tp.Wait(t, "db from both", func(r pipeline.Report) bool {
		return slices.Contains(r.Clusters, "db") && len(testutil.Addresses(testutil.ReadAsEnvoy(t, filepath.Join(out, "db", "eds.json")))) == 2
	})
}

// Two sources of one priority weighed apart (weight: 1 and 3): the CDS
// file's cluster gets locality_weighted_lb_config, without which Envoy would
// ignore the localities' weights and send each source a share by its
// endpoints; weighed alike, the cluster has none. envoy-config prints the
// same for static clusters.
func TestSourceWeightsInTheCDSFile(t *testing.T) {
	for _, tc := range []struct {
		westWeight int
		want       bool
	}{{3, true}, {1, false}} {
		t.Run(fmt.Sprint("west weight ", tc.westWeight), func(t *testing.T) {
			out := t.TempDir()
			cds := filepath.Join(t.TempDir(), "cds.json")
			config := filepath.Join(t.TempDir(), "edsync.yaml")
			writeFile(t, config, fmt.Sprintf(`
sources:
- {name: east, kubeconfig: /etc/edsync/east.kubeconfig, region: us-east}
- {name: west, kubeconfig: /etc/edsync/west.kubeconfig, region: us-west, weight: %d}
`, tc.westWeight))
			cfg := configForTest(t, "--config", config, "--output-dir", out, "--cds-file", cds, "--cds-debounce", "1ms",
				"--debounce", "1ms", "--max-delay", "10ms")
			east := fake.NewClientset(apiSlice("ns", "web", "10.0.0.1"))
			west := fake.NewClientset(apiSlice("ns", "web", "10.1.0.1"))
			tp := startPipelineDeps(t, cfg, slog.New(slog.DiscardHandler), pipelineDeps{clients: map[string]watch.API{
				"east": testutil.ClientsetAPI(east), "west": testutil.ClientsetAPI(west),
			}})
			var c *clusterv3.Cluster
			tp.Wait(t, "the CDS file", func(r pipeline.Report) bool {
				if !r.CDS {
					return false
				}
				got, _ := testutil.ReadCDSAsEnvoy(t, cds)
				c = got["ns/web/http"]
				return c != nil
			})
			if got := c.GetCommonLbConfig().GetLocalityWeightedLbConfig() != nil; got != tc.want {
				t.Errorf("locality_weighted_lb_config: %v, want %v (%v)", got, tc.want, c.GetCommonLbConfig())
			}
			want := []string{"10.0.0.1 p0 us-east// w1", fmt.Sprintf("10.1.0.1 p0 us-west// w%d", tc.westWeight)}
			if got := testutil.Placement(testutil.ReadAsEnvoy(t, filepath.Join(out, "ns_web_http", "eds.json"))); !slices.Equal(got, want) {
				t.Errorf("placement %v, want %v", got, want)
			}
			static, err := envoyClusters([]string{"ns/web/http"}, out, cfg.format, cfg.layout, cfg.render.Cluster, cfg.render.Sources, render.Upstream{})
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(string(static), "locality_weighted_lb_config"); got != tc.want {
				t.Errorf("envoy-config prints locality_weighted_lb_config: %v, want %v:\n%s", got, tc.want, static)
			}
		})
	}
}
