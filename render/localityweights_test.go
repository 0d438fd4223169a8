package render

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
)

// Source weights matter when two sources of one priority weigh differently.
func TestSourceWeightsMatter(t *testing.T) {
	for name, tc := range map[string]struct {
		sources map[string]Source
		want    bool
	}{
		"none":                          {nil, false},
		"one, weighted":                 {map[string]Source{"a": {Weight: 3}}, false},
		"one priority, alike":           {map[string]Source{"a": {Weight: 2}, "b": {Weight: 2}}, false},
		"one priority, 0 is 1":          {map[string]Source{"a": {Weight: 0}, "b": {Weight: 1}}, false},
		"one priority, weighed apart":   {map[string]Source{"a": {Weight: 1}, "b": {Weight: 3}}, true},
		"two priorities, weighed apart": {map[string]Source{"a": {Weight: 1}, "b": {Priority: 1, Weight: 3}}, false},
		"a priority of two, one of one": {map[string]Source{"a": {Weight: 1}, "b": {Weight: 3}, "c": {Priority: 1}}, true},
	} {
		if got := SourceWeightsMatter(tc.sources); got != tc.want {
			t.Errorf("%s: %v, want %v", name, got, tc.want)
		}
	}
	r, err := New(Options{Sources: map[string]Source{"a": {Weight: 1}, "b": {Weight: 3}}})
	if err != nil {
		t.Fatal(err)
	}
	if !r.ClusterOptions().LocalityWeighted {
		t.Error("New does not set LocalityWeighted for sources weighed apart")
	}
}

// With LocalityWeighted a cluster gets locality_weighted_lb_config, unless
// its template chose a locality policy or a load_balancing_policy.
func TestEDSClusterLocalityWeighted(t *testing.T) {
	weighted := func(c *clusterv3.Cluster) bool { return c.GetCommonLbConfig().GetLocalityWeightedLbConfig() != nil }
	if c := edsCluster(t, Upstream{}, ClusterOptions{}); c.CommonLbConfig != nil {
		t.Errorf("without LocalityWeighted: %v", c.CommonLbConfig)
	}
	if c := edsCluster(t, Upstream{}, ClusterOptions{LocalityWeighted: true}); !weighted(c) {
		t.Errorf("with LocalityWeighted: %v", c.CommonLbConfig)
	}
	// A template's other common_lb_config settings stay.
	keep := &clusterv3.Cluster{CommonLbConfig: &clusterv3.Cluster_CommonLbConfig{HealthyPanicThreshold: &typev3.Percent{Value: 30}}}
	if c := edsCluster(t, Upstream{}, ClusterOptions{LocalityWeighted: true, Default: keep}); !weighted(c) || c.CommonLbConfig.HealthyPanicThreshold == nil {
		t.Errorf("over a template's common_lb_config: %v", c.CommonLbConfig)
	}
	zoneAware := &clusterv3.Cluster{CommonLbConfig: &clusterv3.Cluster_CommonLbConfig{
		LocalityConfigSpecifier: &clusterv3.Cluster_CommonLbConfig_ZoneAwareLbConfig_{ZoneAwareLbConfig: &clusterv3.Cluster_CommonLbConfig_ZoneAwareLbConfig{}}}}
	if c := edsCluster(t, Upstream{}, ClusterOptions{LocalityWeighted: true, Default: zoneAware}); weighted(c) || c.CommonLbConfig.GetZoneAwareLbConfig() == nil {
		t.Errorf("a zone-aware template: %v", c.CommonLbConfig)
	}
	policy := &clusterv3.Cluster{LoadBalancingPolicy: &clusterv3.LoadBalancingPolicy{Policies: []*clusterv3.LoadBalancingPolicy_Policy{{
		TypedExtensionConfig: &corev3.TypedExtensionConfig{Name: "x"}}}}}
	if c, err := EDSCluster("default/web/http", "/eds/f.json", Upstream{}, ClusterOptions{LocalityWeighted: true, Default: policy}); err != nil || c.CommonLbConfig != nil {
		t.Errorf("a template with a load_balancing_policy: %v, %v", c.GetCommonLbConfig(), err)
	}
}
