package render

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"unique"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Reasons for skipping part of a slice. Each is counted by the caller.
const (
	ReasonFQDN            = "fqdn-address-type"
	ReasonAddressType     = "unknown-address-type"
	ReasonNoAddress       = "no-address"
	ReasonInvalidAddress  = "invalid-address"
	ReasonInvalidPort     = "invalid-port"
	ReasonInvalidEndpoint = "invalid-endpoint"
	ReasonNameConflict    = "cluster-name-conflict"
	ReasonInvalidCLA      = "invalid-cluster"
	// ReasonNamespaceLimit: a cluster over Options.MaxClustersPerNamespace.
	ReasonNamespaceLimit = "namespace-cluster-limit"
)

// RefNameInHostname, as a targetRef's fieldPath, says that the name of the
// object is the endpoint's hostname: watch.Slim moves a Pod's name there
// when the endpoint has no hostname of its own (render reads the hostname
// first, and the Pod's name only without one), and shares one targetRef
// between the Pods of a namespace. No targetRef the API server gives has
// it: a fieldPath names a field of the object.
const RefNameInHostname = "edsync.io/name-in-hostname"

// targetName is the name of an endpoint's targetRef ("" if none).
func targetName(ep *discoveryv1.Endpoint) string {
	ref := ep.TargetRef
	switch {
	case ref == nil:
		return ""
	case ref.FieldPath == RefNameInHostname && ep.Hostname != nil:
		return *ep.Hostname
	}
	return ref.Name
}

// Skip records a part of the input that was not published, and why.
type Skip struct {
	Reason string
	// Object is "namespace/name" of the slice, or the cluster name for
	// cluster-level reasons.
	Object string
	Detail string
}

// health ranks endpoint states; lower is healthier, so that when the same
// ip:port appears in several slices the healthiest copy sorts first and wins.
type health uint8

const (
	healthy health = iota
	draining
	unhealthy
)

func (h health) status() corev3.HealthStatus {
	switch h {
	case draining:
		return corev3.HealthStatus_DRAINING
	case unhealthy:
		return corev3.HealthStatus_UNHEALTHY
	}
	return corev3.HealthStatus_HEALTHY
}

// entry is one endpoint of one port of one slice. Its host is made once and
// is immutable: the same *host is handed out in every cluster until the
// endpoint changes (even across new versions of its slice, see prepare),
// which lets the writer reuse its encoding. The port, health and hostname
// live in the host only, not here as well: an entry is kept per endpoint,
// so each field costs 100,000 copies in a big cluster.
type entry struct {
	addr netip.Addr
	// at and hints place the endpoint for the topology modes; they are
	// not in the host, so a reused host may come with new ones.
	at    unique.Handle[place]
	hints *discoveryv1.EndpointHints // shared between endpoints by the informer's transform
	// pod is the targetRef, by which a dual-stack Pod's two entries are
	// paired (see pairs.go).
	pod podKey
	h   *host
	src *preparedSlice // the slice version it came from
	// port and health are the host's, here too: the walk over a Service's
	// entries in address order reads them for every entry, and the hosts
	// lie all over the heap (a cache miss each, a third of a big
	// Service's render in the controller's shape).
	port   uint32
	health health
}

func (e *entry) zone() string { return e.at.Value().zone }

// place is where an endpoint is: its zone and Node. Interned (the endpoints
// of a Node share one), so that an entry holds 8 bytes for them rather than
// 24, and the entries of one Node, which follow each other in IP order,
// compare by a pointer. (Not the hints: only single-zone hints are shared
// between endpoints, others would make a place per endpoint.)
type place struct {
	zone string
	// node is a handle: one pointer to hash when its region and sub-zone
	// are looked up.
	node unique.Handle[string]
}

// noNode is the node of an endpoint that names none.
var noNode unique.Handle[string]

// endpointKey is everything an endpoint's message is built from, so equal
// keys give equal messages.
type endpointKey struct {
	addr     netip.Addr
	port     uint32
	health   health
	zone     string
	hostname string
	extra    endpointExtra
}

