package watch

import (
	"runtime"
	"strings"
	"sync"
	"time"
	"unique"
	"weak"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/edsync/edsync/render"
)

// Slim returns a copy of sl holding only what edsync reads, so that a
// large cluster fits in little heap (target: under 1 KB per endpoint for
// the whole process). It keeps name, namespace, resourceVersion, labels,
// the endpoints.kubernetes.io/last-change-trigger-time annotation, the
// address type, ports, and per endpoint its addresses, conditions,
// hostname, targetRef kind/namespace/name (a Pod's name as the endpoint's
// hostname when it has none, the targetRef then shared: see
// render.RefNameInHostname), nodeName, zone and hints. It
// drops managedFields, ownerReferences, other annotations,
// deprecatedTopology and targetRef uid/resourceVersion/apiVersion/fieldPath.
//
// Strings that repeat across endpoints (zones, node names, kinds,
// namespaces, label keys and values) are interned; condition pointers,
// zone pointers and single-zone hints are shared between endpoints: Store
// objects are never mutated, so sharing is safe. About 190 B of heap per
// endpoint stay (TestHeapPerEndpoint). Slim is idempotent; the informer applies it as its transform.
func Slim(sl *discoveryv1.EndpointSlice) *discoveryv1.EndpointSlice {
	return SlimSince(sl, time.Time{})
}

// SlimSince is Slim that also drops a trigger-time annotation from before
// since (zero: none), which a Store whose TriggerTimesSince is since would
// not count: the objects of the initial list, whose trigger times are
// hours old, then hold no map for it (about 300 bytes per slice).
func SlimSince(sl *discoveryv1.EndpointSlice, since time.Time) *discoveryv1.EndpointSlice {
	out := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:            sl.Name,
			Namespace:       intern(sl.Namespace),
			ResourceVersion: sl.ResourceVersion,
			Labels:          internMap(sl.Labels),
		},
		AddressType: discoveryv1.AddressType(intern(string(sl.AddressType))),
	}
	if v, ok := sl.Annotations[corev1.EndpointsLastChangeTriggerTime]; ok && !triggeredBefore(v, since) {
		out.Annotations = map[string]string{corev1.EndpointsLastChangeTriggerTime: v}
	}
	if len(sl.Ports) > 0 {
		out.Ports = make([]discoveryv1.EndpointPort, len(sl.Ports))
		for i, p := range sl.Ports {
			out.Ports[i] = discoveryv1.EndpointPort{
				Name:        internPtr(p.Name),
				Protocol:    p.Protocol,
				Port:        p.Port,
				AppProtocol: internPtr(p.AppProtocol),
			}
		}
	}
	if len(sl.Endpoints) > 0 {
		out.Endpoints = make([]discoveryv1.Endpoint, len(sl.Endpoints))
		for i := range sl.Endpoints {
			out.Endpoints[i] = slimEndpoint(&sl.Endpoints[i])
		}
	}
	return out
}

// triggeredBefore says whether the trigger time v is before since (as the
// Store judges it: a time it cannot read is kept, for the Store to skip).
func triggeredBefore(v string, since time.Time) bool {
	if since.IsZero() {
		return false
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	return err == nil && t.Before(since)
}

func slimEndpoint(ep *discoveryv1.Endpoint) discoveryv1.Endpoint {
	out := discoveryv1.Endpoint{
		Addresses: ep.Addresses,
		Conditions: discoveryv1.EndpointConditions{
			Ready:       sharedBool(ep.Conditions.Ready),
			Serving:     sharedBool(ep.Conditions.Serving),
			Terminating: sharedBool(ep.Conditions.Terminating),
		},
		Hostname: ep.Hostname,
		NodeName: nodePtr(ep.NodeName),
		Zone:     zonePtr(ep.Zone),
	}
	switch r := ep.TargetRef; {
	case r == nil:
	case r.FieldPath == render.RefNameInHostname:
		out.TargetRef = r // slimmed already: idempotent
	case r.Kind == "Pod" && r.Name != "" && (ep.Hostname == nil || *ep.Hostname == r.Name):
		// Most endpoints: a Pod's, with no hostname of their own, or a
		// StatefulSet's, whose hostname is the Pod's name. The Pod's
		// name goes where render reads it first anyway (the endpoint's
		// hostname is the Pod's name), and the targetRef is one shared
		// by every Pod of the namespace: a 128-byte ObjectReference per
		// endpoint was the largest part of what the store held of the
		// controller's slices.
		if ep.Hostname == nil {
			name := r.Name // a copy: &r.Name would keep the whole ObjectReference
			out.Hostname = &name
		}
		out.TargetRef = podRef(r.Namespace)
	default:
		out.TargetRef = &corev1.ObjectReference{
			Kind:      intern(r.Kind),
			Namespace: intern(r.Namespace),
			Name:      r.Name,
		}
	}
	if h := ep.Hints; h != nil && len(h.ForZones) == 1 && len(h.ForNodes) == 0 {
		out.Hints = zoneHints(h.ForZones[0].Name)
	} else if h != nil && (len(h.ForZones) > 0 || len(h.ForNodes) > 0) {
		out.Hints = &discoveryv1.EndpointHints{}
		for _, z := range h.ForZones {
			out.Hints.ForZones = append(out.Hints.ForZones, discoveryv1.ForZone{Name: intern(z.Name)})
		}
		for _, n := range h.ForNodes {
			out.Hints.ForNodes = append(out.Hints.ForNodes, discoveryv1.ForNode{Name: intern(n.Name)})
		}
	}
	return out
}

// A pointer per zone, per Node name and per single-zone hint is shared by
// every endpoint that has it (thousands of endpoints run on a Node or in a
// zone: 16 bytes each otherwise, and a hints struct). The strings are
// whatever the slices' writers wrote, and Nodes come and go all day under
// an autoscaler: the pools hold weak pointers, and a value leaves its pool
// once no endpoint holds it, so that they are bounded by what the slices
// alive name, never by history (200,000 distinct zone strings once left
// 60 MiB behind when the pools only grew).
var (
	zonePtrs  weakPool[string]
	nodePtrs  weakPool[string]
	hintsPtrs weakPool[discoveryv1.EndpointHints]
	podRefs   weakPool[corev1.ObjectReference]
)

// podRef is the shared targetRef of the Pods of namespace ns whose names
// are in their endpoints' hostnames (render.RefNameInHostname).
func podRef(ns string) *corev1.ObjectReference {
	return podRefs.get(ns, func(ns string) *corev1.ObjectReference {
		return &corev1.ObjectReference{Kind: "Pod", Namespace: ns, FieldPath: render.RefNameInHostname}
	})
}

func zonePtr(z *string) *string {
	if z == nil {
		return nil
	}
	return zonePtrs.get(*z, newString)
}

func nodePtr(n *string) *string {
	if n == nil {
		return nil
	}
	return nodePtrs.get(*n, newString)
}

func zoneHints(zone string) *discoveryv1.EndpointHints {
	return hintsPtrs.get(zone, func(zone string) *discoveryv1.EndpointHints {
		return &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: zone}}}
	})
}

