package watch

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/edsync/edsync/render"
)

func node(name string, labels map[string]string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Status:     corev1.NodeStatus{Images: []corev1.ContainerImage{{Names: []string{"a-large-image"}}}},
	}
}

func zoneLabels(region, zone string) map[string]string {
	return map[string]string{corev1.LabelTopologyRegion: region, corev1.LabelTopologyZone: zone, "kubernetes.io/os": "linux"}
}

// objectsEnv is an Objects whose notifications wake a test waiting on it.
type objectsEnv struct {
	objects  *Objects
	n        notifications
	notified atomic.Int64
}

func newObjectsEnv() *objectsEnv {
	e := &objectsEnv{n: newNotifications()}
	e.objects = NewObjects(func() { e.notified.Add(1); e.n.notify(render.ServiceKey{}) })
	return e
}

// nodeIs waits until Objects holds the Node as want (zero Name: gone).
func (e *objectsEnv) nodeIs(t *testing.T, name string, want Node) {
	t.Helper()
	e.n.until(t, "Node "+name, func() bool {
		got, ok := e.objects.Node(name)
		return ok == (want.Name != "") && got == want
	})
}

// listRecorder records the options of each list of a resource.
type listRecorder struct {
	mu   sync.Mutex
	got  []string // namespace|labelSelector|fieldSelector
	seen map[string]bool
}

func (r *listRecorder) watch(client *fake.Clientset, resource string) {
	client.PrependReactor("list", resource, func(a k8stesting.Action) (bool, runtime.Object, error) {
		la := a.(k8stesting.ListActionImpl)
		o := la.GetListOptions()
		r.mu.Lock()
		defer r.mu.Unlock()
		r.got = append(r.got, la.GetNamespace()+"|"+o.LabelSelector+"|"+o.FieldSelector)
		return false, nil, nil
	})
}

func (r *listRecorder) lists() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.got)
	slices.Sort(out)
	return slices.Compact(out)
}

