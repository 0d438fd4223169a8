package render

import (
	"slices"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
)

// A declared cluster that names a port the Service does not have is found,
// with the ports it has: from its slices, or from the Service object.
func TestMissingPort(t *testing.T) {
	s := slice("web-a", discoveryv1.AddressTypeIPv4, port("http", 8080), port("admin", 9901), ep("10.0.0.1"))
	for _, tc := range []struct {
		name      string
		opts      Options
		service   *ServiceInfo
		cluster   string
		wantPort  string
		wantHas   []string
		wantFound bool
	}{
		{name: "typo", cluster: "default/web/htpp", wantPort: "htpp", wantHas: []string{"admin", "http"}, wantFound: true},
		{name: "a port it has", cluster: "default/web/http"},
		{name: "another Service", cluster: "default/webshop/http"},
		{name: "another namespace", cluster: "prod/web/htpp"},
		{name: "unnamed port", cluster: "default/web", wantPort: "", wantHas: []string{"admin", "http"}, wantFound: true},
		{name: "Service object's ports", service: info(nil, ServicePort{Name: "grpc", Port: 81}, ServicePort{Name: "dns", Port: 53, Protocol: "UDP"}),
			cluster: "default/web/http", wantPort: "http", wantHas: []string{"grpc"}, wantFound: true},
		{name: "custom template", opts: Options{ClusterNameTemplate: "{{.Service}}.{{.Namespace}}:{{.Port}}"},
			cluster: "web.default:htpp", wantPort: "htpp", wantHas: []string{"admin", "http"}, wantFound: true},
		{name: "template that changes the port", opts: Options{ClusterNameTemplate: `{{.Service}}-{{printf "%.2s" .Port}}`},
			cluster: "web-htpp"},
		{name: "listed cluster", opts: Options{Clusters: []ClusterSpec{{Service: web, Port: "htpp", Name: "frontend"}}},
			cluster: "frontend", wantPort: "htpp", wantHas: []string{"admin", "http"}, wantFound: true},
		{name: "listed cluster of a port it has", opts: Options{Clusters: []ClusterSpec{{Service: web, Port: "http", Name: "frontend"}}},
			cluster: "frontend"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := New(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, ok := r.MissingPort(web, tc.cluster); ok {
				t.Errorf("found before the Service's ports are known")
			}
			if tc.service != nil {
				r.SetService(web, tc.service)
			}
			r.Service(web, []*discoveryv1.EndpointSlice{s})
			port, has, ok := r.MissingPort(web, tc.cluster)
			if ok != tc.wantFound || port != tc.wantPort || !slices.Equal(has, tc.wantHas) {
				t.Errorf("MissingPort(%q) = %q, %q, %v; want %q, %q, %v", tc.cluster, port, has, ok, tc.wantPort, tc.wantHas, tc.wantFound)
			}
		})
	}
}
