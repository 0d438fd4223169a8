package testutil

import (
	"fmt"
	"slices"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
)

// TopoSlice is the "web" Service of the topology tests: one endpoint per zone, each on
// its own Node, with an http and an admin port.
const TopoSlice = `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080}, {name: admin, port: 9901}]
endpoints:
- {addresses: [10.0.1.1], conditions: {ready: true}, zone: z1, nodeName: n1, targetRef: {kind: Pod, namespace: shop, name: web-a}}
- {addresses: [10.0.2.1], conditions: {ready: true}, zone: z2, nodeName: n2, targetRef: {kind: Pod, namespace: shop, name: web-b}}
`

// TopoNodes are the Nodes n1 (in localZone, rack-1) and n2 (in z2), of
// region r1.
func TopoNodes(localZone string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: NodeList
items:
- metadata: {name: n1, labels: {topology.kubernetes.io/region: r1, topology.kubernetes.io/zone: %s, topology.istio.io/subzone: rack-1}}
- metadata: {name: n2, labels: {topology.kubernetes.io/region: r1, topology.kubernetes.io/zone: z2}}
`, localZone)
}

// TopoService is Service shop/web, ports http 80 and admin 9901, with
// the given annotations (a YAML flow mapping's inside).
func TopoService(annotations string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
  annotations: {%s}
spec:
  ports: [{name: http, port: 80}, {name: admin, port: 9901}]
`, annotations)
}

// Placement describes where each endpoint of a CLA sits:
// "ip priority region/zone/sub-zone weight", in file order.
func Placement(cla *endpointv3.ClusterLoadAssignment) []string {
	var out []string
	for _, l := range cla.Endpoints {
		for _, lb := range l.LbEndpoints {
			loc := l.GetLocality()
			out = append(out, fmt.Sprintf("%s p%d %s/%s/%s w%d", lb.GetEndpoint().GetAddress().GetSocketAddress().GetAddress(),
				l.Priority, loc.GetRegion(), loc.GetZone(), loc.GetSubZone(), l.GetLoadBalancingWeight().GetValue()))
		}
	}
	slices.Sort(out)
	return out
}