// With --node-name only, edsync asks the API server for that one Node (a
// field selector) and keeps it alone even if the server sends more (the
// fake does not filter): its zone is the local zone.
func TestKubeNodesLocal(t *testing.T) {
	ctx := t.Context()
	client := fake.NewClientset(node("n1", zoneLabels("r1", "z1")), node("n2", zoneLabels("r1", "z2")))
	var lists listRecorder
	lists.watch(client, "nodes")
	e := newObjectsEnv()
	k, err := NewKubeNodes(KubeNodesOptions{API: clientsetAPI{client}, Nodes: NodeOptions{Name: "n1"}, Objects: e.objects})
	if err != nil {
		t.Fatal(err)
	}
	runSource(t, k)
	waitClosed(t, k.Synced(), "Synced")

	// Synced means the Node is in Objects.
	if got, ok := e.objects.Node("n1"); !ok || got != (Node{Name: "n1", Zone: "z1", Region: "r1"}) {
		t.Errorf("after sync: Node(n1) = %+v, %v", got, ok)
	}
	if _, ok := e.objects.Node("n2"); ok {
		t.Error("n2 was kept: only the named Node is read")
	}
	if got, want := lists.lists(), []string{"||metadata.name=n1"}; !slices.Equal(got, want) {
		t.Errorf("lists = %q, want %q", got, want)
	}
	ch := e.objects.Take()
	if len(ch.Nodes) != 1 || ch.Nodes["n1"] == nil || ch.Nodes["n1"].Zone != "z1" {
		t.Errorf("Take().Nodes = %v, want n1 in z1", ch.Nodes)
	}

	api := client.CoreV1().Nodes()
	t.Run("an update of no label read records nothing", func(t *testing.T) {
		before := e.notified.Load()
		n := node("n1", zoneLabels("r1", "z1"))
		n.Status.Images = nil
		n.Labels["kubernetes.io/os"] = "windows"
		if _, err := api.Update(ctx, n, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		// The zone change after it arrives after it: by then the first
		// update has been handled.
		if _, err := api.Update(ctx, node("n1", zoneLabels("r1", "z3")), metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		e.nodeIs(t, "n1", Node{Name: "n1", Zone: "z3", Region: "r1"})
		if got := e.notified.Load() - before; got != 1 {
			t.Errorf("%d notifications, want 1 (the zone change only)", got)
		}
		if ch := e.objects.Take(); len(ch.Nodes) != 1 || ch.Nodes["n1"].Zone != "z3" {
			t.Errorf("Take().Nodes = %v, want n1 in z3", ch.Nodes)
		}
	})
	t.Run("delete", func(t *testing.T) {
		if err := api.Delete(ctx, "n1", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		e.nodeIs(t, "n1", Node{})
		if ch := e.objects.Take(); len(ch.Nodes) != 1 || ch.Nodes["n1"] != nil {
			t.Errorf("Take().Nodes = %v, want n1 gone (nil)", ch.Nodes)
		}
	})
}

// With --node-topology every Node is read, with no field selector, and
// slimmed to the three labels; the sub-zone label is configurable.
func TestKubeNodesAll(t *testing.T) {
	labels := zoneLabels("r1", "z1")
	labels["example.com/rack"] = "rack-7"
	client := fake.NewClientset(node("n1", labels), node("n2", map[string]string{"kubernetes.io/os": "linux"}))
	var lists listRecorder
	lists.watch(client, "nodes")
	e := newObjectsEnv()
	k, err := NewKubeNodes(KubeNodesOptions{API: clientsetAPI{client}, Nodes: NodeOptions{All: true, Name: "n2", SubZoneLabel: "example.com/rack"}, Objects: e.objects})
	if err != nil {
		t.Fatal(err)
	}
	runSource(t, k)
	waitClosed(t, k.Synced(), "Synced")

	if got, want := lists.lists(), []string{"||"}; !slices.Equal(got, want) {
		t.Errorf("lists = %q, want %q", got, want)
	}
	n1, _ := e.objects.Node("n1")
	if want := (Node{Name: "n1", Zone: "z1", Region: "r1", SubZone: "rack-7"}); n1 != want {
		t.Errorf("Node(n1) = %+v, want %+v", n1, want)
	}
	if got := n1.Topology(); got == nil || *got != (render.NodeTopology{Region: "r1", SubZone: "rack-7"}) {
		t.Errorf("n1's topology = %+v", got)
	}
	n2, ok := e.objects.Node("n2")
	if !ok || n2.Topology() != nil {
		t.Errorf("Node(n2) = %+v, %v: want known, with no topology (nil: render needs no event)", n2, ok)
	}
	// The informer's cache holds the slim copies only.
	for _, obj := range k.scopes.list[0].informer.informer.GetStore().List() {
		n := obj.(*corev1.Node)
		if len(n.Status.Images) > 0 || n.Labels["kubernetes.io/os"] != "" {
			t.Errorf("cached Node %s not slimmed: %+v", n.Name, n)
		}
	}
}

func service(ns, name string, annotations map[string]string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations},
		Spec:       corev1.ServiceSpec{Ports: ports, Selector: map[string]string{"app": name}},
	}
}

// The Service source lists per namespace scope, keeps the named Services
// only, and hands on their edsync.io/ annotations and ports.
func TestKubeServices(t *testing.T) {
	ctx := t.Context()
	web := svc("ns1", "web")
	http := corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}
	client := fake.NewClientset(
		service("ns1", "web", map[string]string{
			render.AnnotationHealthCheckPort:                   "admin",
			"kubectl.kubernetes.io/last-applied-configuration": "{...}",
		}, http),
		service("ns1", "other", map[string]string{render.AnnotationTopology: "zone"}),
		service("ns2", "db", nil),
	)
	var lists listRecorder
	lists.watch(client, "services")
	e := newObjectsEnv()
	k, err := NewKubeServices(KubeServicesOptions{API: clientsetAPI{client}, Services: []render.ServiceKey{web}, Objects: e.objects})
	if err != nil {
		t.Fatal(err)
	}
	runSource(t, k)
	waitClosed(t, k.Synced(), "Synced")

	if got, want := lists.lists(), []string{"ns1||"}; !slices.Equal(got, want) {
		t.Errorf("lists = %q, want %q", got, want)
	}
	want := &render.ServiceInfo{
		Annotations: map[string]string{render.AnnotationHealthCheckPort: "admin"},
		Ports:       []render.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
	}
	ch := e.objects.Take()
	if got := slices.Collect(maps.Keys(ch.Services)); !slices.Equal(got, []render.ServiceKey{web}) {
		t.Fatalf("Take().Services has %v, want only %v", got, web)
	}
	if got := ch.Services[web]; !sameServiceInfo(got, want) {
		t.Errorf("ServiceInfo(web) = %+v, want %+v", got, want)
	}

	api := client.CoreV1().Services("ns1")
	t.Run("other annotations and the spec's other fields record nothing", func(t *testing.T) {
		before := e.notified.Load()
		s := service("ns1", "web", map[string]string{render.AnnotationHealthCheckPort: "admin", "team": "x"}, http)
		s.Spec.Selector = map[string]string{"app": "web2"}
		if _, err := api.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		s = service("ns1", "web", map[string]string{render.AnnotationHealthCheckPort: "9000"}, http)
		if _, err := api.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		e.n.until(t, "the new health-check port", func() bool {
			info := e.objects.Service(web)
			return info != nil && info.Annotations[render.AnnotationHealthCheckPort] == "9000"
		})
		if got := e.notified.Load() - before; got != 1 {
			t.Errorf("%d notifications, want 1 (the annotation change only)", got)
		}
	})
	t.Run("internalTrafficPolicy", func(t *testing.T) {
		for _, policy := range []corev1.ServiceInternalTrafficPolicy{corev1.ServiceInternalTrafficPolicyLocal, corev1.ServiceInternalTrafficPolicyCluster} {
			before := e.notified.Load()
			s := service("ns1", "web", map[string]string{render.AnnotationHealthCheckPort: "9000"}, http)
			s.Spec.InternalTrafficPolicy = &policy
			if _, err := api.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			want := policy
			if policy == corev1.ServiceInternalTrafficPolicyCluster {
				want = "" // Cluster, the default, is not kept
			}
			e.n.until(t, "the policy "+string(policy), func() bool {
				info := e.objects.Service(web)
				return info != nil && info.InternalTrafficPolicy == want
			})
			if got := e.notified.Load() - before; got != 1 {
				t.Errorf("%s: %d notifications, want 1", policy, got)
			}
		}
	})
	t.Run("delete", func(t *testing.T) {
		e.objects.Take()
		if err := api.Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		e.n.until(t, "web gone", func() bool { return e.objects.Service(web) == nil })
		ch := e.objects.Take()
		if info, ok := ch.Services[web]; !ok || info != nil {
			t.Errorf("Take().Services[web] = %v, %v: want nil (gone)", info, ok)
		}
	})
}

