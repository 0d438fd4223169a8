package render

import (
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"sigs.k8s.io/yaml"

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
		c := edsCluster(t, Upstream{AppProtocol: proto}, ClusterOptions{ConnectTimeout: 2 * time.Second})
		_, got := c.TypedExtensionProtocolOptions[httpOptionsKey]
		if got != h2 {
			t.Errorf("appProtocol %q: HTTP/2 options %v, want %v", proto, got, h2)
		}
		if c.EdsClusterConfig.ServiceName != c.Name || c.EdsClusterConfig.EdsConfig.GetPathConfigSource().GetPath() != "/eds/default_web_http.json" ||
			c.ConnectTimeout.AsDuration() != 2*time.Second {
			t.Errorf("%q: %v", proto, c)
		}
	}
	if c := edsCluster(t, Upstream{}, ClusterOptions{}); c.ConnectTimeout != nil {
		t.Errorf("no connect timeout given, got %v", c.ConnectTimeout)
	}
}

// edsCluster builds default/web/http's cluster and checks it is valid.
func edsCluster(t *testing.T, up Upstream, o ClusterOptions) *clusterv3.Cluster {
	t.Helper()
	c, err := EDSCluster("default/web/http", "/eds/default_web_http.json", up, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ValidateAll(); err != nil {
		t.Fatalf("invalid cluster: %v", err)
	}
	return c
}

// clusterTemplate parses a YAML cluster template as the config file holds it.
func clusterTemplate(t *testing.T, y string) *clusterv3.Cluster {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseClusterTemplate(js)
	if err != nil {
		t.Fatalf("template %s: %v", y, err)
	}
	return c
}

// A template is an Envoy cluster without what edsync sets; the types of
// TLS, PROXY protocol and HTTP options resolve; what Envoy would refuse is
// refused with the field named.
func TestParseClusterTemplate(t *testing.T) {
	clusterTemplate(t, `
connect_timeout: 3s
lb_policy: LEAST_REQUEST
circuit_breakers: {thresholds: [{priority: DEFAULT, max_connections: 100}, {priority: HIGH, max_connections: 10}]}
outlier_detection: {consecutive_5xx: 5}
transport_socket:
  name: envoy.transport_sockets.tls
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
    sni: web.example
typed_extension_protocol_options:
  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
    "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
    common_http_protocol_options: {idle_timeout: 60s}
    explicit_http_config: {http_protocol_options: {}}
`)
	for y, want := range map[string]string{
		"name: x":                               "sets name",
		"type: STRICT_DNS":                      "sets type",
		"eds_cluster_config: {service_name: x}": "sets eds_cluster_config",
		"load_assignment: {cluster_name: x}":    "sets load_assignment",
		"connect_timeout: -1s":                  "ConnectTimeout",
		"no_such_field: 1":                      "no_such_field",
		// The HTTP options' key holding another type breaks every HTTP/2 cluster.
		"typed_extension_protocol_options: {envoy.extensions.upstreams.http.v3.HttpProtocolOptions: " +
			"{\"@type\": type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer}}": "HttpProtocolOptions",
		"transport_socket: {name: t, typed_config: {\"@type\": type.googleapis.com/not.a.Type}}": "not.a.Type",
	} {
		js, err := yaml.YAMLToJSON([]byte(y))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseClusterTemplate(js); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("template %q: error %v, want one mentioning %q", y, err, want)
		}
	}
}

