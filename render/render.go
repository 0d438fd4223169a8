package render

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"text/template"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Cluster is one rendered ClusterLoadAssignment and the Service it came from.
type Cluster struct {
	Name    string
	Service ServiceKey
	CLA     *endpointv3.ClusterLoadAssignment
}

// Renderer renders Services one at a time. It remembers, per Service, the
// slices it has prepared and the clusters it last published, so that a Service
// that lost a port or all its slices gets CLAs with no endpoints, and a slice
// that did not change is not converted again. It is not safe for concurrent
// use: the pipeline's one goroutine owns it.
type Renderer struct {
	opts     Options
	tmpl     *template.Template
	services map[ServiceKey]*serviceState
	// owners maps a cluster name to the Service publishing it, so that a
	// template giving two Services the same name cannot make them overwrite
	// each other's file: the first one keeps it.
	owners map[string]ServiceKey
}

type serviceState struct {
	// prepared is keyed by object identity: informers and the folder source
	// hand over a new object for every change and never mutate one.
	prepared map[*discoveryv1.EndpointSlice]*preparedSlice
	names    map[string]string // port name -> cluster name
	clusters []string          // names published by the last render, sorted
}

// New checks the options and returns a Renderer.
func New(opts Options) (*Renderer, error) {
	t, err := ParseClusterNameTemplate(opts.ClusterNameTemplate)
	if err != nil {
		return nil, err
	}
	return &Renderer{
		opts:     opts,
		tmpl:     t,
		services: make(map[ServiceKey]*serviceState),
		owners:   make(map[string]ServiceKey),
	}, nil
}

// Service renders every cluster of one Service from its current slices, in
// name order. Clusters the Service published before and no longer has come
// back with no endpoints, which is how Envoy is told to drop their hosts. The
// skips name what was left out; each is reported once per slice version.
func (r *Renderer) Service(key ServiceKey, current []*discoveryv1.EndpointSlice) ([]Cluster, []Skip) {
	st := r.services[key]
	if st == nil {
		st = &serviceState{names: make(map[string]string)}
		r.services[key] = st
	}
	var skips []Skip

	prepared := make(map[*discoveryv1.EndpointSlice]*preparedSlice, len(current))
	byPort := make(map[string][][]entry)
	for _, s := range current {
		p, ok := st.prepared[s]
		if !ok {
			p = prepare(s, &r.opts)
			skips = append(skips, p.skips...)
		}
		prepared[s] = p
		for i := range p.ports {
			pp := &p.ports[i]
			byPort[pp.name] = append(byPort[pp.name], pp.entries)
		}
	}
	st.prepared = prepared

	ports := make([]string, 0, len(byPort))
	for name := range byPort {
		ports = append(ports, name)
	}
	slices.Sort(ports)

	var out []Cluster
	published := make([]string, 0, len(ports))
	for _, port := range ports {
		name, err := r.clusterName(key, st, port)
		if err != nil {
			skips = append(skips, Skip{Reason: ReasonNameConflict, Object: key.String(), Detail: err.Error()})
			continue
		}
		if slices.Contains(published, name) {
			skips = append(skips, Skip{Reason: ReasonNameConflict, Object: name,
				Detail: fmt.Sprintf("port %q of Service %s: cluster name already used by another port of the Service", port, key)})
			continue
		}
		if owner, taken := r.owners[name]; taken && owner != key {
			skips = append(skips, Skip{Reason: ReasonNameConflict, Object: name,
				Detail: fmt.Sprintf("port %q of Service %s: cluster name already published by Service %s", port, key, owner)})
			continue
		}
		r.owners[name] = key
		published = append(published, name)
		cla := assemble(name, byPort[port])
		// The last guard before anything leaves render: Envoy rejects what
		// fails its validation rules, so never hand such a CLA on.
		if err := cla.ValidateAll(); err != nil {
			skips = append(skips, Skip{Reason: ReasonInvalidCLA, Object: name, Detail: err.Error()})
			continue
		}
		out = append(out, Cluster{Name: name, Service: key, CLA: cla})
	}
	slices.Sort(published)

	for _, name := range st.clusters {
		if _, still := slices.BinarySearch(published, name); !still {
			out = append(out, Cluster{Name: name, Service: key, CLA: &endpointv3.ClusterLoadAssignment{ClusterName: name}})
			delete(r.owners, name)
		}
	}
	st.clusters = published
	if len(current) == 0 {
		delete(r.services, key)
	}
	slices.SortFunc(out, func(a, b Cluster) int { return cmp.Compare(a.Name, b.Name) })
	return out, skips
}