func TestSlimService(t *testing.T) {
	s := service("ns", "web", map[string]string{render.AnnotationOverprovisioningFactor: "200", "other": "x"},
		corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intOrString("http"), NodePort: 30080})
	s.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	got := SlimService(s)
	want := service("ns", "web", map[string]string{render.AnnotationOverprovisioningFactor: "200"},
		corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP})
	want.Spec.Selector = nil
	if !sameServiceInfo(serviceInfoOf(got), serviceInfoOf(want)) || got.ManagedFields != nil || got.Spec.Selector != nil ||
		got.Spec.Ports[0].NodePort != 0 || len(got.Annotations) != 1 {
		t.Errorf("SlimService = %+v, want %+v", got, want)
	}
}

func intOrString(s string) intstr.IntOrString { return intstr.FromString(s) }

// KubeServices.SetServices: a kept namespace is not listed again, and the
// Services it already holds that are now watched reach Objects; a new
// namespace is listed; a dropped one's Services leave Objects.
func TestKubeServicesSetServices(t *testing.T) {
	client := fake.NewClientset(service("ns1", "web", nil), service("ns1", "api", nil), service("ns2", "db", nil))
	var lists listRecorder
	lists.watch(client, "services")
	e := newObjectsEnv()
	web, api, db := svc("ns1", "web"), svc("ns1", "api"), svc("ns2", "db")
	k, err := NewKubeServices(KubeServicesOptions{API: clientsetAPI{client}, Services: []render.ServiceKey{web}, Objects: e.objects})
	if err != nil {
		t.Fatal(err)
	}
	runSource(t, k)
	waitClosed(t, k.Synced(), "Synced")
	has := func() []render.ServiceKey {
		var out []render.ServiceKey
		for _, key := range []render.ServiceKey{web, api, db} {
			if e.objects.Service(key) != nil {
				out = append(out, key)
			}
		}
		return out
	}
	if got, want := has(), []render.ServiceKey{web}; !slices.Equal(got, want) {
		t.Fatalf("Services in Objects at start = %v, want %v", got, want)
	}

	if err := k.SetServices(t.Context(), []render.ServiceKey{web, api, db}); err != nil {
		t.Fatal(err)
	}
	if got, want := has(), []render.ServiceKey{web, api, db}; !slices.Equal(got, want) {
		t.Errorf("after adding api (same namespace) and db = %v, want %v", got, want)
	}
	if got, want := lists.lists(), []string{"ns1||", "ns2||"}; !slices.Equal(got, want) {
		t.Errorf("lists = %q, want %q (ns1 once)", got, want)
	}
	lists.mu.Lock()
	n := len(lists.got)
	lists.mu.Unlock()
	if n != 2 {
		t.Errorf("%d lists, want 2: ns1 was listed again", n)
	}

	if err := k.SetServices(t.Context(), []render.ServiceKey{db}); err != nil {
		t.Fatal(err)
	}
	if got, want := has(), []render.ServiceKey{db}; !slices.Equal(got, want) {
		t.Errorf("after dropping ns1 = %v, want %v", got, want)
	}
}

