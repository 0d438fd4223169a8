// Package benchdata makes the inputs of the benchmark workloads of
// docs/performance.md, in two shapes: the one the EndpointSlice controller
// writes (Controller) and the lean one the benchmarks used first (Plain),
// kept so that the history stays comparable. The pipeline's benchmarks
// (W1, W2, W3) build their slices with Slice; the manifest workload is
// 10,000 Services of one 10-endpoint EndpointSlice each, in 100 `kubectl
// get endpointslices -o json` Lists (ManifestList): the watch package's
// decode benchmark reads one of them, genmanifests writes all of them for
// the end-to-end run.
package benchdata

import (
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// Shape is what each endpoint of a slice carries.
type Shape int

const (
	// Controller is what the EndpointSlice controller writes for a
	// Deployment's Pods: ready, serving and terminating; the Pod's Node
	// (one of Nodes, with a cloud's name) and zone (one of three); a
	// targetRef naming the Pod with its uid. A tenth of the Services are
	// StatefulSets, whose endpoints have a hostname; a fifth have
	// trafficDistribution, whose endpoints carry a zone hint.
	Controller Shape = iota
	// Plain is an address and ready only (the pipeline's benchmarks
	// before), or, in the manifest workload, conditions, a Node of 50 and
	// one zone.
	Plain
)

func (s Shape) String() string {
	if s == Plain {
		return "plain"
	}
	return "controller"
}

// Shapes are both, the controller's first.
var Shapes = []Shape{Controller, Plain}

// Nodes is the number of Nodes of the Controller shape.
const Nodes = 300

// Files and SlicesPerFile make the manifest workload: Files x
// SlicesPerFile Services, each of one slice of EndpointsPerSlice endpoints.
const (
	Files             = 100
	SlicesPerFile     = 100
	EndpointsPerSlice = 10
)

// Addr is the a-th address of the workloads, 10.x.y.z.
func Addr(a int) string { return fmt.Sprintf("10.%d.%d.%d", a>>16&255, a>>8&255, a&255) }

// podAddr is the k-th Pod address of Node node's range, a /20 per Node
// from 10.0.0.0 (4,096 Nodes at most); k wraps at 4,095.
func podAddr(node, k int) string {
	h := k%4095 + 1 // not the range's first address
	return fmt.Sprintf("10.%d.%d.%d", node>>4&255, (node&15)<<4|h>>8, h&255)
}

// Slice is slice name of Service svc (number index among the workload's
// Services) in namespace ns: IPv4, one port http/8080/TCP, n ready
// endpoints number base to base+n-1 (see Endpoint), each as shape says.
func Slice(shape Shape, ns, svc string, index int, name string, base, n int) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name, ResourceVersion: "1",
			Labels: map[string]string{discoveryv1.LabelServiceName: svc},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints:   make([]discoveryv1.Endpoint, n),
	}
	if shape == Controller {
		s.Labels[discoveryv1.LabelManagedBy] = "endpointslice-controller.k8s.io"
		s.Annotations = map[string]string{corev1.EndpointsLastChangeTriggerTime: "2026-12-01T06:00:00Z"}
	}
	for i := range n {
		s.Endpoints[i] = Endpoint(shape, ns, svc, index, base+i)
	}
	return s
}

// Endpoint is endpoint number a of Service svc (number index) in namespace
// ns, as shape says: at Addr(a) in the Plain shape, at an address of its
// Node's range in the Controller shape. The same a gives the same Pod.
func Endpoint(shape Shape, ns, svc string, index, a int) discoveryv1.Endpoint {
	e := discoveryv1.Endpoint{
		Addresses:  []string{Addr(a)},
		Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
	}
	if shape == Plain {
		return e
	}
	e.Conditions.Serving, e.Conditions.Terminating = ptr.To(true), ptr.To(false)
	// A Deployment's Pods spread over the Nodes, and each Pod's address
	// comes from its Node's range (the node IPAM controller's podCIDR, or
	// a cloud CNI's per-Node block), as in a real cluster: sorted by
	// address, a big Service's endpoints come in runs of one Node.
	node := a % Nodes
	e.Addresses[0] = podAddr(node, a/Nodes)
	zone := "eu-west-1" + string(rune('a'+node%3))
	e.NodeName = ptr.To(fmt.Sprintf("ip-10-0-%d-%d.eu-west-1.compute.internal", node/250, node%250+1))
	e.Zone = ptr.To(zone)
	pod := fmt.Sprintf("%s-7d9f8c6b5-%05x", svc, a&0xfffff)
	if index%10 == 3 { // a StatefulSet's Pods
		pod = fmt.Sprintf("%s-%d", svc, a)
		e.Hostname = ptr.To(pod)
	}
	e.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: pod,
		UID: types.UID(fmt.Sprintf("3f2a9c1e-8b7d-4e6f-a5c4-%012x", a))}
	if index%5 == 1 { // trafficDistribution: PreferSameZone
		e.Hints = &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: zone}}}
	}
	return e
}

// ManifestList is file number file of the manifest workload: a List of
// SlicesPerFile slices as kubectl prints it (indented by four spaces,
// about 450 KB in the Plain shape), with unique addresses across files.
// The Plain shape's endpoints carry conditions, a Node of 50 and one zone,
// as this workload's always did.
func ManifestList(file int, shape Shape) ([]byte, error) {
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
		index := file*SlicesPerFile + s
		svc := fmt.Sprintf("svc-%d-%d", file, s)
		sl := Slice(shape, "bench", svc, index, svc+"-abcde", index*EndpointsPerSlice, EndpointsPerSlice)
		sl.ResourceVersion = "12345"
		sl.Labels[discoveryv1.LabelManagedBy] = "endpointslice-controller.k8s.io"
		if shape == Plain {
			for e := range sl.Endpoints {
				a := index*EndpointsPerSlice + e
				ep := &sl.Endpoints[e]
				ep.Conditions.Serving, ep.Conditions.Terminating = ptr.To(true), ptr.To(false)
				ep.NodeName, ep.Zone = ptr.To(fmt.Sprintf("node-%d", a%50)), ptr.To("zone-a")
			}
		}
		list.Items = append(list.Items, item{"discovery.k8s.io/v1", "EndpointSlice", sl})
	}
	data, err := json.MarshalIndent(list, "", "    ")
	if err != nil {
		return nil, fmt.Errorf("manifest list %d: %w", file, err)
	}
	return data, nil
}
