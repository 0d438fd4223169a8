package render

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	// The types a cluster template's typed configs most often hold, so
	// that a template can be read and checked: TLS to the upstream, the
	// PROXY protocol, plain sockets.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/proxy_protocol/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// Upstream is what a cluster's entry in the CDS file takes from
// Kubernetes: its port's appProtocol and its Service's annotations. It is
// comparable: a change of it, and only that, changes the entry.
type Upstream struct {
	// AppProtocol is the appProtocol of the cluster's port in its
	// EndpointSlices (copied there from the Service port).
	AppProtocol string
	// LbPolicy is the name of an lb_policy value ("" leaves the
	// template's, or Envoy's default).
	LbPolicy string
	// ConnectTimeout overrides the template's and --connect-timeout.
	ConnectTimeout time.Duration
	// Limits are circuit breaker thresholds of the default priority.
	Limits Limits
	// Template names the cluster template to start from ("" is the
	// default one).
	Template string
	// SlowStart is the clusters' slow_start_config, if Window is set.
	SlowStart SlowStart
	// ZoneAware: the Service's topology mode is zone-aware, and its
	// clusters get common_lb_config.zone_aware_lb_config.
	ZoneAware bool
}

// SlowStart is a cluster's slow start: new endpoints ramp up over Window.
type SlowStart struct {
	Window time.Duration
	// Aggression shapes the ramp; 0 leaves Envoy's 1.0 (linear).
	Aggression float64
	// MinWeightPercent is where the ramp starts, if MinWeightSet (Envoy's
	// default is 10).
	MinWeightPercent float64
	MinWeightSet     bool
}

// config is the slow_start_config message.
func (s SlowStart) config() *clusterv3.Cluster_SlowStartConfig {
	c := &clusterv3.Cluster_SlowStartConfig{SlowStartWindow: durationpb.New(s.Window)}
	if s.Aggression > 0 {
		c.Aggression = &corev3.RuntimeDouble{DefaultValue: s.Aggression, RuntimeKey: "edsync.slow_start.aggression"}
	}
	if s.MinWeightSet {
		c.MinWeightPercent = &typev3.Percent{Value: s.MinWeightPercent}
	}
	return c
}

// lbPolicyOf is the lb_policy the clusters of a Service with up get: the
// annotation's, else its template's; a template with a
// load_balancing_policy reads as LOAD_BALANCING_POLICY_CONFIG.
func (o ClusterOptions) lbPolicyOf(up Upstream) clusterv3.Cluster_LbPolicy {
	if up.LbPolicy != "" {
		return clusterv3.Cluster_LbPolicy(clusterv3.Cluster_LbPolicy_value[up.LbPolicy])
	}
	tmpl := o.Default
	if up.Template != "" {
		tmpl = o.Templates[up.Template]
	}
	if tmpl.GetLoadBalancingPolicy() != nil {
		return clusterv3.Cluster_LOAD_BALANCING_POLICY_CONFIG
	}
	return tmpl.GetLbPolicy()
}

// lbPolicyName is the annotation's name of a policy: ring-hash for
// RING_HASH.
func lbPolicyName(p clusterv3.Cluster_LbPolicy) string {
	return strings.ToLower(strings.ReplaceAll(p.String(), "_", "-"))
}

// Limits are circuit breaker thresholds; each overrides the template's.
type Limits struct {
	MaxConnections, MaxPendingRequests, MaxRequests, MaxRetries Limit
}

// Limit is one threshold, if Set.
type Limit struct {
	Value uint32
	Set   bool
}

func (l Limit) apply(dst **wrapperspb.UInt32Value) {
	if l.Set {
		*dst = wrapperspb.UInt32(l.Value)
	}
}

// HTTP2 says whether the port's appProtocol asks for HTTP/2 to the
// upstream: h2c as Kubernetes names it, and the names gRPC and HTTP/2
// services are commonly given (gRPC is HTTP/2).
func (u Upstream) HTTP2() bool {
	switch u.AppProtocol {
	case "kubernetes.io/h2c", "h2c", "http2", "grpc":
		return true
	}
	return false
}

// ParseLbPolicy reads a load balancing policy: round-robin,
// least-request, random, ring-hash or maglev (Envoy's names, such as
// LEAST_REQUEST, too). It returns Envoy's name.
func ParseLbPolicy(s string) (string, error) {
	name := strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(s), "-", "_"))
	switch name {
	case "ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "RING_HASH", "MAGLEV":
		return name, nil
	}
	return "", fmt.Errorf("want round-robin, least-request, random, ring-hash or maglev")
}

