package metrics

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/edsync/edsync/internal/testutil"
	"github.com/edsync/edsync/pipeline"
	"github.com/edsync/edsync/render"
	"github.com/edsync/edsync/watch"
	"github.com/edsync/edsync/writer"
)

// run runs a pipeline reporting to m, with o's source and declared
// clusters, writing JSON into out (a temporary folder unless given).
func run(t *testing.T, m *Metrics, out string, o pipeline.Options) *testutil.Reports[pipeline.Report] {
	t.Helper()
	ren, err := render.New(render.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if out == "" {
		out = t.TempDir()
	}
	w, err := writer.New(writer.Options{Dir: out, Format: writer.FormatJSON})
	if err != nil {
		t.Fatal(err)
	}
	r := testutil.NewReports(func(r pipeline.Report) []string { return r.Clusters })
	o.Renderer, o.Writer, o.Metrics = ren, w, m
	o.Debounce, o.MaxDelay = time.Millisecond, 10*time.Millisecond
	o.OnFlush = r.Report
	p, err := pipeline.New(o)
	if err != nil {
		t.Fatal(err)
	}
	r.Run(t, p.Run)
	return r
}

var (
	checkMetrics = testutil.CheckMetrics
	scrape       = testutil.Scrape
	replaceFile  = testutil.ReplaceFile
)

const webSlice = `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
`

// The pipeline's metrics after scripted changes to a folder of manifests.
func TestMetricsFollowThePipeline(t *testing.T) {
	in := t.TempDir()
	src := filepath.Join(in, "web.yaml")
	replaceFile(t, src, webSlice+`
- addresses: ["10.0.0.1"]
  conditions: {ready: true}
- addresses: ["10.0.0.2"]
  conditions: {ready: false, serving: true, terminating: true}
- addresses: ["10.0.0.3"]
  conditions: {ready: false}
- addresses: ["not-an-ip"]
`)
	replaceFile(t, filepath.Join(in, "orphan.yaml"), `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: orphan, namespace: default}
addressType: IPv4
endpoints: [{addresses: ["10.0.9.9"]}]
`)
	replaceFile(t, filepath.Join(in, "broken.yaml"), "kind: [")
	m, out := New("test"), t.TempDir()
	r := run(t, m, out, pipeline.Options{
		Declared: []string{"default/declared"},
		InotifyLimits: func() (writer.InotifyLimits, error) {
			return writer.InotifyLimits{Instances: 128, Watches: 8192}, nil
		},
		NewSource: func(store *watch.Store, _ *watch.Objects) (watch.Source, error) {
			return watch.NewDir(watch.DirOptions{Dir: in, Store: store})
		},
	})

	r.WaitCluster(t, "default/web/http")
	checkMetrics(t, "initial flush", m, map[string]float64{
		`edsync_build_info{version="test"}`:                       1,
		`edsync_endpointslice_events_total{type="add"}`:           2, // web-1, orphan
		`edsync_endpointslice_events_total{type="update"}`:        0,
		`edsync_endpointslice_events_total{type="delete"}`:        0,
		`edsync_skipped_objects_total{reason="no-service-label"}`: 1,
		`edsync_skipped_objects_total{reason="invalid-manifest"}`: 1,
		`edsync_skipped_objects_total{reason="other-kind"}`:       0,
		`edsync_skipped_objects_total{reason="invalid-address"}`:  1,
		`edsync_skipped_objects_total{reason="invalid-port"}`:     0,
		`edsync_published_clusters`:                               2, // web's and the declared one
		`edsync_envoy_inotify_instances_needed`:                   2,
		`edsync_inotify_limit{sysctl="max_user_instances"}`:       128,
		`edsync_inotify_limit{sysctl="max_user_watches"}`:         8192,
		`edsync_published_services`:                               1,
		`edsync_published_endpoints{health="healthy"}`:            1,
		`edsync_published_endpoints{health="draining"}`:           1,
		`edsync_published_endpoints{health="unhealthy"}`:          0, // not ready: dropped
		`edsync_cluster_writes_total{result="written"}`:           2,
		`edsync_cluster_writes_total{result="unchanged"}`:         0,
		`edsync_cluster_writes_total{result="failed"}`:            0,
		`edsync_flush_render_duration_seconds_count`:              1,
		`edsync_flush_write_duration_seconds_count`:               1,
		`edsync_debounce_delay_seconds_count`:                     0, // the initial flush waited for no debounce
		`edsync_network_programming_duration_seconds_count`:       0, // manifests carry no trigger time
		`edsync_event_to_file_seconds_count`:                      0, // nor is the initial sync a change
	})
	if ts := scrape(t, m)["edsync_last_write_success_timestamp_seconds"]; ts <= 0 {
		t.Errorf("edsync_last_write_success_timestamp_seconds = %v after a write", ts)
	}

	// One endpoint more, the draining one gone.
	replaceFile(t, src, webSlice+`
- addresses: ["10.0.0.1"]
  conditions: {ready: true}
- addresses: ["10.0.0.4"]
  conditions: {ready: true}
`)
	r.WaitCluster(t, "default/web/http")
	checkMetrics(t, "after an update", m, map[string]float64{
		`edsync_endpointslice_events_total{type="update"}`:       1,
		`edsync_skipped_objects_total{reason="invalid-address"}`: 1,
		`edsync_published_clusters`:                              2,
		`edsync_published_services`:                              1,
		`edsync_published_endpoints{health="healthy"}`:           2,
		`edsync_published_endpoints{health="draining"}`:          0,
		`edsync_cluster_writes_total{result="written"}`:          3,
		`edsync_flush_render_duration_seconds_count`:             2,
		`edsync_flush_write_duration_seconds_count`:              2,
		`edsync_debounce_delay_seconds_count`:                    1,
	})

	// A not-ready endpoint more is dropped: the file's bytes stay.
	replaceFile(t, src, webSlice+`
- addresses: ["10.0.0.1"]
  conditions: {ready: true}
- addresses: ["10.0.0.4"]
  conditions: {ready: true}
- addresses: ["10.0.0.5"]
  conditions: {ready: false}
`)
	r.WaitCluster(t, "default/web/http")
	checkMetrics(t, "after an update that changes no file", m, map[string]float64{
		`edsync_endpointslice_events_total{type="update"}`: 2,
		`edsync_cluster_writes_total{result="written"}`:    3,
		`edsync_cluster_writes_total{result="unchanged"}`:  1,
		`edsync_published_endpoints{health="healthy"}`:     2,
	})

	// The slice goes: its file is emptied, still there, and no longer
	// counted: no Service publishes it (only the declared one is left).
	if err := os.Remove(src); err != nil {
		t.Fatal(err)
	}
	r.WaitCluster(t, "default/web/http")
	checkMetrics(t, "after the delete", m, map[string]float64{
		`edsync_endpointslice_events_total{type="delete"}`: 1,
		`edsync_published_clusters`:                        1,
		`edsync_published_services`:                        0,
		`edsync_published_endpoints{health="healthy"}`:     0,
		`edsync_cluster_writes_total{result="written"}`:    4,
	})
	last := scrape(t, m)["edsync_last_write_success_timestamp_seconds"]

	// A write that fails (a folder in the file's way) is counted, its
	// content already in the published gauges; the retry that writes it
	// is counted as written.
	api := filepath.Join(out, "default_api_http", "eds.json")
	if err := os.MkdirAll(api, 0o755); err != nil {
		t.Fatal(err)
	}
	replaceFile(t, filepath.Join(in, "api.yaml"), testutil.Manifest("api", "10.0.1.1"))
	if rep := r.WaitCluster(t, "default/api/http"); rep.Failed != 1 {
		t.Fatalf("flush %+v, want one failure", rep)
	}
	checkMetrics(t, "after a failed write", m, map[string]float64{
		`edsync_cluster_writes_total{result="failed"}`:  1,
		`edsync_cluster_writes_total{result="written"}`: 4,
		`edsync_published_clusters`:                     2,
		`edsync_published_services`:                     1,
		`edsync_published_endpoints{health="healthy"}`:  1,
		`edsync_flush_write_duration_seconds_count`:     5,
		`edsync_last_write_success_timestamp_seconds`:   last,
	})
	if err := os.Remove(api); err != nil {
		t.Fatal(err)
	}
	r.Wait(t, "retry that wrote the file", func(rep pipeline.Report) bool { return rep.Retry && rep.Written == 1 })
	checkMetrics(t, "after the retry", m, map[string]float64{
		`edsync_cluster_writes_total{result="failed"}`:  1,
		`edsync_cluster_writes_total{result="written"}`: 5,
		`edsync_flush_write_duration_seconds_count`:     6,
	})
	if ts := scrape(t, m)["edsync_last_write_success_timestamp_seconds"]; ts <= last {
		t.Errorf("edsync_last_write_success_timestamp_seconds = %v after the retry, want more than %v", ts, last)
	}
}

// kubeSlice is an EndpointSlice of Service ns/web, port http 8080, whose
// endpoints are ready unless named "!ip" (not ready), with trigger as its
// last-change-trigger-time unless zero.
func kubeSlice(name string, trigger time.Time, ips ...string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "ns", Name: name,
			Labels: map[string]string{discoveryv1.LabelServiceName: "web"},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	if !trigger.IsZero() {
		// As the EndpointSlice controller writes it.
		s.Annotations = map[string]string{corev1.EndpointsLastChangeTriggerTime: trigger.UTC().Format(time.RFC3339Nano)}
	}
	for _, ip := range ips {
		ready := !strings.HasPrefix(ip, "!")
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{strings.TrimPrefix(ip, "!")},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)},
		})
	}
	return s
}

