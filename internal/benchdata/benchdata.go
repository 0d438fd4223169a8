// Package benchdata makes the inputs of the benchmark workloads that are
// files: the manifest workload of docs/performance.md, 10,000 Services of
// one 10-endpoint EndpointSlice each, in 100 `kubectl get endpointslices -o
// json` Lists. The watch package's decode benchmark reads one of them;
// genmanifests writes all of them for the end-to-end run.
package benchdata

import (
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Files and SlicesPerFile make the workload: Files x SlicesPerFile
// Services, each of one slice of EndpointsPerSlice endpoints.
const (
	Files             = 100
	SlicesPerFile     = 100
	EndpointsPerSlice = 10
)

// ManifestList is file number file of the workload: a List of
// SlicesPerFile slices as kubectl prints it (indented by four spaces,
// about 450 KB), with unique addresses across files.
func ManifestList(file int) ([]byte, error) {
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
	for s := range SlicesPerFile {
		svc := fmt.Sprintf("svc-%d-%d", file, s)
		sl := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: svc + "-abcde", ResourceVersion: "12345",
				Labels: map[string]string{discoveryv1.LabelServiceName: svc, discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
		}
		for e := range EndpointsPerSlice {
			a := (file*SlicesPerFile+s)*EndpointsPerSlice + e
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
		return nil, fmt.Errorf("manifest list %d: %w", file, err)
	}
	return data, nil
}
