package pipeline

import (
	"cmp"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/edsync/edsync/render"
	"github.com/edsync/edsync/watch"
)

// objectStore is what the pipeline needs of watch.Objects: the Services and
// Nodes changed since it last looked.
type objectStore interface {
	Take() watch.Changes
}

// topology is the pipeline's view of the Services and Nodes the sources
// read: what it handed to the renderer, so that the new renderer of a
// config reload is given the same before its full flush. It is owned by
// the pipeline's goroutine, the only one that talks to the renderer.
type topology struct {
	objects objectStore // nil: no Service or Node source
	// nodeName (--node-name) and nodeTopology (--node-topology) are fixed
	// at start, as the informers they need; localZone (--local-zone) may
	// change on a config reload.
	nodeName     string
	nodeTopology bool
	localZone    string

	services  map[render.ServiceKey]*render.ServiceInfo
	nodes     map[string]*render.NodeTopology // only with nodeTopology
	localNode *watch.Node                     // the --node-name Node, nil until seen
	zone      string                          // the local zone handed to the renderer
	warned    bool                            // the local zone's absence was logged
}

// objectsChanged wakes the pipeline: the sources call it from their
// goroutines after recording a change in Objects.
func (p *Pipeline) objectsChanged() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// takeObjects hands the Services and Nodes changed since the last call to
// the renderer and marks what must be rendered again: a changed Service,
// and every Service when a Node's region or sub-zone or the local zone
// changed what render sees (rare: Node labels seldom change).
func (p *Pipeline) takeObjects() {
	t := &p.topo
	if t.objects == nil {
		return
	}
	ch := t.objects.Take()
	if len(ch.Services) == 0 && len(ch.Nodes) == 0 {
		return
	}
	now := p.now()
	for _, key := range slices.SortedFunc(maps.Keys(ch.Services), compareServiceKeys) {
		info := ch.Services[key]
		if info == nil {
			delete(t.services, key)
		} else {
			t.services[key] = info
		}
		changed, skips := p.renderer.SetService(key, info)
		p.skipped(skips)
		if changed {
			p.log.Debug("Service settings changed", "service", key)
			p.coalescer.Mark(key, now)
		}
	}
	all := false
	for name, n := range ch.Nodes {
		if t.nodeTopology {
			nt := n.Topology()
			if nt == nil {
				delete(t.nodes, name)
			} else {
				t.nodes[name] = nt
			}
			if p.renderer.SetNode(name, nt) {
				p.log.Debug("Node topology changed", "node", name)
				all = true
			}
		}
		if name == t.nodeName && t.nodeName != "" {
			if n == nil && t.localNode != nil {
				p.log.Warn("the local Node is gone; no zone preference until it is back", "node", name)
			}
			t.localNode = n
		}
	}
	if p.setLocal() {
		all = true
	}
	if all {
		for _, key := range p.store.Services() {
			p.coalescer.Mark(key, now)
		}
	}
}

// setLocal gives the renderer the local zone (--local-zone, else the
// --node-name Node's zone label) and node, and reports whether that changed
// anything.
func (p *Pipeline) setLocal() bool {
	t := &p.topo
	zone, from := t.localZone, "--local-zone"
	if zone == "" && t.localNode != nil {
		zone, from = t.localNode.Zone, "Node "+t.nodeName
	}
	if zone != t.zone && zone != "" {
		p.log.Info("local zone", "zone", zone, "from", from)
		t.warned = false
	}
	t.zone = zone
	return p.renderer.SetLocal(zone, t.nodeName)
}

// warnNoLocalZone says, once per absence after the first sync, why there is
// no local zone when --node-name should give one.
func (p *Pipeline) warnNoLocalZone() {
	t := &p.topo
	if t.nodeName == "" || t.zone != "" || t.warned {
		return
	}
	t.warned = true
	if t.localNode == nil {
		p.log.Warn("the --node-name Node is not found; no zone preference until it appears (is it the Pod's spec.nodeName, and may edsync list nodes?)",
			"node", t.nodeName)
		return
	}
	p.log.Warn("the --node-name Node has no "+corev1.LabelTopologyZone+" label; no zone preference (set --local-zone)", "node", t.nodeName)
}

// feedRenderer gives a new renderer (a config reload's) what the old one
// knew of Services, Nodes and the local zone. Annotation problems were
// reported when their Service changed: they are not counted again.
func (p *Pipeline) feedRenderer() {
	t := &p.topo
	for key, info := range t.services {
		p.renderer.SetService(key, info)
	}
	for name, nt := range t.nodes {
		p.renderer.SetNode(name, nt)
	}
	p.setLocal()
}

// skipped logs and counts what render left out.
func (p *Pipeline) skipped(skips []render.Skip) {
	for _, s := range skips {
		p.log.Warn("skipped", "reason", s.Reason, "object", s.Object, "detail", s.Detail)
		p.metrics.Skipped(s.Reason)
	}
}

func compareServiceKeys(a, b render.ServiceKey) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}
