package render

import (
	"cmp"
	"hash/maphash"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
)

// A dual-stack Service has one slice per family, and each Pod an address in
// each. Published as they come, a Pod would be two hosts: twice the weight
// of a single-stack Pod, and hosts an IPv4-only Envoy cannot reach. With a
// merging Family, the entries of one targetRef in one port are paired into
// one host: the preferred family's address primary, the other in
// additional_addresses.
//
// The pairing is kept per port and updated with the slices that changed
// (update), and each Pod's merged host is made again only when one of its
// two entries' hosts changed: an event costs the pairs of its slice, and the
// other merged hosts stay the same values, which the writer finds again by
// identity. A port holds pairs only while it has entries of both families
// and its cluster merges, so a single-stack Service costs nothing more.

// pairsFor returns the port's pairing under the selection, nil if there is
// nothing to pair: made once, then kept up to date by update, and dropped
// when a family goes or the selection no longer merges.
func (ps *portState) pairsFor(sel *Selection) *pairing {
	if !sel.Family.merges() || ps.n4 == 0 || ps.n6 == 0 {
		ps.pairs = nil
		return nil
	}
	if ps.pairs == nil {
		ps.pairs = newPairing(ps.merged)
	}
	return ps.pairs
}

// pair counts the entries of the slices added and gone by family, and
// moves them in and out of the ports' pairings: the additions first, so that
// a Pod whose two slices were both replaced keeps its group and, if its
// entries' messages are the same, its merged message.
func (st *serviceState) pair(added, gone []*preparedSlice) {
	var changed []*podGroup
	changed = st.pairSlices(added, +1, changed)
	changed = st.pairSlices(gone, -1, changed)
	for _, g := range changed {
		g.settle()
	}
}

// pairSlices adds (sign +1) or removes (-1) the entries of the slices, and
// appends the groups to settle to changed.
func (st *serviceState) pairSlices(list []*preparedSlice, sign int, changed []*podGroup) []*podGroup {
	for _, p := range list {
		for i := range p.ports {
			pp := &p.ports[i]
			ps := st.port(pp.name)
			if p.v6 {
				ps.n6 += sign * len(pp.entries)
			} else {
				ps.n4 += sign * len(pp.entries)
			}
			if ps.pairs == nil {
				continue
			}
			for j := range pp.entries {
				var g *podGroup
				if sign > 0 {
					g = ps.pairs.add(&pp.entries[j])
				} else {
					g = ps.pairs.remove(&pp.entries[j])
				}
				if g != nil {
					changed = append(changed, g)
				}
			}
		}
	}
	return changed
}

// podKey identifies a targetRef, the object an endpoint belongs to (kind,
// namespace, name and uid: the uid tells a Pod from a successor of the
// same name, a StatefulSet's), by a 64-bit hash of it: 8 bytes per entry,
// where interning the four strings cost every endpoint of every Service
// (most of which have one address family) well over a hundred. The hash's
// seed is random per process, so that a collision, which would pair two
// endpoints of one Service port, cannot be crafted.
type podKey uint64

// noPod is the pod of an endpoint without a targetRef.
const noPod podKey = 0

var podSeed = maphash.MakeSeed()

// podKeyOf hashes a targetRef's kind, namespace, name and uid.
func podKeyOf(kind, namespace, name, uid string) podKey {
	var h maphash.Hash
	h.SetSeed(podSeed)
	for _, s := range []string{kind, namespace, name, uid} {
		h.WriteString(s)
		h.WriteByte(0) // no field holds a NUL: the fields cannot run into each other
	}
	if k := podKey(h.Sum64()); k != noPod {
		return k
	}
	return 1
}

// pairing holds a port's entries by targetRef.
type pairing struct {
	groups map[podKey]*podGroup
}

// podGroup is every entry of one targetRef in one port: usually one per
// family, more while an endpoint is in two slices of its family.
type podGroup struct {
	entries []*entry
	// best4 and best6 are the entries a merged host is made of, the
	// healthiest of each family; both nil unless the group merges: an
	// address in each family, and only one address in each (several
	// addresses of a family are not a Pod's, whose IP per family is fixed,
	// and are left as hosts of their own).
	best4, best6 *entry
	// host is the merged host last made, of the hosts in it.
	host *mergedHost
}