// httpOptionsKey is where Envoy looks for a cluster's HTTP protocol
// options in typed_extension_protocol_options.
const httpOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// ClusterOptions are the settings of every generated cluster.
type ClusterOptions struct {
	// ConnectTimeout is each cluster's connect_timeout unless its
	// template or annotation sets one; 0 leaves Envoy's default (5 s).
	ConnectTimeout time.Duration
	// Default is the template every cluster starts from, unless its
	// Service names another; nil is none.
	Default *clusterv3.Cluster
	// Templates are the named templates a Service may pick
	// (AnnotationClusterTemplate).
	Templates map[string]*clusterv3.Cluster
	// TemplateNamespaces limits the Services that may pick a template to
	// those of the namespaces listed for it; a template not in it may be
	// picked by any. A template may hold what one upstream alone should
	// get (a client certificate, a privileged SNI).
	TemplateNamespaces map[string][]string
	// LocalityWeighted gives every cluster
	// common_lb_config.locality_weighted_lb_config, unless its template
	// chose a locality policy (zone-aware or weighted) or a
	// load_balancing_policy: without it Envoy ignores the localities'
	// weights. render.New sets it when the sources' weights matter
	// (SourceWeightsMatter).
	LocalityWeighted bool
}

// mayUse says whether a Service in namespace ns may pick template name.
func (o ClusterOptions) mayUse(name, ns string) bool {
	list, limited := o.TemplateNamespaces[name]
	return !limited || slices.Contains(list, ns)
}

// Equal says whether two sets of options give the same clusters.
func (o ClusterOptions) Equal(p ClusterOptions) bool {
	if o.ConnectTimeout != p.ConnectTimeout || o.LocalityWeighted != p.LocalityWeighted ||
		!proto.Equal(o.Default, p.Default) || len(o.Templates) != len(p.Templates) {
		return false
	}
	for name, t := range o.Templates {
		if u, ok := p.Templates[name]; !ok || !proto.Equal(t, u) {
			return false
		}
	}
	return maps.EqualFunc(o.TemplateNamespaces, p.TemplateNamespaces, slices.Equal)
}

// ParseClusterTemplate reads a cluster template: an Envoy Cluster in JSON
// (the config file's YAML, converted), Envoy's field names. It leaves out
// what edsync sets itself (the name, the discovery type, the EDS config,
// inline endpoints) and must give a valid cluster once those are set.
func ParseClusterTemplate(js []byte) (*clusterv3.Cluster, error) {
	var t clusterv3.Cluster
	if err := protojson.Unmarshal(js, &t); err != nil {
		return nil, err
	}
	var owned []string
	if t.Name != "" {
		owned = append(owned, "name")
	}
	if t.ClusterDiscoveryType != nil {
		owned = append(owned, "type")
	}
	if t.EdsClusterConfig != nil {
		owned = append(owned, "eds_cluster_config")
	}
	if t.LoadAssignment != nil {
		owned = append(owned, "load_assignment")
	}
	if len(owned) > 0 {
		return nil, fmt.Errorf("sets %s, which edsync sets for each cluster", strings.Join(owned, ", "))
	}
	// Checked as the clusters will be made from it, HTTP/2 (which reads
	// the template's HTTP options) included.
	for _, up := range []Upstream{{}, {AppProtocol: "grpc"}} {
		c, err := EDSCluster("template/check", "/template/check.json", up, ClusterOptions{Default: &t})
		if err != nil {
			return nil, err
		}
		if err := c.ValidateAll(); err != nil {
			return nil, err
		}
	}
	return &t, nil
}

