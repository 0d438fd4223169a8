package render

import "fmt"

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
)

// ParseTopology reads "off", "zone" or "hints".
func ParseTopology(s string) (Topology, error) {
	switch s {
	case "off":
		return TopologyOff, nil
	case "zone":
		return TopologyZone, nil
	case "hints":
		return TopologyHints, nil
	}
	return 0, fmt.Errorf("invalid topology mode %q: want off, zone or hints", s)
}

func (t Topology) String() string {
	switch t {
	case TopologyZone:
		return "zone"
	case TopologyHints:
		return "hints"
	}
	return "off"
}

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
	old, had := r.nodes[name]
	switch {
	case t == nil && !had:
		return false
	case t == nil:
		delete(r.nodes, name)
		return true
	case had && old == *t:
		return false
	}
	if r.nodes == nil {
		r.nodes = make(map[string]NodeTopology)
	}
	r.nodes[name] = *t
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
