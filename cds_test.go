package main

import (
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	"github.com/edsync/edsync/internal/syncbuf"
	"github.com/edsync/edsync/internal/testutil"
	"github.com/edsync/edsync/pipeline"
)

// webService is Service default/web with the given annotations (a YAML
// flow mapping's inside), its port http 8080.
func webService(annotations string) string {
	return `apiVersion: v1
kind: Service
metadata: {name: web, namespace: default, annotations: {` + annotations + `}}
spec: {ports: [{name: http, port: 8080}]}
`
}

// The CDS file's clusters follow the config file's templates and the
// Service's annotations; a reload with a new template rewrites it, one with
// a template Envoy would refuse is refused and the running one stays.
func TestCDSClustersFromTemplatesAndAnnotations(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	cds := filepath.Join(out, "cds+clusters.yaml")
	cm := &configMapDir{dir: t.TempDir()}
	cm.update(t, `
cluster-template: {connect_timeout: 3s, circuit_breakers: {thresholds: [{max_connections: 100}]}}
cluster-templates:
  tls:
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config: {"@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext, sni: web.default}
`)
	replaceFile(t, filepath.Join(in, "web.yaml"), manifest("web", "10.0.0.1"))
	replaceFile(t, filepath.Join(in, "web-service.yaml"), webService(`edsync.io/lb-policy: least-request, edsync.io/max-requests: "7"`))
	cfg := configForTest(t, "--config", filepath.Join(cm.dir, "edsync.yaml"), "--from-dir", in, "--output-dir", out,
		"--cds-file", cds, "--cds-debounce", "1ms", "--watch-services", "--debounce", "1ms", "--max-delay", "10ms")
	tp := startPipeline(t, cfg)
	waitCDS := func(step string, ok func(map[string]*clusterv3.Cluster) bool) map[string]*clusterv3.Cluster {
		t.Helper()
		var got map[string]*clusterv3.Cluster
		tp.Wait(t, step, func(r pipeline.Report) bool {
			if !r.CDS || r.Written == 0 {
				return false
			}
			got, _ = testutil.ReadCDSAsEnvoy(t, cds)
			return ok(got)
		})
		return got
	}
	const name = "default/web/http"
	got := waitCDS("first CDS file", func(m map[string]*clusterv3.Cluster) bool { return m[name] != nil })
	c := got[name]
	if c.ConnectTimeout.AsDuration() != 3*time.Second || c.LbPolicy != clusterv3.Cluster_LEAST_REQUEST ||
		c.CircuitBreakers.Thresholds[0].MaxConnections.GetValue() != 100 || c.CircuitBreakers.Thresholds[0].MaxRequests.GetValue() != 7 {
		t.Errorf("cluster %v: want the template's connect_timeout and max_connections, the annotations' lb_policy and max_requests", c)
	}
	if p := c.EdsClusterConfig.EdsConfig.GetPathConfigSource().GetPath(); p != filepath.Join(out, "default_web_http", "eds.json") {
		t.Errorf("EDS path %s", p)
	}

	// The Service picks the tls template.
	replaceFile(t, filepath.Join(in, "web-service.yaml"), webService(`edsync.io/cluster-template: tls`))
	got = waitCDS("the Service's own template", func(m map[string]*clusterv3.Cluster) bool { return m[name].GetTransportSocket() != nil })
	if c := got[name]; c.ConnectTimeout.AsDuration() != time.Second || c.CircuitBreakers != nil {
		t.Errorf("cluster %v: want tls's settings only, and --connect-timeout's default", c)
	}

	waitResult := runReloader(t, cfg, tp, nil)

	// A template Envoy would refuse: the reload is refused.
	cm.update(t, `cluster-templates: {tls: {connect_timeout: -1s}}`)
	waitResult("cluster-templates: tls")
	checkMetrics(t, "refused reload", tp.m, map[string]float64{`edsync_config_last_reload_successful`: 0})

	// A new version of the template reaches the file.
	cm.update(t, `cluster-templates: {tls: {connect_timeout: 4s}}`)
	waitResult("")
	got = waitCDS("the reloaded template", func(m map[string]*clusterv3.Cluster) bool {
		return m[name].GetConnectTimeout().AsDuration() == 4*time.Second
	})
	if got[name].TransportSocket != nil {
		t.Errorf("the old template's transport socket stayed: %v", got[name])
	}
	checkMetrics(t, "CDS metrics", tp.m, map[string]float64{`edsync_cds_clusters`: 1, `edsync_cds_writes_total{result="failed"}`: 0})
}