// newPairing pairs the entries of merged.
func newPairing(merged []*entry) *pairing {
	pr := &pairing{groups: make(map[podKey]*podGroup)}
	for _, e := range merged {
		pr.add(e)
	}
	for _, g := range pr.groups {
		g.settle()
	}
	return pr
}

// add puts e in its group, which the caller settles.
func (pr *pairing) add(e *entry) *podGroup {
	if e.pod == noPod {
		return nil
	}
	g := pr.groups[e.pod]
	if g == nil {
		g = &podGroup{}
		pr.groups[e.pod] = g
	}
	g.entries = append(g.entries, e)
	return g
}

// remove takes e out of its group, which the caller settles unless remove
// returns nil: the group had no other entry and is gone.
func (pr *pairing) remove(e *entry) *podGroup {
	if e.pod == noPod {
		return nil
	}
	g := pr.groups[e.pod]
	if g == nil {
		return nil
	}
	g.entries = slices.DeleteFunc(g.entries, func(x *entry) bool { return x == e })
	if len(g.entries) == 0 {
		delete(pr.groups, e.pod)
		return nil
	}
	return g
}

// settle picks the entries of the merged host after the group changed.
func (g *podGroup) settle() {
	g.best4, g.best6 = nil, nil
	var ambiguous bool
	for _, e := range g.entries {
		best := &g.best4
		if e.addr.Is6() {
			best = &g.best6
		}
		switch {
		case *best == nil:
			*best = e
		case (*best).addr != e.addr:
			ambiguous = true
		case betterCopy(e, *best):
			*best = e
		}
	}
	if ambiguous || g.best4 == nil || g.best6 == nil {
		g.best4, g.best6 = nil, nil
	}
}

// betterCopy orders copies of one address: healthiest first, then as merged
// lists are sorted, so that the choice does not depend on the order of events.
func betterCopy(a, b *entry) bool {
	return cmp.Or(cmp.Compare(a.health, b.health), compareEntries(a, b)) < 0
}

// pair returns the group of e's merged host, nil if e is not part of one.
func (pr *pairing) pair(e *entry) *podGroup {
	if e.pod == noPod {
		return nil
	}
	if g := pr.groups[e.pod]; g != nil && g.best4 != nil {
		return g
	}
	return nil
}

// pick returns the primary and secondary entry of the group's merged host.
func (g *podGroup) pick(f Family) (pri, sec *entry) {
	if f == FamilyIPv6First {
		return g.best6, g.best4
	}
	return g.best4, g.best6
}

// mergedHost is a dual-stack Pod's host: the primary's address, hostname,
// health check and metadata, the secondary's address as its additional
// address, and the lesser health of the two. Like a host it is immutable and
// the same pointer while its two hosts are the same: a host whose entries
// change gets a new one.
type mergedHost struct {
	pri, sec *host
}

// HealthStatus is the health_status of the merged message.
func (m *mergedHost) HealthStatus() corev3.HealthStatus {
	return min(m.pri.health, m.sec.health).status()
}

// LbEndpoint builds the merged message.
func (m *mergedHost) LbEndpoint() *endpointv3.LbEndpoint {
	pri, sec := new(lbMessages), new(lbMessages)
	lb := pri.build(m.pri)
	sec.build(m.sec)
	pri.ep.AdditionalAddresses = []*endpointv3.Endpoint_AdditionalAddress{{Address: &sec.addr}}
	lb.HealthStatus = m.HealthStatus()
	return lb
}

// merged returns the group's merged host of pri and sec, and its health.
func (g *podGroup) merged(pri, sec *entry) (Host, health) {
	if g.host != nil && g.host.pri == pri.h && g.host.sec == sec.h {
		return g.host, min(pri.health, sec.health)
	}
	m := &mergedHost{pri: pri.h, sec: sec.h}
	// Made of two messages that passed ValidateAll, it passes too; checked
	// all the same, as everything render hands on is. The primary alone
	// is the fallback.
	if err := m.LbEndpoint().ValidateAll(); err != nil {
		return pri.h, pri.health
	}
	g.host = m
	return m, min(pri.health, sec.health)
}
