package render

import (
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The slow start annotations: read and bounded, refused (invalid-annotation)
// for a policy Envoy's slow start does not serve, and placed in the lb
// config of the cluster's policy, over what its template has there.
func TestSlowStartAnnotations(t *testing.T) {
	templates := map[string]*clusterv3.Cluster{
		"lr":     {LbPolicy: clusterv3.Cluster_LEAST_REQUEST, LbConfig: &clusterv3.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: &clusterv3.Cluster_LeastRequestLbConfig{ChoiceCount: wrapperspb.UInt32(3)}}},
		"hash":   {LbPolicy: clusterv3.Cluster_RING_HASH},
		"policy": {LoadBalancingPolicy: &clusterv3.LoadBalancingPolicy{Policies: []*clusterv3.LoadBalancingPolicy_Policy{{TypedExtensionConfig: &corev3.TypedExtensionConfig{Name: "x"}}}}},
	}
	opts := ClusterOptions{Templates: templates}
	r, err := New(Options{Cluster: opts})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name        string
		annotations map[string]string
		want        SlowStart
		skip        string // in the one skip's detail; "" for none
	}{
		{"window", map[string]string{AnnotationSlowStartWindow: "30s"}, SlowStart{Window: 30 * time.Second}, ""},
		{"all three", map[string]string{AnnotationSlowStartWindow: "1m", AnnotationSlowStartAggression: "2.5", AnnotationSlowStartMinWeight: "0"},
			SlowStart{Window: time.Minute, Aggression: 2.5, MinWeightSet: true}, ""},
		{"least-request by annotation", map[string]string{AnnotationSlowStartWindow: "10s", AnnotationLbPolicy: "least-request"}, SlowStart{Window: 10 * time.Second}, ""},
		{"least-request by template", map[string]string{AnnotationSlowStartWindow: "10s", AnnotationClusterTemplate: "lr"}, SlowStart{Window: 10 * time.Second}, ""},
		{"no window", map[string]string{AnnotationSlowStartAggression: "2"}, SlowStart{}, "need a window"},
		{"window too long", map[string]string{AnnotationSlowStartWindow: "2h"}, SlowStart{}, "1h0m0s"},
		{"window not a duration", map[string]string{AnnotationSlowStartWindow: "soon"}, SlowStart{}, "duration"},
		{"aggression 0", map[string]string{AnnotationSlowStartWindow: "10s", AnnotationSlowStartAggression: "0"}, SlowStart{Window: 10 * time.Second}, "above 0"},
		{"aggression NaN", map[string]string{AnnotationSlowStartWindow: "10s", AnnotationSlowStartAggression: "NaN"}, SlowStart{Window: 10 * time.Second}, "above 0"},
		{"min weight 101", map[string]string{AnnotationSlowStartWindow: "10s", AnnotationSlowStartMinWeight: "101"}, SlowStart{Window: 10 * time.Second}, "0 to 100"},
		{"ring-hash by annotation", map[string]string{AnnotationSlowStartWindow: "10s", AnnotationLbPolicy: "ring-hash"}, SlowStart{}, "lb policy is ring-hash"},
		{"ring-hash by template", map[string]string{AnnotationSlowStartWindow: "10s", AnnotationClusterTemplate: "hash"}, SlowStart{}, "lb policy is ring-hash"},
		{"a load_balancing_policy", map[string]string{AnnotationSlowStartWindow: "10s", AnnotationClusterTemplate: "policy"}, SlowStart{}, "load-balancing-policy-config"},
	} {
		key := ServiceKey{Namespace: "default", Name: strings.ReplaceAll(tc.name, " ", "-")}
		_, skips := r.SetService(key, &ServiceInfo{Annotations: tc.annotations})
		switch {
		case tc.skip == "" && len(skips) > 0:
			t.Errorf("%s: skips %v", tc.name, skips)
		case tc.skip != "" && (len(skips) != 1 || skips[0].Reason != ReasonInvalidAnnotation || !strings.Contains(skips[0].Detail, tc.skip)):
			t.Errorf("%s: skips %v, want one with %q", tc.name, skips, tc.skip)
		}
		if got := r.settings[key].upstream.SlowStart; got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}

	// Where it goes in the cluster.
	ss := SlowStart{Window: 30 * time.Second, Aggression: 2, MinWeightPercent: 5, MinWeightSet: true}
	c := edsCluster(t, Upstream{SlowStart: ss}, opts)
	cfg := c.GetRoundRobinLbConfig().GetSlowStartConfig()
	if cfg.GetSlowStartWindow().AsDuration() != 30*time.Second || cfg.GetAggression().GetDefaultValue() != 2 || cfg.GetMinWeightPercent().GetValue() != 5 {
		t.Errorf("round robin: %v", c.LbConfig)
	}
	c = edsCluster(t, Upstream{SlowStart: SlowStart{Window: time.Second}, Template: "lr"}, opts)
	if lr := c.GetLeastRequestLbConfig(); lr.GetSlowStartConfig().GetSlowStartWindow().AsDuration() != time.Second ||
		lr.GetChoiceCount().GetValue() != 3 || lr.GetSlowStartConfig().Aggression != nil || lr.GetSlowStartConfig().MinWeightPercent != nil {
		t.Errorf("least request over the template's config: %v", c.LbConfig)
	}
	if c := edsCluster(t, Upstream{}, opts); c.LbConfig != nil {
		t.Errorf("no slow start: %v", c.LbConfig)
	}
}
