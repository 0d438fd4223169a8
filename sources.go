package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	goruntime "runtime"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/edsync/edsync/render"
	"github.com/edsync/edsync/watch"
)

// watchedServices are the Services whose EndpointSlices edsync asks the API
// server for: the service: list (--service) if given, else the Services of
// the clusters: list, as edsync publishes nothing else then; none (every
// slice the namespaces and selector allow) without either. --cluster names
// files that must exist, not what is published: it does not narrow.
func watchedServices(cfg *config) []render.ServiceKey {
	if len(cfg.services) > 0 {
		return cfg.services
	}
	var out []render.ServiceKey
	for _, c := range cfg.render.Clusters {
		if !slices.Contains(out, c.Service) {
			out = append(out, c.Service)
		}
	}
	slices.SortFunc(out, func(a, b render.ServiceKey) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// apiWatch is what a config reload moves of the sources that read the API
// server: the EndpointSlice watch and, with watch-services, the Services'.
type apiWatch struct {
	slices   []*watch.Kube       // one per source
	clusters *watch.Clusters     // nil for one source
	services *watch.KubeServices // nil without watch-services
	// current are the Services both watch now (nil: all).
	current []render.ServiceKey
}

// move moves both watches to the Services a (reloaded) config publishes,
// the Services' first, so that their settings are known when their slices
// come. If either fails, both stay as they were (the Services' watch moves
// back), and the running config with them.
func (w *apiWatch) move(ctx context.Context, services []render.ServiceKey) error {
	if w.services != nil {
		if err := w.services.SetServices(ctx, services); err != nil {
			return err
		}
	}
	for i, k := range w.slices {
		if err := k.SetServices(ctx, services); err != nil {
			back, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			var backErrs []error
			for _, moved := range w.slices[:i] {
				backErrs = append(backErrs, moved.SetServices(back, w.current))
			}
			if w.services != nil {
				backErrs = append(backErrs, w.services.SetServices(back, w.current))
			}
			if backErr := errors.Join(backErrs...); backErr != nil {
				return fmt.Errorf("%w; and moving the other watches back failed: %w", err, backErr)
			}
			return err
		}
	}
	w.current = services
	return nil
}

// newSource makes the sources the config names, feeding store and objects
// (nil unless Services or Nodes are read); api is set when they read the
// API server, through client or else a client made from the config.
func newSource(cfg *config, clients map[string]watch.API, store *watch.Store, objects *watch.Objects, log *slog.Logger,
	onStatus func([]watch.SourceStatus)) (src watch.Source, api *apiWatch, err error) {
	if cfg.fromDir != "" {
		dir, err := watch.NewDir(watch.DirOptions{
			Dir: cfg.fromDir, Namespaces: cfg.namespaces, Selector: cfg.selector, Services: cfg.services,
			Store: store, Logger: log,
			Objects: objects, WatchServices: cfg.watchServices, Nodes: cfg.nodes,
		})
		return dir, nil, err
	}
	sources := cfg.sources
	if len(sources) == 0 {
		// One source, from the flags: its slices carry no source name.
		sources = []sourceConfig{{kubeconfig: cfg.kubeconfig, context: cfg.kubeContext, namespaces: cfg.namespaces, selector: cfg.selector}}
	}
	api = &apiWatch{current: watchedServices(cfg)}
	var others []watch.Source
	// The Services and Nodes are read from the first source: the cluster
	// Envoy runs in, or the one listed first.
	var first watch.API
	for _, sc := range sources {
		c := clients[sc.name]
		if c == nil {
			if c, err = kubeClient(sc); err != nil {
				return nil, nil, err
			}
		}
		if first == nil {
			first = c
		}
		kube, err := watch.NewKube(watch.KubeOptions{
			API: c, Namespaces: sc.namespaces, Selector: sc.selector, Services: watchedServices(cfg),
			Source: sc.name, MCS: cfg.mcs, Sources: slices.Sorted(maps.Keys(cfg.render.Sources)), Store: store, Logger: log,
		})
		if err != nil {
			return nil, nil, usageError{err}
		}
		api.slices = append(api.slices, kube)
	}
	client := first
	if cfg.watchServices {
		api.services, err = watch.NewKubeServices(watch.KubeServicesOptions{
			API: client, Namespaces: cfg.namespaces, Services: watchedServices(cfg), Objects: objects, Logger: log,
		})
		if err != nil {
			return nil, nil, usageError{err}
		}
		others = append(others, api.services)
	}
	if cfg.nodes.All || cfg.nodes.Name != "" {
		nodes, err := watch.NewKubeNodes(watch.KubeNodesOptions{API: client, Nodes: cfg.nodes, Objects: objects, Logger: log})
		if err != nil {
			return nil, nil, usageError{err}
		}
		others = append(others, nodes)
	}
	if len(cfg.sources) == 0 {
		return watch.Group(append([]watch.Source{api.slices[0]}, others...)...), api, nil
	}
	api.clusters = watch.NewClusters(watch.ClustersOptions{
		Sources: api.slices, Others: others, SyncTimeout: cfg.syncTimeout, StaleAfter: cfg.sourceStaleAfter,
		Logger: log, OnStatus: onStatus, Endpoints: store.SourceEndpoints,
	})
	return api.clusters, api, nil
}

// kubeClient makes the API client of a source from its credentials.
func kubeClient(sc sourceConfig) (watch.API, error) {
	rc, err := restConfig(sc)
	if err != nil {
		if sc.name != "" {
			err = fmt.Errorf("source %s: %w", sc.name, err)
		}
		return nil, err
	}
	// Who is asking, in the API server's logs and audit events: not
	// client-go's default, which names the binary and an unset version.
	rc.UserAgent = fmt.Sprintf("edsync/%s (%s/%s)", buildVersion(), goruntime.GOOS, goruntime.GOARCH)
	// Protobuf on the wire, as kube-proxy and the controllers ask for it:
	// less CPU per event for the API server and for edsync than JSON,
	// which stays the fallback for a server (or proxy) without it.
	rc.ContentType = runtime.ContentTypeProtobuf
	rc.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	return watch.NewAPI(rc)
}

// restConfig uses in-cluster credentials when edsync runs in a Pod and no
// kubeconfig is named (or the source says in-cluster), else the kubeconfig
// (--kubeconfig, $KUBECONFIG or ~/.kube/config) and --context.
func restConfig(sc sourceConfig) (*rest.Config, error) {
	if sc.inCluster || (sc.kubeconfig == "" && sc.context == "") {
		rc, err := rest.InClusterConfig()
		if err == nil {
			return rc, nil
		}
		if sc.inCluster {
			return nil, usagef("in-cluster credentials: %v", err)
		}
		if !errors.Is(err, rest.ErrNotInCluster) {
			return nil, fmt.Errorf("in-cluster credentials: %w", err)
		}
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if sc.kubeconfig != "" {
		rules.ExplicitPath = sc.kubeconfig
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: sc.context})
	rc, err := cc.ClientConfig()
	// What the flags name (or fail to name) does not work: usage errors,
	// before anything starts.
	if clientcmd.IsEmptyConfig(err) {
		return nil, usagef("no Kubernetes credentials: not running in a Pod and no kubeconfig found (use --kubeconfig, or --from-dir to read manifests)")
	}
	if err != nil {
		return nil, usagef("kubeconfig: %v", err)
	}
	return rc, nil
}
