package writer

import (
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/proto"
)

// benchCLA is shaped like render's output: n endpoints in three zones,
// sorted, with hostnames.
func benchCLA(name string, n int) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	zones := 3
	if n < zones {
		zones = 1
	}
	for z := range zones {
		lle := &endpointv3.LocalityLbEndpoints{Locality: &corev3.Locality{Region: "eu-west-1", Zone: fmt.Sprintf("eu-west-1%c", 'a'+z)}}
		for i := z; i < n; i += zones {
			ip := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
			lle.LbEndpoints = append(lle.LbEndpoints, lbEndpoint(ip, 8080, fmt.Sprintf("web-%d", i), corev3.HealthStatus_HEALTHY))
		}
		cla.Endpoints = append(cla.Endpoints, lle)
	}
	return cla
}

// changed returns a new CLA like cla in which 1% of the endpoints (at least
// one) are new messages and the others the same pointers, as render does
// when one slice of a Service changes. Its cost (copying the pointer slices)
// is render's, but small next to an encode.
func changed(cla *endpointv3.ClusterLoadAssignment, gen int) *endpointv3.ClusterLoadAssignment {
	small := countEndpoints(givenEndpoints(cla)) < 100
	out := &endpointv3.ClusterLoadAssignment{ClusterName: cla.ClusterName}
	for z, lle := range cla.Endpoints {
		lbs := append([]*endpointv3.LbEndpoint(nil), lle.LbEndpoints...)
		replace := func(i int) {
			ip := lbs[i].GetEndpoint().GetAddress().GetSocketAddress().GetAddress()
			lbs[i] = lbEndpoint(ip, 8080, fmt.Sprintf("web-g%d", gen), corev3.HealthStatus_DRAINING)
		}
		switch {
		case small && z == 0:
			replace(gen % len(lbs))
		case !small:
			for i := gen % 100; i < len(lbs); i += 100 {
				replace(i)
			}
		}
		out.Endpoints = append(out.Endpoints, &endpointv3.LocalityLbEndpoints{Locality: lle.Locality, LbEndpoints: lbs})
	}
	return out
}

// BenchmarkEncode measures the encoder as Write uses it (Writer.Encode adds a
// copy of the result). cold: a fresh encoder, every fragment encoded. warm1pct:
// an encoder that encoded the previous version; 1% of the endpoints are new.
// proto.Marshal of the same CLA is there for scale.
func BenchmarkEncode(b *testing.B) {
	for _, f := range formats {
		for _, n := range []int{10, 1000, 10000} {
			cla := benchCLA("ns/web/http", n)
			b.Run(fmt.Sprintf("%s/%d/cold", f, n), func(b *testing.B) {
				iters, start := 0, cpuTime()
				for b.Loop() {
					iters++
					if _, err := newEncoder(f).encode(cla, nil); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(cpuTime()-start)/float64(iters), "cpu-ns/op")
			})
			b.Run(fmt.Sprintf("%s/%d/warm1pct", f, n), func(b *testing.B) {
				e := newEncoder(f)
				cur := cla
				if _, err := e.encode(cur, nil); err != nil {
					b.Fatal(err)
				}
				gen, start := 0, cpuTime()
				for b.Loop() {
					gen++
					cur = changed(cur, gen)
					if _, err := e.encode(cur, nil); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(cpuTime()-start)/float64(gen), "cpu-ns/op")
			})
		}
	}
	for _, n := range []int{10, 1000, 10000} {
		cla := benchCLA("ns/web/http", n)
		b.Run(fmt.Sprintf("proto.Marshal/%d", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := proto.Marshal(cla); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// cpuTime is the process's user+system CPU time: an fsync waits without
// using CPU, so wall time alone hides what an event costs the machine.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkWriteEvent is one event of a 10,000-endpoint Service: 1% of its
// endpoints change and Write encodes, writes, fsyncs and renames the file and
// fsyncs the folder. cpu-ns/op is the CPU it cost (all threads, GC included).
func BenchmarkWriteEvent(b *testing.B) {
	for _, f := range formats {
		b.Run(string(f), func(b *testing.B) {
			w, err := New(Options{Dir: b.TempDir(), Format: f})
			if err != nil {
				b.Fatal(err)
			}
			cur := benchCLA("ns/web/http", 10000)
			if res := w.Write(b.Context(), []Cluster{{Name: cur.ClusterName, CLA: cur}}); res.Err != nil {
				b.Fatal(res.Err)
			}
			gen, start := 0, cpuTime()
			for b.Loop() {
				gen++
				cur = changed(cur, gen)
				if res := w.Write(b.Context(), []Cluster{{Name: cur.ClusterName, CLA: cur}}); res.Written != 1 {
					b.Fatalf("%+v", res)
				}
			}
			b.ReportMetric(float64(cpuTime()-start)/float64(gen), "cpu-ns/op")
		})
	}
}

// BenchmarkWrite10kClusters is the first batch of a big cluster: 10,000
// small Services (3 endpoints each) into an empty folder, encode included.
func BenchmarkWrite10kClusters(b *testing.B) {
	var batch []Cluster
	for i := range 10000 {
		name := fmt.Sprintf("ns-%d/svc-%d/http", i%50, i)
		batch = append(batch, Cluster{Name: name, CLA: benchCLA(name, 3)})
	}
	root := b.TempDir()
	for _, f := range []Format{FormatPB, FormatJSON} {
		b.Run(string(f), func(b *testing.B) {
			start := cpuTime()
			iters := 0
			for b.Loop() {
				iters++
				dir, err := os.MkdirTemp(root, "out")
				if err != nil {
					b.Fatal(err)
				}
				w, err := New(Options{Dir: dir, Format: f})
				if err != nil {
					b.Fatal(err)
				}
				if res := w.Write(b.Context(), batch); res.Written != len(batch) {
					b.Fatalf("%d written, %v", res.Written, res.Err)
				}
			}
			b.ReportMetric(float64(cpuTime()-start)/float64(iters), "cpu-ns/op")
		})
	}
}
