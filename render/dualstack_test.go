package render

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
)

// podRef targets a Pod with a uid, as the EndpointSlice controller writes it.
func podRef(name string) epOpt {
	return func(e *discoveryv1.Endpoint) {
		e.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: name, UID: types.UID("uid-" + name)}
	}
}

// also adds addr as an additional address of the expected endpoint.
func also(l *endpointv3.LbEndpoint, addr string, port uint32) *endpointv3.LbEndpoint {
	e := l.GetEndpoint()
	e.AdditionalAddresses = append(e.AdditionalAddresses, &endpointv3.Endpoint_AdditionalAddress{
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
		}}},
	})
	return l
}

func v4(opts ...sliceOpt) *discoveryv1.EndpointSlice {
	return slice("web-v4", discoveryv1.AddressTypeIPv4, append([]sliceOpt{port("http", 8080)}, opts...)...)
}

func v6(opts ...sliceOpt) *discoveryv1.EndpointSlice {
	return slice("web-v6", discoveryv1.AddressTypeIPv6, append([]sliceOpt{port("http", 8080)}, opts...)...)
}

const up = corev3.HealthStatus_HEALTHY

// A Pod with an address in each family is one host: the preferred family's
// address first, the other in additional_addresses.
func TestDualStackPodIsOneHost(t *testing.T) {
	for _, tc := range []struct {
		name   string
		family Family
		slices []*discoveryv1.EndpointSlice
		want   []*endpointv3.ClusterLoadAssignment
	}{
		{
			name: "default: IPv4 primary, IPv6 additional",
			slices: []*discoveryv1.EndpointSlice{
				v6(ep("fd00::2", podRef("b")), ep("fd00::1", podRef("a"))),
				v4(ep("10.0.0.1", podRef("a")), ep("10.0.0.2", podRef("b"))),
			},
			want: []*endpointv3.ClusterLoadAssignment{cla("default/web/http", locality("",
				also(lb("10.0.0.1", 8080, up, "a"), "fd00::1", 8080),
				also(lb("10.0.0.2", 8080, up, "b"), "fd00::2", 8080)))},
		},
		{
			name:   "ipv6-first: IPv6 primary, sorted by it",
			family: FamilyIPv6First,
			slices: []*discoveryv1.EndpointSlice{
				v4(ep("10.0.0.1", podRef("a")), ep("10.0.0.2", podRef("b"))),
				v6(ep("fd00::2", podRef("a")), ep("fd00::1", podRef("b"))),
			},
			want: []*endpointv3.ClusterLoadAssignment{cla("default/web/http", locality("",
				also(lb("fd00::1", 8080, up, "b"), "10.0.0.2", 8080),
				also(lb("fd00::2", 8080, up, "a"), "10.0.0.1", 8080)))},
		},
		{
			name: "no targetRef, another Pod, another uid, one family: separate hosts",
			slices: []*discoveryv1.EndpointSlice{
				v4(ep("10.0.0.1"), ep("10.0.0.2", podRef("b")), ep("10.0.0.3", podRef("c")), ep("10.0.0.4", podRef("d"))),
				v6(ep("fd00::1"), ep("fd00::2", podRef("x")), ep("fd00::3", podRef("c"), func(e *discoveryv1.Endpoint) {
					e.TargetRef.UID = "another"
				}), ep("fd00::5", podRef("e"))),
			},
			want: []*endpointv3.ClusterLoadAssignment{cla("default/web/http", locality("",
				lb("10.0.0.1", 8080, up, ""), lb("10.0.0.2", 8080, up, "b"),
				lb("10.0.0.3", 8080, up, "c"), lb("10.0.0.4", 8080, up, "d"),
				lb("fd00::1", 8080, up, ""), lb("fd00::2", 8080, up, "x"),
				lb("fd00::3", 8080, up, "c"), lb("fd00::5", 8080, up, "e")))},
		},
		{
			name: "merged host has the healthier of the two conditions",
			slices: []*discoveryv1.EndpointSlice{
				v4(ep("10.0.0.1", podRef("a"), notReady()), ep("10.0.0.2", podRef("b"), terminating()), ep("10.0.0.3", podRef("c"), notReady())),
				v6(ep("fd00::1", podRef("a")), ep("fd00::2", podRef("b"), notReady()), ep("fd00::3", podRef("c"), notReady())),
			},
			want: []*endpointv3.ClusterLoadAssignment{cla("default/web/http", locality("",
				also(lb("10.0.0.1", 8080, up, "a"), "fd00::1", 8080),
				also(lb("10.0.0.2", 8080, corev3.HealthStatus_DRAINING, "b"), "fd00::2", 8080)))},
		},
		{
			name: "a targetRef with two addresses in a family is not a Pod's: not merged",
			slices: []*discoveryv1.EndpointSlice{
				v4(ep("10.0.0.1", podRef("vm")), ep("10.0.0.2", podRef("vm"))),
				v6(ep("fd00::1", podRef("vm"))),
			},
			want: []*endpointv3.ClusterLoadAssignment{cla("default/web/http", locality("",
				lb("10.0.0.1", 8080, up, "vm"), lb("10.0.0.2", 8080, up, "vm"), lb("fd00::1", 8080, up, "vm")))},
		},
		{
			name: "the same address of a Pod in two slices of a family: still one host",
			slices: []*discoveryv1.EndpointSlice{
				v4(ep("10.0.0.1", podRef("a"), terminating())),
				slice("web-v4-b", discoveryv1.AddressTypeIPv4, port("http", 8080), ep("10.0.0.1", podRef("a"))),
				v6(ep("fd00::1", podRef("a"))),
			},
			want: []*endpointv3.ClusterLoadAssignment{cla("default/web/http", locality("",
				also(lb("10.0.0.1", 8080, up, "a"), "fd00::1", 8080)))},
		},
		{
			name: "each family's own port number",
			slices: []*discoveryv1.EndpointSlice{
				v4(ep("10.0.0.1", podRef("a"))),
				slice("web-v6", discoveryv1.AddressTypeIPv6, port("http", 9090), ep("fd00::1", podRef("a"))),
			},
			want: []*endpointv3.ClusterLoadAssignment{cla("default/web/http", locality("",
				also(lb("10.0.0.1", 8080, up, "a"), "fd00::1", 9090)))},
		},
		{
			name:   "ipv4 keeps one family, as before",
			family: FamilyIPv4,
			slices: []*discoveryv1.EndpointSlice{v4(ep("10.0.0.1", podRef("a"))), v6(ep("fd00::1", podRef("a")))},
			want:   []*endpointv3.ClusterLoadAssignment{cla("default/web/http", locality("", lb("10.0.0.1", 8080, up, "a")))},
		},
		{
			name:   "ipv6 keeps one family, as before",
			family: FamilyIPv6,
			slices: []*discoveryv1.EndpointSlice{v4(ep("10.0.0.1", podRef("a"))), v6(ep("fd00::1", podRef("a")))},
			want:   []*endpointv3.ClusterLoadAssignment{cla("default/web/http", locality("", lb("fd00::1", 8080, up, "a")))},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := New(Options{Family: tc.family})
			if err != nil {
				t.Fatal(err)
			}
			got, skips := r.Service(web, tc.slices)
			if len(skips) != 0 {
				t.Errorf("skips: %+v", skips)
			}
			assertCLAs(t, got, tc.want)
		})
	}
}