func newString(s string) *string { return &s }

// weakPool shares one *T per key while something holds it.
type weakPool[T any] struct {
	mu sync.Mutex
	m  map[string]weak.Pointer[T]
}

// get returns the pointer of key, made by newValue if no one holds one.
func (p *weakPool[T]) get(key string, newValue func(key string) *T) *T {
	p.mu.Lock()
	defer p.mu.Unlock()
	if v := p.m[key].Value(); v != nil {
		return v
	}
	if p.m == nil {
		p.m = make(map[string]weak.Pointer[T])
	}
	key = intern(key)
	v := newValue(key)
	p.m[key] = weak.Make(v)
	runtime.AddCleanup(v, p.forget, key)
	return v
}

// forget drops key's entry if its pointer is gone (a new one may have
// taken its place since).
func (p *weakPool[T]) forget(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m[key].Value() == nil {
		delete(p.m, key)
	}
}

// has reports whether key has an entry (tests).
func (p *weakPool[T]) has(key string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.m[key]
	return ok
}

// len is the number of entries (tests).
func (p *weakPool[T]) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.m)
}

var (
	trueVal  = true
	falseVal = false
)

// sharedBool maps a condition to one of two shared pointers (or nil): the
// decoder allocates one bool per condition per endpoint otherwise.
func sharedBool(b *bool) *bool {
	switch {
	case b == nil:
		return nil
	case *b:
		return &trueVal
	default:
		return &falseVal
	}
}

// intern returns the canonical copy of s, so that equal strings share one
// backing array. unique keeps no string alive that no one uses.
func intern(s string) string {
	if s == "" {
		return ""
	}
	return unique.Make(s).Value()
}

func internPtr(p *string) *string {
	if p == nil {
		return nil
	}
	s := intern(*p)
	return &s
}

func internMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[intern(k)] = intern(v)
	}
	return out
}

// SlimNode returns a copy of n holding only its name, resourceVersion and
// the labels edsync reads: zone, region and the sub-zone label. A cluster
// of thousands of Nodes then costs a few hundred bytes each, not their
// status (images, conditions), which is most of a Node.
func SlimNode(n *corev1.Node, subZoneLabel string) *corev1.Node {
	out := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, ResourceVersion: n.ResourceVersion}}
	for _, k := range []string{corev1.LabelTopologyZone, corev1.LabelTopologyRegion, subZoneLabel} {
		if v, ok := n.Labels[k]; ok && k != "" {
			if out.Labels == nil {
				out.Labels = map[string]string{}
			}
			out.Labels[intern(k)] = intern(v)
		}
	}
	return out
}

// SlimService returns a copy of s holding only its name, namespace,
// resourceVersion, edsync.io/ annotations, ports (name, port, protocol) and
// internalTrafficPolicy.
func SlimService(s *corev1.Service) *corev1.Service {
	out := &corev1.Service{ObjectMeta: metav1.ObjectMeta{
		Name: s.Name, Namespace: intern(s.Namespace), ResourceVersion: s.ResourceVersion,
	}}
	for k, v := range s.Annotations {
		if strings.HasPrefix(k, render.AnnotationPrefix) {
			if out.Annotations == nil {
				out.Annotations = map[string]string{}
			}
			out.Annotations[k] = v
		}
	}
	if len(s.Spec.Ports) > 0 {
		out.Spec.Ports = make([]corev1.ServicePort, len(s.Spec.Ports))
		for i, p := range s.Spec.Ports {
			out.Spec.Ports[i] = corev1.ServicePort{Name: intern(p.Name), Port: p.Port, Protocol: p.Protocol}
		}
	}
	if p := s.Spec.InternalTrafficPolicy; p != nil && *p == corev1.ServiceInternalTrafficPolicyLocal {
		local := corev1.ServiceInternalTrafficPolicyLocal
		out.Spec.InternalTrafficPolicy = &local
	}
	return out
}
