package render

import (
	"cmp"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"unique"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// hostWalk goes through a port's merged entries in order and says what
// each publishes.
type hostWalk struct {
	sel   *Selection
	pairs *pairing // nil: every entry is a host of its own
	last  *entry   // the (primary) entry of the host published last
	// conflicts describes the ip:ports two sources hold (only when
	// conflicts is wanted); seen is the entry looked at last, published or
	// not, and reported the last ip:port reported.
	conflicts *[]string
	seen      *entry
	reported  netip.AddrPort
}

// next reports whether e publishes a host, with the host's health and, for
// a merged host, its group and the entry of its additional address. e
// publishes nothing when the selection drops it, when a host of its ip:port
// came before (the first kept copy, the healthiest, wins), or when it is the
// secondary entry, or a lesser copy of the primary, of a merged host. A
// merged host has the healthier of its two entries' conditions: the slices
// of a Pod's two families say the same but are updated one after the other,
// and in between the host is published if either address would be.
func (w *hostWalk) next(e *entry) (g *podGroup, sec *entry, h health, ok bool) {
	h = e.health
	if w.conflicts != nil {
		// Copies of an ip:port are next to each other, the preferred
		// source's first: any two from different sources are a conflict,
		// whether or not the selection keeps them.
		if s := w.seen; s != nil && s.addr == e.addr && s.port == e.port && s.src.source != e.src.source {
			if ap := netip.AddrPortFrom(e.addr, uint16(e.port)); ap != w.reported {
				w.reported = ap
				*w.conflicts = append(*w.conflicts, fmt.Sprintf("%s in sources %s and %s: one host, the preferred source's copy (%s's) unless it is left out",
					ap, s.src.source.name, e.src.source.name, s.src.source.name))
			}
		}
		w.seen = e
	}
	if w.pairs != nil {
		if g = w.pairs.pair(e); g != nil {
			var pri *entry
			if pri, sec = g.pick(w.sel.Family); e != pri {
				return nil, nil, 0, false
			}
			h = min(h, sec.health)
		}
	}
	if !w.sel.keeps(e, h) {
		return nil, nil, 0, false
	}
	if w.last != nil && w.last.addr == e.addr && w.last.port == e.port {
		return nil, nil, 0, false
	}
	w.last = e
	return g, sec, h, true
}

// slot is an entry's place in assemble: its group (-1: not published) and
// its host.
type slot struct {
	host  Host
	group int32
}

// assemble turns one port's merged entries into a CLA: the hosts the walk
// publishes (one per ip:port, one per dual-stack Pod when pairs is not nil,
// sorted by their primary address), grouped by priority level and locality,
// each group weighted by its endpoint count; groups sorted by priority then
// locality, endpoints by ip then port. The CLA's localities have no
// lb_endpoints: hosts[i] are locality i's. counts counts the hosts by health.
func assemble(name string, merged []*entry, sel *Selection, pairs *pairing, pl *placement, scratch *[]slot) (cla *endpointv3.ClusterLoadAssignment, hosts [][]Host, counts HealthCounts, conflicts []string) {
	// Two passes: place each entry and count each group's endpoints, then
	// fill one backing array cut per group, so a big Service costs one
	// allocation, not a growing slice per group. The first pass notes each
	// entry's group and host in scratch (kept by the Renderer between
	// calls): the second pass then reads no entry a second time.
	type bucket struct {
		level int
		loc   localityKey
		n     int // endpoints
		w     int // weight: endpoints, times their source's weight
		hosts []Host
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
	hinted := pl.mode == TopologyHints && pl.hinted(merged, sel, pairs)
	group := (*scratch)[:0]
	w := hostWalk{sel: sel, pairs: pairs}
	if pl.sources {
		w.conflicts = &conflicts
	}
	var (
		loc     localityKey
		lastAt  unique.Handle[place]
		lastSrc *sourcePlace
		placed  bool
	)
	cur := int32(-1)
	for _, e := range merged {
		g, sec, h, ok := w.next(e)
		if !ok {
			group = append(group, slot{group: -1})
			continue
		}
		var host Host = e.h
		if g != nil {
			host, h = g.merged(e, sec)
		}
		counts.add(h)
		// One source: no entry's slice is read (a pointer chase per
		// endpoint, a sizeable part of a big Service's render).
		src := defaultSource
		if pl.sources {
			src = e.src.source
		}
		level := src.Priority * levelsPerSource
		if pl.mode != TopologyOff {
			level += pl.level(e, src, hinted)
		}
		// Pod IPs come from per-Node ranges, so in IP order an entry is
		// mostly on the Node of the one before: its locality then needs
		// no lookup.
		if !placed || e.at != lastAt || src != lastSrc {
			loc, lastAt, lastSrc, placed = pl.locality(e, src), e.at, src, true
			if src.Region != "" {
				loc.region = src.Region
			}
			cur = find(cur, level, &loc)
		} else if level != buckets[cur].level {
			cur = find(cur, level, &loc)
		}
		buckets[cur].n++
		buckets[cur].w += src.weight()
		group = append(group, slot{host: host, group: cur})
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
	backing := make([]Host, 0, total)
	for _, b := range buckets {
		b.hosts = backing[len(backing) : len(backing) : len(backing)+b.n]
		backing = backing[:len(backing)+b.n]
	}
	for _, g := range group {
		if g.group >= 0 {
			b := byIndex[g.group]
			b.hosts = append(b.hosts, g.host)
		}
	}
	clear(group) // keeps no host alive until the next call

	cla = &endpointv3.ClusterLoadAssignment{ClusterName: name}
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
			Priority:            priority,
			LoadBalancingWeight: wrapperspb.UInt32(uint32(min(b.w, math.MaxInt32))),
		}
		if b.loc != (localityKey{}) {
			lle.Locality = &corev3.Locality{Region: b.loc.region, Zone: b.loc.zone, SubZone: b.loc.subZone}
		}
		cla.Endpoints = append(cla.Endpoints, lle)
		hosts = append(hosts, b.hosts)
	}
	return cla, hosts, counts, conflicts
}