// endpointExtra is what goes into the message only when a Service
// annotation or --endpoint-metadata asks for it; most endpoints have none,
// so a host keeps a pointer to it, nil when zero.
type endpointExtra struct {
	hcPort     uint32
	hcHostname string
	// metadata: the filter_metadata key, and what goes under it.
	metaKey, node, podNamespace, podName, zone string
}

// noExtra is the extra of a message without one.
var noExtra endpointExtra

func compareExtra(a *endpointExtra, b *endpointExtra) int {
	if a == nil {
		if *b == noExtra {
			return 0
		}
		a = &noExtra
	}
	return cmp.Or(
		cmp.Compare(a.hcPort, b.hcPort),
		cmp.Compare(a.hcHostname, b.hcHostname),
		cmp.Compare(a.metaKey, b.metaKey),
		cmp.Compare(a.node, b.node),
		cmp.Compare(a.podNamespace, b.podNamespace),
		cmp.Compare(a.podName, b.podName),
		cmp.Compare(a.zone, b.zone),
	)
}

// compareKey orders by ip, port, health (healthiest first), then by every
// remaining field, so that duplicates resolve the same way whatever order
// the slices came in.
func compareKey(a *entry, b *endpointKey) int {
	if c := a.addr.Compare(b.addr); c != 0 {
		return c
	}
	if c := cmp.Compare(a.port, b.port); c != 0 {
		return c
	}
	if c := cmp.Compare(a.health, b.health); c != 0 {
		return c
	}
	if c := cmp.Compare(a.zone(), b.zone); c != 0 {
		return c
	}
	if c := cmp.Compare(a.h.hostname, b.hostname); c != 0 {
		return c
	}
	return compareExtra(a.h.extra, &b.extra)
}

// compareEntries is compareKey between two entries. Most comparisons end at
// the address, which sits in the entry: the host is read on ties only.
func compareEntries(a, b *entry) int {
	if c := a.addr.Compare(b.addr); c != 0 {
		return c
	}
	// Entries of one slice share their source: only copies of an ip:port
	// from two sources are ordered by source, the preferred first, so that
	// the walk keeps its copy (see hostWalk).
	if a.src != b.src && a.src != nil && b.src != nil && a.src.source != b.src.source {
		if c := cmp.Compare(a.port, b.port); c != 0 {
			return c
		}
		if c := compareSources(a.src.source, b.src.source); c != 0 {
			return c
		}
	}
	k := endpointKey{addr: b.addr, port: b.port, health: b.health, zone: b.zone(), hostname: b.h.hostname}
	if b.h.extra != nil {
		k.extra = *b.h.extra
	}
	return compareKey(a, &k)
}

// preparedPort is one port name of one slice: its entries sorted by compareEntries.
type preparedPort struct {
	name        string
	number      uint32
	appProtocol string
	entries     []entry
}

// preparedSlice is what render keeps of one slice version.
type preparedSlice struct {
	ports  []preparedPort // sorted by name
	source *sourcePlace   // where its endpoints go (LabelSource)
	skips  []Skip
	v6     bool // an IPv6 slice; else IPv4 (or no entries)
	// gone is set when a newer version of the slice, or its deletion, has
	// replaced it; its entries are then dropped from the merged lists.
	gone bool
}