// A template limited to namespaces (one holding a client certificate for
// one team's upstream, say) is the cluster of a Service of those
// namespaces only: another namespace's Service naming it is refused as a
// bad annotation, logged with the namespace, counted, and gets the default
// template.
func TestTemplateLimitedToNamespaces(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	cds := filepath.Join(out, "cds+clusters.yaml")
	config := filepath.Join(t.TempDir(), "edsync.yaml")
	writeFile(t, config, `
cluster-templates:
  mtls: {transport_socket: {name: envoy.transport_sockets.tls, typed_config: {"@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext, sni: pay.internal}}}
cluster-template-namespaces:
  mtls: [payments]
`)
	for _, ns := range []string{"default", "payments"} {
		slice := strings.Replace(manifest("web", "10.0.0.1"), "namespace: default", "namespace: "+ns, 1)
		svc := strings.Replace(webService(`edsync.io/cluster-template: mtls`), "namespace: default", "namespace: "+ns, 1)
		if !strings.Contains(slice, "namespace: "+ns) || !strings.Contains(svc, "namespace: "+ns) {
			t.Fatal("the manifests changed shape: no namespace to replace")
		}
		replaceFile(t, filepath.Join(in, ns+".yaml"), slice)
		replaceFile(t, filepath.Join(in, ns+"-service.yaml"), svc)
	}
	var logs syncbuf.Buffer
	tp := startPipelineLog(t, configForTest(t, "--config", config, "--from-dir", in, "--output-dir", out,
		"--cds-file", cds, "--cds-debounce", "1ms", "--watch-services", "--debounce", "1ms", "--max-delay", "10ms"),
		slog.New(slog.NewTextHandler(&logs, nil)))
	var got map[string]*clusterv3.Cluster
	tp.Wait(t, "both clusters in the CDS file", func(r pipeline.Report) bool {
		if !r.CDS || r.Written == 0 {
			return false
		}
		got, _ = testutil.ReadCDSAsEnvoy(t, cds)
		return len(got) == 2
	})
	if got["payments/web/http"].GetTransportSocket() == nil {
		t.Errorf("payments/web/http has not its namespace's template: %v", got["payments/web/http"])
	}
	if got["default/web/http"].GetTransportSocket() != nil {
		t.Errorf("default/web/http got a template limited to payments: %v", got["default/web/http"])
	}
	if !strings.Contains(logs.String(), "the template is not for namespace default (cluster-template-namespaces)") {
		t.Errorf("no line about the refused template:\n%s", logs.String())
	}
	checkMetrics(t, "refusal", tp.m, map[string]float64{`edsync_skipped_objects_total{reason="invalid-annotation"}`: 1})
}

// At start, a template Envoy would refuse is one line and exit code 2.
func TestBadClusterTemplateExits2(t *testing.T) {
	dir := t.TempDir()
	for body, want := range map[string]string{
		"cluster-template: {name: x}":                                                "cluster-template: sets name",
		"cluster-template: {connect_timeout: 1}":                                     "cluster-template:",
		"cluster-templates: {tls: {nope: 1}}":                                        "cluster-templates: tls:",
		"cluster-templates: [a]":                                                     "cluster-templates: want a mapping",
		"cluster-template: {lb_policy: FASTEST_POSSIBLE}":                            "cluster-template:",
		"cluster-template-namespaces: {tls: [shop]}":                                 "cluster-template-namespaces: tls: no such template in cluster-templates",
		"cluster-templates: {tls: {}}\ncluster-template-namespaces: {tls: [Shop_1]}": `cluster-template-namespaces: tls: namespace "Shop_1"`,
		"cluster-template-namespaces: [a]":                                           "cluster-template-namespaces: want a mapping",
	} {
		path := filepath.Join(dir, "edsync.yaml")
		writeFile(t, path, body)
		code, _, stderr := edsync(t, "--config", path, "--dry-run", "--from-dir", "examples/endpointslices")
		if code != 2 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, want) {
			t.Errorf("%s: exit %d, stderr %q; want 2 and one line with %q", body, code, stderr, want)
		}
	}
}

