// Package testutil holds what the tests of several packages share: reading
// a cluster file as Envoy does, writing EndpointSlice manifests, and
// scraping metrics. Only tests import it.
package testutil

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/edsync/edsync/internal/envoyadmin"
)

// ReadAsEnvoy parses a file the way Envoy's file-based EDS does: format by
// extension, one DiscoveryResponse holding exactly one CLA, which must pass
// validation.
func ReadAsEnvoy(t testing.TB, path string) *endpointv3.ClusterLoadAssignment {
	t.Helper()
	resp := readDiscoveryResponse(t, path)
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

// ReadCDSAsEnvoy parses a CDS file the way Envoy's file-based CDS does:
// format by extension, one DiscoveryResponse whose resources are all
// clusters, each valid, no two of one name. It returns them by name, and
// the file's version_info.
func ReadCDSAsEnvoy(t testing.TB, path string) (map[string]*clusterv3.Cluster, string) {
	t.Helper()
	resp := readDiscoveryResponse(t, path)
	out := make(map[string]*clusterv3.Cluster, len(resp.Resources))
	for i, res := range resp.Resources {
		var c clusterv3.Cluster
		if err := res.UnmarshalTo(&c); err != nil {
			t.Fatalf("%s: resource %d is not a Cluster: %v", path, i, err)
		}
		if err := c.ValidateAll(); err != nil {
			t.Fatalf("%s: invalid cluster %q: %v", path, c.Name, err)
		}
		if out[c.Name] != nil {
			t.Fatalf("%s: cluster %q twice: Envoy rejects the file", path, c.Name)
		}
		out[c.Name] = &c
	}
	return out, resp.VersionInfo
}

// readDiscoveryResponse parses a file as Envoy's file-based subscriptions
// do (envoyadmin.ReadResponse), failing the test if Envoy would not.
func readDiscoveryResponse(t testing.TB, path string) *discoveryv3.DiscoveryResponse {
	t.Helper()
	resp, err := envoyadmin.ReadResponse(path)
	if err != nil {
		t.Fatalf("%s: Envoy would reject it: %v", path, err)
	}
	return resp
}

// Addresses lists "ip:port health" of a CLA's endpoints in file order.
func Addresses(cla *endpointv3.ClusterLoadAssignment) []string {
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

// Manifest is an EndpointSlice of Service default/svc, port http 8080,
// with one ready endpoint per address.
func Manifest(svc string, ips ...string) string {
	var eps strings.Builder
	for _, ip := range ips {
		fmt.Fprintf(&eps, "- addresses: [%q]\n  conditions: {ready: true}\n", ip)
	}
	if len(ips) == 0 {
		eps.WriteString("[]\n")
	}
	return fmt.Sprintf(sliceManifest, svc, eps.String())
}

// ReplaceFile swaps a file in by rename, as editors and kubectl do.
func ReplaceFile(t testing.TB, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".new-"+filepath.Base(path))
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// Scrape gathers metrics as Prometheus would and flattens them into
// `name{label="value",...}` -> value; a histogram gives name_count and
// name_sum.
func Scrape(t testing.TB, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, s := range f.GetMetric() {
			var labels []string
			for _, l := range s.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sel := ""
			if len(labels) > 0 {
				sel = "{" + strings.Join(labels, ",") + "}"
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[f.GetName()+sel] = s.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[f.GetName()+sel] = s.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[f.GetName()+"_count"+sel] = float64(s.GetHistogram().GetSampleCount())
				out[f.GetName()+"_sum"+sel] = s.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

// CheckMetrics compares the scraped values named in want.
func CheckMetrics(t testing.TB, step string, g prometheus.Gatherer, want map[string]float64) {
	t.Helper()
	got := Scrape(t, g)
	var diffs []string
	for name, w := range want {
		if g, ok := got[name]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s missing, want %v", name, w))
		} else if g != w {
			diffs = append(diffs, fmt.Sprintf("%s = %v, want %v", name, g, w))
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		t.Errorf("%s:\n  %s", step, strings.Join(diffs, "\n  "))
	}
}
