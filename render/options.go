package render

import (
	"fmt"
	"net/netip"
	"strings"
	"text/template"
	"unique"

	corev1 "k8s.io/api/core/v1"
)

// DefaultClusterNameTemplate names a cluster namespace/service/port, or
// namespace/service for a Service's unnamed port.
const DefaultClusterNameTemplate = `{{.Namespace}}/{{.Service}}{{with .Port}}/{{.}}{{end}}`

// Terminating says what to do with an endpoint that is terminating but still serving.
type Terminating int

const (
	// TerminatingDraining publishes it as DRAINING: Envoy sends it no new
	// requests but lets open connections finish.
	TerminatingDraining Terminating = iota
	// TerminatingDrop leaves it out.
	TerminatingDrop
)

// NotReady says what to do with an endpoint that is neither ready nor draining.
type NotReady int

const (
	// NotReadyDrop leaves it out.
	NotReadyDrop NotReady = iota
	// NotReadyUnhealthy publishes it as UNHEALTHY, so Envoy counts it in its
	// panic threshold and health statistics.
	NotReadyUnhealthy
)

// Family says which address families are published, and how the two
// addresses of a dual-stack Pod are.
type Family int

const (
	// FamilyAll publishes both families. A Pod (any targetRef) with an
	// address in each is one host: its IPv4 address is the host's
	// address and its IPv6 address an additional_address, which Envoy
	// tries too (Happy Eyeballs). One host per Pod keeps a dual-stack Pod
	// from weighing twice a single-stack one. Endpoints without a
	// targetRef are hosts of their own.
	FamilyAll Family = iota
	// FamilyIPv4 publishes IPv4 addresses only.
	FamilyIPv4
	// FamilyIPv6 publishes IPv6 addresses only.
	FamilyIPv6
	// FamilyIPv6First is FamilyAll with the IPv6 address primary.
	FamilyIPv6First
)

// merges reports whether the family publishes a dual-stack Pod as one host.
func (f Family) merges() bool { return f == FamilyAll || f == FamilyIPv6First }

func (f Family) String() string {
	switch f {
	case FamilyIPv4:
		return "ipv4"
	case FamilyIPv6:
		return "ipv6"
	case FamilyIPv6First:
		return "ipv6-first"
	}
	return "all"
}

// ParseTerminating reads "draining" or "drop".
func ParseTerminating(s string) (Terminating, error) {
	switch s {
	case "draining":
		return TerminatingDraining, nil
	case "drop":
		return TerminatingDrop, nil
	}
	return 0, fmt.Errorf("invalid terminating mode %q: want draining or drop", s)
}

// ParseNotReady reads "drop" or "unhealthy".
func ParseNotReady(s string) (NotReady, error) {
	switch s {
	case "drop":
		return NotReadyDrop, nil
	case "unhealthy":
		return NotReadyUnhealthy, nil
	}
	return 0, fmt.Errorf("invalid not-ready mode %q: want drop or unhealthy", s)
}

// ParseFamily reads "all" (or its other name "ipv4-first"), "ipv6-first",
// "ipv4" or "ipv6".
func ParseFamily(s string) (Family, error) {
	switch s {
	case "all", "ipv4-first":
		return FamilyAll, nil
	case "ipv6-first":
		return FamilyIPv6First, nil
	case "ipv4":
		return FamilyIPv4, nil
	case "ipv6":
		return FamilyIPv6, nil
	}
	return 0, fmt.Errorf("invalid address family %q: want all (or ipv4-first), ipv6-first, ipv4 or ipv6", s)
}

// ParseProtocol reads a Service port protocol (TCP, UDP or SCTP, any case).
func ParseProtocol(s string) (corev1.Protocol, error) {
	switch p := corev1.Protocol(strings.ToUpper(s)); p {
	case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
		return p, nil
	}
	return "", fmt.Errorf("invalid protocol %q: want TCP, UDP or SCTP", s)
}

// Options set how slices become CLAs. The zero value is the default of every flag.
type Options struct {
	// ClusterNameTemplate is a text/template over NameData; empty means
	// DefaultClusterNameTemplate.
	ClusterNameTemplate string
	Terminating         Terminating
	NotReady            NotReady
	Family              Family
	// Protocol of the Service ports to publish; empty means TCP.
	Protocol corev1.Protocol
	// Clusters, when not empty, is the explicit list of clusters to
	// publish: every other Service port is left out. Terminating, NotReady
	// and Family above are then the defaults a spec's Selection starts from
	// (the caller fills them in).
	Clusters []ClusterSpec
	// Cluster sets the clusters of the CDS file: the templates, and what
	// every cluster gets.
	Cluster ClusterOptions

	// Topology is the mode of every Service without an edsync.io/topology
	// annotation; LocalZone and LocalNode are where the Envoy reading the
	// files runs (SetLocal changes them).
	Topology             Topology
	LocalZone, LocalNode string
	// Region is the region of every locality whose Node gives none.
	Region string
	// Sources places the endpoints of the slices labelled LabelSource by
	// source name; empty for one source (every endpoint at the topology's
	// levels, as without sources).
	Sources map[string]Source
	// NodesFrom names the source whose Nodes SetNode gives and whose node
	// LocalNode is; the other sources' endpoints get no Node topology.
	NodesFrom string
	sources   map[string]*sourcePlace // Sources, indexed by New
	// AllowedAddresses, if not empty, are the only addresses endpoints
	// are published at; empty: any but loopback, link-local and multicast
	// (see allowed). SourceAddresses gives a source a list of its own
	// instead, by name.
	AllowedAddresses []netip.Prefix
	SourceAddresses  map[string][]netip.Prefix
	// MaxClustersPerNamespace, if not 0, caps the clusters the Services
	// of one namespace publish: each is a file, a CDS cluster and an
	// inotify instance in every Envoy reading it, so that one team's
	// Service of hundreds of ports cannot spend a node's budget. A
	// cluster past the cap is refused (ReasonNamespaceLimit) until the
	// namespace frees one: the first come keep theirs (at start, in
	// Service order).
	MaxClustersPerNamespace int
	// EndpointMetadata adds each endpoint's pod, namespace, node and zone
	// to its metadata under filter_metadata[MetadataKey].
	EndpointMetadata bool
	// MetadataKey is the filter_metadata key; empty means DefaultMetadataKey.
	MetadataKey string
}

