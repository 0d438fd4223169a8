package render

import (
	"net/netip"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// canonical returns addr in canonical form, reusing the slice's string when
// it already is (it nearly always is): the endpoint then costs no string of
// its own.
func canonical(addr netip.Addr, text string) string {
	var buf [64]byte
	if string(addr.AppendTo(buf[:0])) != text {
		return addr.String()
	}
	return text
}

// lbMessages is every message of one published endpoint, allocated as one
// block: one allocation instead of seven per endpoint, which halves the
// heap they take and the garbage collector's work. One block per endpoint
// rather than per slice: a block that a later slice version reuses (see
// prepare) then keeps only its own endpoint alive. (The size class of a
// single block wastes about what a slice-wide array's does.)
type lbMessages struct {
	lb     endpointv3.LbEndpoint
	hostID endpointv3.LbEndpoint_Endpoint
	ep     endpointv3.Endpoint
	addr   corev3.Address
	sock   corev3.Address_SocketAddress
	sa     corev3.SocketAddress
	port   corev3.SocketAddress_PortValue
	health health // the rank behind lb.HealthStatus, for compareKey
	extra  *endpointExtra
}

// build fills m with the Envoy message for k, text being k.addr in
// canonical form, and returns it.
func (m *lbMessages) build(k *endpointKey, text string) *endpointv3.LbEndpoint {
	m.port.PortValue = k.port
	m.health = k.health
	m.sa.Address = text
	m.sa.PortSpecifier = &m.port
	m.sock.SocketAddress = &m.sa
	m.addr.Address = &m.sock
	m.ep.Address = &m.addr
	m.ep.Hostname = k.hostname
	m.hostID.Endpoint = &m.ep
	m.lb.HostIdentifier = &m.hostID
	m.lb.HealthStatus = k.health.status()
	if k.extra != (endpointExtra{}) {
		x := k.extra
		m.extra = &x
		if x.hcPort != 0 || x.hcHostname != "" {
			m.ep.HealthCheckConfig = &endpointv3.Endpoint_HealthCheckConfig{PortValue: x.hcPort, Hostname: x.hcHostname}
		}
		if x.metaKey != "" {
			m.lb.Metadata = metadata(x.metaKey, map[string]string{
				"pod": x.podName, "namespace": x.podNamespace, "node": x.node, "zone": k.zone,
			})
		}
	}
	return &m.lb
}

// metadata is filter_metadata[key] holding the non-empty fields as strings.
func metadata(key string, fields map[string]string) *corev3.Metadata {
	st := &structpb.Struct{Fields: make(map[string]*structpb.Value, len(fields))}
	for k, v := range fields {
		if v != "" {
			st.Fields[k] = structpb.NewStringValue(v)
		}
	}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{key: st}}
}
