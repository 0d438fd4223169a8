package watch

import (
	"fmt"
	"maps"
	"slices"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"

	"github.com/edsync/edsync/render"
)

// filter is what a source keeps: the same rules serve the Kube source
// (where the API server already applied them: this is a guard) and the Dir
// source (where they are the only filter).
type filter struct {
	namespaces map[string]bool // empty: all
	selector   labels.Selector // never nil
	services   map[render.ServiceKey]bool
	// mcs: the slices of ServiceImports (LabelMCSServiceName) are read
	// too; with services set, each namespace gets a second list/watch
	// for them.
	mcs bool
}

// scope is one list/watch: a namespace ("" for all) and the label selector
// sent to the API server.
type scope struct {
	namespace string
	selector  string
}

func newFilter(namespaces []string, selector string, services []render.ServiceKey) (*filter, error) {
	sel, err := labels.Parse(selector)
	if err != nil {
		return nil, fmt.Errorf("label selector %q: %w", selector, err)
	}
	f := &filter{selector: sel}
	if len(namespaces) > 0 {
		f.namespaces = map[string]bool{}
		for _, ns := range namespaces {
			if ns == "" {
				return nil, fmt.Errorf("empty namespace in namespace list")
			}
			f.namespaces[ns] = true
		}
	}
	if len(services) > 0 {
		f.services = map[render.ServiceKey]bool{}
		for _, k := range services {
			if k.Namespace == "" || k.Name == "" {
				return nil, fmt.Errorf("service %q: want namespace/name", k)
			}
			if f.namespaces != nil && !f.namespaces[k.Namespace] {
				return nil, fmt.Errorf("service %s is outside the watched namespaces", k)
			}
			f.services[k] = true
		}
	}
	return f, nil
}

// match reports whether a slice passes the namespace, selector and service
// filters. A slice without a Service label passes unless services are set:
// the Store counts it.
func (f *filter) match(sl *discoveryv1.EndpointSlice) bool {
	if f.namespaces != nil && !f.namespaces[sl.Namespace] {
		return false
	}
	if !f.selector.Matches(labels.Set(sl.Labels)) {
		return false
	}
	if f.services != nil {
		key, ok := render.ServiceOf(sl)
		return ok && f.services[key]
	}
	return true
}

// scopes gives one list/watch per namespace. With services set, each
// namespace of those services gets the selector
// `<selector>,kubernetes.io/service-name in (a,b)`, so that the API server
// sends only their slices: watching every slice of a cluster from a
// sidecar costs the server far more.
func (f *filter) scopes() ([]scope, error) {
	base := f.selector.String()
	if f.services != nil {
		byNS := map[string][]string{}
		for k := range f.services {
			byNS[k.Namespace] = append(byNS[k.Namespace], k.Name)
		}
		labelNames := []string{discoveryv1.LabelServiceName}
		if f.mcs {
			labelNames = append(labelNames, LabelMCSServiceName)
		}
		var out []scope
		for _, ns := range slices.Sorted(maps.Keys(byNS)) {
			names := byNS[ns]
			slices.Sort(names)
			for i, label := range labelNames {
				req, err := labels.NewRequirement(label, selection.In, names)
				if err != nil {
					return nil, fmt.Errorf("services in namespace %s: %w", ns, err)
				}
				sel := f.selector.Add(*req)
				if i > 0 {
					// A slice with both labels is the first scope's only,
					// so that it never has two scopes to leave.
					noService, err := labels.NewRequirement(discoveryv1.LabelServiceName, selection.DoesNotExist, nil)
					if err != nil {
						return nil, err
					}
					sel = sel.Add(*noService)
				}
				out = append(out, scope{namespace: ns, selector: sel.String()})
			}
		}
		return out, nil
	}
	if f.namespaces == nil {
		return []scope{{namespace: "", selector: base}}, nil
	}
	var out []scope
	for _, ns := range slices.Sorted(maps.Keys(f.namespaces)) {
		out = append(out, scope{namespace: ns, selector: base})
	}
	return out, nil
}

// matchService reports whether a Service passes the namespace and service
// filters (the label selector is the slices').
func (f *filter) matchService(key render.ServiceKey) bool {
	if f.namespaces != nil && !f.namespaces[key.Namespace] {
		return false
	}
	return f.services == nil || f.services[key]
}

// namespaceScopes gives the namespaces to list and watch objects other
// than slices in ("" for all): those of the services if set, else the
// namespaces, else all.
func (f *filter) namespaceScopes() []string {
	set := f.namespaces
	if f.services != nil {
		set = map[string]bool{}
		for k := range f.services {
			set[k.Namespace] = true
		}
	}
	if set == nil {
		return []string{""}
	}
	return slices.Sorted(maps.Keys(set))
}