// DefaultMetadataKey is the filter_metadata key Envoy's subset load
// balancer reads by default.
const DefaultMetadataKey = "envoy.lb"

// Selection says which endpoints of a port are published. It is applied
// when a cluster is assembled, not when a slice is prepared, so that two
// clusters of one Service can select differently from the same entries.
type Selection struct {
	Terminating Terminating
	NotReady    NotReady
	Family      Family
	// nodeOnly keeps only the endpoints of the local source on node: a
	// Service's internalTrafficPolicy: Local, set by render.
	nodeOnly bool
	node     unique.Handle[string]
}

// ClusterSpec is one cluster of an explicit list.
type ClusterSpec struct {
	Service ServiceKey
	// Port is the Service port's name; empty for an unnamed port.
	Port string
	// Name is the cluster name; empty means the cluster name template's.
	Name string
	Selection
}

// selection is the Selection of the flags.
func (o *Options) selection() Selection {
	return Selection{Terminating: o.Terminating, NotReady: o.NotReady, Family: o.Family}
}

// NameData is what the cluster name template sees.
type NameData struct {
	Namespace string
	Service   string
	// Port is the Service port's name; empty for an unnamed port.
	Port string
	// PortNumber is the Service port's number, 0 while the Service object
	// is unknown (see SetService).
	PortNumber int32
}

// ClusterName runs a parsed cluster name template.
func ClusterName(t *template.Template, d NameData) (string, error) {
	var b strings.Builder
	if err := t.Execute(&b, d); err != nil {
		return "", fmt.Errorf("cluster name template for %s/%s port %q: %w", d.Namespace, d.Service, d.Port, err)
	}
	if b.Len() == 0 {
		return "", fmt.Errorf("cluster name template gives an empty name for %s/%s port %q", d.Namespace, d.Service, d.Port)
	}
	return b.String(), nil
}

// ParseClusterNameTemplate parses the template and tries it once, so that a
// template naming an unknown field fails at start-up, not at the first event.
func ParseClusterNameTemplate(text string) (*template.Template, error) {
	if text == "" {
		text = DefaultClusterNameTemplate
	}
	t, err := template.New("cluster-name").Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("cluster name template: %w", err)
	}
	var b strings.Builder
	if err := t.Execute(&b, NameData{Namespace: "ns", Service: "svc", Port: "http"}); err != nil {
		return nil, fmt.Errorf("cluster name template: %w", err)
	}
	if strings.TrimSpace(b.String()) == "" {
		return nil, fmt.Errorf("cluster name template %q gives an empty name", text)
	}
	if err := namespacesApart(t); err != nil {
		return nil, fmt.Errorf("cluster name template %q: %w", text, err)
	}
	return t, nil
}

// namespacesApart refuses a template that names the namespace but under
// which the Services of two namespaces can still get one cluster name:
// whoever owns a namespace could take another's cluster (its file, its
// traffic). Namespace and Service names are DNS labels, letters, digits
// and '-': a template that joins them with '-' cannot tell namespace a's
// Service b-c from namespace a-b's Service c. Pairs that must differ are
// tried, with and without a port. (A template without the namespace is for
// one namespace: with several, Services of one name share a cluster, and
// each such collision is reported, cluster-name-conflict, as within a
// namespace two ports sharing a name are.)
func namespacesApart(t *template.Template) error {
	x, errX := ClusterName(t, NameData{Namespace: "a", Service: "b", Port: "c"})
	y, errY := ClusterName(t, NameData{Namespace: "d", Service: "b", Port: "c"})
	if errX != nil || errY != nil || x == y {
		return nil // no namespace in it (or a template that fails on probes)
	}
	pairs := [][2]NameData{
		{{Namespace: "a", Service: "b-c"}, {Namespace: "a-b", Service: "c"}},
		{{Namespace: "a", Service: "b-c", Port: "d"}, {Namespace: "a-b", Service: "c", Port: "d"}},
		{{Namespace: "a", Service: "b", Port: "c-d"}, {Namespace: "a-b", Service: "c", Port: "d"}},
		{{Namespace: "a", Service: "b", Port: "c"}, {Namespace: "a-b", Service: "c"}},
		{{Namespace: "b-c", Service: "a"}, {Namespace: "c", Service: "a-b"}}, // the Service first
		{{Namespace: "a", Service: "bc"}, {Namespace: "ab", Service: "c"}},   // no separator
		{{Namespace: "bc", Service: "a"}, {Namespace: "c", Service: "ab"}},
	}
	for _, p := range pairs {
		x, errX := ClusterName(t, p[0])
		y, errY := ClusterName(t, p[1])
		if errX == nil && errY == nil && x == y {
			return fmt.Errorf("namespace %s's Service %s and namespace %s's Service %s (port %q, %q) both get %q: "+
				"separate the namespace with a character names cannot hold ('/', '.' or '_'), as the default %q does",
				p[0].Namespace, p[0].Service, p[1].Namespace, p[1].Service, p[0].Port, p[1].Port, x, DefaultClusterNameTemplate)
		}
	}
	return nil
}
