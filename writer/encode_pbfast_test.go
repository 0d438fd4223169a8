package writer

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// appendLbEndpoint gives proto.Marshal's bytes for every message it takes,
// takes every message render builds, and leaves every other one to proto.
func TestAppendLbEndpoint(t *testing.T) {
	lb := func(ep *endpointv3.Endpoint, h corev3.HealthStatus) *endpointv3.LbEndpoint {
		return &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: ep}, HealthStatus: h}
	}
	sock := func(sa *corev3.SocketAddress) *corev3.Address {
		return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: sa}}
	}
	port := func(p uint32) *corev3.SocketAddress_PortValue { return &corev3.SocketAddress_PortValue{PortValue: p} }
	withUnknown := func(m proto.Message) {
		m.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 1))
	}

	taken := []*endpointv3.LbEndpoint{
		lb(&endpointv3.Endpoint{Address: addr("10.0.0.1", 8080), Hostname: "web-0"}, corev3.HealthStatus_HEALTHY),
		lb(&endpointv3.Endpoint{Address: addr("fd00::1", 0)}, corev3.HealthStatus_UNKNOWN), // a port of 0 is still written
		lb(&endpointv3.Endpoint{Address: sock(&corev3.SocketAddress{Address: "10.0.0.1"})}, corev3.HealthStatus_DRAINING),
		lb(&endpointv3.Endpoint{Address: sock(&corev3.SocketAddress{Protocol: corev3.SocketAddress_UDP, Address: "10.0.0.1", PortSpecifier: port(53)})}, 0),
		lb(&endpointv3.Endpoint{Address: sock(&corev3.SocketAddress{})}, 0),
		lb(&endpointv3.Endpoint{Address: addr("10.0.0.1", 65535), Hostname: "ünïcode-ホスト",
			HealthCheckConfig: &endpointv3.Endpoint_HealthCheckConfig{PortValue: 9090, Hostname: "hc.example"}}, corev3.HealthStatus_UNHEALTHY),
		lb(&endpointv3.Endpoint{Address: addr("10.0.0.1", 80), HealthCheckConfig: &endpointv3.Endpoint_HealthCheckConfig{}}, corev3.HealthStatus(-1)),
		lb(&endpointv3.Endpoint{Address: addr("10.0.0.1", 80), Hostname: string(make([]byte, 300))}, 0), // two-byte lengths
	}
	g := gen{rand.New(rand.NewPCG(7, 8))}
	for range 2000 {
		m := g.lbEndpoint()
		m.Metadata, m.LoadBalancingWeight = nil, nil
		taken = append(taken, m)
	}

	left := map[string]*endpointv3.LbEndpoint{
		"metadata": {HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: addr("10.0.0.1", 80)}},
			Metadata: &corev3.Metadata{FilterMetadata: nil}},
		"weight": {HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: addr("10.0.0.1", 80)}},
			LoadBalancingWeight: wrapperspb.UInt32(3)},
		"endpoint name":        {HostIdentifier: &endpointv3.LbEndpoint_EndpointName{EndpointName: "x"}},
		"no host identifier":   {},
		"nil endpoint":         {HostIdentifier: &endpointv3.LbEndpoint_Endpoint{}},
		"no address":           lb(&endpointv3.Endpoint{Hostname: "x"}, 0),
		"pipe":                 lb(&endpointv3.Endpoint{Address: &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/p"}}}}, 0),
		"nil socket address":   lb(&endpointv3.Endpoint{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{}}}, 0),
		"named port":           lb(&endpointv3.Endpoint{Address: sock(&corev3.SocketAddress{Address: "10.0.0.1", PortSpecifier: &corev3.SocketAddress_NamedPort{NamedPort: "http"}})}, 0),
		"resolver":             lb(&endpointv3.Endpoint{Address: sock(&corev3.SocketAddress{Address: "10.0.0.1", ResolverName: "r"})}, 0),
		"ipv4 compat":          lb(&endpointv3.Endpoint{Address: sock(&corev3.SocketAddress{Address: "::", Ipv4Compat: true})}, 0),
		"network namespace":    lb(&endpointv3.Endpoint{Address: sock(&corev3.SocketAddress{Address: "10.0.0.1", NetworkNamespaceFilepath: "/n"})}, 0),
		"observability name":   lb(&endpointv3.Endpoint{Address: addr("10.0.0.1", 80), ObservabilityName: "o"}, 0),
		"additional address":   lb(&endpointv3.Endpoint{Address: addr("10.0.0.1", 80), AdditionalAddresses: []*endpointv3.Endpoint_AdditionalAddress{{Address: addr("fd00::1", 80)}}}, 0),
		"health check address": lb(&endpointv3.Endpoint{Address: addr("10.0.0.1", 80), HealthCheckConfig: &endpointv3.Endpoint_HealthCheckConfig{Address: addr("10.0.0.2", 81)}}, 0),
		"health check off":     lb(&endpointv3.Endpoint{Address: addr("10.0.0.1", 80), HealthCheckConfig: &endpointv3.Endpoint_HealthCheckConfig{DisableActiveHealthCheck: true}}, 0),
		"hostname not UTF-8":   lb(&endpointv3.Endpoint{Address: addr("10.0.0.1", 80), Hostname: "a\xffb"}, 0),
		"address not UTF-8":    lb(&endpointv3.Endpoint{Address: addr("10.0.0.1\xff", 80)}, 0),
		"health check hostname not UTF-8": lb(&endpointv3.Endpoint{Address: addr("10.0.0.1", 80),
			HealthCheckConfig: &endpointv3.Endpoint_HealthCheckConfig{Hostname: "\xff"}}, 0),
	}
	for _, where := range []string{"lb", "endpoint", "address", "socket address", "health check"} {
		m := lb(&endpointv3.Endpoint{Address: addr("10.0.0.1", 80), HealthCheckConfig: &endpointv3.Endpoint_HealthCheckConfig{PortValue: 1}}, 0)
		ep := m.GetEndpoint()
		withUnknown(map[string]proto.Message{"lb": m, "endpoint": ep, "address": ep.Address, "socket address": ep.Address.GetSocketAddress(),
			"health check": ep.HealthCheckConfig}[where])
		left["unknown field in "+where] = m
	}

	prefix := []byte("earlier bytes")
	for i, m := range taken {
		want, err := pbOpts.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := appendLbEndpoint(slices.Clone(prefix), m)
		if !ok {
			t.Errorf("taken[%d] %v: left to proto", i, m)
			continue
		}
		if !bytes.HasPrefix(got, prefix) || !bytes.Equal(got[len(prefix):], want) {
			t.Errorf("taken[%d] %v:\n got %x\nwant %x", i, m, got[len(prefix):], want)
		}
	}
	for name, m := range left {
		if got, ok := appendLbEndpoint(slices.Clone(prefix), m); ok || !bytes.Equal(got, prefix) {
			t.Errorf("%s: taken (%v), or appended to the buffer", name, ok)
		}
	}
}

