package writer

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"sigs.k8s.io/yaml"
)

// parseLikeEnvoy reads a file the way Envoy's filesystem subscription does:
// the parser is chosen by extension (.yaml/.yml YAML converted to JSON, .pb
// binary, anything else JSON; unknown fields rejected), the file must hold a
// DiscoveryResponse with exactly one resource of the CLA type, and that CLA
// must pass ValidateAll().
func parseLikeEnvoy(path string, data []byte) (*discoveryv3.DiscoveryResponse, *endpointv3.ClusterLoadAssignment, error) {
	var resp discoveryv3.DiscoveryResponse
	switch filepath.Ext(path) {
	case ".pb":
		if err := proto.Unmarshal(data, &resp); err != nil {
			return nil, nil, fmt.Errorf("proto: %w", err)
		}
	case ".yaml", ".yml":
		j, err := yaml.YAMLToJSON(data)
		if err != nil {
			return nil, nil, fmt.Errorf("yaml: %w", err)
		}
		if err := protojson.Unmarshal(j, &resp); err != nil {
			return nil, nil, fmt.Errorf("yaml as json: %w", err)
		}
	default:
		if err := protojson.Unmarshal(data, &resp); err != nil {
			return nil, nil, fmt.Errorf("json: %w", err)
		}
	}
	if n := len(resp.GetResources()); n != 1 {
		return nil, nil, fmt.Errorf("Unexpected EDS resource length: %d", n)
	}
	if got := resp.GetResources()[0].GetTypeUrl(); got != claTypeURL {
		return nil, nil, fmt.Errorf("resource type %q", got)
	}
	var cla endpointv3.ClusterLoadAssignment
	if err := resp.GetResources()[0].UnmarshalTo(&cla); err != nil {
		return nil, nil, fmt.Errorf("resource: %w", err)
	}
	if err := cla.ValidateAll(); err != nil {
		return nil, nil, fmt.Errorf("validate: %w", err)
	}
	return &resp, &cla, nil
}

func addr(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       ip,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func lbEndpoint(ip string, port uint32, hostname string, health corev3.HealthStatus) *endpointv3.LbEndpoint {
	return &endpointv3.LbEndpoint{
		HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address:  addr(ip, port),
			Hostname: hostname,
		}},
		HealthStatus: health,
	}
}

// smallCLA is the fixed CLA of the golden files: two priorities, a draining
// endpoint, IPv6, a policy and an empty locality.
func smallCLA() *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{
		ClusterName: "default/web/http",
		Policy:      &endpointv3.ClusterLoadAssignment_Policy{OverprovisioningFactor: wrapperspb.UInt32(140)},
		Endpoints: []*endpointv3.LocalityLbEndpoints{
			{
				Locality: &corev3.Locality{Region: "eu-west-1", Zone: "eu-west-1a"},
				LbEndpoints: []*endpointv3.LbEndpoint{
					lbEndpoint("10.0.0.1", 8080, "web-0", corev3.HealthStatus_HEALTHY),
					lbEndpoint("10.0.0.2", 8080, "web-1", corev3.HealthStatus_DRAINING),
				},
			},
			{
				Locality: &corev3.Locality{Region: "eu-west-1", Zone: "eu-west-1b"},
				Priority: 1,
				LbEndpoints: []*endpointv3.LbEndpoint{
					lbEndpoint("fd00::1", 8080, "web-2", corev3.HealthStatus_HEALTHY),
				},
			},
			{Locality: &corev3.Locality{Zone: "empty"}, Priority: 2},
		},
	}
}

// weirdStrings are strings that YAML or JSON could read as something else,
// or that need quoting, escaping, folding or block scalars.
var weirdStrings = []string{
	"", "yes", "No", "on", "OFF", "null", "~", "true", "123", "-1.5", "0x1F", "1e3", ".inf", "012",
	"- a", "a: b", "a:b", "#x", "x #y", "'q'", `"dq"`, "multi\nline", "trail\n", "\n\nlead", "\ttab",
	" lead", "trail ", "ünï©ødé", "😀", `a\b`, "{[]}", "&anchor", "*alias", "!tag", "%", "@at", "`",
	"line\n\n  indented\n", "|", ">", "?", "---", "...", "\u2028", "a\u2029b", "\u0085", "\ufeff", "\x7f",
	"\u0080", "<script>", "\U0010FFFF",
	strings.Repeat("long words that a YAML emitter might fold ", 6),
}

var healths = []corev3.HealthStatus{
	corev3.HealthStatus_UNKNOWN, corev3.HealthStatus_HEALTHY, corev3.HealthStatus_UNHEALTHY,
	corev3.HealthStatus_DRAINING, corev3.HealthStatus_TIMEOUT, corev3.HealthStatus_DEGRADED,
}

// gen makes random valid CLAs.
type gen struct{ r *rand.Rand }

func (g gen) str() string {
	if g.r.IntN(3) == 0 {
		return weirdStrings[g.r.IntN(len(weirdStrings))]
	}
	return fmt.Sprintf("s%d", g.r.IntN(1000))
}

func (g gen) ip() string {
	var b [16]byte
	for i := range b {
		b[i] = byte(g.r.IntN(256))
	}
	if g.r.IntN(2) == 0 {
		return netip.AddrFrom4([4]byte(b[:4])).String()
	}
	return netip.AddrFrom16(b).String()
}

