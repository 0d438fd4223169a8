package render

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// The Service annotations render reads. Every annotation under
// AnnotationPrefix is edsync's: an unknown one is reported, as it is most
// likely a typo of one of these.
// maxLoggedValue bounds the part of an annotation's value a skip's detail
// repeats.
const maxLoggedValue = 128

const (
	AnnotationPrefix = "edsync.io/"
	// AnnotationHealthCheckPort: the port Envoy's active health checks use
	// for every endpoint, a number or the name of a port of the slices
	// (resolved per slice, as named target ports differ per pod).
	AnnotationHealthCheckPort = AnnotationPrefix + "health-check-port"
	// AnnotationHealthCheckHostname: the host name active health checks send.
	AnnotationHealthCheckHostname = AnnotationPrefix + "health-check-hostname"
	// AnnotationOverprovisioningFactor: the CLA's policy.overprovisioning_factor,
	// in percent (Envoy's default is 140): how far a priority level's
	// healthy share may fall before traffic spills to the next level.
	AnnotationOverprovisioningFactor = AnnotationPrefix + "overprovisioning-factor"
	// AnnotationTopology: the Service's topology mode (off, zone, hints),
	// overriding --topology.
	AnnotationTopology = AnnotationPrefix + "topology"

	// The annotations below set the Service's clusters in the CDS file.

	// AnnotationLbPolicy: the clusters' lb_policy (round-robin,
	// least-request, random, ring-hash, maglev).
	AnnotationLbPolicy = AnnotationPrefix + "lb-policy"
	// AnnotationConnectTimeout: the clusters' connect_timeout, a duration.
	AnnotationConnectTimeout = AnnotationPrefix + "connect-timeout"
	// AnnotationMaxConnections, AnnotationMaxPendingRequests,
	// AnnotationMaxRequests and AnnotationMaxRetries: the circuit breaker
	// thresholds of the default priority, whole numbers.
	AnnotationMaxConnections     = AnnotationPrefix + "max-connections"
	AnnotationMaxPendingRequests = AnnotationPrefix + "max-pending-requests"
	AnnotationMaxRequests        = AnnotationPrefix + "max-requests"
	AnnotationMaxRetries         = AnnotationPrefix + "max-retries"
	// AnnotationClusterTemplate: the cluster template (a name from the
	// config file's cluster-templates) the clusters start from, instead
	// of the default cluster-template.
	AnnotationClusterTemplate = AnnotationPrefix + "cluster-template"
	// AnnotationSlowStartWindow: new endpoints ramp up over this duration
	// instead of taking a full share at once (slow_start_config of the
	// round_robin or least_request lb config); AnnotationSlowStartAggression
	// shapes the ramp (1.0 linear, Envoy's default) and
	// AnnotationSlowStartMinWeight is the share, in percent of its weight,
	// an endpoint starts from (Envoy's default 10). The two need the window.
	AnnotationSlowStartWindow     = AnnotationPrefix + "slow-start-window"
	AnnotationSlowStartAggression = AnnotationPrefix + "slow-start-aggression"
	AnnotationSlowStartMinWeight  = AnnotationPrefix + "slow-start-min-weight-percent"
)

// maxSlowStartWindow bounds the slow start window an annotation may ask.
const maxSlowStartWindow = time.Hour

// annotations lists the known annotations, for the message about an
// unknown one.
var annotations = []string{
	AnnotationHealthCheckPort, AnnotationHealthCheckHostname, AnnotationOverprovisioningFactor, AnnotationTopology,
	AnnotationLbPolicy, AnnotationConnectTimeout, AnnotationMaxConnections, AnnotationMaxPendingRequests,
	AnnotationMaxRequests, AnnotationMaxRetries, AnnotationClusterTemplate,
	AnnotationSlowStartWindow, AnnotationSlowStartAggression, AnnotationSlowStartMinWeight,
}

// ReasonInvalidAnnotation is the Skip reason of a bad edsync.io/ annotation;
// the Service is rendered without it.
const ReasonInvalidAnnotation = "invalid-annotation"

// ServicePort is one port of a Service object.
type ServicePort struct {
	Name     string
	Port     int32
	Protocol corev1.Protocol
}

// ServiceInfo is what render uses of a Service object: its edsync.io/
// annotations (others may be left out) and its ports.
type ServiceInfo struct {
	Annotations map[string]string
	Ports       []ServicePort
	// InternalTrafficPolicy is the Service's spec.internalTrafficPolicy:
	// Local publishes only the endpoints on the local Node (see NodeLocal).
	InternalTrafficPolicy corev1.ServiceInternalTrafficPolicy
}

// serviceSettings are a Service's annotations, checked.
type serviceSettings struct {
	hcPort           uint32 // 0: none, or by name
	hcPortName       string
	hcHostname       string
	overprovisioning uint32 // 0: Envoy's default
	topology         Topology
	hasTopology      bool
	nodeLocal        bool // internalTrafficPolicy: Local
	ports            []ServicePort
	// upstream holds what the annotations set of the clusters' CDS
	// entries (AppProtocol is the slices', not set here).
	upstream Upstream
}

