package render

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/wrapperspb"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Builders for inputs: an EndpointSlice as the controller writes it.

type sliceOpt func(*discoveryv1.EndpointSlice)

func slice(name string, at discoveryv1.AddressType, opts ...sliceOpt) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "default", Name: name,
			Labels: map[string]string{discoveryv1.LabelServiceName: "web"},
		},
		AddressType: at,
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

func port(name string, number int32) sliceOpt {
	return func(s *discoveryv1.EndpointSlice) {
		p := discoveryv1.EndpointPort{Port: ptr.To(number), Protocol: ptr.To(corev1.ProtocolTCP)}
		if name != "" {
			p.Name = ptr.To(name)
		}
		s.Ports = append(s.Ports, p)
	}
}

type epOpt func(*discoveryv1.Endpoint)

func ep(addr string, opts ...epOpt) sliceOpt {
	return func(s *discoveryv1.EndpointSlice) {
		e := discoveryv1.Endpoint{Addresses: []string{addr}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}
		for _, o := range opts {
			o(&e)
		}
		s.Endpoints = append(s.Endpoints, e)
	}
}

func conds(ready, serving, terminating *bool) epOpt {
	return func(e *discoveryv1.Endpoint) {
		e.Conditions = discoveryv1.EndpointConditions{Ready: ready, Serving: serving, Terminating: terminating}
	}
}

var (
	tru = ptr.To(true)
	fal = ptr.To(false)
)

func terminating() epOpt  { return conds(fal, tru, tru) }
func notReady() epOpt     { return conds(fal, fal, fal) }
func zone(z string) epOpt { return func(e *discoveryv1.Endpoint) { e.Zone = ptr.To(z) } }
func pod(name string) epOpt {
	return func(e *discoveryv1.Endpoint) { e.TargetRef = &corev1.ObjectReference{Kind: "Pod", Name: name} }
}

// Builders for expected output.

func lb(addr string, port uint32, hs corev3.HealthStatus, hostname string) *endpointv3.LbEndpoint {
	return &endpointv3.LbEndpoint{
		HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
			}}},
			Hostname: hostname,
		}},
		HealthStatus: hs,
	}
}

func healthy8080(addrs ...string) []*endpointv3.LbEndpoint {
	var out []*endpointv3.LbEndpoint
	for _, a := range addrs {
		out = append(out, lb(a, 8080, corev3.HealthStatus_HEALTHY, ""))
	}
	return out
}

func locality(z string, eps ...*endpointv3.LbEndpoint) *endpointv3.LocalityLbEndpoints {
	l := &endpointv3.LocalityLbEndpoints{LbEndpoints: eps, LoadBalancingWeight: wrapperspb.UInt32(uint32(len(eps)))}
	if z != "" {
		l.Locality = &corev3.Locality{Zone: z}
	}
	return l
}

func cla(name string, ls ...*endpointv3.LocalityLbEndpoints) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: ls}
}

var web = ServiceKey{Namespace: "default", Name: "web"}

