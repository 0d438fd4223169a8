package watch

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"

	"github.com/edsync/edsync/internal/benchdata"
	"github.com/edsync/edsync/render"
)

// What Slim keeps renders as the slice it came from, byte for byte, and so
// does a second pass (client-go may transform an object twice): the Pod's
// name moved to the hostname still names the endpoint, fills
// --endpoint-metadata's pod and pairs a dual-stack Pod's two addresses.
func TestSlimRendersAsTheOriginal(t *testing.T) {
	v4 := benchdata.Slice(benchdata.Controller, "shop", "web", 0, "web-v4", 0, 20)
	v6 := benchdata.Slice(benchdata.Controller, "shop", "web", 0, "web-v6", 0, 20)
	v6.AddressType = discoveryv1.AddressTypeIPv6
	for i := range v6.Endpoints {
		v6.Endpoints[i].Addresses = []string{"fd00::" + v4.Endpoints[i].Addresses[0][3:]} // same Pods, the other family
	}
	// A StatefulSet's: hostnames of their own, the Pods' names; two Pods
	// also share a hostname that is not their name (spec.hostname), and
	// pair by their names all the same.
	sts := benchdata.Slice(benchdata.Controller, "shop", "db", 3, "db-v4", 100, 5)
	sts6 := benchdata.Slice(benchdata.Controller, "shop", "db", 3, "db-v6", 100, 5)
	sts6.AddressType = discoveryv1.AddressTypeIPv6
	for i := range sts6.Endpoints {
		sts6.Endpoints[i].Addresses = []string{"fd00::" + sts.Endpoints[i].Addresses[0][3:]}
	}
	for _, s := range []*discoveryv1.EndpointSlice{sts, sts6} {
		for i := range 2 {
			s.Endpoints[i].Hostname = ptr.To("shared")
		}
	}
	clas := func(slices ...*discoveryv1.EndpointSlice) [][]byte {
		t.Helper()
		r, err := render.New(render.Options{EndpointMetadata: true})
		if err != nil {
			t.Fatal(err)
		}
		var out [][]byte
		for _, key := range []render.ServiceKey{{Namespace: "shop", Name: "web"}, {Namespace: "shop", Name: "db"}} {
			var mine []*discoveryv1.EndpointSlice
			for _, s := range slices {
				if s.Labels[discoveryv1.LabelServiceName] == key.Name {
					mine = append(mine, s)
				}
			}
			clusters, _ := r.Service(key, mine)
			for _, c := range clusters {
				b, err := proto.MarshalOptions{Deterministic: true}.Marshal(c.CLA())
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, b)
			}
		}
		return out
	}
	want := clas(v4, v6, sts, sts6)
	once := clas(Slim(v4), Slim(v6), Slim(sts), Slim(sts6))
	twice := clas(Slim(Slim(v4)), Slim(Slim(v6)), Slim(Slim(sts)), Slim(Slim(sts6)))
	if len(want) != 2 {
		t.Fatalf("%d clusters", len(want))
	}
	for i := range want {
		if string(once[i]) != string(want[i]) || string(twice[i]) != string(want[i]) {
			t.Errorf("cluster %d renders otherwise once slimmed (%d, %d, %d bytes)", i, len(want[i]), len(once[i]), len(twice[i]))
		}
	}
}

// A trigger time from before the Store counts any (the initial list's) is
// dropped, with its map; one after it, or one the Store cannot read (for
// it to skip and count), is kept. Twice is as once.
func TestSlimSinceDropsOldTriggerTimes(t *testing.T) {
	since := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	for v, kept := range map[string]bool{
		"2026-12-07T11:59:59Z": false, "2026-12-07T12:00:00Z": true, "2026-12-07T13:00:00Z": true, "yesterday": true,
	} {
		sl := benchdata.Slice(benchdata.Controller, "shop", "web", 0, "web-a", 0, 1)
		sl.Annotations = map[string]string{corev1.EndpointsLastChangeTriggerTime: v}
		for _, out := range []*discoveryv1.EndpointSlice{SlimSince(sl, since), SlimSince(SlimSince(sl, since), since)} {
			if _, ok := out.Annotations[corev1.EndpointsLastChangeTriggerTime]; ok != kept {
				t.Errorf("%s: kept %v, want %v", v, ok, kept)
			}
		}
		if got := Slim(sl).Annotations[corev1.EndpointsLastChangeTriggerTime]; got != v {
			t.Errorf("Slim dropped %s", v)
		}
	}
}
