package render

import (
	"slices"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// zone-aware places endpoints as off does (one priority, a locality per
// zone) and marks the clusters for zone_aware_lb_config, from the flag or a
// Service's annotation; the other modes do not.
func TestTopologyZoneAware(t *testing.T) {
	off := []string{"p0 /a/ w2: 10.0.0.1 10.0.0.2", "p0 /b/ w1: 10.0.1.1", "p0 /c/ w1: 10.0.2.1"}
	for _, tc := range []struct {
		name       string
		opts       Options
		annotation string
		want       bool
	}{
		{"flag", Options{Topology: TopologyZoneAware, LocalZone: "a", LocalNode: "n1"}, "", true},
		{"annotation", Options{LocalZone: "a"}, "zone-aware", true},
		{"annotation over the flag", Options{Topology: TopologyZoneAware, LocalZone: "a"}, "off", false},
		{"off", Options{LocalZone: "a"}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := New(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if tc.annotation != "" {
				if _, skips := r.SetService(web, &ServiceInfo{Annotations: map[string]string{AnnotationTopology: tc.annotation}}); len(skips) > 0 {
					t.Fatal(skips)
				}
			}
			got, _ := r.Service(web, []*discoveryv1.EndpointSlice{threeZones(true)})
			assertValid(t, got)
			if l := layout(got[0].CLA()); !slices.Equal(l, off) {
				t.Errorf("layout:\n  %s\nwant:\n  %s", strings.Join(l, "\n  "), strings.Join(off, "\n  "))
			}
			if got[0].Upstream.ZoneAware != tc.want {
				t.Errorf("ZoneAware = %v, want %v", got[0].Upstream.ZoneAware, tc.want)
			}
		})
	}
}

// A zone-aware cluster gets zone_aware_lb_config, and not the weighted
// localities (one oneof), unless its policy does no zone-aware routing or
// its template chose a locality policy.
func TestEDSClusterZoneAware(t *testing.T) {
	zoneAware := func(c *clusterv3.Cluster) bool { return c.GetCommonLbConfig().GetZoneAwareLbConfig() != nil }
	for _, o := range []ClusterOptions{{}, {LocalityWeighted: true}} {
		if c := edsCluster(t, Upstream{ZoneAware: true}, o); !zoneAware(c) || c.CommonLbConfig.GetLocalityWeightedLbConfig() != nil {
			t.Errorf("%+v: %v", o, c.CommonLbConfig)
		}
	}
	for _, p := range []string{"LEAST_REQUEST", "RANDOM"} {
		if c := edsCluster(t, Upstream{ZoneAware: true, LbPolicy: p}, ClusterOptions{}); !zoneAware(c) {
			t.Errorf("%s: %v", p, c.CommonLbConfig)
		}
	}
	if c := edsCluster(t, Upstream{ZoneAware: true, LbPolicy: "MAGLEV"}, ClusterOptions{}); c.CommonLbConfig != nil {
		t.Errorf("maglev: %v", c.CommonLbConfig)
	}
	weighted := &clusterv3.Cluster{CommonLbConfig: &clusterv3.Cluster_CommonLbConfig{LocalityConfigSpecifier: &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig_{
		LocalityWeightedLbConfig: &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig{}}}}
	if c := edsCluster(t, Upstream{ZoneAware: true}, ClusterOptions{Default: weighted}); zoneAware(c) {
		t.Errorf("a template's weighted localities: %v", c.CommonLbConfig)
	}
}
