package pipeline

import (
	"strings"

	"github.com/edsync/edsync/render"
)

// A declared cluster (--cluster, or the config file's list) that no Service
// port publishes gets an empty file, so Envoy can start. Mostly its Service
// is not there yet (Info), but when the name is that of a port its Service
// does not have (a typo, shop/web/htpp, or a renamed port) it would stay
// empty for good: that is a warning naming the ports the Service has, at
// the initial flush or when the Service shows up later, once for as long as
// the ports stay the same (the full flush after a config reload tells again).

// declaredEmpty logs why a declared cluster is published empty by the
// initial flush of the Services in keys.
func (p *Pipeline) declaredEmpty(name string, keys []render.ServiceKey) {
	if p.waiting == nil {
		p.waiting = make(map[string]string)
	}
	p.waiting[name] = ""
	if !p.warnMissingPort(name, keys) {
		p.log.Info("declared cluster has no endpoints yet; publishing it empty", "cluster", name)
	}
}

// checkDeclared follows the declared clusters published empty after a
// flush of the Services in keys, which published the clusters in names.
func (p *Pipeline) checkDeclared(keys []render.ServiceKey, names map[string]bool) {
	for name := range p.waiting {
		if names[name] {
			delete(p.waiting, name)
			continue
		}
		p.warnMissingPort(name, keys)
	}
}

// warnMissingPort warns if name is that of a port one of the Services does
// not have, unless it did for the same ports, and reports whether it is.
func (p *Pipeline) warnMissingPort(name string, keys []render.ServiceKey) bool {
	for _, key := range keys {
		port, has, ok := p.renderer.MissingPort(key, name)
		if !ok {
			continue
		}
		for i, h := range has {
			if h == "" {
				has[i] = "(unnamed)"
			}
		}
		ports := strings.Join(has, ", ")
		if p.waiting[name] != ports {
			p.waiting[name] = ports
			p.log.Warn("declared cluster's port is not a port of its Service; publishing it empty",
				"cluster", name, "service", key, "port", port, "service_ports", ports)
		}
		return true
	}
	return false
}
