package render

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"text/template"
	"unique"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Cluster is one rendered ClusterLoadAssignment and the Service it came from.
type Cluster struct {
	Name    string
	Service ServiceKey
	// Assignment is the cluster's ClusterLoadAssignment without its
	// endpoints: Hosts[i] is the lb_endpoints of Assignment.Endpoints[i]
	// (see Host for why). CLA puts the two together.
	Assignment *endpointv3.ClusterLoadAssignment
	Hosts      [][]Host
	// Health counts the hosts by health_status.
	Health HealthCounts
	// Gone: the Service no longer publishes the cluster (its port or all
	// its slices went away); the CLA has no endpoints, and the Renderer
	// keeps nothing for the cluster any more.
	Gone bool
	// Upstream is what the cluster's CDS entry takes from Kubernetes.
	Upstream Upstream
	// NodeLocal says how the Service's internalTrafficPolicy applies.
	NodeLocal NodeLocal
}

// NodeLocal is how a Service's internalTrafficPolicy applies to its
// clusters.
type NodeLocal uint8

const (
	// NodeLocalOff: the policy is Cluster (or the Service is not known).
	NodeLocalOff NodeLocal = iota
	// NodeLocalOn: Local, and the local Node is known: only the endpoints
	// on that Node are published, and none when it has none (as kube-proxy
	// does: no fallback to other Nodes).
	NodeLocalOn
	// NodeLocalNoNode: Local, but no local Node is known (no --node-name):
	// the policy cannot apply, and every endpoint is published.
	NodeLocalNoNode
)

func (n NodeLocal) String() string {
	switch n {
	case NodeLocalOn:
		return "local"
	case NodeLocalNoNode:
		return "local-no-node"
	}
	return ""
}

// HealthCounts counts hosts by health_status (UNKNOWN would count as
// healthy, as Envoy counts it; render sets none).
type HealthCounts struct{ Healthy, Draining, Unhealthy int }

func (c *HealthCounts) add(h health) {
	switch h {
	case draining:
		c.Draining++
	case unhealthy:
		c.Unhealthy++
	default:
		c.Healthy++
	}
}

// Renderer renders Services one at a time. It remembers, per Service, the
// slices it has prepared, their entries merged in order, and the clusters it
// last published, so that a slice that did not change is not looked at again
// and a Service that lost a port or all its slices gets CLAs with no
// endpoints. It is not safe for concurrent use: the pipeline's one goroutine
// owns it.
type Renderer struct {
	opts     Options
	tmpl     *template.Template
	services map[ServiceKey]*serviceState
	// owners maps a cluster name to the Service publishing it, so that a
	// template giving two Services the same name cannot make them overwrite
	// each other's file: the first one keeps it.
	owners map[string]ServiceKey
	// blocked holds, per cluster name, the Services refused it; when the
	// name is freed they are handed back by TakeUnblocked to be rendered
	// again, else they would wait for their own next change.
	blocked   map[string]map[ServiceKey]bool
	unblocked []ServiceKey
	// perNamespace counts the cluster names owned by each namespace's
	// Services, for Options.MaxClustersPerNamespace; full holds, per
	// namespace, the Services refused a cluster because it was at the cap,
	// handed back like blocked ones when one of its names is freed. Both
	// lose a namespace's entry once it is empty.
	perNamespace map[string]int
	full         map[string]map[ServiceKey]bool
	// specs holds Options.Clusters by Service, names filled in; nil when
	// every Service port is published.
	specs    map[ServiceKey][]ClusterSpec
	declared []string
	// settings holds what SetService gave, per Service; nodes what SetNode gave.
	settings map[ServiceKey]*serviceSettings
	nodes    map[unique.Handle[string]]NodeTopology
	scratch  []slot // for assemble
	// usesPortNumber: the name template reads NameData.PortNumber.
	usesPortNumber bool
}

// errNoPortNumber: the name template needs the Service's port number and
// the Service object is not known (yet, or any more).
var errNoPortNumber = errors.New("the Service's port number is not known")

type serviceState struct {
	// prepared holds the current slices, in the order given, each with its
	// prepared version. A slice is known by object identity: informers and
	// the folder source hand over a new object for every change and never
	// mutate one. An array, not a map: most Services have one slice, which
	// costs 16 bytes here and a map about 200.
	prepared []preparedObject
	// ports holds what is kept per port name. A Service has a few ports:
	// a slice searched linearly costs less than a map, whose smallest size
	// (about 300 bytes) is a sizeable part of a small Service's heap.
	ports    []portState
	clusters []string // names published by the last render, sorted
	// waiting says why ports wait for their number (see errNoPortNumber),
	// reported once for as long as it lasts; hadService: a Service object
	// was known at a render, so its absence now is a deletion.
	waiting    waitReason
	hadService bool
}

