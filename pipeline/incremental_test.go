package pipeline

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/edsync/edsync/render"
	"github.com/edsync/edsync/writer"
)

// TestIncrementalFilesEqualFresh: under random churn (endpoints added,
// removed, readied, moved, with node, zone and targetRef; dual-stack Pods
// merged into one host; slices appearing and going), every file the
// pipeline writes, whose content the writer builds from the hosts it has
// not encoded before and the previous document's bytes, is byte for byte
// what a fresh Renderer and a fresh writer make of the same slices.
func TestIncrementalFilesEqualFresh(t *testing.T) {
	for _, format := range []writer.Format{writer.FormatPB, writer.FormatJSON, writer.FormatYAML} {
		t.Run(string(format), func(t *testing.T) {
			opts := render.Options{NotReady: render.NotReadyUnhealthy, EndpointMetadata: true}
			ren, err := render.New(opts)
			if err != nil {
				t.Fatal(err)
			}
			out := t.TempDir()
			w, err := writer.New(writer.Options{Dir: out, Format: format})
			if err != nil {
				t.Fatal(err)
			}
			p, store := newTestPipeline(t, out, Options{Renderer: ren, Writer: w})
			rng := rand.New(rand.NewPCG(5, 6))
			// Each Service has a slice per family; a Pod i has 10.s.0.i and fd00::s:i.
			const services, pods = 3, 40
			type podState struct {
				up   bool
				v4   int // its IPv4 address' last byte; 0: none
				v6   bool
				node string
			}
			state := make([][]podState, services)
			for s := range state {
				state[s] = make([]podState, pods)
			}
			sliceOf := func(s int, family discoveryv1.AddressType) *discoveryv1.EndpointSlice {
				svc := fmt.Sprintf("svc-%d", s)
				sl := &discoveryv1.EndpointSlice{
					ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: fmt.Sprintf("%s-%s", svc, family),
						Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
					AddressType: family,
					Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
				}
				for i, ps := range state[s] {
					var addr string
					switch {
					case family == discoveryv1.AddressTypeIPv4 && ps.v4 > 0:
						addr = fmt.Sprintf("10.%d.%d.%d", s, i, ps.v4)
					case family == discoveryv1.AddressTypeIPv6 && ps.v6:
						addr = fmt.Sprintf("fd00::%d:%d", s, i)
					default:
						continue
					}
					sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{
						Addresses:  []string{addr},
						Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ps.up)},
						NodeName:   ptr.To(ps.node),
						Zone:       ptr.To("zone-" + ps.node),
						TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: "bench", Name: fmt.Sprintf("pod-%d", i)},
					})
				}
				return sl
			}
			for round := range 300 {
				// A few changes to one Service, then a flush.
				s := rng.IntN(services)
				for range 1 + rng.IntN(4) {
					ps := &state[s][rng.IntN(pods)]
					switch rng.IntN(5) {
					case 0:
						ps.up = !ps.up
					case 1:
						ps.v4 = rng.IntN(4) // 0 removes it
					case 2:
						ps.v6 = !ps.v6
					case 3:
						ps.node = fmt.Sprintf("n%d", rng.IntN(3))
					default:
						*ps = podState{}
					}
				}
				for _, family := range []discoveryv1.AddressType{discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6} {
					sl := sliceOf(s, family)
					if len(sl.Endpoints) == 0 && rng.IntN(2) == 0 {
						store.Delete("bench/" + sl.Name)
						continue
					}
					store.Upsert("bench/"+sl.Name, sl)
				}
				p.takeDirty()
				if res := p.flush(t.Context(), p.coalescer.Due(time.Now()), false); res.Failed > 0 {
					t.Fatal(res.Err)
				}

				key := render.ServiceKey{Namespace: "bench", Name: fmt.Sprintf("svc-%d", s)}
				fresh, _ := render.New(opts)
				clusters, _ := fresh.Service(key, store.Slices(key))
				fw, _ := writer.New(writer.Options{Format: format, DryRun: true})
				for _, c := range clusters {
					want, err := fw.Encode(c.CLA())
					if err != nil {
						t.Fatal(err)
					}
					path, _ := w.Path(c.Name)
					got, err := os.ReadFile(path)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, want) {
						t.Fatalf("round %d, %s: the file differs from a fresh render and encode:\n%s\nwant:\n%s", round, c.Name, got, want)
					}
				}
			}
		})
	}
}
