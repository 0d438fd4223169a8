package render

import (
	"cmp"
	"slices"
	"unique"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// assemble turns one port's merged entries into a CLA: the entries the
// selection keeps, one endpoint per ip:port (the healthiest kept copy, which
// the order puts first), grouped by priority level and locality, each group
// weighted by its endpoint count; groups sorted by priority then locality,
// endpoints by ip then port.
func assemble(name string, merged []*entry, sel *Selection, pl *placement, scratch *[]int32) *endpointv3.ClusterLoadAssignment {
	// Two passes: place each entry and count each group's endpoints, then
	// fill one backing array cut per group, so a big Service costs one
	// allocation, not a growing slice per group. The first pass notes each
	// entry's group in scratch (kept by the Renderer between calls): the
	// second pass then reads no entry, whose message sits elsewhere in the
	// heap, a second time.
	type bucket struct {
		level int
		loc   localityKey
		n     int
		lbs   []*endpointv3.LbEndpoint
	}
	var buckets []*bucket // few groups: a linear search beats a map
	// find returns the group of level and loc, added if new. Most entries
	// are in the group of the entry before them; the zone, compared first,
	// tells most groups apart.
	find := func(cur int32, level int, loc *localityKey) int32 {
		match := func(b *bucket) bool { return b.loc.zone == loc.zone && b.level == level && b.loc == *loc }
		if cur >= 0 && match(buckets[cur]) {
			return cur
		}
		for i, b := range buckets {
			if match(b) {
				return int32(i)
			}
		}
		buckets = append(buckets, &bucket{level: level, loc: *loc})
		return int32(len(buckets) - 1)
	}
	hinted := pl.mode == TopologyHints && pl.hinted(merged, sel)
	group := (*scratch)[:0]
	var last *entry
	var (
		loc      localityKey
		lastNode unique.Handle[string]
		placed   bool
	)
	cur := int32(-1)
	for _, e := range merged {
		if !published(last, e, sel) {
			group = append(group, -1)
			continue
		}
		last = e
		level := 0
		if pl.mode != TopologyOff {
			level = pl.level(e, hinted)
		}
		// Pod IPs come from per-Node ranges, so in IP order an entry is
		// mostly on the Node of the one before: its locality then needs
		// no lookup.
		if !placed || e.node != lastNode || e.zone != loc.zone {
			loc, lastNode, placed = pl.locality(e), e.node, true
		}
		cur = find(cur, level, &loc)
		buckets[cur].n++
		group = append(group, cur)
	}
	*scratch = group
	byIndex := slices.Clone(buckets)
	slices.SortFunc(buckets, func(a, b *bucket) int {
		return cmp.Or(cmp.Compare(a.level, b.level), a.loc.compare(b.loc))
	})
	total := 0
	for _, b := range buckets {
		total += b.n
	}
	backing := make([]*endpointv3.LbEndpoint, 0, total)
	for _, b := range buckets {
		b.lbs = backing[len(backing) : len(backing) : len(backing)+b.n]
		backing = backing[:len(backing)+b.n]
	}
	for i, g := range group {
		if g >= 0 {
			b := byIndex[g]
			b.lbs = append(b.lbs, &merged[i].m.lb)
		}
	}

	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	if pl.overprovisioning > 0 {
		cla.Policy = &endpointv3.ClusterLoadAssignment_Policy{OverprovisioningFactor: wrapperspb.UInt32(pl.overprovisioning)}
	}
	// Levels with no endpoint are not emitted: priorities count from 0
	// without gaps (Envoy's rule), over the levels present.
	priority, prevLevel := uint32(0), -1
	for _, b := range buckets {
		if prevLevel >= 0 && b.level != prevLevel {
			priority++
		}
		prevLevel = b.level
		lle := &endpointv3.LocalityLbEndpoints{
			LbEndpoints:         b.lbs,
			Priority:            priority,
			LoadBalancingWeight: wrapperspb.UInt32(uint32(b.n)),
		}
		if b.loc != (localityKey{}) {
			lle.Locality = &corev3.Locality{Region: b.loc.region, Zone: b.loc.zone, SubZone: b.loc.subZone}
		}
		cla.Endpoints = append(cla.Endpoints, lle)
	}
	return cla
}