type preparedObject struct {
	obj *discoveryv1.EndpointSlice
	p   *preparedSlice
}

type portState struct {
	port    string // the Service port's name
	cluster string // its cluster name; "" until the template has given one
	// merged holds the entries of the port in every current slice, in
	// compareEntries order, duplicates included.
	merged []*entry
	// n4 and n6 count merged's entries by family.
	n4, n6 int
	// pairs pairs the entries of dual-stack Pods; nil unless the port has
	// entries of both families and its cluster merges them (see pairsFor).
	pairs *pairing
}

// port returns the state of the port name, added if new.
func (st *serviceState) port(name string) *portState {
	for i := range st.ports {
		if st.ports[i].port == name {
			return &st.ports[i]
		}
	}
	st.ports = append(st.ports, portState{port: name})
	return &st.ports[len(st.ports)-1]
}

// New checks the options and returns a Renderer.
func New(opts Options) (*Renderer, error) {
	t, err := ParseClusterNameTemplate(opts.ClusterNameTemplate)
	if err != nil {
		return nil, err
	}
	r := &Renderer{
		opts: opts,
		tmpl: t,
		// The Service's port number is known only once SetService gave it.
		usesPortNumber: strings.Contains(cmp.Or(opts.ClusterNameTemplate, DefaultClusterNameTemplate), "PortNumber"),
		services:       make(map[ServiceKey]*serviceState),
		owners:         make(map[string]ServiceKey),
		blocked:        make(map[string]map[ServiceKey]bool),
		perNamespace:   make(map[string]int),
		full:           make(map[string]map[ServiceKey]bool),
	}
	if opts.MaxClustersPerNamespace < 0 {
		return nil, fmt.Errorf("a cap of %d clusters per namespace", opts.MaxClustersPerNamespace)
	}
	if err := r.opts.checkSources(); err != nil {
		return nil, err
	}
	r.opts.Cluster.LocalityWeighted = r.opts.Cluster.LocalityWeighted || SourceWeightsMatter(r.opts.Sources)
	if len(opts.Clusters) == 0 {
		return r, nil
	}
	r.specs = make(map[ServiceKey][]ClusterSpec)
	byName := make(map[string]ClusterSpec)
	for _, spec := range opts.Clusters {
		if spec.Service.Namespace == "" || spec.Service.Name == "" {
			return nil, fmt.Errorf("cluster %q: no Service", spec.Name)
		}
		if spec.Name == "" && r.usesPortNumber {
			return nil, fmt.Errorf("%s port %q: give the cluster a name: the name template uses .PortNumber, which is unknown until the Service is read, and a listed cluster's file is written before", spec.Service, spec.Port)
		}
		if spec.Name == "" {
			if spec.Name, err = ClusterName(t, NameData{Namespace: spec.Service.Namespace, Service: spec.Service.Name, Port: spec.Port}); err != nil {
				return nil, err
			}
		}
		if prev, dup := byName[spec.Name]; dup {
			return nil, fmt.Errorf("cluster name %q given to both %s port %q and %s port %q", spec.Name, prev.Service, prev.Port, spec.Service, spec.Port)
		}
		for _, prev := range r.specs[spec.Service] {
			if prev.Port == spec.Port {
				return nil, fmt.Errorf("%s port %q listed twice (clusters %q and %q)", spec.Service, spec.Port, prev.Name, spec.Name)
			}
		}
		byName[spec.Name] = spec
		r.specs[spec.Service] = append(r.specs[spec.Service], spec)
		r.declared = append(r.declared, spec.Name)
	}
	slices.Sort(r.declared)
	return r, nil
}

// Declared returns the names of the explicit clusters, sorted: each must
// have a file even before its Service has endpoints.
func (r *Renderer) Declared() []string { return r.declared }

// cluster returns the name and selection of a Service port's cluster, and
// false if the port is not published.
func (r *Renderer) cluster(key ServiceKey, st *serviceState, port string) (string, Selection, bool, error) {
	if r.specs == nil {
		name, err := r.clusterName(key, st, port)
		return name, r.opts.selection(), true, err
	}
	for _, spec := range r.specs[key] {
		if spec.Port == port {
			return spec.Name, spec.Selection, true, nil
		}
	}
	return "", Selection{}, false, nil
}

