package render

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
)

// publishedAddrs renders default/web from slices under o and returns the
// addresses published and the skips' reasons.
func publishedAddrs(t *testing.T, o Options, sl ...*discoveryv1.EndpointSlice) (addrs []string, skips []Skip) {
	t.Helper()
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	clusters, skips := r.Service(web, sl)
	for _, c := range clusters {
		for _, l := range c.CLA().GetEndpoints() {
			for _, lb := range l.GetLbEndpoints() {
				addrs = append(addrs, lb.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
			}
		}
	}
	slices.Sort(addrs)
	return addrs, skips
}

func mustPrefixes(t *testing.T, in ...string) []netip.Prefix {
	t.Helper()
	p, err := ParsePrefixes(in)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The exploit: a slice written by hand (a folder of manifests, a remote
// source) that sends the gateway's traffic to its own admin port on
// loopback or to the cloud's metadata service. Those addresses are refused
// as the API server refuses them, mapped into IPv6 too, and counted; an
// allow-list admits only its own addresses, and may name loopback for a VM
// whose upstreams are local.
func TestAddressesNotAllowed(t *testing.T) {
	v4 := slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080),
		ep("10.0.0.1"), ep("127.0.0.1"), ep("169.254.169.254"), ep("224.0.0.251"), ep("192.168.1.5"))
	v6 := slice("web-b", discoveryv1.AddressTypeIPv6, port("http", 8080),
		ep("fd00::1"), ep("::1"), ep("fe80::1"), ep("::ffff:169.254.169.254"), ep("ff02::1"))
	tests := []struct {
		name   string
		o      Options
		want   []string
		denied int
		detail string
	}{
		{"no allow-list: what Kubernetes refuses", Options{}, []string{"10.0.0.1", "192.168.1.5", "fd00::1"}, 7, "loopback, link-local or multicast"},
		{"allow-list", Options{AllowedAddresses: mustPrefixes(t, "10.0.0.0/8", "fd00::/8")}, []string{"10.0.0.1", "fd00::1"}, 8, "outside the allowed addresses (10.0.0.0/8, fd00::/8)"},
		{"allow-list naming loopback", Options{AllowedAddresses: mustPrefixes(t, "127.0.0.1", "10.0.0.0/8")}, []string{"10.0.0.1", "127.0.0.1"}, 8, "outside the allowed addresses"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, skips := publishedAddrs(t, tt.o, v4, v6)
			if !slices.Equal(got, tt.want) {
				t.Errorf("published %q, want %q", got, tt.want)
			}
			denied := 0
			for _, s := range skips {
				if s.Reason == ReasonAddressNotAllowed {
					denied++
					if !strings.Contains(s.Detail, tt.detail) || !strings.HasPrefix(s.Object, "default/web-") {
						t.Errorf("skip %+v: want %q in the detail and the slice as object", s, tt.detail)
					}
				}
			}
			if denied != tt.denied {
				t.Errorf("%d endpoints refused, want %d: %+v", denied, tt.denied, skips)
			}
		})
	}
}

// A source's own list replaces the global one for its slices.
func TestAddressesPerSource(t *testing.T) {
	o := Options{
		AllowedAddresses: mustPrefixes(t, "10.0.0.0/8"),
		SourceAddresses:  map[string][]netip.Prefix{"west": mustPrefixes(t, "10.2.0.0/16")},
	}
	got, _ := twoSources(t, o,
		slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080), from("east"), ep("10.1.0.1"), ep("10.2.0.1"), ep("172.16.0.1")),
		slice("web-b", discoveryv1.AddressTypeIPv4, port("http", 8080), from("west"), ep("10.1.0.2"), ep("10.2.0.2")))
	joined := strings.Join(got, " ")
	for _, want := range []string{"10.1.0.1", "10.2.0.1", "10.2.0.2"} {
		if !strings.Contains(joined, want) {
			t.Errorf("%s not published: %s", want, joined)
		}
	}
	for _, not := range []string{"172.16.0.1", "10.1.0.2"} {
		if strings.Contains(joined, not) {
			t.Errorf("%s published: %s", not, joined)
		}
	}
	if _, err := New(Options{SourceAddresses: map[string][]netip.Prefix{"mars": nil}}); err == nil || !strings.Contains(err.Error(), "mars, which is not a source") {
		t.Errorf("a list for an unknown source: %v", err)
	}
}

func TestParsePrefixes(t *testing.T) {
	got, err := ParsePrefixes([]string{"10.0.0.0/8", " fd00::/8", "192.168.1.1", "::ffff:10.1.1.1"})
	if err != nil {
		t.Fatal(err)
	}
	if want := mustPrefixes(t, "10.0.0.0/8", "fd00::/8", "192.168.1.1/32", "10.1.1.1/32"); !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for in, msg := range map[string]string{"10.1.2.3/8": "did you mean 10.0.0.0/8?", "ten": "not an address or a CIDR prefix", "fe80::1%eth0": "not an address"} {
		if _, err := ParsePrefixes([]string{in}); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: error %v, want %q", in, err, msg)
		}
	}
}