// Forget drops what the Renderer remembers of a Service without publishing
// anything: for a Service that is no longer selected.
func (r *Renderer) Forget(key ServiceKey) {
	if st := r.services[key]; st != nil {
		for _, name := range st.clusters {
			delete(r.owners, name)
		}
		delete(r.services, key)
	}
}

func (r *Renderer) clusterName(key ServiceKey, st *serviceState, port string) (string, error) {
	if name, ok := st.names[port]; ok {
		return name, nil
	}
	var b strings.Builder
	if err := r.tmpl.Execute(&b, NameData{Namespace: key.Namespace, Service: key.Name, Port: port}); err != nil {
		return "", fmt.Errorf("cluster name template for port %q: %w", port, err)
	}
	name := b.String()
	if name == "" {
		return "", fmt.Errorf("cluster name template gives an empty name for port %q", port)
	}
	st.names[port] = name
	return name, nil
}

// assemble merges the sorted entry lists of one port from all slices into a
// CLA: one endpoint per ip:port (the healthiest copy, as the lists sort it
// first), grouped into localities by zone, localities sorted by zone and
// endpoints by ip then port.
func assemble(name string, lists [][]entry) *endpointv3.ClusterLoadAssignment {
	byZone := make(map[string][]*endpointv3.LbEndpoint)
	var last *entry
	mergeEntries(lists, func(e *entry) {
		if last != nil && last.addr == e.addr && last.port == e.port {
			return
		}
		last = e
		byZone[e.zone] = append(byZone[e.zone], e.lb)
	})
	zones := make([]string, 0, len(byZone))
	for z := range byZone {
		zones = append(zones, z)
	}
	slices.Sort(zones)

	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	for _, z := range zones {
		lle := &endpointv3.LocalityLbEndpoints{LbEndpoints: byZone[z]}
		if z != "" {
			lle.Locality = &corev3.Locality{Zone: z}
		}
		cla.Endpoints = append(cla.Endpoints, lle)
	}
	return cla
}

// mergeEntries calls fn for every entry of the sorted lists in
// compareEntries order: a k-way merge, so a Service of many slices costs
// n·log(slices) rather than a full sort on every change.
func mergeEntries(lists [][]entry, fn func(*entry)) {
	switch len(lists) {
	case 0:
		return
	case 1:
		for i := range lists[0] {
			fn(&lists[0][i])
		}
		return
	}
	h := make(cursorHeap, 0, len(lists))
	for _, l := range lists {
		if len(l) > 0 {
			h = append(h, l)
		}
	}
	h.init()
	for len(h) > 0 {
		fn(&h[0][0])
		h[0] = h[0][1:]
		if len(h[0]) == 0 {
			h[0] = h[len(h)-1]
			h = h[:len(h)-1]
		}
		h.down(0)
	}
}

// cursorHeap is a min-heap of non-empty entry lists ordered by their heads.
type cursorHeap [][]entry

func (h cursorHeap) less(i, j int) bool { return compareEntries(&h[i][0], &h[j][0]) < 0 }

func (h cursorHeap) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h cursorHeap) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && h.less(r, l) {
			m = r
		}
		if !h.less(m, i) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}
