package harness

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// CreateNode creates a Node object; nothing runs on it. The EndpointSlice
// controller skips Pods whose Node does not exist, and takes the endpoint's
// zone from the Node's topology.kubernetes.io/zone label (zone "" sets none).
func (c *Cluster) CreateNode(ctx context.Context, name, zone string) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
	if zone != "" {
		node.Labels[corev1.LabelTopologyZone] = zone
	}
	_, err := c.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create node %s: %w", name, err)
	}
	return nil
}

// CreateNamespace creates a namespace and waits for its default
// ServiceAccount: until the ServiceAccount controller has made it, the
// admission plugin refuses Pods there.
func (c *Cluster) CreateNamespace(ctx context.Context, name string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	return waitReady(ctx, c.ControllerManager, 30*time.Second, func() error {
		_, err := c.Client.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
}

// EnsureNamespace is CreateNamespace unless the namespace exists: for the
// examples' namespaces, which several tests share.
func (c *Cluster) EnsureNamespace(ctx context.Context, name string) error {
	_, err := c.Client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return c.CreateNamespace(ctx, name)
	}
	return err
}

// CreateService creates a ClusterIP Service selecting selector, with ports.
func (c *Cluster) CreateService(ctx context.Context, ns, name string, selector map[string]string, ports ...corev1.ServicePort) (*corev1.Service, error) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{Selector: selector, Ports: ports},
	}
	svc, err := c.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create service %s/%s: %w", ns, name, err)
	}
	return svc, nil
}

// TCPPort is a Service port named name, port -> targetPort.
func TCPPort(name string, port int32, targetPort intstr.IntOrString) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Protocol: corev1.ProtocolTCP, Port: port, TargetPort: targetPort}
}

// Pod describes a Pod for CreatePod.
type Pod struct {
	Namespace, Name string
	Labels          map[string]string
	Node            string                 // spec.nodeName; the Node must exist
	Ports           []corev1.ContainerPort // for named targetPorts
}

// CreatePod creates a Pod already bound to p.Node. No kubelet runs it: its
// status stays Pending until SetPodStatus writes one.
func (c *Cluster) CreatePod(ctx context.Context, p Pod) (*corev1.Pod, error) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, Labels: p.Labels},
		Spec: corev1.PodSpec{
			NodeName: p.Node,
			// The image is never pulled: there is no kubelet.
			Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app:1", Ports: p.Ports}},
			// No token volume: nothing will mount it.
			AutomountServiceAccountToken: new(false),
		},
	}
	pod, err := c.Client.CoreV1().Pods(p.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	return pod, nil
}

// SetPodStatus writes what a kubelet would: phase Running, the Pod's IP and
// its Ready condition, through the status subresource. The EndpointSlice
// controller publishes the Pod at ip, ready or not as given.
func (c *Cluster) SetPodStatus(ctx context.Context, ns, name, ip string, ready bool) error {
	pods := c.Client.CoreV1().Pods(ns)
	pod, err := pods.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get pod %s/%s: %w", ns, name, err)
	}
	cond := corev1.ConditionFalse
	if ready {
		cond = corev1.ConditionTrue
	}
	now := metav1.Now()
	pod.Status.Phase = corev1.PodRunning
	pod.Status.PodIP = ip
	pod.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	if pod.Status.StartTime == nil {
		pod.Status.StartTime = &now
	}
	pod.Status.Conditions = []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.ContainersReady, Status: cond, LastTransitionTime: now},
		{Type: corev1.PodReady, Status: cond, LastTransitionTime: now},
	}
	if _, err := pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update status of pod %s/%s: %w", ns, name, err)
	}
	return nil
}

// DeletePod deletes a Pod. Without force it stays Terminating for ever (no
// kubelet confirms it): its endpoint turns ready=false, serving=true,
// terminating=true. With force (grace period 0) it is gone at once.
func (c *Cluster) DeletePod(ctx context.Context, ns, name string, force bool) error {
	opts := metav1.DeleteOptions{}
	if force {
		opts.GracePeriodSeconds = new(int64(0))
	}
	if err := c.Client.CoreV1().Pods(ns).Delete(ctx, name, opts); err != nil {
		return fmt.Errorf("delete pod %s/%s: %w", ns, name, err)
	}
	return nil
}
