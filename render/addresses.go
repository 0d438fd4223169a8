package render

import (
	"fmt"
	"net/netip"
	"strings"
)

// ReasonAddressNotAllowed is the Skip reason of an endpoint whose address
// Envoy must not be sent to: outside the allowed addresses, or, with none
// given, one of the addresses Kubernetes refuses for an endpoint.
const ReasonAddressNotAllowed = "address-not-allowed"

// Whoever writes an EndpointSlice picks the addresses the Envoys connect
// to. The API server refuses loopback, link-local and link-local multicast
// addresses in a slice (ValidateEndpointIP), but a folder of manifests, a
// remote source or an older API server need not: an endpoint at 127.0.0.1
// would reach the Envoy's own admin port or a node-local agent, one at
// 169.254.169.254 the cloud's metadata service, with the gateway's
// identity. So edsync refuses them too (multicast with them: no TCP
// endpoint is one), unless an allow-list names them; with an allow-list,
// only its addresses are published.

// notRoutable says whether a is an address no Service endpoint has.
func notRoutable(a netip.Addr) bool {
	return a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsMulticast() || a.IsUnspecified()
}

// allowed says whether an endpoint may be at a, under the allow-list
// (empty: every address but the not routable ones). An IPv4-mapped IPv6
// address is judged as the IPv4 address it is, so that ::ffff:127.0.0.1 is
// not a way around the list.
func allowed(a netip.Addr, list []netip.Prefix) bool {
	a = a.Unmap()
	if len(list) == 0 {
		return !notRoutable(a)
	}
	for _, p := range list {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// notAllowedDetail is the skip detail of an endpoint at a.
func notAllowedDetail(a netip.Addr, list []netip.Prefix) string {
	if len(list) == 0 {
		return fmt.Sprintf("address %s is loopback, link-local or multicast: Kubernetes refuses such endpoints (an allow-list that names it lets it in)", a)
	}
	return fmt.Sprintf("address %s is outside the allowed addresses (%s)", a, prefixList(list))
}

// prefixList joins prefixes for a message, at most 8 of them.
func prefixList(list []netip.Prefix) string {
	var b strings.Builder
	for i, p := range list {
		if i == 8 {
			fmt.Fprintf(&b, ", ... (%d in all)", len(list))
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// ParsePrefixes reads an allow-list: CIDR prefixes (10.0.0.0/8,
// fd00::/8) or single addresses. It refuses a prefix with host bits set
// (10.1.2.3/8), which is most likely a typo of what was meant.
func ParsePrefixes(in []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(in))
	for _, s := range in {
		s = strings.TrimSpace(s)
		if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not an address or a CIDR prefix (10.0.0.0/8, fd00::/8)", s)
		}
		if p != p.Masked() {
			return nil, fmt.Errorf("%q has bits set past its length: did you mean %s?", s, p.Masked())
		}
		out = append(out, p)
	}
	return out, nil
}