// The messages appendLbEndpoint reads have the fields it knows, no more: a
// field added by a newer go-control-plane would be dropped from every file
// without a word. Teach appendLbEndpoint the new field (or to leave a
// message that sets it to proto), then add it here.
func TestAppendLbEndpointKnowsEveryField(t *testing.T) {
	fieldsAre(t, "appendLbEndpoint knows", map[proto.Message][]string{
		&endpointv3.LbEndpoint{}:                 {"endpoint", "endpoint_name", "health_status", "metadata", "load_balancing_weight"},
		&endpointv3.Endpoint{}:                   {"address", "health_check_config", "hostname", "additional_addresses", "observability_name"},
		&endpointv3.Endpoint_HealthCheckConfig{}: {"port_value", "hostname", "address", "disable_active_health_check"},
		&corev3.Address{}:                        {"socket_address", "pipe", "envoy_internal_address"},
		&corev3.SocketAddress{}:                  {"protocol", "address", "port_value", "named_port", "resolver_name", "ipv4_compat", "network_namespace_filepath"},
	})
}

// fieldsAre fails t unless each message has exactly the fields named.
func fieldsAre(t *testing.T, what string, known map[proto.Message][]string) {
	t.Helper()
	for m, names := range known {
		d := m.ProtoReflect().Descriptor()
		var got []string
		for i := range d.Fields().Len() {
			got = append(got, string(d.Fields().Get(i).Name()))
		}
		slices.Sort(got)
		slices.Sort(names)
		if !slices.Equal(got, names) {
			t.Errorf("%s has fields %v; %s %v", d.FullName(), got, what, names)
		}
	}
}

// skeleton's copies field by field marshal as the copy through protoreflect
// does, unknown fields included, and carry every field the protos have.
func TestSkeletonKnowsEveryField(t *testing.T) {
	g := gen{rand.New(rand.NewPCG(9, 10))}
	unknownField := protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 1)
	for i := range 500 {
		cla := g.cla()
		cla.NamedEndpoints = map[string]*endpointv3.Endpoint{"a": {Hostname: "x"}}
		msgs := []proto.Message{cla}
		for _, lle := range cla.Endpoints {
			lle.Proximity = wrapperspb.UInt32(uint32(i))
			if i%3 == 0 {
				lle.LbConfig = &endpointv3.LocalityLbEndpoints_LedsClusterLocalityConfig{
					LedsClusterLocalityConfig: &endpointv3.LedsClusterLocalityConfig{LedsCollectionName: "leds"}}
			}
			msgs = append(msgs, lle)
		}
		if i%2 == 0 {
			for _, m := range msgs {
				m.ProtoReflect().SetUnknown(unknownField)
			}
		}
		for _, m := range msgs {
			skip := claEndpoints
			if _, ok := m.(*endpointv3.LocalityLbEndpoints); ok {
				skip = lleLbEndpoints
			}
			fast, err1 := skeleton(m, skip)
			slow, err2 := reflectSkeleton(m, skip)
			if (err1 == nil) != (err2 == nil) {
				t.Fatalf("%T: errors differ: %v, %v", m, err1, err2)
			}
			if err1 != nil {
				continue
			}
			a, b := must(pbOpts.Marshal(fast)), must(pbOpts.Marshal(slow))
			if !bytes.Equal(a, b) {
				t.Fatalf("%T: the copy differs from protoreflect's:\n%x\n%x", m, a, b)
			}
		}
	}
	fieldsAre(t, "skeleton copies", map[proto.Message][]string{
		&endpointv3.ClusterLoadAssignment{}: {"cluster_name", "endpoints", "named_endpoints", "policy"},
		&endpointv3.LocalityLbEndpoints{}: {"locality", "metadata", "lb_endpoints", "load_balancer_endpoints",
			"leds_cluster_locality_config", "load_balancing_weight", "priority", "proximity"},
	})
}
