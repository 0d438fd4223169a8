package watch

import (
	"maps"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"

	"github.com/edsync/edsync/render"
)

// DefaultSubZoneLabel is the Node label read as a locality's sub-zone by
// default: Istio's, which Envoy-based meshes already use for this purpose.
// Kubernetes defines no sub-zone label of its own.
const DefaultSubZoneLabel = "topology.istio.io/subzone"

// Node is what edsync uses of a Node: its name and topology labels.
type Node struct {
	Name    string
	Zone    string // topology.kubernetes.io/zone
	Region  string // topology.kubernetes.io/region
	SubZone string // the sub-zone label (NodeOptions.SubZoneLabel)
}

// Topology is what render uses of the Node, nil when the Node gives neither
// region nor sub-zone: such a Node changes nothing rendered, so a cluster
// without those labels never re-renders for a Node event.
func (n *Node) Topology() *render.NodeTopology {
	if n == nil || (n.Region == "" && n.SubZone == "") {
		return nil
	}
	return &render.NodeTopology{Region: n.Region, SubZone: n.SubZone}
}

// NodeOptions says which Nodes a source reads. With neither All nor Name,
// it reads none.
type NodeOptions struct {
	// All reads every Node (--node-topology), for the region and sub-zone
	// of every endpoint's locality.
	All bool
	// Name is the Node edsync's Envoy runs on (--node-name), whose zone is
	// the local zone. Without All, only this Node is read.
	Name string
	// SubZoneLabel is the Node label read as the sub-zone; empty means
	// DefaultSubZoneLabel.
	SubZoneLabel string
}

func (o NodeOptions) enabled() bool { return o.All || o.Name != "" }

func (o NodeOptions) wants(name string) bool { return o.All || (o.Name != "" && name == o.Name) }

func (o NodeOptions) subZoneLabel() string {
	if o.SubZoneLabel == "" {
		return DefaultSubZoneLabel
	}
	return o.SubZoneLabel
}

// nodeOf reads a Node's topology labels.
func (o NodeOptions) nodeOf(n *corev1.Node) Node {
	return Node{
		Name:    n.Name,
		Zone:    n.Labels[corev1.LabelTopologyZone],
		Region:  n.Labels[corev1.LabelTopologyRegion],
		SubZone: n.Labels[o.subZoneLabel()],
	}
}

// serviceInfoOf is what render uses of a Service: its edsync.io/ annotations,
// its ports and its internalTrafficPolicy.
func serviceInfoOf(s *corev1.Service) *render.ServiceInfo {
	info := &render.ServiceInfo{}
	for k, v := range s.Annotations {
		if strings.HasPrefix(k, render.AnnotationPrefix) {
			if info.Annotations == nil {
				info.Annotations = map[string]string{}
			}
			info.Annotations[k] = v
		}
	}
	for _, p := range s.Spec.Ports {
		info.Ports = append(info.Ports, render.ServicePort{Name: p.Name, Port: p.Port, Protocol: p.Protocol})
	}
	if p := s.Spec.InternalTrafficPolicy; p != nil {
		info.InternalTrafficPolicy = *p
	}
	return info
}

func sameServiceInfo(a, b *render.ServiceInfo) bool {
	if a == nil || b == nil {
		return a == b
	}
	return maps.Equal(a.Annotations, b.Annotations) && slices.Equal(a.Ports, b.Ports) &&
		a.InternalTrafficPolicy == b.InternalTrafficPolicy
}

// Objects holds the Services and Nodes the sources read, as plain values,
// and which of them changed since the pipeline last took them. Sources
// write it from their goroutines; the pipeline's goroutine takes the
// changes and hands them to the renderer, which is not safe for concurrent
// use. It is safe for concurrent use.
type Objects struct {
	notify func()

	mu       sync.Mutex
	services map[render.ServiceKey]*render.ServiceInfo
	nodes    map[string]Node
	dirtySvc map[render.ServiceKey]struct{}
	dirtyNod map[string]struct{}
}

// NewObjects returns an empty Objects that calls notify (may be nil),
// outside its lock, after each change: it must only wake the pipeline.
func NewObjects(notify func()) *Objects {
	if notify == nil {
		notify = func() {}
	}
	return &Objects{
		notify:   notify,
		services: map[render.ServiceKey]*render.ServiceInfo{},
		nodes:    map[string]Node{},
		dirtySvc: map[render.ServiceKey]struct{}{},
		dirtyNod: map[string]struct{}{},
	}
}

// SetService records a Service's info, or its removal (nil). The same info
// again records nothing: a Service update that touches nothing render uses
// (its status, selector, other annotations) costs no render.
func (o *Objects) SetService(key render.ServiceKey, info *render.ServiceInfo) {
	o.mu.Lock()
	old, had := o.services[key]
	if (!had && info == nil) || (had && sameServiceInfo(old, info)) {
		o.mu.Unlock()
		return
	}
	if info == nil {
		delete(o.services, key)
	} else {
		o.services[key] = info
	}
	o.dirtySvc[key] = struct{}{}
	o.mu.Unlock()
	o.notify()
}

// SetNode records a Node; DeleteNode its removal. A Node whose labels
// edsync reads did not change records nothing: Nodes update their status
// often.
func (o *Objects) SetNode(n Node) {
	o.mu.Lock()
	if old, had := o.nodes[n.Name]; had && old == n {
		o.mu.Unlock()
		return
	}
	o.nodes[n.Name] = n
	o.dirtyNod[n.Name] = struct{}{}
	o.mu.Unlock()
	o.notify()
}

// DeleteNode records that the Node is gone.
func (o *Objects) DeleteNode(name string) {
	o.mu.Lock()
	if _, had := o.nodes[name]; !had {
		o.mu.Unlock()
		return
	}
	delete(o.nodes, name)
	o.dirtyNod[name] = struct{}{}
	o.mu.Unlock()
	o.notify()
}

// Changes are the Services and Nodes changed since the last Take, with
// their current values: nil for one that is gone.
type Changes struct {
	Services map[render.ServiceKey]*render.ServiceInfo
	Nodes    map[string]*Node
}

// Take returns the changes since the last Take and forgets them.
func (o *Objects) Take() Changes {
	o.mu.Lock()
	defer o.mu.Unlock()
	var c Changes
	if len(o.dirtySvc) > 0 {
		c.Services = make(map[render.ServiceKey]*render.ServiceInfo, len(o.dirtySvc))
		for key := range o.dirtySvc {
			c.Services[key] = o.services[key]
		}
		clear(o.dirtySvc)
	}
	if len(o.dirtyNod) > 0 {
		c.Nodes = make(map[string]*Node, len(o.dirtyNod))
		for name := range o.dirtyNod {
			var np *Node
			if n, ok := o.nodes[name]; ok {
				np = &n
			}
			c.Nodes[name] = np
		}
		clear(o.dirtyNod)
	}
	return c
}

// Node returns the Node of that name, if known.
func (o *Objects) Node(name string) (Node, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n, ok := o.nodes[name]
	return n, ok
}

// Service returns the Service's info, nil if unknown.
func (o *Objects) Service(key render.ServiceKey) *render.ServiceInfo {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.services[key]
}

// Len returns the number of Services and Nodes held.
func (o *Objects) Len() (services, nodes int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.services), len(o.nodes)
}