func (g gen) value(depth int) *structpb.Value {
	n := 6
	if depth > 2 {
		n = 4
	}
	switch g.r.IntN(n) {
	case 0:
		return structpb.NewStringValue(g.str())
	case 1:
		nums := []float64{0, 1, -7, 0.1, 1.5e-7, 1e21, 12345678901, 3.25}
		return structpb.NewNumberValue(nums[g.r.IntN(len(nums))])
	case 2:
		return structpb.NewBoolValue(g.r.IntN(2) == 0)
	case 3:
		return structpb.NewNullValue()
	case 4:
		l := &structpb.ListValue{}
		for range g.r.IntN(3) {
			l.Values = append(l.Values, g.value(depth+1))
		}
		return structpb.NewListValue(l)
	default:
		return structpb.NewStructValue(g.strct(depth + 1))
	}
}

func (g gen) strct(depth int) *structpb.Struct {
	s := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	for range g.r.IntN(4) {
		s.Fields[g.str()] = g.value(depth)
	}
	return s
}

func (g gen) metadata() *corev3.Metadata {
	if g.r.IntN(3) != 0 {
		return nil
	}
	m := &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{}}
	for range 1 + g.r.IntN(2) {
		m.FilterMetadata["f"+g.str()] = g.strct(0) // keys must not be empty
	}
	return m
}

func (g gen) weight() *wrapperspb.UInt32Value {
	if g.r.IntN(3) != 0 {
		return nil
	}
	return wrapperspb.UInt32(1 + uint32(g.r.IntN(1000)))
}

func (g gen) lbEndpoint() *endpointv3.LbEndpoint {
	ep := &endpointv3.Endpoint{Address: addr(g.ip(), uint32(g.r.IntN(65536)))}
	if g.r.IntN(2) == 0 {
		ep.Hostname = g.str()
	}
	if g.r.IntN(5) == 0 {
		ep.HealthCheckConfig = &endpointv3.Endpoint_HealthCheckConfig{PortValue: uint32(g.r.IntN(65536))}
	}
	return &endpointv3.LbEndpoint{
		HostIdentifier:      &endpointv3.LbEndpoint_Endpoint{Endpoint: ep},
		HealthStatus:        healths[g.r.IntN(len(healths))],
		Metadata:            g.metadata(),
		LoadBalancingWeight: g.weight(),
	}
}

func (g gen) locality(priority uint32) *endpointv3.LocalityLbEndpoints {
	lle := &endpointv3.LocalityLbEndpoints{
		Priority:            priority,
		LoadBalancingWeight: g.weight(),
		Metadata:            g.metadata(),
	}
	if g.r.IntN(4) != 0 {
		lle.Locality = &corev3.Locality{Region: g.str(), Zone: g.str(), SubZone: g.str()}
	}
	for range g.r.IntN(7) {
		lle.LbEndpoints = append(lle.LbEndpoints, g.lbEndpoint())
	}
	return lle
}

func (g gen) cla() *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: "ns/" + g.str() + "x/port"}
	if g.r.IntN(2) == 0 {
		cla.Policy = &endpointv3.ClusterLoadAssignment_Policy{
			OverprovisioningFactor: wrapperspb.UInt32(100 + uint32(g.r.IntN(100))),
			WeightedPriorityHealth: g.r.IntN(2) == 0,
		}
		if g.r.IntN(2) == 0 {
			cla.Policy.EndpointStaleAfter = durationpb.New(1500_000_000)
			cla.Policy.DropOverloads = []*endpointv3.ClusterLoadAssignment_Policy_DropOverload{{
				Category:       "throttle",
				DropPercentage: &typev3.FractionalPercent{Numerator: 5, Denominator: typev3.FractionalPercent_TEN_THOUSAND},
			}}
		}
	}
	if g.r.IntN(5) == 0 {
		cla.NamedEndpoints = map[string]*endpointv3.Endpoint{g.str(): {Address: addr(g.ip(), 443)}}
	}
	for i := range g.r.IntN(5) {
		cla.Endpoints = append(cla.Endpoints, g.locality(uint32(i/2)))
	}
	return cla
}

// mutate returns a new CLA like cla, as render makes them: most endpoints
// keep their pointers, some are replaced, dropped or inserted, runs of them
// vanish, and sometimes localities are reordered or endpoints move to
// another locality.
func (g gen) mutate(cla *endpointv3.ClusterLoadAssignment) *endpointv3.ClusterLoadAssignment {
	out := &endpointv3.ClusterLoadAssignment{ClusterName: cla.ClusterName, Policy: cla.Policy}
	var moved []*endpointv3.LbEndpoint
	for _, lle := range cla.Endpoints {
		n := &endpointv3.LocalityLbEndpoints{Locality: lle.Locality, Priority: lle.Priority, Metadata: lle.Metadata}
		n.LbEndpoints = append(n.LbEndpoints, moved...)
		moved = nil
		for i := 0; i < len(lle.LbEndpoints); i++ {
			lb := lle.LbEndpoints[i]
			switch g.r.IntN(12) {
			case 0: // replaced
				n.LbEndpoints = append(n.LbEndpoints, g.lbEndpoint())
			case 1: // dropped
			case 2: // a new one before it
				n.LbEndpoints = append(n.LbEndpoints, g.lbEndpoint(), lb)
			case 3: // a run dropped
				i += g.r.IntN(4)
			case 4: // moved to the next locality
				moved = append(moved, lb)
			default:
				n.LbEndpoints = append(n.LbEndpoints, lb)
			}
		}
		out.Endpoints = append(out.Endpoints, n)
	}
	if len(out.Endpoints) > 1 && g.r.IntN(5) == 0 {
		out.Endpoints[0], out.Endpoints[1] = out.Endpoints[1], out.Endpoints[0]
	}
	return out
}
