package watch

import (
	"reflect"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"
)

// TestEqualityCoversFields fails when Kubernetes adds a field to the types
// that sameObject compares by hand: review sameEndpoint/samePort (and
// Slim), then add the field here.
func TestEqualityCoversFields(t *testing.T) {
	known := map[reflect.Type][]string{
		reflect.TypeFor[discoveryv1.EndpointSlice]():      {"TypeMeta", "ObjectMeta", "AddressType", "Endpoints", "Ports"},
		reflect.TypeFor[discoveryv1.Endpoint]():           {"Addresses", "Conditions", "Hostname", "TargetRef", "DeprecatedTopology", "NodeName", "Zone", "Hints"},
		reflect.TypeFor[discoveryv1.EndpointConditions](): {"Ready", "Serving", "Terminating"},
		reflect.TypeFor[discoveryv1.EndpointPort]():       {"Name", "Protocol", "Port", "AppProtocol"},
		reflect.TypeFor[discoveryv1.EndpointHints]():      {"ForZones", "ForNodes"},
		reflect.TypeFor[discoveryv1.ForZone]():            {"Name"},
		reflect.TypeFor[discoveryv1.ForNode]():            {"Name"},
	}
	for typ, want := range known {
		var got []string
		for f := range typ.Fields() {
			got = append(got, f.Name)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s has fields %v; sameObject knows %v", typ, got, want)
		}
	}
}

func TestSameObject(t *testing.T) {
	base := func() *discoveryv1.EndpointSlice {
		sl := slice("ns", "a", "web", "", "10.0.0.1")
		sl.Annotations = map[string]string{corev1.EndpointsLastChangeTriggerTime: "t1"}
		sl.Ports[0].Protocol = ptr.To(corev1.ProtocolTCP)
		sl.Ports[0].AppProtocol = ptr.To("http")
		ep := &sl.Endpoints[0]
		ep.Conditions.Serving, ep.Conditions.Terminating = ptr.To(true), ptr.To(false)
		ep.Hostname, ep.NodeName, ep.Zone = ptr.To("h"), ptr.To("n1"), ptr.To("z1")
		ep.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: "ns", Name: "p1"}
		ep.DeprecatedTopology = map[string]string{"k": "v"}
		ep.Hints = &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "z1"}}, ForNodes: []discoveryv1.ForNode{{Name: "n1"}}}
		return sl
	}
	changes := map[string]func(*discoveryv1.EndpointSlice){
		"label":          func(s *discoveryv1.EndpointSlice) { s.Labels["team"] = "x" },
		"annotation":     func(s *discoveryv1.EndpointSlice) { s.Annotations[corev1.EndpointsLastChangeTriggerTime] = "t2" },
		"addressType":    func(s *discoveryv1.EndpointSlice) { s.AddressType = discoveryv1.AddressTypeIPv6 },
		"port name":      func(s *discoveryv1.EndpointSlice) { s.Ports[0].Name = ptr.To("grpc") },
		"port number":    func(s *discoveryv1.EndpointSlice) { s.Ports[0].Port = ptr.To[int32](1) },
		"port protocol":  func(s *discoveryv1.EndpointSlice) { s.Ports[0].Protocol = ptr.To(corev1.ProtocolUDP) },
		"appProtocol":    func(s *discoveryv1.EndpointSlice) { s.Ports[0].AppProtocol = nil },
		"extra port":     func(s *discoveryv1.EndpointSlice) { s.Ports = append(s.Ports, s.Ports[0]) },
		"address":        func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Addresses[0] = "10.0.0.2" },
		"ready":          func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Conditions.Ready = ptr.To(false) },
		"serving unset":  func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Conditions.Serving = nil },
		"terminating":    func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Conditions.Terminating = ptr.To(true) },
		"hostname":       func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Hostname = ptr.To("h2") },
		"targetRef":      func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].TargetRef.Name = "p2" },
		"topology":       func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].DeprecatedTopology["k"] = "w" },
		"nodeName":       func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].NodeName = ptr.To("n2") },
		"zone":           func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Zone = nil },
		"hint zone":      func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Hints.ForZones[0].Name = "z2" },
		"hint node":      func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Hints.ForNodes = nil },
		"no hints":       func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Hints = nil },
		"extra endpoint": func(s *discoveryv1.EndpointSlice) { s.Endpoints = append(s.Endpoints, s.Endpoints[0]) },
	}
	if !sameObject(base(), base()) {
		t.Fatal("equal objects differ")
	}
	for name, change := range changes {
		t.Run(name, func(t *testing.T) {
			b := base()
			change(b)
			if sameObject(base(), b) {
				t.Error("change not seen")
			}
		})
	}
	t.Run("nil and empty are equal", func(t *testing.T) {
		a, b := base(), base()
		a.Endpoints[0].DeprecatedTopology, b.Endpoints[0].DeprecatedTopology = nil, map[string]string{}
		a.Annotations, b.Annotations = nil, map[string]string{}
		if !sameObject(a, b) {
			t.Error("nil and empty maps differ")
		}
	})
}
