package writer

import (
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// appendLbEndpoint appends lb's wire encoding, byte for byte what pbOpts
// gives, for the messages render builds: a socket address with a port
// value, a hostname, a health check port and hostname, a health status. ok
// is false for anything else (metadata, a weight, additional addresses, an
// observability name, a named port, a pipe, unknown fields, a string that
// is not UTF-8, which proto refuses), and the caller goes through
// proto.Marshal. proto.Marshal was most of the cost of encoding a new
// endpoint (a third of W1's encode in the controller's shape).
// TestAppendLbEndpoint checks the two against each other, and
// TestAppendLbEndpointKnowsEveryField fails once the generated messages
// gain a field this does not know.
func appendLbEndpoint(b []byte, lb *endpointv3.LbEndpoint) (_ []byte, ok bool) {
	if lb.Metadata != nil || lb.LoadBalancingWeight != nil || unknown(lb) {
		return b, false
	}
	hid, _ := lb.HostIdentifier.(*endpointv3.LbEndpoint_Endpoint)
	if hid == nil || hid.Endpoint == nil {
		return b, false
	}
	ep := hid.Endpoint
	if len(ep.AdditionalAddresses) > 0 || ep.ObservabilityName != "" || ep.Address == nil || unknown(ep) || !utf8.ValidString(ep.Hostname) {
		return b, false
	}
	sock, _ := ep.Address.Address.(*corev3.Address_SocketAddress)
	if sock == nil || sock.SocketAddress == nil || unknown(ep.Address) {
		return b, false
	}
	sa := sock.SocketAddress
	if sa.ResolverName != "" || sa.Ipv4Compat || sa.NetworkNamespaceFilepath != "" || unknown(sa) || !utf8.ValidString(sa.Address) {
		return b, false
	}
	var port *corev3.SocketAddress_PortValue
	switch p := sa.PortSpecifier.(type) {
	case nil:
	case *corev3.SocketAddress_PortValue:
		port = p
	default:
		return b, false
	}
	hc := ep.HealthCheckConfig
	if hc != nil && (hc.Address != nil || hc.DisableActiveHealthCheck || unknown(hc) || !utf8.ValidString(hc.Hostname)) {
		return b, false
	}

	saSize := sizeVarintField(uint64(int64(sa.Protocol))) + sizeStringField(sa.Address)
	if port != nil {
		saSize += 1 + protowire.SizeVarint(uint64(port.PortValue)) // a oneof: even when 0
	}
	addrSize := 1 + protowire.SizeBytes(saSize)
	epSize := 1 + protowire.SizeBytes(addrSize) + sizeStringField(ep.Hostname)
	hcSize := 0
	if hc != nil {
		hcSize = sizeVarintField(uint64(hc.PortValue)) + sizeStringField(hc.Hostname)
		epSize += 1 + protowire.SizeBytes(hcSize)
	}

	// proto writes a message's oneof fields after its other fields: the
	// health status (2) before the endpoint (1), the port (3) last.
	b = appendVarintField(b, 2, uint64(int64(lb.HealthStatus))) // LbEndpoint.health_status
	b = protowire.AppendTag(b, 1, protowire.BytesType)          // LbEndpoint.endpoint
	b = protowire.AppendVarint(b, uint64(epSize))
	b = protowire.AppendTag(b, 1, protowire.BytesType) // Endpoint.address
	b = protowire.AppendVarint(b, uint64(addrSize))
	b = protowire.AppendTag(b, 1, protowire.BytesType) // Address.socket_address
	b = protowire.AppendVarint(b, uint64(saSize))
	b = appendVarintField(b, 1, uint64(int64(sa.Protocol)))
	b = appendStringField(b, 2, sa.Address)
	if port != nil {
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(port.PortValue))
	}
	if hc != nil {
		b = protowire.AppendTag(b, 2, protowire.BytesType) // Endpoint.health_check_config
		b = protowire.AppendVarint(b, uint64(hcSize))
		b = appendVarintField(b, 1, uint64(hc.PortValue))
		b = appendStringField(b, 2, hc.Hostname)
	}
	b = appendStringField(b, 3, ep.Hostname)
	return b, true
}

func unknown(m proto.Message) bool { return len(m.ProtoReflect().GetUnknown()) > 0 }

// Fields of number 1 to 15 have one-byte tags; proto3 leaves zero values out.

func sizeVarintField(v uint64) int {
	if v == 0 {
		return 0
	}
	return 1 + protowire.SizeVarint(v)
}

func sizeStringField(s string) int {
	if s == "" {
		return 0
	}
	return 1 + protowire.SizeBytes(len(s))
}

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), v)
}

func appendStringField(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	return protowire.AppendString(protowire.AppendTag(b, num, protowire.BytesType), s)
}