// Service renders every cluster of one Service from its current slices, in
// name order. Clusters the Service published before and no longer has come
// back with no endpoints, which is how Envoy is told to drop their hosts. The
// skips name what was left out; each is reported once per slice version.
func (r *Renderer) Service(key ServiceKey, current []*discoveryv1.EndpointSlice) ([]Cluster, []Skip) {
	st := r.services[key]
	if st == nil {
		st = &serviceState{}
		r.services[key] = st
	}
	set := r.settings[key]
	skips := st.update(current, &r.opts, set)

	ports := make(map[string]bool)
	for _, po := range st.prepared {
		p := po.p
		for i := range p.ports {
			ports[p.ports[i].name] = true
		}
	}
	portNames := make([]string, 0, len(ports))
	for name := range ports {
		portNames = append(portNames, name)
	}
	slices.Sort(portNames)

	pl := r.placement(set) // the same for every port of the Service
	var out []Cluster
	var waiting []string // ports without their number
	published := make([]string, 0, len(portNames))
	for _, port := range portNames {
		name, sel, ok, err := r.cluster(key, st, port)
		if errors.Is(err, errNoPortNumber) {
			waiting = append(waiting, port)
			continue
		}
		if !ok {
			continue
		}
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
			addTo(r.blocked, name, key)
			skips = append(skips, Skip{Reason: ReasonNameConflict, Object: name,
				Detail: fmt.Sprintf("port %q of Service %s: cluster name already published by Service %s", port, key, owner)})
			continue
		}
		if _, mine := r.owners[name]; !mine {
			if n, limit := r.perNamespace[key.Namespace], r.opts.MaxClustersPerNamespace; limit > 0 && n >= limit {
				addTo(r.full, key.Namespace, key)
				skips = append(skips, Skip{Reason: ReasonNamespaceLimit, Object: name,
					Detail: fmt.Sprintf("port %q of Service %s: namespace %s has %d clusters, the most --max-clusters-per-namespace allows", port, key, key.Namespace, n)})
				continue
			}
			r.perNamespace[key.Namespace]++
		}
		r.owners[name] = key
		published = append(published, name)
		nodeLocal := NodeLocalOff
		if set != nil && set.nodeLocal {
			nodeLocal = NodeLocalNoNode
			if r.opts.LocalNode != "" {
				nodeLocal, sel.nodeOnly, sel.node = NodeLocalOn, true, unique.Make(r.opts.LocalNode)
			}
		}
		ps := st.port(port)
		cla, hosts, counts, conflicts := assemble(name, ps.merged, &sel, ps.pairsFor(&sel), pl, &r.scratch)
		for _, c := range conflicts {
			skips = append(skips, Skip{Reason: ReasonAddressConflict, Object: name, Detail: c})
		}
		// ValidateAll of go-control-plane, the last guard before anything
		// leaves render: Envoy rejects what fails these rules. Every host
		// was validated when it was made (prepare, merged), so the CLA
		// without its endpoints gives the same verdict as the whole, which
		// would be 10,000 messages built on every event of a big Service.
		// TestRenderedCLAsPassValidateAll checks the equivalence.
		if err := cla.ValidateAll(); err != nil {
			skips = append(skips, Skip{Reason: ReasonInvalidCLA, Object: name, Detail: err.Error()})
			continue
		}
		var up Upstream
		if set != nil {
			up = set.upstream
		}
		up.AppProtocol = st.appProtocol(port)
		up.ZoneAware = pl.mode == TopologyZoneAware
		out = append(out, Cluster{Name: name, Service: key, Assignment: cla, Hosts: hosts, Health: counts, Upstream: up, NodeLocal: nodeLocal})
	}
	slices.Sort(published)
	skips = append(skips, st.wait(key, waiting, set, r.opts.Protocol)...)

	for _, name := range st.clusters {
		if _, still := slices.BinarySearch(published, name); !still {
			out = append(out, Cluster{Name: name, Service: key, Assignment: &endpointv3.ClusterLoadAssignment{ClusterName: name}, Gone: true})
			r.release(name)
		}
	}
	st.clusters = published
	if len(current) == 0 {
		delete(r.services, key)
		// Gone: nothing to hand back when its namespace has room again.
		if f := r.full[key.Namespace]; f != nil {
			delete(f, key)
			if len(f) == 0 {
				delete(r.full, key.Namespace)
			}
		}
	}
	slices.SortFunc(out, func(a, b Cluster) int { return cmp.Compare(a.Name, b.Name) })
	return out, skips
}

