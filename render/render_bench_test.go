package render

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
)

// benchSlices builds a Service of n endpoints in slices of up to 100, as the
// EndpointSlice controller splits them.
func benchSlices(n int) []*discoveryv1.EndpointSlice {
	var out []*discoveryv1.EndpointSlice
	for i := 0; i < n; i += 100 {
		var opts []sliceOpt
		opts = append(opts, port("http", 8080))
		for j := i; j < min(n, i+100); j++ {
			opts = append(opts, ep(fmt.Sprintf("10.%d.%d.%d", j>>16&255, j>>8&255, j&255)))
		}
		out = append(out, slice(fmt.Sprintf("web-%d", i/100), discoveryv1.AddressTypeIPv4, opts...))
	}
	return out
}

// benchDualStack builds a dual-stack Service of n Pods: each has an
// address in an IPv4 slice and one in an IPv6 slice, slices of up to 100.
func benchDualStack(n int) []*discoveryv1.EndpointSlice {
	var out []*discoveryv1.EndpointSlice
	for _, at := range []discoveryv1.AddressType{discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6} {
		for i := 0; i < n; i += 100 {
			opts := []sliceOpt{port("http", 8080)}
			for j := i; j < min(n, i+100); j++ {
				addr := fmt.Sprintf("10.%d.%d.%d", j>>16&255, j>>8&255, j&255)
				if at == discoveryv1.AddressTypeIPv6 {
					addr = fmt.Sprintf("fd00::1:%x", j)
				}
				name := fmt.Sprintf("web-%d", j)
				opts = append(opts, ep(addr, func(e *discoveryv1.Endpoint) {
					e.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: name, UID: types.UID("uid-" + name)}
				}))
			}
			out = append(out, slice(fmt.Sprintf("web-%s-%d", strings.ToLower(string(at)), i/100), at, opts...))
		}
	}
	return out
}

// BenchmarkRenderCold renders a Service from scratch: every slice prepared.
func BenchmarkRenderCold(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			in := benchSlices(n)
			for b.Loop() {
				r, _ := New(Options{})
				r.Service(web, in)
			}
		})
	}
}

// BenchmarkRenderOneSliceChanged re-renders a Service after one of its
// slices changed: the per-event cost in a big Service (W3's render part).
// The dual-stack cases have n Pods with an address in each family.
func BenchmarkRenderOneSliceChanged(b *testing.B) {
	for _, tc := range []struct {
		name  string
		build func(int) []*discoveryv1.EndpointSlice
		n     int
	}{{"1000", benchSlices, 1000}, {"10000", benchSlices, 10000}, {"dual-stack-1000", benchDualStack, 1000}, {"dual-stack-10000", benchDualStack, 10000}} {
		b.Run(tc.name, func(b *testing.B) {
			r, _ := New(Options{})
			oneSliceChanged(b, r, tc.build(tc.n))
		})
	}
}

// BenchmarkRenderTopology is BenchmarkRenderOneSliceChanged with endpoints
// spread over three zones and 30 Nodes, hinted for their zone, and each
// topology mode: what placing endpoints in priorities and weighted
// localities (with regions and sub-zones from the Nodes) adds per event.
func BenchmarkRenderTopology(b *testing.B) {
	const n = 10000
	zones := []string{"zone-a", "zone-b", "zone-c"}
	in := benchSlices(n)
	// Each Node has its own range of pod IPs, as with per-Node pod CIDRs:
	// in IP order, endpoints come in runs on one Node.
	for k, s := range in {
		for i := range s.Endpoints {
			e := &s.Endpoints[i]
			nodeIdx := (k*100 + i) * 30 / n
			z, node := zones[nodeIdx%3], fmt.Sprintf("node-%d", nodeIdx)
			e.Zone, e.NodeName = &z, &node
			e.Hints = &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: z}}}
		}
	}
	for _, tc := range []struct {
		mode  Topology
		nodes bool
	}{{TopologyOff, false}, {TopologyOff, true}, {TopologyZone, true}, {TopologyHints, true}} {
		name := tc.mode.String()
		if tc.nodes {
			name += "+nodes"
		}
		b.Run(name, func(b *testing.B) {
			r, _ := New(Options{Topology: tc.mode, LocalZone: "zone-b", LocalNode: "node-1"})
			for i := range 30 {
				if tc.nodes {
					r.SetNode(fmt.Sprintf("node-%d", i), &NodeTopology{Region: "eu", SubZone: fmt.Sprintf("rack-%d", i%2)})
				}
			}
			oneSliceChanged(b, r, append([]*discoveryv1.EndpointSlice(nil), in...))
		})
	}
}

// BenchmarkRenderSources is BenchmarkRenderOneSliceChanged/10000 with the
// Service's slices spread over two sources (the config file's sources):
// what placing endpoints by source adds per event.
func BenchmarkRenderSources(b *testing.B) {
	in := benchSlices(10000)
	for k, s := range in {
		s.Labels[LabelSource] = []string{"east", "west"}[k%2]
	}
	r, _ := New(Options{Sources: map[string]Source{"east": {Region: "us-east"}, "west": {Priority: 1, Region: "us-west", Weight: 2}}})
	oneSliceChanged(b, r, in)
}

// oneSliceChanged renders Service web from in, then, per iteration, with
// one slice replaced by a new object (as the informer hands over), in turn.
func oneSliceChanged(b *testing.B, r *Renderer, in []*discoveryv1.EndpointSlice) {
	r.Service(web, in)
	i := 0
	for b.Loop() {
		k := i % len(in)
		in[k] = in[k].DeepCopy()
		r.Service(web, in)
		i++
	}
}
