package render

import (
	"cmp"
	"fmt"
	"log/slog"
	"slices"
	"unique"

	discoveryv1 "k8s.io/api/discovery/v1"
)

// Topology is how a cluster's endpoints are spread over Envoy priorities, so
// that Envoy keeps traffic near and fails over by health (through the
// overprovisioning factor) the way kube-proxy honours topology.
type Topology int

const (
	// TopologyOff puts every endpoint at priority 0.
	TopologyOff Topology = iota
	// TopologyZone puts the endpoints in the local zone at priority 0 and
	// the rest at priority 1.
	TopologyZone
	// TopologyHints follows the EndpointSlice controller's hints: endpoints
	// hinted for the local node, then for the local zone, then the rest.
	// If any endpoint of the Service has no zone hint, there is no
	// preference, as in kube-proxy.
	TopologyHints
	// TopologyZoneAware leaves Envoy's zone-aware routing to spread the
	// traffic: every endpoint at priority 0 in its zone's locality, as off
	// does, and the CDS file's clusters get zone_aware_lb_config. Envoy
	// needs its own locality and a local cluster as well (README).
	TopologyZoneAware
)

// ParseTopology reads "off", "zone", "hints" or "zone-aware".
func ParseTopology(s string) (Topology, error) {
	switch s {
	case "off":
		return TopologyOff, nil
	case "zone":
		return TopologyZone, nil
	case "hints":
		return TopologyHints, nil
	case "zone-aware":
		return TopologyZoneAware, nil
	}
	return 0, fmt.Errorf("invalid topology mode %q: want off, zone, hints or zone-aware", s)
}

func (t Topology) String() string {
	switch t {
	case TopologyZone:
		return "zone"
	case TopologyHints:
		return "hints"
	case TopologyZoneAware:
		return "zone-aware"
	}
	return "off"
}

// LogValue logs the mode by name in every handler (JSON's would otherwise
// print its number).
func (t Topology) LogValue() slog.Value { return slog.StringValue(t.String()) }

// NodeTopology is what render uses of a Node: the region and sub-zone of
// the localities of the endpoints on it (the zone comes from the endpoint).
type NodeTopology struct {
	Region  string
	SubZone string
}

// SetNode records the topology of a Node, or forgets it (nil). It reports
// whether that changes anything render knows; if so the caller renders every
// Service again (Node labels rarely change, so render keeps no index of the
// endpoints per Node).
func (r *Renderer) SetNode(name string, t *NodeTopology) bool {
	key := unique.Make(name)
	old, had := r.nodes[key]
	switch {
	case t == nil && !had:
		return false
	case t == nil:
		delete(r.nodes, key)
		return true
	case had && old == *t:
		return false
	}
	if r.nodes == nil {
		r.nodes = make(map[unique.Handle[string]]NodeTopology)
	}
	r.nodes[key] = *t
	return true
}

// SetLocal sets the zone and node of the Envoy that reads the files, which
// the topology modes prefer. It reports whether they changed; if so the
// caller renders every Service again.
func (r *Renderer) SetLocal(zone, node string) bool {
	if r.opts.LocalZone == zone && r.opts.LocalNode == node {
		return false
	}
	r.opts.LocalZone, r.opts.LocalNode = zone, node
	return true
}

// placement is what assemble needs to place a Service's endpoints:
// priority levels and localities.
type placement struct {
	mode                 Topology
	localZone, localNode string
	nodes                map[unique.Handle[string]]NodeTopology
	region               string
	overprovisioning     uint32 // 0: Envoy's default
	sources              bool   // several sources: report their conflicts
}

func (r *Renderer) placement(set *serviceSettings) *placement {
	pl := &placement{mode: r.opts.Topology, localZone: r.opts.LocalZone, localNode: r.opts.LocalNode,
		nodes: r.nodes, region: r.opts.Region, sources: len(r.opts.Sources) > 0}
	if set != nil {
		if set.hasTopology {
			pl.mode = set.topology
		}
		pl.overprovisioning = set.overprovisioning
	}
	return pl
}

// hinted reports whether the hints can be followed: every healthy endpoint
// published has a zone hint (kube-proxy's rule: one endpoint without hints
// means the controller could not assign them, and none are used), and the
// local zone or node is known. Only the copies published count: a stale
// copy of an ip:port in another slice (while slices are rewritten) does not.
// A merged host goes by its primary entry's hints.
func (pl *placement) hinted(merged []*entry, sel *Selection, pairs *pairing) bool {
	if pl.localZone == "" && pl.localNode == "" {
		return false
	}
	w := hostWalk{sel: sel, pairs: pairs}
	for _, e := range merged {
		_, _, h, ok := w.next(e)
		if ok && h == healthy && (e.hints == nil || len(e.hints.ForZones) == 0) {
			return false
		}
	}
	return true
}

// level is the entry's priority level before levels with no endpoints are
// dropped: 0 nearest.
func (pl *placement) level(e *entry, src *sourcePlace, hinted bool) int {
	switch pl.mode {
	case TopologyZone:
		if pl.localZone != "" && e.zone() != pl.localZone {
			return 1
		}
	case TopologyHints:
		if !hinted {
			return 0
		}
		if e.hints == nil { // not healthy: hinted did not require hints
			return 2
		}
		if pl.localNode != "" && src.local && slices.ContainsFunc(e.hints.ForNodes, func(n discoveryv1.ForNode) bool { return n.Name == pl.localNode }) {
			return 0
		}
		if pl.localZone != "" && slices.ContainsFunc(e.hints.ForZones, func(z discoveryv1.ForZone) bool { return z.Name == pl.localZone }) {
			return 1
		}
		return 2
	}
	return 0
}

// localityKey is an Envoy locality: the zone from the endpoint, the region
// and sub-zone from its Node, else the fixed region.
type localityKey struct{ region, zone, subZone string }

func (l localityKey) compare(o localityKey) int {
	return cmp.Or(cmp.Compare(l.region, o.region), cmp.Compare(l.zone, o.zone), cmp.Compare(l.subZone, o.subZone))
}

func (pl *placement) locality(e *entry, src *sourcePlace) localityKey {
	at := e.at.Value()
	loc := localityKey{region: pl.region, zone: at.zone}
	if len(pl.nodes) == 0 || at.node == noNode || !src.local {
		return loc
	}
	if t, ok := pl.nodes[at.node]; ok {
		if t.Region != "" {
			loc.region = t.Region
		}
		loc.subZone = t.SubZone
	}
	return loc
}