// ClusterOptions are the settings of every cluster of the CDS file.
func (r *Renderer) ClusterOptions() ClusterOptions { return r.opts.Cluster }

// appProtocol is the appProtocol of port in the Service's slices. The
// EndpointSlice controller copies the Service port's into every slice; while
// a change of it rolls through them they differ, and the greatest wins, so
// that the choice does not depend on map order.
func (st *serviceState) appProtocol(port string) string {
	var out string
	for _, po := range st.prepared {
		p := po.p
		for i := range p.ports {
			if p.ports[i].name == port && p.ports[i].appProtocol > out {
				out = p.ports[i].appProtocol
			}
		}
	}
	return out
}

// update brings the prepared slices and merged lists in line with current,
// touching only the slices that changed: the merged lists are filtered of
// replaced entries and merged with the new ones, linear in the Service's
// size with a small constant, instead of a full sort.
func (st *serviceState) update(current []*discoveryv1.EndpointSlice, opts *Options, set *serviceSettings) []Skip {
	var skips []Skip
	old := st.prepared
	prepared := make([]preparedObject, 0, len(current))
	kept := make([]bool, len(old))
	var added []*preparedSlice
	var byName map[string]*preparedSlice // the versions before, for prepare to reuse from
	// j is where in old the next slice is expected: current comes in the
	// same order.
	j := 0
	for _, s := range current {
		k := -1
		switch {
		case j < len(old) && old[j].obj == s:
			k = j
		case j+1 < len(old) && old[j+1].obj == s: // one replaced or gone before it
			k = j + 1
		default:
			k = slices.IndexFunc(old, func(o preparedObject) bool { return o.obj == s })
		}
		if k >= 0 && !kept[k] {
			kept[k] = true
			prepared = append(prepared, old[k])
			j = k + 1
			continue
		}
		if byName == nil {
			byName = make(map[string]*preparedSlice, len(old))
			for _, o := range old {
				byName[o.obj.Name] = o.p
			}
		}
		p := prepare(s, opts, set, byName[s.Name])
		skips = append(skips, p.skips...)
		added = append(added, p)
		prepared = append(prepared, preparedObject{s, p})
	}
	var gone []*preparedSlice
	for k, o := range old {
		if !kept[k] {
			o.p.gone = true
			gone = append(gone, o.p)
		}
	}
	removed := len(gone) > 0
	st.prepared = prepared
	if !removed && len(added) == 0 {
		return skips
	}
	st.pair(added, gone)

	fresh, goneEntries := entriesByPort(added), entriesByPort(gone)
	for i := range st.ports {
		ps := &st.ports[i]
		if _, ok := fresh[ps.port]; !ok && removed && ps.merged != nil {
			ps.merged = mergeLive(ps.merged, nil, goneEntries[ps.port])
		}
	}
	for port, list := range fresh {
		slices.SortFunc(list, compareEntries)
		ps := st.port(port)
		ps.merged = mergeLive(ps.merged, list, goneEntries[port])
	}
	for i := range st.ports {
		if len(st.ports[i].merged) == 0 {
			st.ports[i].merged = nil
		}
	}
	return skips
}

// entriesByPort lists the entries of the slices by port.
func entriesByPort(ps []*preparedSlice) map[string][]*entry {
	out := make(map[string][]*entry)
	for _, p := range ps {
		for i := range p.ports {
			pp := &p.ports[i]
			for j := range pp.entries {
				out[pp.name] = append(out[pp.name], &pp.entries[j])
			}
		}
	}
	return out
}

