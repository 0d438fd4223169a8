package watch

import (
	"encoding/json"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// benchManifestJSON is one file of the manifest workload: a `kubectl get
// endpointslices -o json` List of 100 slices of 10 endpoints (about 250 KB;
// 100 such files are 10,000 Services).
func benchManifestJSON(b *testing.B, file int) []byte {
	type item struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		*discoveryv1.EndpointSlice
	}
	list := struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Items      []item `json:"items"`
	}{APIVersion: "v1", Kind: "List"}
	for s := range 100 {
		svc := fmt.Sprintf("svc-%d-%d", file, s)
		sl := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: svc + "-abcde", ResourceVersion: "12345",
				Labels: map[string]string{discoveryv1.LabelServiceName: svc, discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
		}
		for e := range 10 {
			a := (file*100+s)*10 + e
			sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{
				Addresses:  []string{fmt.Sprintf("10.%d.%d.%d", a>>16&255, a>>8&255, a&255)},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
				NodeName:   ptr.To(fmt.Sprintf("node-%d", a%50)), Zone: ptr.To("zone-a"),
			})
		}
		list.Items = append(list.Items, item{"discovery.k8s.io/v1", "EndpointSlice", sl})
	}
	data, err := json.MarshalIndent(list, "", "    ")
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// BenchmarkDecodeManifest decodes one file of the manifest workload: per
// op, 100 slices of 10 endpoints from a 250 KB JSON List.
func BenchmarkDecodeManifest(b *testing.B) {
	data := benchManifestJSON(b, 0)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		m, err := decodeManifest(data)
		if err != nil || len(m.slices) != 100 {
			b.Fatal(len(m.slices), err)
		}
	}
}