// prepare converts one slice. It is the only place that reads slice
// contents, and runs once per slice version.
//
// prev, if not nil, is an earlier version of the slice: an endpoint equal to
// one of prev's keeps prev's host instead of getting a new one. A slice
// update typically changes one endpoint of many, so this spares validating
// the others here, and, because their *host stays the same, re-encoding
// them in the writer. Hosts are allocated one per endpoint, so a reused
// host pins nothing else of the old version.
//
// Every endpoint with an address is kept, whatever its condition or family:
// which of them a cluster publishes is its Selection's choice, made in
// assemble.
func prepare(s *discoveryv1.EndpointSlice, opts *Options, set *serviceSettings, prev *preparedSlice) *preparedSlice {
	p := &preparedSlice{source: opts.sourceOf(s.Labels)}
	id := s.Namespace + "/" + s.Name
	skip := func(reason, format string, args ...any) {
		p.skips = append(p.skips, Skip{Reason: reason, Object: id, Detail: fmt.Sprintf(format, args...)})
	}

	var want4, want6 bool
	switch s.AddressType {
	case discoveryv1.AddressTypeIPv4:
		want4 = true
	case discoveryv1.AddressTypeIPv6:
		want6 = true
		p.v6 = true
	case discoveryv1.AddressTypeFQDN:
		// Envoy's EDS takes IP literals only.
		skip(ReasonFQDN, "addressType FQDN cannot be published to EDS")
		return p
	default:
		skip(ReasonAddressType, "addressType %q", s.AddressType)
		return p
	}
	protocol := opts.Protocol
	if protocol == "" {
		protocol = corev1.ProtocolTCP
	}
	for _, sp := range s.Ports {
		proto := corev1.ProtocolTCP
		if sp.Protocol != nil {
			proto = *sp.Protocol
		}
		if proto != protocol {
			continue
		}
		name := ""
		if sp.Name != nil {
			name = *sp.Name
		}
		if sp.Port == nil || *sp.Port < 1 || *sp.Port > 65535 {
			skip(ReasonInvalidPort, "port %q has no valid number", name)
			continue
		}
		if slices.ContainsFunc(p.ports, func(pp preparedPort) bool { return pp.name == name }) {
			skip(ReasonInvalidPort, "port %q listed twice", name)
			continue
		}
		pp := preparedPort{name: name, number: uint32(*sp.Port)}
		if sp.AppProtocol != nil {
			pp.appProtocol = *sp.AppProtocol
		}
		p.ports = append(p.ports, pp)
	}
	slices.SortFunc(p.ports, func(a, b preparedPort) int { return cmp.Compare(a.name, b.name) })
	if len(p.ports) == 0 {
		return p
	}
	for j := range p.ports {
		p.ports[j].entries = make([]entry, 0, len(s.Endpoints))
	}
	// The earlier version's entries of each port, to reuse from.
	var prevEntries [][]entry
	if prev != nil {
		prevEntries = make([][]entry, len(p.ports))
		for j := range p.ports {
			if k, ok := slices.BinarySearchFunc(prev.ports, p.ports[j].name, func(pp preparedPort, name string) int {
				return cmp.Compare(pp.name, name)
			}); ok {
				prevEntries[j] = prev.ports[k].entries
			}
		}
	}
	var base endpointExtra
	if set != nil {
		base.hcPort, base.hcHostname = set.hcPort, set.hcHostname
		if set.hcPortName != "" {
			// A named port is resolved in each slice, like the served ports.
			for _, sp := range s.Ports {
				if sp.Name != nil && *sp.Name == set.hcPortName && sp.Port != nil && *sp.Port > 0 && *sp.Port <= 65535 {
					base.hcPort = uint32(*sp.Port)
				}
			}
			if base.hcPort == 0 {
				skip(ReasonInvalidAnnotation, "annotation %s=%q: the slice has no port of that name; its endpoints get no health check port",
					AnnotationHealthCheckPort, set.hcPortName)
			}
		}
	}
	if opts.EndpointMetadata {
		base.metaKey = cmp.Or(opts.MetadataKey, DefaultMetadataKey)
	}
	// One key for the loop: it escapes to the heap (the searches below
	// take its address), and one allocation per slice beats one per endpoint.
	var key endpointKey
	allow := opts.allowList(p.source)
	for i := range s.Endpoints {
		ep := &s.Endpoints[i]
		h := healthOf(ep.Conditions)
		if len(ep.Addresses) == 0 {
			skip(ReasonNoAddress, "endpoint %d has no address", i)
			continue
		}
		// Kubernetes treats addresses[0] as the endpoint; the rest are unused.
		addr, err := netip.ParseAddr(ep.Addresses[0])
		if err != nil || addr.Zone() != "" || addr.IsUnspecified() || (want4 && !addr.Is4()) || (want6 && !addr.Is6()) {
			skip(ReasonInvalidAddress, "address %q is not an %s literal", ep.Addresses[0], s.AddressType)
			continue
		}
		if !allowed(addr, allow) {
			skip(ReasonAddressNotAllowed, "endpoint %d: %s", i, notAllowedDetail(addr, allow))
			continue
		}
		key = endpointKey{addr: addr, health: h, extra: base}
		if ep.Zone != nil {
			key.zone = *ep.Zone
		}
		var node string
		nodeHandle := noNode
		if ep.NodeName != nil && *ep.NodeName != "" {
			node = *ep.NodeName
			nodeHandle = unique.Make(node)
		}
		pod := ep.TargetRef != nil && ep.TargetRef.Kind == "Pod"
		refName := targetName(ep)
		podHandle := noPod
		if ref := ep.TargetRef; ref != nil && refName != "" {
			podHandle = podKeyOf(ref.Kind, cmp.Or(ref.Namespace, s.Namespace), refName, string(ref.UID))
		}
		if ep.Hostname != nil && *ep.Hostname != "" {
			key.hostname = *ep.Hostname
		} else if pod {
			key.hostname = refName
		}
		if base.metaKey != "" {
			key.extra.node, key.extra.zone = node, key.zone
			if pod {
				key.extra.podNamespace = cmp.Or(ep.TargetRef.Namespace, s.Namespace)
				key.extra.podName = refName
			}
		}
		at := unique.Make(place{zone: key.zone, node: nodeHandle})
		for j := range p.ports {
			pp := &p.ports[j]
			key.port = pp.number
			e := entry{addr: addr, at: at, hints: ep.Hints, pod: podHandle, src: p, port: key.port, health: key.health}
			if prevEntries != nil {
				if k, found := slices.BinarySearchFunc(prevEntries[j], &key, func(e entry, key *endpointKey) int {
					return compareKey(&e, key)
				}); found {
					e.h = prevEntries[j][k].h // validated when it was made
					pp.entries = append(pp.entries, e)
					continue
				}
			}
			e.h = newHost(&key, canonical(addr, ep.Addresses[0]))
			// Its message is built here only to be validated; the writer
			// builds it again when it encodes it.
			if err := e.h.LbEndpoint().ValidateAll(); err != nil {
				skip(ReasonInvalidEndpoint, "endpoint %s: %v", ep.Addresses[0], err)
				continue
			}
			pp.entries = append(pp.entries, e)
		}
	}
	for j := range p.ports {
		slices.SortFunc(p.ports[j].entries, func(a, b entry) int { return compareEntries(&a, &b) })
	}
	return p
}

// healthOf applies the contract's condition rows; Selection.keeps decides
// whether a draining or unhealthy endpoint is published.
func healthOf(c discoveryv1.EndpointConditions) health {
	// A nil ready condition means ready (the API's own rule).
	if c.Ready == nil || *c.Ready {
		return healthy
	}
	if c.Serving != nil && *c.Serving && c.Terminating != nil && *c.Terminating {
		return draining
	}
	return unhealthy
}

// keeps reports whether the selection publishes a host of health h whose
// (primary) address is e's.
func (s *Selection) keeps(e *entry, h health) bool {
	if s.nodeOnly && (e.at.Value().node != s.node || (e.src != nil && e.src.source != nil && !e.src.source.local)) {
		return false
	}
	switch h {
	case draining:
		if s.Terminating != TerminatingDraining {
			return false
		}
	case unhealthy:
		if s.NotReady != NotReadyUnhealthy {
			return false
		}
	}
	switch s.Family {
	case FamilyIPv4:
		return e.addr.Is4()
	case FamilyIPv6:
		return e.addr.Is6()
	}
	return true
}