func TestServiceOf(t *testing.T) {
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   ServiceKey
		ok     bool
	}{
		{"labelled", map[string]string{discoveryv1.LabelServiceName: "web"}, web, true},
		{"no service-name label", map[string]string{"app": "web"}, ServiceKey{}, false},
		{"empty label", map[string]string{discoveryv1.LabelServiceName: ""}, ServiceKey{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "x", Labels: tc.labels}}
			got, ok := ServiceOf(s)
			if got != tc.want || ok != tc.ok {
				t.Errorf("ServiceOf = %v, %v; want %v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestContract(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   Options
		slices []*discoveryv1.EndpointSlice
		want   []*endpointv3.ClusterLoadAssignment
		skips  []string // reasons, in order
	}{
		{
			name: "ready endpoints of a named port, sorted by ip",
			slices: []*discoveryv1.EndpointSlice{slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080),
				ep("10.0.0.10"), ep("10.0.0.9"), ep("10.0.0.2"))},
			want: []*endpointv3.ClusterLoadAssignment{cla("default/web/http", locality("", healthy8080("10.0.0.2", "10.0.0.9", "10.0.0.10")...))},
		},
		{
			name: "ready unset counts as ready",
			slices: []*discoveryv1.EndpointSlice{slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080),
				ep("10.0.0.1", conds(nil, nil, nil)))},
			want: []*endpointv3.ClusterLoadAssignment{cla("default/web/http", locality("", healthy8080("10.0.0.1")...))},
		},
		{
			name:   "unnamed port",
			slices: []*discoveryv1.EndpointSlice{slice("web-a", discoveryv1.AddressTypeIPv4, port("", 80), ep("10.0.0.1"))},
			want: []*endpointv3.ClusterLoadAssignment{cla("default/web", locality("",
				lb("10.0.0.1", 80, corev3.HealthStatus_HEALTHY, "")))},
		},
		{
			name: "two ports give two clusters",
			slices: []*discoveryv1.EndpointSlice{slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080), port("metrics", 9090),
				ep("10.0.0.1"))},
			want: []*endpointv3.ClusterLoadAssignment{
				cla("default/web/http", locality("", healthy8080("10.0.0.1")...)),
				cla("default/web/metrics", locality("", lb("10.0.0.1", 9090, corev3.HealthStatus_HEALTHY, ""))),
			},
		},
		{
			name: "named port whose number differs between slices",
			slices: []*discoveryv1.EndpointSlice{
				slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080), ep("10.0.0.2")),
				slice("web-b", discoveryv1.AddressTypeIPv4, port("http", 9000), ep("10.0.0.1")),
			},
			want: []*endpointv3.ClusterLoadAssignment{cla("default/web/http", locality("",
				lb("10.0.0.1", 9000, corev3.HealthStatus_HEALTHY, ""),
				lb("10.0.0.2", 8080, corev3.HealthStatus_HEALTHY, "")))},
		},
		{
			name: "same ip:port in two slices: the healthiest wins",
			slices: []*discoveryv1.EndpointSlice{
				slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080), ep("10.0.0.1", terminating())),
				slice("web-b", discoveryv1.AddressTypeIPv4, port("http", 8080), ep("10.0.0.1")),
			},
			want: []*endpointv3.ClusterLoadAssignment{cla("default/web/http", locality("", healthy8080("10.0.0.1")...))},
		},
		{
			name: "same ip:port twice, draining beats unhealthy",
			opts: Options{NotReady: NotReadyUnhealthy},
			slices: []*discoveryv1.EndpointSlice{
				slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080), ep("10.0.0.1", notReady())),
				slice("web-b", discoveryv1.AddressTypeIPv4, port("http", 8080), ep("10.0.0.1", terminating())),
			},
			want: []*endpointv3.ClusterLoadAssignment{cla("default/web/http", locality("", lb("10.0.0.1", 8080, corev3.HealthStatus_DRAINING, "")))},
		},
		{
			name: "terminating and serving is draining by default",
			slices: []*discoveryv1.EndpointSlice{slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080),
				ep("10.0.0.1"), ep("10.0.0.2", terminating()))},
			want: []*endpointv3.ClusterLoadAssignment{cla("default/web/http", locality("",
				lb("10.0.0.1", 8080, corev3.HealthStatus_HEALTHY, ""),
				lb("10.0.0.2", 8080, corev3.HealthStatus_DRAINING, "")))},
		},
		{
			name: "terminating dropped with --terminating drop",
			opts: Options{Terminating: TerminatingDrop},
			slices: []*discoveryv1.EndpointSlice{slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080),
				ep("10.0.0.1"), ep("10.0.0.2", terminating()))},
			want: []*endpointv3.ClusterLoadAssignment{cla("default/web/http", locality("", healthy8080("10.0.0.1")...))},
		},
		{
			name: "terminating and not serving is left out",
			slices: []*discoveryv1.EndpointSlice{slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080),
				ep("10.0.0.1"), ep("10.0.0.2", conds(fal, fal, tru)))},
			want: []*endpointv3.ClusterLoadAssignment{cla("default/web/http", locality("", healthy8080("10.0.0.1")...))},
		},
		{
			name: "not ready is left out by default",
			slices: []*discoveryv1.EndpointSlice{slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080),
				ep("10.0.0.1"), ep("10.0.0.2", notReady()))},
			want: []*endpointv3.ClusterLoadAssignment{cla("default/web/http", locality("", healthy8080("10.0.0.1")...))},
		},
		{
			name: "not ready is unhealthy with --not-ready unhealthy",
			opts: Options{NotReady: NotReadyUnhealthy},
			slices: []*discoveryv1.EndpointSlice{slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080),
				ep("10.0.0.1"), ep("10.0.0.2", notReady()))},
			want: []*endpointv3.ClusterLoadAssignment{cla("default/web/http", locality("",
				lb("10.0.0.1", 8080, corev3.HealthStatus_HEALTHY, ""),
				lb("10.0.0.2", 8080, corev3.HealthStatus_UNHEALTHY, "")))},
		},
		{
			name: "only not-ready endpoints: a CLA with the name and no endpoints",
			slices: []*discoveryv1.EndpointSlice{slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080),
				ep("10.0.0.1", notReady()))},
			want: []*endpointv3.ClusterLoadAssignment{cla("default/web/http")},
		},
		{
			name: "zones become sorted localities",
			slices: []*discoveryv1.EndpointSlice{slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080),
				ep("10.0.0.1", zone("zone-b")), ep("10.0.0.2", zone("zone-a")), ep("10.0.0.3", zone("zone-b")), ep("10.0.0.4"))},
			want: []*endpointv3.ClusterLoadAssignment{cla("default/web/http",
				locality("", healthy8080("10.0.0.4")...),
				locality("zone-a", healthy8080("10.0.0.2")...),
				locality("zone-b", healthy8080("10.0.0.1", "10.0.0.3")...))},
		},
		{
			name: "dual-stack Service: both families in one CLA",
			slices: []*discoveryv1.EndpointSlice{
				slice("web-v6", discoveryv1.AddressTypeIPv6, port("http", 8080), ep("fd00::0001")),
				slice("web-v4", discoveryv1.AddressTypeIPv4, port("http", 8080), ep("10.0.0.1")),
			},
			want: []*endpointv3.ClusterLoadAssignment{cla("default/web/http", locality("", healthy8080("10.0.0.1", "fd00::1")...))},
		},
		{
			name: "dual-stack with --address-family ipv6",
			opts: Options{Family: FamilyIPv6},
			slices: []*discoveryv1.EndpointSlice{
				slice("web-v6", discoveryv1.AddressTypeIPv6, port("http", 8080), ep("fd00::1")),
				slice("web-v4", discoveryv1.AddressTypeIPv4, port("http", 8080), ep("10.0.0.1")),
			},
			want: []*endpointv3.ClusterLoadAssignment{cla("default/web/http", locality("", healthy8080("fd00::1")...))},
		},
		{
			name: "dual-stack with --address-family ipv4",
			opts: Options{Family: FamilyIPv4},
			slices: []*discoveryv1.EndpointSlice{
				slice("web-v6", discoveryv1.AddressTypeIPv6, port("http", 8080), ep("fd00::1")),
				slice("web-v4", discoveryv1.AddressTypeIPv4, port("http", 8080), ep("10.0.0.1")),
			},
			want: []*endpointv3.ClusterLoadAssignment{cla("default/web/http", locality("", healthy8080("10.0.0.1")...))},
		},
		{
			name: "FQDN slice skipped and counted",
			slices: []*discoveryv1.EndpointSlice{
				slice("web-fqdn", discoveryv1.AddressTypeFQDN, port("http", 8080), ep("web.example.com")),
				slice("web-v4", discoveryv1.AddressTypeIPv4, port("http", 8080), ep("10.0.0.1")),
			},
			want:  []*endpointv3.ClusterLoadAssignment{cla("default/web/http", locality("", healthy8080("10.0.0.1")...))},
			skips: []string{ReasonFQDN},
		},
		{
			name: "bad addresses skipped and counted, good ones kept",
			slices: []*discoveryv1.EndpointSlice{slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080),
				ep("10.0.0.1"), ep("not-an-ip"), ep("fd00::1"), ep("0.0.0.0"),
				func(s *discoveryv1.EndpointSlice) { s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{}) })},
			want:  []*endpointv3.ClusterLoadAssignment{cla("default/web/http", locality("", healthy8080("10.0.0.1")...))},
			skips: []string{ReasonInvalidAddress, ReasonInvalidAddress, ReasonInvalidAddress, ReasonNoAddress},
		},
		{
			name: "port without a number skipped and counted",
			slices: []*discoveryv1.EndpointSlice{slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080), port("bad", 0),
				func(s *discoveryv1.EndpointSlice) {
					s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: ptr.To("none")})
				},
				ep("10.0.0.1"))},
			want:  []*endpointv3.ClusterLoadAssignment{cla("default/web/http", locality("", healthy8080("10.0.0.1")...))},
			skips: []string{ReasonInvalidPort, ReasonInvalidPort},
		},
		{
			name: "other protocols are not published",
			slices: []*discoveryv1.EndpointSlice{slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080),
				func(s *discoveryv1.EndpointSlice) {
					s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: ptr.To("dns"), Port: ptr.To[int32](53), Protocol: ptr.To(corev1.ProtocolUDP)})
				},
				ep("10.0.0.1"))},
			want: []*endpointv3.ClusterLoadAssignment{cla("default/web/http", locality("", healthy8080("10.0.0.1")...))},
		},
		{
			name: "--protocol UDP publishes only UDP ports",
			opts: Options{Protocol: corev1.ProtocolUDP},
			slices: []*discoveryv1.EndpointSlice{slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080),
				func(s *discoveryv1.EndpointSlice) {
					s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: ptr.To("dns"), Port: ptr.To[int32](53), Protocol: ptr.To(corev1.ProtocolUDP)})
				},
				ep("10.0.0.1"))},
			want: []*endpointv3.ClusterLoadAssignment{cla("default/web/dns", locality("", lb("10.0.0.1", 53, corev3.HealthStatus_HEALTHY, "")))},
		},
		{
			name: "hostname from the endpoint, else from the target pod",
			slices: []*discoveryv1.EndpointSlice{slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080),
				ep("10.0.0.1", pod("web-7d9f-abcde")),
				ep("10.0.0.2", pod("web-7d9f-fghij"), func(e *discoveryv1.Endpoint) { e.Hostname = ptr.To("web-1") }),
				ep("10.0.0.3", func(e *discoveryv1.Endpoint) { e.TargetRef = &corev1.ObjectReference{Kind: "Node", Name: "n1"} }))},
			want: []*endpointv3.ClusterLoadAssignment{cla("default/web/http", locality("",
				lb("10.0.0.1", 8080, corev3.HealthStatus_HEALTHY, "web-7d9f-abcde"),
				lb("10.0.0.2", 8080, corev3.HealthStatus_HEALTHY, "web-1"),
				lb("10.0.0.3", 8080, corev3.HealthStatus_HEALTHY, "")))},
		},
		{
			name:   "custom cluster name template",
			opts:   Options{ClusterNameTemplate: `{{.Service}}.{{.Namespace}}_{{.Port}}`},
			slices: []*discoveryv1.EndpointSlice{slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080), ep("10.0.0.1"))},
			want:   []*endpointv3.ClusterLoadAssignment{cla("web.default_http", locality("", healthy8080("10.0.0.1")...))},
		},
		{
			name: "template giving two ports one name: the first port keeps it",
			opts: Options{ClusterNameTemplate: `{{.Namespace}}/{{.Service}}`},
			slices: []*discoveryv1.EndpointSlice{slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080), port("admin", 9000),
				ep("10.0.0.1"))},
			want:  []*endpointv3.ClusterLoadAssignment{cla("default/web", locality("", lb("10.0.0.1", 9000, corev3.HealthStatus_HEALTHY, "")))},
			skips: []string{ReasonNameConflict},
		},
		{
			name:   "slice with no endpoints (a Service without pods)",
			slices: []*discoveryv1.EndpointSlice{slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080))},
			want:   []*endpointv3.ClusterLoadAssignment{cla("default/web/http")},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := New(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			clusters, skips := r.Service(web, tc.slices)
			assertCLAs(t, clusters, tc.want)
			var reasons []string
			for _, s := range skips {
				reasons = append(reasons, s.Reason)
			}
			if diff := cmp.Diff(tc.skips, reasons); diff != "" {
				t.Errorf("skip reasons (-want +got):\n%s\nskips: %+v", diff, skips)
			}
		})
	}
}