// mergeLive merges a, the merged list of a port, with b, the entries of
// new slice versions sorted by compareEntries, into a new list, leaving out
// gone, the entries of the slice versions that went (all of them in a).
//
// The usual event replaces one slice of many: its entries are found in a by
// binary search and the runs of a between them and the new entries are
// copied whole, so the cost is a copy of the pointers and a few searches,
// not a comparison and a look at every entry's slice (which, for a Service
// of 10,000 endpoints, took a sixth of its event).
func mergeLive(a, b, gone []*entry) []*entry {
	if len(b)+len(gone) > len(a)/8 {
		return mergeAll(a, b)
	}
	cuts := make([]int, 0, len(gone)) // where in a the gone entries are
	for _, g := range gone {
		i, _ := slices.BinarySearchFunc(a, g, compareEntries)
		// Copies of one endpoint from several slices compare equal.
		for i < len(a) && a[i] != g && compareEntries(a[i], g) == 0 {
			i++
		}
		if i == len(a) || a[i] != g {
			return mergeAll(a, b) // not where it should be: take no chance
		}
		cuts = append(cuts, i)
	}
	slices.Sort(cuts)
	out := make([]*entry, 0, len(a)-len(cuts)+len(b))
	// live appends a[from:to] but the gone entries.
	live := func(from, to int) {
		for len(cuts) > 0 && cuts[0] < to {
			out = append(out, a[from:cuts[0]]...)
			from, cuts = cuts[0]+1, cuts[1:]
		}
		out = append(out, a[from:to]...)
	}
	i := 0
	for _, e := range b {
		// After every entry of a that is not greater, as mergeAll puts it.
		at := i + sort.Search(len(a)-i, func(k int) bool { return compareEntries(a[i+k], e) > 0 })
		live(i, at)
		out = append(out, e)
		i = at
	}
	live(i, len(a))
	return out
}

// mergeAll is mergeLive by a walk through both lists, looking at every
// entry: for events that change much of a Service.
func mergeAll(a, b []*entry) []*entry {
	out := make([]*entry, 0, len(a)+len(b))
	for len(a) > 0 || len(b) > 0 {
		var e *entry
		if len(a) == 0 || (len(b) > 0 && compareEntries(b[0], a[0]) < 0) {
			e, b = b[0], b[1:]
		} else {
			e, a = a[0], a[1:]
		}
		if !e.src.gone {
			out = append(out, e)
		}
	}
	return out
}

// release frees a cluster name and unblocks the Services refused it, and
// those refused a cluster of its namespace for the cap.
func (r *Renderer) release(name string) {
	if owner, ok := r.owners[name]; ok {
		ns := owner.Namespace
		if r.perNamespace[ns]--; r.perNamespace[ns] <= 0 {
			delete(r.perNamespace, ns)
		}
		for key := range r.full[ns] {
			r.unblocked = append(r.unblocked, key)
		}
		delete(r.full, ns)
	}
	delete(r.owners, name)
	for key := range r.blocked[name] {
		r.unblocked = append(r.unblocked, key)
	}
	delete(r.blocked, name)
}

// addTo adds key to the set m[at], made if need be.
func addTo[K comparable](m map[K]map[ServiceKey]bool, at K, key ServiceKey) {
	if m[at] == nil {
		m[at] = make(map[ServiceKey]bool)
	}
	m[at][key] = true
}

// TakeUnblocked returns, once, the Services that were refused a cluster
// name that has since been freed: the caller renders them again.
func (r *Renderer) TakeUnblocked() []ServiceKey {
	out := r.unblocked
	r.unblocked = nil
	slices.SortFunc(out, func(a, b ServiceKey) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return slices.Compact(out)
}

func (r *Renderer) clusterName(key ServiceKey, st *serviceState, port string) (string, error) {
	ps := st.port(port)
	if ps.cluster != "" {
		return ps.cluster, nil
	}
	protocol := cmp.Or(r.opts.Protocol, corev1.ProtocolTCP)
	number := r.settings[key].portNumber(port, protocol)
	if number == 0 && r.usesPortNumber {
		// Publishing under a name with 0 in it would put a file where
		// Envoy does not look and rename the cluster once the Service
		// is read: the port waits (for a Service event) instead.
		return "", errNoPortNumber
	}
	name, err := ClusterName(r.tmpl, NameData{Namespace: key.Namespace, Service: key.Name, Port: port, PortNumber: number})
	if err != nil {
		return "", err
	}
	ps.cluster = name
	return name, nil
}

// CLA is the whole ClusterLoadAssignment, every endpoint's message built:
// for tests and tools. The writer takes Assignment and Hosts, and builds
// the messages of the endpoints it has not encoded before only.
func (c Cluster) CLA() *endpointv3.ClusterLoadAssignment {
	cla := proto.Clone(c.Assignment).(*endpointv3.ClusterLoadAssignment)
	for i, lle := range cla.Endpoints {
		if i < len(c.Hosts) {
			lle.LbEndpoints = make([]*endpointv3.LbEndpoint, len(c.Hosts[i]))
			for j, h := range c.Hosts[i] {
				lle.LbEndpoints[j] = h.LbEndpoint()
			}
		}
	}
	return cla
}