func (s *serviceSettings) equal(o *serviceSettings) bool {
	if s == nil || o == nil {
		return s == o
	}
	return s.hcPort == o.hcPort && s.hcPortName == o.hcPortName && s.hcHostname == o.hcHostname &&
		s.overprovisioning == o.overprovisioning && s.topology == o.topology && s.hasTopology == o.hasTopology &&
		s.nodeLocal == o.nodeLocal &&
		slices.Equal(s.ports, o.ports) && s.upstream == o.upstream
}

// portNumber is the Service's number of the port name, 0 if unknown.
func (s *serviceSettings) portNumber(name string, protocol corev1.Protocol) int32 {
	if s == nil {
		return 0
	}
	for _, p := range s.ports {
		if p.Name == name && (p.Protocol == protocol || (p.Protocol == "" && protocol == corev1.ProtocolTCP)) {
			return p.Port
		}
	}
	return 0
}

// parseService checks the annotations; each bad one is skipped and reported.
// clusters has the cluster templates there are, and who may pick them.
func parseService(key ServiceKey, info *ServiceInfo, clusters ClusterOptions) (*serviceSettings, []Skip) {
	templates := clusters.Templates
	s := &serviceSettings{ports: slices.Clone(info.Ports),
		nodeLocal: info.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal}
	var skips []Skip
	bad := func(name, value, format string, args ...any) {
		// The value is whatever a Service's owner wrote, up to the API
		// server's 256 KiB: the log gets its start.
		if len(value) > maxLoggedValue {
			value = value[:maxLoggedValue] + "..."
		}
		skips = append(skips, Skip{Reason: ReasonInvalidAnnotation, Object: key.String(),
			Detail: fmt.Sprintf("annotation %s=%q: %s; ignored", name, value, fmt.Sprintf(format, args...))})
	}
	for _, name := range slices.Sorted(maps.Keys(info.Annotations)) {
		if !strings.HasPrefix(name, AnnotationPrefix) {
			continue
		}
		value := info.Annotations[name]
		switch name {
		case AnnotationHealthCheckPort:
			if n, err := strconv.ParseUint(value, 10, 32); err == nil {
				if n < 1 || n > 65535 {
					bad(name, value, "want a port number from 1 to 65535 or a port name")
					continue
				}
				s.hcPort = uint32(n)
			} else if errs := validation.IsValidPortName(value); len(errs) > 0 {
				bad(name, value, "want a port number or a port name: %s", strings.Join(errs, "; "))
			} else {
				s.hcPortName = value
			}
		case AnnotationHealthCheckHostname:
			// Copied into every endpoint of the Service's files: a
			// DNS name (253 bytes at most), so that its owner cannot
			// inflate them (a 200 KiB value made a 50-endpoint file
			// 58 MiB).
			if errs := validation.IsDNS1123Subdomain(strings.ToLower(value)); len(errs) > 0 {
				bad(name, value, "want a DNS name: %s", strings.Join(errs, "; "))
				continue
			}
			s.hcHostname = value
		case AnnotationOverprovisioningFactor:
			n, err := strconv.ParseUint(value, 10, 32)
			if err != nil || n < 1 {
				bad(name, value, "want a whole percentage of at least 1 (Envoy's default is 140)")
				continue
			}
			s.overprovisioning = uint32(n)
		case AnnotationTopology:
			t, err := ParseTopology(value)
			if err != nil {
				bad(name, value, "%v", err)
				continue
			}
			s.topology, s.hasTopology = t, true
		case AnnotationLbPolicy:
			p, err := ParseLbPolicy(value)
			if err != nil {
				bad(name, value, "%v", err)
				continue
			}
			s.upstream.LbPolicy = p
		case AnnotationConnectTimeout:
			d, err := time.ParseDuration(value)
			if err != nil || d <= 0 {
				bad(name, value, "want a positive duration such as 2s or 250ms")
				continue
			}
			s.upstream.ConnectTimeout = d
		case AnnotationMaxConnections, AnnotationMaxPendingRequests, AnnotationMaxRequests, AnnotationMaxRetries:
			n, err := strconv.ParseUint(value, 10, 32)
			if err != nil {
				bad(name, value, "want a whole number")
				continue
			}
			limit := Limit{Value: uint32(n), Set: true}
			switch name {
			case AnnotationMaxConnections:
				s.upstream.Limits.MaxConnections = limit
			case AnnotationMaxPendingRequests:
				s.upstream.Limits.MaxPendingRequests = limit
			case AnnotationMaxRequests:
				s.upstream.Limits.MaxRequests = limit
			case AnnotationMaxRetries:
				s.upstream.Limits.MaxRetries = limit
			}
		case AnnotationClusterTemplate:
			if templates[value] == nil {
				known := "none"
				if len(templates) > 0 {
					known = strings.Join(slices.Sorted(maps.Keys(templates)), ", ")
				}
				bad(name, value, "no such cluster template (the config file's cluster-templates has: %s)", known)
				continue
			}
			if !clusters.mayUse(value, key.Namespace) {
				bad(name, value, "the template is not for namespace %s (cluster-template-namespaces)", key.Namespace)
				continue
			}
			s.upstream.Template = value
		case AnnotationSlowStartWindow:
			d, err := time.ParseDuration(value)
			if err != nil || d <= 0 || d > maxSlowStartWindow {
				bad(name, value, "want a duration from 1s to %s, such as 30s", maxSlowStartWindow)
				continue
			}
			s.upstream.SlowStart.Window = d
		case AnnotationSlowStartAggression:
			a, err := strconv.ParseFloat(value, 64)
			if err != nil || !(a > 0 && a <= 100) {
				bad(name, value, "want a number above 0 and at most 100 (1.0: a linear ramp)")
				continue
			}
			s.upstream.SlowStart.Aggression = a
		case AnnotationSlowStartMinWeight:
			p, err := strconv.ParseFloat(value, 64)
			if err != nil || !(p >= 0 && p <= 100) {
				bad(name, value, "want a percentage from 0 to 100")
				continue
			}
			s.upstream.SlowStart.MinWeightPercent, s.upstream.SlowStart.MinWeightSet = p, true
		default:
			bad(name, value, "unknown edsync annotation (known: %s)", strings.Join(annotations, ", "))
		}
	}
	if ss := s.upstream.SlowStart; ss != (SlowStart{}) {
		switch policy := clusters.lbPolicyOf(s.upstream); {
		case ss.Window == 0:
			bad(AnnotationSlowStartWindow, "", "the slow start annotations need a window")
			s.upstream.SlowStart = SlowStart{}
		case policy != clusterv3.Cluster_ROUND_ROBIN && policy != clusterv3.Cluster_LEAST_REQUEST:
			bad(AnnotationSlowStartWindow, ss.Window.String(), "Envoy's slow start is for round-robin and least-request, and the clusters' lb policy is %s", lbPolicyName(policy))
			s.upstream.SlowStart = SlowStart{}
		}
	}
	return s, skips
}