// A failed move changes nothing (the kept informer still delivers); a move
// from every namespace to a list and back hands Objects over both ways.
func TestKubeServicesSetServicesFailureAndAll(t *testing.T) {
	topology := func(v string) map[string]string { return map[string]string{"edsync.io/topology": v} }
	client := fake.NewClientset(service("ns1", "web", topology("zone")), service("ns1", "api", nil), service("ns3", "mq", nil))
	client.PrependReactor("list", "services", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetNamespace() == "ns3" {
			return true, nil, errors.New("no list for you")
		}
		return false, nil, nil
	})
	e := newObjectsEnv()
	web, api, mq := svc("ns1", "web"), svc("ns1", "api"), svc("ns3", "mq")
	k, err := NewKubeServices(KubeServicesOptions{API: clientsetAPI{client}, Services: []render.ServiceKey{web}, Objects: e.objects})
	if err != nil {
		t.Fatal(err)
	}
	runSource(t, k)
	waitClosed(t, k.Synced(), "Synced")
	annotation := func(key render.ServiceKey) string {
		if info := e.objects.Service(key); info != nil {
			return info.Annotations["edsync.io/topology"]
		}
		return "(none)"
	}

	// The deadline is how a move gives up; what is asserted is what is left.
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if err := k.SetServices(ctx, []render.ServiceKey{web, api, mq}); err == nil {
		t.Fatal("a move whose informer cannot list succeeded")
	}
	if got := annotation(api); got != "(none)" {
		t.Errorf("api is in Objects after a failed move: %q", got)
	}
	if _, err := client.CoreV1().Services("ns1").Update(t.Context(), service("ns1", "web", topology("hints")), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.n.until(t, "web's update after the failed move", func() bool { return annotation(web) == "hints" })

	// To every Service (one informer for all namespaces), and back to web.
	if err := k.SetServices(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[render.ServiceKey]string{web: "hints", api: "", mq: ""} {
		if got := annotation(key); got != want {
			t.Errorf("watching every Service: %s has %q, want %q", key, got, want)
		}
	}
	if err := k.SetServices(t.Context(), []render.ServiceKey{web}); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[render.ServiceKey]string{web: "hints", api: "(none)", mq: "(none)"} {
		if got := annotation(key); got != want {
			t.Errorf("back to web: %s has %q, want %q", key, got, want)
		}
	}
}