// The network programming latency counts each changed slice version that
// led to a file's rename, and only those: not the initial list's, not one
// that changed no byte, not one without a trigger time.
func TestNetworkProgrammingLatency(t *testing.T) {
	client := fake.NewClientset(kubeSlice("web-a", time.Now().Add(-time.Hour), "10.0.0.1"))
	m := New("test")
	r := run(t, m, "", pipeline.Options{
		NewSource: func(store *watch.Store, _ *watch.Objects) (watch.Source, error) {
			return watch.NewKube(watch.KubeOptions{API: testutil.ClientsetAPI(client), Store: store})
		},
	})
	const cluster = "ns/web/http"
	r.WaitCluster(t, cluster)
	checkMetrics(t, "initial list, its trigger time before the start", m, map[string]float64{
		`edsync_endpointslice_events_total{type="add"}`:     1,
		`edsync_network_programming_duration_seconds_count`: 0,
	})

	api := client.DiscoveryV1().EndpointSlices("ns")
	update := func(s *discoveryv1.EndpointSlice) {
		t.Helper()
		if _, err := api.Update(t.Context(), s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		r.WaitCluster(t, cluster)
	}
	update(kubeSlice("web-a", time.Now(), "10.0.0.2"))
	checkMetrics(t, "a change written", m, map[string]float64{
		`edsync_network_programming_duration_seconds_count`: 1,
		`edsync_event_to_file_seconds_count`:                1,
		`edsync_cluster_writes_total{result="written"}`:     2,
	})
	update(kubeSlice("web-a", time.Now(), "10.0.0.2", "!10.0.0.3"))
	checkMetrics(t, "a change that left the file as it was", m, map[string]float64{
		`edsync_network_programming_duration_seconds_count`: 1,
		`edsync_event_to_file_seconds_count`:                1,
		`edsync_cluster_writes_total{result="unchanged"}`:   1,
	})
	// edsync's own share needs no trigger time: it is timed from the event.
	update(kubeSlice("web-a", time.Time{}, "10.0.0.4"))
	checkMetrics(t, "a change without a trigger time", m, map[string]float64{
		`edsync_network_programming_duration_seconds_count`: 1,
		`edsync_event_to_file_seconds_count`:                2,
		`edsync_cluster_writes_total{result="written"}`:     3,
	})
	if _, err := api.Create(t.Context(), kubeSlice("web-b", time.Now(), "10.0.0.5"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r.WaitCluster(t, cluster)
	checkMetrics(t, "a new slice", m, map[string]float64{
		`edsync_endpointslice_events_total{type="add"}`:     2,
		`edsync_endpointslice_events_total{type="update"}`:  3,
		`edsync_network_programming_duration_seconds_count`: 2,
		`edsync_event_to_file_seconds_count`:                3,
		`edsync_published_endpoints{health="healthy"}`:      2,
	})
	// The hour-old trigger time of the initial list would show in the sum.
	if sum := scrape(t, m)["edsync_network_programming_duration_seconds_sum"]; sum < 0 || sum >= 3600 {
		t.Errorf("latency sum %vs: an initial list's trigger time was counted", sum)
	}
}

// edsync_ready follows what the readiness function says at each scrape.
func TestReadyFollowsTheProbe(t *testing.T) {
	m := New("test")
	var err error = errNotYet
	m.Ready(func() error { return err })
	checkMetrics(t, "not ready", m, map[string]float64{"edsync_ready": 0})
	err = nil
	checkMetrics(t, "ready", m, map[string]float64{"edsync_ready": 1})
}

var errNotYet = errors.New("not yet")
