package render

import (
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"
)

// appProtocol sets the appProtocol of the slice's last port.
func appProtocol(p string) sliceOpt {
	return func(s *discoveryv1.EndpointSlice) { s.Ports[len(s.Ports)-1].AppProtocol = ptr.To(p) }
}

// Each cluster carries its port's appProtocol, from the slices; while a
// change rolls through the slices, the choice does not depend on their order.
func TestClustersCarryTheirAppProtocol(t *testing.T) {
	r, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	key := ServiceKey{Namespace: "default", Name: "web"}
	a := slice("web-a", discoveryv1.AddressTypeIPv4, port("grpc", 9090), appProtocol("kubernetes.io/h2c"), port("http", 8080), ep("10.0.0.1"))
	b := slice("web-b", discoveryv1.AddressTypeIPv4, port("grpc", 9090), appProtocol("grpc"), port("http", 8080), ep("10.0.0.2"))
	want := map[string]string{"default/web/grpc": "kubernetes.io/h2c", "default/web/http": ""}
	for _, order := range [][]*discoveryv1.EndpointSlice{{a, b}, {b, a}} {
		clusters, skips := r.Service(key, order)
		if len(skips) > 0 {
			t.Fatalf("skips: %v", skips)
		}
		if len(clusters) != 2 {
			t.Fatalf("%d clusters, want 2", len(clusters))
		}
		for _, c := range clusters {
			if c.Upstream.AppProtocol != want[c.Name] {
				t.Errorf("%s: appProtocol %q, want %q", c.Name, c.Upstream.AppProtocol, want[c.Name])
			}
		}
	}
}

// HTTP/2 to the upstream for the appProtocols that mean it, nothing else
// for the others (WebSocket upgrades are a route's setting, not a cluster's).
func TestEDSCluster(t *testing.T) {
	for proto, h2 := range map[string]bool{
		"kubernetes.io/h2c": true, "h2c": true, "http2": true, "grpc": true,
		"": false, "http": false, "kubernetes.io/ws": false, "kubernetes.io/wss": false, "HTTP2": false,
	} {
		c := EDSCluster("default/web/http", "/eds/default_web_http.json", Upstream{AppProtocol: proto}, ClusterOptions{ConnectTimeout: 2 * time.Second})
		if err := c.ValidateAll(); err != nil {
			t.Fatalf("%q: %v", proto, err)
		}
		_, got := c.TypedExtensionProtocolOptions[httpOptionsKey]
		if got != h2 {
			t.Errorf("appProtocol %q: HTTP/2 options %v, want %v", proto, got, h2)
		}
		if c.EdsClusterConfig.ServiceName != c.Name || c.EdsClusterConfig.EdsConfig.GetPathConfigSource().GetPath() != "/eds/default_web_http.json" ||
			c.ConnectTimeout.AsDuration() != 2*time.Second {
			t.Errorf("%q: %v", proto, c)
		}
	}
	if c := EDSCluster("x", "/x.json", Upstream{}, ClusterOptions{}); c.ConnectTimeout != nil {
		t.Errorf("no connect timeout given, got %v", c.ConnectTimeout)
	}
}