func assertCLAs(t *testing.T, got []Cluster, want []*endpointv3.ClusterLoadAssignment) {
	t.Helper()
	var gotCLAs []*endpointv3.ClusterLoadAssignment
	for _, c := range got {
		if c.Name != c.CLA().ClusterName {
			t.Errorf("cluster %q carries a CLA named %q", c.Name, c.CLA().ClusterName)
		}
		if err := c.CLA().ValidateAll(); err != nil {
			t.Errorf("cluster %q fails validation: %v", c.Name, err)
		}
		gotCLAs = append(gotCLAs, c.CLA())
	}
	if diff := cmp.Diff(want, gotCLAs, protocmp.Transform()); diff != "" {
		t.Errorf("CLAs (-want +got):\n%s", diff)
	}
}

func TestVanishedPortsAndServices(t *testing.T) {
	r, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	two := slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080), port("metrics", 9090), ep("10.0.0.1"))
	one := slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080), ep("10.0.0.1"))

	got, _ := r.Service(web, []*discoveryv1.EndpointSlice{two})
	if len(got) != 2 {
		t.Fatalf("got %d clusters, want 2", len(got))
	}
	got, _ = r.Service(web, []*discoveryv1.EndpointSlice{one})
	assertCLAs(t, got, []*endpointv3.ClusterLoadAssignment{
		cla("default/web/http", locality("", healthy8080("10.0.0.1")...)),
		cla("default/web/metrics"), // the port went away: emptied
	})
	got, _ = r.Service(web, nil)
	assertCLAs(t, got, []*endpointv3.ClusterLoadAssignment{cla("default/web/http")})
	// Once emptied, the Service is forgotten: no more output for it.
	got, _ = r.Service(web, nil)
	assertCLAs(t, got, nil)
}

