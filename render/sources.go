package render

import (
	"cmp"
	"fmt"
	"net/netip"
)

// LabelSource is the label the watch puts on each slice read from one of
// several sources (Kubernetes clusters): the source's name, which places
// its endpoints (Options.Sources).
const LabelSource = "edsync.io/source"

// ReasonAddressConflict is the Skip reason of an ip:port that two sources
// publish in one cluster: the preferred source's endpoint is kept (the
// lower priority, then the name), the other left out.
const ReasonAddressConflict = "address-conflict"

// Source is where a source's endpoints go in the clusters: Envoy fails over
// from one priority to the next by health, and spreads a priority's traffic
// over its localities by weight.
type Source struct {
	// Priority is the source's priority, 0 preferred; the topology levels
	// (--topology) sit inside it. The CLA's priorities stay contiguous.
	Priority int
	// Region is the locality region of its endpoints ("" keeps the Node's,
	// or Options.Region).
	Region string
	// Weight multiplies the weight of its localities (each weighs its
	// endpoint count); 0 means 1.
	Weight uint32
}

// levelsPerSource leaves room for the topology levels (0 to 2) inside each
// source priority.
const levelsPerSource = 4

// sourcePlace is a slice's source as prepare finds it: its name and place.
type sourcePlace struct {
	name string
	Source
	// local: the Nodes render knows (SetNode) and the local node are this
	// source's cluster's; another cluster's node of the same name is
	// another node.
	local bool
	// allowed is the source's allow-list (Options.SourceAddresses), nil
	// for Options.AllowedAddresses.
	allowed []netip.Prefix
}

// defaultSource places the slices of a single source, and of any slice
// without the source label.
var defaultSource = &sourcePlace{local: true}

// maxSourceWeight bounds a source's weight: a locality's weight is its
// endpoints times it, and Envoy wants a priority's sum within 32 bits.
const maxSourceWeight = 128

// sourceOf returns the place of a slice by its source label.
func (o *Options) sourceOf(labels map[string]string) *sourcePlace {
	name, ok := labels[LabelSource]
	if !ok || len(o.Sources) == 0 {
		return defaultSource
	}
	if p, ok := o.sources[name]; ok {
		return p
	}
	return defaultSource
}

// checkSources validates Options.Sources and indexes them.
func (o *Options) checkSources() error {
	for name := range o.SourceAddresses {
		if _, ok := o.Sources[name]; !ok {
			return fmt.Errorf("allowed addresses for %s, which is not a source", name)
		}
	}
	if len(o.Sources) == 0 {
		return nil
	}
	o.sources = make(map[string]*sourcePlace, len(o.Sources))
	for name, s := range o.Sources {
		if name == "" {
			return fmt.Errorf("a source without a name")
		}
		if s.Priority < 0 || s.Priority > 127 {
			return fmt.Errorf("source %s: priority %d: want 0 to 127", name, s.Priority)
		}
		if s.Weight > maxSourceWeight {
			return fmt.Errorf("source %s: weight %d: want 1 to %d", name, s.Weight, maxSourceWeight)
		}
		o.sources[name] = &sourcePlace{name: name, Source: s, local: name == o.NodesFrom, allowed: o.SourceAddresses[name]}
	}
	return nil
}

// allowList is the allow-list of the slices of source p.
func (o *Options) allowList(p *sourcePlace) []netip.Prefix {
	if p.allowed != nil {
		return p.allowed
	}
	return o.AllowedAddresses
}

// compareSources orders two sources by preference: the lower priority,
// then the name.
func compareSources(a, b *sourcePlace) int {
	return cmp.Or(cmp.Compare(a.Priority, b.Priority), cmp.Compare(a.name, b.name))
}

// SourceWeightsMatter says whether two sources of one priority have
// different weights: then their localities' weights are not their endpoint
// counts, and Envoy follows them only with locality_weighted_lb_config (it
// otherwise spreads a priority's traffic by host, which the weights of one
// source, or of sources weighted alike, already match).
func SourceWeightsMatter(sources map[string]Source) bool {
	weights := make(map[int]int) // priority -> the weight of its first source
	for name, s := range sources {
		w := (&sourcePlace{name: name, Source: s}).weight()
		if first, ok := weights[s.Priority]; ok && first != w {
			return true
		}
		weights[s.Priority] = w
	}
	return false
}

// weight is the source's locality weight factor.
func (s *sourcePlace) weight() int {
	if s.Weight == 0 {
		return 1
	}
	return int(s.Weight)
}
