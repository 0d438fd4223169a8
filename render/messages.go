package render

import (
	"net/netip"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// Host is one lb_endpoints entry of a cluster, as render hands it on: the
// same value (a pointer) for as long as the endpoint does not change, even
// across new versions of its slice, so that the writer can tell it has
// encoded it before and copy those bytes. LbEndpoint builds its Envoy
// message, a new one each call: the writer asks only for the endpoints it
// has not encoded yet (a new or changed endpoint, a file written from
// scratch). Keeping the small description rather than the built message
// costs an endpoint 48 bytes instead of 400 (the seven messages of an
// endpoint are that big), which is most of what a big cluster costs.
//
// Host is an alias of an interface literal, and writer.Endpoint is one of
// the same literal: the two are one type, so render's output goes to the
// writer without either package importing the other.
type Host = interface {
	LbEndpoint() *endpointv3.LbEndpoint
	HealthStatus() corev3.HealthStatus
}

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

// host is what one endpoint's message is built from. It is immutable.
type host struct {
	text     string // the address, canonical
	hostname string
	port     uint32
	health   health
	extra    *endpointExtra // nil when zero, as for most endpoints
}

func newHost(k *endpointKey, text string) *host {
	h := &host{text: text, hostname: k.hostname, port: k.port, health: k.health}
	if k.extra != (endpointExtra{}) {
		x := k.extra
		h.extra = &x
	}
	return h
}

// HealthStatus is the health_status of h's message.
func (h *host) HealthStatus() corev3.HealthStatus { return h.health.status() }

// LbEndpoint builds h's message.
func (h *host) LbEndpoint() *endpointv3.LbEndpoint {
	return new(lbMessages).build(h)
}

// lbMessages is every message of one endpoint, allocated as one block: one
// allocation instead of seven.
type lbMessages struct {
	lb     endpointv3.LbEndpoint
	hostID endpointv3.LbEndpoint_Endpoint
	ep     endpointv3.Endpoint
	addr   corev3.Address
	sock   corev3.Address_SocketAddress
	sa     corev3.SocketAddress
	port   corev3.SocketAddress_PortValue
}

// build fills m with h's message and returns it.
func (m *lbMessages) build(h *host) *endpointv3.LbEndpoint {
	m.port.PortValue = h.port
	m.sa.Address = h.text
	m.sa.PortSpecifier = &m.port
	m.sock.SocketAddress = &m.sa
	m.addr.Address = &m.sock
	m.ep.Address = &m.addr
	m.ep.Hostname = h.hostname
	m.hostID.Endpoint = &m.ep
	m.lb.HostIdentifier = &m.hostID
	m.lb.HealthStatus = h.health.status()
	if x := h.extra; x != nil {
		if x.hcPort != 0 || x.hcHostname != "" {
			m.ep.HealthCheckConfig = &endpointv3.Endpoint_HealthCheckConfig{PortValue: x.hcPort, Hostname: x.hcHostname}
		}
		if x.metaKey != "" {
			m.lb.Metadata = metadata(x.metaKey, map[string]string{
				"pod": x.podName, "namespace": x.podNamespace, "node": x.node, "zone": x.zone,
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