func TestNameConflictAcrossServices(t *testing.T) {
	r, err := New(Options{ClusterNameTemplate: `{{.Namespace}}`})
	if err != nil {
		t.Fatal(err)
	}
	a := slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080), ep("10.0.0.1"))
	b := slice("api-a", discoveryv1.AddressTypeIPv4, port("http", 8080), ep("10.0.0.2"))
	api := ServiceKey{Namespace: "default", Name: "api"}
	if got, _ := r.Service(web, []*discoveryv1.EndpointSlice{a}); len(got) != 1 {
		t.Fatalf("web: got %d clusters, want 1", len(got))
	}
	got, skips := r.Service(api, []*discoveryv1.EndpointSlice{b})
	if len(got) != 0 || len(skips) != 1 || skips[0].Reason != ReasonNameConflict {
		t.Fatalf("api: got %v clusters, skips %+v; want none and one conflict", got, skips)
	}
	if u := r.TakeUnblocked(); len(u) != 0 {
		t.Errorf("unblocked %v while web still holds the name", u)
	}
	// When web goes, its name is free again, and api is handed back to be
	// rendered without waiting for a change of its own.
	r.Service(web, nil)
	if u := r.TakeUnblocked(); !slices.Equal(u, []ServiceKey{api}) {
		t.Fatalf("unblocked %v, want [%v]", u, api)
	}
	got, _ = r.Service(api, []*discoveryv1.EndpointSlice{b})
	assertCLAs(t, got, []*endpointv3.ClusterLoadAssignment{cla("default", locality("", healthy8080("10.0.0.2")...))})
}