// Pairs are matched per port name, and a Pod counts once in its locality's
// weight; the locality is the primary address's.
func TestDualStackPortsAndWeights(t *testing.T) {
	r, _ := New(Options{})
	s4 := slice("web-v4", discoveryv1.AddressTypeIPv4, port("http", 8080), port("admin", 9000),
		ep("10.0.0.1", podRef("a"), zone("z1")), ep("10.0.0.2", podRef("b"), zone("z1")))
	s6 := slice("web-v6", discoveryv1.AddressTypeIPv6, port("http", 8080),
		ep("fd00::1", podRef("a"), zone("z1")), ep("fd00::2", podRef("b"), zone("z1")))
	got, _ := r.Service(web, []*discoveryv1.EndpointSlice{s4, s6})
	assertCLAs(t, got, []*endpointv3.ClusterLoadAssignment{
		cla("default/web/admin", locality("z1", lb("10.0.0.1", 9000, up, "a"), lb("10.0.0.2", 9000, up, "b"))),
		cla("default/web/http", locality("z1",
			also(lb("10.0.0.1", 8080, up, "a"), "fd00::1", 8080),
			also(lb("10.0.0.2", 8080, up, "b"), "fd00::2", 8080))),
	})
}

// The family option of a listed cluster applies to that cluster alone.
func TestDualStackPerCluster(t *testing.T) {
	r, err := New(Options{Clusters: []ClusterSpec{
		{Service: web, Port: "http", Name: "v6first", Selection: Selection{Family: FamilyIPv6First}},
		{Service: web, Port: "admin", Name: "v4only", Selection: Selection{Family: FamilyIPv4}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	s4 := slice("web-v4", discoveryv1.AddressTypeIPv4, port("http", 8080), port("admin", 9000), ep("10.0.0.1", podRef("a")))
	s6 := slice("web-v6", discoveryv1.AddressTypeIPv6, port("http", 8080), port("admin", 9000), ep("fd00::1", podRef("a")))
	got, _ := r.Service(web, []*discoveryv1.EndpointSlice{s4, s6})
	assertCLAs(t, got, []*endpointv3.ClusterLoadAssignment{
		cla("v4only", locality("", lb("10.0.0.1", 9000, up, "a"))),
		cla("v6first", locality("", also(lb("fd00::1", 8080, up, "a"), "10.0.0.1", 8080))),
	})
}

// Following slice changes: a Pod's host is rebuilt when one of its
// addresses changes, split when a family goes, merged when it comes back;
// the hosts of other Pods stay the same values, by which the writer's
// cache finds their encoding.
func TestDualStackIncremental(t *testing.T) {
	r, _ := New(Options{})
	s4 := v4(ep("10.0.0.1", podRef("a")), ep("10.0.0.2", podRef("b")))
	s6 := v6(ep("fd00::1", podRef("a")), ep("fd00::2", podRef("b")))
	first, _ := r.Service(web, []*discoveryv1.EndpointSlice{s4, s6})
	firstHosts := first[0].Hosts[0]

	// Pod b's IPv6 address turns not ready (the IPv4 slice lags behind):
	// its host stays, a's host is the same message.
	s6b := v6(ep("fd00::1", podRef("a")), ep("fd00::2", podRef("b"), terminating()))
	got, _ := r.Service(web, []*discoveryv1.EndpointSlice{s4, s6b})
	assertCLAs(t, got, []*endpointv3.ClusterLoadAssignment{cla("default/web/http", locality("",
		also(lb("10.0.0.1", 8080, up, "a"), "fd00::1", 8080),
		also(lb("10.0.0.2", 8080, up, "b"), "fd00::2", 8080)))})
	if hosts := got[0].Hosts[0]; hosts[0] != firstHosts[0] {
		t.Error("the host of the unchanged Pod a was rebuilt")
	}

	// The IPv6 slice goes: two single-family hosts.
	got, _ = r.Service(web, []*discoveryv1.EndpointSlice{s4})
	assertCLAs(t, got, []*endpointv3.ClusterLoadAssignment{cla("default/web/http", locality("",
		lb("10.0.0.1", 8080, up, "a"), lb("10.0.0.2", 8080, up, "b")))})

	// It comes back, and b gets a new IPv4 address (a new Pod, same name, new uid).
	s4c := v4(ep("10.0.0.1", podRef("a")), ep("10.0.0.3", podRef("b"), func(e *discoveryv1.Endpoint) { e.TargetRef.UID = "new" }))
	got, _ = r.Service(web, []*discoveryv1.EndpointSlice{s4c, s6})
	assertCLAs(t, got, []*endpointv3.ClusterLoadAssignment{cla("default/web/http", locality("",
		also(lb("10.0.0.1", 8080, up, "a"), "fd00::1", 8080),
		lb("10.0.0.3", 8080, up, "b"),
		lb("fd00::2", 8080, up, "b")))})

	// Both slices replaced by new objects with the same content (a folder
	// re-read): every host keeps its message.
	again, _ := r.Service(web, []*discoveryv1.EndpointSlice{s4c.DeepCopy(), s6.DeepCopy()})
	if a, b := got[0].Hosts[0], again[0].Hosts[0]; !slices.Equal(a, b) {
		t.Error("new objects with the same endpoints gave new hosts")
	}
}

// randomDualStack builds a dual-stack Service whose Pods have an address in
// either or both families, with random conditions and zones, some endpoints
// without a targetRef, and copies of an endpoint in a second slice.
func randomDualStack(rng *rand.Rand, pods int) []*discoveryv1.EndpointSlice {
	condOpts := []epOpt{conds(tru, tru, fal), terminating(), notReady(), conds(nil, nil, nil)}
	var s4, s6, dup []sliceOpt
	for i := range pods {
		z := zone(fmt.Sprintf("zone-%d", rng.IntN(3)))
		ref := podRef(fmt.Sprintf("p%d", i))
		if rng.IntN(10) == 0 {
			ref = func(*discoveryv1.Endpoint) {}
		}
		has := rng.IntN(4) // 0: IPv4 only, 1: IPv6 only, else both
		if has != 1 {
			o := ep(fmt.Sprintf("10.0.%d.%d", i/200, i%200), ref, z, condOpts[rng.IntN(len(condOpts))])
			s4 = append(s4, o)
			if rng.IntN(8) == 0 {
				dup = append(dup, ep(fmt.Sprintf("10.0.%d.%d", i/200, i%200), ref, z, condOpts[rng.IntN(len(condOpts))]))
			}
		}
		if has != 0 {
			s6 = append(s6, ep(fmt.Sprintf("fd00::%x", 0x100+i), ref, z, condOpts[rng.IntN(len(condOpts))]))
		}
	}
	ports := []sliceOpt{port("http", 8080), port("", 80)}
	return []*discoveryv1.EndpointSlice{
		slice("web-v4", discoveryv1.AddressTypeIPv4, append(slices.Clone(ports), s4...)...),
		slice("web-v4-dup", discoveryv1.AddressTypeIPv4, append(slices.Clone(ports), dup...)...),
		slice("web-v6", discoveryv1.AddressTypeIPv6, append(slices.Clone(ports), s6...)...),
	}
}

// Merged output is deterministic and valid, and a Renderer that follows
// slice changes (pairs updated with the changed slices alone) gives the
// bytes of a fresh one given the same endpoints in another order.
func TestDualStackRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, opts := range []Options{
		{NotReady: NotReadyUnhealthy},
		{Family: FamilyIPv6First, Topology: TopologyZone, LocalZone: "zone-1", EndpointMetadata: true},
	} {
		memo, _ := New(opts)
		merged := 0
		var in []*discoveryv1.EndpointSlice
		for round := range 40 {
			// Each round replaces some of the slices.
			next := randomDualStack(rng, 1+rng.IntN(60))
			if in == nil {
				in = next
			}
			for k := range in {
				if rng.IntN(2) == 0 {
					in[k] = next[k]
				}
			}
			got, _ := memo.Service(web, slices.Clone(in))
			assertValid(t, got)

			shuffled := shuffle(rng, in)
			fresh, _ := New(opts)
			want, _ := fresh.Service(web, shuffled)
			if !slices.EqualFunc(marshalAll(t, want), marshalAll(t, got), slices.Equal) {
				t.Fatalf("round %d: incremental render differs from a fresh one", round)
			}

			for _, c := range got {
				for _, l := range c.CLA().Endpoints {
					for _, e := range l.LbEndpoints {
						adds := e.GetEndpoint().GetAdditionalAddresses()
						if len(adds) == 0 {
							continue
						}
						merged++
						primary := e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()
						extra := adds[0].GetAddress().GetSocketAddress().GetAddress()
						if (opts.Family == FamilyIPv6First) != strings.Contains(primary, ":") || strings.Contains(primary, ":") == strings.Contains(extra, ":") {
							t.Fatalf("round %d: %s has primary %s, additional %s", round, c.Name, primary, extra)
						}
					}
				}
			}
		}
		if merged == 0 {
			t.Errorf("%+v: no merged host in any round", opts)
		}
	}
}
