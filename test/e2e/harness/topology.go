package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
)

// LabelSubZone is the Node label that Istio (and edsync's --node-topology)
// reads a locality's sub-zone from; Kubernetes itself defines none.
const LabelSubZone = "topology.istio.io/subzone"

// Node is a Node object for CreateNodes: its name and topology labels
// (topology.kubernetes.io/region and /zone, LabelSubZone); an empty field
// sets no label.
type Node struct {
	Name, Region, Zone, SubZone string
}

// CreateNodes creates Node objects, nothing running on them. The
// EndpointSlice controller copies a Node's zone label onto the endpoints of
// the Pods bound to it; trafficDistribution hints need nothing else of the
// Node (no status, no allocatable CPU: those are for the older
// service.kubernetes.io/topology-mode: Auto).
func (c *Cluster) CreateNodes(ctx context.Context, nodes ...Node) error {
	for _, n := range nodes {
		labels := map[string]string{}
		for key, value := range map[string]string{
			corev1.LabelTopologyRegion: n.Region,
			corev1.LabelTopologyZone:   n.Zone,
			LabelSubZone:               n.SubZone,
		} {
			if value != "" {
				labels[key] = value
			}
		}
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: labels}}
		if _, err := c.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create node %s: %w", n.Name, err)
		}
	}
	return nil
}

// PodOn is a Pod for CreatePodsOnNodes: bound to Node, ready at IP.
type PodOn struct {
	Name, Node, IP string
}

// CreatePodsOnNodes creates Pods in ns with labels, each bound to its own
// Node (spec.nodeName at create: there is no scheduler), and makes each
// Running and Ready at its IP as a kubelet would (SetPodStatus).
// (CreateReadyPods puts them all on one Node.)
func (c *Cluster) CreatePodsOnNodes(ctx context.Context, ns string, labels map[string]string, pods ...PodOn) error {
	return Parallel(len(pods), 8, func(i int) error {
		p := pods[i]
		if _, err := c.CreatePod(ctx, Pod{Namespace: ns, Name: p.Name, Labels: labels, Node: p.Node}); err != nil {
			return err
		}
		return c.SetPodStatus(ctx, ns, p.Name, p.IP, true)
	})
}

// ServiceSpec is a Service for CreateServiceSpec.
type ServiceSpec struct {
	Namespace, Name string
	Annotations     map[string]string
	Selector        map[string]string
	Ports           []corev1.ServicePort
	// TrafficDistribution is spec.trafficDistribution ("" sets none):
	// PreferClose (or its newer name PreferSameZone) makes the EndpointSlice
	// controller hint each ready endpoint for its own zone, PreferSameNode
	// for its own node as well (GA and locked on since Kubernetes 1.35).
	TrafficDistribution string
}

// CreateServiceSpec creates a ClusterIP Service from s.
func (c *Cluster) CreateServiceSpec(ctx context.Context, s ServiceSpec) (*corev1.Service, error) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name, Annotations: s.Annotations},
		Spec:       corev1.ServiceSpec{Selector: s.Selector, Ports: s.Ports},
	}
	if s.TrafficDistribution != "" {
		svc.Spec.TrafficDistribution = &s.TrafficDistribution
	}
	svc, err := c.Client.CoreV1().Services(s.Namespace).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create service %s/%s: %w", s.Namespace, s.Name, err)
	}
	return svc, nil
}

// AnnotateService sets an annotation of Service ns/name, or removes it
// (value ""), with a merge patch: what a user's kubectl annotate does.
func (c *Cluster) AnnotateService(ctx context.Context, ns, name, key, value string) error {
	patch, err := metadataPatch("annotations", key, value)
	if err != nil {
		return err
	}
	if _, err := c.Client.CoreV1().Services(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("annotate service %s/%s: %w", ns, name, err)
	}
	return nil
}

// LabelNode sets a label of Node name, or removes it (value "").
func (c *Cluster) LabelNode(ctx context.Context, name, key, value string) error {
	patch, err := metadataPatch("labels", key, value)
	if err != nil {
		return err
	}
	if _, err := c.Client.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("label node %s: %w", name, err)
	}
	return nil
}

// metadataPatch is a JSON merge patch setting metadata.<field>[key] to
// value, or removing it (null) when value is "".
func metadataPatch(field, key, value string) ([]byte, error) {
	var v any
	if value != "" {
		v = value
	}
	return json.Marshal(map[string]any{"metadata": map[string]any{field: map[string]any{key: v}}})
}