// randomService builds slices with duplicates across slices, mixed
// conditions, zones and port numbers: the input for the order tests.
func randomService(rng *rand.Rand, nSlices, perSlice int) []*discoveryv1.EndpointSlice {
	var out []*discoveryv1.EndpointSlice
	condOpts := []epOpt{conds(tru, tru, fal), terminating(), notReady(), conds(nil, nil, nil)}
	for i := range nSlices {
		at := discoveryv1.AddressTypeIPv4
		if i%4 == 3 {
			at = discoveryv1.AddressTypeIPv6
		}
		opts := []sliceOpt{port("http", int32(8080+rng.IntN(2))), port("", 80)}
		for range perSlice {
			var addr string
			if at == discoveryv1.AddressTypeIPv4 {
				addr = fmt.Sprintf("10.0.%d.%d", rng.IntN(3), rng.IntN(40))
			} else {
				addr = fmt.Sprintf("fd00::%x", rng.IntN(120))
			}
			opts = append(opts, ep(addr, condOpts[rng.IntN(len(condOpts))], zone(fmt.Sprintf("zone-%d", rng.IntN(3))), pod(fmt.Sprintf("p%d", rng.IntN(5)))))
		}
		out = append(out, slice(fmt.Sprintf("web-%d", i), at, opts...))
	}
	return out
}