// EDSCluster is the Envoy cluster whose endpoints come from one of our
// files, at path: its template (the Service's, else the default) with what
// Kubernetes says of the Service over it. Its name is the CLA's
// cluster_name (Envoy needs service_name to match it; using it as the
// cluster's name too keeps routes readable).
//
// The config source is a path_config_source on the file, without
// watched_directory. Envoy then watches the file's folder for a move onto
// that very name (inotify IN_MOVED_TO), which is how edsync writes: a temp
// file renamed over the target. watched_directory is for a path Envoy
// cannot see moved onto, such as a file in a ConfigMap volume, whose ..data
// symlink is swapped instead. With it, every rename into the folder would
// reload every cluster reading from it: N clusters re-read N files for each
// changed one.
func EDSCluster(name, path string, up Upstream, o ClusterOptions) (*clusterv3.Cluster, error) {
	tmpl := o.Default
	if up.Template != "" {
		if tmpl = o.Templates[up.Template]; tmpl == nil {
			return nil, fmt.Errorf("no cluster template %q", up.Template)
		}
	}
	c := &clusterv3.Cluster{}
	if tmpl != nil {
		c = proto.Clone(tmpl).(*clusterv3.Cluster)
	}
	c.Name = name
	c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}
	c.EdsClusterConfig = &clusterv3.Cluster_EdsClusterConfig{
		ServiceName: name,
		EdsConfig: &corev3.ConfigSource{
			ResourceApiVersion: corev3.ApiVersion_V3,
			ConfigSourceSpecifier: &corev3.ConfigSource_PathConfigSource{
				PathConfigSource: &corev3.PathConfigSource{Path: path},
			},
		},
	}
	switch {
	case up.ConnectTimeout > 0:
		c.ConnectTimeout = durationpb.New(up.ConnectTimeout)
	case c.ConnectTimeout == nil && o.ConnectTimeout > 0:
		c.ConnectTimeout = durationpb.New(o.ConnectTimeout)
	}
	if up.LbPolicy != "" {
		c.LbPolicy = clusterv3.Cluster_LbPolicy(clusterv3.Cluster_LbPolicy_value[up.LbPolicy])
	}
	if l := up.Limits; l != (Limits{}) {
		t := defaultThresholds(c)
		l.MaxConnections.apply(&t.MaxConnections)
		l.MaxPendingRequests.apply(&t.MaxPendingRequests)
		l.MaxRequests.apply(&t.MaxRequests)
		l.MaxRetries.apply(&t.MaxRetries)
	}
	if up.HTTP2() {
		if err := setHTTP2(c); err != nil {
			return nil, err
		}
	}
	if s := up.SlowStart; s.Window > 0 {
		// parseService let it through for these two policies only.
		switch c.LbPolicy {
		case clusterv3.Cluster_ROUND_ROBIN:
			rr := c.GetRoundRobinLbConfig()
			if rr == nil {
				rr = &clusterv3.Cluster_RoundRobinLbConfig{}
				c.LbConfig = &clusterv3.Cluster_RoundRobinLbConfig_{RoundRobinLbConfig: rr}
			}
			rr.SlowStartConfig = s.config()
		case clusterv3.Cluster_LEAST_REQUEST:
			lr := c.GetLeastRequestLbConfig()
			if lr == nil {
				lr = &clusterv3.Cluster_LeastRequestLbConfig{}
				c.LbConfig = &clusterv3.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: lr}
			}
			lr.SlowStartConfig = s.config()
		}
	}
	// Zone-aware routing and weighted localities are one oneof: a
	// zone-aware Service's clusters leave the localities' weights aside.
	switch policy := c.LbPolicy; {
	case up.ZoneAware:
		if policy != clusterv3.Cluster_ROUND_ROBIN && policy != clusterv3.Cluster_LEAST_REQUEST && policy != clusterv3.Cluster_RANDOM {
			break // ring hash and maglev do no zone-aware routing
		}
		if lc := freeLocalityPolicy(c); lc != nil {
			lc.LocalityConfigSpecifier = &clusterv3.Cluster_CommonLbConfig_ZoneAwareLbConfig_{
				ZoneAwareLbConfig: &clusterv3.Cluster_CommonLbConfig_ZoneAwareLbConfig{}}
		}
	case o.LocalityWeighted:
		if lc := freeLocalityPolicy(c); lc != nil {
			lc.LocalityConfigSpecifier = &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig_{
				LocalityWeightedLbConfig: &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig{}}
		}
	}
	return c, nil
}

// freeLocalityPolicy returns the cluster's common_lb_config, to set its
// locality policy in, or nil if its template chose one, or a
// load_balancing_policy.
func freeLocalityPolicy(c *clusterv3.Cluster) *clusterv3.Cluster_CommonLbConfig {
	if c.LoadBalancingPolicy != nil || c.GetCommonLbConfig().GetLocalityConfigSpecifier() != nil {
		return nil
	}
	if c.CommonLbConfig == nil {
		c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{}
	}
	return c.CommonLbConfig
}

// defaultThresholds returns the cluster's circuit breaker thresholds of
// the default priority, added if missing.
func defaultThresholds(c *clusterv3.Cluster) *clusterv3.CircuitBreakers_Thresholds {
	if c.CircuitBreakers == nil {
		c.CircuitBreakers = &clusterv3.CircuitBreakers{}
	}
	for _, t := range c.CircuitBreakers.Thresholds {
		if t.Priority == corev3.RoutingPriority_DEFAULT {
			return t
		}
	}
	t := &clusterv3.CircuitBreakers_Thresholds{Priority: corev3.RoutingPriority_DEFAULT}
	c.CircuitBreakers.Thresholds = append(c.CircuitBreakers.Thresholds, t)
	return t
}

// setHTTP2 makes the cluster speak HTTP/2 (prior knowledge) to its
// endpoints, keeping the rest of the template's HTTP protocol options.
func setHTTP2(c *clusterv3.Cluster) error {
	opts := &httpv3.HttpProtocolOptions{}
	if a := c.TypedExtensionProtocolOptions[httpOptionsKey]; a != nil {
		if err := a.UnmarshalTo(opts); err != nil {
			return fmt.Errorf("the template's %s: %w", httpOptionsKey, err)
		}
	}
	if opts.UpstreamProtocolOptions != nil {
		// The template chose (TLS with ALPN, say): it knows better than
		// an appProtocol.
		return nil
	}
	opts.UpstreamProtocolOptions = &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
		ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
				Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
			},
		},
	}
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, opts, proto.MarshalOptions{Deterministic: true}); err != nil {
		return err
	}
	if c.TypedExtensionProtocolOptions == nil {
		c.TypedExtensionProtocolOptions = make(map[string]*anypb.Any, 1)
	}
	c.TypedExtensionProtocolOptions[httpOptionsKey] = a
	return nil
}
