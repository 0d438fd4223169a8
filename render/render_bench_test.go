package render

import (
	"fmt"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
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
func BenchmarkRenderOneSliceChanged(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			in := benchSlices(n)
			r, _ := New(Options{})
			r.Service(web, in)
			i := 0
			for b.Loop() {
				k := i % len(in)
				in[k] = in[k].DeepCopy() // a new object, as the informer hands over
				r.Service(web, in)
				i++
			}
		})
	}
}