func marshalAll(t *testing.T, clusters []Cluster) [][]byte {
	t.Helper()
	var out [][]byte
	for _, c := range clusters {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(c.CLA())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func TestShuffledInputGivesIdenticalBytes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 20 {
		in := randomService(rng, 6, 30)
		opts := Options{NotReady: NotReadyUnhealthy}
		if round%2 == 1 {
			opts = Options{Topology: TopologyZone, LocalZone: "zone-2", EndpointMetadata: true}
		}
		r, _ := New(opts)
		first, _ := r.Service(web, in)
		want := marshalAll(t, first)
		for i := range 5 {
			shuffled := shuffle(rng, in)
			fresh, _ := New(opts)
			got, _ := fresh.Service(web, shuffled)
			if !slices.EqualFunc(want, marshalAll(t, got), slices.Equal) {
				t.Fatalf("round %d shuffle %d: bytes differ from the first render", round, i)
			}
			// The same Renderer, seeing new objects: memo and fresh agree.
			again, _ := r.Service(web, shuffled)
			if !slices.EqualFunc(want, marshalAll(t, again), slices.Equal) {
				t.Fatalf("round %d shuffle %d: memoised render differs", round, i)
			}
		}
	}
}

// TestOneSliceChangedMatchesFresh: a Service of many slices with the same
// endpoints in several of them, one slice replaced, removed or added at a
// time (the events whose merge copies the unchanged runs of the merged
// list): every render equals a fresh Renderer's.
func TestOneSliceChangedMatchesFresh(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	in := randomService(rng, 40, 10)
	opts := Options{NotReady: NotReadyUnhealthy}
	r, _ := New(opts)
	r.Service(web, in)
	for round := range 300 {
		i := rng.IntN(len(in))
		switch rng.IntN(4) {
		case 0:
			in = slices.Delete(slices.Clone(in), i, i+1)
		case 1:
			next := randomService(rng, 1, 10)[0]
			next.Name = fmt.Sprintf("web-new-%d", round)
			in = append(slices.Clone(in), next)
		default:
			next := randomService(rng, i+1, 10)[i] // its family
			next.Name = in[i].Name
			in = slices.Clone(in)
			in[i] = next
		}
		got, _ := r.Service(web, in)
		fresh, _ := New(opts)
		want, _ := fresh.Service(web, shuffle(rng, in))
		if !slices.EqualFunc(marshalAll(t, want), marshalAll(t, got), slices.Equal) {
			t.Fatalf("round %d: the incremental render differs from a fresh one", round)
		}
	}
}

// The writer caches each endpoint's encoding by host identity, so an
// unchanged slice must hand back the very same hosts.
func TestUnchangedSlicesKeepTheirHosts(t *testing.T) {
	r, _ := New(Options{})
	a := slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080), ep("10.0.0.1"), ep("10.0.0.2"))
	b := slice("web-b", discoveryv1.AddressTypeIPv4, port("http", 8080), ep("10.0.0.3"))
	first, _ := r.Service(web, []*discoveryv1.EndpointSlice{a, b})
	b2 := slice("web-b", discoveryv1.AddressTypeIPv4, port("http", 8080), ep("10.0.0.4"))
	second, _ := r.Service(web, []*discoveryv1.EndpointSlice{a, b2})
	f, s := first[0].Hosts[0], second[0].Hosts[0]
	if f[0] != s[0] || f[1] != s[1] {
		t.Error("endpoints of the unchanged slice were rebuilt")
	}
	if f[2] == s[2] {
		t.Error("the changed endpoint kept its host")
	}
	if got := s[2].LbEndpoint().GetEndpoint().GetAddress().GetSocketAddress().GetAddress(); got != "10.0.0.4" {
		t.Errorf("changed slice: got %s, want 10.0.0.4", got)
	}
}