// SliceTopology lists the endpoints of the slices in list, one string each, sorted:
// "IP node=NODE zone=ZONE ready|not-ready|terminating hints=zones:Z1,Z2 nodes:N1"
// ("hints=-" for none), as the EndpointSlice controller wrote them.
func SliceTopology(list []discoveryv1.EndpointSlice) []string {
	var out []string
	for _, sl := range list {
		for _, ep := range sl.Endpoints {
			state := "not-ready"
			switch {
			case ep.Conditions.Ready != nil && *ep.Conditions.Ready:
				state = "ready"
			case ep.Conditions.Terminating != nil && *ep.Conditions.Terminating:
				state = "terminating"
			}
			hints := "-"
			if h := ep.Hints; h != nil {
				var zones, nodes []string
				for _, z := range h.ForZones {
					zones = append(zones, z.Name)
				}
				for _, n := range h.ForNodes {
					nodes = append(nodes, n.Name)
				}
				hints = "zones:" + strings.Join(zones, ",")
				if len(nodes) > 0 {
					hints += " nodes:" + strings.Join(nodes, ",")
				}
			}
			out = append(out, fmt.Sprintf("%s node=%s zone=%s %s hints=%s",
				strings.Join(ep.Addresses, ","), deref(ep.NodeName), deref(ep.Zone), state, hints))
		}
	}
	slices.Sort(out)
	return out
}

func deref(s *string) string {
	if s == nil {
		return "-"
	}
	return *s
}

// WaitSliceTopology waits until the EndpointSlices of Service ns/svc hold
// exactly want, as SliceTopology lists them (in any order). It checks after
// every change the API server reports (a watch), never on a timer, and
// after timeout returns what it last saw.
func (c *Cluster) WaitSliceTopology(ctx context.Context, ns, svc string, timeout time.Duration, want ...string) error {
	want = slices.Clone(want)
	slices.Sort(want)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	api := c.Client.DiscoveryV1().EndpointSlices(ns)
	opts := metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc}
	var got []string
	for {
		list, err := api.List(ctx, opts)
		if err != nil {
			return fmt.Errorf("endpointslices of %s/%s: want\n  %s\nlast seen\n  %s\n(%w)", ns, svc,
				strings.Join(want, "\n  "), strings.Join(got, "\n  "), err)
		}
		if got = SliceTopology(list.Items); slices.Equal(got, want) {
			return nil
		}
		// Wait for the next change after this list, then look again.
		w, err := api.Watch(ctx, metav1.ListOptions{LabelSelector: opts.LabelSelector, ResourceVersion: list.ResourceVersion})
		if err != nil {
			return fmt.Errorf("watch endpointslices of %s/%s: %w", ns, svc, err)
		}
		select {
		case ev, ok := <-w.ResultChan():
			if ok && ev.Type == watch.Error {
				w.Stop()
				return fmt.Errorf("watch endpointslices of %s/%s: %v", ns, svc, ev.Object)
			}
		case <-ctx.Done():
		}
		w.Stop()
	}
}

// Layout lists a CLA's LocalityLbEndpoints, one string each, sorted:
// "P<priority> <region>/<zone>/<sub-zone> w<load_balancing_weight>: IP IP ...",
// the IPs sorted, each followed by "(HEALTH)" unless HEALTHY. It shows at
// a glance which endpoints Envoy prefers and how it weighs the localities.
func Layout(cla *endpointv3.ClusterLoadAssignment) []string {
	var out []string
	for _, loc := range cla.GetEndpoints() {
		var ips []string
		for _, lb := range loc.GetLbEndpoints() {
			ip := lb.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()
			if h := lb.GetHealthStatus(); h != corev3.HealthStatus_HEALTHY {
				ip += "(" + h.String() + ")"
			}
			ips = append(ips, ip)
		}
		slices.Sort(ips)
		l := loc.GetLocality()
		w := "-" // no weight set
		if loc.GetLoadBalancingWeight() != nil {
			w = strconv.FormatUint(uint64(loc.GetLoadBalancingWeight().GetValue()), 10)
		}
		out = append(out, fmt.Sprintf("P%d %s/%s/%s w%s: %s", loc.GetPriority(),
			l.GetRegion(), l.GetZone(), l.GetSubZone(), w, strings.Join(ips, " ")))
	}
	slices.Sort(out)
	return out
}

// WaitLayout waits until the file name for cluster holds exactly want, as
// Layout lists it (in any order).
func (d *DirWatcher) WaitLayout(t testing.TB, name, cluster string, timeout time.Duration, want ...string) *endpointv3.ClusterLoadAssignment {
	t.Helper()
	return d.waitList(t, name, cluster, timeout, "localities", Layout, want)
}
