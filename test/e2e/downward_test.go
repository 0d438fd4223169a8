package e2e

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/edsync/edsync/test/e2e/harness"
)

// The downward-API way to give a sidecar edsync its zone without reading
// Nodes (no ClusterRole): when the scheduler binds a Pod, the API server's
// PodTopologyLabels admission copies its Node's topology.kubernetes.io/zone
// and region labels onto the Pod, and the sidecar example passes the zone
// label to edsync as EDSYNC_LOCAL_ZONE (fieldRef metadata.labels[...]).
// The kubelet resolves that fieldRef from the Pod's labels; this proves the
// label is there, set by the real API server at binding.
func TestPodGetsItsNodesZoneAtBinding(t *testing.T) {
	ctx := t.Context()
	c := cluster
	const ns = "downward"
	if err := c.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateNodes(ctx, harness.Node{Name: "downward-b1", Region: "region-1", Zone: "zone-b"}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gateway-0"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "envoy", Image: "envoy"}}}}
	if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: pod.Name},
		Target: corev1.ObjectReference{Kind: "Node", Name: "downward-b1"}}
	if err := c.Client.CoreV1().Pods(ns).Bind(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := c.Client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Spec.NodeName != "downward-b1" || got.Labels[corev1.LabelTopologyZone] != "zone-b" || got.Labels[corev1.LabelTopologyRegion] != "region-1" {
		t.Errorf("bound to %q with labels %v: want the Node's zone and region labels", got.Spec.NodeName, got.Labels)
	}
}