func TestSkipsReportedOncePerSliceVersion(t *testing.T) {
	r, _ := New(Options{})
	bad := slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080), ep("nope"))
	if _, skips := r.Service(web, []*discoveryv1.EndpointSlice{bad}); len(skips) != 1 {
		t.Fatalf("first render: %d skips, want 1", len(skips))
	}
	if _, skips := r.Service(web, []*discoveryv1.EndpointSlice{bad}); len(skips) != 0 {
		t.Fatalf("same slice again: %d skips, want 0", len(skips))
	}
}

func TestParse(t *testing.T) {
	if _, err := ParseClusterNameTemplate("{{.Nope}}"); err == nil {
		t.Error("template with an unknown field accepted")
	}
	if _, err := ParseClusterNameTemplate("{{"); err == nil {
		t.Error("unparsable template accepted")
	}
	if _, err := ParseClusterNameTemplate(" "); err == nil {
		t.Error("blank template accepted")
	}
	if _, err := ParseTerminating("keep"); err == nil {
		t.Error("bad terminating mode accepted")
	}
	if _, err := ParseNotReady("x"); err == nil {
		t.Error("bad not-ready mode accepted")
	}
	if _, err := ParseFamily("ipv5"); err == nil {
		t.Error("bad family accepted")
	}
	if p, err := ParseProtocol("udp"); err != nil || p != corev1.ProtocolUDP {
		t.Errorf("ParseProtocol(udp) = %v, %v", p, err)
	}
}

func TestRenderedCLAsPassValidateAll(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, opts := range []Options{
		{NotReady: NotReadyUnhealthy},
		{Topology: TopologyZone, LocalZone: "zone-1", Region: "eu", EndpointMetadata: true},
	} {
		r, _ := New(opts)
		r.SetService(web, &ServiceInfo{Annotations: map[string]string{AnnotationHealthCheckPort: "http", AnnotationOverprovisioningFactor: "120"}})
		for range 50 {
			clusters, _ := r.Service(web, randomService(rng, 1+rng.IntN(6), rng.IntN(40)))
			for _, c := range clusters {
				if err := c.CLA().ValidateAll(); err != nil {
					t.Fatalf("cluster %s: %v", c.Name, err)
				}
			}
		}
	}
}

// shuffle returns in in another order, with each slice's endpoints shuffled
// too (deep copies: new identities, as an informer's relist gives).
func shuffle(rng *rand.Rand, in []*discoveryv1.EndpointSlice) []*discoveryv1.EndpointSlice {
	out := slices.Clone(in)
	rng.Shuffle(len(out), func(a, b int) { out[a], out[b] = out[b], out[a] })
	for j, s := range out {
		c := s.DeepCopy()
		rng.Shuffle(len(c.Endpoints), func(a, b int) { c.Endpoints[a], c.Endpoints[b] = c.Endpoints[b], c.Endpoints[a] })
		out[j] = c
	}
	return out
}

// A template that names the namespace but cannot tell namespace a's
// Service b-c from namespace a-b's Service c is refused: a namespace's
// owner could take another's cluster. Templates that keep namespaces
// apart, or leave the namespace out (for one namespace), are taken.
func TestNameTemplateKeepsNamespacesApart(t *testing.T) {
	for _, tc := range []struct {
		text string
		ok   bool
	}{
		{"", true}, // the default
		{"{{.Namespace}}.{{.Service}}{{with .Port}}-{{.}}{{end}}", true},
		{"{{.Namespace}}_{{.Service}}_{{.Port}}", true},
		{"{{.Service}}", true},
		{"{{.Service}}-{{.Namespace}}", false},
		{"{{.Namespace}}-{{.Service}}-{{.Port}}", false},
		{"{{.Namespace}}-{{.Service}}{{with .Port}}.{{.}}{{end}}", false},
		{"{{.Namespace}}{{.Service}}", false},
	} {
		_, err := ParseClusterNameTemplate(tc.text)
		if (err == nil) != tc.ok {
			t.Errorf("%q: %v, want accepted %v", tc.text, err, tc.ok)
		}
	}
}

