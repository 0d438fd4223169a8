package render

import (
	"cmp"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// MissingPort reports whether cluster is the name the Service would give a
// port it does not have: a declared cluster with a typo (shop/web/htpp), or
// one whose port was renamed. It returns that port's name and the names of
// the ports the Service has, sorted. It is false while the Service's ports
// are unknown (no Service object, no slice with ports) and for a name that
// is not the Service's.
func (r *Renderer) MissingPort(key ServiceKey, cluster string) (port string, has []string, ok bool) {
	if port, ok = r.portOf(key, cluster); !ok {
		return "", nil, false
	}
	has = r.portNames(key)
	if len(has) == 0 || slices.Contains(has, port) {
		return "", nil, false
	}
	return port, has, true
}

// portNames returns the names of the Service's ports of the protocol
// published: the Service object's if known, else those of its slices.
func (r *Renderer) portNames(key ServiceKey) []string {
	var out []string
	if set := r.settings[key]; set != nil {
		protocol := cmp.Or(r.opts.Protocol, corev1.ProtocolTCP)
		for _, p := range set.ports {
			if p.Protocol == protocol || (p.Protocol == "" && protocol == corev1.ProtocolTCP) {
				out = append(out, p.Name)
			}
		}
	} else if st := r.services[key]; st != nil {
		for _, po := range st.prepared {
			for i := range po.p.ports {
				out = append(out, po.p.ports[i].name)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// portOf returns the port name that cluster names for the Service: the
// listed cluster's of that name, else the one the name template turns into
// cluster. The template is run with a marker for the port name, and the
// text around the marker must match; the name found is checked by running
// the template again, as a template may do more than print the port name.
func (r *Renderer) portOf(key ServiceKey, cluster string) (string, bool) {
	if r.specs != nil {
		for _, spec := range r.specs[key] {
			if spec.Name == cluster {
				return spec.Port, true
			}
		}
		return "", false // only listed clusters are published
	}
	if r.usesPortNumber || !strings.Contains(cluster, key.Name) { // cheap, before running the template
		return "", false
	}
	name := func(port string) string {
		n, err := ClusterName(r.tmpl, NameData{Namespace: key.Namespace, Service: key.Name, Port: port})
		if err != nil {
			return ""
		}
		return n
	}
	if name("") == cluster {
		return "", true // the unnamed port
	}
	const marker = "\x00"
	before, after, found := strings.Cut(name(marker), marker)
	if !found || len(cluster) <= len(before)+len(after) || !strings.HasPrefix(cluster, before) || !strings.HasSuffix(cluster, after) {
		return "", false
	}
	port := cluster[len(before) : len(cluster)-len(after)]
	if name(port) != cluster {
		return "", false
	}
	return port, true
}