// SetService records what render uses of a Service object, or forgets it
// (nil: no Service informer, or the Service is gone). It reports whether
// that changes the Service's clusters, in which case the caller renders it
// again, and the problems with its annotations, once per change.
func (r *Renderer) SetService(key ServiceKey, info *ServiceInfo) (changed bool, skips []Skip) {
	var next *serviceSettings
	if info != nil {
		next, skips = parseService(key, info, r.opts.Cluster)
	}
	if next.equal(r.settings[key]) {
		return false, nil
	}
	if next == nil {
		delete(r.settings, key)
	} else {
		if r.settings == nil {
			r.settings = make(map[ServiceKey]*serviceSettings)
		}
		r.settings[key] = next
	}
	// The endpoint messages carry the health-check settings and the names
	// may use the port number: prepare the Service's slices again. The
	// names it published stay known, so a renamed cluster is emptied.
	if st := r.services[key]; st != nil {
		st.prepared, st.ports = nil, nil
	}
	return true, skips
}

// ReasonNoServicePort is the Skip reason of a Service whose ports wait for
// their number: the cluster name template uses .PortNumber, and the
// Service object (or its port of that name) is not known. Reported once
// for as long as it lasts, not at every render.
const ReasonNoServicePort = "no-service-port"

// waitReason says why a Service's ports wait for their number.
type waitReason uint8

const (
	notWaiting waitReason = iota
	waitObject            // no Service object
	waitPort              // the Service object lacks the port
)

// wait reports the ports that wait for their number, once while they wait
// for the same reason. A Service object deleted before its slices is not
// reported: its clusters are emptied, as they should be.
func (st *serviceState) wait(key ServiceKey, ports []string, set *serviceSettings, protocol corev1.Protocol) []Skip {
	if set != nil {
		st.hadService = true
	}
	next := notWaiting
	switch {
	case len(ports) == 0:
	case set == nil:
		next = waitObject
	default:
		next = waitPort
	}
	if next == st.waiting {
		return nil
	}
	st.waiting = next
	if next == notWaiting || (next == waitObject && st.hadService) {
		return nil
	}
	why := "no Service object is read (is it in the namespaces watched, or, with --from-dir, in the folder?)"
	if next == waitPort {
		why = fmt.Sprintf("the Service has no %s port of that name", cmp.Or(protocol, corev1.ProtocolTCP))
	}
	names := slices.Clone(ports)
	for i, name := range names {
		if name == "" {
			names[i] = "(unnamed)"
		}
	}
	return []Skip{{Reason: ReasonNoServicePort, Object: key.String(),
		Detail: fmt.Sprintf("port %s not published: the cluster name template uses .PortNumber and %s", strings.Join(names, ", "), why)}}
}