// One team's Service of many ports cannot take every cluster (each is a
// file and an inotify instance in every Envoy reading it): past the cap,
// its namespace's new clusters are refused and counted, other namespaces
// are not touched, and a refused Service is handed back when its namespace
// frees a cluster. Nothing is kept for a namespace once it is empty.
func TestClustersPerNamespaceCap(t *testing.T) {
	r, err := New(Options{MaxClustersPerNamespace: 2})
	if err != nil {
		t.Fatal(err)
	}
	wide := slice("wide-a", discoveryv1.AddressTypeIPv4, port("a", 1), port("b", 2), port("c", 3), ep("10.0.0.1"))
	wideKey := ServiceKey{Namespace: "default", Name: "web"} // slice() labels every slice web's
	names := func(cs []Cluster) (out []string) {
		for _, c := range cs {
			if !c.Gone {
				out = append(out, c.Name)
			}
		}
		return out
	}
	limited := func(skips []Skip) (n int) {
		for _, s := range skips {
			if s.Reason == ReasonNamespaceLimit {
				n++
				if !strings.Contains(s.Detail, "namespace default has 2 clusters") {
					t.Errorf("detail %q", s.Detail)
				}
			}
		}
		return n
	}
	got, skips := r.Service(wideKey, []*discoveryv1.EndpointSlice{wide})
	if !slices.Equal(names(got), []string{"default/web/a", "default/web/b"}) || limited(skips) != 1 {
		t.Fatalf("wide: %q, skips %+v; want a and b, c refused", names(got), skips)
	}
	other := ServiceKey{Namespace: "default", Name: "api"}
	apiSlice := slice("api-a", discoveryv1.AddressTypeIPv4, port("http", 80), ep("10.0.0.2"))
	apiSlice.Labels[discoveryv1.LabelServiceName] = "api"
	if got, skips := r.Service(other, []*discoveryv1.EndpointSlice{apiSlice}); len(names(got)) != 0 || limited(skips) != 1 {
		t.Fatalf("api: %q, skips %+v; want it refused", names(got), skips)
	}
	elsewhere := slice("x-a", discoveryv1.AddressTypeIPv4, port("http", 80), ep("10.0.0.3"))
	elsewhere.Namespace = "team-b"
	if got, _ := r.Service(ServiceKey{Namespace: "team-b", Name: "web"}, []*discoveryv1.EndpointSlice{elsewhere}); len(names(got)) != 1 {
		t.Fatalf("another namespace: %q, want its cluster", names(got))
	}
	// Rendering wide again changes nothing and keeps its two.
	if got, skips := r.Service(wideKey, []*discoveryv1.EndpointSlice{wide}); len(names(got)) != 2 || limited(skips) != 1 {
		t.Fatalf("wide again: %q, %+v", names(got), skips)
	}
	if u := r.TakeUnblocked(); len(u) != 0 {
		t.Fatalf("unblocked %v with no room made", u)
	}

	// Wide drops port b: both refused Services are handed back, and the
	// first rendered takes the room.
	narrow := slice("wide-a", discoveryv1.AddressTypeIPv4, port("a", 1), port("c", 3), ep("10.0.0.1"))
	got, _ = r.Service(wideKey, []*discoveryv1.EndpointSlice{narrow})
	if !slices.Equal(names(got), []string{"default/web/a"}) {
		t.Fatalf("narrowed: %q, want a (c is refused until the room b left is seen)", names(got))
	}
	if u := r.TakeUnblocked(); !slices.Equal(u, []ServiceKey{other, wideKey}) {
		t.Fatalf("unblocked %v, want api and web", u)
	}
	if got, _ := r.Service(other, []*discoveryv1.EndpointSlice{apiSlice}); !slices.Equal(names(got), []string{"default/api/http"}) {
		t.Fatalf("api once there is room: %q", names(got))
	}

	// Everything goes: nothing is kept.
	r.Service(wideKey, nil)
	r.Service(other, nil)
	r.Service(ServiceKey{Namespace: "team-b", Name: "web"}, nil)
	r.TakeUnblocked()
	if len(r.perNamespace) != 0 || len(r.full) != 0 || len(r.owners) != 0 {
		t.Errorf("left behind: counts %v, full %v, owners %v", r.perNamespace, r.full, r.owners)
	}
}