// Slow start from the Service's annotations reaches the CDS file's
// cluster, in the lb config of its policy; for a policy without slow start
// the annotation is refused and counted, and the cluster has none.
func TestCDSSlowStart(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	cds := filepath.Join(out, "cds+clusters.yaml")
	replaceFile(t, filepath.Join(in, "web.yaml"), manifest("web", "10.0.0.1"))
	replaceFile(t, filepath.Join(in, "web-service.yaml"), webService(`edsync.io/slow-start-window: 45s, edsync.io/slow-start-aggression: "1.5"`))
	cfg := configForTest(t, "--from-dir", in, "--output-dir", out,
		"--cds-file", cds, "--cds-debounce", "1ms", "--watch-services", "--debounce", "1ms", "--max-delay", "10ms")
	tp := startPipeline(t, cfg)
	const name = "default/web/http"
	var c *clusterv3.Cluster
	wait := func(step string, ok func(*clusterv3.Cluster) bool) {
		t.Helper()
		tp.Wait(t, step, func(r pipeline.Report) bool {
			if !r.CDS || r.Written == 0 {
				return false
			}
			got, _ := testutil.ReadCDSAsEnvoy(t, cds)
			c = got[name]
			return c != nil && ok(c)
		})
	}
	wait("slow start", func(c *clusterv3.Cluster) bool { return c.GetRoundRobinLbConfig() != nil })
	if s := c.GetRoundRobinLbConfig().GetSlowStartConfig(); s.GetSlowStartWindow().AsDuration() != 45*time.Second || s.GetAggression().GetDefaultValue() != 1.5 {
		t.Errorf("slow_start_config %v", s)
	}

	replaceFile(t, filepath.Join(in, "web-service.yaml"), webService(`edsync.io/slow-start-window: 45s, edsync.io/lb-policy: maglev`))
	wait("maglev", func(c *clusterv3.Cluster) bool { return c.LbPolicy == clusterv3.Cluster_MAGLEV })
	if c.LbConfig != nil {
		t.Errorf("maglev with slow start: %v", c.LbConfig)
	}
	checkMetrics(t, "the refused annotation", tp.m, map[string]float64{`edsync_skipped_objects_total{reason="invalid-annotation"}`: 1})
}

// --local-cluster stays out of the CDS file (envoy-config --cds makes it a
// static cluster of the bootstrap: Envoy refuses a CDS cluster of a static
// one's name), and its EDS file is written as any other.
func TestCDSLeavesTheLocalClusterOut(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	cds := filepath.Join(out, "cds+clusters.yaml")
	replaceFile(t, filepath.Join(in, "web.yaml"), manifest("web", "10.0.0.1"))
	replaceFile(t, filepath.Join(in, "api.yaml"), manifest("api", "10.0.0.2"))
	cfg := configForTest(t, "--from-dir", in, "--output-dir", out, "--local-cluster", "default/web/http",
		"--cds-file", cds, "--cds-debounce", "1ms", "--debounce", "1ms", "--max-delay", "10ms")
	tp := startPipeline(t, cfg)
	var got map[string]*clusterv3.Cluster
	tp.Wait(t, "the CDS file", func(r pipeline.Report) bool {
		if !r.CDS {
			return false
		}
		got, _ = testutil.ReadCDSAsEnvoy(t, cds)
		return got["default/api/http"] != nil
	})
	if _, ok := got["default/web/http"]; ok || len(got) != 1 {
		t.Errorf("CDS clusters %v: want default/api/http alone", slices.Collect(maps.Keys(got)))
	}
	if a := testutil.Addresses(testutil.ReadAsEnvoy(t, filepath.Join(out, "default_web_http", "eds.json"))); len(a) != 1 {
		t.Errorf("the local cluster's file: %v", a)
	}
}