// A cluster is its template with Kubernetes over it: annotations win over
// the template, the template over --connect-timeout; limits go into the
// template's default-priority thresholds; HTTP/2 joins the template's HTTP
// options, unless the template chose the upstream protocol itself.
func TestEDSClusterOverTemplate(t *testing.T) {
	tmpl := clusterTemplate(t, `
connect_timeout: 3s
lb_policy: LEAST_REQUEST
circuit_breakers: {thresholds: [{priority: HIGH, max_connections: 10}, {priority: DEFAULT, max_connections: 100, max_requests: 50}]}
typed_extension_protocol_options:
  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
    "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
    common_http_protocol_options: {idle_timeout: 60s}
`)
	o := ClusterOptions{ConnectTimeout: time.Second, Default: tmpl}
	c := edsCluster(t, Upstream{AppProtocol: "grpc"}, o)
	if c.ConnectTimeout.AsDuration() != 3*time.Second || c.LbPolicy != clusterv3.Cluster_LEAST_REQUEST {
		t.Errorf("template's settings lost: connect_timeout %v, lb_policy %v", c.ConnectTimeout.AsDuration(), c.LbPolicy)
	}
	var opts httpv3.HttpProtocolOptions
	if err := c.TypedExtensionProtocolOptions[httpOptionsKey].UnmarshalTo(&opts); err != nil {
		t.Fatal(err)
	}
	if opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil || opts.GetCommonHttpProtocolOptions().GetIdleTimeout().AsDuration() != time.Minute {
		t.Errorf("HTTP options %v: want HTTP/2 and the template's idle timeout", &opts)
	}

	c = edsCluster(t, Upstream{
		LbPolicy: "MAGLEV", ConnectTimeout: 250 * time.Millisecond,
		Limits: Limits{MaxConnections: Limit{Value: 7, Set: true}, MaxRetries: Limit{Value: 0, Set: true}},
	}, o)
	if c.ConnectTimeout.AsDuration() != 250*time.Millisecond || c.LbPolicy != clusterv3.Cluster_MAGLEV {
		t.Errorf("annotations lost: connect_timeout %v, lb_policy %v", c.ConnectTimeout.AsDuration(), c.LbPolicy)
	}
	th := c.CircuitBreakers.Thresholds
	if len(th) != 2 || th[0].MaxConnections.GetValue() != 10 || th[1].MaxConnections.GetValue() != 7 ||
		th[1].MaxRequests.GetValue() != 50 || th[1].MaxRetries == nil || th[1].MaxRetries.GetValue() != 0 {
		t.Errorf("thresholds %v: want HIGH's kept, DEFAULT's max_connections 7, max_requests 50, max_retries 0", th)
	}
	if tmpl.CircuitBreakers.Thresholds[1].MaxConnections.GetValue() != 100 {
		t.Error("building a cluster changed its template")
	}

	// The template chose HTTP/1.1 explicitly: an appProtocol does not undo it.
	h1 := clusterTemplate(t, `
typed_extension_protocol_options:
  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
    "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
    explicit_http_config: {http_protocol_options: {}}
`)
	c = edsCluster(t, Upstream{AppProtocol: "grpc", Template: "h1"}, ClusterOptions{Default: tmpl, Templates: map[string]*clusterv3.Cluster{"h1": h1}})
	if err := c.TypedExtensionProtocolOptions[httpOptionsKey].UnmarshalTo(&opts); err != nil {
		t.Fatal(err)
	}
	if opts.GetExplicitHttpConfig().GetHttpProtocolOptions() == nil || c.LbPolicy != clusterv3.Cluster_ROUND_ROBIN {
		t.Errorf("named template: HTTP options %v, lb_policy %v; want its HTTP/1.1 and none of the default template", &opts, c.LbPolicy)
	}
	if _, err := EDSCluster("x", "/x.json", Upstream{Template: "gone"}, o); err == nil {
		t.Error("a missing template gave no error")
	}
}

// The Service annotations set the clusters' CDS entries; bad ones are
// skipped with a reason, the others kept.
func TestClusterAnnotations(t *testing.T) {
	r, err := New(Options{Cluster: ClusterOptions{Templates: map[string]*clusterv3.Cluster{"tls": {}}}})
	if err != nil {
		t.Fatal(err)
	}
	key := ServiceKey{Namespace: "default", Name: "web"}
	_, skips := r.SetService(key, &ServiceInfo{Annotations: map[string]string{
		AnnotationLbPolicy: "least-request", AnnotationConnectTimeout: "2s", AnnotationMaxRequests: "100",
		AnnotationMaxRetries: "0", AnnotationClusterTemplate: "tls",
		AnnotationMaxConnections: "-1", AnnotationMaxPendingRequests: "lots",
	}})
	if len(skips) != 2 {
		t.Errorf("skips %v: want the two bad limits", skips)
	}
	for _, sk := range skips {
		if sk.Reason != ReasonInvalidAnnotation {
			t.Errorf("skip %v", sk)
		}
	}
	clusters, _ := r.Service(key, []*discoveryv1.EndpointSlice{slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080), appProtocol("h2c"), ep("10.0.0.1"))})
	if len(clusters) != 1 {
		t.Fatalf("%d clusters", len(clusters))
	}
	want := Upstream{AppProtocol: "h2c", LbPolicy: "LEAST_REQUEST", ConnectTimeout: 2 * time.Second, Template: "tls",
		Limits: Limits{MaxRequests: Limit{Value: 100, Set: true}, MaxRetries: Limit{Value: 0, Set: true}}}
	if clusters[0].Upstream != want {
		t.Errorf("upstream %+v\nwant %+v", clusters[0].Upstream, want)
	}
	for name, value := range map[string]string{
		AnnotationLbPolicy: "fastest", AnnotationConnectTimeout: "0s", AnnotationClusterTemplate: "nope",
	} {
		// Each on a Service of its own: a Service's problems are reported
		// once per change of its settings.
		_, skips := r.SetService(ServiceKey{Namespace: "default", Name: value}, &ServiceInfo{Annotations: map[string]string{name: value}})
		if len(skips) != 1 || !strings.Contains(skips[0].Detail, name) {
			t.Errorf("%s=%s: skips %v", name, value, skips)
		}
	}
}
